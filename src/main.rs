//! The `chaperone` binary: parse the CLI, set up tracing, run the command, map the
//! error to an exit code (2 for bad input, 1 for everything else).

use clap::Parser;

fn main() -> std::process::ExitCode {
    let cli = chaperone::cli::Cli::parse();
    if !matches!(cli.command, chaperone::cli::Command::Serve(_)) {
        // A one-shot command piped into `head` should end quietly like other Unix tools,
        // not panic on a closed stdout. (`serve` keeps ignoring SIGPIPE: it must outlive
        // whoever reads its output.)
        // SAFETY: setting a signal disposition before any thread exists.
        unsafe {
            libc::signal(libc::SIGPIPE, libc::SIG_DFL);
        }
    }
    let filter = tracing_subscriber::EnvFilter::try_from_env("CHAPERONE_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info,russh=warn"));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
    match chaperone::commands::run(cli) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("chaperone: {err:#}");
            if chaperone::is_user_error(&err) {
                std::process::ExitCode::from(2)
            } else {
                std::process::ExitCode::from(1)
            }
        }
    }
}
