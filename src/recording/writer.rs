//! The writer task of one recording: encodes events to asciicast v3 lines and writes them
//! as independent zstd frames, one at least every flush interval (and whenever the
//! pending text passes [`FRAME_BYTES`]).

use std::fs::File;
use std::io::Write;
use std::path::PathBuf;
use std::time::Instant;

use chrono::{DateTime, Utc};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use super::asciicast::{EventClock, Header, Term, Utf8Carry, push_event};
use super::{Event, RecordingError};
use crate::config::RecordingConfig;

/// Pending encoded text that triggers a frame before the interval is up: large enough for
/// good compression, small enough that a busy session's memory stays flat.
const FRAME_BYTES: usize = 256 * 1024;

/// What a finished recording reports to its session.
#[derive(Debug, Default, Clone)]
pub struct Summary {
    /// Raw bytes the vendor sent.
    pub bytes_in: u64,
    /// Raw bytes the target sent (stdout and stderr).
    pub bytes_out: u64,
    pub exit_status: Option<i64>,
    pub command: Option<String>,
    /// Set when writing failed; the session was ended because of it.
    pub error: Option<String>,
}

pub(super) struct Writer {
    file: File,
    path: PathBuf,
    title: String,
    started: DateTime<Utc>,
    config: RecordingConfig,
    failed: CancellationToken,
    header: Option<Header>,
    pending_term: Term,
    clock: EventClock,
    stdout: Utf8Carry,
    stderr: Utf8Carry,
    input: Utf8Carry,
    text: String,
    buf: Vec<u8>,
    compressor: Option<zstd::bulk::Compressor<'static>>,
    compressed: Vec<u8>,
    summary: Summary,
}

impl Writer {
    pub(super) fn new(
        file: File,
        path: PathBuf,
        title: String,
        started: DateTime<Utc>,
        config: RecordingConfig,
        failed: CancellationToken,
    ) -> Writer {
        Writer {
            file,
            path,
            title,
            started,
            config,
            failed,
            header: None,
            pending_term: Term { cols: 80, rows: 24, kind: None },
            clock: EventClock::new(Instant::now()),
            stdout: Utf8Carry::default(),
            stderr: Utf8Carry::default(),
            input: Utf8Carry::default(),
            text: String::new(),
            buf: Vec::with_capacity(4096),
            compressor: None,
            compressed: Vec::new(),
            summary: Summary::default(),
        }
    }

    pub(super) async fn run(mut self, mut rx: mpsc::Receiver<(Instant, Event)>) -> Summary {
        let mut tick = tokio::time::interval(self.config.flush_interval);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            let result = tokio::select! {
                received = rx.recv() => match received {
                    Some((at, event)) => self.encode(at, event),
                    None => break,
                },
                _ = tick.tick() => self.flush_frame(),
            };
            if let Err(err) = result {
                tracing::error!("{err}");
                self.summary.error = Some(err.to_string());
                self.failed.cancel();
                // Dropping the receiver makes every later `record` fail: fail closed.
                return self.summary;
            }
        }
        if let Err(err) = self.finish() {
            tracing::error!("{err}");
            self.summary.error = Some(err.to_string());
            self.failed.cancel();
        }
        self.summary
    }

    fn encode(&mut self, at: Instant, event: Event) -> Result<(), RecordingError> {
        match event {
            Event::Start { term, command } => {
                self.summary.command.clone_from(&command);
                self.write_header(Some(term), command);
                return Ok(());
            }
            Event::Resize { cols, rows } if self.header.is_none() => {
                self.pending_term.cols = cols;
                self.pending_term.rows = rows;
                return Ok(());
            }
            _ => {}
        }
        if self.header.is_none() {
            self.write_header(None, None);
        }
        let interval = self.clock.interval_ms(at);
        let mut text = std::mem::take(&mut self.text);
        text.clear();
        match event {
            Event::Output(data) => {
                self.summary.bytes_out += data.len() as u64;
                self.stdout.decode_into(&data, &mut text);
                push_event(&mut self.buf, interval, "o", &text);
            }
            Event::Stderr(data) => {
                self.summary.bytes_out += data.len() as u64;
                self.stderr.decode_into(&data, &mut text);
                push_event(&mut self.buf, interval, "o", &text);
            }
            Event::Input(data) => {
                self.summary.bytes_in += data.len() as u64;
                self.input.decode_into(&data, &mut text);
                push_event(&mut self.buf, interval, "i", &text);
            }
            Event::Resize { cols, rows } => push_event(&mut self.buf, interval, "r", &format!("{cols}x{rows}")),
            Event::Exit(status) => {
                self.summary.exit_status = Some(status);
                push_event(&mut self.buf, interval, "x", &status.to_string());
            }
            Event::Marker(label) => push_event(&mut self.buf, interval, "m", &label),
            Event::Start { .. } => {}
        }
        self.text = text;
        if self.buf.len() >= FRAME_BYTES { self.flush_frame() } else { Ok(()) }
    }

    fn write_header(&mut self, term: Option<Term>, command: Option<String>) {
        let mut term = term.unwrap_or_else(|| self.pending_term.clone());
        if term.cols == 0 || term.rows == 0 {
            term.cols = self.pending_term.cols;
            term.rows = self.pending_term.rows;
        }
        let header = Header::new(term, self.started.timestamp(), command, self.title.clone());
        // A header always serializes; the fallback keeps the line valid JSON regardless.
        let line = serde_json::to_string(&header).unwrap_or_else(|_| "{\"version\":3}".into());
        self.buf.extend_from_slice(line.as_bytes());
        self.buf.push(b'\n');
        self.header = Some(header);
    }

    /// Compresses the pending text as one independent zstd frame and appends it.
    fn flush_frame(&mut self) -> Result<(), RecordingError> {
        if self.buf.is_empty() {
            return Ok(());
        }
        let write_err = |message: String| RecordingError::Write { path: self.path.clone(), message };
        if self.compressor.is_none() {
            self.compressor =
                Some(zstd::bulk::Compressor::new(self.config.zstd_level).map_err(|e| write_err(e.to_string()))?);
        }
        let Some(compressor) = self.compressor.as_mut() else {
            return Ok(());
        };
        self.compressed.clear();
        self.compressed.reserve(zstd::zstd_safe::compress_bound(self.buf.len()));
        compressor.compress_to_buffer(&self.buf, &mut self.compressed).map_err(|e| write_err(e.to_string()))?;
        self.file.write_all(&self.compressed).map_err(|e| write_err(e.to_string()))?;
        self.buf.clear();
        Ok(())
    }

    fn finish(&mut self) -> Result<(), RecordingError> {
        if self.header.is_none() {
            self.write_header(None, None);
        }
        let mut tail = String::new();
        self.stdout.finish(&mut tail);
        self.stderr.finish(&mut tail);
        if !tail.is_empty() {
            let interval = self.clock.interval_ms(Instant::now());
            push_event(&mut self.buf, interval, "o", &tail);
        }
        self.flush_frame()?;
        self.file.sync_data().map_err(|e| RecordingError::Write { path: self.path.clone(), message: e.to_string() })
    }
}
