//! The store: one SQLite file (`<data>/chaperone.db`) holding vendors, targets and
//! sessions. Every command opens it, including while `serve` runs (WAL mode, busy
//! timeout), and `serve` reads it on every login, so changes apply without a restart.
//! Queries are plain SQL written to port to PostgreSQL later. Write transactions are
//! IMMEDIATE: they take the write lock before their first read, so a concurrent writer
//! (another command, the scheduler) makes them wait out the busy timeout instead of
//! failing with "database is locked" when a read lock cannot be upgraded.

mod audit;
pub use audit::AuditFilter;
mod bookings;
mod people;
mod schema;

pub use bookings::{Acknowledgement, Booking, BookingState, Client, Mail, NewBooking, Technician, WindowEdge};
pub use people::{Access, Role};

use std::path::Path;
use std::sync::{Mutex, MutexGuard};
use std::time::Duration;

use chrono::{DateTime, Utc};
use rusqlite::{Connection, OptionalExtension, params};
use russh::keys::PublicKey;

use crate::keys::{fingerprint, openssh_line};

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("{0}")]
    Invalid(String),
    #[error("{0}")]
    Duplicate(String),
    #[error("{0}")]
    NotFound(String),
    #[error("store: {0}")]
    Sql(#[from] rusqlite::Error),
    #[error("store: cannot create {path}: {source}")]
    Folder { path: String, source: std::io::Error },
}

pub type Result<T> = std::result::Result<T, StoreError>;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Vendor {
    pub name: String,
    pub email: String,
    pub enabled: bool,
    /// OpenSSH public key lines.
    pub keys: Vec<String>,
    pub created_at: DateTime<Utc>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    pub name: String,
    /// `HOST:PORT` as registered.
    pub address: String,
    /// The pinned host key, one OpenSSH public key line.
    pub host_key: String,
    /// Login accounts in registration order; the first is the default.
    pub accounts: Vec<String>,
    /// Accounts with administrative rights: booking one needs a written justification.
    pub privileged_accounts: Vec<String>,
    /// The company owning the target; `None` only for targets registered before
    /// clients existed, which cannot be booked until given one.
    pub client: Option<String>,
    pub created_at: DateTime<Utc>,
}

/// What `target add` registers.
#[derive(Debug, Clone)]
pub struct NewTarget<'a> {
    pub name: &'a str,
    pub address: &'a str,
    pub host_key: &'a PublicKey,
    pub accounts: &'a [String],
    pub privileged_accounts: &'a [String],
    pub client: &'a str,
}

/// One recorded vendor connection, as the store keeps it for listing and lookup.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionRow {
    pub id: String,
    pub vendor: String,
    pub target: String,
    pub account: String,
    pub client_address: String,
    pub started_at: DateTime<Utc>,
    pub ended_at: Option<DateTime<Utc>>,
    /// `live`, `ended` or `failed`.
    pub state: String,
    pub exit_status: Option<i64>,
    pub bytes_in: u64,
    pub bytes_out: u64,
    /// The recording folder, absolute.
    pub folder: String,
    /// The booking the session was admitted under.
    pub booking: Option<i64>,
}

pub struct Store {
    conn: Mutex<Connection>,
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Store")
    }
}

impl Store {
    /// Opens (creating if needed) the database and brings its schema up to date.
    pub fn open(path: &Path) -> Result<Store> {
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir)
                .map_err(|source| StoreError::Folder { path: dir.display().to_string(), source })?;
        }
        let mut conn = Connection::open(path)?;
        conn.busy_timeout(Duration::from_secs(5))?;
        conn.pragma_update(None, "journal_mode", "WAL")?;
        conn.pragma_update(None, "foreign_keys", "ON")?;
        schema::migrate(&mut conn)?;
        Ok(Store { conn: Mutex::new(conn) })
    }

    /// Every row of `table` (which has a `name` key), read whole by `get`, in name order.
    fn all_by_name<T>(&self, table: &str, get: impl Fn(&str) -> Result<Option<T>>) -> Result<Vec<T>> {
        let names: Vec<String> = {
            let conn = self.conn();
            let mut stmt = conn.prepare(&format!("SELECT name FROM {table} ORDER BY name"))?;
            stmt.query_map([], |r| r.get(0))?.collect::<rusqlite::Result<_>>()?
        };
        // A row removed in between is simply not listed.
        names.iter().filter_map(|n| get(n).transpose()).collect()
    }

    pub(crate) fn conn(&self) -> MutexGuard<'_, Connection> {
        // A panic while holding the lock cannot leave SQLite inconsistent (transactions
        // roll back), so a poisoned lock is still usable.
        self.conn.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    // ---- vendors -------------------------------------------------------------------

    pub fn vendor_add(&self, name: &str, email: &str, keys: &[PublicKey]) -> Result<()> {
        crate::names::check_name("vendor", name).map_err(|e| StoreError::Invalid(e.0))?;
        check_email(email)?;
        if keys.is_empty() {
            return Err(StoreError::Invalid("a vendor needs at least one --key".into()));
        }
        let mut conn = self.conn();
        let tx = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
        if exists(&tx, "SELECT 1 FROM vendors WHERE name = ?1", [name])? {
            return Err(StoreError::Duplicate(format!("vendor {name:?} already exists")));
        }
        // One name space for everyone who logs in, so a login name is never ambiguous.
        if exists(&tx, "SELECT 1 FROM technicians WHERE name = ?1", [name])? {
            return Err(StoreError::Duplicate(format!("{name:?} is already a technician's name")));
        }
        tx.execute(
            "INSERT INTO vendors (name, email, enabled, created_at) VALUES (?1, ?2, 1, ?3)",
            params![name, email, Utc::now()],
        )?;
        people::insert_keys(&tx, Role::Vendor, name, keys)?;
        tx.commit()?;
        Ok(())
    }

    pub fn vendor_list(&self) -> Result<Vec<Vendor>> {
        self.all_by_name("vendors", |n| self.vendor(n))
    }

    pub fn vendor(&self, name: &str) -> Result<Option<Vendor>> {
        let conn = self.conn();
        let row = conn
            .query_row("SELECT name, email, enabled, created_at FROM vendors WHERE name = ?1", [name], |r| {
                Ok(Vendor {
                    name: r.get(0)?,
                    email: r.get(1)?,
                    enabled: r.get(2)?,
                    keys: Vec::new(),
                    created_at: r.get(3)?,
                })
            })
            .optional()?;
        let Some(mut vendor) = row else {
            return Ok(None);
        };
        let mut stmt = conn.prepare("SELECT public_key FROM vendor_keys WHERE vendor = ?1 ORDER BY rowid")?;
        vendor.keys = stmt.query_map([name], |r| r.get(0))?.collect::<rusqlite::Result<_>>()?;
        Ok(Some(vendor))
    }

    pub fn vendor_set_enabled(&self, name: &str, enabled: bool) -> Result<()> {
        let changed = self.conn().execute("UPDATE vendors SET enabled = ?2 WHERE name = ?1", params![name, enabled])?;
        if changed == 0 {
            return Err(StoreError::NotFound(format!("no vendor {name:?}")));
        }
        Ok(())
    }

    /// True when `key` is one of the vendor's registered keys.
    pub fn vendor_has_key(&self, vendor: &str, key: &PublicKey) -> Result<bool> {
        let conn = self.conn();
        exists(&conn, "SELECT 1 FROM vendor_keys WHERE fingerprint = ?1 AND vendor = ?2", (fingerprint(key), vendor))
    }

    // ---- targets -------------------------------------------------------------------

    pub fn target_add(&self, t: &NewTarget<'_>) -> Result<()> {
        let name = t.name;
        crate::names::check_name("target", name).map_err(|e| StoreError::Invalid(e.0))?;
        check_address(t.address)?;
        let all: Vec<&String> = t.accounts.iter().chain(t.privileged_accounts).collect();
        if all.is_empty() {
            return Err(StoreError::Invalid("a target needs at least one --account".into()));
        }
        for (i, account) in all.iter().enumerate() {
            crate::names::check_account(account).map_err(|e| StoreError::Invalid(e.0))?;
            if all[..i].contains(account) {
                return Err(StoreError::Invalid(format!("account {account:?} is given twice")));
            }
        }
        let mut conn = self.conn();
        let tx = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
        if exists(&tx, "SELECT 1 FROM targets WHERE name = ?1", [name])? {
            return Err(StoreError::Duplicate(format!("target {name:?} already exists")));
        }
        if !exists(&tx, "SELECT 1 FROM clients WHERE name = ?1", [t.client])? {
            return Err(StoreError::NotFound(format!(
                "no client {:?}; add it first: chaperone client add {} --email ADDR",
                t.client, t.client
            )));
        }
        tx.execute(
            "INSERT INTO targets (name, address, host_key, created_at, client) VALUES (?1, ?2, ?3, ?4, ?5)",
            params![name, t.address, openssh_line(t.host_key), Utc::now(), t.client],
        )?;
        for (position, account) in all.iter().enumerate() {
            let privileged = position >= t.accounts.len();
            tx.execute(
                "INSERT INTO target_accounts (target, position, account, privileged) VALUES (?1, ?2, ?3, ?4)",
                params![name, position as i64, account, privileged],
            )?;
        }
        tx.commit()?;
        Ok(())
    }

    /// Gives a target (e.g. one registered before clients existed) its client.
    pub fn target_set_client(&self, target: &str, client: &str) -> Result<()> {
        let conn = self.conn();
        if !exists(&conn, "SELECT 1 FROM clients WHERE name = ?1", [client])? {
            return Err(StoreError::NotFound(format!("no client {client:?}")));
        }
        let changed = conn.execute("UPDATE targets SET client = ?2 WHERE name = ?1", params![target, client])?;
        if changed == 0 {
            return Err(StoreError::NotFound(format!("no target {target:?}")));
        }
        Ok(())
    }

    pub fn target_list(&self) -> Result<Vec<Target>> {
        self.all_by_name("targets", |n| self.target(n))
    }

    pub fn target(&self, name: &str) -> Result<Option<Target>> {
        let conn = self.conn();
        let row = conn
            .query_row("SELECT name, address, host_key, created_at, client FROM targets WHERE name = ?1", [name], |r| {
                Ok(Target {
                    name: r.get(0)?,
                    address: r.get(1)?,
                    host_key: r.get(2)?,
                    accounts: Vec::new(),
                    privileged_accounts: Vec::new(),
                    created_at: r.get(3)?,
                    client: r.get(4)?,
                })
            })
            .optional()?;
        let Some(mut target) = row else {
            return Ok(None);
        };
        let mut stmt =
            conn.prepare("SELECT account, privileged FROM target_accounts WHERE target = ?1 ORDER BY position")?;
        let accounts: Vec<(String, bool)> =
            stmt.query_map([name], |r| Ok((r.get(0)?, r.get(1)?)))?.collect::<rusqlite::Result<_>>()?;
        for (account, privileged) in accounts {
            if privileged {
                target.privileged_accounts.push(account.clone());
            }
            target.accounts.push(account);
        }
        Ok(Some(target))
    }

    /// Removes a target that no booking needs any more: one whose window is not over yet
    /// (pending or approved) keeps it, so that no approved window, its mails or a live
    /// session on it lose their target. Its recordings stay.
    pub fn target_remove(&self, name: &str, now: DateTime<Utc>) -> Result<()> {
        let mut conn = self.conn();
        let tx = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
        let open: Vec<String> = {
            let mut stmt = tx.prepare("SELECT id, end_at FROM bookings WHERE target = ?1 AND state != 'cancelled'")?;
            let rows: Vec<(i64, DateTime<Utc>)> =
                stmt.query_map([name], |r| Ok((r.get(0)?, r.get(1)?)))?.collect::<rusqlite::Result<_>>()?;
            rows.into_iter().filter(|(_, end)| *end > now).map(|(id, _)| format!("B-{id}")).collect()
        };
        if !open.is_empty() {
            return Err(StoreError::Invalid(format!(
                "target {name:?} has bookings not over yet ({}): cancel them first",
                open.join(", ")
            )));
        }
        let changed = tx.execute("DELETE FROM targets WHERE name = ?1", [name])?;
        if changed == 0 {
            return Err(StoreError::NotFound(format!("no target {name:?}")));
        }
        tx.commit()?;
        Ok(())
    }

    // ---- sessions ------------------------------------------------------------------

    pub fn session_insert(&self, s: &SessionRow) -> Result<()> {
        self.conn().execute(
            "INSERT INTO sessions (id, vendor, target, account, client_address, started_at, ended_at,
                                   state, exit_status, bytes_in, bytes_out, folder, booking)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13)",
            params![
                s.id,
                s.vendor,
                s.target,
                s.account,
                s.client_address,
                s.started_at,
                s.ended_at,
                s.state,
                s.exit_status,
                s.bytes_in as i64,
                s.bytes_out as i64,
                s.folder,
                s.booking
            ],
        )?;
        Ok(())
    }

    /// Marks a session that was live when chaperone stopped without closing it.
    pub fn session_interrupted(&self, id: &str) -> Result<()> {
        self.conn().execute("UPDATE sessions SET state = 'interrupted' WHERE id = ?1 AND state = 'live'", [id])?;
        Ok(())
    }

    pub fn session_finish(&self, s: &SessionRow) -> Result<()> {
        self.conn().execute(
            "UPDATE sessions SET ended_at = ?2, state = ?3, exit_status = ?4, bytes_in = ?5, bytes_out = ?6
             WHERE id = ?1",
            params![s.id, s.ended_at, s.state, s.exit_status, s.bytes_in as i64, s.bytes_out as i64],
        )?;
        Ok(())
    }

    pub fn session_list(&self) -> Result<Vec<SessionRow>> {
        let conn = self.conn();
        let mut stmt = conn.prepare(&format!("{SESSION_SELECT} ORDER BY id"))?;
        let rows = stmt.query_map([], session_from_row)?.collect::<rusqlite::Result<_>>()?;
        Ok(rows)
    }

    pub fn session(&self, id: &str) -> Result<Option<SessionRow>> {
        let conn = self.conn();
        Ok(conn.query_row(&format!("{SESSION_SELECT} WHERE id = ?1"), [id], session_from_row).optional()?)
    }
}

const SESSION_SELECT: &str = "SELECT id, vendor, target, account, client_address, started_at, ended_at,
    state, exit_status, bytes_in, bytes_out, folder, booking FROM sessions";

fn session_from_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<SessionRow> {
    Ok(SessionRow {
        id: r.get(0)?,
        vendor: r.get(1)?,
        target: r.get(2)?,
        account: r.get(3)?,
        client_address: r.get(4)?,
        started_at: r.get(5)?,
        ended_at: r.get(6)?,
        state: r.get(7)?,
        exit_status: r.get(8)?,
        bytes_in: r.get::<_, i64>(9)? as u64,
        bytes_out: r.get::<_, i64>(10)? as u64,
        folder: r.get(11)?,
        booking: r.get(12)?,
    })
}

pub(crate) fn exists(conn: &Connection, sql: &str, params: impl rusqlite::Params) -> Result<bool> {
    Ok(conn.query_row(sql, params, |_| Ok(())).optional()?.is_some())
}

pub(crate) fn check_email(email: &str) -> Result<()> {
    let ok = email.split_once('@').is_some_and(|(local, domain)| {
        !local.is_empty() && domain.contains('.') && !domain.starts_with('.') && !domain.ends_with('.')
    }) && !email.chars().any(|c| c.is_whitespace() || c.is_control() || c == '<' || c == '>')
        && email.len() <= 254;
    if ok { Ok(()) } else { Err(StoreError::Invalid(format!("invalid e-mail address {email:?}"))) }
}

/// Checks `HOST:PORT` (IPv6 as `[::1]:22`).
pub fn check_address(address: &str) -> Result<()> {
    let invalid = || StoreError::Invalid(format!("invalid address {address:?}: expected HOST:PORT, e.g. 10.0.0.5:22"));
    let (host, port) = address.rsplit_once(':').ok_or_else(invalid)?;
    let port_ok = port.parse::<u16>().is_ok_and(|p| p > 0);
    let host_ok = if let Some(inner) = host.strip_prefix('[').and_then(|h| h.strip_suffix(']')) {
        inner.parse::<std::net::Ipv6Addr>().is_ok()
    } else {
        !host.is_empty()
            && host.len() <= 253
            && host.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'.' || b == b'-')
    };
    if port_ok && host_ok { Ok(()) } else { Err(invalid()) }
}

/// A key made from a seed, for unit tests.
#[cfg(test)]
pub(crate) fn test_key(n: u8) -> PublicKey {
    use russh::keys::ssh_key::private::Ed25519Keypair;
    russh::keys::PrivateKey::from(Ed25519Keypair::from_seed(&[n; 32])).public_key().clone()
}

#[cfg(test)]
mod tests {
    use super::test_key as key;
    use super::*;

    #[test]
    fn vendors_and_targets_round_trip() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("db")).unwrap();
        store.vendor_add("acme", "ops@acme.example", &[key(1), key(2)]).unwrap();
        assert!(matches!(store.vendor_add("acme", "x@y.z", &[key(3)]), Err(StoreError::Duplicate(_))));
        assert!(matches!(store.vendor_add("other", "x@y.z", &[key(1)]), Err(StoreError::Duplicate(_))));
        assert!(store.vendor("other").unwrap().is_none(), "a refused add changes nothing");
        let v = store.vendor("acme").unwrap().unwrap();
        assert_eq!(v.keys.len(), 2);
        assert!(store.vendor_has_key("acme", &key(2)).unwrap());
        assert!(!store.vendor_has_key("acme", &key(3)).unwrap());
        store.vendor_set_enabled("acme", false).unwrap();
        assert!(!store.vendor("acme").unwrap().unwrap().enabled);

        store.client_add("globex", &["it@globex.example".into()]).unwrap();
        let host = key(9);
        let app = vec!["app".to_string()];
        let root = vec!["root".to_string()];
        let target = |name, address| NewTarget {
            name,
            address,
            host_key: &host,
            accounts: &app,
            privileged_accounts: &root,
            client: "globex",
        };
        store.target_add(&target("erp01", "127.0.0.1:22")).unwrap();
        let erp01 = store.target("erp01").unwrap().unwrap();
        assert_eq!(erp01.accounts, vec!["app", "root"]);
        assert_eq!(erp01.privileged_accounts, vec!["root"]);
        assert_eq!(erp01.client.as_deref(), Some("globex"));
        assert!(matches!(store.target_add(&target("erp01", "h:1")), Err(StoreError::Duplicate(_))));
        assert!(matches!(store.target_add(&target("erp02", "nohost")), Err(StoreError::Invalid(_))));
        let orphan = NewTarget { client: "nobody", ..target("erp03", "h:1") };
        assert!(matches!(store.target_add(&orphan), Err(StoreError::NotFound(_))));
        store.target_remove("erp01", Utc::now()).unwrap();
        assert!(store.target_list().unwrap().is_empty());
    }

    #[test]
    fn targets_from_before_clients_migrate_without_a_client() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("db");
        {
            // A database as the first release left it.
            let conn = Connection::open(&path).unwrap();
            conn.execute_batch(schema::MIGRATIONS[0]).unwrap();
            conn.pragma_update(None, "user_version", 1).unwrap();
            conn.execute(
                "INSERT INTO targets (name, address, host_key, created_at) VALUES ('old', 'h:22', 'k', '2026-01-01T00:00:00Z')",
                [],
            )
            .unwrap();
            conn.execute("INSERT INTO target_accounts (target, position, account) VALUES ('old', 0, 'app')", [])
                .unwrap();
        }
        let store = Store::open(&path).unwrap();
        let old = store.target("old").unwrap().unwrap();
        assert_eq!(old.client, None);
        assert_eq!(old.accounts, vec!["app"]);
        assert!(old.privileged_accounts.is_empty());
        store.client_add("globex", &["it@globex.example".into()]).unwrap();
        store.target_set_client("old", "globex").unwrap();
        assert_eq!(store.target("old").unwrap().unwrap().client.as_deref(), Some("globex"));
    }

    #[test]
    fn addresses() {
        for ok in ["10.0.0.5:22", "erp01.client.example:2222", "[::1]:22"] {
            assert!(check_address(ok).is_ok(), "{ok}");
        }
        for bad in ["10.0.0.5", ":22", "h:0", "h:99999", "[zz]:22", "a b:22"] {
            assert!(check_address(bad).is_err(), "{bad}");
        }
    }
}
