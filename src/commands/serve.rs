//! `serve`: open the store and keys, bind, print what an operator needs, run the gate
//! until SIGTERM/SIGINT, then end sessions and finish recordings before exiting 0.

use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::cli::ServeArgs;
use crate::config::Config;
use crate::gate::Gate;
use crate::keys::Keys;

/// How long sessions get to tell their vendors and close their recordings on shutdown.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(15);

pub fn run(mut config: Config, args: ServeArgs) -> anyhow::Result<()> {
    if let Some(listen) = args.listen {
        config.listen = listen;
    }
    crate::memory::configure();
    let runtime =
        tokio::runtime::Builder::new_multi_thread().worker_threads(config.worker_threads).enable_all().build()?;
    runtime.block_on(serve(config))
}

async fn serve(config: Config) -> anyhow::Result<()> {
    // Installed before anything is announced, so a signal right after start is handled.
    let mut signals = Signals::new()?;
    let keys = Keys::load_or_create(&config.keys_dir())?;
    let store = super::open_store(&config)?;
    std::fs::create_dir_all(&config.recordings_dir)
        .with_context(|| format!("cannot create recordings folder {}", config.recordings_dir.display()))?;
    let listener = tokio::net::TcpListener::bind(config.listen)
        .await
        .with_context(|| format!("cannot listen on {}", config.listen))?;
    let bound = listener.local_addr()?;

    {
        use std::io::Write;
        let mut out = std::io::stdout();
        let _ = writeln!(out, "chaperone {} listening on {bound}", env!("CARGO_PKG_VERSION"));
        super::print_keys(&keys, &mut out);
        let _ = writeln!(out, "data: {}", config.data_dir.display());
        let _ = writeln!(out, "recordings: {}", config.recordings_dir.display());
        let _ = out.flush();
    }
    tracing::info!("listening on {bound}");
    if crate::upstream::fixed_receive_buffer().is_none() {
        tracing::info!(
            "net.core.rmem_max is below 4 MiB: connections to targets keep autotuned receive buffers \
             (under many concurrent floods some sessions may then crawl; see the README's Performance section)"
        );
    }

    let gate = Arc::new(Gate {
        startups: Arc::new(crate::gate::Startups::new(config.logins.clone())),
        failed_logins: Default::default(),
        consoles: Default::default(),
        config,
        store: Arc::new(store),
        keys: Arc::new(keys),
        shutdown: CancellationToken::new(),
        tracker: TaskTracker::new(),
        clock: crate::clock::Clock::from_env(),
        live: Default::default(),
    });
    recover(&gate);
    let serving = tokio::spawn(gate.clone().serve(listener));
    gate.tracker.spawn(crate::scheduler::run(gate.clone()));

    signals.next().await;
    tracing::info!("shutting down: no new logins; ending sessions");
    gate.shutdown.cancel();
    let _ = serving.await;
    gate.tracker.close();
    tokio::select! {
        _ = gate.tracker.wait() => tracing::info!("all sessions ended; bye"),
        _ = tokio::time::sleep(SHUTDOWN_GRACE) => tracing::warn!("sessions did not end within {}s; exiting", SHUTDOWN_GRACE.as_secs()),
        _ = signals.next() => tracing::warn!("second signal: exiting at once"),
    }
    Ok(())
}

/// Closes the recordings of sessions that were live when chaperone last stopped without
/// closing them (killed, power lost), before anyone new is admitted.
fn recover(gate: &Gate) {
    let live = match gate.store.session_list() {
        Ok(sessions) => sessions.into_iter().filter(|s| s.state == "live"),
        Err(err) => {
            tracing::error!("cannot look for interrupted sessions: {err}");
            return;
        }
    };
    for s in live {
        let detail = crate::session::recover(gate, &s);
        tracing::warn!(session = %s.id, "{detail}");
    }
}

/// SIGTERM and SIGINT, either of which asks for shutdown.
struct Signals {
    term: tokio::signal::unix::Signal,
    int: tokio::signal::unix::Signal,
}

impl Signals {
    fn new() -> anyhow::Result<Signals> {
        use tokio::signal::unix::{SignalKind, signal};
        Ok(Signals { term: signal(SignalKind::terminate())?, int: signal(SignalKind::interrupt())? })
    }

    async fn next(&mut self) {
        tokio::select! {
            _ = self.term.recv() => {}
            _ = self.int.recv() => {}
        }
    }
}
