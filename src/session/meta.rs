//! A session's record: the folder, `session.json` beside the recordings, and the store
//! row. Written when the session starts (state `live`, so a crash leaves a trace) and
//! again when it ends.

use std::net::SocketAddr;
use std::path::PathBuf;

use chrono::{DateTime, Utc};
use serde::Serialize;

use crate::gate::Gate;
use crate::policy::Admission;
use crate::recording::{self, Summary};
use crate::store::SessionRow;

#[derive(Debug, Clone)]
pub struct SessionMeta {
    pub id: String,
    pub vendor: String,
    pub target: String,
    pub account: String,
    pub client_address: String,
    pub started: DateTime<Utc>,
    pub folder: PathBuf,
    pub booking: i64,
    pub booking_label: String,
    /// Seals the folder's files as they are written, and all of them at the end.
    pub sealer: crate::recording::seal::Sealer,
}

#[derive(Debug, thiserror::Error)]
pub enum MetaError {
    #[error("cannot create recording folder {path}: {source}")]
    Folder { path: PathBuf, source: std::io::Error },
    #[error("cannot write {path}: {source}")]
    Write { path: PathBuf, source: std::io::Error },
    #[error("cannot start the seal in {path}: {source}")]
    Seal { path: PathBuf, source: std::io::Error },
    #[error(transparent)]
    Store(#[from] crate::store::StoreError),
}

/// `session.json`: what a reader of the folder needs without the database.
#[derive(Debug, Serialize)]
struct SessionJson<'a> {
    id: &'a str,
    vendor: &'a str,
    target: &'a str,
    account: &'a str,
    booking: &'a str,
    client_address: &'a str,
    start: DateTime<Utc>,
    end: Option<DateTime<Utc>>,
    /// `live` while running; `ended`, or `failed` when a recording could not be written.
    state: &'a str,
    /// Exit status of the first channel (the vendor's shell or command).
    exit_status: Option<i64>,
    bytes_in: u64,
    bytes_out: u64,
    chaperone_version: &'a str,
    channels: Vec<ChannelJson>,
}

#[derive(Debug, Serialize)]
struct ChannelJson {
    file: String,
    command: Option<String>,
    exit_status: Option<i64>,
    bytes_in: u64,
    bytes_out: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    error: Option<String>,
}

impl SessionMeta {
    /// Creates the folder, writes `session.json` (live) and the store row.
    pub fn begin(gate: &Gate, vendor: &str, admission: &Admission, peer: SocketAddr) -> Result<SessionMeta, MetaError> {
        let started = Utc::now();
        let id = crate::id::session_id(u64::try_from(started.timestamp_millis()).unwrap_or(0));
        let folder = recording::session_folder(&gate.config.recordings_dir, started, &id);
        std::fs::create_dir_all(&folder).map_err(|source| MetaError::Folder { path: folder.clone(), source })?;
        // No seal, no session: evidence that cannot be proven intact is not evidence.
        let key = gate.keys.signing.expose().clone();
        let sealer = crate::recording::seal::Sealer::create(&folder, &id, key)
            .map_err(|source| MetaError::Seal { path: folder.clone(), source })?;
        let meta = SessionMeta {
            id,
            vendor: vendor.to_string(),
            target: admission.target.name.clone(),
            account: admission.account.clone(),
            client_address: peer.to_string(),
            started,
            folder,
            booking: admission.booking.id,
            booking_label: admission.booking.label(),
            sealer,
        };
        meta.write_json(None, "live", &[])?;
        meta.write_agreement(gate, &admission.booking)?;
        gate.store.session_insert(&meta.row(None, "live", &[]))?;
        Ok(meta)
    }

    /// Puts the written agreement next to the recording: `plan.md` (the exact bytes the
    /// parties acknowledged), `acknowledgements.json` with each signature also as
    /// `ack-N-PARTY.sig` (checkable with `ssh-keygen -Y verify`), and copies of the mails
    /// sent about the booking so far.
    fn write_agreement(&self, gate: &Gate, booking: &crate::store::Booking) -> Result<(), MetaError> {
        let write = |name: &str, bytes: &[u8]| {
            let path = self.folder.join(name);
            std::fs::write(&path, bytes).map_err(|source| MetaError::Write { path, source })
        };
        write("plan.md", booking.plan.as_bytes())?;
        let acks = gate.store.acks(booking.id)?;
        let listed: Vec<serde_json::Value> = acks
            .iter()
            .enumerate()
            .map(|(i, a)| {
                let sig = a.signature.as_ref().map(|_| format!("ack-{}-{}.sig", i + 1, a.party));
                serde_json::json!({
                    "party": a.party, "by": a.by, "note": a.note, "at": a.at,
                    "key_fingerprint": a.key_fingerprint, "signature_file": sig,
                })
            })
            .collect();
        let mut text = serde_json::to_string_pretty(&listed).unwrap_or_default();
        text.push('\n');
        write("acknowledgements.json", text.as_bytes())?;
        for (i, a) in acks.iter().enumerate() {
            if let Some(sig) = &a.signature {
                write(&format!("ack-{}-{}.sig", i + 1, a.party), sig.as_bytes())?;
            }
        }
        for mail in gate.store.mails(booking.id)? {
            if let Ok(bytes) = std::fs::read(&mail.copy_path) {
                write(&format!("mail-{}.eml", mail.kind), &bytes)?;
            }
        }
        Ok(())
    }

    /// The audit entries of the booking and of this session, as JSON lines, so the folder
    /// tells its story without the database.
    fn write_audit(&self, gate: &Gate) -> Result<(), MetaError> {
        let filter = crate::store::AuditFilter { booking: Some(self.booking), ..Default::default() };
        let mut lines = String::new();
        for entry in gate.store.audit_entries(&filter)? {
            lines.push_str(&serde_json::to_string(&entry).unwrap_or_default());
            lines.push('\n');
        }
        let path = self.folder.join("audit.jsonl");
        std::fs::write(&path, lines).map_err(|source| MetaError::Write { path, source })
    }

    /// Records the end; failures are logged, since the session is over either way.
    pub fn finish(&self, gate: &Gate, summaries: &[Summary]) {
        let state = if summaries.iter().any(|s| s.error.is_some()) { "failed" } else { "ended" };
        self.finish_as(gate, summaries, state);
    }

    /// Records the end in a given state (`refused`: admitted, but never started).
    pub fn finish_as(&self, gate: &Gate, summaries: &[Summary], state: &str) {
        let ended = Utc::now();
        if let Err(err) = self.write_json(Some(ended), state, summaries) {
            tracing::error!(session = %self.id, "{err}");
        }
        if let Err(err) = gate.store.session_finish(&self.row(Some(ended), state, summaries)) {
            tracing::error!(session = %self.id, "cannot record the session's end: {err}");
        }
        if let Err(err) = self.write_audit(gate) {
            tracing::error!(session = %self.id, "{err}");
        }
        if let Err(err) = self.sealer.seal_folder(&self.folder) {
            tracing::error!(session = %self.id, "cannot seal {}: {err}", self.folder.display());
        }
    }

    fn row(&self, ended: Option<DateTime<Utc>>, state: &str, summaries: &[Summary]) -> SessionRow {
        SessionRow {
            id: self.id.clone(),
            vendor: self.vendor.clone(),
            target: self.target.clone(),
            account: self.account.clone(),
            client_address: self.client_address.clone(),
            started_at: self.started,
            ended_at: ended,
            state: state.to_string(),
            exit_status: summaries.first().and_then(|s| s.exit_status),
            bytes_in: summaries.iter().map(|s| s.bytes_in).sum(),
            bytes_out: summaries.iter().map(|s| s.bytes_out).sum(),
            folder: self.folder.display().to_string(),
            booking: Some(self.booking),
        }
    }

    fn write_json(&self, ended: Option<DateTime<Utc>>, state: &str, summaries: &[Summary]) -> Result<(), MetaError> {
        let row = self.row(ended, state, summaries);
        let json = SessionJson {
            id: &self.id,
            vendor: &self.vendor,
            target: &self.target,
            account: &self.account,
            booking: &self.booking_label,
            client_address: &self.client_address,
            start: self.started,
            end: ended,
            state,
            exit_status: row.exit_status,
            bytes_in: row.bytes_in,
            bytes_out: row.bytes_out,
            chaperone_version: env!("CARGO_PKG_VERSION"),
            channels: summaries
                .iter()
                .enumerate()
                .map(|(i, s)| ChannelJson {
                    file: recording::cast_path(&self.folder, i + 1)
                        .file_name()
                        .map(|n| n.to_string_lossy().into_owned())
                        .unwrap_or_default(),
                    command: s.command.clone(),
                    exit_status: s.exit_status,
                    bytes_in: s.bytes_in,
                    bytes_out: s.bytes_out,
                    error: s.error.clone(),
                })
                .collect(),
        };
        let path = self.folder.join("session.json");
        let mut text = serde_json::to_string_pretty(&json).unwrap_or_default();
        text.push('\n');
        // Write then rename, so a crash never leaves a half-written session.json.
        let tmp = self.folder.join(".session.json.tmp");
        std::fs::write(&tmp, text)
            .and_then(|()| std::fs::rename(&tmp, &path))
            .map_err(|source| MetaError::Write { path, source })
    }
}
