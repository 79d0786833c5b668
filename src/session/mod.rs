//! One vendor connection from admission to its end. The task here owns the decision
//! (policy), the upstream connection, the recording folder and the channel relays; the
//! gate's handler only feeds it channels, and the scheduler only sends it notices
//! (warnings before the window's end, the end itself).
//!
//! - `live`: the running session as the scheduler and watchers see it.
//! - `relay`: one channel, both directions, recorded and mirrored.
//! - `refusal`: showing a refused vendor why, then closing.
//! - `meta`: `session.json` and the store row.
//! - `supervision`: waiting for a technician, and what joining and leaving do.
//! - `listing`: the session's channels (number, request, state) and their mirrors.
//!
//! Every channel is supervised alike: a shell or command starts only while the session's
//! input is open (checked when its request would be forwarded), and while input is held
//! (frozen, taken over, nobody watching) a new one is refused with the reason on its
//! stderr, audited and marked on the timeline. A channel already running keeps running,
//! but its input is held like the first channel's.

mod listing;
mod live;
mod meta;
mod refusal;
mod relay;
mod supervision;

pub use meta::recover;

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use russh::server::Handle;
use tokio::sync::{broadcast, mpsc};
use tokio::task::JoinSet;

use crate::audit::Event as AuditEvent;
use crate::gate::{Gate, GateEvent, Refusals};
use crate::names::LoginName;
use crate::policy::{self, Admission, Refusal};
use crate::recording::{self, Recorder, Summary};
use crate::upstream::Upstream;

pub use listing::{ChannelEntry, ChannelState, Request};
pub use live::{Input, Live, LiveSessions, Notice, Supervision};
pub use meta::SessionMeta;
pub use supervision::{Watching, kill};

/// How long channel relays get to finish their recordings once the vendor has gone or
/// the session was ended.
const FINISH_GRACE: Duration = Duration::from_secs(10);

/// How long a vendor's client gets to hang up by itself once its channels are closed,
/// before it is disconnected.
const HANGUP_GRACE: Duration = Duration::from_secs(3);

/// Channels a session may have open at once (OpenSSH's own default for `MaxSessions`):
/// each is a relay, a recording and a channel on the target, so a vendor cannot open
/// them without bound. Further channels are refused with the reason on their stderr.
const MAX_CHANNELS: usize = 10;

/// Notices a session's relays act on: warnings, a technician's controls and notes, the
/// end. People make them, so a modest buffer never lags.
const NOTICE_QUEUE: usize = 64;

/// A technician's keystrokes on their way to the target; when full, the technician's
/// typing waits (never the vendor's session).
const TAKEOVER_QUEUE: usize = 64;

/// Runs one authenticated vendor connection to its end.
pub async fn run(
    gate: Arc<Gate>,
    handle: Handle,
    login: LoginName,
    key: String,
    peer: SocketAddr,
    mut events: mpsc::Receiver<GateEvent>,
    refusals: Arc<Refusals>,
) {
    let refuse = |reason: String| {
        tracing::info!(%peer, vendor = %login.vendor, target = ?login.target, "login refused: {reason}");
        gate.audit(AuditEvent::new("login.refused", format!("{peer}: {reason}")).vendor(&login.vendor));
        reason
    };
    let admission = match decide(&gate, &login) {
        Ok(admission) => admission,
        Err(refusal) => {
            refusal::show(handle, events, refuse(refusal.to_string())).await;
            return;
        }
    };
    // The session's folder, seal and first files are written (and synced) off the
    // runtime's worker, which meanwhile carries everyone else's traffic; so is the end.
    let meta = match tokio::task::block_in_place(|| SessionMeta::begin(&gate, &login.vendor, &admission, peer)) {
        Ok(meta) => meta,
        Err(err) => {
            let reason = refuse(format!("the session cannot be recorded, so it cannot start: {err}"));
            refusal::show(handle, events, reason).await;
            return;
        }
    };
    let booking = &admission.booking;
    let target = &admission.target;
    gate.audit(
        AuditEvent::new(
            "login.admit",
            format!(
                "{} from {peer} on {} as {} under {}, key {key}",
                login.vendor,
                target.name,
                admission.account,
                booking.label()
            ),
        )
        .vendor(&login.vendor)
        .booking(booking.id)
        .session(&meta.id),
    );
    let policy = &gate.config.policy;
    let (notices, _) = broadcast::channel(NOTICE_QUEUE);
    let (takeover, takeover_rx) = mpsc::channel(TAKEOVER_QUEUE);
    let initial = if policy.require_supervisor { Input::Unsupervised } else { Input::Open };
    let live = Arc::new(Live::new(
        meta.id.clone(),
        login.vendor.clone(),
        key,
        target.name.clone(),
        admission.account.clone(),
        booking,
        meta.started,
        notices.clone(),
        takeover,
        initial,
    ));
    if let Ok(mut table) = gate.live.lock() {
        table.insert(meta.id.clone(), live.clone());
    }
    refusals.attach(&live);

    let ended = async {
        let mut pending = VecDeque::new();
        if policy.require_supervisor {
            supervision::wait_for_technician(&gate, &live, &mut events, &mut pending, MAX_CHANNELS).await?;
        }
        let connecting = Upstream::connect(
            target,
            &admission.account,
            gate.keys.upstream.expose(),
            gate.config.upstream_connect_timeout,
        );
        let upstream = tokio::select! {
            upstream = connecting => upstream.map_err(|e| Refusal::Upstream(e.to_string()).to_string())?,
            _ = gate.shutdown.cancelled() => return Err("the bastion is shutting down".to_string()),
        };
        tracing::info!(session = %meta.id, %peer, vendor = %login.vendor, target = %target.name, account = %admission.account, booking = %booking.label(), "session started");
        gate.audit(
            AuditEvent::new("session.start", format!("upstream {} as {}", target.address, admission.account))
                .vendor(&login.vendor)
                .booking(booking.id)
                .session(&meta.id),
        );
        let banner = crate::plan::banner(booking, policy.timezone);
        let channels = Channels {
            gate: &gate,
            handle: &handle,
            upstream: &upstream,
            meta: &meta,
            live: &live,
            banner,
            refusals: &refusals,
        };
        let summaries = channels.relay(pending, events, takeover_rx).await;
        upstream.disconnect().await;
        Ok(summaries)
    };
    let ended = ended.await;
    // Watchers see the end, whatever caused it.
    live.end("the session has ended".into());
    let summaries = match ended {
        Ok(summaries) => summaries,
        Err(reason) => {
            // Never connected upstream: tell the vendor why on whatever channel is open.
            tracing::info!(session = %meta.id, "session not started: {reason}");
            gate.audit(
                AuditEvent::new("session.refused", reason.clone())
                    .vendor(&login.vendor)
                    .booking(booking.id)
                    .session(&meta.id),
            );
            if let Ok(mut table) = gate.live.lock() {
                table.remove(&meta.id);
            }
            tokio::task::block_in_place(|| meta.finish_as(&gate, &[], "refused"));
            // The pending channels were dropped with the future; the disconnect carries it.
            let _ = handle.disconnect(russh::Disconnect::ByApplication, reason, "en".into()).await;
            return;
        }
    };
    if let Ok(mut table) = gate.live.lock() {
        table.remove(&meta.id);
    }
    let _ = handle.disconnect(russh::Disconnect::ByApplication, "session ended".into(), "en".into()).await;
    // Refusals counted, not itemized, go into the audit trail before the session's end.
    refusals.flush();
    let exit = summaries.first().and_then(|s| s.exit_status).map(|s| s.to_string()).unwrap_or_else(|| "-".into());
    gate.audit(
        AuditEvent::new("session.end", format!("exit status {exit}"))
            .vendor(&login.vendor)
            .booking(booking.id)
            .session(&meta.id),
    );
    // Last: the folder gets its audit trail (this end included) and its final seal.
    tokio::task::block_in_place(|| meta.finish(&gate, &summaries));
    tracing::info!(session = %meta.id, "session ended");
    let output: u64 = summaries.iter().map(|s| s.bytes_out).sum();
    // What the session freed goes back to the system (after the indexing, if any).
    if output <= recording::replay::INDEX_ON_END_BYTES {
        recording::replay::index_later(&meta.folder, meta.sealer.index_key());
    } else {
        tokio::task::spawn_blocking(crate::memory::release_free);
    }
}

/// Reads the store and applies policy at the clock's now. A store error refuses: fail
/// closed.
fn decide(gate: &Gate, login: &LoginName) -> Result<Admission, Refusal> {
    let unavailable = |err: crate::store::StoreError| {
        tracing::error!("store unreadable, refusing login: {err}");
        Refusal::StoreUnavailable
    };
    let vendor = gate.store.vendor(&login.vendor).map_err(unavailable)?.ok_or(Refusal::StoreUnavailable)?;
    let targets = gate.store.target_list().map_err(unavailable)?;
    let bookings = gate.store.bookings(Some(&login.vendor), None).map_err(unavailable)?;
    policy::admit(&vendor, &targets, &bookings, login, gate.clock.now(), gate.config.policy.timezone)
}

/// What every channel relay of a session shares.
struct Channels<'a> {
    gate: &'a Arc<Gate>,
    handle: &'a Handle,
    upstream: &'a Upstream,
    meta: &'a SessionMeta,
    live: &'a Arc<Live>,
    banner: String,
    /// The connection's refusals, whose markers the relays record.
    refusals: &'a Arc<Refusals>,
}

impl Channels<'_> {
    /// Relays every channel the vendor opens (starting with `pending`) until the vendor
    /// disconnects or the session is ended; returns each channel's recording summary in
    /// channel order. The first channel also carries a technician's keystrokes.
    async fn relay(
        &self,
        mut pending: VecDeque<supervision::Opened>,
        mut events: mpsc::Receiver<GateEvent>,
        takeover: mpsc::Receiver<Bytes>,
    ) -> Vec<Summary> {
        let (gate, meta) = (self.gate, self.meta);
        let mut takeover = Some(takeover);
        let mut ended = self.live.notices.subscribe();
        let mut relays = JoinSet::new();
        // Channels being told why they were refused (each waits up to a few seconds for
        // the client's request); dropped with the session.
        let mut refusals = JoinSet::new();
        let input = relay::input_budget();
        let mut writers = Vec::new();
        let mut channels = 0usize;
        loop {
            // Channels already open get their relay even if the session has just been
            // ended: the relay tells the vendor why. No new ones are waited for.
            let supervision::Opened { channel, early } = match pending.pop_front() {
                Some(opened) => opened,
                None => {
                    if self.live.ended().is_some() {
                        break;
                    }
                    let event = tokio::select! {
                        event = events.recv() => event,
                        _ = gate.shutdown.cancelled() => {
                            self.live.end("the bastion is shutting down; the session has been ended".into());
                            break;
                        }
                        notice = ended.recv() => match notice {
                            Ok(Notice::End(_)) => break,
                            _ => continue,
                        },
                        // A relay ending on its own (e.g. a failed recording) keeps the others going.
                        Some(_) = relays.join_next(), if !relays.is_empty() => continue,
                    };
                    let Some(GateEvent::Channel(channel)) = event else { break };
                    supervision::Opened::new(channel)
                }
            };
            let id = channel.id();
            // Relays that ended on their own no longer count; refusals that are done go.
            while relays.try_join_next().is_some() {}
            while refusals.try_join_next().is_some() {}
            if relays.len() >= MAX_CHANNELS {
                tracing::warn!(session = %meta.id, "channel refused: {MAX_CHANNELS} already open");
                let reason = format!("this session already has {MAX_CHANNELS} channels open, the most it may have");
                self.live.channel_dropped(id);
                refusals.spawn(refusal::on_channel(channel, reason));
                continue;
            }
            // The target's channel first: one it refuses leaves no empty recording behind.
            let upstream_channel = match self.upstream.open_session().await {
                Ok(c) => c,
                Err(err) => {
                    tracing::warn!(session = %meta.id, "{err}");
                    self.live.channel_dropped(id);
                    refusals.spawn(refusal::on_channel(channel, err.to_string()));
                    continue;
                }
            };
            let path = recording::cast_path(&meta.folder, channels + 1);
            let title = format!("{}@{} ({})", meta.vendor, meta.target, meta.account);
            let (recorder, writer) =
                match Recorder::create(&path, title, meta.started, gate.config.recording, meta.sealer.clone()) {
                    Ok(pair) => pair,
                    Err(err) => {
                        tracing::error!(session = %meta.id, "{err}");
                        let _ = upstream_channel.close().await;
                        self.live.channel_dropped(id);
                        refusals.spawn(refusal::on_channel(channel, format!("the session cannot be recorded: {err}")));
                        continue;
                    }
                };
            channels += 1;
            writers.push(writer);
            let mirror = self.live.channel_started(id, channels);
            let relay = relay::ChannelRelay {
                vendor: channel,
                upstream: upstream_channel,
                server: self.handle.clone(),
                recorder,
                notices: self.live.notices.subscribe(),
                banner: self.banner.clone(),
                live: self.live.clone(),
                takeover: takeover.take(),
                input: input.clone(),
                gate: self.gate.clone(),
                number: channels,
                early,
                mirror,
                refusals: self.refusals.clone(),
            };
            relays.spawn(relay.run());
        }
        // The vendor is gone or the session was ended: relays finish (telling the vendor
        // why), then the writers close their recordings.
        if tokio::time::timeout(FINISH_GRACE, async { while relays.join_next().await.is_some() {} }).await.is_err() {
            tracing::warn!(session = %meta.id, "channel relays did not finish in time; closing recordings");
            relays.abort_all();
        }
        let mut summaries = Vec::new();
        for writer in writers {
            summaries
                .push(writer.await.unwrap_or_else(|e| Summary { error: Some(e.to_string()), ..Summary::default() }));
        }
        // An OpenSSH client exits on a disconnect at once, with what it has received but
        // not yet written (the reason the session ended, on its stderr) unwritten; once
        // its channels are closed it hangs up by itself, having written everything.
        refusal::hung_up(&mut events, HANGUP_GRACE).await;
        summaries
    }
}
