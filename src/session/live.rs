//! A running session as everyone else sees it: the scheduler (warnings, ends), watching
//! technicians (mirror, controls) and the `sessions` command. The session task creates it,
//! registers it in the gate's table and removes it at the end.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};

use bytes::Bytes;
use chrono::{DateTime, Utc};
use tokio::sync::{broadcast, mpsc, watch};

/// Running sessions by id.
pub type LiveSessions = Mutex<HashMap<String, Arc<Live>>>;

/// What the scheduler, shutdown or a technician tells a running session.
#[derive(Debug, Clone)]
pub enum Notice {
    /// Shown to the vendor on a line of its own (stderr) and recorded as a marker.
    Warn(String),
    /// Shown in the vendor's terminal title (which no full-screen program is disturbed
    /// by) and recorded as a marker: who joined, left, froze, took over.
    Status(String),
    /// Recorded as a marker only (a technician's annotation).
    Mark(String),
    /// Shown, recorded, and the session is closed.
    End(String),
}

/// Who may type into the target right now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Input {
    /// The vendor types.
    Open,
    /// No technician watches (supervision required): the vendor's input is discarded.
    Unsupervised,
    /// A technician froze the vendor's input.
    Frozen(String),
    /// A technician types instead of the vendor.
    TakenOver(String),
}

impl Input {
    pub fn describe(&self) -> String {
        match self {
            Input::Open => "vendor typing".into(),
            Input::Unsupervised => "input paused: nobody watching".into(),
            Input::Frozen(by) => format!("frozen by {by}"),
            Input::TakenOver(by) => format!("keyboard taken over by {by}"),
        }
    }
}

/// The mutable part, behind one lock.
#[derive(Debug)]
pub struct Supervision {
    /// Technicians watching now (a name appears once per watch).
    pub watchers: Vec<String>,
    pub input: Input,
    /// The freeze a take-over interrupted (by whom): handing the keyboard back, or its
    /// holder leaving, restores it. Without it, one technician's take-over would silently
    /// lift another's freeze.
    pub interrupted_freeze: Option<String>,
    /// Minutes-before-end warnings already given.
    pub warned: Vec<i64>,
    /// Why the session was ended (once announced, it is closing). Kept, so that a channel
    /// starting after the announcement still learns it.
    pub ended: Option<String>,
    /// When the last watcher left (supervision required), for the grace period.
    pub unsupervised_since: Option<DateTime<Utc>>,
    /// Every channel the session took up or keeps waiting, for watchers and `sessions`
    /// (at most the session's channel limit, so small).
    pub channels: Vec<super::listing::ChannelEntry>,
}

#[derive(Debug)]
pub struct Live {
    pub id: String,
    pub vendor: String,
    /// The fingerprint of the key the vendor logged in with.
    pub key: String,
    pub target: String,
    pub account: String,
    pub booking: i64,
    pub booking_label: String,
    pub window_end: DateTime<Utc>,
    pub started: DateTime<Utc>,
    pub notices: broadcast::Sender<Notice>,
    /// A technician's keystrokes while the keyboard is taken over; the session's first
    /// channel forwards them. Small: a person types; when full, keystrokes wait.
    pub takeover: mpsc::Sender<Bytes>,
    supervision: Mutex<Supervision>,
    /// Bumped on every change of watchers or input, so waiters and status lines update.
    changed: watch::Sender<u64>,
}

impl Live {
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        id: String,
        vendor: String,
        key: String,
        target: String,
        account: String,
        booking: &crate::store::Booking,
        started: DateTime<Utc>,
        notices: broadcast::Sender<Notice>,
        takeover: mpsc::Sender<Bytes>,
        input: Input,
    ) -> Live {
        Live {
            id,
            vendor,
            key,
            target,
            account,
            booking: booking.id,
            booking_label: booking.label(),
            window_end: booking.end,
            started,
            notices,
            takeover,
            supervision: Mutex::new(Supervision {
                watchers: Vec::new(),
                input,
                interrupted_freeze: None,
                warned: Vec::new(),
                ended: None,
                unsupervised_since: None,
                channels: Vec::new(),
            }),
            changed: watch::channel(0).0,
        }
    }

    pub fn state(&self) -> MutexGuard<'_, Supervision> {
        // Nothing panics while holding it; a poisoned lock still holds valid state.
        self.supervision.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Changes the supervision state and wakes everyone who follows it.
    pub fn update<R>(&self, f: impl FnOnce(&mut Supervision) -> R) -> R {
        let result = f(&mut self.state());
        self.changed.send_modify(|v| *v += 1);
        result
    }

    pub fn subscribe(&self) -> watch::Receiver<u64> {
        self.changed.subscribe()
    }

    pub fn input(&self) -> Input {
        self.state().input.clone()
    }

    pub fn watchers(&self) -> Vec<String> {
        self.state().watchers.clone()
    }

    /// Tells the session something (all its channels).
    pub fn notify(&self, notice: Notice) {
        let _ = self.notices.send(notice);
    }

    /// Ends the session with `reason` (the first reason given wins).
    pub fn end(&self, reason: String) {
        let first = self.update(|s| {
            let first = s.ended.is_none();
            if first {
                s.ended = Some(reason.clone());
            }
            first
        });
        if first {
            self.notify(Notice::End(reason));
        }
    }

    pub fn ended(&self) -> Option<String> {
        self.state().ended.clone()
    }
}
