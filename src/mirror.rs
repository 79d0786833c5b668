//! The mirror: a session's terminal output fanned out to watching technicians.
//!
//! The relay publishes every output chunk (and every resize) into a broadcast ring and
//! never waits: a watcher that falls behind the ring is not fed a backlog but resynchronised
//! from a screen dump. The dump comes from a terminal emulator (`avt`) that runs in its own
//! task, also fed from the ring, so the vendor→target→vendor path never waits for it.
//! Every frame carries a sequence number; a joiner gets the dump with the number it
//! reflects and skips frames up to it, so nothing is shown twice or lost at the seam.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use tokio::sync::{broadcast, mpsc, oneshot};

use crate::recording::asciicast::Utf8Carry;

/// Frames the ring holds (each at most one SSH packet, 32 KiB). A watcher (or the
/// emulator) this far behind is resynchronised; the relay never waits on it.
const RING_FRAMES: usize = 1024;

/// The emulator wakes up this often and parses what arrived meanwhile (and at once when
/// someone joins). It is the lowest-priority work of a session: never per frame.
const EMULATOR_TICK: std::time::Duration = std::time::Duration::from_millis(100);

/// At most this much of the newest output is parsed per tick. A big `cat` streaming past
/// brings megabytes per tick; the screen a joiner needs is made by the last few dozen KiB
/// of such output (a screenful with its colours), and parsing all of it would cost a core
/// for nothing.
const CATCH_UP_BYTES: usize = 64 * 1024;

#[derive(Debug, Clone)]
pub enum Frame {
    Output(Bytes),
    Resize { cols: u32, rows: u32 },
}

/// A point-in-time screen plus the live stream after it.
#[derive(Debug)]
pub struct Joined {
    /// Escape sequences that redraw the current screen on a terminal of the same size.
    pub dump: String,
    /// The last frame the dump includes.
    pub seq: u64,
    pub cols: u32,
    pub rows: u32,
    /// Frames after `seq` (and possibly some before: skip those up to `seq`).
    pub frames: broadcast::Receiver<(u64, Frame)>,
}

#[derive(Debug, Clone)]
pub struct Mirror {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    /// The sequence counter and the sender, locked together so frames enter the ring in
    /// sequence order (output and resizes come from different tasks).
    ring: Mutex<(u64, broadcast::Sender<(u64, Frame)>)>,
    joins: mpsc::Sender<oneshot::Sender<Joined>>,
    /// Set when the channel has a pty. A command without one writes bare line feeds,
    /// which a terminal (the emulator's, a watcher's) shows as a staircase: the mirror
    /// shows them as new lines instead.
    terminal: Arc<AtomicBool>,
}

impl Mirror {
    /// A mirror for a terminal of `cols`×`rows`; spawns its emulator task, which ends when
    /// the mirror is dropped.
    pub fn new(cols: u32, rows: u32) -> Mirror {
        let (tx, rx) = broadcast::channel(RING_FRAMES);
        // Joins are rare; a handful waiting is plenty.
        let (joins, join_rx) = mpsc::channel(8);
        let terminal = Arc::new(AtomicBool::new(false));
        tokio::spawn(emulate(cols, rows, rx, tx.clone(), join_rx, terminal.clone()));
        Mirror { inner: Arc::new(Inner { ring: Mutex::new((0, tx)), joins, terminal }) }
    }

    /// The channel got a pty: its output is a terminal's, shown as it is.
    pub fn set_terminal(&self) {
        self.inner.terminal.store(true, Ordering::Relaxed);
    }

    /// Output as a watcher's terminal should get it: a command's bare line feeds become
    /// new lines (a pty's output is left alone).
    pub fn shown(&self, data: Vec<u8>) -> Vec<u8> {
        if self.inner.terminal.load(Ordering::Relaxed) {
            return data;
        }
        let mut out = Vec::with_capacity(data.len() + data.len() / 16);
        for b in data {
            if b == b'\n' {
                out.push(b'\r');
            }
            out.push(b);
        }
        out
    }

    /// Publishes output. Never waits.
    pub fn output(&self, data: Bytes) {
        self.publish(Frame::Output(data));
    }

    pub fn resize(&self, cols: u32, rows: u32) {
        self.publish(Frame::Resize { cols, rows });
    }

    fn publish(&self, frame: Frame) {
        if let Ok(mut ring) = self.inner.ring.lock() {
            ring.0 += 1;
            let seq = ring.0;
            // No receiver (no emulator yet) is not an error.
            let _ = ring.1.send((seq, frame));
        }
    }

    /// The current screen and the stream after it; None once the emulator has stopped.
    pub async fn join(&self) -> Option<Joined> {
        let (reply, answer) = oneshot::channel();
        self.inner.joins.send(reply).await.ok()?;
        answer.await.ok()
    }
}

async fn emulate(
    cols: u32,
    rows: u32,
    mut rx: broadcast::Receiver<(u64, Frame)>,
    tx: broadcast::Sender<(u64, Frame)>,
    mut joins: mpsc::Receiver<oneshot::Sender<Joined>>,
    terminal: Arc<AtomicBool>,
) {
    let mut screen = Screen::new(cols, rows);
    screen.terminal = terminal;
    let mut tick = tokio::time::interval(EMULATOR_TICK);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = tick.tick() => {
                if catch_up(&mut rx, &mut screen).is_none() {
                    return;
                }
            }
            join = joins.recv() => {
                let Some(reply) = join else { return };
                // Subscribe first, then catch up: every frame after the dump's sequence
                // number is in the new receiver.
                let frames = tx.subscribe();
                catch_up(&mut rx, &mut screen);
                let _ = reply.send(Joined {
                    dump: screen.vt.dump(),
                    seq: screen.seq,
                    cols: screen.cols,
                    rows: screen.rows,
                    frames,
                });
            }
        }
    }
}

/// Resizes applied per tick before the rest count as a storm. Dragging a window's edge
/// makes a few per tick; a vendor's client can send thousands a second (each costs the
/// emulator a screen of up to 1000×1000 cells, on the runtime's workers).
const RESIZES_PER_TICK: usize = 8;

/// Parses what arrived since the last call: all of it, or only the newest frames when a
/// flood came by. Resizes shape the screen and are applied in order, up to
/// [`RESIZES_PER_TICK`]; in a storm beyond that only the newest size counts, with the
/// output after it. Returns how many resizes were applied; None once the mirror is gone.
fn catch_up(rx: &mut broadcast::Receiver<(u64, Frame)>, screen: &mut Screen) -> Option<usize> {
    use broadcast::error::TryRecvError;
    let mut tail: std::collections::VecDeque<(u64, Bytes)> = std::collections::VecDeque::new();
    let mut tail_bytes = 0;
    let (mut resizes, mut storm) = (0, None);
    let open = loop {
        match rx.try_recv() {
            Ok((seq, Frame::Output(data))) => {
                tail_bytes += data.len();
                tail.push_back((seq, data));
                while tail_bytes > CATCH_UP_BYTES && tail.len() > 1 {
                    if let Some((seq, dropped)) = tail.pop_front() {
                        tail_bytes -= dropped.len();
                        screen.seq = seq;
                    }
                }
            }
            Ok((seq, frame)) if resizes >= RESIZES_PER_TICK => {
                // A storm: the output before this size is skipped, as in a flood.
                if let Some((last, _)) = tail.back() {
                    screen.seq = *last;
                }
                tail.clear();
                tail_bytes = 0;
                storm = Some((seq, frame));
            }
            Ok((seq, frame)) => {
                // A resize shapes the screen: apply what came before it, then it.
                for (seq, data) in tail.drain(..) {
                    screen.apply(seq, &Frame::Output(data));
                }
                tail_bytes = 0;
                screen.apply(seq, &frame);
                resizes += 1;
            }
            // Fell out of the ring: same as skipping.
            Err(TryRecvError::Lagged(_)) => continue,
            Err(TryRecvError::Empty) => break true,
            Err(TryRecvError::Closed) => break false,
        }
    };
    if let Some((seq, frame)) = storm {
        screen.apply(seq, &frame);
        resizes += 1;
    }
    for (seq, data) in tail {
        screen.apply(seq, &Frame::Output(data));
    }
    open.then_some(resizes)
}

struct Screen {
    vt: avt::Terminal,
    carry: Utf8Carry,
    text: String,
    seq: u64,
    cols: u32,
    rows: u32,
    /// The mirror's: false while the channel has no pty (see [`Inner::terminal`]).
    terminal: Arc<AtomicBool>,
}

impl Screen {
    fn new(cols: u32, rows: u32) -> Screen {
        let (cols, rows) = (clamp_side(cols as usize) as u32, clamp_side(rows as usize) as u32);
        let vt = emulator(cols as usize, rows as usize);
        let terminal = Arc::new(AtomicBool::new(true));
        Screen { vt, carry: Utf8Carry::default(), text: String::new(), seq: 0, cols, rows, terminal }
    }

    fn apply(&mut self, seq: u64, frame: &Frame) {
        self.seq = seq;
        match frame {
            Frame::Output(data) => {
                self.text.clear();
                self.carry.decode_into(data, &mut self.text);
                if self.terminal.load(Ordering::Relaxed) {
                    self.vt.feed(self.text.as_str());
                } else {
                    self.vt.feed(self.text.replace('\n', "\r\n").as_str());
                }
            }
            Frame::Resize { cols, rows } => {
                self.cols = clamp_side(*cols as usize) as u32;
                self.rows = clamp_side(*rows as usize) as u32;
                self.vt.resize(self.cols as usize, self.rows as usize);
            }
        }
    }
}

/// The largest terminal side kept: wider than any real terminal, small enough that an
/// emulator (here, in a player, in a browser) holds the screen easily.
pub const MAX_SIDE: u32 = 1000;

/// A terminal side as the emulator takes it: sizes come from vendors (window-change
/// requests, recorded resizes) and are kept sane.
pub fn clamp_side(side: usize) -> usize {
    side.clamp(1, MAX_SIDE as usize)
}

/// A terminal emulator of `cols`×`rows`, clamped (the mirror's screens, replay's seeks).
pub fn emulator(cols: usize, rows: usize) -> avt::Terminal {
    avt::Terminal::new(clamp_side(cols), clamp_side(rows)).unwrap_or_else(|_| unreachable_terminal())
}

/// avt refuses only a zero size, which `clamp_side` never gives.
#[allow(clippy::panic)]
fn unreachable_terminal() -> avt::Terminal {
    panic!("avt refused a non-zero terminal size")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_late_joiner_gets_the_screen_then_only_newer_frames() {
        let mirror = Mirror::new(20, 5);
        mirror.output(Bytes::from_static(b"hello\r\n"));
        mirror.output(Bytes::from_static(b"\x1b[1mbold\x1b[0m w\xc3"));
        let mut joined = mirror.join().await.unwrap();
        assert_eq!(joined.seq, 2);
        let mut replay = avt::Terminal::new(20, 5).unwrap();
        replay.feed(joined.dump.as_str());
        assert_eq!(replay.screen().text()[0].trim_end(), "hello");
        mirror.output(Bytes::from_static(b"\xa4rld"));
        let (seq, frame) = loop {
            let (seq, frame) = joined.frames.recv().await.unwrap();
            if seq > joined.seq {
                break (seq, frame);
            }
        };
        assert_eq!(seq, 3);
        assert!(matches!(frame, Frame::Output(b) if &b[..] == b"\xa4rld"));
        let again = mirror.join().await.unwrap();
        let mut replay = avt::Terminal::new(20, 5).unwrap();
        replay.feed(again.dump.as_str());
        assert_eq!(replay.screen().text()[1].trim_end(), "bold wärld");
    }

    #[tokio::test]
    async fn a_command_without_a_pty_is_shown_line_by_line() {
        let mirror = Mirror::new(20, 5);
        mirror.output(Bytes::from_static(b"one\ntwo\n"));
        let joined = mirror.join().await.unwrap();
        let mut replay = avt::Terminal::new(20, 5).unwrap();
        replay.feed(joined.dump.as_str());
        assert_eq!(replay.screen().text()[1].trim_end(), "two");
        assert_eq!(mirror.shown(b"a\nb".to_vec()), b"a\r\nb");
        mirror.set_terminal();
        assert_eq!(mirror.shown(b"a\nb".to_vec()), b"a\nb");
    }

    #[tokio::test]
    async fn a_resize_storm_costs_the_emulator_a_few_resizes_per_tick_and_ends_right() {
        let (tx, mut rx) = broadcast::channel(RING_FRAMES);
        let mut screen = Screen::new(80, 24);
        let mut seq = 0;
        let mut send = |frame: Frame| {
            seq += 1;
            tx.send((seq, frame)).unwrap();
        };
        // A window dragged: a few sizes with output between, all applied.
        for cols in [81, 82, 83] {
            send(Frame::Resize { cols, rows: 24 });
            send(Frame::Output(Bytes::from(format!("at {cols}\r\n"))));
        }
        assert_eq!(catch_up(&mut rx, &mut screen), Some(3));
        assert_eq!(screen.cols, 83);
        // A storm: 500 alternating sizes up to 1000×1000, each with a line after it.
        for i in 0..500u32 {
            let side = if i % 2 == 0 { 1000 } else { 2 };
            send(Frame::Resize { cols: side, rows: side });
            send(Frame::Output(Bytes::from(format!("line {i}\r\n"))));
        }
        send(Frame::Resize { cols: 40, rows: 10 });
        send(Frame::Output(Bytes::from_static(b"after the storm")));
        assert_eq!(catch_up(&mut rx, &mut screen), Some(RESIZES_PER_TICK + 1));
        assert_eq!((screen.cols, screen.rows), (40, 10));
        assert_eq!(screen.seq, seq);
        let mut replay = avt::Terminal::new(40, 10).unwrap();
        replay.feed(screen.vt.dump().as_str());
        assert!(replay.screen().text().iter().any(|line| line.trim_end() == "after the storm"));
    }
}
