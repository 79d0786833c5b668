//! Command glue: each subcommand family in its own file, turning CLI arguments into
//! library calls and writing the results. The same commands run locally and, for
//! technicians, over ssh inside `serve` (see `console`): they write to `Ctx::out`, never
//! to the process's stdout directly.

/// `println!` into a command's output; write errors (a reader gone) are ignored.
macro_rules! say {
    ($out:expr, $($arg:tt)*) => {{
        let _ = writeln!($out, $($arg)*);
    }};
}

/// `print!` into a command's output.
macro_rules! say_raw {
    ($out:expr, $($arg:tt)*) => {{
        let _ = write!($out, $($arg)*);
    }};
}

mod audit;
mod bookings;
mod live;
mod people;
mod recordings;
mod replay;
mod serve;

use std::io::{Read, Write};

use anyhow::Context;

use crate::cli::{Cli, Command};
use crate::clock::Clock;
use crate::config::Config;
use crate::gate::Gate;
use crate::keys::Keys;
use crate::store::Store;

pub use replay::{Key, parse_keys};

/// Who runs a command.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Caller {
    /// Someone with a shell on the bastion (an operator).
    Local,
    /// A technician logged in over ssh.
    Technician(String),
}

impl Caller {
    pub fn technician(&self) -> Option<&str> {
        match self {
            Caller::Technician(name) => Some(name),
            Caller::Local => None,
        }
    }
}

/// Why a technician over ssh cannot name files or folders: they would be the bastion's
/// (its keys, its configuration with the SMTP password, any file it may read).
/// Who the audit log names for a change made on the bastion's command line.
pub fn local_actor() -> String {
    std::env::var("USER").unwrap_or_else(|_| "cli".into())
}

const ON_THE_BASTION: &str = "over ssh, files and folders would be the bastion's";

/// What a command runs with.
pub struct Ctx<'a> {
    pub config: &'a Config,
    pub store: &'a Store,
    pub clock: &'a Clock,
    pub caller: Caller,
    pub out: &'a mut dyn Write,
    pub err: &'a mut dyn Write,
    /// For `--plan -` and `--signature -`.
    pub stdin: &'a mut dyn Read,
    /// The running bastion, when the command runs inside `serve` (over ssh).
    pub gate: Option<&'a Gate>,
    /// A technician's terminal over ssh (`ssh -t`), for `replay`.
    pub terminal: Option<RemoteTerminal>,
    /// Tells a long command that its caller has gone away.
    pub hangup: Hangup,
    /// Standard output is a terminal (locally a tty, over ssh a channel with a pty):
    /// recorded output printed there goes through the sanitizer.
    pub tty: bool,
}

/// Whether the caller of a command has gone away (a technician's ssh channel closed):
/// commands that can run long without writing (a replay in an idle stretch, a search
/// through every recording) stop then, instead of running on for nobody. A local caller
/// never hangs up; the console holds the other end and drops it when the channel closes.
pub struct Hangup(Option<std::sync::mpsc::Receiver<()>>);

impl Hangup {
    /// For a caller that stays until the command ends (the local CLI).
    pub fn never() -> Hangup {
        Hangup(None)
    }

    /// A hangup that happens when the returned sender is dropped.
    pub fn on_drop() -> (std::sync::mpsc::Sender<()>, Hangup) {
        let (tx, rx) = std::sync::mpsc::channel();
        (tx, Hangup(Some(rx)))
    }

    pub fn happened(&self) -> bool {
        self.0.as_ref().is_some_and(|rx| matches!(rx.try_recv(), Err(std::sync::mpsc::TryRecvError::Disconnected)))
    }

    /// Sleeps for `wait`, or less if the caller goes away meanwhile; returns whether it did.
    pub fn sleep(&self, wait: std::time::Duration) -> bool {
        match &self.0 {
            None => {
                std::thread::sleep(wait);
                false
            }
            Some(rx) => matches!(rx.recv_timeout(wait), Err(std::sync::mpsc::RecvTimeoutError::Disconnected)),
        }
    }
}

/// The terminal of a technician's ssh session: its size and its keys, read by the
/// console from the channel.
pub struct RemoteTerminal {
    pub cols: usize,
    pub rows: usize,
    pub keys: std::sync::mpsc::Receiver<Key>,
}

pub fn run(cli: Cli) -> anyhow::Result<()> {
    let config = match &cli.config {
        Some(path) => Config::load(path)?,
        None => Config::load_default()?,
    };
    let mut stdout = std::io::stdout();
    match cli.command {
        Command::Serve(args) => serve::run(config, args),
        Command::Keys => {
            let keys = Keys::load_or_create(&config.keys_dir())?;
            print_keys(&keys, &mut stdout);
            Ok(())
        }
        Command::Check => {
            say!(stdout, "config {} is valid", config.source.display());
            say!(stdout, "listen: {}", config.listen);
            say!(stdout, "data: {}", config.data_dir.display());
            say!(stdout, "recordings: {}", config.recordings_dir.display());
            say!(stdout, "worker threads: {}", config.worker_threads);
            Ok(())
        }
        command => {
            let store = open_store(&config)?;
            let clock = Clock::from_env();
            let mut ctx = Ctx {
                config: &config,
                store: &store,
                clock: &clock,
                caller: Caller::Local,
                out: &mut stdout,
                err: &mut std::io::stderr(),
                stdin: &mut std::io::stdin(),
                gate: None,
                terminal: None,
                hangup: Hangup::never(),
                tty: std::io::IsTerminal::is_terminal(&std::io::stdout()),
            };
            dispatch(&mut ctx, command)
        }
    }
}

/// Runs a command that works on the store (locally or over ssh).
pub fn dispatch(ctx: &mut Ctx<'_>, command: Command) -> anyhow::Result<()> {
    if ctx.caller.technician().is_some() && !command.technician_may_run() {
        return Err(crate::UserError(
            "technicians may run: sessions, watch, kill, booking, recordings, replay, audit".into(),
        )
        .into());
    }
    match command {
        Command::Vendor(cmd) => people::vendor(ctx, cmd),
        Command::Target(cmd) => people::target(ctx, cmd),
        Command::Client(cmd) => people::client(ctx, cmd),
        Command::Tech(cmd) => people::tech(ctx, cmd),
        Command::Recordings(cmd) => recordings::run(ctx, cmd),
        Command::Replay(args) => replay::run(ctx, args),
        Command::Booking(cmd) => bookings::run(ctx, cmd),
        Command::Audit(args) => audit::run(ctx, args),
        Command::Sessions => live::sessions(ctx),
        Command::Kill { id, reason } => {
            // The reason is written to the vendor's terminal and the audit log.
            crate::names::check_line("--reason", &reason)?;
            live::kill(ctx, &id, &reason)
        }
        Command::Watch { .. } => {
            Err(crate::UserError("watch works over ssh, with a terminal: ssh -t -p 2222 TECH@bastion watch ID".into())
                .into())
        }
        Command::Serve(_) | Command::Keys | Command::Check => {
            Err(crate::UserError("this command runs only on the bastion's own shell".into()).into())
        }
    }
}

fn open_store(config: &Config) -> anyhow::Result<Store> {
    let path = config.data_db();
    Store::open(&path).with_context(|| format!("cannot open store {}", path.display()))
}

/// The keys an operator needs, one per line. Write errors are ignored: `serve` must not
/// fail because nobody reads its stdout.
fn print_keys(keys: &Keys, out: &mut dyn Write) {
    say!(out, "host key: {}", keys.host_fingerprint());
    say!(out, "upstream key (add to each target account's authorized_keys): {}", keys.upstream_authorized_key());
    say!(out, "signing key (seals recordings; publish it and its fingerprint): {}", keys.signing_public_key());
    say!(out, "signing key fingerprint: {}", keys.signing_fingerprint());
}
