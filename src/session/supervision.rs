//! Supervision (SOP rule 5): a vendor's session starts only when a technician watches,
//! the vendor's input pauses when the last one leaves, and every join, leave and control
//! is told to the vendor, recorded as a marker and audited.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Duration;

use russh::Channel;
use russh::server::Msg;
use tokio::sync::mpsc;

use russh::ChannelMsg;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use super::listing::Request;
use super::{Input, Live, Notice};
use crate::audit::Event;
use crate::gate::{Gate, GateEvent};
use crate::policy::format_time;

/// How often waiting re-reads the clock (the wait's end follows the injected clock).
const WAIT_TICK: Duration = Duration::from_secs(1);

/// Messages of a waiting channel kept, at most: a client sends a few (a terminal, its
/// environment, the request, a resize or two) before a technician joins; more are
/// dropped, so a waiting channel holds little.
const READ_AHEAD: usize = 32;

/// A channel the session took up, with what its client sent while it waited.
pub struct Opened {
    pub channel: Channel<Msg>,
    /// Read while waiting for a technician (to list the channel's request); relayed first.
    pub early: Vec<ChannelMsg>,
}

impl Opened {
    pub fn new(channel: Channel<Msg>) -> Opened {
        Opened { channel, early: Vec::new() }
    }
}

/// Waits until a technician watches `live`. Channels the vendor opens meanwhile are told
/// why nothing happens yet, listed (with their request, as soon as it comes) and kept in
/// `pending` for the relay; nothing of theirs reaches the target before then.
pub async fn wait_for_technician(
    gate: &Gate,
    live: &Arc<Live>,
    events: &mut mpsc::Receiver<GateEvent>,
    pending: &mut VecDeque<Opened>,
    max_channels: usize,
) -> Result<(), String> {
    let policy = &gate.config.policy;
    let deadline = gate.clock.now() + policy.supervisor_wait;
    let waiting = format!(
        "chaperone: waiting for a technician to join (booking {}, window ends {}, session {})\r\n",
        live.booking_label,
        format_time(live.window_end, policy.timezone),
        live.id
    );
    let mut changed = live.subscribe();
    let mut tick = tokio::time::interval(WAIT_TICK);
    // Each waiting channel is read up to its request, so the joining technician sees
    // what it will run; told to stop when the wait ends.
    let stop = CancellationToken::new();
    let _stop_on_drop = stop.clone().drop_guard();
    let mut intakes: JoinSet<(usize, Opened)> = JoinSet::new();
    // Channels over the limit, being told so; dropped with the wait.
    let mut refusals = JoinSet::new();
    loop {
        if let Some(reason) = live.ended() {
            return Err(reason);
        }
        let watchers = live.watchers();
        if !watchers.is_empty() {
            stop.cancel();
            let mut opened = Vec::new();
            while let Some(intake) = intakes.join_next().await {
                if let Ok(intake) = intake {
                    opened.push(intake);
                }
            }
            opened.sort_by_key(|(number, _)| *number);
            let joined = format!("chaperone: technician {} is watching; starting the session\r\n", watchers.join(", "));
            for (_, channel) in opened {
                let _ = channel.channel.extended_data(1, joined.as_bytes()).await;
                pending.push_back(channel);
            }
            return Ok(());
        }
        if gate.clock.now() >= deadline {
            return Err(format!(
                "no technician joined within {} minutes; the session was not started (call your provider)",
                policy.supervisor_wait.num_minutes()
            ));
        }
        tokio::select! {
            event = events.recv() => match event {
                Some(GateEvent::Channel(channel)) => {
                    while refusals.try_join_next().is_some() {}
                    if intakes.len() >= max_channels {
                        let reason = format!("this session already has {max_channels} channels open, the most it may have");
                        refusals.spawn(super::refusal::on_channel(channel, reason));
                        continue;
                    }
                    let _ = channel.extended_data(1, waiting.as_bytes()).await;
                    let number = live.channel_waiting(channel.id());
                    intakes.spawn(intake(channel, number, live.clone(), stop.clone()));
                }
                None => return Err("the vendor left before a technician joined".into()),
            },
            _ = changed.changed() => {}
            _ = tick.tick() => {}
            _ = gate.shutdown.cancelled() => return Err("the bastion is shutting down".into()),
        }
    }
}

/// Reads a waiting channel until told to stop, noting its request in the session's
/// channel list. What the vendor types meanwhile is discarded, as whenever nobody watches
/// (the vendor is told once): typed ahead, it would run the moment a technician joins,
/// before they could act. The rest goes to the relay with the channel, in order.
async fn intake(mut channel: Channel<Msg>, number: usize, live: Arc<Live>, stop: CancellationToken) -> (usize, Opened) {
    let mut early = Vec::new();
    let id = channel.id();
    let mut told = false;
    // A channel runs one shell or command, its first request: a later one would change
    // what the listing names (what the technician joins to) without changing what runs.
    let mut requested = false;
    loop {
        let msg = tokio::select! {
            msg = channel.wait() => msg,
            _ = stop.cancelled() => break,
        };
        let Some(msg) = msg else { break };
        match &msg {
            ChannelMsg::Data { .. } => {
                if !told {
                    let text =
                        format!("\r\nchaperone: your input is discarded ({})\r\n", Input::Unsupervised.describe());
                    let _ = channel.extended_data(1, text.as_bytes()).await;
                    told = true;
                }
                continue;
            }
            ChannelMsg::RequestShell { .. } | ChannelMsg::Exec { .. } if requested => continue,
            ChannelMsg::RequestPty { .. } => live.channel_pty(id),
            ChannelMsg::RequestShell { .. } => {
                requested = true;
                live.channel_request(id, Request::Shell)
            }
            ChannelMsg::Exec { command, .. } if !crate::policy::is_file_transfer(command) => {
                requested = true;
                live.channel_request(id, Request::Exec(String::from_utf8_lossy(command).into_owned()))
            }
            _ => {}
        }
        let closed = matches!(msg, ChannelMsg::Close);
        if early.len() < READ_AHEAD || closed {
            early.push(msg);
        }
        if closed {
            break;
        }
    }
    (number, Opened { channel, early })
}

/// Refuses a channel's shell or command because the session's input is held (`input`):
/// the vendor reads why on the channel's stderr (the relay writes it), the audit log and
/// the session's timeline (a marker in every open channel's recording, the first one's
/// included, which replay shows) say which channel asked for what.
pub fn refuse_channel(gate: &Gate, live: &Live, number: usize, request: &Request, input: &Input) -> String {
    let asked = match request {
        Request::Exec(command) => format!("command {:?}", super::listing::shown(command)),
        _ => "shell".to_string(),
    };
    let why = match input {
        Input::Frozen(by) => format!("technician {by} froze the session's input"),
        Input::TakenOver(by) => format!("technician {by} has taken over the keyboard"),
        Input::Unsupervised => "no technician is watching".to_string(),
        Input::Open => "the session's input is held".to_string(),
    };
    let reason = format!("channel {number} refused: a new {asked} cannot start while {why}");
    let detail = match request {
        Request::Exec(command) => format!("channel {number}: exec {command:?} refused: {why}"),
        _ => format!("channel {number}: shell refused: {why}"),
    };
    gate.audit(Event::new("channel.refused", detail).vendor(&live.vendor).booking(live.booking).session(&live.id));
    live.notify(Notice::Mark(reason.clone()));
    reason
}

/// A technician watching a session; leaving (drop) is recorded like joining.
pub struct Watching {
    gate: Arc<Gate>,
    live: Arc<Live>,
    tech: String,
}

impl Watching {
    pub fn start(gate: Arc<Gate>, live: Arc<Live>, tech: &str) -> Watching {
        let resumed = live.update(|s| {
            s.watchers.push(tech.to_string());
            s.unsupervised_since = None;
            let resumed = s.input == Input::Unsupervised;
            if resumed {
                s.input = Input::Open;
            }
            resumed
        });
        let mut text = format!("technician {tech} is watching this session");
        if resumed {
            text.push_str("; your input is enabled");
        }
        announce(&gate, &live, tech, "watch.join", text);
        Watching { gate, live, tech: tech.to_string() }
    }

    pub fn live(&self) -> &Arc<Live> {
        &self.live
    }

    /// Freezes or unfreezes the vendor's input.
    pub fn toggle_freeze(&self) {
        let tech = &self.tech;
        let frozen = self.live.update(|s| {
            // A freeze (or an unfreeze) now is the newest word: no older one comes back.
            s.interrupted_freeze = None;
            s.input = match &s.input {
                Input::Frozen(_) => Input::Open,
                _ => Input::Frozen(tech.clone()),
            };
            matches!(s.input, Input::Frozen(_))
        });
        let (kind, text) = if frozen {
            ("control.freeze", format!("technician {tech} froze your input; keystrokes are discarded"))
        } else {
            ("control.unfreeze", format!("technician {tech} unfroze your input"))
        };
        announce(&self.gate, &self.live, tech, kind, text);
    }

    /// Takes the keyboard over, or hands it back.
    pub fn toggle_takeover(&self) -> bool {
        let tech = &self.tech;
        let input = self.live.update(|s| {
            let (input, interrupted) = match (&s.input, s.interrupted_freeze.take()) {
                // Handed back: to a freeze the take-over interrupted, if any.
                (Input::TakenOver(by), freeze) if by == tech => (freeze.map_or(Input::Open, Input::Frozen), None),
                (Input::Frozen(by), _) => (Input::TakenOver(tech.clone()), Some(by.clone())),
                (_, freeze) => (Input::TakenOver(tech.clone()), freeze),
            };
            s.input = input.clone();
            s.interrupted_freeze = interrupted;
            input
        });
        let taken = matches!(input, Input::TakenOver(_));
        let (kind, text) = match &input {
            Input::TakenOver(_) => {
                ("control.takeover", format!("technician {tech} took over the keyboard; your input is held"))
            }
            Input::Frozen(by) => (
                "control.handback",
                format!("technician {tech} handed the keyboard back; your input stays frozen by {by}"),
            ),
            _ => ("control.handback", format!("technician {tech} handed the keyboard back to you")),
        };
        announce(&self.gate, &self.live, tech, kind, text);
        taken
    }

    /// A technician's note on the session's timeline (not shown to the vendor).
    pub fn annotate(&self, note: &str) {
        let text = format!("note by {}: {note}", self.tech);
        self.live.notify(Notice::Mark(text.clone()));
        audit(&self.gate, &self.live, &self.tech, "control.annotate", text);
    }

    /// Ends the session with the technician's reason.
    pub fn kill(&self, reason: &str) {
        kill(&self.gate, &self.live, &self.tech, reason);
    }
}

impl Drop for Watching {
    fn drop(&mut self) {
        let (tech, policy) = (&self.tech, &self.gate.config.policy);
        let now = self.gate.clock.now();
        let paused = self.live.update(|s| {
            if let Some(i) = s.watchers.iter().position(|w| w == tech) {
                s.watchers.remove(i);
            }
            // A freeze goes with the technician who made it; one a take-over interrupted
            // comes back when the one holding the keyboard leaves.
            if s.interrupted_freeze.as_ref() == Some(tech) {
                s.interrupted_freeze = None;
            }
            if matches!(&s.input, Input::TakenOver(by) | Input::Frozen(by) if by == tech) {
                s.input = s.interrupted_freeze.take().map_or(Input::Open, Input::Frozen);
            }
            let paused = s.watchers.is_empty() && policy.require_supervisor && s.ended.is_none();
            if paused {
                s.interrupted_freeze = None;
                s.input = Input::Unsupervised;
                s.unsupervised_since = Some(now);
            }
            paused
        });
        let mut text = format!("technician {tech} stopped watching");
        if paused {
            text.push_str(&format!(
                "; your input is paused until a technician returns (the session ends in {} minutes otherwise)",
                policy.supervisor_grace.num_minutes()
            ));
        }
        announce(&self.gate, &self.live, tech, "watch.leave", text);
    }
}

/// Ends a session on a technician's word.
pub fn kill(gate: &Gate, live: &Live, tech: &str, reason: &str) {
    let text = format!("technician {tech} ended the session: {reason}");
    audit(gate, live, tech, "control.kill", text.clone());
    live.end(text);
}

/// Tells the vendor (in the terminal title, recorded as a marker) and audits.
fn announce(gate: &Gate, live: &Live, tech: &str, kind: &str, text: String) {
    live.notify(Notice::Status(text.clone()));
    audit(gate, live, tech, kind, text);
}

fn audit(gate: &Gate, live: &Live, tech: &str, kind: &str, text: String) {
    gate.audit(Event::new(kind, text).actor(tech).vendor(&live.vendor).booking(live.booking).session(&live.id));
}
