//! Ways out of a recording: the output as plain terminal text (`recordings cat`),
//! uncompressed asciicast v3 or v2 (`recordings export`) for players that cannot read
//! zstd or v3, and one stream's exact bytes (`recordings export --raw-output`), rebuilt
//! from the text events and their companions (see [`super::asciicast`], "Exact bytes").

use std::io::Write;

use base64::Engine as _;
use serde_json::json;

use super::asciicast::{BYTES, STDERR, push_event};
use super::reader::{CastEvent, CastReader};
use super::text::clock;

/// One of a channel's byte streams.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stream {
    /// What the target wrote to stdout (on a pty: everything the terminal showed).
    Stdout,
    /// What the target wrote to stderr (exec channels; a pty has none).
    Stderr,
    /// What the vendor sent.
    Input,
}

#[derive(Debug, thiserror::Error)]
pub enum ExportError {
    #[error("{0}")]
    Write(#[from] std::io::Error),
    /// The events do not form streams: a companion without its text event, or bytes that
    /// are not base64. Only an altered or damaged file looks like this.
    #[error("event at {at}: {what}")]
    Damaged { at: String, what: String },
}

/// Part of one stream: one text event's worth.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Chunk {
    pub stream: Stream,
    /// When it was recorded (ms from the start).
    pub time_ms: u64,
    pub bytes: Vec<u8>,
}

/// The bytes of each stream in recording order, one event's worth at a time: each text
/// event's companion if it has one, else its text. Events of other codes pass by.
pub struct StreamBytes<I> {
    events: I,
    /// The last text event, waiting to see whether a companion follows it.
    text: Option<CastEvent>,
}

impl<I: Iterator<Item = CastEvent>> StreamBytes<I> {
    pub fn new(events: I) -> StreamBytes<I> {
        StreamBytes { events, text: None }
    }

    /// The next chunk of a stream, or what makes the events not form streams.
    pub fn next_chunk(&mut self) -> Option<Result<Chunk, ExportError>> {
        loop {
            let Some(event) = self.events.next() else {
                return self.text.take().map(|text| Ok(as_text(text)));
            };
            match event.code.as_str() {
                "o" | "i" => {
                    if let Some(text) = self.text.replace(event) {
                        return Some(Ok(as_text(text)));
                    }
                }
                code @ (BYTES | STDERR) => {
                    let damaged = |what: &str| ExportError::Damaged { at: clock(event.time_ms), what: what.into() };
                    let Some(text) = self.text.take() else {
                        return Some(Err(damaged(&format!("a {code:?} event follows no output or input event"))));
                    };
                    let stream = match (code, text.code.as_str()) {
                        (STDERR, "o") => Stream::Stderr,
                        (STDERR, _) => return Some(Err(damaged("a stderr event follows an input event"))),
                        (_, "o") => Stream::Stdout,
                        _ => Stream::Input,
                    };
                    if code == STDERR && event.data.is_empty() {
                        return Some(Ok(Chunk { stream, time_ms: text.time_ms, bytes: text.data.into_bytes() }));
                    }
                    return Some(match base64::engine::general_purpose::STANDARD.decode(event.data.as_bytes()) {
                        Ok(bytes) => Ok(Chunk { stream, time_ms: text.time_ms, bytes }),
                        Err(e) => Err(damaged(&format!("the exact bytes are not base64: {e}"))),
                    });
                }
                _ => {
                    if let Some(text) = self.text.take() {
                        return Some(Ok(as_text(text)));
                    }
                }
            }
        }
    }
}

/// A text event without a companion: its text is its bytes.
fn as_text(event: CastEvent) -> Chunk {
    let stream = if event.code == "i" { Stream::Input } else { Stream::Stdout };
    Chunk { stream, time_ms: event.time_ms, bytes: event.data.into_bytes() }
}

/// Writes the exact bytes of `stream`; returns how many.
pub fn write_stream(reader: &mut CastReader, stream: Stream, out: &mut dyn Write) -> Result<u64, ExportError> {
    let mut chunks = StreamBytes::new(&mut *reader);
    let mut written = 0;
    while let Some(chunk) = chunks.next_chunk() {
        let chunk = chunk?;
        if chunk.stream == stream {
            out.write_all(&chunk.bytes)?;
            written += chunk.bytes.len() as u64;
        }
    }
    Ok(written)
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    /// asciicast v3 (intervals), what chaperone records.
    V3,
    /// asciicast v2 (absolute times), for older asciinema players.
    V2,
}

/// Writes the terminal output (stdout and stderr, in the order they came): the text as a
/// terminal shows it (U+FFFD where the bytes were not UTF-8, so that no stray 8-bit
/// control reaches the reader's terminal), or, when `exact`, the bytes themselves.
pub fn write_output(reader: &mut CastReader, exact: bool, out: &mut dyn Write) -> Result<(), ExportError> {
    if !exact {
        while let Some(event) = reader.next_event() {
            if event.code == "o" {
                out.write_all(event.data.as_bytes())?;
            }
        }
        return Ok(());
    }
    let mut chunks = StreamBytes::new(&mut *reader);
    while let Some(chunk) = chunks.next_chunk() {
        let chunk = chunk?;
        if chunk.stream != Stream::Input {
            out.write_all(&chunk.bytes)?;
        }
    }
    Ok(())
}

/// Writes the recording, uncompressed, as asciicast `format`.
pub fn write_asciicast(reader: &mut CastReader, format: Format, out: &mut dyn Write) -> std::io::Result<()> {
    let header = &reader.header;
    let mut line = Vec::with_capacity(64 * 1024);
    match format {
        Format::V3 => {
            serde_json::to_writer(&mut line, header)?;
            line.push(b'\n');
        }
        Format::V2 => {
            let mut v2 = json!({
                "version": 2,
                "width": header.term.cols,
                "height": header.term.rows,
                "timestamp": header.timestamp,
            });
            if let Some(command) = &header.command {
                v2["command"] = json!(command);
            }
            if let Some(title) = &header.title {
                v2["title"] = json!(title);
            }
            if let Some(kind) = &header.term.kind {
                v2["env"] = json!({ "TERM": kind });
            }
            serde_json::to_writer(&mut line, &v2)?;
            line.push(b'\n');
        }
    }
    out.write_all(&line)?;
    while let Some(event) = reader.next_event() {
        line.clear();
        match format {
            Format::V3 => push_event(&mut line, event.interval_ms, &event.code, &event.data),
            // v2 has no exit event; the status stays in session.json. Its players need no
            // exact bytes (the raw exports have them).
            Format::V2 if matches!(event.code.as_str(), "x" | BYTES | STDERR) => continue,
            Format::V2 => {
                let time = event.time_ms as f64 / 1000.0;
                serde_json::to_writer(&mut line, &json!([time, event.code, event.data]))?;
                line.push(b'\n');
            }
        }
        out.write_all(&line)?;
    }
    Ok(())
}
