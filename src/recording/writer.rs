//! The writer task of one recording: drives the [`Encoder`] against the file, closing a
//! frame at least every flush interval. A write or compression error stops the task and
//! signals the session, which ends: nothing is shown unrecorded.

use std::fs::File;
use std::io::Write;
use std::path::PathBuf;
use std::time::Instant;

use chrono::{DateTime, Utc};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use super::encoder::{Encoder, Summary};
use super::frames::FrameSink;
use super::seal::{Hashing, Sealer};
use super::{Event, RecordingError};
use crate::config::RecordingConfig;

/// The recording file as the compression stage's sink: hashed as it is written, with a
/// seal checkpoint after every frame. Lives on the writer thread; a write error ends the
/// writer, and with it the session.
struct CastFile {
    file: Hashing<File>,
    /// The file's name in the folder, as checkpoints name it.
    name: String,
    sealer: Sealer,
}

impl FrameSink for CastFile {
    fn write_frame(&mut self, frame: &[u8]) -> std::io::Result<()> {
        self.file.write_all(frame)?;
        self.sealer.checkpoint(&self.name, self.file.length, &self.file.digest())
    }
}

pub(super) struct Writer {
    path: PathBuf,
    config: RecordingConfig,
    failed: CancellationToken,
    encoder: Encoder<CastFile>,
}

impl Writer {
    pub(super) fn new(
        file: File,
        path: PathBuf,
        title: String,
        started: DateTime<Utc>,
        config: RecordingConfig,
        failed: CancellationToken,
        sealer: Sealer,
    ) -> Writer {
        let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
        let sink = CastFile { file: Hashing::new(file), name, sealer };
        let encoder = Encoder::new(title, started, config, Instant::now(), sink);
        Writer { path, config, failed, encoder }
    }

    pub(super) async fn run(mut self, mut rx: mpsc::Receiver<(Instant, Event)>) -> Summary {
        let mut tick = tokio::time::interval(self.config.flush_interval);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        // Taken from the queue in batches of a quarter of it: the relay, waiting for room
        // during a flood, is then woken once per batch rather than once per event.
        let limit = rx.max_capacity().div_ceil(4);
        let mut batch = Vec::with_capacity(limit);
        loop {
            let result = tokio::select! {
                received = rx.recv_many(&mut batch, limit) => {
                    if received == 0 {
                        break;
                    }
                    batch.drain(..).try_for_each(|(at, event)| self.encoder.encode(at, event))
                }
                _ = tick.tick() => self.encoder.flush(),
            };
            if let Err(err) = result {
                // Dropping the receiver makes every later `record` fail: fail closed.
                return self.fail(err);
            }
        }
        // Every frame was sealed as it was written; what is left is to make it durable.
        let finished = self.encoder.finish().and_then(|sink| sink.file.inner.sync_data());
        match finished {
            Ok(()) => self.encoder.summary,
            Err(err) => self.fail(err),
        }
    }

    fn fail(mut self, err: std::io::Error) -> Summary {
        let err = RecordingError::Write { path: self.path.clone(), message: err.to_string() };
        tracing::error!("{err}");
        self.encoder.summary.error = Some(err.to_string());
        self.failed.cancel();
        self.encoder.summary
    }
}
