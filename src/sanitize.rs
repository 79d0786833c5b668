//! What a vendor's output may not do to the people who see it: the sequences that would
//! act on the terminal of a technician watching live, replaying or printing a recording
//! (`recordings cat` on a terminal) are removed first.
//!
//! - Control strings go whole: OSC (titles, the clipboard via OSC 52, colour queries,
//!   hyperlinks), DCS (DECRQSS, XTGETTCAP), SOS, PM and APC. A vendor must not write the
//!   clipboard or the title of the person watching (chaperone's status line is there).
//! - Nothing that makes the terminal answer: an answer arrives as the watcher's typing,
//!   and during a take-over it would reach the target as if the technician had typed it.
//!   Gone are status and cursor reports (`CSI n`), device attributes (`CSI c`, `>c`,
//!   `=c`, `ESC Z`), window reports and operations (`CSI t`), mode and state reports
//!   (`CSI $p`, `$u`, `$w`), terminal parameters (`CSI x`), XTVERSION, XTQMODKEYS,
//!   XTSMGRAPHICS, checksums (`CSI *y`), locator and colour reports, media copy (`CSI i`),
//!   the DEC reports `CSI & u`, `CSI " v`, `CSI + x`, and ENQ (answerback).
//! - Nothing that changes what the watcher's keys send (kitty keyboard flags,
//!   modifyOtherKeys and formatOtherKeys, 8-bit controls, keyboard lock, the VT52 mode) or
//!   makes the terminal report the mouse (the wheel as arrow keys too), focus, resizes or
//!   theme changes on its own, set or restored (XTRESTORE).
//!
//! Everything else, colours and cursor movement included, passes unchanged. Both 7-bit
//! (`ESC [`) and 8-bit forms (U+009B, C2 9B in UTF-8) are recognised. A lone C1 byte
//! (0x80-0x9F outside a UTF-8 character), which an 8-bit terminal would take for a
//! control such as CSI, becomes U+FFFD, what a UTF-8 terminal shows for it; inside a
//! character it is text. The state carries across chunks, since a sequence may be split
//! anywhere. Where the sanitizer is unsure (an overlong or malformed sequence) it drops
//! the introducer: what follows then reaches the terminal as plain text, which can do
//! nothing.

/// A control string longer than this is taken as text from there on.
pub const MAX_CONTROL_STRING: usize = 4096;

/// Longest escape or CSI sequence held back until its final byte decides its fate. Real
/// ones are a few dozen bytes; a longer one loses its introducer (the rest shows as text),
/// so a vendor cannot make the bastion hold unbounded output.
pub const MAX_SEQUENCE: usize = 256;

/// Private modes (DECSET) that make the terminal send reports without anyone typing:
/// mouse tracking and its encodings (9, 1000-1006, 1015, 1016), focus events (1004),
/// theme change reports (2031) and in-band resize reports (2048); and Windows Terminal's
/// win32-input-mode (9001), which turns every key (Ctrl-] too) into a report; alternate
/// scroll (1007), which turns the mouse wheel into arrow keys; and the VT52 mode (2
/// reset), in which the keys send other codes and the terminal reads another language.
/// Taken out of mode restores (XTRESTORE) too: a saved mode would come back on.
const REPORTING_MODES: &[&[u8]] = &[
    b"2", b"9", b"1000", b"1001", b"1002", b"1003", b"1004", b"1005", b"1006", b"1007", b"1015", b"1016", b"2031",
    b"2048", b"9001",
];

#[derive(Debug, Default)]
pub struct Sanitizer {
    state: Strip,
    /// The escape or CSI sequence under way, introducer included: held until its final
    /// byte shows whether it may reach the terminal. At most [`MAX_SEQUENCE`] bytes.
    held: Vec<u8>,
    /// Bytes of the current control string dropped so far.
    dropped: usize,
    /// UTF-8 continuation bytes still due in text: a byte in 0x80..=0xBF is then part of
    /// a character, not an 8-bit control.
    continuation: u8,
}

#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
enum Strip {
    #[default]
    Text,
    /// After a 0xC2 byte in text: the next byte may make it a C1 control.
    TextC2,
    /// After ESC in text (held).
    Escape,
    /// After ESC and intermediate bytes (held).
    EscapeIntermediate,
    /// Inside a CSI sequence (held).
    Csi,
    /// Inside a control string (dropped).
    String,
    /// After 0xC2 inside a control string: 0x9C (ST) would end it.
    StringC2,
    /// After ESC inside a control string: `\` ends it (ST).
    StringEscape,
}

const ESC: u8 = 0x1b;
/// Enquiry: the terminal answers with its answerback message.
const ENQ: u8 = 0x05;
/// CAN and SUB abort a sequence under way.
const CAN: u8 = 0x18;
const SUB: u8 = 0x1a;
const DEL: u8 = 0x7f;
/// What a UTF-8 terminal shows for a byte that is no character: a lone C1 byte becomes it.
const REPLACEMENT: &[u8] = "\u{fffd}".as_bytes();
/// C1 CSI, DECID (SCI) and the string introducers DCS, SOS, OSC, PM, APC.
const C1_CSI: u8 = 0x9b;
const C1_DECID: u8 = 0x9a;
const C1_STRINGS: [u8; 5] = [0x90, 0x98, 0x9d, 0x9e, 0x9f];

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
        match self.state {
            Strip::Text => self.text(b, out),
            Strip::TextC2 => {
                self.state = Strip::Text;
                match b {
                    C1_CSI => self.hold(&[0xc2, C1_CSI], Strip::Csi),
                    b if C1_STRINGS.contains(&b) => self.start_string(),
                    // DECID: the terminal answers with its attributes.
                    C1_DECID => {}
                    0x80..=0xbf => out.extend_from_slice(&[0xc2, b]),
                    // A 0xC2 that nothing continues is no character (a terminal shows
                    // U+FFFD): written raw it could pair with what a later pass or chunk
                    // puts after it.
                    b => {
                        out.extend_from_slice(REPLACEMENT);
                        self.text(b, out);
                    }
                }
            }
            Strip::Escape => match b {
                b'[' => {
                    self.held.push(b);
                    self.state = Strip::Csi;
                }
                b']' | b'P' | b'X' | b'^' | b'_' => self.start_string(),
                // DECID: answers like `CSI c`.
                b'Z' => self.cancel(),
                0x20..=0x2f => {
                    self.held.push(b);
                    self.state = Strip::EscapeIntermediate;
                }
                0x30..=0x7e => self.emit(b, out),
                b => self.in_sequence(b, out),
            },
            Strip::EscapeIntermediate => match b {
                0x20..=0x2f if self.held.len() < MAX_SEQUENCE => self.held.push(b),
                0x30..=0x7e => {
                    // `ESC %`: another coding system (8-bit controls would then hide in
                    // what reads as UTF-8); `ESC SP F/G`: 7- or 8-bit controls in the
                    // terminal's answers and keys.
                    let changes_coding = matches!(self.held.get(1), Some(b'%' | b' '));
                    if changes_coding { self.cancel() } else { self.emit(b, out) }
                }
                b => self.in_sequence(b, out),
            },
            Strip::Csi => match b {
                0x20..=0x3f if self.held.len() < MAX_SEQUENCE => self.held.push(b),
                0x40..=0x7e => {
                    self.held.push(b);
                    if let Some(shown) = csi_shown(&self.held) {
                        out.extend_from_slice(&shown);
                    }
                    self.cancel();
                }
                b => self.in_sequence(b, out),
            },
            Strip::String => match b {
                0x07 | CAN | SUB => self.state = Strip::Text,
                ESC => self.state = Strip::StringEscape,
                // An unterminated string must not hide the rest of the session (resumed at a
                // character's first byte).
                b if self.dropped >= MAX_CONTROL_STRING && b & 0xc0 != 0x80 => {
                    self.state = Strip::Text;
                    self.text(b, out);
                }
                0xc2 => self.state = Strip::StringC2,
                _ => self.dropped += 1,
            },
            Strip::StringC2 => match b {
                0x9c => self.state = Strip::Text,
                b => {
                    self.dropped += 1;
                    self.state = Strip::String;
                    self.byte(b, out);
                }
            },
            Strip::StringEscape => match b {
                b'\\' => self.state = Strip::Text,
                b']' | b'P' | b'X' | b'^' | b'_' => self.start_string(),
                // ESC inside a string ends it; this ESC starts a new sequence.
                b => {
                    self.state = Strip::Text;
                    self.hold(&[ESC], Strip::Escape);
                    self.byte(b, out);
                }
            },
        }
    }

    /// A byte of text (no sequence under way).
    fn text(&mut self, b: u8, out: &mut Vec<u8>) {
        if self.continuation > 0 {
            if (0x80..=0xbf).contains(&b) {
                self.continuation -= 1;
                out.push(b);
                return;
            }
            // A broken character: the terminal shows a replacement and reads on.
            self.continuation = 0;
        }
        match b {
            ESC => self.hold(&[ESC], Strip::Escape),
            ENQ => {}
            0xc2 => self.state = Strip::TextC2,
            // A C1 byte outside any character: an 8-bit terminal would act on it.
            0x80..=0x9f => out.extend_from_slice(REPLACEMENT),
            b => {
                self.continuation = match b {
                    0xc3..=0xdf => 1,
                    0xe0..=0xef => 2,
                    0xf0..=0xf4 => 3,
                    _ => 0,
                };
                out.push(b);
            }
        }
    }

    /// A byte that is neither parameter nor final inside an escape or CSI sequence.
    fn in_sequence(&mut self, b: u8, out: &mut Vec<u8>) {
        match b {
            // Restarts the sequence.
            ESC => self.hold(&[ESC], Strip::Escape),
            CAN | SUB => self.cancel(),
            // Ignored by terminals inside a sequence.
            DEL => {}
            ENQ => {}
            // Other C0 controls act at once, the sequence goes on: they may go ahead of it.
            0x00..=0x1f => out.push(b),
            // Overlong, malformed, or not ASCII: without its introducer the rest is text.
            b => {
                self.cancel();
                self.text(b, out);
            }
        }
    }

    fn hold(&mut self, introducer: &[u8], state: Strip) {
        self.held.clear();
        self.held.extend_from_slice(introducer);
        self.continuation = 0;
        self.state = state;
    }

    /// The held sequence ends with `last` and reaches the terminal as it is.
    fn emit(&mut self, last: u8, out: &mut Vec<u8>) {
        out.extend_from_slice(&self.held);
        out.push(last);
        self.cancel();
    }

    /// The held sequence goes nowhere.
    fn cancel(&mut self) {
        self.held.clear();
        self.state = Strip::Text;
    }

    fn start_string(&mut self) {
        self.held.clear();
        self.dropped = 0;
        self.continuation = 0;
        self.state = Strip::String;
    }
}

/// What of a whole CSI sequence (introducer to final byte) may reach the terminal: all of
/// it, part of it (a mode setting without its reporting modes), or nothing.
fn csi_shown(sequence: &[u8]) -> Option<Vec<u8>> {
    // `ESC [` or C2 9B.
    let intro = 2;
    let (&last, body) = sequence.get(intro..)?.split_last()?;
    let (prefix, rest) = match body.first() {
        Some(p @ (b'<' | b'=' | b'>' | b'?')) => (Some(*p), &body[1..]),
        _ => (None, body),
    };
    let split = rest.iter().position(|b| (0x20..=0x2f).contains(b)).unwrap_or(rest.len());
    let (params, intermediates) = rest.split_at(split);
    // Parameters after an intermediate, or a private marker in the middle: terminals
    // ignore such a sequence, and so do we.
    if !intermediates.iter().all(|b| (0x20..=0x2f).contains(b)) || params.iter().any(|b| (0x3c..=0x3f).contains(b)) {
        return None;
    }
    let answers = match (prefix, intermediates, last) {
        // Status and cursor reports, device attributes, media copy, checksums and tests.
        (_, _, b'n' | b'c' | b'i' | b'y') => true,
        // Window reports and operations, terminal parameters.
        (_, b"", b't' | b'x') => true,
        // Mode, terminal state and presentation state reports.
        (_, b"$", b'p' | b'u' | b'w') => true,
        // Kitty keyboard flags and modifyOtherKeys (what keys send), and their queries.
        (Some(_), b"", b'u' | b'm') => true,
        // XTSMGRAPHICS, XTVERSION.
        (Some(b'?'), b"", b'S') | (Some(b'>'), b"", b'q') => true,
        // Locator reports and the events that trigger them.
        (_, b"'", b'w' | b'z' | b'{' | b'|') => true,
        // XTREPORTSGR, XTREPORTCOLORS.
        (_, b"#", b'|' | b'R') => true,
        // User-preferred supplemental set, displayed extent, key function modes (DEC
        // reports some terminals answer).
        (_, b"&", b'u') | (_, b"\"", b'v') | (_, b"+", b'x') => true,
        // formatOtherKeys: the form modified keys are sent in.
        (Some(b'>'), b"", b'f') => true,
        _ => false,
    };
    if answers {
        return None;
    }
    let forbidden: &[&[u8]] = match (prefix, intermediates, last) {
        (Some(b'?'), b"", b'h' | b'l' | b'r') => REPORTING_MODES,
        // Keyboard action mode: locks the keyboard (the watcher's control keys too).
        (None, b"", b'h' | b'l') => &[b"2"],
        _ => return Some(sequence.to_vec()),
    };
    let kept: Vec<&[u8]> = params.split(|&b| b == b';').filter(|mode| !forbidden.contains(mode)).collect();
    if kept.len() == params.split(|&b| b == b';').count() {
        return Some(sequence.to_vec());
    }
    if kept.is_empty() {
        return None;
    }
    let mut shown = sequence[..intro].to_vec();
    shown.extend(prefix);
    shown.extend_from_slice(&kept.join(&b';'));
    shown.push(last);
    Some(shown)
}

/// Stored text shown on one line (a name, a reason, a note, an audit detail, a plan's
/// title): every character that acts on a terminal (see [`crate::names::acts_on_terminal`])
/// is shown as its escape (`\u{1b}`, `\n`) instead. Rows written before input was checked
/// may hold them.
pub fn printable_line(text: &str) -> std::borrow::Cow<'_, str> {
    escape(text, |_, _| false)
}

/// Stored text shown as lines (a plan): the same, but tabs and line ends (LF, CRLF) stay.
pub fn printable_text(text: &str) -> std::borrow::Cow<'_, str> {
    escape(text, |c, next| c == '\n' || c == '\t' || (c == '\r' && next == Some('\n')))
}

fn escape(text: &str, keep: impl Fn(char, Option<char>) -> bool) -> std::borrow::Cow<'_, str> {
    let mut chars = text.chars().peekable();
    let mut shown = String::new();
    let mut changed = false;
    while let Some(c) = chars.next() {
        if crate::names::acts_on_terminal(c) && !keep(c, chars.peek().copied()) {
            shown.extend(c.escape_default());
            changed = true;
        } else {
            shown.push(c);
        }
    }
    if changed { std::borrow::Cow::Owned(shown) } else { std::borrow::Cow::Borrowed(text) }
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

    fn sanitized(input: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        Sanitizer::default().filter_bytes(input, &mut out);
        out
    }

    /// Every cut of `input` into two chunks gives `expected`.
    fn check_every_cut(input: &[u8], expected: &[u8]) {
        for cut in 0..=input.len() {
            let mut sanitizer = Sanitizer::default();
            let mut out = Vec::new();
            sanitizer.filter_bytes(&input[..cut], &mut out);
            sanitizer.filter_bytes(&input[cut..], &mut out);
            assert_eq!(
                String::from_utf8_lossy(&out),
                String::from_utf8_lossy(expected),
                "{:?} cut at {cut}",
                String::from_utf8_lossy(input)
            );
        }
    }

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
        check_every_cut(raw, "é\u{1b}[32mgrün\u{1b}[0m ß €".as_bytes());
    }

    /// Each query, in each form it can take, is removed whole, wherever the output is
    /// split; the text around it stays.
    #[test]
    fn nothing_that_makes_the_terminal_answer_passes() {
        let queries: &[&str] = &[
            // Status and cursor position reports (DSR, CPR, DECXCPR, printer, keyboard).
            "[5n",
            "[6n",
            "[?6n",
            "[?15n",
            "[?26n",
            "[?996n",
            "[>1n",
            // Device attributes: primary, secondary, tertiary.
            "[c",
            "[0c",
            "[>c",
            "[>0c",
            "[=c",
            // Window reports and operations.
            "[11t",
            "[13t",
            "[14t",
            "[14;2t",
            "[16t",
            "[18t",
            "[19t",
            "[21t",
            "[22;0t",
            "[3;0;0t",
            "[8;100;300t",
            // Mode, state and parameter reports.
            "[?2026$p",
            "[4$p",
            "[1$u",
            "[1$w",
            "[1x",
            "[>q",
            "[>0q",
            "[?m",
            "[?4m",
            "[>4;2m",
            "[?1;1;0S",
            "[1;1;1;1;1;1*y",
            "[1'|",
            "[1;1'z",
            "[1;1;1;1#|",
            "[#R",
            "[?u",
            "[>1u",
            "[=1;1u",
            "[<u",
            "[5i",
            // Reporting modes alone.
            "[?1000h",
            "[?1004h",
            "[?1006h",
            "[?1000;1002;1006h",
            "[?2048h",
            "[?9001h",
            "[?1007h",
            "[?2l",
            "[?1000;1006r",
            "[2h",
            // DEC reports: supplemental set, displayed extent, key function modes.
            "[&u",
            "[\"v",
            "[+x",
            "[>4;1f",
            // Control strings: colour queries, clipboard read, DECRQSS, XTGETTCAP, kitty.
            "]4;1;?\u{7}",
            "]10;?\u{7}",
            "]11;?\u{1b}\\",
            "]12;?\u{7}",
            "]52;c;?\u{7}",
            "P$qm\u{1b}\\",
            "P+q544e\u{1b}\\",
            "_Gi=1,a=q;\u{1b}\\",
            // DECID and what changes the terminal's coding.
            "Z",
            " G",
            "%@",
        ];
        for query in queries {
            let forms: Vec<Vec<u8>> = match query.as_bytes() {
                [b'[', rest @ ..] => {
                    vec![[b"\x1b[", rest].concat(), [&[0xc2, 0x9b], rest].concat()]
                }
                [b']', rest @ ..] => vec![[b"\x1b]", rest].concat(), [&[0xc2, 0x9d], rest].concat()],
                [b'P', rest @ ..] => vec![[b"\x1bP", rest].concat(), [&[0xc2, 0x90], rest].concat()],
                rest => vec![[b"\x1b", rest].concat()],
            };
            for form in forms {
                let input = [b"ab".as_slice(), &form, "cé".as_bytes()].concat();
                check_every_cut(&input, "abcé".as_bytes());
            }
        }
        // ENQ (answerback), and 8-bit DECID.
        check_every_cut(b"a\x05b\xc2\x9ac", b"abc");
        // Lone C1 bytes (8-bit CSI, OSC, DECID) are no controls any more.
        check_every_cut(b"a\x9b6n\x9d0;t\x07\x9a", "a\u{fffd}6n\u{fffd}0;t\u{7}\u{fffd}".as_bytes());
        // A C0 control inside a query still acts; the query does not.
        check_every_cut(b"a\x1b[6\nn\x1b[\x05cb", b"a\nb");
    }

    #[test]
    fn what_draws_the_screen_passes_unchanged() {
        let drawing = [
            "\u{1b}[1;31mred\u{1b}[0m",
            "\u{1b}[2J\u{1b}[H\u{1b}[10;20H\u{1b}[K\u{1b}[3A\u{1b}[2C",
            "\u{1b}[?1049h\u{1b}[?25l\u{1b}[?2004h\u{1b}[?1h\u{1b}=\u{1b}[1;24r\u{1b}[?1049l\u{1b}[?25h",
            "\u{1b}7\u{1b}8\u{1b}M\u{1b}(B\u{1b})0\u{1b}#8\u{1b}c\u{1b}[s\u{1b}[u",
            "\u{1b}[38;2;10;20;30m\u{1b}[38:5:200m\u{1b}[4:3m\u{1b}[2 q\u{1b}[!p\u{1b}[4h\u{1b}[4l",
            "\u{1b}[2;5$z\u{1b}[?5W\u{1b}[3g\u{1b}[1;2;3;4$x",
            "tab\tbell\u{7}cr\rlf\nbs\u{8}",
            "Ûbersicht ěšč 日本語 😀 →›",
            "nel\u{85}",
        ];
        for text in drawing {
            check_every_cut(text.as_bytes(), text.as_bytes());
        }
    }

    #[test]
    fn stored_text_is_printed_with_its_controls_escaped() {
        assert!(matches!(printable_line("plain, ä → ok"), std::borrow::Cow::Borrowed(_)));
        assert_eq!(printable_line("a\u{1b}[6nb\nc\u{202e}d\u{9b}"), "a\\u{1b}[6nb\\nc\\u{202e}d\\u{9b}");
        assert_eq!(printable_text("# t\r\n\tx\ry\u{7}\n"), "# t\r\n\tx\\ry\\u{7}\n");
    }

    #[test]
    fn reporting_modes_are_taken_out_of_a_mode_setting() {
        check_every_cut(b"\x1b[?1049;1000;25h", b"\x1b[?1049;25h");
        check_every_cut(b"\xc2\x9b?1006;2004l", b"\xc2\x9b?2004l");
        check_every_cut(b"\x1b[2;4h", b"\x1b[4h");
        // XTRESTORE would switch a saved mouse mode back on; the other modes restore.
        check_every_cut(b"\x1b[?1049;1000r", b"\x1b[?1049r");
    }

    #[test]
    fn malformed_or_overlong_sequences_lose_their_introducer() {
        // A non-ASCII byte inside a query: the query is gone, the text stays.
        check_every_cut("\u{1b}[6é n".as_bytes(), "é n".as_bytes());
        // Cancelled by CAN, restarted by ESC.
        check_every_cut(b"\x1b[6\x18n\x1b[1\x1b[6nx", b"nx");
        // Parameters after an intermediate.
        check_every_cut(b"\x1b[1$2p", b"");
        // Overlong: shown as text, never held without bound.
        let long = format!("\u{1b}[{}n", "1".repeat(MAX_SEQUENCE * 4));
        let out = sanitized(long.as_bytes());
        assert!(!out.contains(&ESC) && out.len() > MAX_SEQUENCE, "{}", String::from_utf8_lossy(&out));
        // A C1 byte inside a UTF-8 character is text: "Û" is C3 9B.
        check_every_cut("Û6n".as_bytes(), "Û6n".as_bytes());
    }
}
