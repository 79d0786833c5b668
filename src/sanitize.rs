//! What a vendor's output may not do to the people who see it: its control strings are
//! removed before it reaches a technician watching live or anyone replaying it. OSC
//! (titles, the clipboard via OSC 52, hyperlinks), DCS, SOS, PM and APC go, 7-bit and C1
//! (UTF-8 encoded) forms alike: a vendor must not write the clipboard or the title of the
//! person watching (chaperone's status line is in that title), nor make their terminal
//! answer into their keyboard input. Everything else, colours and cursor movement
//! included, passes. The state carries across chunks, since a sequence may be split.

/// A control string longer than this is taken as text from there on.
pub const MAX_CONTROL_STRING: usize = 4096;

#[derive(Debug, Default)]
pub struct Sanitizer {
    state: Strip,
    /// Bytes of the current control string dropped so far.
    dropped: usize,
}

#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
enum Strip {
    #[default]
    Text,
    /// After a 0xC2 byte in text: the next byte may make it a C1 control.
    TextC2,
    /// After ESC in text.
    Escape,
    /// Inside a control string (dropped).
    String,
    /// After 0xC2 inside a control string: 0x9C (ST) would end it.
    StringC2,
    /// After ESC inside a control string: `\` ends it (ST).
    StringEscape,
}

const ESC: u8 = 0x1b;

impl Sanitizer {
    /// Filters a chunk of raw output (not necessarily whole UTF-8 characters) into `out`.
    pub fn filter_bytes(&mut self, input: &[u8], out: &mut Vec<u8>) {
        for &b in input {
            self.byte(b, out);
        }
    }

    /// Filters decoded text into `out`.
    pub fn filter(&mut self, text: &str, out: &mut String) {
        let mut bytes = std::mem::take(out).into_bytes();
        self.filter_bytes(text.as_bytes(), &mut bytes);
        *out = match String::from_utf8(bytes) {
            Ok(text) => text,
            Err(e) => String::from_utf8_lossy(e.as_bytes()).into_owned(),
        };
    }

    fn byte(&mut self, b: u8, out: &mut Vec<u8>) {
        self.state = match (self.state, b) {
            (Strip::Text, ESC) => Strip::Escape,
            (Strip::Text, 0xc2) => Strip::TextC2,
            (Strip::Text, b) => {
                out.push(b);
                Strip::Text
            }
            // DCS, SOS, OSC, PM and APC as single (UTF-8 encoded) C1 characters.
            (Strip::TextC2, 0x90 | 0x98 | 0x9d | 0x9e | 0x9f) => self.start_string(),
            // A 0xC2 that nothing continues is no character: written as U+FFFD, since a lone
            // 0xC2 would join the byte after a removed string into a C1 control.
            (Strip::TextC2, b) if b & 0xc0 != 0x80 => {
                out.extend_from_slice("\u{fffd}".as_bytes());
                return self.again(b, out);
            }
            (Strip::TextC2, b) => {
                out.push(0xc2);
                return self.again(b, out);
            }
            (Strip::Escape | Strip::StringEscape, b']' | b'P' | b'X' | b'^' | b'_') => self.start_string(),
            (Strip::StringEscape, b'\\') => Strip::Text,
            // An ESC that another ESC (or a non-ASCII byte) follows does nothing on a
            // terminal; written, it would join what follows a removed string (`ESC ESC ]…
            // BEL ]52;…` would become `ESC ]52;…`). So it goes.
            (Strip::Escape, ESC) => Strip::Escape,
            (Strip::Escape | Strip::StringEscape, 0xc2) => Strip::TextC2,
            // ESC inside a string ends it; this ESC starts a new sequence.
            (Strip::StringEscape, ESC) => Strip::Escape,
            (Strip::Escape | Strip::StringEscape, b) => {
                out.push(ESC);
                return self.again(b, out);
            }
            (Strip::String, 0x07) => Strip::Text,
            (Strip::String, ESC) => Strip::StringEscape,
            // An unterminated string must not hide the rest of the session (resumed at a
            // character's first byte).
            (Strip::String, b) if self.dropped >= MAX_CONTROL_STRING && b & 0xc0 != 0x80 => {
                return self.again(b, out);
            }
            (Strip::String, 0xc2) => Strip::StringC2,
            (Strip::String, _) => {
                self.dropped += 1;
                Strip::String
            }
            (Strip::StringC2, 0x9c) => Strip::Text,
            (Strip::StringC2, b) => {
                self.dropped += 1;
                self.state = Strip::String;
                return self.byte(b, out);
            }
        };
    }

    /// Takes `b` as text, as if no sequence had been under way.
    fn again(&mut self, b: u8, out: &mut Vec<u8>) {
        self.state = Strip::Text;
        self.byte(b, out);
    }

    fn start_string(&mut self) -> Strip {
        self.dropped = 0;
        Strip::String
    }
}

/// A writer that passes what is written through a [`Sanitizer`]: recorded output printed
/// on a terminal.
pub struct SanitizingWriter<'a> {
    inner: &'a mut dyn std::io::Write,
    sanitizer: Sanitizer,
    buf: Vec<u8>,
}

impl<'a> SanitizingWriter<'a> {
    pub fn new(inner: &'a mut dyn std::io::Write) -> SanitizingWriter<'a> {
        SanitizingWriter { inner, sanitizer: Sanitizer::default(), buf: Vec::new() }
    }
}

impl std::io::Write for SanitizingWriter<'_> {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        self.buf.clear();
        self.sanitizer.filter_bytes(bytes, &mut self.buf);
        self.inner.write_all(&self.buf)?;
        Ok(bytes.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.inner.flush()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn control_strings_are_removed_even_when_split() {
        let recorded = [
            "a\u{1b}]52;c;ZXZpbA==\u{7}b\u{1b}[1mc",
            "\u{1b}]0;ti",
            "tle\u{1b}",
            "\\d\u{1b}Pq#0\u{1b}\\e\u{9d}8;;x\u{9c}f\u{1b}",
            "[0mg",
        ];
        let mut sanitizer = Sanitizer::default();
        let mut out = String::new();
        for piece in recorded {
            sanitizer.filter(piece, &mut out);
        }
        assert_eq!(out, "ab\u{1b}[1mcdef\u{1b}[0mg");

        // A string ended by the ESC of another string: both go.
        let mut out = String::new();
        Sanitizer::default().filter("\u{1b}]0;x\u{1b}]52;c;ZXZpbA==\u{7}h", &mut out);
        assert_eq!(out, "h");
        // An unterminated string does not hide the rest of the session.
        let mut out = String::new();
        let hidden = format!("\u{1b}]{}visible", "x".repeat(MAX_CONTROL_STRING));
        Sanitizer::default().filter(&hidden, &mut out);
        assert_eq!(out, "visible");
    }

    #[test]
    fn raw_output_split_inside_characters_keeps_its_text() {
        // Live output comes in chunks that may split a character or a C1 control.
        let raw = "é\u{1b}[32mgrün\u{1b}[0m \u{9d}52;c;eA==\u{9c}ß \u{1b}]2;t\u{7}€".as_bytes();
        for cut in 0..raw.len() {
            let mut sanitizer = Sanitizer::default();
            let mut out = Vec::new();
            sanitizer.filter_bytes(&raw[..cut], &mut out);
            sanitizer.filter_bytes(&raw[cut..], &mut out);
            assert_eq!(String::from_utf8(out).unwrap(), "é\u{1b}[32mgrün\u{1b}[0m ß €", "cut at {cut}");
        }
    }
}
