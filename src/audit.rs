//! The audit log: append-only, each entry carrying the SHA-256 of the previous one, so
//! that an entry changed or removed afterwards breaks the chain at that point.
//! `chaperone audit verify` recomputes it. The SQL lives in `store`; this module defines
//! the entries and the hash.

use chrono::{DateTime, SecondsFormat, Utc};
use sha2::{Digest, Sha256};

/// The `prev_hash` of the first entry.
pub const GENESIS: &str = "0000000000000000000000000000000000000000000000000000000000000000";

/// What happened, before it is chained.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct Event {
    /// Dotted kind, e.g. `login.refused`, `booking.approve`, `mail.sent`.
    pub kind: String,
    /// The technician (or vendor) who acted; None for the bastion itself.
    pub actor: Option<String>,
    pub booking: Option<i64>,
    pub vendor: Option<String>,
    pub session: Option<String>,
    /// One line for people.
    pub detail: String,
}

impl Event {
    pub fn new(kind: &str, detail: impl Into<String>) -> Event {
        Event { kind: kind.to_string(), detail: detail.into(), ..Event::default() }
    }

    pub fn actor(mut self, actor: impl Into<String>) -> Event {
        self.actor = Some(actor.into());
        self
    }

    pub fn booking(mut self, id: i64) -> Event {
        self.booking = Some(id);
        self
    }

    pub fn vendor(mut self, vendor: impl Into<String>) -> Event {
        self.vendor = Some(vendor.into());
        self
    }

    pub fn session(mut self, session: impl Into<String>) -> Event {
        self.session = Some(session.into());
        self
    }
}

/// A stored entry: the event as appended, its place in the chain and its time.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Entry {
    pub id: i64,
    pub at: DateTime<Utc>,
    #[serde(flatten)]
    pub event: Event,
    pub prev_hash: String,
    pub hash: String,
}

/// The hash of an entry: SHA-256 over the previous hash and the entry's fields as a JSON
/// array (unambiguous, whatever the fields contain).
pub fn entry_hash(prev_hash: &str, id: i64, at: DateTime<Utc>, event: &Event) -> String {
    let fields = serde_json::json!([
        id,
        at.to_rfc3339_opts(SecondsFormat::Nanos, true),
        event.kind,
        event.actor,
        event.booking,
        event.vendor,
        event.session,
        event.detail,
    ]);
    let mut hasher = Sha256::new();
    hasher.update(prev_hash.as_bytes());
    hasher.update(b"\n");
    hasher.update(fields.to_string().as_bytes());
    format!("{:x}", hasher.finalize())
}

/// Where the chain breaks.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ChainError {
    #[error("audit entry {id} was altered: its hash does not match its content")]
    Altered { id: i64 },
    #[error("audit entry {id} does not follow entry {previous}: an entry before it was removed or altered")]
    Broken { id: i64, previous: i64 },
}

/// Checks a run of entries in id order; the first must follow `GENESIS`.
pub fn verify(entries: &[Entry]) -> Result<(), ChainError> {
    let mut prev_hash = GENESIS.to_string();
    let mut previous = 0;
    for e in entries {
        if e.prev_hash != prev_hash {
            return Err(ChainError::Broken { id: e.id, previous });
        }
        if entry_hash(&e.prev_hash, e.id, e.at, &e.event) != e.hash {
            return Err(ChainError::Altered { id: e.id });
        }
        prev_hash = e.hash.clone();
        previous = e.id;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn chain(events: &[Event]) -> Vec<Entry> {
        let mut prev = GENESIS.to_string();
        let at = Utc::now();
        events
            .iter()
            .enumerate()
            .map(|(i, ev)| {
                let id = i as i64 + 1;
                let hash = entry_hash(&prev, id, at, ev);
                let entry = Entry { id, at, event: ev.clone(), prev_hash: prev.clone(), hash: hash.clone() };
                prev = hash;
                entry
            })
            .collect()
    }

    #[test]
    fn edits_and_removals_are_found() {
        let entries = chain(&[
            Event::new("booking.create", "B-1").actor("alice").booking(1),
            Event::new("booking.approve", "B-1").actor("alice").booking(1),
            Event::new("login.admit", "acme on erp01").vendor("acme"),
        ]);
        assert_eq!(verify(&entries), Ok(()));
        let mut edited = entries.clone();
        edited[1].event.detail = "B-2".into();
        assert_eq!(verify(&edited), Err(ChainError::Altered { id: 2 }));
        let mut removed = entries.clone();
        removed.remove(1);
        assert_eq!(verify(&removed), Err(ChainError::Broken { id: 3, previous: 1 }));
    }
}
