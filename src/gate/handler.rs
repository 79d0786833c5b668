//! The russh server handler of one connection. It authenticates the vendor's key, then
//! passes every session channel to the session task as a [`GateEvent`]. Channel requests
//! are answered here, at once and in order, because russh tracks one pending reply per
//! channel: what is allowed is decided by policy, what happens is up to the session.

use std::net::SocketAddr;
use std::sync::Arc;

use russh::keys::PublicKey;
use russh::server::{Auth, ChannelOpenHandle, Msg, PublicKeyOffer, Session, VerifiedPublicKey};
use russh::{Channel, ChannelId, ChannelOpenFailure};
use tokio::sync::{mpsc, oneshot};

use super::Gate;
use super::startups::Startup;
use crate::names::LoginName;
use crate::policy::{env_allowed, is_file_transfer};

/// What the handler tells the session task.
#[derive(Debug)]
pub enum GateEvent {
    /// The vendor opened a session channel (already accepted); the session relays it.
    Channel(Channel<Msg>),
}

/// Who logged in.
#[derive(Debug, Clone)]
enum Login {
    /// A vendor, to be admitted (or not) to a target.
    Vendor(LoginName),
    /// A technician, for the console; never reaches a target.
    Technician(String),
}

/// Channels opened but not yet taken up by the session task. Small: a client opens a
/// handful; when full, the connection waits (backpressure), nothing is lost.
const EVENT_QUEUE: usize = 16;

pub struct GateHandler {
    gate: Arc<Gate>,
    peer: SocketAddr,
    /// The login whose key was verified, and that key's fingerprint.
    login: Option<(Login, String)>,
    /// An authentication refusal was audited already (clients offer several keys).
    refusal_audited: bool,
    events: Option<mpsc::Sender<GateEvent>>,
    /// The connection's place among those not logged in yet, given back at login.
    startup: Option<Startup>,
    /// Told at login (the gate closes connections that take too long).
    logged_in: Option<oneshot::Sender<()>>,
}

impl GateHandler {
    pub fn new(gate: Arc<Gate>, peer: SocketAddr, startup: Startup, logged_in: oneshot::Sender<()>) -> GateHandler {
        GateHandler {
            gate,
            peer,
            login: None,
            refusal_audited: false,
            events: None,
            startup: Some(startup),
            logged_in: Some(logged_in),
        }
    }

    /// Who `user` with `key` is: an enabled technician (the bare name), or a registered
    /// vendor. Disabled vendors pass here (they proved who they are) and are refused with a
    /// message after. A store error refuses: fail closed.
    fn key_matches(&self, user: &str, key: &PublicKey) -> Option<Login> {
        crate::keys::check_strength(key).ok()?;
        let login = LoginName::parse(user)?;
        let store = &self.gate.store;
        if login.target.is_none() && store.tech_has_key(&login.vendor, key).ok()? {
            Some(Login::Technician(login.vendor))
        } else {
            store.vendor_has_key(&login.vendor, key).map(|ok| ok.then_some(Login::Vendor(login))).unwrap_or_else(
                |err| {
                    tracing::error!(peer = %self.peer, "store unreadable during login, refusing: {err}");
                    None
                },
            )
        }
    }

    fn audit_refusal(&mut self, user: &str, key: &PublicKey) {
        if self.refusal_audited {
            return;
        }
        self.refusal_audited = true;
        let shown: String = user.chars().take(64).collect();
        let detail = format!(
            "authentication refused from {}: user {shown:?}, key {} {}",
            self.peer,
            crate::keys::fingerprint(key),
            crate::keys::refusal(key)
        );
        tracing::info!("{detail}");
        let mut event = crate::audit::Event::new("login.refused", detail);
        if let Some(login) = LoginName::parse(user) {
            event = event.vendor(login.vendor);
        }
        self.gate.audit_failed_login(self.peer.ip(), event);
    }

    async fn refuse_forwarding(&self, kind: &str, reply: ChannelOpenHandle) {
        tracing::info!(peer = %self.peer, login = ?self.login, "refused {kind}");
        reply
            .reject(ChannelOpenFailure::Other {
                code: 1, // SSH_OPEN_ADMINISTRATIVELY_PROHIBITED
                reason: format!("chaperone: {kind} is not allowed"),
            })
            .await;
    }
}

impl russh::server::Handler for GateHandler {
    type Error = russh::Error;

    async fn auth_publickey_offered(&mut self, user: &str, offer: PublicKeyOffer<'_>) -> Result<Auth, Self::Error> {
        Ok(match self.key_matches(user, offer.public_key) {
            Some(_) => Auth::Accept,
            None => {
                self.audit_refusal(user, offer.public_key);
                Auth::reject()
            }
        })
    }

    async fn auth_publickey(&mut self, user: &str, key: VerifiedPublicKey<'_>) -> Result<Auth, Self::Error> {
        match self.key_matches(user, key.public_key) {
            Some(login) => {
                self.login = Some((login, crate::keys::fingerprint(key.public_key)));
                Ok(Auth::Accept)
            }
            None => {
                self.audit_refusal(user, key.public_key);
                Ok(Auth::reject())
            }
        }
    }

    async fn auth_succeeded(&mut self, session: &mut Session) -> Result<(), Self::Error> {
        let Some((login, key)) = self.login.clone() else {
            return Err(russh::Error::NotAuthenticated);
        };
        self.startup = None;
        if let Some(logged_in) = self.logged_in.take() {
            let _ = logged_in.send(());
        }
        let (tx, rx) = mpsc::channel(EVENT_QUEUE);
        self.events = Some(tx);
        let gate = self.gate.clone();
        let handle = session.handle();
        let peer = self.peer;
        match login {
            Login::Vendor(login) => self.gate.tracker.spawn(crate::session::run(gate, handle, login, key, peer, rx)),
            Login::Technician(tech) => self.gate.tracker.spawn(crate::console::run(gate, handle, tech, key, peer, rx)),
        };
        Ok(())
    }

    async fn channel_open_session(
        &mut self,
        channel: Channel<Msg>,
        reply: ChannelOpenHandle,
        _session: &mut Session,
    ) -> Result<(), Self::Error> {
        match &self.events {
            Some(events) => {
                reply.accept().await;
                // The session task reads every channel it is given; if it is gone, the
                // channel is dropped and the client sees it close.
                let _ = events.send(GateEvent::Channel(channel)).await;
            }
            None => reply.reject(ChannelOpenFailure::AdministrativelyProhibited).await,
        }
        Ok(())
    }

    async fn channel_open_direct_tcpip(
        &mut self,
        _channel: Channel<Msg>,
        _host: &str,
        _port: u32,
        _orig: &str,
        _orig_port: u32,
        reply: ChannelOpenHandle,
        _session: &mut Session,
    ) -> Result<(), Self::Error> {
        self.refuse_forwarding("port forwarding", reply).await;
        Ok(())
    }

    async fn channel_open_direct_streamlocal(
        &mut self,
        _channel: Channel<Msg>,
        _path: &str,
        reply: ChannelOpenHandle,
        _session: &mut Session,
    ) -> Result<(), Self::Error> {
        self.refuse_forwarding("socket forwarding", reply).await;
        Ok(())
    }

    async fn channel_open_x11(
        &mut self,
        _channel: Channel<Msg>,
        _addr: &str,
        _port: u32,
        reply: ChannelOpenHandle,
        _session: &mut Session,
    ) -> Result<(), Self::Error> {
        self.refuse_forwarding("X11 forwarding", reply).await;
        Ok(())
    }

    async fn tcpip_forward(
        &mut self,
        address: &str,
        port: &mut u32,
        _session: &mut Session,
    ) -> Result<bool, Self::Error> {
        tracing::info!(peer = %self.peer, "refused remote port forwarding of {address}:{port}");
        Ok(false)
    }

    async fn streamlocal_forward(&mut self, path: &str, _session: &mut Session) -> Result<bool, Self::Error> {
        tracing::info!(peer = %self.peer, "refused remote socket forwarding of {path}");
        Ok(false)
    }

    #[allow(clippy::too_many_arguments)]
    async fn pty_request(
        &mut self,
        channel: ChannelId,
        _term: &str,
        _cols: u32,
        _rows: u32,
        _pix_width: u32,
        _pix_height: u32,
        _modes: &[(russh::Pty, u32)],
        session: &mut Session,
    ) -> Result<(), Self::Error> {
        session.channel_success(channel)
    }

    async fn shell_request(&mut self, channel: ChannelId, session: &mut Session) -> Result<(), Self::Error> {
        session.channel_success(channel)
    }

    async fn exec_request(
        &mut self,
        channel: ChannelId,
        command: &[u8],
        session: &mut Session,
    ) -> Result<(), Self::Error> {
        if is_file_transfer(command) {
            tracing::info!(peer = %self.peer, "refused scp file transfer");
            let message = "chaperone: file transfer (scp, sftp) is not allowed; use a shell or a command\r\n";
            session.extended_data(channel, 1, message.as_bytes().to_vec())?;
            return session.channel_failure(channel);
        }
        session.channel_success(channel)
    }

    async fn env_request(
        &mut self,
        channel: ChannelId,
        name: &str,
        _value: &str,
        session: &mut Session,
    ) -> Result<(), Self::Error> {
        if env_allowed(name) { session.channel_success(channel) } else { session.channel_failure(channel) }
    }

    async fn window_change_request(
        &mut self,
        channel: ChannelId,
        _cols: u32,
        _rows: u32,
        _pix_width: u32,
        _pix_height: u32,
        session: &mut Session,
    ) -> Result<(), Self::Error> {
        session.channel_success(channel)
    }

    async fn subsystem_request(
        &mut self,
        channel: ChannelId,
        name: &str,
        session: &mut Session,
    ) -> Result<(), Self::Error> {
        tracing::info!(peer = %self.peer, "refused subsystem {name:?}");
        let message = format!("chaperone: subsystem {name:?} (sftp, scp) is not allowed; use a shell or a command\r\n");
        session.extended_data(channel, 1, message.into_bytes())?;
        session.channel_failure(channel)
    }

    async fn x11_request(
        &mut self,
        channel: ChannelId,
        _single: bool,
        _protocol: &str,
        _cookie: &str,
        _screen: u32,
        session: &mut Session,
    ) -> Result<(), Self::Error> {
        session.channel_failure(channel)
    }

    async fn agent_request(&mut self, _channel: ChannelId, _session: &mut Session) -> Result<bool, Self::Error> {
        Ok(false)
    }
}
