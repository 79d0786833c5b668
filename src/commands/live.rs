//! `sessions` and `kill`: the running bastion's live sessions (over ssh, each with its
//! channels: number, shell or command, open, ended with its exit status, or refused). Over ssh (inside `serve`)
//! they show and act on the sessions themselves; locally, `sessions` lists what the store
//! knows and `kill` explains where it works.

use super::Ctx;
use crate::UserError;
use crate::policy::format_time;

pub fn sessions(ctx: &mut Ctx<'_>) -> anyhow::Result<()> {
    let tz = ctx.config.policy.timezone;
    let now = ctx.clock.now();
    let out = &mut *ctx.out;
    let Some(gate) = ctx.gate else {
        let live: Vec<_> = ctx.store.session_list()?.into_iter().filter(|s| s.state == "live").collect();
        if live.is_empty() {
            say!(out, "no live sessions");
        }
        for s in live {
            let booking = s.booking.map(|b| format!("B-{b}")).unwrap_or_default();
            say!(
                out,
                "{}  {}@{} as {}  {booking}  since {}",
                s.id,
                s.vendor,
                s.target,
                s.account,
                format_time(s.started_at, tz)
            );
        }
        return Ok(());
    };
    let mut live: Vec<_> = gate.live.lock().map(|t| t.values().cloned().collect()).unwrap_or_default();
    live.sort_by(|a, b| a.id.cmp(&b.id));
    if live.is_empty() {
        say!(out, "no live sessions");
    }
    for l in live {
        let state = l.state();
        let watchers = if state.watchers.is_empty() { "nobody".to_string() } else { state.watchers.join(",") };
        let left = (l.window_end - now).num_minutes().max(0);
        say!(
            out,
            "{}  {}@{} as {}  {}  since {}  {left} min left  watched by {watchers}  {}",
            l.id,
            l.vendor,
            l.target,
            l.account,
            l.booking_label,
            format_time(l.started, tz),
            state.input.describe()
        );
        drop(state);
        // Each channel on a line of its own, indented under its session.
        for channel in l.channels() {
            say!(out, "  {}", channel.describe());
        }
    }
    Ok(())
}

pub fn kill(ctx: &mut Ctx<'_>, id: &str, reason: &str) -> anyhow::Result<()> {
    let (Some(gate), Some(tech)) = (ctx.gate, ctx.caller.technician()) else {
        return Err(UserError("kill works over ssh: ssh -p 2222 TECH@bastion kill ID --reason R".into()).into());
    };
    if reason.trim().is_empty() {
        return Err(UserError("--reason must say why".into()).into());
    }
    let live = gate.live.lock().ok().and_then(|t| t.get(id).cloned());
    let live = live.ok_or_else(|| UserError(format!("no live session {id:?}")))?;
    crate::session::kill(gate, &live, tech, reason);
    say!(ctx.out, "session {id} ended: {reason}");
    Ok(())
}
