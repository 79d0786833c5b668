//! Failed logins (unknown users or keys) in the audit log. Each is itemized, up to
//! [`ITEMIZED`] a minute from one address; beyond that they are counted, and the count is
//! audited once the minute is over. A scanner or a key-guessing client must not be able to
//! grow the audit log (and the database holding it) by a row per connection for as long
//! as it likes; a person mistyping sees every attempt itemized.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};

/// Failures itemized per address and window.
pub const ITEMIZED: u32 = 10;

/// The window they are counted in.
pub const WINDOW: Duration = Duration::from_secs(60);

#[derive(Debug, Default)]
pub struct FailedLogins {
    windows: Mutex<HashMap<IpAddr, Window>>,
}

#[derive(Debug)]
struct Window {
    opened: Instant,
    since: DateTime<Utc>,
    itemized: u32,
    counted: u64,
}

/// Failures from one address that were counted, not itemized: audited as one entry.
#[derive(Debug, PartialEq, Eq)]
pub struct Counted {
    pub address: IpAddr,
    pub count: u64,
    pub since: DateTime<Utc>,
}

impl Counted {
    pub fn detail(&self) -> String {
        format!(
            "{} more authentication refusals from {} in the minute from {} (not itemized: more than {ITEMIZED} a minute)",
            self.count,
            self.address,
            self.since.format("%Y-%m-%d %H:%M:%S UTC")
        )
    }
}

impl FailedLogins {
    /// Notes a failure from `address`; true when it is to be itemized. A window that is
    /// over is closed first, and what it counted is returned to be audited.
    pub fn note(&self, address: IpAddr, at: Instant, now: DateTime<Utc>) -> (bool, Option<Counted>) {
        // A poisoned lock: itemize (never lose a failure for the sake of the count).
        let Ok(mut windows) = self.windows.lock() else { return (true, None) };
        let mut closed = None;
        if windows.get(&address).is_some_and(|w| at.duration_since(w.opened) >= WINDOW) {
            closed = windows.remove(&address).and_then(|w| counted(address, &w));
        }
        let window = windows.entry(address).or_insert(Window { opened: at, since: now, itemized: 0, counted: 0 });
        if window.itemized < ITEMIZED {
            window.itemized += 1;
            (true, closed)
        } else {
            window.counted += 1;
            (false, closed)
        }
    }

    /// Closes the windows that are over (all of them with `all`, at shutdown) and returns
    /// what they counted.
    pub fn sweep(&self, at: Instant, all: bool) -> Vec<Counted> {
        let Ok(mut windows) = self.windows.lock() else { return Vec::new() };
        let mut out = Vec::new();
        windows.retain(|address, w| {
            let over = all || at.duration_since(w.opened) >= WINDOW;
            if over {
                out.extend(counted(*address, w));
            }
            !over
        });
        out
    }
}

fn counted(address: IpAddr, w: &Window) -> Option<Counted> {
    (w.counted > 0).then_some(Counted { address, count: w.counted, since: w.since })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ten_a_minute_are_itemized_the_rest_counted_and_handed_back_when_the_minute_is_over() {
        let failures = FailedLogins::default();
        let (a, b): (IpAddr, IpAddr) = ("192.0.2.1".parse().unwrap(), "192.0.2.2".parse().unwrap());
        let t0 = Instant::now();
        let now = Utc::now();
        let itemized = (0..25).filter(|_| failures.note(a, t0, now).0).count();
        assert_eq!(itemized, 10);
        assert!(failures.note(b, t0, now).0, "another address has its own count");
        assert_eq!(failures.sweep(t0 + Duration::from_secs(30), false), vec![], "the minute is not over");
        // The next failure from a after the minute is itemized, and hands back the count.
        let (itemize, closed) = failures.note(a, t0 + WINDOW, now);
        assert!(itemize);
        assert_eq!(closed, Some(Counted { address: a, count: 15, since: now }));
        // b counted nothing: its window closes without an entry.
        assert_eq!(failures.sweep(t0 + WINDOW, false), vec![]);
        for _ in 0..12 {
            failures.note(a, t0 + WINDOW, now);
        }
        assert_eq!(failures.sweep(t0 + WINDOW, true), vec![Counted { address: a, count: 3, since: now }]);
        assert!(failures.windows.lock().unwrap().is_empty());
    }
}
