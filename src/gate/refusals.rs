//! What a vendor's connection was refused below the login, kept as evidence: forwarding
//! of any kind, agent and X11, environment variables, subsystems, file transfer. Each
//! refusal is an audit entry (`channel.refused`) and a marker on the session's timeline,
//! written into the first recording that has started (a session waiting for its
//! technician has none yet: the markers wait). A client can send thousands of requests:
//! the first few of each kind are itemized, the rest counted in one entry per kind.

use std::collections::{BTreeMap, VecDeque};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard};

use tokio::sync::watch;

use super::Gate;
use crate::audit::Event;
use crate::session::Live;

/// Refusals of one kind itemized per connection (audit entry, marker, stderr line); the
/// rest are counted. Enough to see what was tried and how; a flood adds one entry.
const ITEMIZED_PER_KIND: u64 = 5;

/// Markers waiting for a recording. Itemized refusals and counts fill at most
/// `ITEMIZED_PER_KIND + 1` per kind; beyond this (a session never recorded) the oldest are
/// dropped: the audit log has them all.
const MAX_QUEUED_MARKERS: usize = 64;

/// Client-sent names (hosts, paths, variables, commands) are shown up to this many
/// characters, so that a refusal's entry stays one readable line.
const MAX_SHOWN_CHARS: usize = 200;

/// What was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Refused {
    /// `ssh -L`, `-D`, `-W` (direct-tcpip).
    PortForwarding,
    /// `ssh -L` to a socket path (direct-streamlocal).
    SocketForwarding,
    /// `ssh -R` (tcpip-forward).
    RemotePortForwarding,
    /// `ssh -R` of a socket path (streamlocal-forward).
    RemoteSocketForwarding,
    /// `ssh -X`/`-Y` (x11-req), or an X11 channel opened by the client.
    X11Forwarding,
    /// `ssh -A` (auth-agent-req).
    AgentForwarding,
    /// An environment variable other than locale and terminal type.
    Environment,
    /// A subsystem (sftp).
    Subsystem,
    /// A transfer protocol started as a command, or recognised on a channel.
    FileTransfer,
    /// A session channel beyond what one connection may open in its life
    /// (see `MAX_CHANNELS_PER_CONNECTION` in the handler).
    ChannelLimit,
}

impl Refused {
    /// The words people read, in audit entries and on the vendor's stderr.
    pub fn describe(self) -> &'static str {
        match self {
            Refused::PortForwarding => "port forwarding",
            Refused::SocketForwarding => "socket forwarding",
            Refused::RemotePortForwarding => "remote port forwarding",
            Refused::RemoteSocketForwarding => "remote socket forwarding",
            Refused::X11Forwarding => "X11 forwarding",
            Refused::AgentForwarding => "agent forwarding",
            Refused::Environment => "environment variable",
            Refused::Subsystem => "subsystem",
            Refused::FileTransfer => "file transfer",
            Refused::ChannelLimit => "another channel on this connection",
        }
    }
}

/// A client-sent string as it is shown: bounded, and quoted (control characters escaped)
/// unless it is a plain word, so that it cannot pass for more of the line than it is.
pub fn shown(text: &str) -> String {
    let mut cut: String = text.chars().take(MAX_SHOWN_CHARS).collect();
    if cut.len() < text.len() {
        cut.push('…');
    }
    let plain = |c: char| c.is_ascii_alphanumeric() || "/._-:@+=,%".contains(c);
    if !cut.is_empty() && cut.chars().all(plain) { cut } else { format!("{cut:?}") }
}

/// One connection's refusals. Created by the gate's handler at login, given to the
/// session task, which attaches its session (id, booking) and lets its relays record the
/// markers.
#[derive(Debug)]
pub struct Refusals {
    gate: Arc<Gate>,
    vendor: String,
    peer: SocketAddr,
    state: Mutex<State>,
    /// Bumped when a marker is queued, so relays that have started record it.
    queued: watch::Sender<u64>,
}

#[derive(Debug, Default)]
struct State {
    /// The session's id and booking, once it has them (admitted, its `Live` created).
    session: Option<(String, i64)>,
    /// Entries refused before the session had an id; audited with it when it comes
    /// (or without, if it never does). At most `ITEMIZED_PER_KIND` per kind.
    unaudited: Vec<Event>,
    /// Markers for the first recording that has started.
    markers: VecDeque<String>,
    /// Refusals per kind so far, itemized or not.
    seen: BTreeMap<Refused, u64>,
    /// Refusals per kind counted but not itemized, not yet in the audit log.
    counted: BTreeMap<Refused, u64>,
}

impl Refusals {
    pub fn new(gate: Arc<Gate>, vendor: String, peer: SocketAddr) -> Arc<Refusals> {
        Arc::new(Refusals { gate, vendor, peer, state: Mutex::default(), queued: watch::channel(0).0 })
    }

    fn state(&self) -> MutexGuard<'_, State> {
        // Nothing panics while holding it; a poisoned lock still holds valid state.
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Notes a refusal (`detail`: what exactly, one line). Returns whether it was
    /// itemized: only then is the vendor told on stderr, so a flood is not echoed either.
    pub fn refuse(&self, kind: Refused, detail: String) -> bool {
        let mut state = self.state();
        let seen = state.seen.entry(kind).or_default();
        *seen += 1;
        if *seen > ITEMIZED_PER_KIND {
            tracing::debug!(peer = %self.peer, vendor = %self.vendor, "refused (counted): {detail}");
            let first = *seen == ITEMIZED_PER_KIND + 1;
            *state.counted.entry(kind).or_default() += 1;
            // The timeline says where the flood began; its count is audited at the end.
            if first {
                state.queue_marker(format!(
                    "more {} refusals follow; they are counted in the audit log",
                    kind.describe()
                ));
                self.queued.send_modify(|n| *n += 1);
            }
            return false;
        }
        tracing::info!(peer = %self.peer, vendor = %self.vendor, "refused: {detail}");
        self.note(&mut state, detail);
        true
    }

    /// Audits and queues a marker (under the lock: entries keep their order).
    fn note(&self, state: &mut State, detail: String) {
        let mut event = Event::new("channel.refused", detail.clone()).vendor(&self.vendor);
        match &state.session {
            Some((id, booking)) => {
                event = event.session(id).booking(*booking);
                self.gate.audit(event);
            }
            None => state.unaudited.push(event),
        }
        state.queue_marker(detail);
        self.queued.send_modify(|n| *n += 1);
    }

    /// The session exists: refusals so far are audited with its id, later ones at once.
    pub fn attach(&self, live: &Live) {
        let mut state = self.state();
        state.session = Some((live.id.clone(), live.booking));
        for event in std::mem::take(&mut state.unaudited) {
            self.gate.audit(event.session(&live.id).booking(live.booking));
        }
    }

    /// Markers not yet recorded; the caller records them.
    pub fn take_markers(&self) -> Vec<String> {
        self.state().markers.drain(..).collect()
    }

    /// Changes when a marker is queued.
    pub fn subscribe(&self) -> watch::Receiver<u64> {
        self.queued.subscribe()
    }

    /// Audits what was refused but not itemized, one entry per kind (at the session's end,
    /// so its folder's audit trail has them; and when the connection is gone).
    pub fn flush(&self) {
        let mut state = self.state();
        for (kind, count) in std::mem::take(&mut state.counted) {
            let detail = format!(
                "{count} more {} refusals on this connection (the first {ITEMIZED_PER_KIND} are itemized)",
                kind.describe()
            );
            self.note(&mut state, detail);
        }
        // Never attached (the login was refused): audited without a session.
        for event in std::mem::take(&mut state.unaudited) {
            self.gate.audit(event);
        }
    }
}

impl State {
    fn queue_marker(&mut self, text: String) {
        if self.markers.len() >= MAX_QUEUED_MARKERS {
            self.markers.pop_front();
        }
        self.markers.push_back(text);
    }
}

impl Drop for Refusals {
    fn drop(&mut self) {
        self.flush();
    }
}
