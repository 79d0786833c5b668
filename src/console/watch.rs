//! `watch ID`: a technician's live view of a vendor's terminal.
//!
//! The view starts from the mirror's screen dump, then follows the live stream. If the
//! technician's connection falls behind (a slow link, a paused client), the view is
//! redrawn from a fresh dump instead of replaying a backlog; the vendor never waits.
//! The status (session, vendor, target, time left, who watches, input state, keys) is
//! kept in the terminal title, where it cannot disturb a full-screen program.
//!
//! Keys: Ctrl-] then `f` freeze/unfreeze the vendor's input, `t` take over/hand back the
//! keyboard, `a` annotate (a line, Enter), `k` kill (a reason, Enter), `d` detach.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use russh::server::Msg;
use russh::{ChannelMsg, ChannelReadHalf, ChannelWriteHalf};
use tokio::sync::broadcast::error::RecvError;

use super::{Pty, send_err};
use crate::gate::Gate;
use crate::mirror::{Frame, Joined};
use crate::sanitize::Sanitizer;
use crate::session::{Input, Live, Notice, Watching};

/// The escape prefix: Ctrl-] (as telnet and `ssh -e` users know it).
const PREFIX: u8 = 0x1d;

/// How often the title's "minutes left" is refreshed.
const STATUS_EVERY: Duration = Duration::from_secs(30);

pub async fn run(
    gate: Arc<Gate>,
    tech: &str,
    id: &str,
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
    let watching = Watching::start(gate.clone(), live.clone(), tech);
    let mut view = View { gate: &gate, tx, live: &live, tech, mine, vendor: (80, 24), mode: Mode::Normal };
    let Some(mut joined) = live.mirror.join().await else { return 1 };
    view.redraw(&joined).await;
    let mut changed = live.subscribe();
    let mut notices = live.notices.subscribe();
    let mut status = tokio::time::interval(STATUS_EVERY);
    // The vendor's output reaches the technician's terminal without its control strings.
    let mut sanitizer = Sanitizer::default();
    loop {
        tokio::select! {
            frame = joined.frames.recv() => match frame {
                Ok((seq, _)) if seq <= joined.seq => {}
                Ok((_, Frame::Output(data))) => {
                    let mut shown = Vec::with_capacity(data.len());
                    sanitizer.filter_bytes(&data, &mut shown);
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
                    let Some(fresh) = live.mirror.join().await else { break };
                    joined = fresh;
                    sanitizer = Sanitizer::default();
                    view.redraw(&joined).await;
                }
                Err(RecvError::Closed) => break,
            },
            msg = rx.wait() => match msg {
                Some(ChannelMsg::Data { data }) => {
                    if view.keys(&data, &watching).await == Keys::Detach {
                        break;
                    }
                }
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
                view.title().await;
            }
            _ = status.tick() => view.title().await,
        }
    }
    drop(watching);
    let _ = tx.data_bytes(Bytes::from_static(b"\x1b]0;\x07")).await;
    0
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
}

struct View<'a> {
    gate: &'a Gate,
    tx: &'a ChannelWriteHalf<Msg>,
    live: &'a Arc<Live>,
    tech: &'a str,
    mine: Pty,
    vendor: (u32, u32),
    mode: Mode,
}

impl View<'_> {
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
                format!(
                    "chaperone {} {}@{} as {} ({}) | {left} min left | watching: {watchers} | {}{size} | ^] f freeze t take a note k kill d detach",
                    live.id,
                    live.vendor,
                    live.target,
                    live.account,
                    live.booking_label,
                    live.input().describe()
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
