//! The audit table: appends chain each entry to the last one inside one transaction.

use chrono::{DateTime, Utc};
use rusqlite::{OptionalExtension, params};

use super::{Result, Store};
use crate::audit::{Entry, Event, GENESIS, entry_hash};

/// Which entries `audit` shows.
#[derive(Debug, Clone, Default)]
pub struct AuditFilter {
    pub since: Option<DateTime<Utc>>,
    pub booking: Option<i64>,
    pub vendor: Option<String>,
}

impl Store {
    /// Appends an event at `at`, chained to the last entry.
    pub fn audit(&self, at: DateTime<Utc>, event: &Event) -> Result<()> {
        let mut conn = self.conn();
        // IMMEDIATE: take the write lock before reading the last hash, so two processes
        // appending at once cannot both chain to the same entry.
        let tx = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
        let last: Option<(i64, String)> = tx
            .query_row("SELECT id, hash FROM audit ORDER BY id DESC LIMIT 1", [], |r| Ok((r.get(0)?, r.get(1)?)))
            .optional()?;
        let (id, prev_hash) = match last {
            Some((id, hash)) => (id + 1, hash),
            None => (1, GENESIS.to_string()),
        };
        let hash = entry_hash(&prev_hash, id, at, event);
        tx.execute(
            "INSERT INTO audit (id, at, kind, actor, booking, vendor, session, detail, prev_hash, hash)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)",
            params![
                id,
                at,
                event.kind,
                event.actor,
                event.booking,
                event.vendor,
                event.session,
                event.detail,
                prev_hash,
                hash
            ],
        )?;
        tx.commit()?;
        Ok(())
    }

    /// Audit entries in order, filtered.
    pub fn audit_entries(&self, filter: &AuditFilter) -> Result<Vec<Entry>> {
        let conn = self.conn();
        let mut stmt = conn.prepare(
            "SELECT id, at, kind, actor, booking, vendor, session, detail, prev_hash, hash FROM audit
             WHERE (?1 IS NULL OR at >= ?1) AND (?2 IS NULL OR booking = ?2) AND (?3 IS NULL OR vendor = ?3)
             ORDER BY id",
        )?;
        let rows = stmt
            .query_map(params![filter.since, filter.booking, filter.vendor], |r| {
                Ok(Entry {
                    id: r.get(0)?,
                    at: r.get(1)?,
                    event: Event {
                        kind: r.get(2)?,
                        actor: r.get(3)?,
                        booking: r.get(4)?,
                        vendor: r.get(5)?,
                        session: r.get(6)?,
                        detail: r.get(7)?,
                    },
                    prev_hash: r.get(8)?,
                    hash: r.get(9)?,
                })
            })?
            .collect::<rusqlite::Result<_>>()?;
        Ok(rows)
    }
}
