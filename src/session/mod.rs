//! One vendor connection from admission to its end. The task here owns the decision
//! (policy), the upstream connection, the recording folder and the channel relays; the
//! gate's handler only feeds it channels, and the scheduler only sends it notices
//! (warnings before the window's end, the end itself).
//!
//! - `relay`: one channel, both directions, recorded.
//! - `refusal`: showing a refused vendor why, then closing.
//! - `meta`: `session.json` and the store row.

mod meta;
mod refusal;
mod relay;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use russh::server::Handle;
use tokio::sync::{broadcast, mpsc};
use tokio::task::JoinSet;

use crate::audit::Event as AuditEvent;
use crate::gate::{Gate, GateEvent};
use crate::names::LoginName;
use crate::policy::{self, Admission, Refusal};
use crate::recording::{self, Recorder, Summary};
use crate::upstream::Upstream;

pub use meta::SessionMeta;

/// How long channel relays get to finish their recordings once the vendor has gone or
/// the session was ended.
const FINISH_GRACE: Duration = Duration::from_secs(10);

/// Notices a session's relays act on. A handful per session at most (three warnings, one
/// end), so a small broadcast buffer never lags.
const NOTICE_QUEUE: usize = 16;

/// What the scheduler (or shutdown) tells a running session.
#[derive(Debug, Clone)]
pub enum Notice {
    /// Shown to the vendor and recorded as a marker; the session goes on.
    Warn(String),
    /// Shown, recorded, and the session is closed.
    End(String),
}

/// A running session as the scheduler sees it.
#[derive(Debug)]
pub struct Live {
    pub booking: i64,
    pub vendor: String,
    pub notices: broadcast::Sender<Notice>,
    /// Minutes-before-end warnings already given.
    pub warned: Vec<i64>,
    /// The end has been announced; the session is closing.
    pub ending: bool,
}

/// Running sessions by id.
pub type LiveSessions = Mutex<HashMap<String, Live>>;

/// Runs one authenticated vendor connection to its end.
pub async fn run(
    gate: Arc<Gate>,
    handle: Handle,
    login: LoginName,
    peer: SocketAddr,
    events: mpsc::Receiver<GateEvent>,
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
    let target = &admission.target;
    let connecting = Upstream::connect(
        target,
        &admission.account,
        gate.keys.upstream.expose(),
        gate.config.upstream_connect_timeout,
    );
    let upstream = tokio::select! {
        upstream = connecting => upstream,
        _ = gate.shutdown.cancelled() => Err(crate::upstream::UpstreamError::Protocol {
            target: target.name.clone(),
            message: "the bastion is shutting down".into(),
        }),
    };
    let upstream = match upstream {
        Ok(upstream) => upstream,
        Err(err) => {
            refusal::show(handle, events, refuse(Refusal::Upstream(err.to_string()).to_string())).await;
            return;
        }
    };
    let meta = match SessionMeta::begin(&gate, &login.vendor, &admission, peer) {
        Ok(meta) => meta,
        Err(err) => {
            let reason = refuse(format!("the session cannot be recorded, so it cannot start: {err}"));
            refusal::show(handle, events, reason).await;
            upstream.disconnect().await;
            return;
        }
    };
    let booking = &admission.booking;
    tracing::info!(session = %meta.id, %peer, vendor = %login.vendor, target = %target.name, account = %admission.account, booking = %booking.label(), "session started");
    gate.audit(
        AuditEvent::new(
            "session.start",
            format!(
                "{} from {peer} on {} as {} under {}",
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
    let (notices, _) = broadcast::channel(NOTICE_QUEUE);
    if let Ok(mut live) = gate.live.lock() {
        let entry = Live {
            booking: booking.id,
            vendor: login.vendor.clone(),
            notices: notices.clone(),
            warned: Vec::new(),
            ending: false,
        };
        live.insert(meta.id.clone(), entry);
    }
    let banner = crate::plan::banner(booking, gate.config.policy.timezone);
    let summaries = relay_channels(&gate, &handle, &upstream, &meta, &notices, banner, events).await;
    if let Ok(mut live) = gate.live.lock() {
        live.remove(&meta.id);
    }
    upstream.disconnect().await;
    let _ = handle.disconnect(russh::Disconnect::ByApplication, "session ended".into(), "en".into()).await;
    meta.finish(&gate, &summaries);
    let exit = summaries.first().and_then(|s| s.exit_status).map(|s| s.to_string()).unwrap_or_else(|| "-".into());
    gate.audit(
        AuditEvent::new("session.end", format!("exit status {exit}"))
            .vendor(&login.vendor)
            .booking(booking.id)
            .session(&meta.id),
    );
    tracing::info!(session = %meta.id, "session ended");
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

/// Relays every channel the vendor opens until the vendor disconnects or the session is
/// ended, and returns each channel's recording summary in channel order.
async fn relay_channels(
    gate: &Gate,
    handle: &Handle,
    upstream: &Upstream,
    meta: &SessionMeta,
    notices: &broadcast::Sender<Notice>,
    banner: String,
    mut events: mpsc::Receiver<GateEvent>,
) -> Vec<Summary> {
    let mut ended = notices.subscribe();
    let mut relays = JoinSet::new();
    let mut writers = Vec::new();
    let mut channels = 0usize;
    loop {
        let event = tokio::select! {
            event = events.recv() => event,
            _ = gate.shutdown.cancelled() => {
                let _ = notices.send(Notice::End("the bastion is shutting down; the session has been ended".into()));
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
        let path = recording::cast_path(&meta.folder, channels + 1);
        let title = format!("{}@{} ({})", meta.vendor, meta.target, meta.account);
        let (recorder, writer) = match Recorder::create(&path, title, meta.started, gate.config.recording) {
            Ok(pair) => pair,
            Err(err) => {
                tracing::error!(session = %meta.id, "{err}");
                refusal::on_channel(channel, format!("the session cannot be recorded: {err}")).await;
                continue;
            }
        };
        channels += 1;
        writers.push(writer);
        let upstream_channel = match upstream.open_session().await {
            Ok(c) => c,
            Err(err) => {
                tracing::warn!(session = %meta.id, "{err}");
                refusal::on_channel(channel, err.to_string()).await;
                continue;
            }
        };
        let relay = relay::ChannelRelay {
            vendor: channel,
            upstream: upstream_channel,
            server: handle.clone(),
            recorder,
            notices: notices.subscribe(),
            banner: banner.clone(),
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
        summaries.push(writer.await.unwrap_or_else(|e| Summary { error: Some(e.to_string()), ..Summary::default() }));
    }
    summaries
}
