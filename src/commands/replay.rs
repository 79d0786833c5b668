//! `replay`: plays a recording in the terminal at its real pace, like `asciinema play`,
//! with keys: space pause/resume, `+`/`-` speed, `.` step (paused), `]`/`[` next and
//! previous marker, `→`/`←` 10 seconds, `q` quit. Seeks use the recording's seek index
//! (see `recording::replay`), so a jump into a long recording is immediate.
//!
//! The position, speed and state are shown in the terminal's title, leaving the screen to
//! the recording. Control strings in the recorded output (OSC, DCS, APC, …: titles, the
//! clipboard) are removed before they reach the terminal. Without a terminal (output to a
//! pipe) it plays without keys.

use std::io::{Read, Write};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError};
use std::time::{Duration, Instant};

use super::recordings::{channel_file, find_folder};
use super::{Ctx, Hangup};
use crate::UserError;
use crate::cli::ReplayArgs;
use crate::recording::reader::CastEvent;
use crate::recording::replay::{Events, IndexKey, Replay};
use crate::recording::text::{clock, parse_clock};
use crate::sanitize::Sanitizer;

const SEEK_MS: u64 = 10_000;
const MIN_SPEED: f64 = 1.0 / 16.0;
const MAX_SPEED: f64 = 256.0;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Key {
    Pause,
    Faster,
    Slower,
    Step,
    NextMarker,
    PreviousMarker,
    Forward,
    Back,
    Quit,
}

/// The keys in what the terminal sent (arrows as `ESC [ C`/`ESC O C` and `D`).
pub fn parse_keys(bytes: &[u8]) -> Vec<Key> {
    let mut keys = Vec::new();
    let mut i = 0;
    while i < bytes.len() {
        let key = match bytes[i] {
            b' ' => Some(Key::Pause),
            b'+' | b'=' => Some(Key::Faster),
            b'-' | b'_' => Some(Key::Slower),
            b'.' => Some(Key::Step),
            b']' => Some(Key::NextMarker),
            b'[' => Some(Key::PreviousMarker),
            b'q' | b'Q' | 0x03 | 0x04 => Some(Key::Quit),
            0x1b if matches!(bytes.get(i + 1), Some(b'[' | b'O')) => {
                i += 2;
                match bytes.get(i) {
                    Some(b'C') => Some(Key::Forward),
                    Some(b'D') => Some(Key::Back),
                    _ => None,
                }
            }
            _ => None,
        };
        keys.extend(key);
        i += 1;
    }
    keys
}

pub fn run(ctx: &mut Ctx<'_>, args: ReplayArgs) -> anyhow::Result<()> {
    if !(args.speed.is_finite() && args.speed > 0.0) {
        return Err(UserError(format!("--speed {}: give a positive number", args.speed)).into());
    }
    let folder = find_folder(ctx.config, ctx.store, &args.id, ctx.caller.technician().is_some())?;
    let path = channel_file(&folder, args.channel)?;
    let replay = Replay::open(&path, index_key(ctx).as_ref())?;
    let markers = &replay.index.markers;
    let start_ms = match (&args.from, args.from_marker) {
        (Some(from), _) => parse_clock(from).ok_or_else(|| UserError(format!("--from {from:?}: give HH:MM:SS")))?,
        (None, Some(n)) if n >= 1 && n <= markers.len() => markers[n - 1].time_ms,
        (None, Some(n)) => {
            return Err(UserError(format!("--from-marker {n}: the recording has {} marker(s)", markers.len())).into());
        }
        (None, None) => 0,
    };
    // Over ssh the technician's terminal comes with the command; here, this process's.
    let remote = ctx.terminal.take();
    let terminal = if remote.is_none() && ctx.caller.technician().is_none() { Terminal::take() } else { None };
    let size = match &remote {
        Some(remote) => Some((remote.cols, remote.rows)),
        None => terminal.as_ref().and_then(|t| t.size()),
    };
    if let Some((cols, rows)) = size
        && (cols, rows) != (replay.header.term.cols as usize, replay.header.term.rows as usize)
    {
        let _ = writeln!(
            ctx.err,
            "chaperone: recorded at {}x{}; this terminal is {cols}x{rows}\r",
            replay.header.term.cols, replay.header.term.rows
        );
        // Before the replay, also over ssh (where stderr goes out in chunks).
        let _ = ctx.err.flush();
    }
    let restore_remote = remote.is_some();
    let keys = match remote {
        Some(remote) => Some(remote.keys),
        None => terminal.as_ref().map(|t| t.keys()),
    };
    let mut player = Player {
        replay: &replay,
        out: &mut *ctx.out,
        hangup: &ctx.hangup,
        name: args.id.clone(),
        speed: args.speed,
        idle_limit_ms: args.idle_limit.map(|s| (s.max(0.0) * 1000.0) as u64),
        // Without a terminal there is no key to resume with.
        paused: args.paused && keys.is_some(),
        title_shown: String::new(),
        sanitizer: Sanitizer::default(),
        shown: String::new(),
    };
    let result = player.play(start_ms, keys);
    drop(terminal);
    if restore_remote {
        let _ = ctx.out.write_all(RESTORE);
    }
    let (ended, at_ms) = result?;
    let _ = writeln!(
        ctx.err,
        "chaperone: replay {} at {} of {}",
        if ended { "ended" } else { "stopped" },
        clock(at_ms),
        clock(replay.index.duration_ms)
    );
    // After the replay, which resets the screen: a warning before it would be wiped.
    for problem in &replay.index.damage {
        let _ = writeln!(ctx.err, "chaperone: warning: {}: {problem}", path.display());
    }
    super::recordings::fail_if_damaged(replay.index.damage.len())
}

/// The key of seek index MACs: the running bastion's, or (locally) this bastion's signing
/// key if it can be read. Without it a saved index is not trusted (it is rebuilt).
fn index_key(ctx: &Ctx<'_>) -> Option<IndexKey> {
    if let Some(gate) = ctx.gate {
        return IndexKey::from_signing(gate.keys.signing.expose());
    }
    let text = std::fs::read_to_string(ctx.config.keys_dir().join("signing_ed25519")).ok()?;
    IndexKey::from_signing(&russh::keys::PrivateKey::from_openssh(text.as_bytes()).ok()?)
}

struct Player<'a, 'r> {
    replay: &'r Replay,
    out: &'a mut dyn Write,
    /// A technician who left stops the replay, also in an idle stretch.
    hangup: &'a Hangup,
    name: String,
    speed: f64,
    idle_limit_ms: Option<u64>,
    paused: bool,
    title_shown: String,
    sanitizer: Sanitizer,
    /// The sanitised text of the event being shown (reused).
    shown: String,
}

impl<'r> Player<'_, 'r> {
    /// Waits for the next event without keys; fails if the caller has gone away.
    fn sleep_until(&self, deadline: Instant) -> std::io::Result<Option<Key>> {
        if self.hangup.sleep(deadline.saturating_duration_since(Instant::now())) {
            return Err(std::io::Error::new(std::io::ErrorKind::BrokenPipe, "the caller went away"));
        }
        Ok(None)
    }

    /// Plays from `start_ms` until the end (true) or `q` (false); returns where it stopped.
    fn play(&mut self, start_ms: u64, keys: Option<Receiver<Key>>) -> std::io::Result<(bool, u64)> {
        let mut at_ms = start_ms;
        let mut events = self.jump(at_ms)?;
        // When the next event is due; kept across pauses as what was left of the wait.
        let mut due: Option<Instant> = None;
        let mut left: Option<Duration> = None;
        loop {
            self.title(at_ms)?;
            // At the end: done, unless paused there (after a seek) with keys to go back.
            let next_ms = match events.peek() {
                Some(next) => next.time_ms,
                None if self.paused && keys.is_some() => u64::MAX,
                None => {
                    self.out.flush()?;
                    return Ok((true, at_ms));
                }
            };
            let wait = self.wait_for(next_ms.saturating_sub(at_ms));
            let deadline = *due.get_or_insert_with(|| Instant::now() + left.take().unwrap_or(wait));
            let key = match (&keys, self.paused) {
                (Some(keys), true) => keys.recv().ok(),
                (Some(keys), false) => match keys.recv_timeout(deadline.saturating_duration_since(Instant::now())) {
                    Ok(key) => Some(key),
                    Err(RecvTimeoutError::Timeout) => None,
                    Err(RecvTimeoutError::Disconnected) => self.sleep_until(deadline)?,
                },
                (None, _) => self.sleep_until(deadline)?,
            };
            let seek_to = match key {
                None if self.paused => {
                    // Keys gone while paused (the terminal closed): stop.
                    return Ok((false, at_ms));
                }
                None => {
                    due = None;
                    if let Some(event) = events.next() {
                        at_ms = event.time_ms;
                        self.emit(&event, events.peek().is_none_or(|n| n.time_ms > at_ms))?;
                    }
                    None
                }
                Some(Key::Quit) => return Ok((false, at_ms)),
                Some(Key::Pause) => {
                    if self.paused {
                        self.paused = false;
                    } else {
                        self.paused = true;
                        left = Some(deadline.saturating_duration_since(Instant::now()));
                        due = None;
                    }
                    None
                }
                Some(Key::Step) => {
                    self.paused = true;
                    (due, left) = (None, None);
                    if let Some(event) = events.next() {
                        at_ms = event.time_ms;
                        self.emit(&event, true)?;
                    }
                    None
                }
                Some(key @ (Key::Faster | Key::Slower)) => {
                    let factor = if key == Key::Faster { 2.0 } else { 0.5 };
                    self.speed = (self.speed * factor).clamp(MIN_SPEED, MAX_SPEED);
                    (due, left) = (None, None);
                    None
                }
                Some(Key::Forward) => Some(at_ms.saturating_add(SEEK_MS).min(self.replay.index.duration_ms)),
                Some(Key::Back) => Some(at_ms.saturating_sub(SEEK_MS)),
                Some(Key::NextMarker) => {
                    self.replay.index.markers.iter().find(|m| m.time_ms > at_ms).map(|m| m.time_ms)
                }
                // The marker before the one just passed, so that `[` twice goes back twice.
                Some(Key::PreviousMarker) => Some(
                    self.replay
                        .index
                        .markers
                        .iter()
                        .rev()
                        .find(|m| m.time_ms.saturating_add(1000) < at_ms)
                        .map_or(0, |m| m.time_ms),
                ),
            };
            if let Some(to) = seek_to {
                at_ms = to;
                events = self.jump(to)?;
                (due, left) = (None, None);
            }
        }
    }

    /// Shows the screen at `to_ms` on a reset terminal; returns the events after it.
    fn jump(&mut self, to_ms: u64) -> std::io::Result<std::iter::Peekable<Events>> {
        let position = self.replay.seek(to_ms);
        self.sanitizer = Sanitizer::default();
        self.out.write_all(b"\x1bc")?;
        self.out.write_all(position.screen.as_bytes())?;
        self.out.flush()?;
        Ok(position.events)
    }

    fn emit(&mut self, event: &CastEvent, flush: bool) -> std::io::Result<()> {
        if event.code == "o" {
            self.shown.clear();
            self.sanitizer.filter(&event.data, &mut self.shown);
            self.out.write_all(self.shown.as_bytes())?;
        }
        if flush {
            self.out.flush()?;
        }
        Ok(())
    }

    /// The wall time to wait for a gap in the recording, after the idle limit and speed.
    fn wait_for(&self, gap_ms: u64) -> Duration {
        let gap = self.idle_limit_ms.map_or(gap_ms, |limit| gap_ms.min(limit));
        // A day at most: longer than any window, and far from overflowing an Instant.
        Duration::from_secs_f64((gap as f64 / 1000.0 / self.speed).min(86_400.0))
    }

    /// Position, speed and state in the terminal's title (written when it changes).
    fn title(&mut self, at_ms: u64) -> std::io::Result<()> {
        // The latest marker at or before now, if it was less than 5 s ago (markers are in
        // time order: a binary search, as a crafted recording may hold thousands).
        let markers = &self.replay.index.markers;
        let latest = markers.partition_point(|m| m.time_ms <= at_ms).checked_sub(1).and_then(|i| markers.get(i));
        let marker = latest.filter(|m| at_ms < m.time_ms.saturating_add(5000));
        let title = format!(
            "chaperone replay {}  {} / {}  x{}{}{}",
            self.name,
            clock(at_ms),
            clock(self.replay.index.duration_ms),
            self.speed,
            if self.paused { "  paused" } else { "" },
            marker.map(|m| format!("  [{}]", m.label)).unwrap_or_default()
        );
        if title != self.title_shown {
            // Marker labels are text from the recording: no control characters into the title.
            let clean: String = title.chars().filter(|c| !c.is_control()).collect();
            write!(self.out, "\x1b]2;{clean}\x07")?;
            self.out.flush()?;
            self.title_shown = title;
        }
        Ok(())
    }
}

/// What a terminal gets when the replay ends: attributes off, cursor shown, a fresh line.
const RESTORE: &[u8] = b"\x1b[0m\x1b[?25h\r\n";

/// The controlling terminal in raw mode (keys arrive one by one, Ctrl-C as a key), put
/// back as it was when dropped.
struct Terminal {
    saved: libc::termios,
}

impl Terminal {
    /// Raw mode if standard input and output are a terminal.
    fn take() -> Option<Terminal> {
        // SAFETY: isatty/tcgetattr/tcsetattr on fds 0 and 1 with a zeroed termios buffer.
        unsafe {
            if libc::isatty(0) != 1 || libc::isatty(1) != 1 {
                return None;
            }
            let mut saved: libc::termios = std::mem::zeroed();
            if libc::tcgetattr(0, &mut saved) != 0 {
                return None;
            }
            let mut raw = saved;
            libc::cfmakeraw(&mut raw);
            if libc::tcsetattr(0, libc::TCSANOW, &raw) != 0 {
                return None;
            }
            Some(Terminal { saved })
        }
    }

    fn size(&self) -> Option<(usize, usize)> {
        // SAFETY: TIOCGWINSZ fills a winsize.
        unsafe {
            let mut size: libc::winsize = std::mem::zeroed();
            (libc::ioctl(1, libc::TIOCGWINSZ, &mut size) == 0 && size.ws_col > 0)
                .then_some((size.ws_col as usize, size.ws_row as usize))
        }
    }

    /// Keys from standard input, read on a thread of their own.
    fn keys(&self) -> Receiver<Key> {
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            let mut stdin = std::io::stdin();
            let mut buf = [0u8; 64];
            while let Ok(n) = stdin.read(&mut buf) {
                if n == 0 {
                    break;
                }
                for key in parse_keys(&buf[..n]) {
                    if tx.send(key).is_err() {
                        return;
                    }
                }
            }
        });
        rx
    }
}

impl Drop for Terminal {
    fn drop(&mut self) {
        // SAFETY: restores the attributes read in `take`.
        unsafe {
            libc::tcsetattr(0, libc::TCSANOW, &self.saved);
        }
        let mut out = std::io::stdout();
        let _ = out.write_all(RESTORE);
        let _ = out.flush();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_and_arrows_are_parsed() {
        assert_eq!(
            parse_keys(b" +-.][q\x1b[C\x1bOD\x1b[A\x03x"),
            vec![
                Key::Pause,
                Key::Faster,
                Key::Slower,
                Key::Step,
                Key::NextMarker,
                Key::PreviousMarker,
                Key::Quit,
                Key::Forward,
                Key::Back,
                Key::Quit
            ]
        );
    }
}
