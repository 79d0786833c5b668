//! Supervision (SOP rule 5): a vendor's session starts only when a technician watches,
//! the vendor's input pauses when the last one leaves, and every join, leave and control
//! is told to the vendor, recorded as a marker and audited.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Duration;

use russh::Channel;
use russh::server::Msg;
use tokio::sync::mpsc;

use super::{Input, Live, Notice};
use crate::audit::Event;
use crate::gate::{Gate, GateEvent};
use crate::policy::format_time;

/// How often waiting re-reads the clock (the wait's end follows the injected clock).
const WAIT_TICK: Duration = Duration::from_secs(1);

/// Waits until a technician watches `live`. Channels the vendor opens meanwhile are told
/// why nothing happens yet and kept in `pending` for the relay.
pub async fn wait_for_technician(
    gate: &Gate,
    live: &Live,
    events: &mut mpsc::Receiver<GateEvent>,
    pending: &mut VecDeque<Channel<Msg>>,
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
    loop {
        if let Some(reason) = live.ended() {
            return Err(reason);
        }
        let watchers = live.watchers();
        if !watchers.is_empty() {
            let joined = format!("chaperone: technician {} is watching; starting the session\r\n", watchers.join(", "));
            for channel in pending.iter() {
                let _ = channel.extended_data(1, joined.as_bytes()).await;
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
                    let _ = channel.extended_data(1, waiting.as_bytes()).await;
                    pending.push_back(channel);
                }
                None => return Err("the vendor left before a technician joined".into()),
            },
            _ = changed.changed() => {}
            _ = tick.tick() => {}
            _ = gate.shutdown.cancelled() => return Err("the bastion is shutting down".into()),
        }
    }
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
        let taken = self.live.update(|s| {
            s.input = match &s.input {
                Input::TakenOver(by) if by == tech => Input::Open,
                _ => Input::TakenOver(tech.clone()),
            };
            matches!(s.input, Input::TakenOver(_))
        });
        let (kind, text) = if taken {
            ("control.takeover", format!("technician {tech} took over the keyboard; your input is held"))
        } else {
            ("control.handback", format!("technician {tech} handed the keyboard back to you"))
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
            if matches!(&s.input, Input::TakenOver(by) | Input::Frozen(by) if by == tech) {
                s.input = Input::Open;
            }
            let paused = s.watchers.is_empty() && policy.require_supervisor && s.ended.is_none();
            if paused {
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
