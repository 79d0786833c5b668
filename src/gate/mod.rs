//! The gate: the SSH server everyone connects to. It authenticates vendors by public key
//! and hands each authenticated connection to a [`crate::session`] task. The russh
//! handler ([`handler::GateHandler`]) stays thin: it answers what russh needs answered at
//! once and passes channels on; the session task decides everything else. Connections
//! that have not logged in yet are bounded in number (`startups`) and in time (the
//! login grace time): they cannot hold the gate's sockets away from those who log in.
//! What a logged-in vendor is refused below the login (forwarding, agent, X11, variables,
//! subsystems, file transfer) is evidence (`refusals`): audited, marked, told.

mod failures;
mod handler;
mod refusals;
mod startups;

use std::net::SocketAddr;
use std::os::fd::AsFd;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpListener;
use tokio::sync::oneshot;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::clock::Clock;
use crate::config::Config;
use crate::keys::Keys;
use crate::session::LiveSessions;
use crate::store::Store;

pub use failures::FailedLogins;
pub use handler::GateEvent;
pub use refusals::{Refusals, Refused, shown};
pub use startups::Startups;

/// Everything a connection needs, shared by all of them.
#[derive(Debug)]
pub struct Gate {
    pub config: Config,
    pub store: Arc<Store>,
    pub keys: Arc<Keys>,
    /// Cancelled on SIGTERM/SIGINT: stop accepting, end sessions, finish recordings.
    pub shutdown: CancellationToken,
    /// Every connection and session task, so shutdown can wait for them.
    pub tracker: TaskTracker,
    /// What every rule reads as "now".
    pub clock: Clock,
    /// Running sessions, so the scheduler can warn and end them.
    pub live: LiveSessions,
    /// Connections not logged in yet (bounded by `config.logins`).
    pub startups: Arc<Startups>,
    /// Failed logins per address, itemized in the audit log up to a rate.
    pub failed_logins: FailedLogins,
    /// Technicians' console connections, so that revoked access is cut off.
    pub consoles: crate::console::Consoles,
}

impl Gate {
    /// Appends to the audit log; a failure is logged (the event already happened).
    pub fn audit(&self, event: crate::audit::Event) {
        if let Err(err) = self.store.audit(self.clock.now(), &event) {
            tracing::error!("cannot write the audit log ({}): {err}", event.kind);
        }
    }

    /// Audits a failed login from `address`: itemized up to a rate per address, counted
    /// beyond it (see [`FailedLogins`]).
    pub fn audit_failed_login(&self, address: std::net::IpAddr, event: crate::audit::Event) {
        let (itemize, closed) = self.failed_logins.note(address, std::time::Instant::now(), self.clock.now());
        if let Some(counted) = closed {
            self.audit(crate::audit::Event::new("login.refused", counted.detail()));
        }
        if itemize {
            self.audit(event);
        }
    }

    /// Audits the counts of failed logins whose minute is over (`all`: every count, at
    /// shutdown). The scheduler's tick.
    pub fn audit_counted_failures(&self, all: bool) {
        for counted in self.failed_logins.sweep(std::time::Instant::now(), all) {
            self.audit(crate::audit::Event::new("login.refused", counted.detail()));
        }
    }
}

impl Gate {
    /// Accepts connections until shutdown.
    pub async fn serve(self: Arc<Self>, listener: TcpListener) {
        let config = Arc::new(self.server_config());
        loop {
            let accepted = tokio::select! {
                _ = self.shutdown.cancelled() => break,
                accepted = listener.accept() => accepted,
            };
            let (socket, peer) = match accepted {
                Ok(pair) => pair,
                Err(err) => {
                    // Usually EMFILE or a connection reset before accept: keep serving.
                    tracing::warn!("accept failed: {err}");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            };
            let _ = socket.set_nodelay(true);
            let gate = self.clone();
            let config = config.clone();
            self.tracker.spawn(async move { gate.connection(config, socket, peer).await });
        }
    }

    /// One connection: logged in within the grace time, or closed.
    async fn connection(
        self: Arc<Self>,
        config: Arc<russh::server::Config>,
        socket: tokio::net::TcpStream,
        peer: SocketAddr,
    ) {
        // Too many connections not logged in yet: this one is closed before a word.
        let Some(startup) = self.startups.enter(peer.ip()) else { return };
        let grace = self.config.logins.grace;
        let deadline = tokio::time::Instant::now() + grace;
        let (logged_in, login) = oneshot::channel();
        // The same socket, to shut it if the client has not logged in in time. Without it
        // (no descriptor left), the connection is not taken: it could not be cut off.
        let Ok(cutoff) = socket.as_fd().try_clone_to_owned().map(std::net::TcpStream::from) else { return };
        let handler = handler::GateHandler::new(self.clone(), peer, startup, logged_in);
        // Until the client's version line, russh has not started the connection's task.
        let closed = || tracing::info!(%peer, "no login within {}s: connection closed", grace.as_secs());
        let running = match tokio::time::timeout_at(deadline, russh::server::run_stream(config, socket, handler)).await
        {
            Ok(Ok(running)) => running,
            Ok(Err(err)) => {
                tracing::debug!(%peer, "handshake failed: {err}");
                return;
            }
            Err(_) => {
                closed();
                return;
            }
        };
        let mut running = std::pin::pin!(running);
        tokio::select! {
            ended = &mut running => return connection_ended(peer, ended),
            // Logged in (or the handler is gone with the connection): it runs to its end.
            login = tokio::time::timeout_at(deadline, login) => if login.is_err() {
                closed();
                // russh's task may be waiting in the key exchange, where it reads nothing
                // else: the socket itself is shut, and the task ends on it.
                let _ = cutoff.shutdown(std::net::Shutdown::Both);
            },
        }
        drop(cutoff);
        connection_ended(peer, running.await);
    }

    fn server_config(&self) -> russh::server::Config {
        let mut methods = russh::MethodSet::empty();
        methods.push(russh::MethodKind::PublicKey);
        russh::server::Config {
            keys: vec![self.keys.host.expose().clone()],
            methods,
            // A failed key costs the client a pause, not the bastion; the first
            // ("none") probe of every OpenSSH client is answered at once.
            auth_rejection_time: Duration::from_millis(300),
            auth_rejection_time_initial: Some(Duration::ZERO),
            max_auth_attempts: 6,
            // A vendor may sit at a quiet shell for long; dead peers are found by keepalives.
            inactivity_timeout: None,
            keepalive_interval: Some(Duration::from_secs(30)),
            keepalive_max: 4,
            nodelay: true,
            preferred: crate::ssh::gate_preferred(),
            ..Default::default()
        }
    }
}

fn connection_ended(peer: SocketAddr, ended: Result<(), russh::Error>) {
    if let Err(err) = ended {
        tracing::debug!(%peer, "connection ended: {err}");
    }
}
