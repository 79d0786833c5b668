//! Telling a refused vendor why. OpenSSH shows what arrives on a channel's stderr, so the
//! reason is written there once the client asks for a shell or command, and the channel
//! closes without an exit status (ssh then exits 255, as for its own connection errors).
//! A client that opens no channel (`ssh -N`) gets the reason in the disconnect message.

use std::time::Duration;

use russh::server::{Handle, Msg};
use russh::{Channel, ChannelMsg};
use tokio::sync::mpsc;

use crate::gate::GateEvent;

/// How long a refused client may take to ask for a channel before it is disconnected.
const WAIT_FOR_CHANNEL: Duration = Duration::from_secs(10);

/// Shows `reason` on the first channel (or in the disconnect) and closes the connection.
pub async fn show(handle: Handle, mut events: mpsc::Receiver<GateEvent>, reason: String) {
    if let Ok(Some(GateEvent::Channel(channel))) = tokio::time::timeout(WAIT_FOR_CHANNEL, events.recv()).await {
        on_channel(channel, reason.clone()).await;
        // The client saw the reason and now hangs up by itself; a disconnect message on
        // top would print the reason twice.
        hung_up(&mut events, WAIT_FOR_CHANNEL).await;
    }
    let _ = handle.disconnect(russh::Disconnect::ByApplication, reason, "en".into()).await;
}

/// Waits up to `within` for the vendor's client to close the connection by itself (the
/// gate's events end with it); new channels meanwhile are dropped.
pub async fn hung_up(events: &mut mpsc::Receiver<GateEvent>, within: Duration) {
    let _ = tokio::time::timeout(within, async { while events.recv().await.is_some() {} }).await;
}

/// Writes `reason` on the channel's stderr when the client has set the channel up, then
/// closes it.
pub async fn on_channel(mut channel: Channel<Msg>, reason: String) {
    let wait_for_request = async {
        while let Some(msg) = channel.wait().await {
            if matches!(
                msg,
                ChannelMsg::RequestShell { .. } | ChannelMsg::Exec { .. } | ChannelMsg::RequestSubsystem { .. }
            ) {
                return true;
            }
        }
        false
    };
    if tokio::time::timeout(WAIT_FOR_CHANNEL, wait_for_request).await.unwrap_or(false) {
        let line = format!("chaperone: {reason}\r\n");
        let _ = channel.extended_data(1, line.as_bytes()).await;
        let _ = channel.eof().await;
    }
    let _ = channel.close().await;
}
