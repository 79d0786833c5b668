//! The command tree. One clap definition serves the local CLI and technicians over SSH
//! (see [`parse_console`]).

use std::path::PathBuf;

use clap::{Args, CommandFactory, FromArgMatches, Parser, Subcommand};

use crate::recording::export::Format;

#[derive(Debug, Parser)]
#[command(name = "chaperone", version, about = "Session-recording SSH bastion for supervised vendor access")]
pub struct Cli {
    /// Configuration file (relative paths inside it resolve against its folder).
    /// Default: config/chaperone.toml if it exists, else built-in defaults (data in
    /// ./data, recordings in ./recordings, listening on 127.0.0.1:2222). Not over ssh.
    #[arg(long, global = true, env = "CHAPERONE_CONFIG")]
    pub config: Option<PathBuf>,
    #[command(subcommand)]
    pub command: Command,
}

/// Parses a command line a technician sent over ssh. Unlike the local CLI it reads nothing
/// from the environment: the process is the bastion's `serve`, so an `env = …` default
/// (`CHAPERONE_CONFIG`) would be the bastion's own setting, not something the technician
/// said, and would make every console command look as if it named a file.
pub fn parse_console(args: impl IntoIterator<Item = String>) -> Result<Cli, clap::Error> {
    let command = without_env(Cli::command());
    let matches = command.try_get_matches_from(std::iter::once("chaperone".to_string()).chain(args))?;
    Cli::from_arg_matches(&matches)
}

/// `command` with no argument read from the environment, in every subcommand.
fn without_env(command: clap::Command) -> clap::Command {
    command.mut_args(|arg| arg.env(None)).mut_subcommands(without_env)
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the bastion: accept vendors' SSH logins, relay and record their sessions.
    Serve(ServeArgs),
    /// Print the bastion's host-key fingerprint and the upstream key for targets'
    /// authorized_keys (creating the keys on first use).
    Keys,
    /// Validate the configuration and say what is wrong.
    Check,
    /// Register and manage vendors (the companies that connect).
    #[command(subcommand)]
    Vendor(VendorCommand),
    /// Register and manage targets (the servers vendors reach).
    #[command(subcommand)]
    Target(TargetCommand),
    /// List, print and export session recordings.
    #[command(subcommand)]
    Recordings(RecordingsCommand),
    /// Play a recording in the terminal at its real pace. Keys: space pause/resume, + and -
    /// speed, . step, ] and [ next and previous marker, → and ← 10 seconds, q quit.
    Replay(ReplayArgs),
    /// Register clients (the companies owning targets; they receive confirmations).
    #[command(subcommand)]
    Client(ClientCommand),
    /// Register technicians (the provider's staff who approve and supervise).
    #[command(subcommand)]
    Tech(TechCommand),
    /// Book, acknowledge, approve and cancel vendor access windows.
    #[command(subcommand)]
    Booking(BookingCommand),
    /// Print the audit log, or verify its hash chain.
    Audit(AuditArgs),
    /// Live sessions: id, vendor, target, account, booking, since, watchers, state.
    Sessions,
    /// Watch a live session (over ssh, with a terminal: ssh -t -p 2222 TECH@bastion watch ID).
    Watch {
        /// Session id (see `sessions`).
        id: String,
        /// The channel to follow (see `sessions`); default: the first with a terminal.
        #[arg(long)]
        channel: Option<usize>,
    },
    /// End a live session, telling the vendor why (over ssh).
    Kill {
        id: String,
        #[arg(long)]
        reason: String,
    },
}

impl Command {
    /// What a technician may run over ssh: supervision, bookings, recordings, audit.
    /// Registration and the bastion's own administration stay on the bastion's shell.
    pub fn technician_may_run(&self) -> bool {
        matches!(
            self,
            Command::Sessions
                | Command::Watch { .. }
                | Command::Kill { .. }
                | Command::Booking(_)
                | Command::Recordings(_)
                | Command::Replay(_)
                | Command::Audit(_)
        )
    }
}

#[derive(Debug, Subcommand)]
pub enum ClientCommand {
    /// Register a client with the address(es) confirmations go to.
    Add {
        name: String,
        /// May repeat.
        #[arg(long = "email", required = true)]
        emails: Vec<String>,
    },
    List,
    Show {
        name: String,
    },
}

/// Someone who logs in with SSH keys (a vendor or a technician).
#[derive(Debug, Args)]
pub struct Person {
    pub name: String,
    #[arg(long)]
    pub email: String,
    /// OpenSSH public key line, or a path to a .pub file; may repeat.
    #[arg(long = "key", required = true)]
    pub keys: Vec<String>,
}

#[derive(Debug, Subcommand)]
pub enum TechCommand {
    /// Register a technician with an e-mail address and SSH public key(s).
    Add(Person),
    List,
    Show {
        name: String,
    },
    /// The technician can no longer approve or supervise; open console connections close.
    Disable {
        name: String,
    },
    /// The technician may log in again.
    Enable {
        name: String,
    },
    /// Add or remove the technician's login keys.
    #[command(subcommand)]
    Key(KeyCommand),
}

/// A booking id: `17` or `B-17`.
#[derive(Debug, Clone, Copy)]
pub struct BookingId(pub i64);

impl std::str::FromStr for BookingId {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        let digits = s.strip_prefix("B-").or_else(|| s.strip_prefix("b-")).unwrap_or(s);
        digits
            .parse::<i64>()
            .ok()
            .filter(|n| *n > 0)
            .map(BookingId)
            .ok_or_else(|| format!("{s:?} is not a booking id like B-17"))
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Party {
    Vendor,
    Client,
    Provider,
}

#[derive(Debug, Subcommand)]
pub enum BookingCommand {
    /// Book a window for a vendor on a target; prints the booking's id.
    Create {
        #[arg(long)]
        vendor: String,
        #[arg(long)]
        target: String,
        /// The login account on the target (must be one of its accounts).
        #[arg(long)]
        account: String,
        /// Start, wall-clock "YYYY-MM-DD HH:MM" in --tz.
        #[arg(long)]
        start: String,
        /// End, wall-clock "YYYY-MM-DD HH:MM" in --tz.
        #[arg(long)]
        end: String,
        /// Time zone of --start/--end (default: policy.timezone).
        #[arg(long)]
        tz: Option<String>,
        /// The session plan: a Markdown file (what, on which systems, who, rollback);
        /// `-` reads it from standard input.
        #[arg(long)]
        plan: PathBuf,
        /// Needed to book a privileged account: why it must be one.
        #[arg(long, value_name = "JUSTIFICATION")]
        privileged: Option<String>,
        /// Skip the lead time; the reason is recorded, audited and shown in the plan.
        #[arg(long, value_name = "REASON")]
        emergency: Option<String>,
        /// The technician making the booking.
        #[arg(long)]
        by: Option<String>,
    },
    /// Upcoming and active bookings (all with --all).
    List {
        #[arg(long)]
        all: bool,
        #[arg(long)]
        vendor: Option<String>,
        #[arg(long)]
        target: Option<String>,
    },
    /// Everything about a booking: window, plan, acknowledgements, mails.
    Show { id: BookingId },
    /// Write the plan's exact bytes (what signatures cover) to stdout.
    Plan { id: BookingId },
    /// Replace the plan of a booking nobody has acknowledged yet (after that the plan is
    /// frozen: a change means a new booking).
    Replan {
        id: BookingId,
        /// The new plan (Markdown); `-` reads it from standard input.
        #[arg(long)]
        plan: PathBuf,
        /// The technician (over ssh: you).
        #[arg(long)]
        by: Option<String>,
    },
    /// Record a party's acknowledgement of the plan.
    Ack {
        id: BookingId,
        #[arg(long, value_enum)]
        party: Party,
        /// An `ssh-keygen -Y sign -n chaperone-plan` signature over the plan (`-`: stdin).
        #[arg(long)]
        signature: Option<PathBuf>,
        /// The technician recording it (provider and client acknowledgements).
        #[arg(long)]
        by: Option<String>,
        /// How the client confirmed (e.g. "mail from J. Doe, 2026-11-20").
        #[arg(long)]
        note: Option<String>,
    },
    /// Approve a booking: the vendor may log in inside its window.
    Approve {
        id: BookingId,
        /// The approving technician (over ssh: you).
        #[arg(long)]
        by: Option<String>,
    },
    /// Cancel a booking; its live sessions end at once.
    Cancel {
        id: BookingId,
        #[arg(long)]
        reason: String,
        /// The technician (over ssh: you).
        #[arg(long)]
        by: Option<String>,
    },
    /// Print the booking as an iCalendar event.
    Ics { id: BookingId },
}

#[derive(Debug, Args)]
pub struct AuditArgs {
    #[command(subcommand)]
    pub command: Option<AuditCommand>,
    /// Only entries at or after this time ("YYYY-MM-DD HH:MM", policy time zone).
    #[arg(long)]
    pub since: Option<String>,
    #[arg(long)]
    pub booking: Option<BookingId>,
    #[arg(long)]
    pub vendor: Option<String>,
}

#[derive(Debug, Subcommand)]
pub enum AuditCommand {
    /// Recompute the hash chain and name the first broken entry.
    Verify,
}

#[derive(Debug, Args)]
pub struct ServeArgs {
    /// Address to listen on, overriding the config (`127.0.0.1:0` picks a free port and
    /// prints it; IPv6 in brackets: `[::1]:2222`).
    #[arg(long, value_parser = crate::config::listen_address)]
    pub listen: Option<std::net::SocketAddr>,
}

#[derive(Debug, Subcommand)]
pub enum VendorCommand {
    /// Register a vendor with its e-mail address and SSH public key(s).
    Add(Person),
    /// List vendors.
    List,
    /// Show one vendor with its keys.
    Show { name: String },
    /// Refuse the vendor's logins until enabled again; its live sessions end.
    Disable { name: String },
    /// Allow the vendor's logins again.
    Enable { name: String },
    /// Add or remove the vendor's login keys (people join and leave its team).
    #[command(subcommand)]
    Key(KeyCommand),
}

#[derive(Debug, Subcommand)]
pub enum KeyCommand {
    /// Add public key(s) to someone registered.
    Add {
        name: String,
        /// OpenSSH public key line, or a path to a .pub file; may repeat.
        #[arg(long = "key", required = true)]
        keys: Vec<String>,
    },
    /// Remove a key; live connections that logged in with it end.
    Remove {
        name: String,
        /// The key's fingerprint (`SHA256:…`, as `show` lists it), its line, or a .pub file.
        key: String,
    },
}

#[derive(Debug, Subcommand)]
pub enum TargetCommand {
    /// Register a target with its pinned host key and login account(s).
    Add {
        name: String,
        /// HOST:PORT of the target's sshd.
        #[arg(long)]
        address: String,
        /// The target's host public key, as `ssh-keyscan` prints it (with or without the
        /// leading host), or a path to a .pub file.
        #[arg(long = "host-key")]
        host_key: String,
        /// Login account on the target (unprivileged); may repeat.
        #[arg(long = "account", required = true)]
        accounts: Vec<String>,
        /// An account with administrative rights: booking it needs a justification.
        #[arg(long = "privileged-account")]
        privileged_accounts: Vec<String>,
        /// The client owning the target (see `client add`).
        #[arg(long)]
        client: String,
    },
    /// Give a target its client (targets registered before clients existed need one).
    SetClient {
        name: String,
        #[arg(long)]
        client: String,
    },
    /// List targets.
    List,
    /// Show one target.
    Show { name: String },
    /// Remove a target no booking needs any more (its recordings stay).
    Remove { name: String },
}

#[derive(Debug, clap::Args)]
pub struct ReplayArgs {
    /// Session id (or the session's folder).
    pub id: String,
    /// Playback speed (2 = twice as fast).
    #[arg(long, default_value_t = 1.0)]
    pub speed: f64,
    /// Shorten pauses longer than this many seconds to it.
    #[arg(long, value_name = "SECONDS")]
    pub idle_limit: Option<f64>,
    /// Start at this time into the session (HH:MM:SS, MM:SS or seconds).
    #[arg(long, value_name = "HH:MM:SS", conflicts_with = "from_marker")]
    pub from: Option<String>,
    /// Start at the Nth marker (1 = the first; warnings, annotations, takeovers).
    #[arg(long, value_name = "N")]
    pub from_marker: Option<usize>,
    /// Start paused (space plays, . steps).
    #[arg(long)]
    pub paused: bool,
    /// Channel to play (1 = the first).
    #[arg(long, default_value_t = 1)]
    pub channel: usize,
}

#[derive(Debug, Subcommand)]
pub enum RecordingsCommand {
    /// List recorded sessions.
    List,
    /// Print a session's terminal output to stdout.
    Cat {
        /// Session id (or the session's folder).
        id: String,
        /// Only this channel (1 = the first); default: all, in order.
        #[arg(long)]
        channel: Option<usize>,
        /// Every byte as recorded, control strings too (the default into a local pipe or
        /// file; over ssh only with this flag, since the bastion cannot tell whether the
        /// caller's output is a terminal).
        #[arg(long)]
        raw: bool,
    },
    /// Search the text of all recordings (output and typed input).
    Search {
        /// Text to look for (case-insensitive).
        pattern: String,
        #[arg(long)]
        vendor: Option<String>,
        #[arg(long)]
        target: Option<String>,
        /// Only sessions started on or after this day (YYYY-MM-DD, UTC).
        #[arg(long)]
        since: Option<chrono::NaiveDate>,
    },
    /// The command lines the vendor typed in a session, with their times.
    Commands {
        /// Session id (or the session's folder).
        id: String,
    },
    /// Check a session folder against its seal: every sealed byte, every signature.
    /// Works on a copied folder with only the public key.
    Verify {
        /// Session id (or the session's folder).
        id: String,
        /// The bastion's signing public key (an OpenSSH line or .pub file); default:
        /// this bastion's key.
        #[arg(long)]
        key: Option<String>,
    },
    /// Write a session's recording as uncompressed asciicast (`-o`), the dispute bundle
    /// (`--bundle`): the sealed folder, the signing key, a transcript, README.txt on
    /// verifying, and player.html to replay it offline; or one stream's exact bytes
    /// (`--raw-output`, `--raw-stderr`, `--raw-input`), once the seal verifies.
    #[command(group(clap::ArgGroup::new("destination").required(true).args(["output", "bundle", "raw_output", "raw_stderr", "raw_input"])))]
    Export {
        /// Session id (or the session's folder).
        id: String,
        #[arg(long, value_enum, default_value = "v3")]
        format: Format,
        /// Output file (`-` for stdout).
        #[arg(short = 'o', long = "output")]
        output: Option<PathBuf>,
        /// Channel to export (1 = the first).
        #[arg(long, default_value_t = 1)]
        channel: usize,
        /// Write the dispute bundle to FILE.tar or FILE.zip (`-` for a tar on stdout).
        #[arg(long, value_name = "FILE")]
        bundle: Option<PathBuf>,
        /// The bastion's signing public key to put in the bundle (or to check the seal
        /// against for a raw export); default: this bastion's key.
        #[arg(long)]
        key: Option<String>,
        /// Write exactly the bytes the target sent on the channel's stdout (on a terminal:
        /// everything shown) to FILE (`-` for stdout).
        #[arg(long, value_name = "FILE")]
        raw_output: Option<PathBuf>,
        /// Write exactly the bytes the target sent on the channel's stderr to FILE (`-`).
        #[arg(long, value_name = "FILE")]
        raw_stderr: Option<PathBuf>,
        /// Write exactly the bytes the vendor sent on the channel to FILE (`-`).
        #[arg(long, value_name = "FILE")]
        raw_input: Option<PathBuf>,
    },
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_console_reads_no_environment() {
        let config = Cli::command()
            .get_arguments()
            .find(|a| a.get_id() == "config")
            .and_then(|a| a.get_env().map(|e| e.to_os_string()));
        assert_eq!(config.as_deref(), Some(std::ffi::OsStr::new("CHAPERONE_CONFIG")), "the local CLI reads it");
        fn reads_env(command: &clap::Command) -> bool {
            command.get_arguments().any(|a| a.get_env().is_some()) || command.get_subcommands().any(reads_env)
        }
        assert!(!reads_env(&without_env(Cli::command())));
        let cli = parse_console(["booking".to_string(), "list".to_string()]).unwrap();
        assert!(cli.config.is_none() && matches!(cli.command, Command::Booking(BookingCommand::List { .. })));
    }
}
