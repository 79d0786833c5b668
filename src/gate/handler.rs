//! The russh server handler of one connection. It authenticates the vendor's key, then
//! passes every session channel to the session task as a [`GateEvent`]. Channel requests
//! are answered here, at once and in order, because russh tracks one pending reply per
//! channel: what is allowed is decided by policy, what happens is up to the session.
//! Every refusal is evidence ([`Refusals`]): audited, marked on the session's timeline,
//! and told on the vendor's stderr where the protocol has no reply text for it.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use russh::keys::PublicKey;
use russh::server::{Auth, ChannelOpenHandle, Msg, PublicKeyOffer, Session, VerifiedPublicKey};
use russh::{Channel, ChannelId, ChannelOpenFailure};
use tokio::sync::{mpsc, oneshot};

use super::Gate;
use super::refusals::{Refusals, Refused, shown};
use super::startups::Startup;
use crate::names::LoginName;
use crate::policy::{env_allowed, file_transfer};

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

/// Reasons for refusals that have no reply text of their own (`-R`), waiting for the
/// next session channel's stderr. Only itemized refusals are queued, so this bounds a
/// client that forwards without ever opening a channel; beyond it, lines are dropped.
const MAX_DEFERRED_LINES: usize = 16;

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
    /// A vendor's refusals below the login, as evidence; shared with the session task.
    refusals: Option<Arc<Refusals>>,
    /// Why something without reply text was refused, for the next session channel's
    /// stderr (at most `MAX_DEFERRED_LINES`).
    deferred: Vec<String>,
    /// Refusals of a technician's console so far: told up to `MAX_DEFERRED_LINES`, like
    /// a vendor's itemized ones.
    console_refusals: AtomicUsize,
    /// Session channels opened on this connection so far (see
    /// [`MAX_CHANNELS_PER_CONNECTION`]).
    channels_opened: usize,
}

/// Session channels one connection may open in its life. russh 0.65 keeps a few KB for
/// every channel the bastion closes first (a command that ends, a refusal) until the
/// connection ends: a client opening channels by the thousand would grow the bastion
/// without bound. 4096 holds a long multiplexed session (one command every ten seconds
/// for a twelve-hour window) in at most some 12 MB; beyond it, channels are refused at
/// open (which keeps nothing) and the vendor logs in again to go on.
const MAX_CHANNELS_PER_CONNECTION: usize = 4096;

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
            refusals: None,
            deferred: Vec::new(),
            console_refusals: AtomicUsize::new(0),
            channels_opened: 0,
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

    /// Notes a refusal as evidence (vendors; a technician's console is only logged).
    /// Returns whether the client is to be told (itemized refusals only, so that a flood
    /// is not echoed either).
    fn refuse(&self, kind: Refused, detail: String) -> bool {
        match &self.refusals {
            Some(refusals) => refusals.refuse(kind, detail),
            None => {
                tracing::info!(peer = %self.peer, login = ?self.login, "refused: {detail}");
                self.console_refusals.fetch_add(1, Ordering::Relaxed) < MAX_DEFERRED_LINES
            }
        }
    }

    /// Refuses a channel the client opened; the open failure carries the reason.
    async fn refuse_channel(&self, kind: Refused, detail: String, reply: ChannelOpenHandle) {
        self.refuse(kind, detail);
        reply
            .reject(ChannelOpenFailure::Other {
                code: 1, // SSH_OPEN_ADMINISTRATIVELY_PROHIBITED
                reason: format!("chaperone: {} is not allowed", kind.describe()),
            })
            .await;
    }

    /// Refuses a global request (no reply text): the reason waits for a session channel.
    fn refuse_deferred(&mut self, kind: Refused, detail: String, line: String) {
        if self.refuse(kind, detail) && self.deferred.len() < MAX_DEFERRED_LINES {
            self.deferred.push(line);
        }
    }

    /// Refuses a channel request, with the reason on that channel's stderr.
    fn refuse_request(
        &self,
        channel: ChannelId,
        kind: Refused,
        detail: String,
        line: String,
        session: &mut Session,
    ) -> Result<(), russh::Error> {
        if self.refuse(kind, detail) {
            session.extended_data(channel, 1, format!("chaperone: {line}\r\n").into_bytes())?;
        }
        Ok(())
    }

    /// Refuses what a channel was to run (a transfer command, a subsystem). A failure reply
    /// would make OpenSSH exit before it prints the reason, so the request is accepted,
    /// the reason written on stderr and the channel closed without an exit status: the
    /// client shows the reason and exits 255, as for a refused login. Nothing runs: the
    /// relay does not pass the request on.
    fn refuse_start(
        &self,
        channel: ChannelId,
        kind: Refused,
        detail: String,
        line: String,
        session: &mut Session,
    ) -> Result<(), russh::Error> {
        session.channel_success(channel)?;
        self.refuse_request(channel, kind, detail, line, session)?;
        session.eof(channel)?;
        session.close(channel)
    }

    /// A shell or command starts on `channel`: reasons waiting for a channel go there.
    fn tell_deferred(&mut self, channel: ChannelId, session: &mut Session) -> Result<(), russh::Error> {
        for line in std::mem::take(&mut self.deferred) {
            session.extended_data(channel, 1, format!("chaperone: {line}\r\n").into_bytes())?;
        }
        Ok(())
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
            Login::Vendor(login) => {
                let refusals = Refusals::new(gate.clone(), login.vendor.clone(), peer);
                self.refusals = Some(refusals.clone());
                self.gate.tracker.spawn(crate::session::run(gate, handle, login, key, peer, rx, refusals))
            }
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
        if self.events.is_some() && self.channels_opened >= MAX_CHANNELS_PER_CONNECTION {
            let detail = format!("channel refused: this connection opened {MAX_CHANNELS_PER_CONNECTION} already");
            self.refuse(Refused::ChannelLimit, detail);
            let reason = format!(
                "chaperone: this connection has opened {MAX_CHANNELS_PER_CONNECTION} channels, the most one may; log in again to go on"
            );
            reply.reject(ChannelOpenFailure::Other { code: 1, reason }).await;
            return Ok(());
        }
        self.channels_opened += 1;
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
        host: &str,
        port: u32,
        orig: &str,
        orig_port: u32,
        reply: ChannelOpenHandle,
        _session: &mut Session,
    ) -> Result<(), Self::Error> {
        let detail = format!("port forwarding to {}:{port} refused (from {}:{orig_port})", shown(host), shown(orig));
        self.refuse_channel(Refused::PortForwarding, detail, reply).await;
        Ok(())
    }

    async fn channel_open_direct_streamlocal(
        &mut self,
        _channel: Channel<Msg>,
        path: &str,
        reply: ChannelOpenHandle,
        _session: &mut Session,
    ) -> Result<(), Self::Error> {
        let detail = format!("socket forwarding to {} refused", shown(path));
        self.refuse_channel(Refused::SocketForwarding, detail, reply).await;
        Ok(())
    }

    async fn channel_open_x11(
        &mut self,
        _channel: Channel<Msg>,
        addr: &str,
        port: u32,
        reply: ChannelOpenHandle,
        _session: &mut Session,
    ) -> Result<(), Self::Error> {
        let detail = format!("X11 channel from {}:{port} refused", shown(addr));
        self.refuse_channel(Refused::X11Forwarding, detail, reply).await;
        Ok(())
    }

    async fn tcpip_forward(
        &mut self,
        address: &str,
        port: &mut u32,
        _session: &mut Session,
    ) -> Result<bool, Self::Error> {
        let place = format!("{}:{port}", shown(address));
        let detail = format!("remote port forwarding of {place} refused");
        self.refuse_deferred(
            Refused::RemotePortForwarding,
            detail,
            format!("remote port forwarding ({place}) is not allowed"),
        );
        Ok(false)
    }

    async fn streamlocal_forward(&mut self, path: &str, _session: &mut Session) -> Result<bool, Self::Error> {
        let detail = format!("remote socket forwarding of {} refused", shown(path));
        let line = format!("remote socket forwarding ({}) is not allowed", shown(path));
        self.refuse_deferred(Refused::RemoteSocketForwarding, detail, line);
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
        self.tell_deferred(channel, session)?;
        session.channel_success(channel)
    }

    async fn exec_request(
        &mut self,
        channel: ChannelId,
        command: &[u8],
        session: &mut Session,
    ) -> Result<(), Self::Error> {
        self.tell_deferred(channel, session)?;
        if let Some(transfer) = file_transfer(command) {
            let detail = format!(
                "file transfer ({}) refused: command {}",
                transfer.name(),
                shown(&String::from_utf8_lossy(command))
            );
            let line = format!("file transfer ({}) is not allowed; use a shell or a command", transfer.name());
            return self.refuse_start(channel, Refused::FileTransfer, detail, line, session);
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
        if env_allowed(name) {
            return session.channel_success(channel);
        }
        let detail = format!("environment variable {} refused", shown(name));
        let line = format!("environment variable {} is not passed on (only LANG, LC_* and TERM are)", shown(name));
        self.refuse_request(channel, Refused::Environment, detail, line, session)?;
        session.channel_failure(channel)
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
        let detail = format!("subsystem {} refused", shown(name));
        let line = format!("subsystem {} (sftp, scp) is not allowed; use a shell or a command", shown(name));
        self.refuse_start(channel, Refused::Subsystem, detail, line, session)
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
        let line = "X11 forwarding is not allowed".to_string();
        self.refuse_request(channel, Refused::X11Forwarding, "X11 forwarding refused".into(), line, session)?;
        session.channel_failure(channel)
    }

    async fn agent_request(&mut self, channel: ChannelId, session: &mut Session) -> Result<bool, Self::Error> {
        let line = "agent forwarding is not allowed".to_string();
        self.refuse_request(channel, Refused::AgentForwarding, "agent forwarding refused".into(), line, session)?;
        Ok(false)
    }
}
