//! Connections that have not logged in yet (OpenSSH calls them startups). Each holds a
//! socket, a russh session and a key exchange's worth of CPU; a client that connects and
//! says nothing, or a few thousand of them, would otherwise keep the bastion's descriptors
//! from vendors and technicians. They are counted, in all and per client address, and a
//! connection beyond either bound is closed at accept.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::config::LoginLimits;

/// How often a refusal at accept is logged while they go on (an attacker's flood must not
/// become a flood of log lines).
const WARN_EVERY: Duration = Duration::from_secs(10);

#[derive(Debug)]
pub struct Startups {
    limits: LoginLimits,
    counts: Mutex<Counts>,
}

#[derive(Debug, Default)]
struct Counts {
    total: usize,
    by_address: HashMap<IpAddr, usize>,
    /// Refused since the last warning, and when that was.
    refused: u64,
    warned: Option<Instant>,
}

/// A connection's place among the startups, given back when it logs in or goes away.
#[derive(Debug)]
pub struct Startup {
    startups: Arc<Startups>,
    address: IpAddr,
}

impl Startups {
    pub fn new(limits: LoginLimits) -> Startups {
        Startups { limits, counts: Mutex::default() }
    }

    /// A place for a connection from `address`, or None (logged, at most every ten
    /// seconds) when there are too many.
    pub fn enter(self: &Arc<Self>, address: IpAddr) -> Option<Startup> {
        // A poisoned lock would only mean a panic elsewhere mid-count: refuse (fail closed).
        let mut counts = self.counts.lock().ok()?;
        let from_address = counts.by_address.get(&address).copied().unwrap_or(0);
        let full = if counts.total >= self.limits.max {
            Some(format!("{} connections are not logged in yet (server.max_unauthenticated)", counts.total))
        } else if from_address >= self.limits.max_per_address {
            Some(format!(
                "{from_address} connections from {address} are not logged in yet (server.max_unauthenticated_per_address)"
            ))
        } else {
            None
        };
        if let Some(why) = full {
            counts.refused += 1;
            if counts.warned.is_none_or(|at| at.elapsed() >= WARN_EVERY) {
                tracing::warn!("closing new connections: {why}; {} refused since the last warning", counts.refused);
                counts.refused = 0;
                counts.warned = Some(Instant::now());
            }
            return None;
        }
        counts.total += 1;
        *counts.by_address.entry(address).or_default() += 1;
        Some(Startup { startups: self.clone(), address })
    }
}

impl Drop for Startup {
    fn drop(&mut self) {
        if let Ok(mut counts) = self.startups.counts.lock() {
            counts.total = counts.total.saturating_sub(1);
            if let Some(n) = counts.by_address.get_mut(&self.address) {
                *n -= 1;
                if *n == 0 {
                    counts.by_address.remove(&self.address);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn startups(max: usize, max_per_address: usize) -> Arc<Startups> {
        Arc::new(Startups::new(LoginLimits { grace: Duration::from_secs(1), max, max_per_address }))
    }

    #[test]
    fn places_are_bounded_in_all_and_per_address_and_given_back() {
        let s = startups(3, 2);
        let (a, b, c): (IpAddr, IpAddr, IpAddr) =
            ("127.0.0.1".parse().unwrap(), "127.0.0.2".parse().unwrap(), "127.0.0.3".parse().unwrap());
        let a1 = s.enter(a).unwrap();
        let _a2 = s.enter(a).unwrap();
        assert!(s.enter(a).is_none(), "a third from one address");
        let _b1 = s.enter(b).unwrap();
        assert!(s.enter(c).is_none(), "a fourth in all");
        drop(a1);
        let c1 = s.enter(c);
        assert!(c1.is_some(), "a place given back is free again");
        assert_eq!(s.counts.lock().unwrap().total, 3);
        drop(c1);
        let counts = s.counts.lock().unwrap();
        assert_eq!(counts.total, 2);
        assert_eq!(counts.by_address.get(&c), None, "the last one from c went with it");
    }
}
