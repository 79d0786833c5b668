//! The rules, as pure functions over plain data and a given "now": who is admitted to
//! which target as which account (only inside an approved booking's window), and which
//! bookings may be made (SOP rules 4, 7, 8). No I/O here; everything else calls it.

use chrono::{DateTime, LocalResult, NaiveDateTime, TimeZone, Utc};
use chrono_tz::Tz;

use crate::names::LoginName;
use crate::store::{Acknowledgement, Booking, BookingState, Target, Vendor};

mod transfer;

pub use transfer::{Transfer, contains_sftp_init, file_transfer, is_file_transfer, sniff_transfer};

/// An admitted login: where the session goes, under which booking.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Admission {
    pub target: Target,
    pub account: String,
    pub booking: Booking,
}

/// Why a login is refused; `Display` is the one line the vendor reads.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    #[error("vendor {vendor:?} is disabled; ask your provider to enable access")]
    VendorDisabled { vendor: String },
    #[error("unknown target {target:?}; ask your provider which targets you may reach")]
    UnknownTarget { target: String },
    #[error("no booking for {vendor} now; {next}")]
    NoBookingNow { vendor: String, next: String },
    #[error("no booking for {vendor} on {target} now; {next}")]
    NoBookingOnTargetNow { vendor: String, target: String, next: String },
    #[error("booking {label} is not approved yet; ask your provider")]
    NotApproved { label: String },
    #[error("you have bookings on {count} targets now; name one: ssh VENDOR:TARGET@bastion ({names})")]
    ChooseTarget { count: usize, names: String },
    #[error("booking {label} is for account {booked:?}, not {account:?}")]
    AccountNotBooked { label: String, booked: String, account: String },
    #[error("the bastion cannot read its store; nobody is admitted until it can (tell your provider)")]
    StoreUnavailable,
    #[error("{0}")]
    Upstream(String),
}

/// Decides a vendor's login at `now`. `bookings` are the vendor's bookings (any state).
pub fn admit(
    vendor: &Vendor,
    targets: &[Target],
    bookings: &[Booking],
    login: &LoginName,
    now: DateTime<Utc>,
    tz: Tz,
) -> Result<Admission, Refusal> {
    if !vendor.enabled {
        return Err(Refusal::VendorDisabled { vendor: vendor.name.clone() });
    }
    let live = |b: &&Booking| b.state != BookingState::Cancelled;
    let target_name = match &login.target {
        Some(name) => name.clone(),
        None => {
            let mut current: Vec<&str> = bookings
                .iter()
                .filter(|b| b.state == BookingState::Approved && b.covers(now))
                .map(|b| b.target.as_str())
                .collect();
            current.dedup();
            match current.as_slice() {
                [one] => one.to_string(),
                [] => {
                    return Err(Refusal::NoBookingNow {
                        vendor: vendor.name.clone(),
                        next: next_window(bookings.iter().filter(live), now, tz),
                    });
                }
                many => {
                    return Err(Refusal::ChooseTarget { count: many.len(), names: many.join(", ") });
                }
            }
        }
    };
    let target = targets
        .iter()
        .find(|t| t.name == target_name)
        .ok_or_else(|| Refusal::UnknownTarget { target: target_name.clone() })?;
    let on_target: Vec<&Booking> = bookings.iter().filter(live).filter(|b| b.target == target.name).collect();
    let covering = on_target.iter().filter(|b| b.covers(now));
    let booking = match covering.clone().find(|b| b.state == BookingState::Approved) {
        Some(b) => *b,
        None => {
            if let Some(pending) = covering.clone().next() {
                return Err(Refusal::NotApproved { label: pending.label() });
            }
            return Err(Refusal::NoBookingOnTargetNow {
                vendor: vendor.name.clone(),
                target: target.name.clone(),
                next: next_window(on_target.iter().copied(), now, tz),
            });
        }
    };
    if let Some(account) = &login.account
        && account != &booking.account
    {
        return Err(Refusal::AccountNotBooked {
            label: booking.label(),
            booked: booking.account.clone(),
            account: account.clone(),
        });
    }
    Ok(Admission { target: target.clone(), account: booking.account.clone(), booking: booking.clone() })
}

/// "next approved window: …" for the refusal message.
fn next_window<'a>(bookings: impl Iterator<Item = &'a Booking>, now: DateTime<Utc>, tz: Tz) -> String {
    bookings
        .filter(|b| b.state == BookingState::Approved && b.start > now)
        .min_by_key(|b| b.start)
        .map(|b| format!("next approved window: {}", format_window(b.start, b.end, tz)))
        .unwrap_or_else(|| "no approved window ahead; ask your provider".to_string())
}

/// `2026-12-03 09:00–12:00 Europe/Berlin` (the end's date is shown when it differs).
pub fn format_window(start: DateTime<Utc>, end: DateTime<Utc>, tz: Tz) -> String {
    let (s, e) = (start.with_timezone(&tz), end.with_timezone(&tz));
    let end_text = if s.date_naive() == e.date_naive() {
        e.format("%H:%M").to_string()
    } else {
        e.format("%Y-%m-%d %H:%M").to_string()
    };
    format!("{}–{} {}", s.format("%Y-%m-%d %H:%M"), end_text, tz.name())
}

/// `12:00 Europe/Berlin`.
pub fn format_time(at: DateTime<Utc>, tz: Tz) -> String {
    format!("{} {}", at.with_timezone(&tz).format("%H:%M"), tz.name())
}

/// Parses a wall-clock `YYYY-MM-DD HH:MM` in `tz`. Times that do not exist (clocks jump
/// forward) or exist twice (clocks go back) are refused, saying which.
pub fn parse_local(text: &str, tz: Tz) -> Result<DateTime<Utc>, String> {
    let naive = NaiveDateTime::parse_from_str(text.trim(), "%Y-%m-%d %H:%M")
        .map_err(|_| format!("{text:?} is not a time like \"2026-12-03 09:00\""))?;
    match tz.from_local_datetime(&naive) {
        LocalResult::Single(t) => Ok(t.with_timezone(&Utc)),
        LocalResult::None => {
            Err(format!("{text} does not exist in {} (the clocks jump forward then); pick another time", tz.name()))
        }
        LocalResult::Ambiguous(_, _) => {
            Err(format!("{text} happens twice in {} (the clocks go back then); pick another time", tz.name()))
        }
    }
}

/// The numbers booking rules use.
#[derive(Debug, Clone, Copy)]
pub struct BookingRules {
    pub lead_time: chrono::Duration,
    pub max_window: chrono::Duration,
}

/// A booking as asked for.
#[derive(Debug, Clone)]
pub struct BookingRequest<'a> {
    pub target: &'a Target,
    pub account: &'a str,
    pub start: DateTime<Utc>,
    pub end: DateTime<Utc>,
    pub plan: &'a str,
    pub privileged: Option<&'a str>,
    pub emergency: Option<&'a str>,
}

/// Largest plan: a page of steps, not an attachment store.
pub const MAX_PLAN_BYTES: usize = 64 * 1024;

/// Checks a new booking against the rules and the vendor's other bookings on the target.
pub fn check_booking(
    req: &BookingRequest<'_>,
    others: &[Booking],
    now: DateTime<Utc>,
    rules: BookingRules,
    tz: Tz,
) -> Result<(), String> {
    let target = req.target;
    if target.client.is_none() {
        return Err(format!(
            "target {:?} has no client yet; set one: chaperone target set-client {} --client NAME",
            target.name, target.name
        ));
    }
    if req.end <= req.start {
        return Err("the window must end after it starts".into());
    }
    if req.end - req.start > rules.max_window {
        return Err(format!(
            "the window is longer than {} hours (policy.max_window_hours)",
            rules.max_window.num_hours()
        ));
    }
    match req.emergency.map(str::trim) {
        Some("") => return Err("--emergency needs a reason".into()),
        Some(_) if req.end <= now => return Err("the window is already over".into()),
        Some(_) => {}
        None if req.start < now + rules.lead_time => {
            return Err(format!(
                "the window must start at least {} days after booking (not before {}); for an emergency give --emergency REASON",
                rules.lead_time.num_days(),
                (now + rules.lead_time).with_timezone(&tz).format("%Y-%m-%d %H:%M")
            ));
        }
        None => {}
    }
    if !target.accounts.iter().any(|a| a == req.account) {
        return Err(format!(
            "target {:?} has no account {:?} (accounts: {})",
            target.name,
            req.account,
            target.accounts.join(", ")
        ));
    }
    let privileged = target.privileged_accounts.iter().any(|a| a == req.account);
    match req.privileged.map(str::trim) {
        Some("") => return Err("--privileged needs a justification".into()),
        None if privileged => {
            return Err(format!(
                "account {:?} is privileged; book it only with --privileged JUSTIFICATION (or book an unprivileged account)",
                req.account
            ));
        }
        _ => {}
    }
    if let Some(other) = others
        .iter()
        .filter(|b| b.state != BookingState::Cancelled && b.target == target.name)
        .find(|b| b.start < req.end && req.start < b.end)
    {
        return Err(format!(
            "overlaps booking {} ({}) of the same vendor on {}",
            other.label(),
            format_window(other.start, other.end, tz),
            target.name
        ));
    }
    check_plan(req.plan)
}

/// A plan is Markdown text, not empty, at most [`MAX_PLAN_BYTES`].
pub fn check_plan(plan: &str) -> Result<(), String> {
    if plan.trim().is_empty() {
        return Err("the plan is empty; write what will be done, on which systems, by whom, and the rollback".into());
    }
    if plan.len() > MAX_PLAN_BYTES {
        return Err(format!("the plan is {} bytes; at most {MAX_PLAN_BYTES} are allowed", plan.len()));
    }
    Ok(())
}

/// Approval needs a pending booking and, unless switched off, the vendor's signed and the
/// client's acknowledgement.
pub fn check_approval(booking: &Booking, acks: &[Acknowledgement], require_acks: bool) -> Result<(), String> {
    match booking.state {
        BookingState::Approved => return Err(format!("booking {} is already approved", booking.label())),
        BookingState::Cancelled => return Err(format!("booking {} is cancelled", booking.label())),
        BookingState::Pending => {}
    }
    if require_acks {
        if !acks.iter().any(|a| a.party == "vendor" && a.signature.is_some()) {
            return Err(format!(
                "booking {} needs the vendor's signed acknowledgement first (booking ack {} --party vendor --signature FILE)",
                booking.label(),
                booking.id
            ));
        }
        if !acks.iter().any(|a| a.party == "client") {
            return Err(format!(
                "booking {} needs the client's acknowledgement first (booking ack {} --party client --note TEXT --by TECH)",
                booking.label(),
                booking.id
            ));
        }
    }
    Ok(())
}

/// Environment variables a vendor's client may pass to the target: locale and terminal
/// type only. Anything else could change how the target's shell or programs behave
/// (`LD_PRELOAD`, `PATH`, `BASH_ENV`…).
pub fn env_allowed(name: &str) -> bool {
    name == "LANG" || name == "TERM" || name.starts_with("LC_")
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::Duration;

    const TZ: Tz = chrono_tz::Europe::Berlin;

    fn at(text: &str) -> DateTime<Utc> {
        parse_local(text, TZ).unwrap()
    }

    fn vendor(enabled: bool) -> Vendor {
        Vendor { name: "acme".into(), email: "a@b.c".into(), enabled, keys: vec![], created_at: Utc::now() }
    }

    fn target(name: &str, accounts: &[&str], privileged: &[&str]) -> Target {
        Target {
            name: name.into(),
            address: "127.0.0.1:22".into(),
            host_key: String::new(),
            accounts: accounts.iter().chain(privileged).map(|a| a.to_string()).collect(),
            privileged_accounts: privileged.iter().map(|a| a.to_string()).collect(),
            client: Some("globex".into()),
            created_at: Utc::now(),
        }
    }

    fn booking(id: i64, target: &str, account: &str, start: &str, end: &str, state: BookingState) -> Booking {
        Booking {
            id,
            vendor: "acme".into(),
            target: target.into(),
            account: account.into(),
            start: at(start),
            end: at(end),
            timezone: "Europe/Berlin".into(),
            plan: "# Plan".into(),
            privileged: None,
            emergency: None,
            state,
            created_at: Utc::now(),
            created_by: None,
            approved_by: None,
            approved_at: None,
            cancelled_by: None,
            cancelled_at: None,
            cancel_reason: None,
            opened_at: None,
            closed_at: None,
        }
    }

    fn login(s: &str) -> LoginName {
        LoginName::parse(s).unwrap()
    }

    /// (login, now, expected (target, account) or refusal text)
    type Case<'a> = (&'a str, &'a str, Result<(&'a str, &'a str), &'a str>);

    #[test]
    fn admission_only_inside_an_approved_window() {
        use BookingState::*;
        let targets = vec![target("erp01", &["app"], &["root"]), target("erp02", &["svc"], &[])];
        let bookings = vec![
            booking(1, "erp01", "app", "2026-12-03 09:00", "2026-12-03 12:00", Approved),
            booking(2, "erp01", "root", "2026-12-04 09:00", "2026-12-04 10:00", Pending),
            booking(3, "erp02", "svc", "2026-12-03 11:00", "2026-12-03 13:00", Approved),
            booking(4, "erp01", "app", "2026-12-05 09:00", "2026-12-05 10:00", Cancelled),
        ];
        let cases: Vec<Case> = vec![
            ("acme:erp01", "2026-12-03 09:00", Ok(("erp01", "app"))),
            ("acme:erp01", "2026-12-03 11:59", Ok(("erp01", "app"))),
            ("acme:erp01", "2026-12-03 12:00", Err("no booking for acme on erp01 now; no approved window ahead")),
            ("acme:erp01", "2026-12-03 08:59", Err("next approved window: 2026-12-03 09:00–12:00 Europe/Berlin")),
            ("acme:erp01", "2026-12-04 09:30", Err("booking B-2 is not approved yet")),
            ("acme:erp01", "2026-12-05 09:30", Err("no booking for acme on erp01 now")),
            ("acme:erp01:root", "2026-12-03 10:00", Err("booking B-1 is for account \"app\", not \"root\"")),
            ("acme:erp01:app", "2026-12-03 10:00", Ok(("erp01", "app"))),
            ("acme", "2026-12-03 10:00", Ok(("erp01", "app"))),
            ("acme", "2026-12-03 11:30", Err("bookings on 2 targets now")),
            ("acme", "2026-12-03 12:30", Ok(("erp02", "svc"))),
            ("acme", "2026-12-01 12:30", Err("no booking for acme now; next approved window: 2026-12-03 09:00")),
            ("acme:erp09", "2026-12-03 10:00", Err("unknown target \"erp09\"")),
        ];
        for (user, now, expected) in cases {
            let got = admit(&vendor(true), &targets, &bookings, &login(user), at(now), TZ);
            match (got, expected) {
                (Ok(a), Ok((t, acc))) => {
                    assert_eq!((a.target.name.as_str(), a.account.as_str()), (t, acc), "{user} at {now}")
                }
                (Err(r), Err(text)) => assert!(r.to_string().contains(text), "{user} at {now}: {r}"),
                (got, expected) => panic!("{user} at {now}: got {got:?}, expected {expected:?}"),
            }
        }
        let refused = admit(&vendor(false), &targets, &bookings, &login("acme:erp01"), at("2026-12-03 10:00"), TZ);
        assert!(matches!(refused, Err(Refusal::VendorDisabled { .. })));
    }

    fn rules() -> BookingRules {
        BookingRules { lead_time: Duration::days(7), max_window: Duration::hours(12) }
    }

    fn request<'a>(t: &'a Target, account: &'a str, start: &str, end: &str) -> BookingRequest<'a> {
        BookingRequest {
            target: t,
            account,
            start: at(start),
            end: at(end),
            plan: "# Upgrade\n- step",
            privileged: None,
            emergency: None,
        }
    }

    #[test]
    fn lead_time_is_inclusive_at_exactly_seven_days() {
        let t = target("erp01", &["app"], &[]);
        let now = at("2026-11-26 09:00");
        assert!(
            check_booking(&request(&t, "app", "2026-12-03 09:00", "2026-12-03 12:00"), &[], now, rules(), TZ).is_ok()
        );
        let err = check_booking(&request(&t, "app", "2026-12-03 08:59", "2026-12-03 12:00"), &[], now, rules(), TZ)
            .unwrap_err();
        assert!(err.contains("at least 7 days") && err.contains("2026-12-03 09:00"), "{err}");
        let emergency = BookingRequest {
            emergency: Some("ERP down"),
            ..request(&t, "app", "2026-11-26 10:00", "2026-11-26 12:00")
        };
        assert!(check_booking(&emergency, &[], now, rules(), TZ).is_ok());
        let blank = BookingRequest { emergency: Some("  "), ..emergency.clone() };
        assert!(check_booking(&blank, &[], now, rules(), TZ).unwrap_err().contains("needs a reason"));
        let past =
            BookingRequest { emergency: Some("x"), ..request(&t, "app", "2026-11-26 06:00", "2026-11-26 08:00") };
        assert!(check_booking(&past, &[], now, rules(), TZ).unwrap_err().contains("already over"));
    }

    #[test]
    fn window_shape_accounts_privilege_overlap_and_plan() {
        let t = target("erp01", &["app"], &["root"]);
        let now = at("2026-11-01 09:00");
        let check = |r: &BookingRequest<'_>, others: &[Booking]| check_booking(r, others, now, rules(), TZ);
        assert!(
            check(&request(&t, "app", "2026-12-03 12:00", "2026-12-03 12:00"), &[]).unwrap_err().contains("end after")
        );
        assert!(
            check(&request(&t, "app", "2026-12-03 08:00", "2026-12-03 20:01"), &[])
                .unwrap_err()
                .contains("longer than 12")
        );
        assert!(check(&request(&t, "app", "2026-12-03 08:00", "2026-12-03 20:00"), &[]).is_ok());
        assert!(
            check(&request(&t, "admin", "2026-12-03 08:00", "2026-12-03 09:00"), &[])
                .unwrap_err()
                .contains("no account")
        );
        assert!(
            check(&request(&t, "root", "2026-12-03 08:00", "2026-12-03 09:00"), &[])
                .unwrap_err()
                .contains("privileged")
        );
        let justified = BookingRequest {
            privileged: Some("kernel update"),
            ..request(&t, "root", "2026-12-03 08:00", "2026-12-03 09:00")
        };
        assert!(check(&justified, &[]).is_ok());

        let existing = vec![booking(5, "erp01", "app", "2026-12-03 09:00", "2026-12-03 12:00", BookingState::Approved)];
        let err = check(&request(&t, "app", "2026-12-03 11:00", "2026-12-03 13:00"), &existing).unwrap_err();
        assert!(err.contains("overlaps booking B-5"), "{err}");
        // Touching windows do not overlap; cancelled bookings do not count.
        assert!(check(&request(&t, "app", "2026-12-03 12:00", "2026-12-03 13:00"), &existing).is_ok());
        let cancelled =
            vec![booking(6, "erp01", "app", "2026-12-03 09:00", "2026-12-03 12:00", BookingState::Cancelled)];
        assert!(check(&request(&t, "app", "2026-12-03 11:00", "2026-12-03 13:00"), &cancelled).is_ok());

        let empty = BookingRequest { plan: " \n", ..request(&t, "app", "2026-12-03 08:00", "2026-12-03 09:00") };
        assert!(check(&empty, &[]).unwrap_err().contains("plan is empty"));
        let big = "x".repeat(MAX_PLAN_BYTES + 1);
        let large = BookingRequest { plan: &big, ..request(&t, "app", "2026-12-03 08:00", "2026-12-03 09:00") };
        assert!(check(&large, &[]).unwrap_err().contains("at most 65536"));
    }

    #[test]
    fn dst_edges_in_berlin() {
        // 2026-03-29: 02:00 → 03:00; 2026-10-25: 03:00 → 02:00.
        assert!(parse_local("2026-03-29 02:30", TZ).unwrap_err().contains("does not exist"));
        assert!(parse_local("2026-10-25 02:30", TZ).unwrap_err().contains("happens twice"));
        assert_eq!(parse_local("2026-03-29 03:00", TZ).unwrap().to_rfc3339(), "2026-03-29T01:00:00+00:00");
        assert_eq!(parse_local("2026-10-25 03:00", TZ).unwrap().to_rfc3339(), "2026-10-25T02:00:00+00:00");
        assert!(parse_local("2026-13-01 10:00", TZ).is_err());
        // A window across the autumn change is 13 real hours for 12 wall-clock hours.
        let t = target("erp01", &["app"], &[]);
        let r = request(&t, "app", "2026-10-24 20:00", "2026-10-25 08:00");
        assert!(check_booking(&r, &[], at("2026-10-01 09:00"), rules(), TZ).unwrap_err().contains("longer than 12"));
    }

    #[test]
    fn approval_needs_acknowledgements() {
        let b = booking(7, "erp01", "app", "2026-12-03 09:00", "2026-12-03 12:00", BookingState::Pending);
        let ack = |party: &str, signed: bool| Acknowledgement {
            booking: 7,
            party: party.into(),
            by: None,
            note: None,
            signature: signed.then(|| "sig".to_string()),
            key_fingerprint: None,
            at: Utc::now(),
        };
        assert!(check_approval(&b, &[], true).unwrap_err().contains("vendor's signed"));
        assert!(check_approval(&b, &[ack("vendor", false)], true).unwrap_err().contains("vendor's signed"));
        assert!(check_approval(&b, &[ack("vendor", true)], true).unwrap_err().contains("client's"));
        assert!(check_approval(&b, &[ack("vendor", true), ack("client", false)], true).is_ok());
        assert!(check_approval(&b, &[], false).is_ok());
        let approved = Booking { state: BookingState::Approved, ..b };
        assert!(check_approval(&approved, &[], false).unwrap_err().contains("already approved"));
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
