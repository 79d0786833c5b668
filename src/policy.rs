//! Admission rules, as pure functions over plain data: given the vendor, the registered
//! targets and what the vendor asked for in the SSH user name, decide which target and
//! account the session goes to, or why not. No I/O here; the gate and session call it.
//!
//! Until bookings exist, an enabled vendor may reach any registered target, as the
//! target's first account unless the login names another of its accounts.

use crate::names::LoginName;
use crate::store::{Target, Vendor};

/// An admitted login: where the session goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Admission {
    pub target: Target,
    pub account: String,
}

/// Why a login is refused; `Display` is the one line the vendor reads.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    #[error("vendor {vendor:?} is disabled; ask your provider to enable access")]
    VendorDisabled { vendor: String },
    #[error("unknown target {target:?}; ask your provider which targets you may reach")]
    UnknownTarget { target: String },
    #[error("no target is registered for you; ask your provider")]
    NoTargets,
    #[error("you can reach {count} targets; name one: ssh VENDOR:TARGET@bastion ({names})")]
    ChooseTarget { count: usize, names: String },
    #[error("target {target:?} has no account {account:?} for you (accounts: {accounts})")]
    UnknownAccount {
        target: String,
        account: String,
        accounts: String,
    },
    #[error(
        "the bastion cannot read its store; nobody is admitted until it can (tell your provider)"
    )]
    StoreUnavailable,
    #[error("{0}")]
    Upstream(String),
}

/// Decides a vendor's login. `targets` are all registered targets.
pub fn admit(vendor: &Vendor, targets: &[Target], login: &LoginName) -> Result<Admission, Refusal> {
    if !vendor.enabled {
        return Err(Refusal::VendorDisabled {
            vendor: vendor.name.clone(),
        });
    }
    let target = match &login.target {
        Some(name) => {
            targets
                .iter()
                .find(|t| &t.name == name)
                .ok_or_else(|| Refusal::UnknownTarget {
                    target: name.clone(),
                })?
        }
        None => match targets {
            [] => return Err(Refusal::NoTargets),
            [only] => only,
            many => {
                return Err(Refusal::ChooseTarget {
                    count: many.len(),
                    names: many
                        .iter()
                        .map(|t| t.name.as_str())
                        .collect::<Vec<_>>()
                        .join(", "),
                });
            }
        },
    };
    let account = match &login.account {
        Some(account) if target.accounts.contains(account) => account.clone(),
        Some(account) => {
            return Err(Refusal::UnknownAccount {
                target: target.name.clone(),
                account: account.clone(),
                accounts: target.accounts.join(", "),
            });
        }
        None => target
            .accounts
            .first()
            .cloned()
            .ok_or_else(|| Refusal::UnknownAccount {
                target: target.name.clone(),
                account: String::new(),
                accounts: String::new(),
            })?,
    };
    Ok(Admission {
        target: target.clone(),
        account,
    })
}

/// Environment variables a vendor's client may pass to the target: locale and terminal
/// type only. Anything else could change how the target's shell or programs behave
/// (`LD_PRELOAD`, `PATH`, `BASH_ENV`…).
pub fn env_allowed(name: &str) -> bool {
    name == "LANG" || name == "TERM" || name.starts_with("LC_")
}

/// True for the server side of a legacy `scp` transfer (`scp -t …` / `scp -f …`), which
/// arrives as an ordinary `exec`. File transfer is refused like the sftp subsystem.
pub fn is_file_transfer(command: &[u8]) -> bool {
    let text = String::from_utf8_lossy(command);
    let mut words = text.split_whitespace();
    let program = words.next().unwrap_or_default();
    (program == "scp" || program.ends_with("/scp"))
        && words
            .take_while(|w| w.starts_with('-'))
            .any(|w| w.contains('t') || w.contains('f'))
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::Utc;

    fn vendor(enabled: bool) -> Vendor {
        Vendor {
            name: "acme".into(),
            email: "a@b.c".into(),
            enabled,
            keys: vec![],
            created_at: Utc::now(),
        }
    }

    fn target(name: &str, accounts: &[&str]) -> Target {
        Target {
            name: name.into(),
            address: "127.0.0.1:22".into(),
            host_key: String::new(),
            accounts: accounts.iter().map(|a| a.to_string()).collect(),
            created_at: Utc::now(),
        }
    }

    fn login(s: &str) -> LoginName {
        LoginName::parse(s).unwrap()
    }

    /// (vendor enabled, targets, ssh user name, expected (target, account) or refusal text)
    type Case<'a> = (
        bool,
        &'a [Target],
        &'a str,
        Result<(&'a str, &'a str), &'a str>,
    );

    #[test]
    fn admission_table() {
        let one = vec![target("erp01", &["app", "root"])];
        let two = vec![target("erp01", &["app"]), target("erp02", &["svc"])];
        let cases: Vec<Case> = vec![
            (true, &one, "acme", Ok(("erp01", "app"))),
            (true, &one, "acme:erp01", Ok(("erp01", "app"))),
            (true, &one, "acme:erp01:root", Ok(("erp01", "root"))),
            (
                true,
                &one,
                "acme:erp01:admin",
                Err("has no account \"admin\""),
            ),
            (true, &one, "acme:erp09", Err("unknown target \"erp09\"")),
            (false, &one, "acme:erp01", Err("is disabled")),
            (true, &two, "acme", Err("you can reach 2 targets")),
            (true, &two, "acme:erp02", Ok(("erp02", "svc"))),
            (true, &[], "acme", Err("no target is registered")),
        ];
        for (enabled, targets, user, expected) in cases {
            let got = admit(&vendor(enabled), targets, &login(user));
            match (got, expected) {
                (Ok(a), Ok((t, acc))) => assert_eq!(
                    (a.target.name.as_str(), a.account.as_str()),
                    (t, acc),
                    "{user}"
                ),
                (Err(r), Err(text)) => assert!(r.to_string().contains(text), "{user}: {r}"),
                (got, expected) => panic!("{user}: got {got:?}, expected {expected:?}"),
            }
        }
    }

    #[test]
    fn legacy_scp_is_a_file_transfer() {
        for yes in ["scp -t /tmp/x", "scp -v -f a", "/usr/bin/scp -pt ."] {
            assert!(is_file_transfer(yes.as_bytes()), "{yes}");
        }
        for no in ["ls -t", "echo scp -t", "scp", "scpx -t"] {
            assert!(!is_file_transfer(no.as_bytes()), "{no}");
        }
    }

    #[test]
    fn env_filter() {
        for ok in ["LANG", "LC_ALL", "LC_CTYPE", "TERM"] {
            assert!(env_allowed(ok));
        }
        for bad in ["LD_PRELOAD", "PATH", "BASH_ENV", "lang", "TERMCAP"] {
            assert!(!env_allowed(bad));
        }
    }
}
