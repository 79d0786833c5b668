//! `audit`: print the log (filtered) or verify its hash chain.

use super::Ctx;
use crate::UserError;
use crate::cli::{AuditArgs, AuditCommand};
use crate::store::AuditFilter;

pub fn run(ctx: &mut Ctx<'_>, args: AuditArgs) -> anyhow::Result<()> {
    let (config, store) = (ctx.config, ctx.store);
    let out = &mut *ctx.out;
    let tz = config.policy.timezone;
    if let Some(AuditCommand::Verify) = args.command {
        let entries = store.audit_entries(&AuditFilter::default())?;
        crate::audit::verify(&entries).map_err(|e| anyhow::anyhow!("audit log is NOT intact: {e}"))?;
        say!(out, "audit log intact: {} entries, chain verified", entries.len());
        return Ok(());
    }
    let since = match &args.since {
        Some(text) => Some(crate::policy::parse_local(text, tz).map_err(|e| UserError(format!("--since: {e}")))?),
        None => None,
    };
    let filter = AuditFilter { since, booking: args.booking.map(|b| b.0), vendor: args.vendor };
    for entry in store.audit_entries(&filter)? {
        let e = &entry.event;
        let mut about = Vec::new();
        if let Some(b) = e.booking {
            about.push(format!("B-{b}"));
        }
        if let Some(v) = &e.vendor {
            about.push(v.clone());
        }
        if let Some(s) = &e.session {
            about.push(s.clone());
        }
        // Details quote what people typed (command lines, reasons), escaped on output.
        let line = crate::sanitize::printable_line;
        say!(
            out,
            "{:>5} {} {:<19} {:<10} [{}] {}",
            entry.id,
            entry.at.with_timezone(&tz).format("%Y-%m-%d %H:%M:%S"),
            line(&e.kind),
            line(e.actor.as_deref().unwrap_or("-")),
            line(&about.join(" ")),
            line(&e.detail)
        );
    }
    Ok(())
}
