//! Recordings as text: terminal output as lines without escape sequences, and the command
//! lines a vendor typed (reconstructed from input, with editing keys applied as well as
//! can be done without the target's line editor).

use super::reader::CastEvent;

/// A line of text and when (ms from the start) it was complete.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Line {
    pub time_ms: u64,
    pub text: String,
}

/// Strips ANSI/VT escape sequences (CSI, OSC, two-byte ESC sequences) and control
/// characters but tab.
pub fn strip_escapes(text: &str, out: &mut String) {
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '\u{1b}' => match chars.next() {
                Some('[') => {
                    // CSI: parameters and intermediates until a final byte @..~.
                    for c in chars.by_ref() {
                        if ('@'..='~').contains(&c) {
                            break;
                        }
                    }
                }
                Some(']') => {
                    // OSC: until BEL or ST (ESC \).
                    while let Some(c) = chars.next() {
                        if c == '\u{7}' || (c == '\u{1b}' && chars.peek() == Some(&'\\')) {
                            if c == '\u{1b}' {
                                chars.next();
                            }
                            break;
                        }
                    }
                }
                _ => {}
            },
            '\t' => out.push(c),
            c if c.is_control() => {}
            c => out.push(c),
        }
    }
}

/// The typed commands and markers of a recording: small beside its output.
#[derive(Debug, Default)]
pub struct Notes {
    /// The command lines typed (`i` events), see [`typed_commands`].
    pub typed: Vec<Line>,
    /// The markers (`m` events) with their labels.
    pub markers: Vec<Line>,
}

/// One pass that hands each output line to `each` as it completes and keeps only the
/// typed commands and markers: a recording's output may be larger than memory should hold.
pub fn read_with<E>(
    events: impl Iterator<Item = CastEvent>,
    mut each: impl FnMut(Line) -> Result<(), E>,
) -> Result<Notes, E> {
    let (mut output, mut typed, mut markers) = (OutputLines::default(), TypedLines::default(), Vec::new());
    for e in events {
        match e.code.as_str() {
            "o" => {
                output.push(&e);
                output.lines.drain(..).try_for_each(&mut each)?;
            }
            "i" => typed.push(&e),
            "m" => markers.push(Line { time_ms: e.time_ms, text: e.data }),
            _ => {}
        }
    }
    output.finish().into_iter().try_for_each(&mut each)?;
    Ok(Notes { typed: typed.lines, markers })
}

/// What a line of [`each_line`] is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// Terminal output (`o` events), escape sequences removed.
    Output,
    /// A command line typed (`i` events), editing keys applied.
    Typed,
    /// A marker's label (`m` events).
    Marker,
}

/// Longest line held, in bytes: a longer one (output without a newline, input without
/// Enter) is handed on in pieces of about this size, so that a recording of one endless
/// line, or a crafted one, costs no more memory than this.
pub const MAX_LINE: usize = 64 * 1024;

/// One pass that hands every line (output, typed, marker) to `each` as it completes and
/// holds none: memory stays flat however many lines a recording has.
pub fn each_line<E>(
    events: impl Iterator<Item = CastEvent>,
    mut each: impl FnMut(Kind, Line) -> Result<(), E>,
) -> Result<(), E> {
    let (mut output, mut typed) = (OutputLines::default(), TypedLines::default());
    for e in events.flat_map(pieces) {
        match e.code.as_str() {
            "o" => {
                output.push(&e);
                output.lines.drain(..).try_for_each(|line| each(Kind::Output, line))?;
            }
            "i" => {
                typed.push(&e);
                typed.lines.drain(..).try_for_each(|line| each(Kind::Typed, line))?;
            }
            "m" => each(Kind::Marker, Line { time_ms: e.time_ms, text: e.data })?,
            _ => {}
        }
    }
    output.finish().into_iter().try_for_each(|line| each(Kind::Output, line))
}

/// An event cut into events of at most about [`MAX_LINE`] of data (at character
/// boundaries), so that the lines of one event (a crafted one may hold millions) are
/// handed on a piece at a time. The encoder's events are smaller; only a crafted or
/// foreign recording's are cut.
fn pieces(mut e: CastEvent) -> Vec<CastEvent> {
    if e.data.len() <= MAX_LINE {
        return vec![e];
    }
    let data = std::mem::take(&mut e.data);
    let mut out = Vec::with_capacity(data.len() / MAX_LINE + 1);
    let mut rest = data.as_str();
    while !rest.is_empty() {
        let mut cut = rest.len().min(MAX_LINE);
        while !rest.is_char_boundary(cut) {
            cut += 1;
        }
        let (piece, after) = rest.split_at(cut);
        out.push(CastEvent { data: piece.to_string(), ..e.clone() });
        rest = after;
    }
    out
}

/// The command lines typed (`i` events): Enter ends a line; backspace removes a
/// character; Ctrl-U and Ctrl-C discard the line; escape sequences (arrows) are dropped.
pub fn typed_commands(events: impl Iterator<Item = CastEvent>) -> Vec<Line> {
    let mut typed = TypedLines::default();
    for e in events.filter(|e| e.code == "i") {
        typed.push(&e);
    }
    typed.lines
}

/// Output lines being cut from `o` events.
#[derive(Default)]
struct OutputLines {
    lines: Vec<Line>,
    current: String,
    /// When the current line began.
    started: u64,
}

impl OutputLines {
    fn push(&mut self, e: &CastEvent) {
        for (i, piece) in e.data.split('\n').enumerate() {
            if i > 0 {
                finish(&mut self.lines, &mut self.current, self.started);
            }
            if self.current.len() >= MAX_LINE {
                finish(&mut self.lines, &mut self.current, self.started);
            }
            if self.current.is_empty() {
                self.started = e.time_ms;
            }
            // A carriage return inside a line (progress bars) starts it over; the one of
            // a CRLF does not.
            let piece = piece.strip_suffix('\r').unwrap_or(piece);
            if let Some((_, after)) = piece.rsplit_once('\r') {
                self.current.clear();
                strip_escapes(after, &mut self.current);
                continue;
            }
            strip_escapes(piece, &mut self.current);
        }
    }

    fn finish(mut self) -> Vec<Line> {
        finish(&mut self.lines, &mut self.current, self.started);
        self.lines
    }
}

/// Command lines being rebuilt from `i` events.
#[derive(Default)]
struct TypedLines {
    lines: Vec<Line>,
    current: String,
}

impl TypedLines {
    fn push(&mut self, e: &CastEvent) {
        let current = &mut self.current;
        let mut chars = e.data.chars().peekable();
        while let Some(c) = chars.next() {
            match c {
                '\r' | '\n' => {
                    if !current.trim().is_empty() {
                        self.lines.push(Line { time_ms: e.time_ms, text: std::mem::take(current) });
                    }
                    current.clear();
                }
                '\u{7f}' | '\u{8}' => {
                    current.pop();
                }
                '\u{15}' | '\u{3}' => current.clear(),
                '\u{17}' => {
                    // Ctrl-W: the previous word.
                    let trimmed = current.trim_end().len();
                    current.truncate(trimmed);
                    let cut = current.rfind(' ').map(|i| i + 1).unwrap_or(0);
                    current.truncate(cut);
                }
                '\u{1b}' => {
                    if chars.peek() == Some(&'[') || chars.peek() == Some(&'O') {
                        chars.next();
                        for c in chars.by_ref() {
                            if ('@'..='~').contains(&c) {
                                break;
                            }
                        }
                    }
                }
                c if c.is_control() => {}
                c if current.len() >= MAX_LINE => {
                    self.lines.push(Line { time_ms: e.time_ms, text: std::mem::take(current) });
                    current.push(c);
                }
                c => current.push(c),
            }
        }
    }
}

fn finish(lines: &mut Vec<Line>, current: &mut String, started: u64) {
    if !current.trim().is_empty() {
        lines.push(Line { time_ms: started, text: current.trim_end().to_string() });
    }
    current.clear();
}

/// `HH:MM:SS` from milliseconds.
pub fn clock(ms: u64) -> String {
    let s = ms / 1000;
    format!("{:02}:{:02}:{:02}", s / 3600, s / 60 % 60, s % 60)
}

/// Milliseconds from `HH:MM:SS`, `MM:SS` or seconds (each part a whole number).
pub fn parse_clock(text: &str) -> Option<u64> {
    let parts: Vec<u64> = text.trim().split(':').map(|p| p.parse().ok()).collect::<Option<_>>()?;
    let seconds = match parts[..] {
        [s] => Some(s),
        [m, s] if s < 60 => m.checked_mul(60)?.checked_add(s),
        [h, m, s] if m < 60 && s < 60 => h.checked_mul(3600)?.checked_add(m * 60 + s),
        _ => None,
    };
    seconds?.checked_mul(1000)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ev(time_ms: u64, code: &str, data: &str) -> CastEvent {
        CastEvent { time_ms, interval_ms: 0, code: code.into(), data: data.into() }
    }

    #[test]
    fn typed_lines_apply_editing_keys() {
        let events = vec![
            ev(100, "i", "sudo rm -rf /tmq"),
            ev(200, "i", "\u{7f}p"),
            ev(300, "i", "\r"),
            ev(400, "i", "ls\u{1b}[A\u{15}echo ok\r"),
            ev(500, "i", "cat foo bar\u{17}baz\r"),
        ];
        let lines = typed_commands(events.into_iter());
        let texts: Vec<&str> = lines.iter().map(|l| l.text.as_str()).collect();
        assert_eq!(texts, vec!["sudo rm -rf /tmp", "echo ok", "cat foo baz"]);
        assert_eq!(lines[0].time_ms, 300);
    }

    #[test]
    fn output_lines_lose_escapes() {
        let events =
            vec![ev(10, "o", "\u{1b}[1;31mred\u{1b}[0m text\r\nnext "), ev(20, "o", "line\u{1b}]0;title\u{7}\n")];
        let mut lines = Vec::new();
        let Ok(_) = read_with(events.into_iter(), |line| {
            lines.push(line);
            Ok::<(), std::convert::Infallible>(())
        });
        let texts: Vec<&str> = lines.iter().map(|l| l.text.as_str()).collect();
        assert_eq!(texts, vec!["red text", "next line"]);
        assert_eq!(clock(3_723_000), "01:02:03");
        assert_eq!(parse_clock("01:02:03"), Some(3_723_000));
        assert_eq!(parse_clock("2:05"), Some(125_000));
        assert_eq!(parse_clock("90"), Some(90_000));
        assert_eq!(parse_clock("1:60"), None);
        assert_eq!(parse_clock("x"), None);
        assert_eq!(parse_clock("99999999999999999:00:00"), None);
    }
}
