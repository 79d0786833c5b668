//! The writer task of one recording: drives the [`Encoder`] against the file, closing a
//! frame at least every flush interval. A write error stops the task and signals the
//! session, which ends: nothing is shown unrecorded.

use std::fs::File;
use std::path::PathBuf;
use std::time::Instant;

use chrono::{DateTime, Utc};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use super::encoder::{Encoder, Summary};
use super::seal::{Hashing, Sealer};
use super::{Event, RecordingError};
use crate::config::RecordingConfig;

pub(super) struct Writer {
    /// The recording file, hashed as it is written, for the seal.
    file: Hashing<File>,
    /// The file's name in the folder, as checkpoints name it.
    name: String,
    sealer: Sealer,
    /// How much of the file the last checkpoint covers.
    sealed: u64,
    path: PathBuf,
    config: RecordingConfig,
    failed: CancellationToken,
    encoder: Encoder,
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
        let encoder = Encoder::new(title, started, config, Instant::now());
        let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
        Writer { file: Hashing::new(file), name, sealer, sealed: 0, path, config, failed, encoder }
    }

    /// A checkpoint for every frame that reached the file since the last one.
    fn seal(&mut self) -> std::io::Result<()> {
        if self.file.length == self.sealed {
            return Ok(());
        }
        self.sealer.checkpoint(&self.name, self.file.length, &self.file.digest())?;
        self.sealed = self.file.length;
        Ok(())
    }

    pub(super) async fn run(mut self, mut rx: mpsc::Receiver<(Instant, Event)>) -> Summary {
        let mut tick = tokio::time::interval(self.config.flush_interval);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            let result = tokio::select! {
                received = rx.recv() => match received {
                    Some((at, event)) => self.encoder.encode(at, event, &mut self.file),
                    None => break,
                },
                _ = tick.tick() => self.encoder.flush(&mut self.file),
            }
            .and_then(|()| self.seal());
            if let Err(err) = result {
                // Dropping the receiver makes every later `record` fail: fail closed.
                return self.fail(err);
            }
        }
        match self.encoder.finish(&mut self.file).and_then(|()| self.file.inner.sync_data()).and_then(|()| self.seal())
        {
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
