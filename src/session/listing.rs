//! The session's channels as watchers and `sessions` see them: each channel the session
//! took up has a number (the one its recording and `watch --channel N` use), what it
//! asked for (a shell or a command), and whether it waits, runs, was refused or ended
//! (with its exit status). Each has its own mirror, so that one channel's output never
//! lands on another's screen.

use russh::ChannelId;

use super::live::Live;
use crate::mirror::Mirror;

/// Most of a command line shown in a listing or a title: enough to recognise it; the
/// recording and the audit log keep all of it.
const SHOWN_COMMAND: usize = 60;

/// Closed channels kept in the listing, newest first: a vendor running one command after
/// another over a shared connection opens a channel each time, and each entry holds a
/// mirror; older ones are dropped (their recordings keep everything).
const ENDED_KEPT: usize = 16;

/// What a channel asked the target for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Request {
    /// Nothing yet (the client sends its request right after opening the channel).
    None,
    Shell,
    /// A command, as the vendor's client sent it.
    Exec(String),
}

/// Where a channel is in its life.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ChannelState {
    /// Opened while the session waits for its first technician; nothing of it has
    /// reached the target.
    Waiting,
    /// Relayed to the target.
    Open,
    /// Its shell or command was not started; why.
    Refused(String),
    /// Closed, with the exit status the target reported (or 128 + signal), if any.
    Ended(Option<i64>),
}

/// One channel of the session.
#[derive(Debug, Clone)]
pub struct ChannelEntry {
    /// The vendor-side channel, which identifies the entry before it has its number
    /// settled (a channel waiting for a technician may lose its place if one before it
    /// cannot be opened on the target).
    pub id: ChannelId,
    /// 1 for the session's first channel; the number of its recording.
    pub number: usize,
    pub request: Request,
    /// The vendor asked for a terminal: a screen a watcher can follow.
    pub pty: bool,
    pub state: ChannelState,
    /// This channel's output for watchers; one per channel so that an exec channel's
    /// output does not scramble the shell's screen.
    pub mirror: Mirror,
}

impl ChannelEntry {
    /// `shell`, `exec "cmd"` or `no request yet`, with `(pty)` for a terminal.
    pub fn what(&self) -> String {
        let mut what = match &self.request {
            Request::None => "no request yet".to_string(),
            Request::Shell => "shell".to_string(),
            Request::Exec(command) => format!("exec {:?}", shown(command)),
        };
        if self.pty {
            what.push_str(" (pty)");
        }
        what
    }

    pub fn status(&self) -> String {
        match &self.state {
            ChannelState::Waiting => "waiting for a technician".into(),
            ChannelState::Open => "open".into(),
            ChannelState::Refused(reason) => format!("refused: {reason}"),
            ChannelState::Ended(Some(status)) => format!("ended, exit status {status}"),
            ChannelState::Ended(None) => "ended".into(),
        }
    }

    /// One line: `channel 2  exec "ls"  ended, exit status 0`.
    pub fn describe(&self) -> String {
        format!("channel {}  {}  {}", self.number, self.what(), self.status())
    }

    /// A watcher's default: a channel with a terminal or a shell.
    pub fn is_screen(&self) -> bool {
        self.pty || self.request == Request::Shell
    }
}

/// A command line as a listing shows it: no control characters, at most
/// [`SHOWN_COMMAND`] characters.
pub fn shown(command: &str) -> String {
    let clean: String = command.chars().map(|c| if c.is_control() { ' ' } else { c }).collect();
    if clean.chars().count() > SHOWN_COMMAND {
        let mut cut: String = clean.chars().take(SHOWN_COMMAND).collect();
        cut.push('…');
        cut
    } else {
        clean
    }
}

/// The channel table's operations. Each wakes whoever follows the session (watchers'
/// titles, the wait for a technician).
impl Live {
    /// Registers a channel opened while the session waits for its first technician;
    /// returns the number it will have if every channel before it starts.
    pub fn channel_waiting(&self, id: ChannelId) -> usize {
        self.update(|s| {
            let number = s.channels.len() + 1;
            let mirror = Mirror::new(80, 24);
            let state = ChannelState::Waiting;
            s.channels.push(ChannelEntry { id, number, request: Request::None, pty: false, state, mirror });
            number
        })
    }

    /// The channel got its relay as the session's channel `number` (the number of its
    /// recording): a waiting one is settled, a new one registered. Returns its mirror.
    pub fn channel_started(&self, id: ChannelId, number: usize) -> Mirror {
        self.update(|s| {
            if let Some(entry) = s.channels.iter_mut().find(|c| c.id == id) {
                entry.number = number;
                entry.state = ChannelState::Open;
                return entry.mirror.clone();
            }
            let mirror = Mirror::new(80, 24);
            let state = ChannelState::Open;
            s.channels.push(ChannelEntry {
                id,
                number,
                request: Request::None,
                pty: false,
                state,
                mirror: mirror.clone(),
            });
            mirror
        })
    }

    /// A channel that never got a relay (the target refused it, it cannot be recorded):
    /// it leaves the table, and the waiting channels after it move up.
    pub fn channel_dropped(&self, id: ChannelId) {
        self.update(|s| {
            if let Some(i) = s.channels.iter().position(|c| c.id == id) {
                s.channels.remove(i);
                for later in &mut s.channels[i..] {
                    later.number -= 1;
                }
            }
        });
    }

    pub fn channel_pty(&self, id: ChannelId) {
        self.channel_update(id, |c| c.pty = true);
    }

    pub fn channel_request(&self, id: ChannelId, request: Request) {
        self.channel_update(id, |c| c.request = request);
    }

    pub fn channel_exit(&self, id: ChannelId, status: i64) {
        self.channel_update(id, |c| c.state = ChannelState::Ended(Some(status)));
    }

    pub fn channel_refused(&self, id: ChannelId, reason: String) {
        self.channel_update(id, |c| c.state = ChannelState::Refused(reason));
    }

    /// The channel closed; an exit status or refusal already noted stays. Only the
    /// newest [`ENDED_KEPT`] closed channels stay listed (with their screens).
    pub fn channel_closed(&self, id: ChannelId) {
        self.update(|s| {
            if let Some(c) = s.channels.iter_mut().find(|c| c.id == id) {
                if matches!(c.state, ChannelState::Open | ChannelState::Waiting) {
                    c.state = ChannelState::Ended(None);
                }
            }
            let closed = |c: &ChannelEntry| matches!(c.state, ChannelState::Ended(_) | ChannelState::Refused(_));
            let mut excess = s.channels.iter().filter(|c| closed(c)).count().saturating_sub(ENDED_KEPT);
            s.channels.retain(|c| {
                let drop = excess > 0 && closed(c);
                if drop {
                    excess -= 1;
                }
                !drop
            });
        });
    }

    /// The session's channels, in number order.
    pub fn channels(&self) -> Vec<ChannelEntry> {
        let mut channels = self.state().channels.clone();
        channels.sort_by_key(|c| c.number);
        channels
    }

    /// The channel a watcher follows unless told otherwise: the first with a screen, else
    /// the first.
    pub fn default_channel(&self) -> Option<ChannelEntry> {
        let channels = self.channels();
        channels.iter().find(|c| c.is_screen()).or(channels.first()).cloned()
    }

    fn channel_update(&self, id: ChannelId, f: impl FnOnce(&mut ChannelEntry)) {
        self.update(|s| {
            if let Some(entry) = s.channels.iter_mut().find(|c| c.id == id) {
                f(entry);
            }
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn commands_are_shown_short_and_without_control_characters() {
        assert_eq!(shown("touch /tmp/x"), "touch /tmp/x");
        assert_eq!(shown("a\x1b]0;t\x07b\nc"), "a ]0;t b c");
        let long = "x".repeat(100);
        assert_eq!(shown(&long).chars().count(), SHOWN_COMMAND + 1);
    }
}
