//! A session's record: the folder, `session.json` beside the recordings, and the store
//! row. Written when the session starts (state `live`, so a crash leaves a trace) and
//! again when it ends; after a crash, by the next start from what the recordings hold
//! ([`recover`]), so an interrupted session keeps the same evidence as one that ended.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

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

    fn write_audit(&self, gate: &Gate) -> Result<(), MetaError> {
        write_audit(gate, &self.folder, self.booking)
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

/// The audit entries of the booking and of its sessions, as JSON lines, so the folder
/// tells its story without the database.
fn write_audit(gate: &Gate, folder: &Path, booking: i64) -> Result<(), MetaError> {
    let filter = crate::store::AuditFilter { booking: Some(booking), ..Default::default() };
    let mut lines = String::new();
    for entry in gate.store.audit_entries(&filter)? {
        lines.push_str(&serde_json::to_string(&entry).unwrap_or_default());
        lines.push('\n');
    }
    let path = folder.join("audit.jsonl");
    std::fs::write(&path, lines).map_err(|source| MetaError::Write { path, source })
}

/// Closes a session that was live when chaperone last stopped without closing it (killed,
/// power lost): its recordings are cut to what the seal covers and marked
/// ([`recording::recovery`]); `session.json` and the store row get the channels with
/// their commands, the bytes counted from what the recordings hold, the end (the time of
/// the last recorded event) and the state `interrupted`; the audit log says so, the folder
/// gets its `audit.jsonl`, and it is sealed anew. Returns what was done, for the log.
pub fn recover(gate: &Gate, row: &SessionRow) -> String {
    let folder = Path::new(&row.folder);
    let recovered = recording::recovery::recover_folder(folder, gate.config.recording.zstd_level);
    let detail = match &recovered {
        Ok(r) => format!("recovered after an unclean stop: {}", r.detail),
        Err(err) => format!("could not recover {}: {err}", row.folder),
    };
    let channels = recovered.map(|r| r.channels).unwrap_or_default();
    let last_ms = channels.iter().map(|c| c.last_event_ms).max().unwrap_or(0);
    let ended = row.started_at + chrono::Duration::milliseconds(i64::try_from(last_ms).unwrap_or(i64::MAX / 2));
    let closed = SessionRow {
        ended_at: Some(ended),
        state: "interrupted".into(),
        exit_status: channels.first().and_then(|c| c.exit_status),
        bytes_in: channels.iter().map(|c| c.bytes_in).sum(),
        bytes_out: channels.iter().map(|c| c.bytes_out).sum(),
        ..row.clone()
    };
    if let Err(err) = recovered_json(folder, &closed, &channels) {
        tracing::error!(session = %row.id, "{err}");
    }
    if let Err(err) = gate.store.session_finish(&closed) {
        tracing::error!(session = %row.id, "cannot record the session's end: {err}");
    }
    let mut event =
        crate::audit::Event::new("session.interrupted", detail.clone()).vendor(&row.vendor).session(&row.id);
    if let Some(b) = row.booking {
        event = event.booking(b);
    }
    gate.audit(event);
    if let Some(booking) = row.booking
        && let Err(err) = write_audit(gate, folder, booking)
    {
        tracing::error!(session = %row.id, "{err}");
    }
    let key = gate.keys.signing.expose().clone();
    let sealed = crate::recording::seal::Sealer::create(folder, &row.id, key).and_then(|s| s.seal_folder(folder));
    if let Err(err) = sealed {
        tracing::error!(session = %row.id, "cannot seal {}: {err}", folder.display());
    }
    detail
}

/// `session.json` of a recovered session: what the start wrote (or, if it is unreadable,
/// the store's facts), with the end, the state, the bytes and the channels.
fn recovered_json(folder: &Path, row: &SessionRow, channels: &[recording::recovery::Channel]) -> Result<(), MetaError> {
    let path = folder.join("session.json");
    let started: Option<serde_json::Value> =
        recording::bundle::read_bounded(&path, recording::bundle::MAX_SESSION_JSON)
            .and_then(|bytes| serde_json::from_slice(&bytes).ok())
            .filter(|v: &serde_json::Value| v.is_object());
    let mut json = started.unwrap_or_else(|| {
        serde_json::json!({
            "id": row.id, "vendor": row.vendor, "target": row.target, "account": row.account,
            "client_address": row.client_address, "start": row.started_at,
            "chaperone_version": env!("CARGO_PKG_VERSION"),
        })
    });
    let listed: Vec<ChannelJson> = channels
        .iter()
        .map(|c| ChannelJson {
            file: c.file.clone(),
            command: c.command.clone(),
            exit_status: c.exit_status,
            bytes_in: c.bytes_in,
            bytes_out: c.bytes_out,
            error: (c.damaged > 0)
                .then(|| format!("{} damaged place(s) could not be read; the counts are what could", c.damaged)),
        })
        .collect();
    json["state"] = serde_json::json!(row.state);
    json["end"] = serde_json::json!(row.ended_at);
    json["exit_status"] = serde_json::json!(row.exit_status);
    json["bytes_in"] = serde_json::json!(row.bytes_in);
    json["bytes_out"] = serde_json::json!(row.bytes_out);
    json["channels"] = serde_json::to_value(listed).unwrap_or_default();
    let mut text = serde_json::to_string_pretty(&json).unwrap_or_default();
    text.push('\n');
    let tmp = folder.join(".session.json.tmp");
    std::fs::write(&tmp, text)
        .and_then(|()| std::fs::rename(&tmp, &path))
        .map_err(|source| MetaError::Write { path, source })
}
