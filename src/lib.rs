//! chaperone: a session-recording SSH bastion for supervised vendor access.
//!
//! A vendor's stock OpenSSH client connects to the gate; an admitted login becomes a
//! session that opens its own SSH connection to the target, relays every channel
//! faithfully and records each one as a zstd-compressed asciicast file.
//!
//! # Layout
//!
//! - [`audit`]: the hash-chained audit log's entries and chain check.
//! - [`calendar`]: a booking as an iCalendar event.
//! - [`cli`]: the clap command tree shared by every transport.
//! - [`clock`]: the injected clock every rule reads (movable only in debug builds).
//! - [`commands`]: one file per subcommand family; glue between the CLI and the library.
//! - [`console`]: the technicians' ssh interface: commands, `watch` with its control keys.
//! - `fuzzing` (hidden): one harness per parser a person or a file feeds, shared by the
//!   cargo-fuzz targets in `fuzz/` and the stable regression test over their corpora.
//! - [`config`]: raw TOML into a validated [`config::Config`] with resolved paths.
//! - [`files`]: bounded reads of what people and files feed us (keys, plans, configuration).
//! - [`keys`]: the bastion's three keys (host, upstream client, signing), created on first start.
//! - [`memory`]: the allocator's thresholds; memory freed by floods and sessions handed back.
//! - [`mirror`]: live fan-out of session output to watchers, screen snapshots (avt).
//! - [`names`]: validation of the names people type (vendors, targets, accounts).
//! - [`store`]: SQLite schema, migrations and queries for vendors, targets and sessions.
//! - [`notify`]: confirmation and cancellation e-mails (outbox files or SMTP).
//! - [`plan`]: the written session plan: title and steps, signature checks.
//! - [`policy`]: pure rules: admission inside approved windows, booking rules.
//! - [`scheduler`]: window edges, warnings and ends of running sessions, mail delivery.
//! - [`gate`]: the SSH server facing vendors; a thin russh handler that hands work on,
//!   and the bounds on connections not logged in yet.
//! - [`session`]: one admitted login: upstream connection, channel relays, recordings.
//! - [`ssh`]: SSH settings both sides share (cipher preference by CPU).
//! - [`upstream`]: the SSH client facing the target, with host-key pinning.
//! - [`recording`]: asciicast v3 writer (zstd frames), tolerant reader and exports, the
//!   seal, crash recovery, replay with its seek index, and the dispute bundle.
//! - [`sanitize`]: a vendor's output without the control strings that would act on a watcher's
//!   or replayer's terminal (clipboard, title, answers).
//! - [`id`]: short, unique, time-sortable session ids.

pub mod audit;
pub mod calendar;
pub mod cli;
pub mod clock;
pub mod commands;
pub mod config;
pub mod console;
pub mod files;
#[doc(hidden)]
pub mod fuzzing;
pub mod gate;
pub mod id;
pub mod keys;
pub mod memory;
pub mod mirror;
pub mod names;
pub mod notify;
pub mod plan;
pub mod policy;
pub mod recording;
pub mod sanitize;
pub mod scheduler;
pub mod session;
pub mod ssh;
pub mod store;
pub mod upstream;

/// An error caused by what the user typed (bad name, duplicate, malformed key, unknown
/// item). `main` maps it to exit code 2; everything else exits 1.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct UserError(pub String);

/// True when the error (or any cause in its chain) was the user's input, not the system.
pub fn is_user_error(err: &anyhow::Error) -> bool {
    err.chain().any(|cause| {
        cause.is::<UserError>()
            || matches!(
                cause.downcast_ref::<store::StoreError>(),
                Some(store::StoreError::Invalid(_) | store::StoreError::Duplicate(_) | store::StoreError::NotFound(_))
            )
            || cause.is::<config::ConfigError>()
    })
}
