//! The command tree. One clap definition serves the local CLI (and, later, technicians
//! over SSH).

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

use crate::recording::export::Format;

#[derive(Debug, Parser)]
#[command(
    name = "chaperone",
    version,
    about = "Session-recording SSH bastion for supervised vendor access"
)]
pub struct Cli {
    /// Configuration file (relative paths inside it resolve against its folder).
    /// Default: config/chaperone.toml if it exists, else built-in defaults (data in
    /// ./data, recordings in ./recordings, listening on 127.0.0.1:2222).
    #[arg(long, global = true, env = "CHAPERONE_CONFIG")]
    pub config: Option<PathBuf>,
    #[command(subcommand)]
    pub command: Command,
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
}

#[derive(Debug, Args)]
pub struct ServeArgs {
    /// Address to listen on, overriding the config (`127.0.0.1:0` picks a free port and
    /// prints it).
    #[arg(long)]
    pub listen: Option<std::net::SocketAddr>,
}

#[derive(Debug, Subcommand)]
pub enum VendorCommand {
    /// Register a vendor with its e-mail address and SSH public key(s).
    Add {
        name: String,
        #[arg(long)]
        email: String,
        /// OpenSSH public key line, or a path to a .pub file; may repeat.
        #[arg(long = "key", required = true)]
        keys: Vec<String>,
    },
    /// List vendors.
    List,
    /// Show one vendor with its keys.
    Show { name: String },
    /// Refuse the vendor's logins until enabled again.
    Disable { name: String },
    /// Allow the vendor's logins again.
    Enable { name: String },
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
        /// Login account on the target; the first is the default; may repeat.
        #[arg(long = "account", required = true)]
        accounts: Vec<String>,
    },
    /// List targets.
    List,
    /// Show one target.
    Show { name: String },
    /// Remove a target (its recordings stay).
    Remove { name: String },
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
    },
    /// Write a session's recording as uncompressed asciicast.
    Export {
        /// Session id (or the session's folder).
        id: String,
        #[arg(long, value_enum, default_value = "v3")]
        format: Format,
        /// Output file (`-` for stdout).
        #[arg(short = 'o', long = "output")]
        output: PathBuf,
        /// Channel to export (1 = the first).
        #[arg(long, default_value_t = 1)]
        channel: usize,
    },
}
