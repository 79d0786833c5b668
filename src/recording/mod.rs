//! Recordings: each session channel becomes one asciicast v3 file, compressed as a
//! sequence of independent zstd frames, in `recordings/YYYY/MM/<session-id>/`.
//!
//! The relay hands events to a [`Recorder`] (a bounded queue: when the disk cannot keep
//! up, the relay waits; nothing is dropped). A writer on its own thread encodes them and
//! closes a zstd frame at least every flush interval, so a crash loses at most that much;
//! during a flood the frames are compressed on a second thread ([`frames`]). If the file
//! cannot be written, the recorder reports failure and the session ends.

pub mod asciicast;
pub mod bundle;
pub mod encoder;
pub mod export;
pub mod frames;
pub mod reader;
pub mod recovery;
pub mod replay;
pub mod seal;
pub mod text;
mod writer;

/// A small deterministic random source for the byte-soup tests (xorshift64 from `seed`):
/// the same soup on every run, so a failure reproduces; `next(n)` is below `n`.
#[cfg(test)]
pub(crate) fn xorshift(mut state: u64) -> impl FnMut(usize) -> usize {
    move |n| {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        (state % n as u64) as usize
    }
}

use std::path::{Path, PathBuf};
use std::time::Instant;

use bytes::Bytes;
use chrono::{DateTime, Datelike, Utc};
use tokio::sync::{mpsc, oneshot};
use tokio_util::sync::CancellationToken;

pub use asciicast::{Header, Term};
pub use encoder::Summary;

use crate::config::RecordingConfig;

/// File name of a session's first channel; later channels are `session.N.cast.zst`.
pub const FIRST_CAST: &str = "session.cast.zst";

/// Events waiting for the writer, per channel (each at most one SSH packet, 32 KiB, so
/// at most 2 MiB). Full means the disk (or the CPU doing compression) is behind: the
/// relay then waits, which slows the target's output to what can be recorded. Never
/// drop. What sits here when the disk fails is what the vendor saw but the file lacks.
const QUEUE_EVENTS: usize = 64;

/// Stack of a recording's writer thread: encoding, zstd and signing need little (their
/// buffers are on the heap); a thousand sessions need not map a thousand 2 MiB stacks.
const WRITER_STACK: usize = 512 * 1024;

#[derive(Debug, thiserror::Error)]
pub enum RecordingError {
    #[error("cannot create recording {path}: {source}")]
    Create { path: PathBuf, source: std::io::Error },
    #[error("cannot write recording {path}: {message}")]
    Write { path: PathBuf, message: String },
    #[error("recording {path} stopped; the session cannot go on unrecorded")]
    Stopped { path: PathBuf },
    #[error("cannot read recording {path}: {message}")]
    Read { path: PathBuf, message: String },
}

/// What happens on the channel, in the order it happens.
#[derive(Debug)]
pub enum Event {
    /// The header's content, known once the client asked for a shell or a command.
    Start {
        term: Term,
        /// The exec command's bytes as the vendor's client sent them (not always UTF-8).
        command: Option<Bytes>,
    },
    /// Target output on stdout.
    Output(Bytes),
    /// Target output on stderr (recorded as output too, decoded separately).
    Stderr(Bytes),
    /// What the vendor typed or sent.
    Input(Bytes),
    Resize {
        cols: u32,
        rows: u32,
    },
    /// The remote command's exit status (or 128 + signal number).
    Exit(i64),
    /// A note on the timeline (`m` event), e.g. why the session ended.
    Marker(String),
}

/// The sending side of one channel's recording. Cheap to clone.
#[derive(Debug, Clone)]
pub struct Recorder {
    tx: mpsc::Sender<(Instant, Event)>,
    failed: CancellationToken,
    path: PathBuf,
}

impl Recorder {
    /// Creates the recording file (the session must be refused if this fails) and starts
    /// its writer task. `title` and `started` go into the header.
    pub fn create(
        path: &Path,
        title: String,
        started: DateTime<Utc>,
        config: RecordingConfig,
        sealer: seal::Sealer,
    ) -> Result<(Recorder, oneshot::Receiver<Summary>), RecordingError> {
        let file = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(path)
            .map_err(|source| RecordingError::Create { path: path.to_path_buf(), source })?;
        let (tx, rx) = mpsc::channel(QUEUE_EVENTS);
        let failed = CancellationToken::new();
        let task = writer::Writer::new(file, path.to_path_buf(), title, started, config, failed.clone(), sealer);
        // Encoding, compression and hashing are CPU work: they run on a thread of their
        // own, off the runtime's workers that carry the SSH traffic, using the runtime
        // only for the queue and the flush timer.
        let (done, finished) = oneshot::channel();
        let runtime = tokio::runtime::Handle::current();
        std::thread::Builder::new()
            .name("recorder".into())
            .stack_size(WRITER_STACK)
            .spawn(move || {
                let _ = done.send(runtime.block_on(task.run(rx)));
            })
            .map_err(|source| RecordingError::Create { path: path.to_path_buf(), source })?;
        Ok((Recorder { tx, failed, path: path.to_path_buf() }, finished))
    }

    /// Queues an event, stamped now. Waits while the queue is full (backpressure); fails
    /// once the writer has stopped, and the caller must then end the session.
    pub async fn record(&self, event: Event) -> Result<(), RecordingError> {
        self.tx.send((Instant::now(), event)).await.map_err(|_| RecordingError::Stopped { path: self.path.clone() })
    }

    /// Resolves when writing has failed.
    pub async fn failed(&self) {
        self.failed.cancelled().await
    }
}

/// The folder of a session: `<root>/YYYY/MM/<session-id>`.
pub fn session_folder(root: &Path, started: DateTime<Utc>, session_id: &str) -> PathBuf {
    root.join(format!("{:04}", started.year())).join(format!("{:02}", started.month())).join(session_id)
}

/// The recording file of channel `n` (1-based) in a session folder.
pub fn cast_path(folder: &Path, n: usize) -> PathBuf {
    if n <= 1 { folder.join(FIRST_CAST) } else { folder.join(format!("session.{n}.cast.zst")) }
}

/// The recording files in a session folder, in channel order.
pub fn cast_files(folder: &Path) -> Vec<PathBuf> {
    let mut n = 1;
    let mut out = Vec::new();
    while cast_path(folder, n).exists() {
        out.push(cast_path(folder, n));
        n += 1;
    }
    out
}
