//! Schema migrations, applied in order and counted in SQLite's `user_version`.
//! Append new migrations; never edit one that has shipped.

use rusqlite::Connection;

/// Each entry moves the schema one version forward.
const MIGRATIONS: &[&str] = &[
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
];

pub fn migrate(conn: &mut Connection) -> rusqlite::Result<()> {
    let current: i64 = conn.pragma_query_value(None, "user_version", |r| r.get(0))?;
    for (index, sql) in MIGRATIONS.iter().enumerate().skip(current.max(0) as usize) {
        let tx = conn.transaction()?;
        tx.execute_batch(sql)?;
        tx.pragma_update(None, "user_version", (index + 1) as i64)?;
        tx.commit()?;
    }
    Ok(())
}
