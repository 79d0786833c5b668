//! The keys people log in with, vendors' and technicians' alike: added and removed after
//! registration (people join and leave a vendor's team), and what a key still allows,
//! which the scheduler asks of every live connection.

use rusqlite::{OptionalExtension, Transaction, params};
use russh::keys::PublicKey;

use super::{Result, Store, StoreError, exists};
use crate::keys::{fingerprint, openssh_line};

/// Who logs in: a vendor (reaches targets) or a technician (the console).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Role {
    Vendor,
    Technician,
}

impl Role {
    /// The word used in messages.
    pub fn noun(self) -> &'static str {
        match self {
            Role::Vendor => "vendor",
            Role::Technician => "technician",
        }
    }

    fn people(self) -> &'static str {
        match self {
            Role::Vendor => "vendors",
            Role::Technician => "technicians",
        }
    }

    fn keys(self) -> &'static str {
        match self {
            Role::Vendor => "vendor_keys",
            Role::Technician => "technician_keys",
        }
    }

    /// The key table's column naming the owner.
    fn owner(self) -> &'static str {
        match self {
            Role::Vendor => "vendor",
            Role::Technician => "technician",
        }
    }
}

/// What a login (a person and the key it used) still allows.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Access {
    Granted,
    /// The person was disabled.
    Disabled,
    /// The key is no longer one of the person's.
    KeyRemoved,
    /// The person is no longer registered.
    Unknown,
}

impl Store {
    /// Adds `keys` to the registered `name`. A key belongs to one person only, vendor or
    /// technician: who logs in is never ambiguous.
    pub fn key_add(&self, role: Role, name: &str, keys: &[PublicKey]) -> Result<()> {
        if keys.is_empty() {
            return Err(StoreError::Invalid("no --key given".into()));
        }
        let mut conn = self.conn();
        let tx = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
        if !exists(&tx, &format!("SELECT 1 FROM {} WHERE name = ?1", role.people()), [name])? {
            return Err(StoreError::NotFound(format!("no {} {name:?}", role.noun())));
        }
        insert_keys(&tx, role, name, keys)?;
        tx.commit()?;
        Ok(())
    }

    /// Removes the key with `fingerprint` from `name`. The last key stays: a person
    /// without keys could not log in, which is what `disable` says openly.
    pub fn key_remove(&self, role: Role, name: &str, fingerprint: &str) -> Result<()> {
        let mut conn = self.conn();
        let tx = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
        let (noun, keys, owner) = (role.noun(), role.keys(), role.owner());
        if !exists(&tx, &format!("SELECT 1 FROM {} WHERE name = ?1", role.people()), [name])? {
            return Err(StoreError::NotFound(format!("no {noun} {name:?}")));
        }
        let count: i64 =
            tx.query_row(&format!("SELECT count(*) FROM {keys} WHERE {owner} = ?1"), [name], |r| r.get(0))?;
        let removed = tx.execute(
            &format!("DELETE FROM {keys} WHERE {owner} = ?1 AND fingerprint = ?2"),
            params![name, fingerprint],
        )?;
        if removed == 0 {
            return Err(StoreError::NotFound(format!("{noun} {name:?} has no key {fingerprint}")));
        }
        if count == 1 {
            return Err(StoreError::Invalid(format!(
                "{fingerprint} is the last key of {noun} {name:?}: add another first, or disable the {noun}"
            )));
        }
        tx.commit()?;
        Ok(())
    }

    /// What `name`, logged in with the key `fingerprint`, may still do.
    pub fn access(&self, role: Role, name: &str, fingerprint: &str) -> Result<Access> {
        let (keys, owner) = (role.keys(), role.owner());
        let row: Option<(bool, bool)> = self
            .conn()
            .query_row(
                &format!(
                    "SELECT enabled, EXISTS(SELECT 1 FROM {keys} WHERE {owner} = ?1 AND fingerprint = ?2)
                     FROM {} WHERE name = ?1",
                    role.people()
                ),
                params![name, fingerprint],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .optional()?;
        Ok(match row {
            None => Access::Unknown,
            Some((false, _)) => Access::Disabled,
            Some((true, false)) => Access::KeyRemoved,
            Some((true, true)) => Access::Granted,
        })
    }
}

/// Registers `keys` for `name` inside `tx`; a key registered to anyone already refuses all.
pub(super) fn insert_keys(tx: &Transaction<'_>, role: Role, name: &str, keys: &[PublicKey]) -> Result<()> {
    for key in keys {
        let fp = fingerprint(key);
        for other in [Role::Vendor, Role::Technician] {
            let owner: Option<String> = tx
                .query_row(
                    &format!("SELECT {} FROM {} WHERE fingerprint = ?1", other.owner(), other.keys()),
                    [&fp],
                    |r| r.get(0),
                )
                .optional()?;
            if let Some(owner) = owner {
                return Err(StoreError::Duplicate(format!(
                    "key {fp} is already registered for {} {owner:?}",
                    other.noun()
                )));
            }
        }
        tx.execute(
            &format!("INSERT INTO {} (fingerprint, {}, public_key) VALUES (?1, ?2, ?3)", role.keys(), role.owner()),
            params![fp, name, openssh_line(key)],
        )?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::test_key as key;

    #[test]
    fn keys_come_and_go_and_access_follows() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("db")).unwrap();
        store.vendor_add("acme", "ops@acme.example", &[key(1)]).unwrap();
        let (a, b) = (fingerprint(&key(1)), fingerprint(&key(2)));
        assert_eq!(store.access(Role::Vendor, "acme", &a).unwrap(), Access::Granted);
        assert_eq!(store.access(Role::Vendor, "acme", &b).unwrap(), Access::KeyRemoved);
        assert_eq!(store.access(Role::Vendor, "ghost", &a).unwrap(), Access::Unknown);
        assert_eq!(store.access(Role::Technician, "acme", &a).unwrap(), Access::Unknown);

        // The last key stays.
        let err = store.key_remove(Role::Vendor, "acme", &a).unwrap_err().to_string();
        assert!(err.contains("last key"), "{err}");
        store.key_add(Role::Vendor, "acme", &[key(2)]).unwrap();
        store.key_remove(Role::Vendor, "acme", &a).unwrap();
        assert_eq!(store.access(Role::Vendor, "acme", &a).unwrap(), Access::KeyRemoved);
        assert_eq!(store.access(Role::Vendor, "acme", &b).unwrap(), Access::Granted);
        let err = store.key_remove(Role::Vendor, "acme", &a).unwrap_err().to_string();
        assert!(err.contains("has no key"), "{err}");

        // One key, one person: a vendor's key cannot become a technician's.
        store.tech_add("alice", "alice@provider.example", &[key(1)]).unwrap();
        let err = store.key_add(Role::Technician, "alice", &[key(2)]).unwrap_err().to_string();
        assert!(err.contains("already registered for vendor \"acme\""), "{err}");
        let err = store.key_add(Role::Vendor, "nobody", &[key(1)]).unwrap_err().to_string();
        assert!(err.contains("no vendor \"nobody\""), "{err}");

        store.vendor_set_enabled("acme", false).unwrap();
        assert_eq!(store.access(Role::Vendor, "acme", &b).unwrap(), Access::Disabled);
    }
}
