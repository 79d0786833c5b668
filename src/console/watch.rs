//! `watch ID`: a technician's live view of a vendor's terminal.
//!
//! The view starts from the mirror's screen dump, then follows the live stream. If the
//! technician's connection falls behind (a slow link, a paused client), the view is
//! redrawn from a fresh dump instead of replaying a backlog; the vendor never waits.
//! The status (session, vendor, target, time left, who watches, input state, keys) is
//! kept in the terminal title, where it cannot disturb a full-screen program.
//!
//! The view follows one channel of the session at a time (each has its own mirror, so a
//! command's output never lands on the shell's screen): by default the first with a
//! terminal, or `--channel N`. The title lists every channel with its request and state
//! (open, ended with its exit status, refused), so the technician sees each one open and
//! end; when the followed one ends, a line under its screen says so.
//!
//! Keys: Ctrl-] then `f` freeze/unfreeze the vendor's input, `t` take over/hand back the
//! keyboard, `a` annotate (a line, Enter), `k` kill (a reason, Enter), `c` follow the next
//! channel, `d` detach.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use russh::server::Msg;
use russh::{ChannelMsg, ChannelReadHalf, ChannelWriteHalf};
use tokio::sync::broadcast::error::RecvError;

use super::{Pty, send_err};
use crate::gate::Gate;
use crate::mirror::{Frame, Joined, Mirror};
use crate::sanitize::Sanitizer;
use crate::session::{ChannelEntry, ChannelState, Input, Live, Notice, Watching};

/// The escape prefix: Ctrl-] (as telnet and `ssh -e` users know it).
const PREFIX: u8 = 0x1d;

/// How often the title's "minutes left" is refreshed.
const STATUS_EVERY: Duration = Duration::from_secs(30);

pub async fn run(
    gate: Arc<Gate>,
    tech: &str,
    id: &str,
    channel: Option<usize>,
    pty: Option<Pty>,
    rx: &mut ChannelReadHalf,
    tx: &ChannelWriteHalf<Msg>,
) -> u32 {
    let Some(mine) = pty else {
        send_err(tx, "chaperone: watch needs a terminal: ssh -t -p 2222 TECH@bastion watch ID\n", false).await;
        return 2;
    };
    let live = gate.live.lock().ok().and_then(|t| t.get(id).cloned());
    let Some(live) = live else {
        send_err(tx, &format!("chaperone: no live session {id:?} (see: sessions)\r\n"), true).await;
        return 2;
    };
    let first = match channel {
        Some(n) => match live.channels().into_iter().find(|c| c.number == n) {
            Some(entry) => Some(entry),
            None => {
                let text = format!("chaperone: session {id} has no channel {n} (see: sessions)\r\n");
                send_err(tx, &text, true).await;
                return 2;
            }
        },
        None => live.default_channel(),
    };
    let watching = Watching::start(gate.clone(), live.clone(), tech);
    let mut view = View {
        gate: &gate,
        tx,
        live: &live,
        tech,
        mine,
        vendor: (80, 24),
        mode: Mode::Normal,
        following: None,
        told_end: false,
    };
    // The channel followed: its screen, then its live stream. None until the session has
    // a channel (a watcher may join before the vendor's client opened one).
    let mut joined = match first {
        Some(entry) => view.follow(&entry).await,
        None => {
            let _ =
                tx.data_bytes(Bytes::from_static(b"\x1b[0m\x1b[H\x1b[2J[chaperone: no channel open yet]\r\n")).await;
            view.title().await;
            None
        }
    };
    let mut changed = live.subscribe();
    let mut notices = live.notices.subscribe();
    let mut status = tokio::time::interval(STATUS_EVERY);
    // The vendor's output reaches the technician's terminal without its control strings.
    let mut sanitizer = Sanitizer::default();
    loop {
        tokio::select! {
            frame = next_frame(&mut joined) => {
                let Some(current) = joined.as_ref() else { continue };
                match frame {
                    Ok((seq, _)) if seq <= current.seq => {}
                    Ok((_, Frame::Output(data))) => {
                        let mut shown = Vec::with_capacity(data.len());
                        sanitizer.filter_bytes(&data, &mut shown);
                        let shown = match &view.following {
                            Some((_, mirror)) => mirror.shown(shown),
                            None => shown,
                        };
                        if tx.data_bytes(shown).await.is_err() {
                            break;
                        }
                    }
                    Ok((_, Frame::Resize { cols, rows })) => {
                        view.vendor = (cols, rows);
                        view.title().await;
                    }
                    Err(RecvError::Lagged(missed)) => {
                        tracing::info!(session = %live.id, technician = %tech, "watcher fell {missed} frames behind; resynchronised from a screen dump");
                        let Some(mirror) = view.following.as_ref().map(|(_, m)| m.clone()) else { break };
                        let Some(fresh) = mirror.join().await else { break };
                        sanitizer = Sanitizer::default();
                        view.redraw(&fresh).await;
                        joined = Some(fresh);
                    }
                    // The channel's mirror is gone (dropped from the listing): stay, quiet.
                    Err(RecvError::Closed) => joined = None,
                }
            },
            msg = rx.wait() => match msg {
                Some(ChannelMsg::Data { data }) => match view.keys(&data, &watching).await {
                    Keys::Detach => break,
                    Keys::NextChannel => {
                        if let Some(next) = view.next_channel() {
                            sanitizer = Sanitizer::default();
                            joined = view.follow(&next).await;
                        }
                    }
                    Keys::Stay => {}
                },
                Some(ChannelMsg::WindowChange { col_width, row_height, .. }) => {
                    view.mine = Pty { cols: col_width, rows: row_height };
                    view.title().await;
                }
                Some(ChannelMsg::Eof | ChannelMsg::Close) | None => break,
                Some(_) => {}
            },
            notice = notices.recv() => {
                if let Ok(Notice::End(reason)) = notice {
                    let _ = tx.data_bytes(format!("\x1b[0m\r\n[chaperone: the session ended: {reason}]\r\n")).await;
                    break;
                }
            }
            _ = changed.changed() => {
                if let Some(reason) = live.ended() {
                    let _ = tx.data_bytes(format!("\x1b[0m\r\n[chaperone: the session ended: {reason}]\r\n")).await;
                    break;
                }
                if view.following.is_none() {
                    if let Some(entry) = live.default_channel() {
                        sanitizer = Sanitizer::default();
                        joined = view.follow(&entry).await;
                    }
                }
                view.tell_end().await;
                view.title().await;
            }
            _ = status.tick() => view.title().await,
        }
    }
    drop(watching);
    let _ = tx.data_bytes(Bytes::from_static(b"\x1b]0;\x07")).await;
    0
}

/// The next frame of the followed channel; never, while none is followed.
async fn next_frame(joined: &mut Option<Joined>) -> Result<(u64, Frame), RecvError> {
    match joined {
        Some(joined) => joined.frames.recv().await,
        None => std::future::pending().await,
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Mode {
    Normal,
    /// Ctrl-] was pressed; the next key is a control.
    Prefix,
    /// Typing an annotation.
    Note(Vec<u8>),
    /// Typing the reason to kill the session.
    Kill(Vec<u8>),
}

#[derive(Debug, PartialEq, Eq)]
enum Keys {
    Stay,
    Detach,
    /// Follow the session's next channel.
    NextChannel,
}

struct View<'a> {
    gate: &'a Gate,
    tx: &'a ChannelWriteHalf<Msg>,
    live: &'a Arc<Live>,
    tech: &'a str,
    mine: Pty,
    vendor: (u32, u32),
    mode: Mode,
    /// The channel followed (its number) and its mirror.
    following: Option<(usize, Mirror)>,
    /// The followed channel's end was shown, so it is shown once.
    told_end: bool,
}

impl View<'_> {
    /// Follows `entry`: its current screen, then its live stream.
    async fn follow(&mut self, entry: &ChannelEntry) -> Option<Joined> {
        let joined = entry.mirror.join().await?;
        self.following = Some((entry.number, entry.mirror.clone()));
        self.told_end = false;
        self.redraw(&joined).await;
        self.tell_end().await;
        Some(joined)
    }

    /// The channel after the one followed (in number order, wrapping round).
    fn next_channel(&self) -> Option<ChannelEntry> {
        let channels = self.live.channels();
        let current = self.following.as_ref().map(|(n, _)| *n).unwrap_or(0);
        channels.iter().find(|c| c.number > current).or(channels.first()).cloned()
    }

    /// Once the followed channel has ended (or was refused), says so under its screen.
    async fn tell_end(&mut self) {
        let Some((number, _)) = &self.following else { return };
        let Some(entry) = self.live.channels().into_iter().find(|c| c.number == *number) else { return };
        if self.told_end || matches!(entry.state, ChannelState::Open | ChannelState::Waiting) {
            return;
        }
        self.told_end = true;
        let line =
            format!("\x1b[0m\r\n[chaperone: channel {number} {}; ^] c for the next channel]\r\n", entry.status());
        let _ = self.tx.data_bytes(line.into_bytes()).await;
    }

    /// Clears the technician's screen and draws the vendor's current one.
    async fn redraw(&mut self, joined: &Joined) {
        self.vendor = (joined.cols, joined.rows);
        let mut screen = String::from("\x1b[0m\x1b[H\x1b[2J");
        screen.push_str(&joined.dump);
        let _ = self.tx.data_bytes(screen.into_bytes()).await;
        self.title().await;
    }

    /// The status line, in the terminal title.
    async fn title(&self) {
        let live = self.live;
        let text = match &self.mode {
            Mode::Note(typed) => {
                format!("chaperone: note (Enter records, Esc cancels): {}", String::from_utf8_lossy(typed))
            }
            Mode::Kill(typed) => {
                format!(
                    "chaperone: END session {}? reason (Enter ends it, Esc cancels): {}",
                    live.id,
                    String::from_utf8_lossy(typed)
                )
            }
            Mode::Normal | Mode::Prefix => {
                let left = (live.window_end - self.gate.clock.now()).num_minutes().max(0);
                let watchers = live.watchers().join(",");
                let size = if (self.mine.cols, self.mine.rows) == self.vendor {
                    String::new()
                } else {
                    format!(
                        " | vendor terminal {}x{}, yours {}x{}",
                        self.vendor.0, self.vendor.1, self.mine.cols, self.mine.rows
                    )
                };
                let channels = live.channels();
                let followed = match &self.following {
                    Some((n, _)) => format!("channel {n} of {}", channels.len()),
                    None => "no channel yet".to_string(),
                };
                let listed: Vec<String> =
                    channels.iter().map(|c| format!("{} {} {}", c.number, c.what(), c.status())).collect();
                format!(
                    "chaperone {} {}@{} as {} ({}) | {left} min left | watching: {watchers} | {}{size} | {followed} | channels: {} | ^] f freeze t take a note k kill c channel d detach",
                    live.id,
                    live.vendor,
                    live.target,
                    live.account,
                    live.booking_label,
                    live.input().describe(),
                    listed.join("; ")
                )
            }
        };
        let clean: String = text.chars().filter(|c| !c.is_control()).collect();
        let _ = self.tx.data_bytes(format!("\x1b]0;{clean}\x07").into_bytes()).await;
    }

    /// Handles what the technician typed.
    async fn keys(&mut self, data: &[u8], watching: &Watching) -> Keys {
        let mut typed = Vec::new();
        let before = self.mode.clone();
        for &b in data {
            match &mut self.mode {
                Mode::Normal if b == PREFIX => self.mode = Mode::Prefix,
                Mode::Normal => typed.push(b),
                Mode::Prefix => {
                    self.mode = Mode::Normal;
                    match b {
                        b'f' => watching.toggle_freeze(),
                        b't' => {
                            watching.toggle_takeover();
                        }
                        b'a' => self.mode = Mode::Note(Vec::new()),
                        b'k' => self.mode = Mode::Kill(Vec::new()),
                        b'c' => return Keys::NextChannel,
                        b'd' => return Keys::Detach,
                        PREFIX => typed.push(PREFIX),
                        _ => {}
                    }
                }
                Mode::Note(text) | Mode::Kill(text) => match b {
                    b'\r' | b'\n' => {
                        let line = String::from_utf8_lossy(text).trim().to_string();
                        if !line.is_empty() {
                            if matches!(self.mode, Mode::Note(_)) {
                                watching.annotate(&line);
                            } else {
                                watching.kill(&line);
                            }
                        }
                        self.mode = Mode::Normal;
                    }
                    0x1b | 0x03 => self.mode = Mode::Normal,
                    0x7f | 0x08 => {
                        text.pop();
                    }
                    b if b >= 0x20 && text.len() < 500 => text.push(b),
                    _ => {}
                },
            }
        }
        if !typed.is_empty() && matches!(self.live.input(), Input::TakenOver(by) if by == self.tech) {
            // A person types: if the queue is ever full, dropping a burst beats blocking the view.
            let _ = self.live.takeover.try_send(Bytes::from(typed));
        }
        if self.mode != before && self.mode != Mode::Prefix {
            self.title().await;
        }
        Keys::Stay
    }
}
