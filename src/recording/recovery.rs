//! Crash recovery: after chaperone was killed (kill -9, power loss), the next start finds
//! the sessions still marked live and closes each one's recordings: each is cut back to
//! what its seal covers (a frame boundary, so the last complete event line), gets an
//! `interrupted` marker, and is read once to count what it holds (the bytes each way, the
//! command, the exit status, the time of the last event), so that the session's record
//! says what the recording proves. The session's own record is then written from that
//! ([`crate::session::meta::recover`]). At most the last flush interval of output is lost;
//! a folder never becomes unreadable.

use std::io::Write;
use std::path::Path;

use super::asciicast::push_event;
use super::reader::CastReader;
use super::seal::{SEAL_FILE, checkpoints};

/// What the marker says.
pub const INTERRUPTED: &str = "interrupted: chaperone stopped without closing this recording";

/// What one recovered channel's recording holds.
#[derive(Debug, Clone, Default)]
pub struct Channel {
    /// The recording's name in the folder.
    pub file: String,
    /// The command of an `exec` channel (from the header); none for a shell.
    pub command: Option<String>,
    /// The exit status, if the recording got as far as it.
    pub exit_status: Option<i64>,
    /// What the vendor typed or sent, counted from the recorded `i` events.
    pub bytes_in: u64,
    /// What the target sent, counted from the recorded `o` events.
    pub bytes_out: u64,
    /// Milliseconds from the recording's start to its last event.
    pub last_event_ms: u64,
    /// Damaged places the count had to skip (the count is then a lower bound).
    pub damaged: usize,
}

/// What recovering a folder did and found.
#[derive(Debug, Clone, Default)]
pub struct Recovered {
    /// One line on what was cut.
    pub detail: String,
    /// The channels, in order.
    pub channels: Vec<Channel>,
}

/// Closes the recordings of one session folder (the caller seals the folder after
/// writing the session's record).
pub fn recover_folder(folder: &Path, level: i32) -> std::io::Result<Recovered> {
    let sealed = sealed_lengths(folder);
    let mut done = Vec::new();
    let mut channels = Vec::new();
    for cast in super::cast_files(folder) {
        let name = cast.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
        let length = std::fs::metadata(&cast)?.len();
        let keep = sealed.iter().find(|(f, _)| f == &name).map(|(_, l)| *l).unwrap_or(0);
        let file = std::fs::OpenOptions::new().write(true).open(&cast)?;
        if length > keep {
            file.set_len(keep)?;
            done.push(format!("{name}: cut from {length} to the sealed {keep} bytes"));
        }
        drop(file);
        append_marker(&cast, keep == 0, level)?;
        channels.push(count(&cast, name));
    }
    let detail = if done.is_empty() { "nothing lost beyond the last frame".into() } else { done.join("; ") };
    Ok(Recovered { detail, channels })
}

/// Reads a recording through once for what its session's record says of it.
fn count(cast: &Path, file: String) -> Channel {
    let mut channel = Channel { file, ..Channel::default() };
    let Ok(mut reader) = CastReader::open(cast) else {
        channel.damaged = 1;
        return channel;
    };
    channel.command = reader.header.command.clone();
    // Bytes are counted as sent (a text event's exact bytes where it has them, see
    // `export::StreamBytes`), not by the length of the text players show.
    let (mut last_event_ms, mut exit_status) = (0, None);
    let events = reader.by_ref().inspect(|event| {
        last_event_ms = event.time_ms;
        if event.code == "x" {
            exit_status = event.data.parse().ok();
        }
    });
    let mut streams = super::export::StreamBytes::new(events);
    while let Some(chunk) = streams.next_chunk() {
        // Events that do not form streams (a damaged file) count as nothing.
        let Ok(chunk) = chunk else { continue };
        match chunk.stream {
            super::export::Stream::Input => channel.bytes_in += chunk.bytes.len() as u64,
            _ => channel.bytes_out += chunk.bytes.len() as u64,
        }
    }
    drop(streams);
    (channel.last_event_ms, channel.exit_status) = (last_event_ms, exit_status);
    channel.damaged = reader.damage_count();
    channel
}

/// The longest sealed length of each file.
fn sealed_lengths(folder: &Path) -> Vec<(String, u64)> {
    let mut out: Vec<(String, u64)> = Vec::new();
    for c in checkpoints(&folder.join(SEAL_FILE)) {
        match out.iter_mut().find(|(f, _)| f == &c.file) {
            Some((_, l)) => *l = (*l).max(c.length),
            None => out.push((c.file, c.length)),
        }
    }
    out
}

/// Appends one frame holding the `interrupted` marker (and a header, if nothing of the
/// recording survived).
fn append_marker(cast: &Path, empty: bool, level: i32) -> std::io::Result<()> {
    let mut text = Vec::new();
    if empty {
        text.extend_from_slice(b"{\"version\":3,\"term\":{\"cols\":80,\"rows\":24},\"timestamp\":0}\n");
    }
    push_event(&mut text, 0, "m", INTERRUPTED);
    let frame = super::frames::checksummed(level)?.compress(&text)?;
    let mut file = std::fs::OpenOptions::new().append(true).open(cast)?;
    file.write_all(&frame)?;
    file.sync_data()
}
