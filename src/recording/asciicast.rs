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
        self.decode_with(chunk, |piece| out.push_str(piece));
    }

    /// Hands the decoded text of `chunk` to `sink`, piece by piece (valid runs, and
    /// U+FFFD for invalid bytes), without copying it first.
    pub fn decode_with(&mut self, chunk: &[u8], mut sink: impl FnMut(&str)) {
        if self.pending.is_empty() {
            self.decode_slice(chunk, &mut sink);
        } else {
            let mut joined = std::mem::take(&mut self.pending);
            joined.extend_from_slice(chunk);
            self.decode_slice(&joined, &mut sink);
        }
    }

    /// Whatever is still carried at the end of the stream, as U+FFFD.
    pub fn finish(&mut self, out: &mut String) {
        if !self.pending.is_empty() {
            self.pending.clear();
            out.push(char::REPLACEMENT_CHARACTER);
        }
    }

    fn decode_slice(&mut self, mut bytes: &[u8], sink: &mut impl FnMut(&str)) {
        loop {
            match std::str::from_utf8(bytes) {
                Ok(text) => {
                    sink(text);
                    return;
                }
                Err(err) => {
                    let (valid, rest) = bytes.split_at(err.valid_up_to());
                    // `valid` was just checked by from_utf8.
                    sink(std::str::from_utf8(valid).unwrap_or_default());
                    match err.error_len() {
                        Some(bad) => {
                            sink("\u{fffd}");
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
    open_event(out, interval_ms, code);
    escape_into(out, data);
    close_event(out);
}

/// Starts an event line up to the opening quote of its data.
pub fn open_event(out: &mut Vec<u8>, interval_ms: u64, code: &str) {
    use std::io::Write;
    // Writing into a Vec cannot fail.
    let _ = write!(out, "[{}.{:03}, \"{code}\", \"", interval_ms / 1000, interval_ms % 1000);
}

/// Ends an event line after its data.
pub fn close_event(out: &mut Vec<u8>) {
    out.extend_from_slice(b"\"]\n");
}

/// Appends `text` as the inside of a JSON string. Runs that need no escaping (almost all
/// terminal output) are copied whole; this is the recorder's hottest loop.
pub fn escape_into(out: &mut Vec<u8>, text: &str) {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let bytes = text.as_bytes();
    let mut start = 0;
    let mut i = 0;
    while i < bytes.len() {
        // Skip eight clean bytes at a time.
        if let Some(word) = bytes.get(i..i + 8) {
            let mut eight = [0u8; 8];
            eight.copy_from_slice(word);
            if !needs_escape(u64::from_le_bytes(eight)) {
                i += 8;
                continue;
            }
        }
        let b = bytes[i];
        if b >= 0x20 && b != b'"' && b != b'\\' {
            i += 1;
            continue;
        }
        out.extend_from_slice(&bytes[start..i]);
        match b {
            b'"' => out.extend_from_slice(b"\\\""),
            b'\\' => out.extend_from_slice(b"\\\\"),
            b'\n' => out.extend_from_slice(b"\\n"),
            b'\r' => out.extend_from_slice(b"\\r"),
            b'\t' => out.extend_from_slice(b"\\t"),
            _ => out.extend_from_slice(&[b'\\', b'u', b'0', b'0', HEX[usize::from(b >> 4)], HEX[usize::from(b & 15)]]),
        }
        i += 1;
        start = i;
    }
    out.extend_from_slice(&bytes[start..]);
}

/// True when any of the eight bytes is a control character, `"` or `\` (SWAR: the
/// classic "has a zero byte" and "has a byte less than n" tricks).
fn needs_escape(word: u64) -> bool {
    const ONES: u64 = 0x0101_0101_0101_0101;
    const HIGHS: u64 = 0x8080_8080_8080_8080;
    let has_zero = |v: u64| v.wrapping_sub(ONES) & !v & HIGHS != 0;
    let below_space = word.wrapping_sub(ONES * 0x20) & !word & HIGHS != 0;
    below_space || has_zero(word ^ (ONES * u64::from(b'"'))) || has_zero(word ^ (ONES * u64::from(b'\\')))
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
    fn escaping_matches_serde_json() {
        let samples = ["plain", "a\"b\\c", "\u{1b}[1;31mred\u{1b}[0m\r\n\t", "größe → 😀", "\u{7f}\u{0}\u{1f}", ""];
        for text in samples {
            let mut ours = vec![b'"'];
            escape_into(&mut ours, text);
            ours.push(b'"');
            let parsed: String = serde_json::from_slice(&ours).unwrap();
            assert_eq!(parsed, text);
        }
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
