//! The scheduler: once a second it looks at the clock and acts on what is due.
//!
//! - Running sessions: warn the vendor 10, 5 and 1 minutes before the window ends, end the
//!   session at the end, and end it at once when its booking is cancelled.
//! - Window edges of approved bookings: audit the opening and closing; at the opening,
//!   compose the confirmation e-mail to client and vendor. A cancelled approved booking
//!   gets a cancellation e-mail.
//! - Deliver pending e-mails, retrying failures with backoff; every outcome is audited.
//!   Mail never blocks admission: it runs here, apart from the gate.
//! - Audit the counts of failed logins beyond the itemized rate, as each minute is over.
//! - Access withdrawn while connected: a session ends when its vendor is disabled or the
//!   key it logged in with is removed; a technician's console connection closes when the
//!   technician is disabled or the key removed.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};

use crate::audit::Event;
use crate::gate::Gate;
use crate::notify::{self, Kind};
use crate::policy::format_time;
use crate::session::{Input, Live, Notice};
use crate::store::{Access, Booking, BookingState, Role, StoreError, WindowEdge};

/// How often the scheduler looks. Window ends are enforced to within this.
const TICK: Duration = Duration::from_secs(1);

/// Warnings before a window ends, in minutes.
const WARN_MINUTES: [i64; 3] = [10, 5, 1];

/// Delivery attempts before a mail is given up (and the failure audited).
const MAX_ATTEMPTS: i64 = 8;

pub async fn run(gate: Arc<Gate>) {
    let mut tick = tokio::time::interval(TICK);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    loop {
        tokio::select! {
            _ = gate.shutdown.cancelled() => {
                gate.audit_counted_failures(true);
                return;
            }
            _ = tick.tick() => {}
        }
        let now = gate.clock.now();
        // The store work of a tick (a booking and an access query per live session: ~5 ms
        // with 300 sessions) runs on a blocking thread: on the runtime's workers it would
        // hold up every session's traffic for as long (one worker by default on two cores).
        let checks = gate.clone();
        let _ = tokio::task::spawn_blocking(move || check(&checks, now)).await;
        if let Err(err) = deliver(&gate, now).await {
            tracing::error!("scheduler: {err}");
        }
    }
}

/// A tick's checks that need only the store: failed-login counts, running sessions,
/// console connections, window edges.
fn check(gate: &Gate, now: DateTime<Utc>) {
    gate.audit_counted_failures(false);
    if let Err(err) = sessions(gate, now) {
        tracing::error!("scheduler: {err}");
    }
    if let Err(err) = consoles(gate) {
        tracing::error!("scheduler: {err}");
    }
    if let Err(err) = windows(gate, now) {
        tracing::error!("scheduler: {err}");
    }
}

/// Warns and ends running sessions as their bookings, supervision and access require.
fn sessions(gate: &Gate, now: DateTime<Utc>) -> Result<(), StoreError> {
    let running: Vec<Arc<Live>> = match gate.live.lock() {
        Ok(table) => table.values().filter(|l| l.ended().is_none()).cloned().collect(),
        Err(_) => return Ok(()),
    };
    let tz = gate.config.policy.timezone;
    let grace = gate.config.policy.supervisor_grace;
    let mut access = AccessCache::new(gate);
    for live in running {
        // Withdrawn access ends the session before any booking warning is given.
        let notice = match access.withdrawn(Role::Vendor, &live.vendor, &live.key)? {
            Some(why) => Some(Notice::End(format!("{why}; the session has been ended"))),
            None => match gate.store.booking(live.booking)? {
                None => Some(Notice::End("the booking of this session no longer exists".into())),
                Some(b) => notice_for(&b, now, tz, |minutes| already_warned(&live, minutes)),
            },
        };
        let unsupervised = {
            let state = live.state();
            state.input == Input::Unsupervised && state.unsupervised_since.is_some_and(|since| now >= since + grace)
        };
        let notice = notice.or_else(|| {
            unsupervised.then(|| {
                Notice::End(format!(
                    "no technician watched for {} minutes; the session has been ended",
                    grace.num_minutes()
                ))
            })
        });
        match notice {
            Some(Notice::End(reason)) => {
                let event = Event::new("session.ended", reason.clone());
                gate.audit(event.booking(live.booking).vendor(&live.vendor).session(&live.id));
                live.end(reason);
            }
            Some(other) => live.notify(other),
            None => {}
        }
    }
    Ok(())
}

/// Closes the console connections of technicians whose access is gone.
fn consoles(gate: &Gate) -> Result<(), StoreError> {
    let mut access = AccessCache::new(gate);
    for (id, tech, key) in gate.consoles.logins() {
        if let Some(why) = access.withdrawn(Role::Technician, &tech, &key)? {
            gate.consoles.close(id, format!("{why}; the connection is closed"));
        }
    }
    Ok(())
}

/// Access looked up once per person and key in a tick (a thousand sessions logged in
/// with one key are one query).
struct AccessCache<'a> {
    gate: &'a Gate,
    logins: HashMap<(Role, String, String), Access>,
}

impl<'a> AccessCache<'a> {
    fn new(gate: &'a Gate) -> AccessCache<'a> {
        AccessCache { gate, logins: HashMap::new() }
    }

    /// Why `name`, logged in with the key `key`, may no longer be connected, if so.
    fn withdrawn(&mut self, role: Role, name: &str, key: &str) -> Result<Option<String>, StoreError> {
        let cached = (role, name.to_string(), key.to_string());
        let access = match self.logins.get(&cached) {
            Some(access) => access.clone(),
            None => {
                let access = self.gate.store.access(role, name, key)?;
                self.logins.insert(cached, access.clone());
                access
            }
        };
        let noun = role.noun();
        Ok(match access {
            Access::Granted => None,
            Access::Disabled => Some(format!("{noun} {name} has been disabled")),
            Access::KeyRemoved => Some(format!("the key {key} has been removed from {noun} {name}")),
            Access::Unknown => Some(format!("{noun} {name} is no longer registered")),
        })
    }
}

/// What a session under `b` must be told at `now`. `warned(m)` records a warning for
/// `m` minutes and says whether it had been given already.
fn notice_for(
    b: &Booking,
    now: DateTime<Utc>,
    tz: chrono_tz::Tz,
    mut warned: impl FnMut(i64) -> bool,
) -> Option<Notice> {
    if b.state == BookingState::Cancelled {
        let reason = b.cancel_reason.as_deref().unwrap_or("no reason given");
        return Some(Notice::End(format!(
            "booking {} was cancelled ({reason}); the session has been ended",
            b.label()
        )));
    }
    if now >= b.end {
        return Some(Notice::End(format!(
            "the window of booking {} ended at {}; the session has been closed",
            b.label(),
            format_time(b.end, tz)
        )));
    }
    let left = b.end - now;
    // The most urgent threshold passed; earlier ones are skipped for a late joiner.
    let due = WARN_MINUTES.iter().copied().filter(|m| left <= chrono::Duration::minutes(*m)).min()?;
    if warned(due) {
        return None;
    }
    let minutes = (left.num_seconds() + 59) / 60;
    Some(Notice::Warn(format!(
        "the window of booking {} ends in {minutes} minute{} (at {}); finish and log out",
        b.label(),
        if minutes == 1 { "" } else { "s" },
        format_time(b.end, tz)
    )))
}

/// Records a warning of `minutes` (and every longer one) for a session; true if the
/// warning had been given before.
fn already_warned(live: &Live, minutes: i64) -> bool {
    let mut state = live.state();
    if state.warned.contains(&minutes) {
        return true;
    }
    state.warned.extend(WARN_MINUTES.iter().filter(|m| **m >= minutes));
    false
}

/// Window edges and the mails they cause.
fn windows(gate: &Gate, now: DateTime<Utc>) -> Result<(), StoreError> {
    for b in gate.store.bookings_due(now)? {
        let due = match b.state {
            BookingState::Approved if b.start <= now && b.opened_at.is_none() => Some(WindowEdge::Open),
            BookingState::Approved if b.end <= now && b.opened_at.is_some() && b.closed_at.is_none() => {
                Some(WindowEdge::Close)
            }
            BookingState::Cancelled => {
                queue_mail(gate, &b, Kind::Cancel, now);
                None
            }
            _ => None,
        };
        // Marking first makes the edge happen once, even with two bastions on one store.
        let Some(edge) = due else { continue };
        if !gate.store.booking_mark(b.id, edge, now)? {
            continue;
        }
        let (kind, detail) = match edge {
            WindowEdge::Open => ("window.open", format!("{} on {} as {}", b.vendor, b.target, b.account)),
            WindowEdge::Close => ("window.close", format!("{} on {}", b.vendor, b.target)),
        };
        gate.audit(Event::new(kind, detail).booking(b.id).vendor(&b.vendor));
        if edge == WindowEdge::Open && now < b.end {
            queue_mail(gate, &b, Kind::Open, now);
        }
    }
    Ok(())
}

/// Composes a booking's message once, keeps its copy and queues it for delivery.
fn queue_mail(gate: &Gate, b: &Booking, kind: Kind, now: DateTime<Utc>) {
    let queued = (|| -> Result<bool, String> {
        if gate.store.mails(b.id).map_err(|e| e.to_string())?.iter().any(|m| m.kind == kind.as_str()) {
            return Ok(false);
        }
        let target = gate.store.target(&b.target).map_err(|e| e.to_string())?.ok_or("the target is gone")?;
        let client_name = target.client.clone().ok_or("the target has no client")?;
        let client = gate.store.client(&client_name).map_err(|e| e.to_string())?.ok_or("the client is gone")?;
        let vendor = gate.store.vendor(&b.vendor).map_err(|e| e.to_string())?.ok_or("the vendor is gone")?;
        let about = notify::About {
            booking: b,
            target: &target,
            client: &client,
            vendor: &vendor,
            tz: gate.config.policy.timezone,
            now,
        };
        let composed = notify::compose(kind, &about, &gate.config.mail.from)?;
        let copy = notify::copy_path(&gate.config.data_dir, b, kind);
        notify::write_atomically(&copy, &composed.bytes)
            .map_err(|e| format!("cannot keep a copy at {}: {e}", copy.display()))?;
        gate.store
            .mail_insert(
                b.id,
                kind.as_str(),
                &composed.recipients.join(","),
                &composed.message_id,
                &copy.display().to_string(),
            )
            .map_err(|e| e.to_string())
    })();
    match queued {
        Ok(_) => {}
        Err(err) => {
            tracing::error!(booking = %b.label(), "cannot compose the {} mail: {err}", kind.as_str());
            gate.audit(Event::new("mail.failed", format!("{} mail not composed: {err}", kind.as_str())).booking(b.id));
        }
    }
}

/// Sends what is pending and due, with exponential backoff between attempts.
async fn deliver(gate: &Gate, now: DateTime<Utc>) -> Result<(), StoreError> {
    for mail in gate.store.mails_pending()? {
        let backoff = chrono::Duration::seconds(5 << mail.attempts.clamp(0, 7));
        if mail.last_attempt_at.is_some_and(|last| now < last + backoff) {
            continue;
        }
        let recipients: Vec<String> = mail.recipients.split(',').map(str::to_string).collect();
        let result = notify::deliver(&gate.config.mail, std::path::Path::new(&mail.copy_path), &recipients).await;
        let give_up = mail.attempts + 1 >= MAX_ATTEMPTS;
        gate.store.mail_attempt(mail.id, now, result.as_ref().err().map(String::as_str), give_up)?;
        let event = match &result {
            Ok(()) => Event::new("mail.sent", format!("{} mail {} to {}", mail.kind, mail.message_id, mail.recipients)),
            Err(err) => Event::new(
                "mail.failed",
                format!(
                    "{} mail {} attempt {}{}: {err}",
                    mail.kind,
                    mail.message_id,
                    mail.attempts + 1,
                    if give_up { " (giving up)" } else { " (will retry)" }
                ),
            ),
        };
        if let Err(err) = &result {
            tracing::warn!(booking = mail.booking, "mail delivery failed: {err}");
        }
        gate.audit(event.booking(mail.booking));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn booking(state: BookingState) -> Booking {
        let start = "2026-12-03T08:00:00Z".parse().unwrap();
        Booking {
            id: 17,
            vendor: "acme".into(),
            target: "erp01".into(),
            account: "app".into(),
            start,
            end: start + chrono::Duration::hours(3),
            timezone: "Europe/Berlin".into(),
            plan: "# p".into(),
            privileged: None,
            emergency: None,
            state,
            created_at: start,
            created_by: None,
            approved_by: None,
            approved_at: None,
            cancelled_by: None,
            cancelled_at: None,
            cancel_reason: Some("ERP vendor unavailable".into()),
            opened_at: None,
            closed_at: None,
        }
    }

    #[test]
    fn warnings_at_10_5_1_minutes_then_the_end() {
        let b = booking(BookingState::Approved);
        let tz = chrono_tz::Europe::Berlin;
        let mut warned: Vec<i64> = Vec::new();
        let mut at = |minutes_left: i64, seconds: i64| {
            let now = b.end - chrono::Duration::minutes(minutes_left) + chrono::Duration::seconds(seconds);
            notice_for(&b, now, tz, |m| {
                if warned.contains(&m) {
                    return true;
                }
                warned.extend(WARN_MINUTES.iter().filter(|x| **x >= m));
                false
            })
        };
        assert!(at(30, 0).is_none());
        assert!(
            matches!(at(10, 0), Some(Notice::Warn(t)) if t.contains("ends in 10 minutes (at 12:00 Europe/Berlin)"))
        );
        assert!(at(9, 0).is_none(), "each warning once");
        assert!(matches!(at(5, 0), Some(Notice::Warn(t)) if t.contains("5 minutes")));
        assert!(matches!(at(1, 0), Some(Notice::Warn(t)) if t.contains("1 minute (")));
        assert!(at(0, -10).is_none());
        assert!(matches!(at(0, 0), Some(Notice::End(t)) if t.contains("ended at 12:00")));
        let cancelled = booking(BookingState::Cancelled);
        assert!(
            matches!(notice_for(&cancelled, cancelled.start, tz, |_| false), Some(Notice::End(t)) if t.contains("was cancelled (ERP vendor unavailable)"))
        );
    }
}
