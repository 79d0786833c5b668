//! Command glue: each subcommand family in its own file, turning CLI arguments into
//! library calls and printing the results.

mod audit;
mod bookings;
mod people;
mod recordings;
mod serve;

use anyhow::Context;

use crate::cli::{Cli, Command};
use crate::config::Config;
use crate::keys::Keys;
use crate::store::Store;

pub fn run(cli: Cli) -> anyhow::Result<()> {
    let config = match &cli.config {
        Some(path) => Config::load(path)?,
        None => Config::load_default()?,
    };
    match cli.command {
        Command::Serve(args) => serve::run(config, args),
        Command::Keys => {
            let keys = Keys::load_or_create(&config.keys_dir())?;
            print_keys(&keys, &mut std::io::stdout());
            Ok(())
        }
        Command::Check => {
            println!("config {} is valid", config.source.display());
            println!("listen: {}", config.listen);
            println!("data: {}", config.data_dir.display());
            println!("recordings: {}", config.recordings_dir.display());
            Ok(())
        }
        Command::Vendor(cmd) => people::vendor(&open_store(&config)?, cmd),
        Command::Target(cmd) => people::target(&open_store(&config)?, cmd),
        Command::Recordings(cmd) => recordings::run(&config, &open_store(&config)?, cmd),
        Command::Client(cmd) => people::client(&open_store(&config)?, cmd),
        Command::Tech(cmd) => people::tech(&open_store(&config)?, cmd),
        Command::Booking(cmd) => bookings::run(&config, &open_store(&config)?, &crate::clock::Clock::from_env(), cmd),
        Command::Audit(args) => audit::run(&config, &open_store(&config)?, args),
    }
}

fn open_store(config: &Config) -> anyhow::Result<Store> {
    let path = config.data_db();
    Store::open(&path).with_context(|| format!("cannot open store {}", path.display()))
}

/// The keys an operator needs, one per line. Write errors are ignored: `serve` must not
/// fail because nobody reads its stdout.
fn print_keys(keys: &Keys, out: &mut dyn std::io::Write) {
    let _ = writeln!(out, "host key: {}", keys.host_fingerprint());
    let _ = writeln!(
        out,
        "upstream key (add to each target account's authorized_keys): {}",
        keys.upstream_authorized_key()
    );
    let _ = writeln!(out, "signing key: {}", keys.signing_public_key());
}
