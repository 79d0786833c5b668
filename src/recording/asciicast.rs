//! asciicast v3 encoding: the header line, event lines with millisecond intervals that do
//! not drift, and UTF-8 decoding that carries incomplete sequences across chunks.
//!
//! Spec: <https://docs.asciinema.org/manual/asciicast/v3/>. Each event is
//! `[interval, code, data]` where `interval` is the time since the previous event.

use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

/// The `term` object of a v3 header.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Term {
    pub cols: u32,
    pub rows: u32,
    #[serde(rename = "type", skip_serializing_if = "Option::is_none", default)]
    pub kind: Option<String>,
}

/// The first line of a v3 recording.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Header {
    pub version: u32,
    pub term: Term,
    /// Unix time (seconds) when the recording started.
    pub timestamp: i64,
    /// The command for `exec` channels; absent for a shell.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub command: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub title: Option<String>,
}

impl Header {
    pub fn new(term: Term, timestamp: i64, command: Option<String>, title: String) -> Header {
        Header { version: 3, term, timestamp, command, title: Some(title) }
    }
}

/// Decodes a byte stream as UTF-8 chunk by chunk. A sequence split across chunks is
/// carried to the next call; invalid bytes become U+FFFD. One per stream (stdout, stderr
/// and input each have their own), since interleaving would tear sequences apart.
#[derive(Debug, Default)]
pub struct Utf8Carry {
    pending: Vec<u8>,
}

impl Utf8Carry {
    /// Appends the decoded text of `chunk` to `out`.
    pub fn decode_into(&mut self, chunk: &[u8], out: &mut String) {
        if self.pending.is_empty() {
            self.decode_slice(chunk, out);
        } else {
            let mut joined = std::mem::take(&mut self.pending);
            joined.extend_from_slice(chunk);
            self.decode_slice(&joined, out);
        }
    }

    /// Whatever is still carried at the end of the stream, as U+FFFD.
    pub fn finish(&mut self, out: &mut String) {
        if !self.pending.is_empty() {
            self.pending.clear();
            out.push(char::REPLACEMENT_CHARACTER);
        }
    }

    fn decode_slice(&mut self, mut bytes: &[u8], out: &mut String) {
        loop {
            match std::str::from_utf8(bytes) {
                Ok(text) => {
                    out.push_str(text);
                    return;
                }
                Err(err) => {
                    let (valid, rest) = bytes.split_at(err.valid_up_to());
                    // SAFETY-free: `valid` was just checked by from_utf8.
                    out.push_str(std::str::from_utf8(valid).unwrap_or_default());
                    match err.error_len() {
                        Some(bad) => {
                            out.push(char::REPLACEMENT_CHARACTER);
                            bytes = &rest[bad..];
                        }
                        None => {
                            self.pending.extend_from_slice(rest);
                            return;
                        }
                    }
                }
            }
        }
    }
}

/// Writes event lines with intervals measured from one start instant, rounded to whole
/// milliseconds against the absolute time, so that rounding errors never accumulate.
#[derive(Debug)]
pub struct EventClock {
    start: Instant,
    last_ms: u64,
}

impl EventClock {
    pub fn new(start: Instant) -> EventClock {
        EventClock { start, last_ms: 0 }
    }

    /// Milliseconds since the previous event (or the start) for an event at `at`.
    pub fn interval_ms(&mut self, at: Instant) -> u64 {
        let now_ms = millis(at.saturating_duration_since(self.start)).max(self.last_ms);
        let interval = now_ms - self.last_ms;
        self.last_ms = now_ms;
        interval
    }
}

fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

/// Appends one event line, `[interval, "code", "data"]\n`, to `out`.
pub fn push_event(out: &mut Vec<u8>, interval_ms: u64, code: &str, data: &str) {
    use std::io::Write;
    // Writing into a Vec cannot fail.
    let _ = write!(out, "[{}.{:03}, \"{code}\", ", interval_ms / 1000, interval_ms % 1000);
    let _ = serde_json::to_writer(&mut *out, data);
    out.extend_from_slice(b"]\n");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn utf8_split_across_chunks_is_carried() {
        let text = "größe → 😀";
        let bytes = text.as_bytes();
        for split in 0..bytes.len() {
            let mut carry = Utf8Carry::default();
            let mut out = String::new();
            carry.decode_into(&bytes[..split], &mut out);
            carry.decode_into(&bytes[split..], &mut out);
            carry.finish(&mut out);
            assert_eq!(out, text, "split at {split}");
        }
    }

    #[test]
    fn invalid_bytes_become_replacement_characters() {
        let mut carry = Utf8Carry::default();
        let mut out = String::new();
        carry.decode_into(b"a\xffb\xe2\x82", &mut out);
        carry.finish(&mut out);
        assert_eq!(out, "a\u{fffd}b\u{fffd}");
    }

    #[test]
    fn intervals_do_not_drift() {
        let start = Instant::now();
        let mut clock = EventClock::new(start);
        let mut total = 0;
        for i in 1..=1000u64 {
            // 1.4 ms apart: rounding each interval alone would lose 0.4 ms each time.
            total += clock.interval_ms(start + Duration::from_micros(1400 * i));
        }
        assert_eq!(total, 1400);
    }

    #[test]
    fn event_lines_are_json() {
        let mut out = Vec::new();
        push_event(&mut out, 1234, "o", "a\"b\u{1b}[0m\n");
        let line = String::from_utf8(out).unwrap();
        assert_eq!(line, "[1.234, \"o\", \"a\\\"b\\u001b[0m\\n\"]\n");
        let parsed: (f64, String, String) = serde_json::from_str(line.trim()).unwrap();
        assert_eq!(parsed.2, "a\"b\u{1b}[0m\n");
    }
}
