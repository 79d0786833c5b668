//! The SSH client facing a target. The target's host key is pinned at registration and
//! compared on every connection; there is no trust-on-first-use. chaperone logs in with
//! its upstream key as the admitted account.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use russh::client;
use russh::keys::{PrivateKey, PrivateKeyWithHashAlg, PublicKey, PublicKeyOrCertificate};

use crate::keys::fingerprint;
use crate::store::Target;

#[derive(Debug, thiserror::Error)]
pub enum UpstreamError {
    #[error("target {target:?}: host key mismatch: expected {expected}, got {got}")]
    HostKeyMismatch { target: String, expected: String, got: String },
    #[error("target {target:?} ({address}) is unreachable: {message}")]
    Unreachable { target: String, address: String, message: String },
    #[error("target {target:?} refused chaperone's login as {account:?}")]
    LoginRefused { target: String, account: String },
    #[error("target {target:?}: pinned host key is unusable: {message}")]
    BadPin { target: String, message: String },
    #[error("target {target:?}: {message}")]
    Protocol { target: String, message: String },
}

/// Checks the server's key against the pinned one and remembers what it saw, so that a
/// mismatch can be reported with both fingerprints.
struct Pinned {
    expected: PublicKey,
    seen: Arc<Mutex<Option<PublicKey>>>,
}

impl client::Handler for Pinned {
    type Error = russh::Error;

    async fn check_server_key(&mut self, offered: &PublicKeyOrCertificate) -> Result<bool, Self::Error> {
        let PublicKeyOrCertificate::PublicKey { key, .. } = offered else {
            return Ok(false);
        };
        if let Ok(mut seen) = self.seen.lock() {
            *seen = Some(key.clone());
        }
        Ok(key.key_data() == self.expected.key_data())
    }
}

/// An authenticated connection to a target; channels are opened on it per vendor channel.
pub struct Upstream {
    handle: client::Handle<Pinned>,
    target: String,
}

/// The receive buffer of a connection to a target, where the system allows it (see
/// [`fixed_receive_buffer`]).
const RECEIVE_BUFFER: u32 = 4 * 1024 * 1024;

/// A fixed receive buffer for connections to targets, instead of Linux's autotuning, which
/// grows a connection's window only as fast as the application has been reading it. When
/// many floods share the bastion's CPU, a session whose relay happened to read slowly for
/// a moment got a small window, so its target sent less, so it read less: measured with
/// twenty `cat`s at once, one or two sessions crawled at ~1 MB/s for their whole run while
/// the others shared the rest (the target's sshd "rwnd-limited" 90 % of the time). With a
/// fixed 4 MiB, every session's target may keep sending, and the relays share the CPU
/// evenly. Only where `net.core.rmem_max` allows 4 MiB: below it the kernel would cap the
/// buffer there, under what autotuning reaches by itself (up to `tcp_rmem`'s maximum).
pub fn fixed_receive_buffer() -> Option<u32> {
    static SIZE: std::sync::OnceLock<Option<u32>> = std::sync::OnceLock::new();
    *SIZE.get_or_init(|| {
        let max: u64 = std::fs::read_to_string("/proc/sys/net/core/rmem_max").ok()?.trim().parse().ok()?;
        (max >= u64::from(RECEIVE_BUFFER)).then_some(RECEIVE_BUFFER)
    })
}

impl Upstream {
    pub async fn connect(
        target: &Target,
        account: &str,
        key: &PrivateKey,
        timeout: Duration,
    ) -> Result<Upstream, UpstreamError> {
        let expected = crate::keys::parse_public_key(&target.host_key)
            .map_err(|e| UpstreamError::BadPin { target: target.name.clone(), message: e.0 })?;
        let unreachable = |message: String| UpstreamError::Unreachable {
            target: target.name.clone(),
            address: target.address.clone(),
            message,
        };
        let seen = Arc::new(Mutex::new(None));
        let handler = Pinned { expected: expected.clone(), seen: seen.clone() };
        let config = Arc::new(client_config());

        let connecting = async {
            let addr = resolve(&target.address).await.map_err(|e| unreachable(e.to_string()))?;
            let socket = if addr.is_ipv4() { tokio::net::TcpSocket::new_v4() } else { tokio::net::TcpSocket::new_v6() }
                .map_err(|e| unreachable(e.to_string()))?;
            if let Some(size) = fixed_receive_buffer() {
                let _ = socket.set_recv_buffer_size(size);
            }
            let socket = socket.connect(addr).await.map_err(|e| unreachable(e.to_string()))?;
            let _ = socket.set_nodelay(true);
            client::connect_stream(config, socket, handler).await.map_err(|err| {
                let got = seen.lock().ok().and_then(|s| s.clone());
                match (err, got) {
                    (russh::Error::UnknownKey, Some(got)) => UpstreamError::HostKeyMismatch {
                        target: target.name.clone(),
                        expected: fingerprint(&expected),
                        got: fingerprint(&got),
                    },
                    (err, _) => unreachable(err.to_string()),
                }
            })
        };
        let mut handle = tokio::time::timeout(timeout, connecting)
            .await
            .map_err(|_| unreachable(format!("no SSH handshake within {}s", timeout.as_secs())))??;

        let key = PrivateKeyWithHashAlg::new(Arc::new(key.clone()), None);
        let auth = tokio::time::timeout(timeout, handle.authenticate_publickey(account, key))
            .await
            .map_err(|_| unreachable(format!("no login answer within {}s", timeout.as_secs())))?
            .map_err(|e| UpstreamError::Protocol { target: target.name.clone(), message: e.to_string() })?;
        if !auth.success() {
            return Err(UpstreamError::LoginRefused { target: target.name.clone(), account: account.to_string() });
        }
        Ok(Upstream { handle, target: target.name.clone() })
    }

    /// Opens a session channel on the target.
    pub async fn open_session(&self) -> Result<russh::Channel<client::Msg>, UpstreamError> {
        self.handle.channel_open_session().await.map_err(|e| UpstreamError::Protocol {
            target: self.target.clone(),
            message: format!("cannot open a channel: {e}"),
        })
    }

    pub async fn disconnect(&self) {
        let _ = self.handle.disconnect(russh::Disconnect::ByApplication, "session ended", "en").await;
    }
}

/// Client settings for relaying: large windows so the target is never waiting on us for
/// window adjustments, and Nagle off so keystrokes echo without delay.
fn client_config() -> client::Config {
    client::Config {
        window_size: 8 * 1024 * 1024,
        maximum_packet_size: 32 * 1024,
        inactivity_timeout: None,
        keepalive_interval: Some(Duration::from_secs(30)),
        keepalive_max: 4,
        nodelay: true,
        preferred: crate::ssh::upstream_preferred(),
        ..Default::default()
    }
}

async fn resolve(address: &str) -> std::io::Result<SocketAddr> {
    tokio::net::lookup_host(address)
        .await?
        .next()
        .ok_or_else(|| std::io::Error::new(std::io::ErrorKind::NotFound, "address resolves to nothing"))
}
