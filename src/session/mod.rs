//! One vendor connection from admission to its end. The task here owns the decision
//! (policy), the upstream connection, the recording folder and the channel relays; the
//! gate's handler only feeds it channels.
//!
//! - `relay`: one channel, both directions, recorded.
//! - `refusal`: showing a refused vendor why, then closing.
//! - `meta`: `session.json` and the store row.

mod meta;
mod refusal;
mod relay;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use russh::server::Handle;
use tokio::sync::mpsc;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use crate::gate::{Gate, GateEvent};
use crate::names::LoginName;
use crate::policy::{self, Admission, Refusal};
use crate::recording::{self, Recorder, Summary};
use crate::upstream::Upstream;

pub use meta::SessionMeta;

/// How long channel relays get to finish their recordings once the vendor has gone or
/// the bastion is shutting down.
const FINISH_GRACE: Duration = Duration::from_secs(10);

/// Runs one authenticated vendor connection to its end.
pub async fn run(
    gate: Arc<Gate>,
    handle: Handle,
    login: LoginName,
    peer: SocketAddr,
    events: mpsc::Receiver<GateEvent>,
) {
    let admission = match decide(&gate, &login) {
        Ok(admission) => admission,
        Err(refusal) => {
            tracing::info!(%peer, vendor = %login.vendor, target = ?login.target, "login refused: {refusal}");
            refusal::show(handle, events, refusal.to_string()).await;
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
            tracing::warn!(%peer, vendor = %login.vendor, target = %target.name, "login refused: {err}");
            refusal::show(
                handle,
                events,
                Refusal::Upstream(err.to_string()).to_string(),
            )
            .await;
            return;
        }
    };
    let meta = match SessionMeta::begin(&gate, &login.vendor, &admission, peer) {
        Ok(meta) => meta,
        Err(err) => {
            tracing::error!(%peer, vendor = %login.vendor, "login refused, no recording: {err}");
            let message = format!("the session cannot be recorded, so it cannot start: {err}");
            refusal::show(handle, events, message).await;
            upstream.disconnect().await;
            return;
        }
    };
    tracing::info!(session = %meta.id, %peer, vendor = %login.vendor, target = %target.name, account = %admission.account, "session started");
    let summaries = relay_channels(&gate, &handle, &upstream, &meta, events).await;
    upstream.disconnect().await;
    let _ = handle
        .disconnect(
            russh::Disconnect::ByApplication,
            "session ended".into(),
            "en".into(),
        )
        .await;
    meta.finish(&gate, &summaries);
    tracing::info!(session = %meta.id, "session ended");
}

/// Reads the store and applies policy. A store error refuses: fail closed.
fn decide(gate: &Gate, login: &LoginName) -> Result<Admission, Refusal> {
    let unavailable = |err: crate::store::StoreError| {
        tracing::error!("store unreadable, refusing login: {err}");
        Refusal::StoreUnavailable
    };
    let vendor = gate
        .store
        .vendor(&login.vendor)
        .map_err(unavailable)?
        .ok_or(Refusal::StoreUnavailable)?;
    let targets = gate.store.target_list().map_err(unavailable)?;
    policy::admit(&vendor, &targets, login)
}

/// Relays every channel the vendor opens until the vendor disconnects (or shutdown), and
/// returns each channel's recording summary in channel order.
async fn relay_channels(
    gate: &Gate,
    handle: &Handle,
    upstream: &Upstream,
    meta: &SessionMeta,
    mut events: mpsc::Receiver<GateEvent>,
) -> Vec<Summary> {
    let stop = CancellationToken::new();
    let mut relays = JoinSet::new();
    let mut writers = Vec::new();
    let mut channels = 0usize;
    loop {
        let event = tokio::select! {
            event = events.recv() => event,
            _ = gate.shutdown.cancelled() => {
                stop.cancel();
                break;
            }
            // A relay ending on its own (e.g. a failed recording) keeps the others going.
            Some(_) = relays.join_next(), if !relays.is_empty() => continue,
        };
        let Some(GateEvent::Channel(channel)) = event else {
            break;
        };
        let path = recording::cast_path(&meta.folder, channels + 1);
        let title = format!("{}@{} ({})", meta.vendor, meta.target, meta.account);
        let (recorder, writer) =
            match Recorder::create(&path, title, meta.started, gate.config.recording) {
                Ok(pair) => pair,
                Err(err) => {
                    tracing::error!(session = %meta.id, "{err}");
                    refusal::on_channel(channel, format!("the session cannot be recorded: {err}"))
                        .await;
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
            stop: stop.clone(),
        };
        relays.spawn(relay.run());
    }
    // The vendor is gone or the bastion is stopping: relays finish (on shutdown they tell
    // the vendor why), then the writers close their recordings.
    if tokio::time::timeout(FINISH_GRACE, async {
        while relays.join_next().await.is_some() {}
    })
    .await
    .is_err()
    {
        tracing::warn!(session = %meta.id, "channel relays did not finish in time; closing recordings");
        relays.abort_all();
    }
    let mut summaries = Vec::new();
    for writer in writers {
        summaries.push(writer.await.unwrap_or_else(|e| Summary {
            error: Some(e.to_string()),
            ..Summary::default()
        }));
    }
    summaries
}
