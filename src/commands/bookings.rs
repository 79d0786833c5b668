//! `booking …`: create, acknowledge, approve, cancel and show bookings; every change is
//! audited.

use chrono::{DateTime, Utc};
use chrono_tz::Tz;

use super::{Ctx, ON_THE_BASTION};
use crate::UserError;
use crate::audit::Event;
use crate::cli::{BookingCommand, BookingId, Party};
use crate::keys::parse_public_key;
use crate::policy::{self, BookingRequest, BookingRules, format_window};
use crate::store::{Acknowledgement, Booking, BookingState, NewBooking, Store};
use std::io::Write;

pub fn run(ctx: &mut Ctx<'_>, cmd: BookingCommand) -> anyhow::Result<()> {
    let (config, store) = (ctx.config, ctx.store);
    let tz = config.policy.timezone;
    let now = ctx.clock.now();
    let me = ctx.caller.technician().map(str::to_string);
    // Over SSH a technician acts as themself: `--by` defaults to them and cannot name
    // someone else.
    let by_me = |by: Option<String>| -> anyhow::Result<Option<String>> {
        match (&me, by) {
            (Some(me), Some(by)) if &by != me => {
                Err(UserError(format!("you are logged in as {me}; --by cannot name {by}")).into())
            }
            (Some(me), _) => Ok(Some(me.clone())),
            (None, by) => Ok(by),
        }
    };
    let over_ssh = me.is_some();
    let out = &mut *ctx.out;
    let stdin = &mut *ctx.stdin;
    match cmd {
        BookingCommand::Create { vendor, target, account, start, end, tz: zone, plan, privileged, emergency, by } => {
            let zone: Tz = match zone {
                Some(name) => name.parse().map_err(|_| UserError(format!("unknown time zone {name:?}")))?,
                None => tz,
            };
            let start = policy::parse_local(&start, zone).map_err(|e| UserError(format!("--start: {e}")))?;
            let end = policy::parse_local(&end, zone).map_err(|e| UserError(format!("--end: {e}")))?;
            check_lines(&[("--privileged", &privileged), ("--emergency", &emergency)])?;
            let plan = read_plan(&plan, stdin, over_ssh)?;
            let by = by_me(by)?;
            if store.vendor(&vendor)?.is_none() {
                return Err(UserError(format!("no vendor {vendor:?}")).into());
            }
            if let Some(tech) = &by {
                store.active_tech(tech)?;
            }
            let target = store.target(&target)?.ok_or_else(|| UserError(format!("no target {target:?}")))?;
            let request = BookingRequest {
                target: &target,
                account: &account,
                start,
                end,
                plan: &plan,
                privileged: privileged.as_deref(),
                emergency: emergency.as_deref(),
            };
            let others = store.bookings(Some(&vendor), Some(&target.name))?;
            let rules = BookingRules { lead_time: config.policy.lead_time, max_window: config.policy.max_window };
            policy::check_booking(&request, &others, now, rules, zone).map_err(UserError)?;
            let id = store.booking_insert(&NewBooking {
                vendor: vendor.clone(),
                target: target.name.clone(),
                account: account.clone(),
                start,
                end,
                timezone: zone.name().to_string(),
                plan,
                privileged: privileged.clone(),
                emergency: emergency.clone(),
                created_by: by.clone(),
                created_at: now,
            })?;
            let mut detail = format!("{vendor} on {} as {account}, {}", target.name, format_window(start, end, zone));
            if let Some(reason) = &privileged {
                detail.push_str(&format!("; privileged: {reason}"));
            }
            if let Some(reason) = &emergency {
                detail.push_str(&format!("; emergency: {reason}"));
            }
            store.audit(now, &actor(Event::new("booking.create", detail), &by).booking(id).vendor(&vendor))?;
            say!(out, "B-{id}");
        }
        BookingCommand::List { all, vendor, target } => {
            let bookings: Vec<Booking> = store
                .bookings(vendor.as_deref(), target.as_deref())?
                .into_iter()
                .filter(|b| all || (b.state != BookingState::Cancelled && b.end > now))
                .collect();
            if bookings.is_empty() {
                say!(
                    out,
                    "no bookings{}",
                    if all { "" } else { " upcoming or active (--all shows past and cancelled)" }
                );
            }
            for b in bookings {
                let shown_tz: Tz = b.timezone.parse().unwrap_or(tz);
                let active = if b.covers(now) && b.state == BookingState::Approved { " (active)" } else { "" };
                say!(
                    out,
                    "{:<6} {:<9} {:<12} {:<12} {:<10} {}{active}  {}",
                    b.label(),
                    b.state.as_str(),
                    line(&b.vendor),
                    line(&b.target),
                    line(&b.account),
                    format_window(b.start, b.end, shown_tz),
                    line(&crate::plan::title(&b.plan))
                );
            }
        }
        BookingCommand::Show { id } => show(store, &booking(store, id)?, tz, out)?,
        BookingCommand::Plan { id } => {
            let plan = booking(store, id)?.plan;
            // Plans are checked when they are stored; one stored before that may hold
            // control strings: into a local file or pipe its exact bytes (what was
            // signed), on a terminal or over ssh (maybe a terminal) escaped.
            if crate::plan::check_text(&plan).is_err() && (ctx.tty || over_ssh) {
                out.write_all(crate::sanitize::printable_text(&plan).as_bytes())?;
                let _ = writeln!(
                    ctx.err,
                    "chaperone: the plan holds control characters, shown escaped; its exact bytes: \
                     chaperone booking plan {} > plan.md (on the bastion)",
                    id.0
                );
            } else {
                out.write_all(plan.as_bytes())?;
            }
        }
        BookingCommand::Replan { id, plan, by } => {
            let b = booking(store, id)?;
            let by = required(by_me(by)?)?;
            store.active_tech(&by)?;
            let plan = read_plan(&plan, stdin, over_ssh)?;
            if b.state != BookingState::Pending {
                return Err(UserError(format!(
                    "booking {} is {}; its plan cannot change",
                    b.label(),
                    b.state.as_str()
                ))
                .into());
            }
            if !store.acks(b.id)?.is_empty() {
                return Err(UserError(format!(
                    "the plan of {} is frozen: it has been acknowledged; cancel it and book anew to change it",
                    b.label()
                ))
                .into());
            }
            store.booking_replan(b.id, &plan)?;
            let detail = format!("plan replaced: {}", crate::plan::title(&plan));
            store.audit(now, &Event::new("booking.replan", detail).actor(&by).booking(b.id).vendor(&b.vendor))?;
            say!(out, "{}: plan replaced", b.label());
        }
        BookingCommand::Ack { id, party, signature, by, note } => {
            let b = booking(store, id)?;
            if b.state == BookingState::Cancelled {
                return Err(UserError(format!("booking {} is cancelled", b.label())).into());
            }
            let signature = match &signature {
                Some(path) => Some(
                    String::from_utf8(read_input(path, stdin, MAX_SIGNATURE, "signature", over_ssh)?)
                        .map_err(|_| UserError("the signature is not text".into()))?,
                ),
                None => None,
            };
            check_lines(&[("--note", &note)])?;
            let by = if party == Party::Vendor { by } else { by_me(by)? };
            let ack = acknowledge(store, &b, party, signature, by, note, now)?;
            let who = ack.by.clone().unwrap_or_default();
            let mut detail = format!("{} acknowledged the plan", ack.party);
            if let Some(fp) = &ack.key_fingerprint {
                detail.push_str(&format!(", signed with {fp}"));
            }
            if let Some(note) = &ack.note {
                detail.push_str(&format!(": {note}"));
            }
            store.ack_insert(&ack)?;
            store.audit(now, &Event::new("booking.ack", detail.clone()).actor(who).booking(b.id).vendor(&b.vendor))?;
            say!(out, "{}: {detail}", b.label());
        }
        BookingCommand::Approve { id, by } => {
            let b = booking(store, id)?;
            let by = required(by_me(by)?)?;
            store.active_tech(&by)?;
            let acks = store.acks(b.id)?;
            policy::check_approval(&b, &acks, config.policy.require_acknowledgements).map_err(UserError)?;
            store.booking_approve(b.id, &by, now)?;
            store.audit(
                now,
                &Event::new("booking.approve", format!("approved by {by}")).actor(&by).booking(b.id).vendor(&b.vendor),
            )?;
            say!(
                out,
                "{} approved: {} may log in to {} during {}",
                b.label(),
                b.vendor,
                b.target,
                format_window(b.start, b.end, tz)
            );
        }
        BookingCommand::Cancel { id, reason, by } => {
            let b = booking(store, id)?;
            let by = required(by_me(by)?)?;
            store.active_tech(&by)?;
            if b.state == BookingState::Cancelled {
                return Err(UserError(format!("booking {} is already cancelled", b.label())).into());
            }
            if reason.trim().is_empty() {
                return Err(UserError("--reason must say why".into()).into());
            }
            crate::names::check_line("--reason", &reason)?;
            store.booking_cancel(b.id, &by, &reason, now)?;
            store
                .audit(now, &Event::new("booking.cancel", reason.clone()).actor(&by).booking(b.id).vendor(&b.vendor))?;
            say!(out, "{} cancelled; live sessions under it end now", b.label());
        }
        // A plan stored before plans were checked may hold control strings.
        BookingCommand::Ics { id } => {
            let ics = crate::calendar::booking_ics(&booking(store, id)?, now);
            say_raw!(out, "{}", crate::sanitize::printable_text(&ics))
        }
    }
    Ok(())
}

fn actor(event: Event, by: &Option<String>) -> Event {
    match by {
        Some(tech) => event.actor(tech),
        None => event.actor(super::local_actor()),
    }
}

fn booking(store: &Store, id: BookingId) -> anyhow::Result<Booking> {
    Ok(store.booking_required(id.0)?)
}

fn required(by: Option<String>) -> anyhow::Result<String> {
    by.ok_or_else(|| UserError("--by TECH is required".into()).into())
}

/// Most a signature file may hold: an armored SSH signature is well under 2 KiB.
const MAX_SIGNATURE: usize = 64 * 1024;

/// Reads a file, or standard input for `-`, refusing more than `limit` bytes. Over ssh
/// only standard input: a file would be the bastion's.
fn read_input(
    path: &std::path::Path,
    stdin: &mut dyn std::io::Read,
    limit: usize,
    what: &str,
    over_ssh: bool,
) -> anyhow::Result<Vec<u8>> {
    let from_stdin = path == std::path::Path::new("-");
    if over_ssh && !from_stdin {
        let file = path.display();
        return Err(UserError(format!("{ON_THE_BASTION}: send the {what} on standard input (- < {file})")).into());
    }
    let bytes = if from_stdin {
        crate::files::read_from(stdin, "from standard input", limit, what)
    } else {
        crate::files::read(path, limit, what)
    };
    Ok(bytes.map_err(|e| UserError(e.to_string()))?)
}

/// Reads a plan (a file, or stdin for `-`): UTF-8 text, at most the plan limit, with
/// nothing in it that acts on a terminal.
fn read_plan(path: &std::path::Path, stdin: &mut dyn std::io::Read, over_ssh: bool) -> anyhow::Result<String> {
    let bytes = read_input(path, stdin, policy::MAX_PLAN_BYTES, "plan", over_ssh)?;
    let text =
        String::from_utf8(bytes).map_err(|_| UserError(format!("the plan {} is not valid UTF-8", path.display())))?;
    policy::check_plan(&text).map_err(UserError)?;
    crate::plan::check_text(&text).map_err(UserError)?;
    Ok(text)
}

/// Checks the free text given with a booking change (reasons, notes).
fn check_lines(fields: &[(&str, &Option<String>)]) -> Result<(), UserError> {
    for (field, text) in fields {
        if let Some(text) = text {
            crate::names::check_line(field, text)?;
        }
    }
    Ok(())
}

/// Checks who may acknowledge and verifies any signature against the plan's bytes.
fn acknowledge(
    store: &Store,
    b: &Booking,
    party: Party,
    signature: Option<String>,
    by: Option<String>,
    note: Option<String>,
    now: DateTime<Utc>,
) -> anyhow::Result<Acknowledgement> {
    let verify = |allowed: Option<&[russh::keys::PublicKey]>| -> anyhow::Result<Option<String>> {
        match &signature {
            Some(sig) => {
                let key = crate::plan::verify_signature(&b.plan, sig, allowed).map_err(UserError)?;
                Ok(Some(crate::keys::fingerprint(&key)))
            }
            None => Ok(None),
        }
    };
    let (party_name, by, fingerprint) = match party {
        Party::Vendor => {
            if signature.is_none() {
                return Err(UserError(
                    "the vendor acknowledges with --signature FILE (ssh-keygen -Y sign -n chaperone-plan)".into(),
                )
                .into());
            }
            let vendor = store.vendor(&b.vendor)?.ok_or_else(|| UserError(format!("no vendor {:?}", b.vendor)))?;
            let keys: Vec<_> = vendor.keys.iter().filter_map(|k| parse_public_key(k).ok()).collect();
            ("vendor", b.vendor.clone(), verify(Some(&keys))?)
        }
        Party::Provider => {
            let tech = by.ok_or_else(|| UserError("--by TECH is required for the provider".into()))?;
            let t = store.active_tech(&tech)?;
            let keys: Vec<_> = t.keys.iter().filter_map(|k| parse_public_key(k).ok()).collect();
            ("provider", tech, verify(Some(&keys))?)
        }
        Party::Client => {
            let tech = by.ok_or_else(|| {
                UserError("--by TECH is required: the technician who received the client's confirmation".into())
            })?;
            store.active_tech(&tech)?;
            if note.as_deref().is_none_or(|n| n.trim().is_empty()) && signature.is_none() {
                return Err(
                    UserError("--note TEXT (how the client confirmed) or --signature FILE is required".into()).into()
                );
            }
            // A client's signature carries its own key; it proves the plan's bytes.
            ("client", tech, verify(None)?)
        }
    };
    Ok(Acknowledgement {
        booking: b.id,
        party: party_name.to_string(),
        by: Some(by),
        note,
        signature,
        key_fingerprint: fingerprint,
        at: now,
    })
}

/// Stored text on one line of output, its control characters escaped (rows stored before
/// input was checked may hold them).
fn line(text: &str) -> std::borrow::Cow<'_, str> {
    crate::sanitize::printable_line(text)
}

/// The same for an optional field, `-` when there is none.
fn line_or_dash(text: &Option<String>) -> std::borrow::Cow<'_, str> {
    text.as_deref().map_or(std::borrow::Cow::Borrowed("-"), line)
}

fn show(store: &Store, b: &Booking, default_tz: Tz, out: &mut dyn Write) -> anyhow::Result<()> {
    let tz: Tz = b.timezone.parse().unwrap_or(default_tz);
    let time = |t: DateTime<Utc>| t.with_timezone(&tz).format("%Y-%m-%d %H:%M %Z").to_string();
    say!(out, "booking:    {}", b.label());
    say!(out, "state:      {}", b.state.as_str());
    say!(out, "vendor:     {}", line(&b.vendor));
    say!(out, "target:     {}", line(&b.target));
    say!(out, "account:    {}", line(&b.account));
    say!(out, "window:     {}", format_window(b.start, b.end, tz));
    if let Some(reason) = &b.privileged {
        say!(out, "privileged: {}", line(reason));
    }
    if let Some(reason) = &b.emergency {
        say!(out, "EMERGENCY:  {} (booked without the lead time)", line(reason));
    }
    say!(out, "created:    {} by {}", time(b.created_at), line_or_dash(&b.created_by));
    if let (Some(by), Some(at)) = (&b.approved_by, b.approved_at) {
        say!(out, "approved:   {} by {}", time(at), line(by));
    }
    if let (Some(by), Some(at)) = (&b.cancelled_by, b.cancelled_at) {
        say!(out, "cancelled:  {} by {}: {}", time(at), line(by), line(b.cancel_reason.as_deref().unwrap_or("")));
    }
    let acks = store.acks(b.id)?;
    if acks.is_empty() {
        say!(out, "acknowledgements: none yet");
    }
    for a in acks {
        let signed = a.key_fingerprint.as_ref().map(|fp| format!(", signed {}", line(fp))).unwrap_or_default();
        let note = a.note.as_ref().map(|n| format!(": {}", line(n))).unwrap_or_default();
        say!(out, "ack:        {} by {} at {}{signed}{note}", line(&a.party), line_or_dash(&a.by), time(a.at));
    }
    for m in store.mails(b.id)? {
        say!(
            out,
            "mail:       {} {} to {} ({}, {} attempt(s))",
            line(&m.kind),
            line(&m.message_id),
            line(&m.recipients),
            line(&m.state),
            m.attempts
        );
    }
    say!(out, "--- plan ---");
    if let Some(reason) = &b.emergency {
        say!(out, "[EMERGENCY booking: {}]", line(reason));
    }
    if let Some(reason) = &b.privileged {
        say!(out, "[PRIVILEGED account {}: {}]", line(&b.account), line(reason));
    }
    say_raw!(out, "{}", crate::sanitize::printable_text(&b.plan));
    if !b.plan.ends_with('\n') {
        say!(out, "");
    }
    Ok(())
}
