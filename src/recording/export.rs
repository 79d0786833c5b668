//! Ways out of a recording: the output as plain terminal text (`recordings cat`) and
//! uncompressed asciicast v3 or v2 (`recordings export`) for players that cannot read
//! zstd or v3.

use std::io::Write;

use serde_json::json;

use super::asciicast::push_event;
use super::reader::CastReader;

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    /// asciicast v3 (intervals), what chaperone records.
    V3,
    /// asciicast v2 (absolute times), for older asciinema players.
    V2,
}

/// Writes the terminal output (`o` events) as it was shown.
pub fn write_output(reader: &mut CastReader, out: &mut dyn Write) -> std::io::Result<()> {
    while let Some(event) = reader.next_event() {
        if event.code == "o" {
            out.write_all(event.data.as_bytes())?;
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
            // v2 has no exit event; the status stays in session.json.
            Format::V2 if event.code == "x" => continue,
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
