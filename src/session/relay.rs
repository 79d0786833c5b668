//! One session channel, relayed between the vendor and the target and recorded.
//!
//! Two loops, one per direction, so that each waits only on its own receiver's flow
//! control: vendor→target waits for the target's window, target→vendor for the vendor's.
//! Every byte is handed to the recorder before it is forwarded: nothing reaches either
//! side unrecorded. Payloads stay `Bytes` from russh to russh; recording them is a
//! reference-count bump.

use russh::server::{Handle, Msg as ServerMsg};
use russh::{Channel, ChannelId, ChannelMsg, ChannelReadHalf, ChannelWriteHalf, Sig, client};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use tokio::sync::{OwnedSemaphorePermit, Semaphore, broadcast, mpsc};

use super::listing::Request;
use super::{Input, Live, Notice};
use crate::gate::{Gate, Refusals, Refused, shown};
use crate::mirror::Mirror;
use crate::policy::{Transfer, contains_sftp_init, env_allowed, is_file_transfer, sniff_transfer};
use crate::recording::{Event, Recorder, Term};
use bytes::Bytes;

pub struct ChannelRelay {
    pub vendor: Channel<ServerMsg>,
    pub upstream: Channel<client::Msg>,
    /// For what the channel's write half cannot send (exit signals).
    pub server: Handle,
    pub recorder: Recorder,
    /// Warnings to show and the session's end (window over, booking cancelled, shutdown).
    pub notices: broadcast::Receiver<Notice>,
    /// Shown on the vendor's terminal (stderr) when a shell starts.
    pub banner: String,
    /// The session as watchers see it: output goes to its mirror; its input state gates
    /// the vendor's keystrokes.
    pub live: Arc<Live>,
    /// A technician's keystrokes (the session's first channel only).
    pub takeover: Option<mpsc::Receiver<Bytes>>,
    /// Room for vendor input waiting for the target, shared by the session's channels
    /// (see [`input_budget`]).
    pub input: Arc<Semaphore>,
    /// For the audit entry of a refused shell or command.
    pub gate: Arc<Gate>,
    /// The channel's number in the session (its recording's), as watchers name it.
    pub number: usize,
    /// What the vendor's client sent while the channel waited for a technician; relayed
    /// first, in order.
    pub early: Vec<ChannelMsg>,
    /// This channel's own mirror (watchers follow one channel at a time).
    pub mirror: Mirror,
    /// The connection's refusals: their markers go into the first recording that has
    /// started, and a transfer recognised here is one of them.
    pub refusals: Arc<Refusals>,
}

/// Why a relay ended, which decides how the two sides are closed.
#[derive(Debug, PartialEq, Eq)]
enum End {
    /// The target closed the channel (the command ended).
    Target,
    /// The vendor closed the channel or went away.
    Vendor,
    /// The target refused to start the shell or command.
    Refused,
    /// The recording cannot be written: the session must not go on.
    RecordingFailed,
    /// The session was ended (window over, booking cancelled, shutdown); the reason.
    Ended(String),
    /// The shell or command was not started because the session's input is held
    /// (frozen, taken over, nobody watching); the reason.
    Held(String),
    /// The vendor's first bytes opened a file transfer protocol (the vendor was told).
    FileTransfer,
}

impl ChannelRelay {
    pub async fn run(self) {
        let ChannelRelay {
            vendor,
            upstream,
            server,
            recorder,
            mut notices,
            banner,
            live,
            takeover,
            input,
            gate,
            number,
            early,
            mirror,
            refusals,
        } = self;
        let vendor_id = vendor.id();
        let terminal = AtomicBool::new(false);
        let requested = AtomicBool::new(false);
        let started = AtomicBool::new(false);
        let (vendor_rx, vendor_tx) = vendor.split();
        let (upstream_rx, upstream_tx) = upstream.split();
        let shell = Shell {
            vendor: &vendor_tx,
            banner: &banner,
            live: &live,
            terminal: &terminal,
            requested: &requested,
            gate: &gate,
            number,
            id: vendor_id,
            mirror: &mirror,
            started: &started,
            refusals: &refusals,
        };

        let end = tokio::select! {
            end = to_target(vendor_rx, early, &upstream_tx, &recorder, shell, takeover, input) => end,
            end = to_vendor(upstream_rx, &vendor_tx, &server, &recorder, &live, &mirror) => end,
            end = follow_notices(&mut notices, &vendor_tx, &recorder, &terminal, &live) => end,
            _ = recorder.failed() => End::RecordingFailed,
        };

        // Refusals noted while this channel ended are on its timeline too.
        if started.load(Ordering::Relaxed) {
            record_refusals(&refusals, &recorder).await;
        }
        let notice = match &end {
            End::Target | End::Vendor | End::FileTransfer => None,
            End::Refused => Some("the target refused to start the shell or command"),
            End::RecordingFailed => Some("the recording cannot be written, so the session has been ended"),
            End::Ended(reason) | End::Held(reason) => Some(reason.as_str()),
        };
        if let Some(notice) = notice {
            tell_vendor(&vendor_tx, &recorder, notice).await;
        }
        if end != End::Vendor {
            let _ = vendor_tx.eof().await;
            let _ = vendor_tx.close().await;
        }
        if end != End::Target {
            let _ = upstream_tx.close().await;
        }
        live.channel_closed(vendor_id);
        tracing::debug!(channel = %vendor_id, "relay ended: {end:?}");
    }
}

/// Records the refusals' markers not recorded yet (the recording has started). A
/// failure to record is the relay's to notice on the next event.
async fn record_refusals(refusals: &Refusals, recorder: &Recorder) {
    for text in refusals.take_markers() {
        let _ = recorder.record(Event::Marker(text)).await;
    }
}

/// Shows a notice on the vendor's terminal (stderr, on a line of its own) and records it
/// as a marker, so a replay shows it where it happened.
async fn tell_vendor(vendor: &ChannelWriteHalf<ServerMsg>, recorder: &Recorder, text: &str) {
    let _ = recorder.record(Event::Marker(text.to_string())).await;
    let line = format!("\r\nchaperone: {text}\r\n");
    let _ = vendor.extended_data_bytes(1, line.into_bytes()).await;
}

/// Acts on the session's notices; returns when one ends the session.
async fn follow_notices(
    notices: &mut broadcast::Receiver<Notice>,
    vendor: &ChannelWriteHalf<ServerMsg>,
    recorder: &Recorder,
    terminal: &AtomicBool,
    live: &Live,
) -> End {
    // Ended before this channel started: the announcement went by already.
    if let Some(reason) = live.ended() {
        return End::Ended(reason);
    }
    loop {
        match notices.recv().await {
            Ok(Notice::Warn(text)) => tell_vendor(vendor, recorder, &text).await,
            Ok(Notice::Mark(text)) => {
                let _ = recorder.record(Event::Marker(text)).await;
            }
            Ok(Notice::Status(text)) => {
                let _ = recorder.record(Event::Marker(text.clone())).await;
                // A title means nothing to a command's stderr (often a file): terminals only.
                if terminal.load(Ordering::Relaxed) {
                    let clean: String = text.chars().filter(|c| !c.is_control()).collect();
                    let title = format!("\x1b]0;chaperone: {clean}\x07");
                    let _ = vendor.extended_data_bytes(1, title.into_bytes()).await;
                }
            }
            Ok(Notice::End(reason)) => return End::Ended(reason),
            Err(broadcast::error::RecvError::Lagged(_)) => continue,
            // The session no longer sends notices; the other branches end the relay.
            Err(broadcast::error::RecvError::Closed) => std::future::pending::<()>().await,
        }
    }
}

/// Vendor input waiting for the target, in bytes, for all of a session's channels
/// together. Each channel is drained into its queue at once because russh's connection
/// loop, which would otherwise wait on us, also carries the vendor's window adjustments:
/// while it waits, output to the vendor stalls, and a full-duplex transfer
/// (`ssh host cat < big > copy`) would deadlock. At the budget the loop does wait
/// (backpressure on an upload faster than the target). One budget per session, not per
/// channel: a vendor who opens channels whose commands never read their input cannot make
/// the bastion hold more than this for the session.
const INPUT_BUDGET: usize = 64 * 1024 * 1024;

/// A session's room for queued vendor input, shared by its channel relays.
pub fn input_budget() -> Arc<Semaphore> {
    Arc::new(Semaphore::new(INPUT_BUDGET))
}

/// Vendor → target: input, requests, EOF. Returns when the vendor closes the channel or
/// a side fails.
async fn to_target(
    mut rx: ChannelReadHalf,
    early: Vec<ChannelMsg>,
    tx: &ChannelWriteHalf<client::Msg>,
    recorder: &Recorder,
    shell: Shell<'_>,
    mut takeover: Option<mpsc::Receiver<Bytes>>,
    budget: Arc<Semaphore>,
) -> End {
    // Each message with the input state it arrived in: input typed while held stays
    // discarded even if it waited behind input the target had not taken yet, and the
    // queue drains after the hold ended.
    let (queue_tx, mut queue) = mpsc::unbounded_channel::<(ChannelMsg, Option<OwnedSemaphorePermit>, Input)>();
    // Bounded by the read-ahead of a waiting channel (a few requests); none of it is typed
    // input (a waiting channel's data is discarded).
    for msg in early {
        let _ = queue_tx.send((msg, None, Input::Open));
    }
    let live = shell.live;
    let reader = async move {
        while let Some(msg) = rx.wait().await {
            let permit = match &msg {
                ChannelMsg::Data { data } => {
                    let bytes = data.len().clamp(1, INPUT_BUDGET) as u32;
                    match budget.clone().acquire_many_owned(bytes).await {
                        Ok(permit) => Some(permit),
                        Err(_) => return,
                    }
                }
                _ => None,
            };
            let close = matches!(msg, ChannelMsg::Close);
            if queue_tx.send((msg, permit, live.input())).is_err() || close {
                return;
            }
        }
    };
    let writer = async {
        let mut term = Term { cols: 80, rows: 24, kind: None };
        // The input state the vendor was last told about, so a held key is told once.
        let mut told = Input::Open;
        // A window change is input too: two numbers of the vendor's choosing and a signal
        // to the program in front, as often as the vendor likes. While input is held it
        // waits, not lost: the newest size (each replaces the last, so one message at
        // most) reaches the target when input opens again.
        let mut held_size: Option<ChannelMsg> = None;
        let mut changed = shell.live.subscribe();
        let mut sniff = Sniff::default();
        let mut refused = shell.refusals.subscribe();
        loop {
            let forwarded = tokio::select! {
                queued = queue.recv() => match queued {
                    Some((size @ ChannelMsg::WindowChange { .. }, _permit, _)) if shell.live.input() != Input::Open => {
                        held_size = Some(size);
                        Forwarded::Yes
                    }
                    // A signal is input too: held with the keystrokes.
                    Some((ChannelMsg::Signal { .. }, _permit, arrived)) if arrived != Input::Open => Forwarded::Yes,
                    Some((ChannelMsg::Data { data }, _permit, arrived)) => match (arrived, shell.live.input()) {
                        (Input::Open, Input::Open) => {
                            told = Input::Open;
                            if sniff.refused {
                                // Refused by the gate: nothing runs on the target to read it.
                                continue;
                            }
                            if let Some(transfer) = sniff.first_bytes(&data, &shell) {
                                refuse_transfer(transfer, &sniff, &shell).await;
                                return End::FileTransfer;
                            }
                            forward_to_target(ChannelMsg::Data { data }, tx, recorder, &mut term, &shell).await
                        }
                        (Input::Open, held) | (held, _) => {
                            if held != told {
                                let text = format!("your input is discarded ({})", held.describe());
                                tell_vendor(shell.vendor, recorder, &text).await;
                                told = held;
                            }
                            Forwarded::Yes
                        }
                    },
                    Some((msg, _permit, _)) => {
                        sniff.request(&msg);
                        forward_to_target(msg, tx, recorder, &mut term, &shell).await
                    }
                    None => return End::Vendor,
                },
                // (The sender lives in `Live`, which outlives this relay.)
                Ok(()) = changed.changed(), if held_size.is_some() => match (shell.live.input(), held_size.take()) {
                    (Input::Open, Some(size)) => forward_to_target(size, tx, recorder, &mut term, &shell).await,
                    (_, size) => {
                        held_size = size;
                        Forwarded::Yes
                    }
                },
                // A refusal elsewhere on the connection: on this channel's timeline.
                Ok(()) = refused.changed(), if shell.started.load(Ordering::Relaxed) => {
                    record_refusals(shell.refusals, recorder).await;
                    Forwarded::Yes
                }
                // The technician types: recorded as input, like the vendor's.
                Some(keys) = async { takeover.as_mut()?.recv().await }, if takeover.is_some() => {
                    if matches!(shell.live.input(), Input::TakenOver(_)) {
                        forward_to_target(ChannelMsg::Data { data: keys }, tx, recorder, &mut term, &shell).await
                    } else {
                        Forwarded::Yes
                    }
                }
            };
            match forwarded {
                Forwarded::Yes => {}
                Forwarded::Closed => return End::Vendor,
                Forwarded::RecordingFailed => return End::RecordingFailed,
                Forwarded::TargetGone => return End::Target,
                Forwarded::Held(reason) => return End::Held(reason),
            }
        }
    };
    let mut writer = std::pin::pin!(writer);
    tokio::select! {
        end = &mut writer => end,
        // The vendor is done sending: forward what is queued, then end.
        () = reader => writer.await,
    }
}

enum Forwarded {
    Yes,
    Closed,
    RecordingFailed,
    TargetGone,
    /// The shell or command was refused: the session's input is held.
    Held(String),
}

/// How much of a channel's first input is looked at for a transfer protocol's opening:
/// a disguised command's client speaks first, at once; a transfer hidden behind this much
/// of a shell script is beyond what sniffing is for.
const SNIFF_BYTES: usize = 64 * 1024;

/// Watching the vendor's first bytes on a shell or command without a terminal for a
/// transfer protocol that the command line did not show ([`sniff_transfer`]).
#[derive(Default)]
struct Sniff {
    /// The command (or "a shell") the channel runs, for the refusal's entry.
    command: Option<String>,
    /// The gate refused what the channel asked to run (file transfer, subsystem): its
    /// input goes nowhere.
    refused: bool,
    /// Input seen so far; sniffing stops at `SNIFF_BYTES`.
    seen: usize,
}

impl Sniff {
    /// Notes what the channel runs.
    fn request(&mut self, msg: &ChannelMsg) {
        match msg {
            ChannelMsg::Exec { command, .. } if is_file_transfer(command) => self.refused = true,
            ChannelMsg::RequestSubsystem { .. } => self.refused = true,
            ChannelMsg::Exec { command, .. } => self.command = Some(String::from_utf8_lossy(command).into_owned()),
            ChannelMsg::RequestShell { .. } => self.command = Some("a shell".into()),
            _ => {}
        }
    }

    /// The transfer protocol `data` opens, if any. On a shell or command without a
    /// terminal, the first chunk may open any of them, and SFTP's init is looked for
    /// anywhere in the first `SNIFF_BYTES` (a shell reading a script first). A chunk that
    /// starts with SFTP's init ends any channel, a terminal's too (`stty raw` first): the
    /// check is nine bytes, and nobody types NULs in that order.
    fn first_bytes(&mut self, data: &[u8], shell: &Shell<'_>) -> Option<Transfer> {
        self.command.as_ref()?;
        let first = self.seen == 0;
        let early = self.seen < SNIFF_BYTES;
        self.seen = self.seen.saturating_add(data.len());
        let sniffed = sniff_transfer(data);
        if sniffed == Some(Transfer::Sftp) {
            return sniffed;
        }
        if shell.terminal.load(Ordering::Relaxed) || !early {
            return None;
        }
        if first && sniffed.is_some() {
            return sniffed;
        }
        contains_sftp_init(data).then_some(Transfer::Sftp)
    }
}

/// Ends a channel whose input opened a transfer protocol: audited and marked as a
/// refusal, told on the vendor's stderr; its bytes never reach the target.
async fn refuse_transfer(transfer: Transfer, sniff: &Sniff, shell: &Shell<'_>) {
    let command = sniff.command.as_deref().unwrap_or_default();
    let detail = format!(
        "file transfer ({}) refused: the {} protocol was spoken on the channel of {}",
        transfer.name(),
        transfer.name(),
        shown(command)
    );
    shell.refusals.refuse(Refused::FileTransfer, detail);
    let line =
        format!("\r\nchaperone: file transfer ({}) is not allowed; this channel has been closed\r\n", transfer.name());
    let _ = shell.vendor.extended_data_bytes(1, line.into_bytes()).await;
}

/// The vendor's side of the channel as the vendor→target direction needs it: the
/// banner a starting shell shows, and the session's input state and mirror.
struct Shell<'a> {
    vendor: &'a ChannelWriteHalf<ServerMsg>,
    banner: &'a str,
    live: &'a Live,
    /// Set when the vendor asked for a pty: the channel is a terminal.
    terminal: &'a AtomicBool,
    /// Set by the channel's first shell or command request: a channel runs one, and a
    /// later request would only rename it in the listing and the recording.
    requested: &'a AtomicBool,
    gate: &'a Gate,
    /// The channel's number in the session and its vendor-side id (its listing's key).
    number: usize,
    id: ChannelId,
    mirror: &'a Mirror,
    /// Set when the recording has its start (shell, command, or what was refused
    /// instead): markers may follow.
    started: &'a AtomicBool,
    refusals: &'a Refusals,
}

impl Shell<'_> {
    /// Notes the channel's request; if the session's input is held right now (the
    /// decision is taken here, as the request would be forwarded, not when the channel
    /// opened), refuses it: the reason, audited and marked.
    fn held(&self, request: Request) -> Option<String> {
        self.live.channel_request(self.id, request.clone());
        let input = self.live.input();
        if input == Input::Open {
            return None;
        }
        let reason = super::supervision::refuse_channel(self.gate, self.live, self.number, &request, &input);
        self.live.channel_refused(self.id, reason.clone());
        Some(reason)
    }
}

/// The recording has its start: refusals noted so far follow it, later ones as they come.
async fn started(shell: &Shell<'_>, recorder: &Recorder) {
    shell.started.store(true, Ordering::Relaxed);
    record_refusals(shell.refusals, recorder).await;
}

/// Records and forwards one message from the vendor.
async fn forward_to_target(
    msg: ChannelMsg,
    tx: &ChannelWriteHalf<client::Msg>,
    recorder: &Recorder,
    term: &mut Term,
    shell: &Shell<'_>,
) -> Forwarded {
    let recorded = |result: Result<(), crate::recording::RecordingError>| result.is_ok();
    let sent = match msg {
        ChannelMsg::Data { data } => {
            if !recorded(recorder.record(Event::Input(data.clone())).await) {
                return Forwarded::RecordingFailed;
            }
            tx.data_bytes(data).await
        }
        ChannelMsg::Eof => tx.eof().await,
        ChannelMsg::Close => return Forwarded::Closed,
        ChannelMsg::RequestPty { term: kind, col_width, row_height, pix_width, pix_height, terminal_modes, .. } => {
            *term = Term { cols: col_width, rows: row_height, kind: Some(kind.clone()) };
            shell.terminal.store(true, Ordering::Relaxed);
            shell.live.channel_pty(shell.id);
            shell.mirror.set_terminal();
            shell.mirror.resize(col_width, row_height);
            tx.request_pty(false, &kind, col_width, row_height, pix_width, pix_height, &terminal_modes).await
        }
        ChannelMsg::SetEnv { variable_name, variable_value, .. } if env_allowed(&variable_name) => {
            tx.set_env(false, variable_name, variable_value).await
        }
        // A channel runs its first request only (a later one would rename what runs).
        ChannelMsg::RequestShell { .. } | ChannelMsg::Exec { .. } | ChannelMsg::RequestSubsystem { .. }
            if shell.requested.load(Ordering::Relaxed) =>
        {
            Ok(())
        }
        ChannelMsg::RequestShell { .. } => {
            shell.requested.store(true, Ordering::Relaxed);
            if let Some(reason) = shell.held(Request::Shell) {
                return Forwarded::Held(reason);
            }
            if !recorded(recorder.record(Event::Start { term: term.clone(), command: None }).await) {
                return Forwarded::RecordingFailed;
            }
            // The banner is output the vendor sees: recorded like the rest.
            let banner = bytes::Bytes::copy_from_slice(shell.banner.as_bytes());
            if !recorded(recorder.record(Event::Stderr(banner.clone())).await) {
                return Forwarded::RecordingFailed;
            }
            let _ = shell.vendor.extended_data_bytes(1, banner).await;
            started(shell, recorder).await;
            tx.request_shell(true).await
        }
        // Refused by the gate; the vendor's client sees the failure and closes. Recorded
        // (what was asked, and the refusal's marker), not sent.
        ChannelMsg::Exec { command, .. } if is_file_transfer(&command) => {
            shell.requested.store(true, Ordering::Relaxed);
            let exact = bytes::Bytes::copy_from_slice(&command);
            if !recorded(recorder.record(Event::Start { term: term.clone(), command: Some(exact) }).await) {
                return Forwarded::RecordingFailed;
            }
            started(shell, recorder).await;
            Ok(())
        }
        ChannelMsg::RequestSubsystem { name, .. } => {
            shell.requested.store(true, Ordering::Relaxed);
            let shown = bytes::Bytes::from(format!("(subsystem {name})"));
            if !recorded(recorder.record(Event::Start { term: term.clone(), command: Some(shown) }).await) {
                return Forwarded::RecordingFailed;
            }
            started(shell, recorder).await;
            Ok(())
        }
        ChannelMsg::Exec { command, .. } => {
            shell.requested.store(true, Ordering::Relaxed);
            let shown = String::from_utf8_lossy(&command).into_owned();
            if let Some(reason) = shell.held(Request::Exec(shown)) {
                return Forwarded::Held(reason);
            }
            let exact = bytes::Bytes::copy_from_slice(&command);
            if !recorded(recorder.record(Event::Start { term: term.clone(), command: Some(exact) }).await) {
                return Forwarded::RecordingFailed;
            }
            started(shell, recorder).await;
            tx.exec(true, command).await
        }
        ChannelMsg::WindowChange { col_width, row_height, pix_width, pix_height } => {
            if !recorded(recorder.record(Event::Resize { cols: col_width, rows: row_height }).await) {
                return Forwarded::RecordingFailed;
            }
            shell.mirror.resize(col_width, row_height);
            tx.window_change(col_width, row_height, pix_width, pix_height).await
        }
        // A signal is input too: held with the keystrokes.
        ChannelMsg::Signal { signal } if shell.live.input() == Input::Open => tx.signal(signal).await,
        // Refused by the gate (subsystems, X11, agent, other env) or not ours to relay.
        _ => Ok(()),
    };
    match sent {
        Ok(()) => Forwarded::Yes,
        // The target side is gone; the other direction sees its close.
        Err(_) => Forwarded::TargetGone,
    }
}

/// Target → vendor: output, stderr, exit status or signal, EOF. Returns when the target
/// closes the channel.
///
/// The target's EOF is passed on only after its exit status (or, without one, with its
/// close). OpenSSH's sshd sends EOF first, the exit status when the command has been
/// reaped, then its close; an OpenSSH client whose input is done answers our EOF with its
/// own close at once, and russh replies to that close on the spot: the exit status that
/// arrives a moment later could no longer be sent, the client exited 255 and the recording
/// had none. Seen with ten commands at once through one ControlMaster, where the client's
/// answer comes quicker than the target's status. Once the exit status went first, the
/// client has it before it can close.
async fn to_vendor(
    mut rx: ChannelReadHalf,
    tx: &ChannelWriteHalf<ServerMsg>,
    server: &Handle,
    recorder: &Recorder,
    live: &Live,
    mirror: &Mirror,
) -> End {
    let mut eof = Eof::NotYet;
    while let Some(msg) = rx.wait().await {
        let sent = match msg {
            // Recorded first, then mirrored (never waits), then sent.
            ChannelMsg::Data { data } => {
                if recorder.record(Event::Output(data.clone())).await.is_err() {
                    return End::RecordingFailed;
                }
                mirror.output(data.clone());
                tx.data_bytes(data).await.is_ok()
            }
            ChannelMsg::ExtendedData { data, ext } => {
                if recorder.record(Event::Stderr(data.clone())).await.is_err() {
                    return End::RecordingFailed;
                }
                mirror.output(data.clone());
                tx.extended_data_bytes(ext, data).await.is_ok()
            }
            ChannelMsg::Eof if eof == Eof::StatusSent => {
                eof = Eof::Sent;
                tx.eof().await.is_ok()
            }
            ChannelMsg::Eof => {
                eof = Eof::Held;
                true
            }
            ChannelMsg::Close => {
                if eof == Eof::Held {
                    let _ = tx.eof().await;
                }
                break;
            }
            ChannelMsg::ExitStatus { exit_status } => {
                if recorder.record(Event::Exit(i64::from(exit_status))).await.is_err() {
                    return End::RecordingFailed;
                }
                live.channel_exit(tx.id(), i64::from(exit_status));
                tx.exit_status(exit_status).await.is_ok() && eof.status_sent(tx).await
            }
            ChannelMsg::ExitSignal { signal_name, core_dumped, error_message, lang_tag } => {
                if recorder.record(Event::Exit(128 + signal_number(&signal_name))).await.is_err() {
                    return End::RecordingFailed;
                }
                live.channel_exit(tx.id(), 128 + signal_number(&signal_name));
                server.exit_signal_request(tx.id(), signal_name, core_dumped, error_message, lang_tag).await.is_ok()
                    && eof.status_sent(tx).await
            }
            // Only shell and exec are sent wanting a reply: a failure means no session.
            ChannelMsg::Failure => return End::Refused,
            _ => true,
        };
        if !sent {
            return End::Vendor;
        }
    }
    End::Target
}

/// Where the target's EOF is on its way to the vendor (see [`to_vendor`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Eof {
    /// Neither EOF nor exit status yet.
    NotYet,
    /// The target sent EOF; it waits for the exit status (or the close).
    Held,
    /// The exit status went to the vendor; an EOF now goes straight on.
    StatusSent,
    /// The vendor has the EOF.
    Sent,
}

impl Eof {
    /// The exit status (or signal) has gone to the vendor: a held EOF follows it.
    async fn status_sent(&mut self, tx: &ChannelWriteHalf<ServerMsg>) -> bool {
        match *self {
            Eof::Held => {
                *self = Eof::Sent;
                tx.eof().await.is_ok()
            }
            Eof::NotYet => {
                *self = Eof::StatusSent;
                true
            }
            Eof::StatusSent | Eof::Sent => true,
        }
    }
}

/// The number a shell reports for a signal (`128 + n` is the conventional exit status).
fn signal_number(sig: &Sig) -> i64 {
    match sig {
        Sig::HUP => 1,
        Sig::INT => 2,
        Sig::QUIT => 3,
        Sig::ILL => 4,
        Sig::ABRT => 6,
        Sig::FPE => 8,
        Sig::KILL => 9,
        Sig::USR1 => 10,
        Sig::SEGV => 11,
        Sig::PIPE => 13,
        Sig::ALRM => 14,
        Sig::TERM => 15,
        Sig::Custom(_) => 0,
    }
}
