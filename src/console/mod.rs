//! The technicians' console: what a technician reaches with `ssh -p 2222 alice@bastion
//! COMMAND…`. The command line is parsed with the same clap tree as the local CLI and
//! run inside `serve` (so `sessions`, `watch` and `kill` act on live sessions), limited to
//! what a technician may do. A technician never reaches a target through it.
//!
//! - `watch`: the live view of a vendor's terminal, with the control keys.

mod watch;

use std::collections::HashMap;
use std::io::Write;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use russh::server::{Handle, Msg};
use russh::{Channel, ChannelMsg, ChannelReadHalf, ChannelWriteHalf};
use tokio::sync::{mpsc, oneshot};

use crate::audit::Event;
use crate::cli::Command;
use crate::commands::{Caller, Ctx, Hangup, RemoteTerminal, parse_keys};
use crate::gate::{Gate, GateEvent};

/// Most a technician may pipe in (`--plan -`): a plan and then some.
const MAX_STDIN: usize = 1024 * 1024;

/// Serves one technician connection: every session channel runs one command. A
/// technician who is disabled, or whose key is removed, is disconnected (see [`Consoles`]);
/// a `watch` ends with the connection, and the session learns that its watcher left.
pub async fn run(
    gate: Arc<Gate>,
    handle: Handle,
    tech: String,
    key: String,
    peer: SocketAddr,
    mut events: mpsc::Receiver<GateEvent>,
) {
    gate.audit(Event::new("tech.login", format!("from {peer}, key {key}")).actor(&tech));
    let (id, mut revoked) = gate.consoles.open(&tech, &key);
    loop {
        tokio::select! {
            event = events.recv() => match event {
                Some(GateEvent::Channel(channel)) => {
                    gate.tracker.spawn(serve_channel(gate.clone(), tech.clone(), channel));
                }
                None => break,
            },
            Ok(reason) = &mut revoked => {
                tracing::info!(technician = %tech, %peer, "console disconnected: {reason}");
                gate.audit(Event::new("tech.disconnect", format!("from {peer}: {reason}")).actor(&tech));
                let _ = handle.disconnect(russh::Disconnect::ByApplication, reason, "en".into()).await;
                break;
            }
        }
    }
    gate.consoles.forget(id);
}

/// The open console connections, so that the scheduler can cut off a technician whose
/// access is gone (disabled, key removed) instead of letting them watch and control on.
#[derive(Debug, Default)]
pub struct Consoles {
    next: AtomicU64,
    open: Mutex<HashMap<u64, Console>>,
}

#[derive(Debug)]
struct Console {
    tech: String,
    key: String,
    /// Told the reason once, to disconnect.
    close: Option<oneshot::Sender<String>>,
}

impl Consoles {
    fn open(&self, tech: &str, key: &str) -> (u64, oneshot::Receiver<String>) {
        let id = self.next.fetch_add(1, Ordering::Relaxed);
        let (close, closed) = oneshot::channel();
        let console = Console { tech: tech.to_string(), key: key.to_string(), close: Some(close) };
        self.table().insert(id, console);
        (id, closed)
    }

    fn forget(&self, id: u64) {
        self.table().remove(&id);
    }

    /// Each open connection's technician and key fingerprint.
    pub fn logins(&self) -> Vec<(u64, String, String)> {
        self.table().iter().map(|(id, c)| (*id, c.tech.clone(), c.key.clone())).collect()
    }

    /// Disconnects connection `id`, telling its technician `reason`.
    pub fn close(&self, id: u64, reason: String) {
        if let Some(close) = self.table().get_mut(&id).and_then(|c| c.close.take()) {
            let _ = close.send(reason);
        }
    }

    fn table(&self) -> std::sync::MutexGuard<'_, HashMap<u64, Console>> {
        // Nothing panics while holding it; a poisoned lock still holds a valid table.
        self.open.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// The terminal a technician's client asked for.
#[derive(Debug, Clone, Copy)]
pub struct Pty {
    pub cols: u32,
    pub rows: u32,
}

async fn serve_channel(gate: Arc<Gate>, tech: String, mut channel: Channel<Msg>) {
    let mut pty = None;
    let command = loop {
        match channel.wait().await {
            Some(ChannelMsg::RequestPty { col_width, row_height, .. }) => {
                pty = Some(Pty { cols: col_width, rows: row_height });
            }
            Some(ChannelMsg::Exec { command, .. }) => break Some(String::from_utf8_lossy(&command).into_owned()),
            Some(ChannelMsg::RequestShell { .. }) => break None,
            Some(ChannelMsg::Close) | None => return,
            Some(_) => {}
        }
    };
    let (mut rx, tx) = channel.split();
    let status = match command {
        None => {
            let mut out = Vec::new();
            let remote = Remote { terminal: None, hangup: Hangup::never(), tty: pty.is_some() };
            run_command(&gate, &tech, Command::Sessions, Vec::new(), remote, &mut out, &mut Vec::new());
            out.extend_from_slice(HELP.as_bytes());
            send(&tx, 0, &out, pty.is_some()).await;
            0
        }
        Some(line) => {
            let args = match split_words(&line) {
                Ok(args) => args,
                Err(err) => {
                    send_err(&tx, &format!("chaperone: {err}\n"), pty.is_some()).await;
                    finish(&tx, 2).await;
                    return;
                }
            };
            execute(&gate, &tech, &line, args, pty, &mut rx, &tx).await
        }
    };
    finish(&tx, status).await;
}

const HELP: &str = "\nchaperone over ssh: ssh -p 2222 TECH@bastion COMMAND\n  sessions                      live sessions\n  watch ID [--channel N]        watch one (needs ssh -t); keys: Ctrl-] then f freeze, t take over, a annotate, k kill, c next channel, d detach\n  kill ID --reason R            end a session\n  replay ID                     replay a recording (with ssh -t: its keys work)\n  booking …, recordings …, audit …   as on the bastion (--help for each)\n";

async fn execute(
    gate: &Arc<Gate>,
    tech: &str,
    line: &str,
    args: Vec<String>,
    pty: Option<Pty>,
    rx: &mut ChannelReadHalf,
    tx: &ChannelWriteHalf<Msg>,
) -> u32 {
    let cli = match crate::cli::parse_console(args.iter().cloned()) {
        Ok(cli) => cli,
        Err(err) => {
            // --help and --version end up here too, and are not errors.
            let text = err.render().to_string();
            if err.use_stderr() {
                send_err(tx, &text, pty.is_some()).await;
            } else {
                send(tx, 0, text.as_bytes(), pty.is_some()).await;
            }
            return u32::try_from(err.exit_code()).unwrap_or(2);
        }
    };
    if cli.config.is_some() {
        send_err(tx, "chaperone: --config cannot be given over ssh\n", pty.is_some()).await;
        return 2;
    }
    if let Command::Watch { id, channel } = &cli.command {
        gate.audit(Event::new("tech.command", line.to_string()).actor(tech));
        return watch::run(gate.clone(), tech, id, *channel, pty, rx, tx).await;
    }
    let stdin = if args.iter().any(|a| a == "-") { read_stdin(rx).await } else { Vec::new() };
    // `replay` on a terminal (ssh -t) takes its keys from the channel as they are typed.
    let (mut keys, terminal) = match (&cli.command, pty) {
        (Command::Replay(_), Some(pty)) => {
            let (keys, received) = std::sync::mpsc::channel();
            let terminal = RemoteTerminal { cols: pty.cols as usize, rows: pty.rows as usize, keys: received };
            (Some(keys), Some(terminal))
        }
        _ => (None, None),
    };
    if cli.command.technician_may_run() {
        gate.audit(Event::new("tech.command", line.to_string()).actor(tech));
    }
    // The command's output goes out as it is written (an export can be as large as a
    // recording): through a small bounded queue, so a slow reader slows the command down
    // instead of the bastion holding its output.
    let (chunks, mut queued) = mpsc::channel::<(u32, Vec<u8>)>(OUTPUT_CHUNKS);
    // Held while the channel is open: dropped, it tells the command the technician left.
    let (present, hangup) = Hangup::on_drop();
    let remote = Remote { terminal, hangup, tty: pty.is_some() };
    let (gate2, tech2) = (gate.clone(), tech.to_string());
    let ran = tokio::task::spawn_blocking(move || {
        let mut out = ChannelOutput::new(0, chunks.clone());
        let mut err = ChannelOutput::new(1, chunks);
        let status = run_command(&gate2, &tech2, cli.command, stdin, remote, &mut out, &mut err);
        // What the command wrote last, then the queue closes with the writers.
        let _ = (out.flush(), err.flush());
        status
    });
    let gone = loop {
        tokio::select! {
            chunk = queued.recv() => match chunk {
                Some((ext, bytes)) => {
                    if !send(tx, ext, &bytes, pty.is_some()).await {
                        break true;
                    }
                }
                None => break false,
            },
            input = rx.wait() => match input {
                Some(ChannelMsg::Data { data }) => {
                    for key in parse_keys(&data) {
                        let _ = keys.as_ref().map(|keys| keys.send(key));
                    }
                }
                // No more keys: a paused replay stops, a playing one plays on.
                Some(ChannelMsg::Eof) => keys = None,
                Some(ChannelMsg::Close) | None => break true,
                Some(_) => {}
            },
        }
    };
    // If the technician left, the command stops at its next write or wait.
    drop((queued, keys, present));
    let ran = ran.await;
    if gone {
        tracing::info!("{tech} left; their command stopped: {line}");
    }
    match ran {
        Ok(status) => status,
        Err(_) => {
            send_err(tx, "chaperone: the command failed unexpectedly\n", pty.is_some()).await;
            1
        }
    }
}

/// Chunks of command output waiting for the channel, at most.
const OUTPUT_CHUNKS: usize = 8;
/// Command output is sent on in chunks of this size.
const OUTPUT_CHUNK: usize = 32 * 1024;

/// A command's stdout (`ext` 0) or stderr (1), written from the blocking thread the
/// command runs on into the queue that the channel's task sends from.
struct ChannelOutput {
    ext: u32,
    buf: Vec<u8>,
    chunks: mpsc::Sender<(u32, Vec<u8>)>,
}

impl ChannelOutput {
    fn new(ext: u32, chunks: mpsc::Sender<(u32, Vec<u8>)>) -> ChannelOutput {
        ChannelOutput { ext, buf: Vec::new(), chunks }
    }
}

impl Write for ChannelOutput {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        self.buf.extend_from_slice(bytes);
        if self.buf.len() >= OUTPUT_CHUNK {
            self.flush()?;
        }
        Ok(bytes.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        if self.buf.is_empty() {
            return Ok(());
        }
        let chunk = std::mem::replace(&mut self.buf, Vec::with_capacity(OUTPUT_CHUNK));
        self.chunks
            .blocking_send((self.ext, chunk))
            .map_err(|_| std::io::Error::new(std::io::ErrorKind::BrokenPipe, "the ssh channel is closed"))
    }
}

/// What a command gets from the technician's channel.
struct Remote {
    /// The terminal, with its keys, for `replay`.
    terminal: Option<RemoteTerminal>,
    hangup: Hangup,
    /// The channel has a pty.
    tty: bool,
}

/// Runs a store command as the technician; returns the exit status.
fn run_command(
    gate: &Gate,
    tech: &str,
    command: Command,
    stdin: Vec<u8>,
    Remote { terminal, hangup, tty }: Remote,
    out: &mut dyn Write,
    err: &mut dyn Write,
) -> u32 {
    let mut stdin = std::io::Cursor::new(stdin);
    let mut ctx = Ctx {
        config: &gate.config,
        store: &gate.store,
        clock: &gate.clock,
        caller: Caller::Technician(tech.to_string()),
        out,
        err: &mut *err,
        stdin: &mut stdin,
        gate: Some(gate),
        terminal,
        hangup,
        tty,
    };
    match crate::commands::dispatch(&mut ctx, command) {
        Ok(()) => 0,
        Err(e) => {
            let _ = writeln!(err, "chaperone: {e:#}");
            if crate::is_user_error(&e) { 2 } else { 1 }
        }
    }
}

/// Reads the technician's standard input, at most one byte over [`MAX_STDIN`]: more
/// than that is not waited for, and the command's own limit refuses it.
async fn read_stdin(rx: &mut ChannelReadHalf) -> Vec<u8> {
    let mut input = Vec::new();
    while let Some(msg) = rx.wait().await {
        match msg {
            ChannelMsg::Data { data } => {
                input.extend_from_slice(&data[..data.len().min(MAX_STDIN + 1 - input.len())]);
                if input.len() > MAX_STDIN {
                    break;
                }
            }
            ChannelMsg::Eof | ChannelMsg::Close => break,
            _ => {}
        }
    }
    input
}

/// Writes command output; on a terminal, line ends become CRLF. False when the channel
/// is gone.
async fn send(tx: &ChannelWriteHalf<Msg>, ext: u32, bytes: &[u8], terminal: bool) -> bool {
    if bytes.is_empty() {
        return true;
    }
    let data = if terminal { crlf(bytes) } else { bytes.to_vec() };
    let sent = if ext == 0 { tx.data_bytes(data).await } else { tx.extended_data_bytes(ext, data).await };
    sent.is_ok()
}

async fn send_err(tx: &ChannelWriteHalf<Msg>, text: &str, terminal: bool) {
    let _ = send(tx, 1, text.as_bytes(), terminal).await;
}

async fn finish(tx: &ChannelWriteHalf<Msg>, status: u32) {
    let _ = tx.exit_status(status).await;
    let _ = tx.eof().await;
    let _ = tx.close().await;
}

fn crlf(bytes: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(bytes.len() + bytes.len() / 32);
    for &b in bytes {
        if b == b'\n' {
            out.push(b'\r');
        }
        out.push(b);
    }
    out
}

/// Splits a command line like a POSIX shell would for words: whitespace separates,
/// single quotes keep everything, double quotes keep all but `\"` and `\\`, a backslash
/// outside quotes escapes the next character. No expansion of any kind.
pub fn split_words(line: &str) -> Result<Vec<String>, String> {
    let mut words = Vec::new();
    let mut word = String::new();
    let mut in_word = false;
    let mut chars = line.chars();
    while let Some(c) = chars.next() {
        match c {
            '\'' => {
                in_word = true;
                loop {
                    match chars.next() {
                        Some('\'') => break,
                        Some(c) => word.push(c),
                        None => return Err("unterminated ' quote".into()),
                    }
                }
            }
            '"' => {
                in_word = true;
                loop {
                    match chars.next() {
                        Some('"') => break,
                        Some('\\') => match chars.next() {
                            Some(c @ ('"' | '\\')) => word.push(c),
                            Some(c) => {
                                word.push('\\');
                                word.push(c);
                            }
                            None => return Err("unterminated \" quote".into()),
                        },
                        Some(c) => word.push(c),
                        None => return Err("unterminated \" quote".into()),
                    }
                }
            }
            '\\' => {
                in_word = true;
                word.push(chars.next().ok_or("a trailing backslash")?);
            }
            c if c.is_whitespace() => {
                if in_word {
                    words.push(std::mem::take(&mut word));
                    in_word = false;
                }
            }
            c => {
                in_word = true;
                word.push(c);
            }
        }
    }
    if in_word {
        words.push(word);
    }
    Ok(words)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn words_split_like_a_shell() {
        assert_eq!(
            split_words(r#"kill 01ab --reason "wrong server, \"prod\"" x\ y 'it''s'"#).unwrap(),
            vec!["kill", "01ab", "--reason", "wrong server, \"prod\"", "x y", "its"]
        );
        assert_eq!(split_words("  ").unwrap(), Vec::<String>::new());
        assert!(split_words("'open").is_err());
        assert_eq!(split_words("a '' b").unwrap(), vec!["a", "", "b"]);
    }
}
