//! Clients, technicians, bookings with their plans and acknowledgements, and the mails
//! sent about them.

use chrono::{DateTime, Utc};
use rusqlite::{OptionalExtension, params};
use russh::keys::PublicKey;

use super::{Result, Store, StoreError, check_email, exists};
use crate::keys::fingerprint;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Client {
    pub name: String,
    /// Where confirmations go.
    pub emails: Vec<String>,
    pub created_at: DateTime<Utc>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Technician {
    pub name: String,
    pub email: String,
    pub enabled: bool,
    pub keys: Vec<String>,
    pub created_at: DateTime<Utc>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BookingState {
    /// Created; waits for acknowledgements and a technician's approval.
    Pending,
    /// The vendor may log in inside the window.
    Approved,
    Cancelled,
}

impl BookingState {
    pub fn as_str(self) -> &'static str {
        match self {
            BookingState::Pending => "pending",
            BookingState::Approved => "approved",
            BookingState::Cancelled => "cancelled",
        }
    }

    fn parse(s: &str) -> BookingState {
        match s {
            "approved" => BookingState::Approved,
            "cancelled" => BookingState::Cancelled,
            _ => BookingState::Pending,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Booking {
    pub id: i64,
    pub vendor: String,
    pub target: String,
    pub account: String,
    pub start: DateTime<Utc>,
    pub end: DateTime<Utc>,
    /// The zone the times were booked in, for showing them back.
    pub timezone: String,
    /// The plan as written (Markdown); the bytes every acknowledgement covers.
    pub plan: String,
    /// Justification for a privileged account.
    pub privileged: Option<String>,
    /// Reason for skipping the lead time.
    pub emergency: Option<String>,
    pub state: BookingState,
    pub created_at: DateTime<Utc>,
    pub created_by: Option<String>,
    pub approved_by: Option<String>,
    pub approved_at: Option<DateTime<Utc>>,
    pub cancelled_by: Option<String>,
    pub cancelled_at: Option<DateTime<Utc>>,
    pub cancel_reason: Option<String>,
    /// When the scheduler processed the window's opening (confirmation mails sent).
    pub opened_at: Option<DateTime<Utc>>,
    pub closed_at: Option<DateTime<Utc>>,
}

impl Booking {
    /// How people refer to a booking: `B-17`.
    pub fn label(&self) -> String {
        format!("B-{}", self.id)
    }

    pub fn covers(&self, at: DateTime<Utc>) -> bool {
        self.start <= at && at < self.end
    }
}

/// What `booking create` stores, after policy accepted it.
#[derive(Debug, Clone)]
pub struct NewBooking {
    pub vendor: String,
    pub target: String,
    pub account: String,
    pub start: DateTime<Utc>,
    pub end: DateTime<Utc>,
    pub timezone: String,
    pub plan: String,
    pub privileged: Option<String>,
    pub emergency: Option<String>,
    pub created_by: Option<String>,
    pub created_at: DateTime<Utc>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Acknowledgement {
    pub booking: i64,
    /// `vendor`, `client` or `provider`.
    pub party: String,
    /// Who recorded it (a technician) or who signed (the vendor).
    pub by: Option<String>,
    pub note: Option<String>,
    /// The armored SSH signature over the plan, if any.
    pub signature: Option<String>,
    pub key_fingerprint: Option<String>,
    pub at: DateTime<Utc>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mail {
    pub id: i64,
    pub booking: i64,
    /// `open` (window confirmation) or `cancel`.
    pub kind: String,
    pub recipients: String,
    pub message_id: String,
    /// The kept copy of the message (`.eml`).
    pub copy_path: String,
    /// `pending`, `sent` or `failed` (gave up).
    pub state: String,
    pub attempts: i64,
    pub last_attempt_at: Option<DateTime<Utc>>,
    pub last_error: Option<String>,
}

const BOOKING_SELECT: &str = "SELECT id, vendor, target, account, start_at, end_at, timezone, plan, privileged,
    emergency, state, created_at, created_by, approved_by, approved_at, cancelled_by, cancelled_at,
    cancel_reason, opened_at, closed_at FROM bookings";

fn booking_from_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<Booking> {
    Ok(Booking {
        id: r.get(0)?,
        vendor: r.get(1)?,
        target: r.get(2)?,
        account: r.get(3)?,
        start: r.get(4)?,
        end: r.get(5)?,
        timezone: r.get(6)?,
        plan: r.get(7)?,
        privileged: r.get(8)?,
        emergency: r.get(9)?,
        state: BookingState::parse(&r.get::<_, String>(10)?),
        created_at: r.get(11)?,
        created_by: r.get(12)?,
        approved_by: r.get(13)?,
        approved_at: r.get(14)?,
        cancelled_by: r.get(15)?,
        cancelled_at: r.get(16)?,
        cancel_reason: r.get(17)?,
        opened_at: r.get(18)?,
        closed_at: r.get(19)?,
    })
}

const MAIL_SELECT: &str = "SELECT id, booking, kind, recipients, message_id, copy_path, state, attempts,
    last_attempt_at, last_error FROM mails";

fn mail_from_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<Mail> {
    Ok(Mail {
        id: r.get(0)?,
        booking: r.get(1)?,
        kind: r.get(2)?,
        recipients: r.get(3)?,
        message_id: r.get(4)?,
        copy_path: r.get(5)?,
        state: r.get(6)?,
        attempts: r.get(7)?,
        last_attempt_at: r.get(8)?,
        last_error: r.get(9)?,
    })
}

impl Store {
    // ---- clients -------------------------------------------------------------------

    pub fn client_add(&self, name: &str, emails: &[String]) -> Result<()> {
        crate::names::check_name("client", name).map_err(|e| StoreError::Invalid(e.0))?;
        if emails.is_empty() {
            return Err(StoreError::Invalid("a client needs at least one --email".into()));
        }
        for email in emails {
            check_email(email)?;
        }
        let conn = self.conn();
        if exists(&conn, "SELECT 1 FROM clients WHERE name = ?1", [name])? {
            return Err(StoreError::Duplicate(format!("client {name:?} already exists")));
        }
        conn.execute(
            "INSERT INTO clients (name, emails, created_at) VALUES (?1, ?2, ?3)",
            params![name, emails.join(","), Utc::now()],
        )?;
        Ok(())
    }

    pub fn client(&self, name: &str) -> Result<Option<Client>> {
        let conn = self.conn();
        Ok(conn
            .query_row("SELECT name, emails, created_at FROM clients WHERE name = ?1", [name], |r| {
                Ok(Client {
                    name: r.get(0)?,
                    emails: r.get::<_, String>(1)?.split(',').map(str::to_string).collect(),
                    created_at: r.get(2)?,
                })
            })
            .optional()?)
    }

    pub fn client_list(&self) -> Result<Vec<Client>> {
        self.all_by_name("clients", |n| self.client(n))
    }

    // ---- technicians ---------------------------------------------------------------

    pub fn tech_add(&self, name: &str, email: &str, keys: &[PublicKey]) -> Result<()> {
        crate::names::check_name("technician", name).map_err(|e| StoreError::Invalid(e.0))?;
        check_email(email)?;
        if keys.is_empty() {
            return Err(StoreError::Invalid("a technician needs at least one --key".into()));
        }
        let mut conn = self.conn();
        let tx = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
        if exists(&tx, "SELECT 1 FROM technicians WHERE name = ?1", [name])?
            || exists(&tx, "SELECT 1 FROM vendors WHERE name = ?1", [name])?
        {
            return Err(StoreError::Duplicate(format!("{name:?} is already a technician or vendor name")));
        }
        tx.execute(
            "INSERT INTO technicians (name, email, enabled, created_at) VALUES (?1, ?2, 1, ?3)",
            params![name, email, Utc::now()],
        )?;
        super::people::insert_keys(&tx, super::Role::Technician, name, keys)?;
        tx.commit()?;
        Ok(())
    }

    pub fn tech(&self, name: &str) -> Result<Option<Technician>> {
        let conn = self.conn();
        let row = conn
            .query_row("SELECT name, email, enabled, created_at FROM technicians WHERE name = ?1", [name], |r| {
                Ok(Technician {
                    name: r.get(0)?,
                    email: r.get(1)?,
                    enabled: r.get(2)?,
                    keys: Vec::new(),
                    created_at: r.get(3)?,
                })
            })
            .optional()?;
        let Some(mut tech) = row else { return Ok(None) };
        let mut stmt = conn.prepare("SELECT public_key FROM technician_keys WHERE technician = ?1 ORDER BY rowid")?;
        tech.keys = stmt.query_map([name], |r| r.get(0))?.collect::<rusqlite::Result<_>>()?;
        Ok(Some(tech))
    }

    pub fn tech_list(&self) -> Result<Vec<Technician>> {
        self.all_by_name("technicians", |n| self.tech(n))
    }

    pub fn tech_set_enabled(&self, name: &str, enabled: bool) -> Result<()> {
        let changed =
            self.conn().execute("UPDATE technicians SET enabled = ?2 WHERE name = ?1", params![name, enabled])?;
        if changed == 0 {
            return Err(StoreError::NotFound(format!("no technician {name:?}")));
        }
        Ok(())
    }

    /// True when `key` is one of the keys of the enabled technician `name`.
    pub fn tech_has_key(&self, name: &str, key: &PublicKey) -> Result<bool> {
        let conn = self.conn();
        exists(
            &conn,
            "SELECT 1 FROM technician_keys k JOIN technicians t ON t.name = k.technician
             WHERE k.fingerprint = ?1 AND t.name = ?2 AND t.enabled = 1",
            (fingerprint(key), name),
        )
    }

    /// The enabled technician `name`, or why not.
    pub fn active_tech(&self, name: &str) -> Result<Technician> {
        match self.tech(name)? {
            Some(t) if t.enabled => Ok(t),
            Some(_) => Err(StoreError::Invalid(format!("technician {name:?} is disabled"))),
            None => Err(StoreError::NotFound(format!("no technician {name:?}"))),
        }
    }

    // ---- bookings ------------------------------------------------------------------

    /// Stores a booking the policy accepted; returns its id.
    pub fn booking_insert(&self, b: &NewBooking) -> Result<i64> {
        let conn = self.conn();
        conn.execute(
            "INSERT INTO bookings (vendor, target, account, start_at, end_at, timezone, plan, privileged,
                                   emergency, state, created_at, created_by)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, 'pending', ?10, ?11)",
            params![
                b.vendor,
                b.target,
                b.account,
                b.start,
                b.end,
                b.timezone,
                b.plan,
                b.privileged,
                b.emergency,
                b.created_at,
                b.created_by
            ],
        )?;
        Ok(conn.last_insert_rowid())
    }

    pub fn booking(&self, id: i64) -> Result<Option<Booking>> {
        let conn = self.conn();
        Ok(conn.query_row(&format!("{BOOKING_SELECT} WHERE id = ?1"), [id], booking_from_row).optional()?)
    }

    /// The booking `id`, or a NotFound error naming it.
    pub fn booking_required(&self, id: i64) -> Result<Booking> {
        self.booking(id)?.ok_or_else(|| StoreError::NotFound(format!("no booking B-{id}")))
    }

    /// Bookings, optionally of one vendor and/or target, by start time.
    pub fn bookings(&self, vendor: Option<&str>, target: Option<&str>) -> Result<Vec<Booking>> {
        let conn = self.conn();
        let mut stmt = conn.prepare(&format!(
            "{BOOKING_SELECT} WHERE (?1 IS NULL OR vendor = ?1) AND (?2 IS NULL OR target = ?2) ORDER BY start_at, id"
        ))?;
        let rows = stmt.query_map(params![vendor, target], booking_from_row)?.collect::<rusqlite::Result<_>>()?;
        Ok(rows)
    }

    /// Replaces the plan, only while nobody has acknowledged it (checked in the same
    /// statement, so an acknowledgement racing in cannot be overtaken).
    pub fn booking_replan(&self, id: i64, plan: &str) -> Result<()> {
        let changed = self.conn().execute(
            "UPDATE bookings SET plan = ?2 WHERE id = ?1 AND state = 'pending'
             AND NOT EXISTS (SELECT 1 FROM acknowledgements WHERE booking = ?1)",
            params![id, plan],
        )?;
        if changed == 0 {
            return Err(StoreError::Invalid(format!("the plan of B-{id} is frozen")));
        }
        Ok(())
    }

    /// Bookings the scheduler may have to act on at `now`: approved ones whose window has
    /// opened or closed unprocessed, and approved-then-cancelled ones not yet mailed about.
    pub fn bookings_due(&self, now: DateTime<Utc>) -> Result<Vec<Booking>> {
        let conn = self.conn();
        let mut stmt = conn.prepare(&format!(
            "{BOOKING_SELECT} WHERE (state = 'approved' AND ((opened_at IS NULL AND start_at <= ?1)
                                    OR (opened_at IS NOT NULL AND closed_at IS NULL AND end_at <= ?1)))
               OR (state = 'cancelled' AND approved_at IS NOT NULL AND end_at > cancelled_at
                   AND NOT EXISTS (SELECT 1 FROM mails WHERE mails.booking = bookings.id AND mails.kind = 'cancel'))
             ORDER BY id"
        ))?;
        let rows = stmt.query_map([now], booking_from_row)?.collect::<rusqlite::Result<_>>()?;
        Ok(rows)
    }

    pub fn booking_approve(&self, id: i64, by: &str, at: DateTime<Utc>) -> Result<()> {
        self.conn().execute(
            "UPDATE bookings SET state = 'approved', approved_by = ?2, approved_at = ?3 WHERE id = ?1",
            params![id, by, at],
        )?;
        Ok(())
    }

    pub fn booking_cancel(&self, id: i64, by: &str, reason: &str, at: DateTime<Utc>) -> Result<()> {
        self.conn().execute(
            "UPDATE bookings SET state = 'cancelled', cancelled_by = ?2, cancel_reason = ?3, cancelled_at = ?4
             WHERE id = ?1",
            params![id, by, reason, at],
        )?;
        Ok(())
    }

    /// Marks the window's opening (or closing) as processed. False when it already was,
    /// so that only one caller acts on it.
    pub fn booking_mark(&self, id: i64, edge: WindowEdge, at: DateTime<Utc>) -> Result<bool> {
        let column = match edge {
            WindowEdge::Open => "opened_at",
            WindowEdge::Close => "closed_at",
        };
        let changed = self.conn().execute(
            &format!("UPDATE bookings SET {column} = ?2 WHERE id = ?1 AND {column} IS NULL"),
            params![id, at],
        )?;
        Ok(changed == 1)
    }

    // ---- acknowledgements ----------------------------------------------------------

    pub fn ack_insert(&self, a: &Acknowledgement) -> Result<()> {
        self.conn().execute(
            "INSERT INTO acknowledgements (booking, party, by_name, note, signature, key_fingerprint, at)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
            params![a.booking, a.party, a.by, a.note, a.signature, a.key_fingerprint, a.at],
        )?;
        Ok(())
    }

    pub fn acks(&self, booking: i64) -> Result<Vec<Acknowledgement>> {
        let conn = self.conn();
        let mut stmt = conn.prepare(
            "SELECT booking, party, by_name, note, signature, key_fingerprint, at FROM acknowledgements
             WHERE booking = ?1 ORDER BY id",
        )?;
        let rows = stmt
            .query_map([booking], |r| {
                Ok(Acknowledgement {
                    booking: r.get(0)?,
                    party: r.get(1)?,
                    by: r.get(2)?,
                    note: r.get(3)?,
                    signature: r.get(4)?,
                    key_fingerprint: r.get(5)?,
                    at: r.get(6)?,
                })
            })?
            .collect::<rusqlite::Result<_>>()?;
        Ok(rows)
    }

    // ---- mails ---------------------------------------------------------------------

    /// Records a mail to send; returns false if this booking already has one of `kind`.
    pub fn mail_insert(
        &self,
        booking: i64,
        kind: &str,
        recipients: &str,
        message_id: &str,
        copy_path: &str,
    ) -> Result<bool> {
        let changed = self.conn().execute(
            "INSERT OR IGNORE INTO mails (booking, kind, recipients, message_id, copy_path, state, created_at)
             VALUES (?1, ?2, ?3, ?4, ?5, 'pending', ?6)",
            params![booking, kind, recipients, message_id, copy_path, Utc::now()],
        )?;
        Ok(changed == 1)
    }

    pub fn mails_pending(&self) -> Result<Vec<Mail>> {
        let conn = self.conn();
        let mut stmt = conn.prepare(&format!("{MAIL_SELECT} WHERE state = 'pending' ORDER BY id"))?;
        let rows = stmt.query_map([], mail_from_row)?.collect::<rusqlite::Result<_>>()?;
        Ok(rows)
    }

    pub fn mails(&self, booking: i64) -> Result<Vec<Mail>> {
        let conn = self.conn();
        let mut stmt = conn.prepare(&format!("{MAIL_SELECT} WHERE booking = ?1 ORDER BY id"))?;
        let rows = stmt.query_map([booking], mail_from_row)?.collect::<rusqlite::Result<_>>()?;
        Ok(rows)
    }

    /// Records one delivery attempt: `error` None means sent; `give_up` ends retrying.
    pub fn mail_attempt(&self, id: i64, at: DateTime<Utc>, error: Option<&str>, give_up: bool) -> Result<()> {
        let state = match (error, give_up) {
            (None, _) => "sent",
            (Some(_), true) => "failed",
            (Some(_), false) => "pending",
        };
        self.conn().execute(
            "UPDATE mails SET state = ?2, attempts = attempts + 1, last_attempt_at = ?3, last_error = ?4 WHERE id = ?1",
            params![id, state, at, error],
        )?;
        Ok(())
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WindowEdge {
    Open,
    Close,
}
