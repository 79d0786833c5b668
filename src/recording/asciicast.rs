//! asciicast v3 encoding: the header line, event lines with millisecond intervals that do
//! not drift, and UTF-8 decoding that carries incomplete sequences across chunks.
//!
//! Spec: <https://docs.asciinema.org/manual/asciicast/v3/>. Each event is
//! `[interval, code, data]` where `interval` is the time since the previous event.
//!
//! # Exact bytes
//!
//! Text events stay what players expect: `o` is what the terminal shows, `i` what was
//! typed, as UTF-8 with U+FFFD where the bytes were not UTF-8. So that every byte of each
//! stream can still be recovered exactly, two companion codes follow a text event directly,
//! at interval 0, in the same zstd frame (so under the same seal checkpoints):
//!
//! - `b` ([`BYTES`]): the preceding `o` (stdout) or `i` event's exact bytes, standard base64,
//!   written only when its text is not exactly its bytes (an invalid byte, a sequence cut
//!   short at the end).
//! - `e` ([`STDERR`]): the preceding `o` event came from stderr; its data is empty when the
//!   text is exactly its bytes, otherwise their base64.
//!
//! Per stream (stdout, stderr, input), concatenating each event's bytes (the companion's if
//! there is one, else the text's UTF-8) gives the stream exactly. A UTF-8 sequence split
//! across SSH packets is carried whole into the event that completes it, so a text event
//! never stands for half a character. asciinema-player, `asciinema` and our own readers
//! ignore codes they do not know. Recordings with these events say so in the header
//! (`"chaperone_bytes": 1`); older ones have neither, and their `o` events mix stdout and
//! stderr. An exec command that is not UTF-8 is in the header's `command` with U+FFFD,
//! and exactly (base64) in `chaperone_command`.

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
    /// The exec command's exact bytes (base64) when they are not UTF-8, so that `command`
    /// shows them with U+FFFD: what the target ran is kept too.
    #[serde(rename = "chaperone_command", skip_serializing_if = "Option::is_none", default)]
    pub command_bytes: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub title: Option<String>,
    /// The version of the exact-bytes companion events ([`BYTES`], [`STDERR`]) the events
    /// follow; absent in recordings made before them, whose exact bytes are not all kept.
    #[serde(rename = "chaperone_bytes", skip_serializing_if = "Option::is_none", default)]
    pub exact_bytes: Option<u32>,
}

/// The [`Header::exact_bytes`] version this encoder writes.
pub const EXACT_BYTES_VERSION: u32 = 1;

/// Companion code: the exact bytes (base64) of the `o` or `i` event before it, whose text
/// is not exactly its bytes.
pub const BYTES: &str = "b";

/// Companion code: the `o` event before it came from stderr; data empty when its text is
/// exact, else the exact bytes (base64).
pub const STDERR: &str = "e";

impl Header {
    /// The header of a recording made now; `command` is the exec command's bytes.
    pub fn new(term: Term, timestamp: i64, command: Option<&[u8]>, title: String) -> Header {
        use base64::Engine as _;
        let command_bytes = command
            .filter(|c| std::str::from_utf8(c).is_err())
            .map(|c| base64::engine::general_purpose::STANDARD.encode(c));
        Header {
            version: 3,
            term,
            timestamp,
            command: command.map(|c| String::from_utf8_lossy(c).into_owned()),
            command_bytes,
            title: Some(title),
            exact_bytes: Some(EXACT_BYTES_VERSION),
        }
    }
}

/// Decodes a byte stream as UTF-8 chunk by chunk. A sequence split across chunks is
/// carried to the next call; invalid bytes become U+FFFD. One per stream (stdout, stderr
/// and input each have their own), since interleaving would tear sequences apart.
#[derive(Debug, Default)]
pub struct Utf8Carry {
    pending: Vec<u8>,
    /// Set when invalid bytes became U+FFFD, until [`Utf8Carry::take_lossy`]: the encoder
    /// then keeps the exact bytes beside the text. Only ever set off the fast path.
    lossy: bool,
}

/// The bytes a [`Utf8Carry`] held before a chunk (at most three: an incomplete sequence),
/// copied without allocating so that the chunk can be decoded again.
#[derive(Debug, Clone, Copy, Default)]
pub struct Carried {
    bytes: [u8; 4],
    len: usize,
}

impl Carried {
    pub fn as_slice(&self) -> &[u8] {
        &self.bytes[..self.len]
    }
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

    /// True if invalid bytes became U+FFFD since the last call.
    pub fn take_lossy(&mut self) -> bool {
        std::mem::take(&mut self.lossy)
    }

    /// The incomplete sequence carried to the next chunk: not part of any text yet.
    pub fn pending(&self) -> &[u8] {
        &self.pending
    }

    /// A copy of what is carried, to [`Utf8Carry::restore`] before decoding a chunk again.
    pub fn carried(&self) -> Carried {
        let mut carried = Carried::default();
        let len = self.pending.len().min(carried.bytes.len());
        carried.bytes[..len].copy_from_slice(&self.pending[..len]);
        carried.len = len;
        carried
    }

    /// Puts back what was carried before a chunk (see [`Utf8Carry::carried`]).
    pub fn restore(&mut self, carried: Carried) {
        self.pending.clear();
        self.pending.extend_from_slice(carried.as_slice());
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
                            self.lossy = true;
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

/// Appends a companion event (`code` [`BYTES`] or [`STDERR`]) at interval 0 carrying
/// `bytes` as standard base64, which needs no JSON escaping.
pub fn push_bytes_event(out: &mut Vec<u8>, code: &str, bytes: &[u8]) {
    use base64::Engine as _;
    open_event(out, 0, code);
    let at = out.len();
    out.resize(at + base64::encoded_len(bytes.len(), true).unwrap_or(0), 0);
    // The slice was sized by `encoded_len`, so encoding into it cannot fall short.
    let written = base64::engine::general_purpose::STANDARD.encode_slice(bytes, &mut out[at..]).unwrap_or(0);
    out.truncate(at + written);
    close_event(out);
}

/// Appends `text` as the inside of a JSON string.
pub fn escape_into(out: &mut Vec<u8>, text: &str) {
    // Valid UTF-8 never leaves anything to carry.
    Utf8Carry::default().escape_slice(text.as_bytes(), out);
}

/// Bytes compared at once by the recorder's scan: the width of an SSE2 register.
const BLOCK: usize = 16;

/// Bytes that stop the fast copy: control characters, `"`, `\` and anything non-ASCII
/// (which must be validated as UTF-8). Written as a signed compare so that `< 0x20` and
/// `>= 0x80` are one comparison.
fn stops(b: u8) -> bool {
    ((b as i8) < 0x20) | (b == b'"') | (b == b'\\')
}

/// One bit per byte of `block` that [`stops`] the fast copy: three SSE2 compares and a
/// movemask (SSE2 is part of every x86-64 CPU).
#[cfg(target_arch = "x86_64")]
fn stop_mask(block: &[u8; BLOCK]) -> u32 {
    use std::arch::x86_64::{
        _mm_cmpeq_epi8, _mm_cmplt_epi8, _mm_movemask_epi8, _mm_or_si128, _mm_set_epi64x, _mm_set1_epi8,
    };
    let (lo, hi) = block.split_at(8);
    let word = |half: &[u8]| i64::from_le_bytes(half.try_into().unwrap_or_default());
    // SAFETY: these are register-only SSE2 operations (no memory access), and SSE2 is
    // part of the x86-64 baseline, so it is always available.
    unsafe {
        let v = _mm_set_epi64x(word(hi), word(lo));
        let control_or_high = _mm_cmplt_epi8(v, _mm_set1_epi8(0x20));
        let quote = _mm_cmpeq_epi8(v, _mm_set1_epi8(b'"' as i8));
        let backslash = _mm_cmpeq_epi8(v, _mm_set1_epi8(b'\\' as i8));
        _mm_movemask_epi8(_mm_or_si128(control_or_high, _mm_or_si128(quote, backslash))) as u32
    }
}

#[cfg(not(target_arch = "x86_64"))]
use stop_mask_portable as stop_mask;

/// One bit per byte of `block` that [`stops`] the fast copy, without SIMD.
#[cfg_attr(target_arch = "x86_64", allow(dead_code))]
fn stop_mask_portable(block: &[u8; BLOCK]) -> u32 {
    let mut mask = 0u32;
    for (k, &b) in block.iter().enumerate() {
        mask |= u32::from(stops(b)) << k;
    }
    mask
}

/// Width of a UTF-8 sequence from its leading byte (only called for leaders that
/// `from_utf8` reported as an incomplete, valid prefix).
fn utf8_width(leader: u8) -> usize {
    match leader {
        0xf0..=0xff => 4,
        0xe0..=0xef => 3,
        _ => 2,
    }
}

impl Utf8Carry {
    /// Decodes `chunk` as UTF-8 (carrying a split sequence, U+FFFD for invalid bytes) and
    /// appends it to `out` as the inside of a JSON string, in one pass. This is the
    /// recorder's hottest loop: clean ASCII is copied sixteen bytes at a time, and only
    /// non-ASCII runs are handed to the UTF-8 validator.
    pub fn escape_json_into(&mut self, mut chunk: &[u8], out: &mut Vec<u8>) {
        // Complete a carried sequence first: at most three more bytes.
        while !self.pending.is_empty() && !chunk.is_empty() {
            let mut joined = std::mem::take(&mut self.pending);
            let take = (utf8_width(joined[0]) - joined.len()).min(chunk.len());
            joined.extend_from_slice(&chunk[..take]);
            chunk = &chunk[take..];
            self.escape_slice(&joined, out);
        }
        self.escape_slice(chunk, out);
    }

    fn escape_slice(&mut self, bytes: &[u8], out: &mut Vec<u8>) {
        let mut i = 0;
        while i < bytes.len() {
            if let Some(block) = bytes.get(i..).and_then(|b| b.first_chunk::<BLOCK>()) {
                // Copy the whole block, then take back what follows its first stop: a
                // fixed-size copy is a single store, a variable one a memcpy call.
                out.extend_from_slice(block);
                let mask = stop_mask(block);
                if mask == 0 {
                    i += BLOCK;
                    continue;
                }
                let clean = mask.trailing_zeros() as usize;
                out.truncate(out.len() - (BLOCK - clean));
                i += clean;
            } else {
                let rest = &bytes[i..];
                let clean = rest.iter().position(|&b| stops(b)).unwrap_or(rest.len());
                out.extend_from_slice(&rest[..clean]);
                i += clean;
                if i == bytes.len() {
                    return;
                }
            }
            let b = bytes[i];
            if b < 0x80 {
                // CR LF, the end of every line on a terminal, is one stop instead of two.
                let crlf = b == b'\r' && bytes.get(i + 1) == Some(&b'\n');
                let (text, len) = &ESCAPES[if crlf { CRLF } else { usize::from(b) }];
                out.extend_from_slice(text);
                out.truncate(out.len() - (text.len() - usize::from(*len)));
                i += 1 + usize::from(crlf);
                continue;
            }
            // A run of non-ASCII bytes: every byte of a multi-byte sequence is >= 0x80, so a
            // valid sequence never spans an ASCII byte.
            let run_end = bytes[i..].iter().position(|&b| b < 0x80).map_or(bytes.len(), |n| i + n);
            i += self.decode_run(&bytes[i..run_end], run_end == bytes.len(), out);
        }
    }

    /// Validates one run of non-ASCII bytes and copies it; returns how many bytes were
    /// consumed (all of them, unless an incomplete sequence at the chunk's end is carried).
    fn decode_run(&mut self, mut run: &[u8], at_end: bool, out: &mut Vec<u8>) -> usize {
        let len = run.len();
        loop {
            match std::str::from_utf8(run) {
                Ok(text) => {
                    out.extend_from_slice(text.as_bytes());
                    return len;
                }
                Err(err) => {
                    let (valid, rest) = run.split_at(err.valid_up_to());
                    out.extend_from_slice(valid);
                    match err.error_len() {
                        Some(bad) => {
                            self.lossy = true;
                            out.extend_from_slice("\u{fffd}".as_bytes());
                            run = &rest[bad..];
                        }
                        None if at_end => {
                            self.pending.extend_from_slice(rest);
                            return len;
                        }
                        // An incomplete sequence followed by ASCII: invalid, one U+FFFD.
                        None => {
                            self.lossy = true;
                            out.extend_from_slice("\u{fffd}".as_bytes());
                            return len;
                        }
                    }
                }
            }
        }
    }
}

/// The JSON escape of each ASCII byte, padded to six bytes, with its length (bytes that
/// need none map to themselves), and at [`CRLF`] the escape of CR LF.
const ESCAPES: [([u8; 6], u8); 129] = {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let mut table = [([0u8; 6], 1u8); 129];
    let mut b = 0;
    while b < 128 {
        table[b] = match b as u8 {
            b'"' => (*b"\\\"    ", 2),
            b'\\' => (*b"\\\\    ", 2),
            b'\n' => (*b"\\n    ", 2),
            b'\r' => (*b"\\r    ", 2),
            b'\t' => (*b"\\t    ", 2),
            0..0x20 => ([b'\\', b'u', b'0', b'0', HEX[b >> 4], HEX[b & 15]], 6),
            other => ([other, 0, 0, 0, 0, 0], 1),
        };
        b += 1;
    }
    table[CRLF] = (*b"\\r\\n  ", 4);
    table
};

/// Where [`ESCAPES`] keeps CR LF.
const CRLF: usize = 128;

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
    fn simd_stop_mask_agrees_with_the_portable_one() {
        for first in 0..=255u8 {
            let mut block = *b"plain text here.";
            block[first as usize % BLOCK] = first;
            block[(first as usize * 7 + 3) % BLOCK] = first.wrapping_mul(31);
            assert_eq!(stop_mask(&block), stop_mask_portable(&block), "{block:?}");
        }
    }

    /// The fused decoder and escaper against the obvious composition (lossy UTF-8, then
    /// serde_json), on byte soup split at random points.
    #[test]
    fn fused_escape_matches_lossy_decode_then_serde_json() {
        let pieces: [&[u8]; 14] = [
            b"plain ascii text that is long enough to fill blocks",
            b"\x1b[1;31m",
            b"\r\n",
            b"\"q\\",
            "größe".as_bytes(),
            "→".as_bytes(),
            "😀".as_bytes(),
            b"\xff",
            b"\xe2\x82",
            b"\xf0\x9f",
            b"\xc3",
            b"\x80\x80",
            b"\x00\x7f\t",
            b"0123456789abcdef",
        ];
        let mut next = crate::recording::xorshift(0x2545_f491_4f6c_dd1du64);
        for _ in 0..2000 {
            let mut bytes = Vec::new();
            for _ in 0..next(40) {
                bytes.extend_from_slice(pieces[next(pieces.len())]);
            }
            let mut expected = serde_json::to_vec(&String::from_utf8_lossy(&bytes)).unwrap();
            expected.remove(0);
            expected.pop();
            let mut carry = Utf8Carry::default();
            let mut out = Vec::new();
            let mut rest = &bytes[..];
            while !rest.is_empty() {
                let (now, later) = rest.split_at(next(rest.len() + 1).max(1).min(rest.len()));
                carry.escape_json_into(now, &mut out);
                rest = later;
            }
            let mut tail = String::new();
            carry.finish(&mut tail);
            escape_into(&mut out, &tail);
            let ours: String = serde_json::from_slice(&[b"\"", &out[..], b"\""].concat()).unwrap();
            let theirs: String = serde_json::from_slice(&[b"\"", &expected[..], b"\""].concat()).unwrap();
            assert_eq!(ours, theirs, "input {bytes:x?}");
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
