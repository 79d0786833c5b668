//! The recording's encoder, synchronous: events in, asciicast v3 lines batched into
//! frames of text, handed to the compression stage ([`Frames`]) and its sink. The writer
//! task drives it against the recording file; tests and benchmarks against memory.
//!
//! Chunks of output (or input) arriving in the same millisecond are merged into one event:
//! players show at most one frame per 1/60 s anyway, and a big `cat` then costs one JSON
//! line per millisecond instead of one per SSH packet. Only chunks of the same stream
//! merge (stdout and stderr stay apart), and an event whose text stops being exactly its
//! bytes gets its bytes in a companion event (see [`super::asciicast`], "Exact bytes"):
//! valid UTF-8, the common case, costs nothing more than before.

use std::time::Instant;

use chrono::{DateTime, Utc};

use super::Event;
use super::asciicast::{
    BYTES, Carried, EventClock, Header, STDERR, Term, Utf8Carry, close_event, escape_into, open_event,
    push_bytes_event, push_event,
};
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
    stream: Stream,
    /// Where the event's data starts in the buffer.
    start: usize,
    /// Its text is not exactly its bytes: they are kept in [`Encoder::exact`] and written
    /// in a companion event when it closes.
    lossy: bool,
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
    /// The exact bytes of the open event once it is lossy (at most what [`MERGE_BYTES`] of
    /// text stands for); reused from event to event.
    exact: Vec<u8>,
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
            exact: Vec::new(),
            buf: Vec::with_capacity(IDLE_BUFFER),
            frames,
            summary: Summary::default(),
        }
    }

    /// Encodes one event that happened at `at`; hands a frame to compression when enough
    /// text is pending.
    pub fn encode(&mut self, at: Instant, event: Event) -> std::io::Result<()> {
        match event {
            Event::Start { command, .. } if self.header.is_some() => {
                self.note_late_start(at, command.as_deref());
                return Ok(());
            }
            Event::Start { mut term, command } => {
                let claimed = (term.cols, term.rows);
                (term.cols, term.rows) = (term.cols.min(MAX_SIDE), term.rows.min(MAX_SIDE));
                let bounded = claimed != (term.cols, term.rows);
                self.write_header(Some(term), command.as_deref());
                self.summary.command = self.header.as_ref().and_then(|h| h.command.clone());
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

    /// A request for a shell or a command once the header is written: a second one on the
    /// channel, or one after input. A header line amid the events would end the recording
    /// for every reader (a vendor could hide the rest of a channel that way): it becomes a
    /// marker, with a command's exact bytes when they are not UTF-8.
    fn note_late_start(&mut self, at: Instant, command: Option<&[u8]>) {
        use base64::Engine as _;
        let note = match command {
            None => "the vendor's client asked for a shell again".to_string(),
            Some(c) => match std::str::from_utf8(c) {
                Ok(text) => format!("the vendor's client asked for a command: {text}"),
                Err(_) => format!(
                    "the vendor's client asked for a command: {} (exact bytes, base64: {})",
                    String::from_utf8_lossy(c),
                    base64::engine::general_purpose::STANDARD.encode(c)
                ),
            },
        };
        if self.summary.command.is_none() {
            self.summary.command = command.map(|c| String::from_utf8_lossy(c).into_owned());
        }
        let interval = self.clock.interval_ms(at);
        self.push_closed(interval, "m", &note);
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
        let continues = matches!(&self.open,
            Some(open) if open.stream == stream && interval == 0 && self.buf.len() - open.start < MERGE_BYTES);
        if !continues {
            self.open_text(stream, interval);
        }
        let mark = self.buf.len();
        let (carry, buf) = self.carry_and_buf(stream);
        let carried = carry.carried();
        carry.escape_json_into(data, buf);
        let lossy = carry.take_lossy();
        if lossy || self.open.as_ref().is_some_and(|open| open.lossy) {
            self.keep_exact(stream, mark, carried, data);
        }
    }

    /// Keeps the exact bytes of a chunk whose text (escaped from `mark` on) is lossy, or
    /// that continues a lossy event. Exact text before it in the same event stays an event
    /// of its own, so that only lossy events carry their bytes twice.
    fn keep_exact(&mut self, stream: Stream, mark: usize, carried: Carried, data: &[u8]) {
        let Some(&Open { lossy, start, .. }) = self.open.as_ref() else { return };
        if !lossy {
            if mark > start {
                self.buf.truncate(mark);
                self.carry(stream).restore(carried);
                self.open_text(stream, 0);
                let (carry, buf) = self.carry_and_buf(stream);
                carry.escape_json_into(data, buf);
                carry.take_lossy();
            }
            if let Some(open) = &mut self.open {
                open.lossy = true;
            }
            self.exact.clear();
        }
        // What this chunk's text stands for: the sequence carried into it, the chunk, less
        // the incomplete sequence carried on to the next.
        self.exact.extend_from_slice(carried.as_slice());
        self.exact.extend_from_slice(data);
        let onward = self.carry(stream).pending().len();
        self.exact.truncate(self.exact.len().saturating_sub(onward));
    }

    fn carry(&mut self, stream: Stream) -> &mut Utf8Carry {
        self.carry_and_buf(stream).0
    }

    /// The stream's UTF-8 carry and the frame buffer its text goes into.
    fn carry_and_buf(&mut self, stream: Stream) -> (&mut Utf8Carry, &mut Vec<u8>) {
        let Encoder { buf, stdout, stderr, input, .. } = self;
        let carry = match stream {
            Stream::Stdout => stdout,
            Stream::Stderr => stderr,
            Stream::Input => input,
        };
        (carry, buf)
    }

    /// Closes the open event and opens a text event of `stream`.
    fn open_text(&mut self, stream: Stream, interval: u64) {
        self.close_open();
        open_event(&mut self.buf, interval, if stream == Stream::Input { "i" } else { "o" });
        self.open = Some(Open { stream, start: self.buf.len(), lossy: false });
    }

    /// Ends the open event's line, followed by its companion: stderr's mark, and the
    /// exact bytes where the text is not exactly them.
    fn close_open(&mut self) {
        let Some(open) = self.open.take() else { return };
        close_event(&mut self.buf);
        match (open.stream, open.lossy) {
            (Stream::Stderr, false) => push_event(&mut self.buf, 0, STDERR, ""),
            (Stream::Stderr, true) => push_bytes_event(&mut self.buf, STDERR, &self.exact),
            (_, true) => push_bytes_event(&mut self.buf, BYTES, &self.exact),
            (_, false) => {}
        }
        if open.lossy && self.exact.capacity() > 4 * MERGE_BYTES {
            // A flood of binary is over: the buffer goes back to nothing.
            self.exact = Vec::new();
        }
    }

    fn push_closed(&mut self, interval: u64, code: &str, data: &str) {
        self.close_open();
        push_event(&mut self.buf, interval, code, data);
    }

    fn write_header(&mut self, term: Option<Term>, command: Option<&[u8]>) {
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
        // A sequence cut short at the end of a stream is shown as U+FFFD, with its bytes.
        for stream in [Stream::Stdout, Stream::Stderr, Stream::Input] {
            let carried = self.carry(stream).carried();
            if carried.as_slice().is_empty() {
                continue;
            }
            self.carry(stream).restore(Carried::default());
            let interval = self.clock.interval_ms(Instant::now());
            self.open_text(stream, interval);
            escape_into(&mut self.buf, "\u{fffd}");
            if let Some(open) = &mut self.open {
                open.lossy = true;
            }
            self.exact.clear();
            self.exact.extend_from_slice(carried.as_slice());
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

    /// A finished recording's header line and its events as (code, data), in order.
    fn header_and_events(file: &[u8]) -> (String, Vec<(String, String)>) {
        let text = String::from_utf8(zstd::decode_all(file).unwrap()).unwrap();
        let mut lines = text.lines();
        let header = lines.next().unwrap().to_string();
        let events = lines
            .map(|line| serde_json::from_str::<(f64, String, String)>(line).unwrap())
            .map(|(_, code, data)| (code, data))
            .collect();
        (header, events)
    }

    /// An expected event, as [`header_and_events`] gives them.
    fn event(code: &str, data: &str) -> (String, String) {
        (code.to_string(), data.to_string())
    }

    /// Each stream's exact bytes as the raw exports rebuild them, and what a player shows
    /// (the text of the `o` events).
    fn read_back(file: &[u8]) -> ([Vec<u8>; 3], String, Vec<String>) {
        use crate::recording::export::{Stream as Of, StreamBytes};
        let text = String::from_utf8(zstd::decode_all(file).unwrap()).unwrap();
        let mut lines = text.lines();
        let header: Header = serde_json::from_str(lines.next().unwrap()).unwrap();
        assert_eq!(header.exact_bytes, Some(1));
        let mut time = 0;
        let events: Vec<_> = lines
            .map(|line| {
                let event = crate::recording::reader::parse_event(line.as_bytes(), time).unwrap();
                time = event.time_ms;
                event
            })
            .collect();
        let shown = events.iter().filter(|e| e.code == "o").map(|e| e.data.as_str()).collect();
        let codes = events.iter().map(|e| e.code.clone()).collect();
        let mut streams = [Vec::new(), Vec::new(), Vec::new()];
        let mut chunks = StreamBytes::new(events.into_iter());
        while let Some(chunk) = chunks.next_chunk() {
            let chunk = chunk.unwrap();
            let k = match chunk.stream {
                Of::Stdout => 0,
                Of::Stderr => 1,
                Of::Input => 2,
            };
            streams[k].extend_from_slice(&chunk.bytes);
        }
        (streams, shown, codes)
    }

    #[test]
    fn every_byte_of_each_stream_is_recovered_exactly() {
        let start = Instant::now();
        let mut enc = Encoder::new("t".into(), Utc::now(), RecordingConfig::default(), start, Vec::new());
        let at = |ms| start + Duration::from_millis(ms);
        type Chunk = (u64, fn(Bytes) -> Event, &'static [u8]);
        let chunks: [Chunk; 10] = [
            // "ä" split across two packets of one millisecond, and of two.
            (1, Event::Output, b"valid \xc3"),
            (1, Event::Output, b"\xa4 split"),
            (2, Event::Output, b" \xe2\x82"),
            (3, Event::Output, b"\xac euro"),
            // An invalid byte merged after exact text, a genuine U+FFFD, NUL bytes.
            (3, Event::Output, b" bad \xff\xfe end"),
            (4, Event::Output, "genuine \u{fffd} \0\0 nul".as_bytes()),
            // stderr in the same millisecond as stdout, lossy and exact.
            (4, Event::Stderr, b"err \x80"),
            (4, Event::Output, b"out again"),
            (5, Event::Input, b"typed \xc3\x28 \0"),
            // A sequence cut short at the very end of the stream.
            (6, Event::Stderr, b"last \xf0\x9f"),
        ];
        let mut expected = [Vec::new(), Vec::new(), Vec::new()];
        for (ms, event, bytes) in chunks {
            let k = match event(Bytes::new()) {
                Event::Output(_) => 0,
                Event::Stderr(_) => 1,
                _ => 2,
            };
            expected[k].extend_from_slice(bytes);
            enc.encode(at(ms), event(Bytes::copy_from_slice(bytes))).unwrap();
        }
        let file = enc.finish().unwrap();
        let (streams, shown, codes) = read_back(&file);
        for k in 0..3 {
            assert_eq!(streams[k], expected[k], "stream {k}");
        }
        // Players show what a terminal shows: U+FFFD where bytes were not UTF-8.
        assert_eq!(
            shown,
            "valid ä split € euro bad \u{fffd}\u{fffd} endgenuine \u{fffd} \0\0 nul\
             err \u{fffd}out againlast \u{fffd}"
        );
        // The exact text before the invalid byte stays an event of its own; only lossy
        // events carry their bytes twice.
        assert_eq!(codes, ["o", "o", "o", "o", "b", "o", "o", "e", "o", "i", "b", "o", "e", "o", "e"]);
    }

    /// Byte soup in random chunks on random streams at random times: every stream comes
    /// back exactly, and the shown text is the lossy decoding of stdout and stderr.
    #[test]
    fn random_byte_soup_round_trips_on_every_stream() {
        let pieces: [&[u8]; 12] = [
            b"plain ascii text that is long enough to fill blocks",
            b"\x1b[1;31m\r\n\"q\\",
            "größe → 😀".as_bytes(),
            "\u{fffd}".as_bytes(),
            b"\xff",
            b"\xe2\x82",
            b"\xf0\x9f",
            b"\xc3",
            b"\x80\x80",
            b"\x00\x7f\t",
            b"\xed\xa0\x80",
            b"0123456789abcdef",
        ];
        let mut next = crate::recording::xorshift(0x9e37_79b9_7f4a_7c15u64);
        for round in 0..300 {
            let start = Instant::now();
            let mut enc = Encoder::new("t".into(), Utc::now(), RecordingConfig::default(), start, Vec::new());
            let mut expected = [Vec::new(), Vec::new(), Vec::new()];
            let mut ms = 0;
            for _ in 0..next(30) {
                let mut chunk = Vec::new();
                for _ in 0..next(6) + 1 {
                    chunk.extend_from_slice(pieces[next(pieces.len())]);
                }
                ms += next(2) as u64;
                let k = next(3);
                expected[k].extend_from_slice(&chunk);
                let data = Bytes::from(chunk);
                let event = match k {
                    0 => Event::Output(data),
                    1 => Event::Stderr(data),
                    _ => Event::Input(data),
                };
                enc.encode(start + Duration::from_millis(ms), event).unwrap();
                if next(8) == 0 {
                    enc.encode(start + Duration::from_millis(ms), Event::Marker("m".into())).unwrap();
                }
            }
            let (streams, _, _) = read_back(&enc.finish().unwrap());
            for k in 0..3 {
                assert_eq!(streams[k], expected[k], "round {round}, stream {k}");
            }
        }
    }

    #[test]
    fn a_second_request_for_a_shell_or_command_is_a_marker_not_a_second_header() {
        let start = Instant::now();
        let mut enc = Encoder::new("t".into(), Utc::now(), RecordingConfig::default(), start, Vec::new());
        let term = Term { cols: 80, rows: 24, kind: None };
        enc.encode(start, Event::Input(Bytes::from_static(b"before"))).unwrap();
        enc.encode(start, Event::Start { term: term.clone(), command: Some(Bytes::from_static(b"id")) }).unwrap();
        enc.encode(start, Event::Start { term, command: Some(Bytes::from_static(b"rm \xff")) }).unwrap();
        enc.encode(start, Event::Output(Bytes::from_static(b"after"))).unwrap();
        let file = enc.finish().unwrap();
        let (header, events) = header_and_events(&file);
        assert!(header.starts_with("{\"version\":3"));
        assert_eq!(
            events,
            vec![
                event("i", "before"),
                event("m", "the vendor's client asked for a command: id"),
                event("m", "the vendor's client asked for a command: rm \u{fffd} (exact bytes, base64: cm0g/w==)"),
                event("o", "after"),
            ]
        );
        assert_eq!(enc.summary.command.as_deref(), Some("id"));
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
        let (header, events) = header_and_events(&file);
        let header: serde_json::Value = serde_json::from_str(&header).unwrap();
        assert_eq!((header["term"]["cols"].as_u64(), header["term"]["rows"].as_u64()), (Some(1000), Some(40)));
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
