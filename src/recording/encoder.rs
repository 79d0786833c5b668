//! The recording's encoder, synchronous: events in, asciicast v3 lines batched into
//! frames of text, handed to the compression stage ([`Frames`]) and its sink. The writer
//! task drives it against the recording file; tests and benchmarks against memory.
//!
//! Chunks of output (or input) arriving in the same millisecond are merged into one event:
//! players show at most one frame per 1/60 s anyway, and a big `cat` then costs one JSON
//! line per millisecond instead of one per SSH packet.

use std::time::Instant;

use chrono::{DateTime, Utc};

use super::Event;
use super::asciicast::{EventClock, Header, Term, Utf8Carry, close_event, open_event, push_event};
use super::frames::{FrameSink, Frames};
use crate::config::RecordingConfig;
use crate::mirror::MAX_SIDE;

/// Pending encoded text that closes a frame before the flush interval is up: large enough
/// for good compression, small enough that a busy session's memory stays flat (a flood
/// holds three frame buffers). zstd chooses its parameters by the size it compresses; at
/// level 1 on terminal text, frames of 1 MiB compress at 3.0 ns per byte, of 256 KiB at
/// 3.1, and of just over 256 KiB (zstd's table for large inputs on a small one) at 3.4.
pub const FRAME_BYTES: usize = 1024 * 1024;

/// The frame buffer of a quiet session (it grows during a flood, and shrinks after).
const IDLE_BUFFER: usize = 4096;

/// Longest merged event, so that one event never holds a frame's worth of text.
const MERGE_BYTES: usize = 64 * 1024;

/// What a finished recording reports to its session.
#[derive(Debug, Default, Clone)]
pub struct Summary {
    /// Raw bytes the vendor sent.
    pub bytes_in: u64,
    /// Raw bytes the target sent (stdout and stderr).
    pub bytes_out: u64,
    pub exit_status: Option<i64>,
    pub command: Option<String>,
    /// Set when writing failed; the session was ended because of it.
    pub error: Option<String>,
}

/// An output or input event still open for merging: its line is written up to the data,
/// which is escaped straight into the frame buffer as chunks arrive.
struct Open {
    code: &'static str,
    /// Where the event's data starts in the buffer.
    start: usize,
}

pub struct Encoder<S: FrameSink> {
    title: String,
    started: DateTime<Utc>,
    header: Option<Header>,
    pending_term: Term,
    clock: EventClock,
    stdout: Utf8Carry,
    stderr: Utf8Carry,
    input: Utf8Carry,
    open: Option<Open>,
    buf: Vec<u8>,
    frames: Frames<S>,
    pub summary: Summary,
}

impl<S: FrameSink> Encoder<S> {
    /// An encoder writing frames to `sink`, compressed on a thread of their own during
    /// floods (see [`Frames`]).
    pub fn new(title: String, started: DateTime<Utc>, config: RecordingConfig, start: Instant, sink: S) -> Encoder<S> {
        Encoder::with_frames(title, started, start, Frames::new(config.zstd_level, sink))
    }

    /// An encoder writing through the given compression stage.
    pub fn with_frames(title: String, started: DateTime<Utc>, start: Instant, frames: Frames<S>) -> Encoder<S> {
        Encoder {
            title,
            started,
            header: None,
            pending_term: Term { cols: 80, rows: 24, kind: None },
            clock: EventClock::new(start),
            stdout: Utf8Carry::default(),
            stderr: Utf8Carry::default(),
            input: Utf8Carry::default(),
            open: None,
            buf: Vec::with_capacity(IDLE_BUFFER),
            frames,
            summary: Summary::default(),
        }
    }

    /// Encodes one event that happened at `at`; hands a frame to compression when enough
    /// text is pending.
    pub fn encode(&mut self, at: Instant, event: Event) -> std::io::Result<()> {
        match event {
            Event::Start { mut term, command } => {
                let claimed = (term.cols, term.rows);
                (term.cols, term.rows) = (term.cols.min(MAX_SIDE), term.rows.min(MAX_SIDE));
                let bounded = claimed != (term.cols, term.rows);
                self.summary.command.clone_from(&command);
                self.write_header(Some(term), command);
                if let (true, Some(header)) = (bounded, &self.header) {
                    let kept = (header.term.cols, header.term.rows);
                    self.note_claimed_size(at, claimed, kept);
                }
                return Ok(());
            }
            Event::Resize { cols, rows } if self.header.is_none() => {
                self.pending_term.cols = cols.clamp(1, MAX_SIDE);
                self.pending_term.rows = rows.clamp(1, MAX_SIDE);
                return Ok(());
            }
            _ => {}
        }
        if self.header.is_none() {
            self.write_header(None, None);
        }
        let interval = self.clock.interval_ms(at);
        match event {
            Event::Output(data) => {
                self.summary.bytes_out += data.len() as u64;
                self.append(Stream::Stdout, interval, &data);
            }
            Event::Stderr(data) => {
                self.summary.bytes_out += data.len() as u64;
                self.append(Stream::Stderr, interval, &data);
            }
            Event::Input(data) => {
                self.summary.bytes_in += data.len() as u64;
                self.append(Stream::Input, interval, &data);
            }
            Event::Resize { cols, rows } => {
                let kept = (cols.clamp(1, MAX_SIDE), rows.clamp(1, MAX_SIDE));
                self.push_closed(interval, "r", &format!("{}x{}", kept.0, kept.1));
                if kept != (cols, rows) {
                    self.note_claimed_size(at, (cols, rows), kept);
                }
            }
            Event::Exit(status) => {
                self.summary.exit_status = Some(status);
                self.push_closed(interval, "x", &status.to_string());
            }
            Event::Marker(label) => self.push_closed(interval, "m", &label),
            Event::Start { .. } => {}
        }
        if self.buf.len() >= FRAME_BYTES { self.close_frame(true) } else { Ok(()) }
    }

    /// Sizes come from the vendor's client: an absurd one (65535×65535) would make every
    /// player of the recording, a dispute's included, try to hold a screen that large. They
    /// are recorded within `MAX_SIDE`, and a marker says what was claimed.
    fn note_claimed_size(&mut self, at: Instant, (cols, rows): (u32, u32), (kept_cols, kept_rows): (u32, u32)) {
        let note =
            format!("the vendor's client reported a terminal of {cols}x{rows}; recorded as {kept_cols}x{kept_rows}");
        let interval = self.clock.interval_ms(at);
        self.push_closed(interval, "m", &note);
    }

    /// Decodes `data` into the open event of its kind, continuing it when it is the same
    /// kind in the same millisecond, else closing it and opening a new one.
    fn append(&mut self, stream: Stream, interval: u64, data: &[u8]) {
        let code = if stream == Stream::Input { "i" } else { "o" };
        let continues = matches!(&self.open,
            Some(open) if open.code == code && interval == 0 && self.buf.len() - open.start < MERGE_BYTES);
        if !continues {
            self.close_open();
            open_event(&mut self.buf, interval, code);
            self.open = Some(Open { code, start: self.buf.len() });
        }
        let Encoder { buf, stdout, stderr, input, .. } = self;
        let carry = match stream {
            Stream::Stdout => stdout,
            Stream::Stderr => stderr,
            Stream::Input => input,
        };
        carry.escape_json_into(data, buf);
    }

    fn close_open(&mut self) {
        if self.open.take().is_some() {
            close_event(&mut self.buf);
        }
    }

    fn push_closed(&mut self, interval: u64, code: &str, data: &str) {
        self.close_open();
        push_event(&mut self.buf, interval, code, data);
    }

    fn write_header(&mut self, term: Option<Term>, command: Option<String>) {
        let mut term = term.unwrap_or_else(|| self.pending_term.clone());
        if term.cols == 0 || term.rows == 0 {
            term.cols = self.pending_term.cols;
            term.rows = self.pending_term.rows;
        }
        let header = Header::new(term, self.started.timestamp(), command, self.title.clone());
        // A header always serializes; the fallback keeps the line valid JSON regardless.
        let line = serde_json::to_string(&header).unwrap_or_else(|_| "{\"version\":3}".into());
        self.buf.extend_from_slice(line.as_bytes());
        self.buf.push(b'\n');
        self.header = Some(header);
    }

    /// Closes the pending text as one independent zstd frame and waits until it and every
    /// frame before it are written (the flush timer's call).
    pub fn flush(&mut self) -> std::io::Result<()> {
        self.close_frame(false)?;
        let flood_over = self.frames.settle()?;
        if !self.frames.threaded() && self.buf.capacity() > IDLE_BUFFER {
            // A flood is over: the frame buffer goes back to a quiet session's size.
            self.buf = Vec::with_capacity(IDLE_BUFFER);
        }
        if flood_over {
            crate::memory::release_free();
        }
        Ok(())
    }

    fn close_frame(&mut self, full: bool) -> std::io::Result<()> {
        self.close_open();
        if self.buf.is_empty() {
            return Ok(());
        }
        let text = std::mem::take(&mut self.buf);
        self.buf = self.frames.write(text, full)?;
        Ok(())
    }

    /// Ends the recording: whatever UTF-8 is still carried, and the last frame; waits
    /// until every frame is written and hands back the sink.
    pub fn finish(&mut self) -> std::io::Result<S> {
        if self.header.is_none() {
            self.write_header(None, None);
        }
        let mut tail = String::new();
        self.stdout.finish(&mut tail);
        self.stderr.finish(&mut tail);
        if !tail.is_empty() {
            let interval = self.clock.interval_ms(Instant::now());
            self.push_closed(interval, "o", &tail);
        }
        // What the vendor typed last, cut inside a character, is recorded too.
        let mut typed = String::new();
        self.input.finish(&mut typed);
        if !typed.is_empty() {
            let interval = self.clock.interval_ms(Instant::now());
            self.push_closed(interval, "i", &typed);
        }
        self.close_frame(false)?;
        self.frames.finish()
    }
}

/// Each stream keeps its own UTF-8 carry (stdout and stderr interleave).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Stream {
    Stdout,
    Stderr,
    Input,
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;
    use std::time::Duration;

    #[test]
    fn same_millisecond_chunks_merge_and_frames_decode() {
        let start = Instant::now();
        let mut enc = Encoder::new("t".into(), Utc::now(), RecordingConfig::default(), start, Vec::new());
        let at = |ms| start + Duration::from_millis(ms);
        enc.encode(at(5), Event::Output(Bytes::from_static(b"ab"))).unwrap();
        enc.encode(at(5), Event::Output(Bytes::from_static(b"c\xc3"))).unwrap();
        enc.encode(at(5), Event::Input(Bytes::from_static(b"x"))).unwrap();
        enc.encode(at(7), Event::Output(Bytes::from_static(b"\xa4d"))).unwrap();
        enc.flush().unwrap();
        enc.encode(at(9), Event::Exit(0)).unwrap();
        let file = enc.finish().unwrap();
        let text = String::from_utf8(zstd::decode_all(&file[..]).unwrap()).unwrap();
        let lines: Vec<&str> = text.lines().skip(1).collect();
        assert_eq!(
            lines,
            vec!["[0.005, \"o\", \"abc\"]", "[0.000, \"i\", \"x\"]", "[0.002, \"o\", \"äd\"]", "[0.002, \"x\", \"0\"]"]
        );
        assert_eq!(enc.summary.bytes_out, 6);
    }

    #[test]
    fn after_a_flood_the_session_shrinks_back() {
        let start = Instant::now();
        let mut enc = Encoder::new("t".into(), Utc::now(), RecordingConfig::default(), start, Vec::new());
        let chunk = Bytes::from("log line with \x1b[1mbold\x1b[0m text\n".repeat(800));
        let mut sent = 0;
        for i in 0..200u64 {
            enc.encode(start + Duration::from_micros(i * 20), Event::Output(chunk.clone())).unwrap();
            sent += chunk.len();
        }
        assert!(enc.frames.threaded(), "a flood compresses on a thread of its own");
        enc.flush().unwrap(); // the tick during the flood
        assert!(enc.frames.threaded());
        enc.flush().unwrap(); // a tick with no full frame since: the flood is over
        assert!(!enc.frames.threaded());
        assert!(enc.buf.capacity() <= IDLE_BUFFER, "{}", enc.buf.capacity());
        enc.encode(start + Duration::from_secs(5), Event::Output(Bytes::from_static(b"after"))).unwrap();
        let file = enc.finish().unwrap();
        let text = String::from_utf8(zstd::decode_all(&file[..]).unwrap()).unwrap();
        let output: String =
            text.lines().skip(1).map(|line| serde_json::from_str::<(f64, String, String)>(line).unwrap().2).collect();
        assert_eq!(output.len(), sent + "after".len());
        assert!(output.ends_with("text\nafter"));
    }

    #[test]
    fn absurd_terminal_sizes_are_recorded_within_bounds_with_what_was_claimed() {
        let start = Instant::now();
        let mut enc = Encoder::new("t".into(), Utc::now(), RecordingConfig::default(), start, Vec::new());
        let term = Term { cols: 65535, rows: 40, kind: Some("xterm".into()) };
        enc.encode(start, Event::Start { term, command: None }).unwrap();
        enc.encode(start, Event::Resize { cols: 120, rows: 50 }).unwrap();
        enc.encode(start, Event::Resize { cols: 0, rows: 4_000_000 }).unwrap();
        let file = enc.finish().unwrap();
        let text = String::from_utf8(zstd::decode_all(&file[..]).unwrap()).unwrap();
        let mut lines = text.lines();
        let header: serde_json::Value = serde_json::from_str(lines.next().unwrap()).unwrap();
        assert_eq!((header["term"]["cols"].as_u64(), header["term"]["rows"].as_u64()), (Some(1000), Some(40)));
        let events: Vec<(String, String)> = lines
            .map(|line| serde_json::from_str::<(f64, String, String)>(line).unwrap())
            .map(|(_, code, data)| (code, data))
            .collect();
        let event = |code: &str, data: &str| (code.to_string(), data.to_string());
        assert_eq!(
            events,
            vec![
                event("m", "the vendor's client reported a terminal of 65535x40; recorded as 1000x40"),
                event("r", "120x50"),
                event("r", "1x1000"),
                event("m", "the vendor's client reported a terminal of 0x4000000; recorded as 1x1000"),
            ]
        );
    }
}
