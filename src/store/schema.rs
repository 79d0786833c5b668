//! Schema migrations, applied in order and counted in SQLite's `user_version`.
//! Append new migrations; never edit one that has shipped.

use rusqlite::Connection;

/// Each entry moves the schema one version forward.
pub(super) const MIGRATIONS: &[&str] = &[
    // 1: vendors, targets, sessions.
    "CREATE TABLE vendors (
        name TEXT PRIMARY KEY,
        email TEXT NOT NULL,
        enabled INTEGER NOT NULL DEFAULT 1,
        created_at TEXT NOT NULL
    );
    CREATE TABLE vendor_keys (
        fingerprint TEXT PRIMARY KEY,
        vendor TEXT NOT NULL REFERENCES vendors(name) ON DELETE CASCADE,
        public_key TEXT NOT NULL
    );
    CREATE TABLE targets (
        name TEXT PRIMARY KEY,
        address TEXT NOT NULL,
        host_key TEXT NOT NULL,
        created_at TEXT NOT NULL
    );
    CREATE TABLE target_accounts (
        target TEXT NOT NULL REFERENCES targets(name) ON DELETE CASCADE,
        position INTEGER NOT NULL,
        account TEXT NOT NULL,
        PRIMARY KEY (target, account)
    );
    CREATE TABLE sessions (
        id TEXT PRIMARY KEY,
        vendor TEXT NOT NULL,
        target TEXT NOT NULL,
        account TEXT NOT NULL,
        client_address TEXT NOT NULL,
        started_at TEXT NOT NULL,
        ended_at TEXT,
        state TEXT NOT NULL,
        exit_status INTEGER,
        bytes_in INTEGER NOT NULL DEFAULT 0,
        bytes_out INTEGER NOT NULL DEFAULT 0,
        folder TEXT NOT NULL
    );",
    // 2: clients, technicians, bookings with plans and acknowledgements, mails, audit.
    // Targets registered before clients existed keep a NULL client until
    // `target set-client` gives them one; they cannot be booked until then.
    "CREATE TABLE clients (
        name TEXT PRIMARY KEY,
        emails TEXT NOT NULL,
        created_at TEXT NOT NULL
    );
    ALTER TABLE targets ADD COLUMN client TEXT REFERENCES clients(name);
    ALTER TABLE target_accounts ADD COLUMN privileged INTEGER NOT NULL DEFAULT 0;
    CREATE TABLE technicians (
        name TEXT PRIMARY KEY,
        email TEXT NOT NULL,
        enabled INTEGER NOT NULL DEFAULT 1,
        created_at TEXT NOT NULL
    );
    CREATE TABLE technician_keys (
        fingerprint TEXT PRIMARY KEY,
        technician TEXT NOT NULL REFERENCES technicians(name) ON DELETE CASCADE,
        public_key TEXT NOT NULL
    );
    CREATE TABLE bookings (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        vendor TEXT NOT NULL,
        target TEXT NOT NULL,
        account TEXT NOT NULL,
        start_at TEXT NOT NULL,
        end_at TEXT NOT NULL,
        timezone TEXT NOT NULL,
        plan TEXT NOT NULL,
        privileged TEXT,
        emergency TEXT,
        state TEXT NOT NULL,
        created_at TEXT NOT NULL,
        created_by TEXT,
        approved_by TEXT,
        approved_at TEXT,
        cancelled_by TEXT,
        cancelled_at TEXT,
        cancel_reason TEXT,
        opened_at TEXT,
        closed_at TEXT
    );
    CREATE INDEX bookings_vendor_target ON bookings(vendor, target);
    CREATE TABLE acknowledgements (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        booking INTEGER NOT NULL REFERENCES bookings(id),
        party TEXT NOT NULL,
        by_name TEXT,
        note TEXT,
        signature TEXT,
        key_fingerprint TEXT,
        at TEXT NOT NULL
    );
    CREATE TABLE mails (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        booking INTEGER NOT NULL REFERENCES bookings(id),
        kind TEXT NOT NULL,
        recipients TEXT NOT NULL,
        message_id TEXT NOT NULL,
        copy_path TEXT NOT NULL,
        state TEXT NOT NULL,
        attempts INTEGER NOT NULL DEFAULT 0,
        last_attempt_at TEXT,
        last_error TEXT,
        created_at TEXT NOT NULL,
        UNIQUE (booking, kind)
    );
    ALTER TABLE sessions ADD COLUMN booking INTEGER;
    CREATE TABLE audit (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        at TEXT NOT NULL,
        kind TEXT NOT NULL,
        actor TEXT,
        booking INTEGER,
        vendor TEXT,
        session TEXT,
        detail TEXT NOT NULL,
        prev_hash TEXT NOT NULL,
        hash TEXT NOT NULL
    );
    CREATE TRIGGER audit_no_update BEFORE UPDATE ON audit
        BEGIN SELECT RAISE(ABORT, 'the audit log is append-only'); END;
    CREATE TRIGGER audit_no_delete BEFORE DELETE ON audit
        BEGIN SELECT RAISE(ABORT, 'the audit log is append-only'); END;",
];

pub fn migrate(conn: &mut Connection) -> rusqlite::Result<()> {
    let current: i64 = conn.pragma_query_value(None, "user_version", |r| r.get(0))?;
    for (index, sql) in MIGRATIONS.iter().enumerate().skip(current.max(0) as usize) {
        let tx = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
        tx.execute_batch(sql)?;
        tx.pragma_update(None, "user_version", (index + 1) as i64)?;
        tx.commit()?;
    }
    Ok(())
}
