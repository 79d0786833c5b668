//! Reads a recording back, streaming and tolerant: a file cut short by a crash decodes up
//! to its last complete event line, and the reader says that it was cut short.

use std::fs::File;
use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};

use super::RecordingError;
use super::asciicast::Header;

/// One event, with its time from the start of the recording.
#[derive(Debug, Clone, PartialEq)]
pub struct CastEvent {
    /// Milliseconds since the start of the recording.
    pub time_ms: u64,
    /// Milliseconds since the previous event, as recorded.
    pub interval_ms: u64,
    pub code: String,
    pub data: String,
}

pub struct CastReader {
    lines: BufReader<Box<dyn Read>>,
    path: PathBuf,
    pub header: Header,
    /// Set once the end was reached early (truncated frame or torn last line).
    pub truncated: bool,
    time_ms: u64,
    line: Vec<u8>,
}

impl CastReader {
    /// Opens a `.cast.zst` (or, by extension, a plain `.cast`) recording.
    pub fn open(path: &Path) -> Result<CastReader, RecordingError> {
        let read_err = |message: String| RecordingError::Read { path: path.to_path_buf(), message };
        let file = File::open(path).map_err(|e| read_err(e.to_string()))?;
        let inner: Box<dyn Read> = if path.extension().is_some_and(|e| e == "zst") {
            Box::new(zstd::stream::read::Decoder::new(file).map_err(|e| read_err(e.to_string()))?)
        } else {
            Box::new(file)
        };
        let mut lines = BufReader::with_capacity(64 * 1024, inner);
        let mut first = Vec::new();
        lines.read_until(b'\n', &mut first).map_err(|e| read_err(format!("header: {e}")))?;
        let header: Header = serde_json::from_slice(&first)
            .map_err(|e| read_err(format!("header is not an asciicast v3 header: {e}")))?;
        if header.version != 3 {
            return Err(read_err(format!("asciicast version {} (expected 3)", header.version)));
        }
        Ok(CastReader { lines, path: path.to_path_buf(), header, truncated: false, time_ms: 0, line: Vec::new() })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The next event, or `None` at the end (check [`CastReader::truncated`]).
    pub fn next_event(&mut self) -> Option<CastEvent> {
        self.line.clear();
        match self.lines.read_until(b'\n', &mut self.line) {
            Ok(0) => return None,
            Ok(_) if self.line.last() == Some(&b'\n') => {}
            // A torn last line, or a frame cut short: everything before it stands.
            Ok(_) | Err(_) => {
                self.truncated = true;
                return None;
            }
        }
        match parse_event(&self.line, self.time_ms) {
            Some(event) => {
                self.time_ms = event.time_ms;
                Some(event)
            }
            None => {
                self.truncated = true;
                None
            }
        }
    }
}

/// Latest time an event is read at: 2^53 ms (some 285,000 years), exact as the f64 that
/// players and exports compute with, and far enough from `u64::MAX` that adding to it
/// never overflows. A hostile interval (`1e300`) stops the clock here instead of wrapping
/// it around.
pub const MAX_TIME_MS: u64 = 1 << 53;

/// One event line, `[interval, code, data]`, following an event at `previous_ms`.
pub fn parse_event(line: &[u8], previous_ms: u64) -> Option<CastEvent> {
    let (interval, code, data) = serde_json::from_slice::<(f64, String, String)>(line).ok()?;
    let interval_ms = ((interval.max(0.0) * 1000.0).round() as u64).min(MAX_TIME_MS);
    let time_ms = previous_ms.saturating_add(interval_ms).min(MAX_TIME_MS);
    Some(CastEvent { time_ms, interval_ms, code, data })
}

impl Iterator for CastReader {
    type Item = CastEvent;
    fn next(&mut self) -> Option<CastEvent> {
        self.next_event()
    }
}
