//! Crash recovery: after chaperone was killed (kill -9, power loss), the next start finds
//! the sessions still marked live, cuts each recording back to what its seal covers (a
//! frame boundary, so the last complete event line), appends an `interrupted` marker,
//! marks the session interrupted (in `session.json`, the store and the audit log) and
//! seals the folder anew. At most the last flush interval of output is lost; a folder
//! never becomes unreadable.

use std::io::Write;
use std::path::Path;
use std::sync::Arc;

use russh::keys::PrivateKey;

use super::asciicast::push_event;
use super::seal::{SEAL_FILE, Sealer, checkpoints};

/// What the marker says.
pub const INTERRUPTED: &str = "interrupted: chaperone stopped without closing this recording";

/// Recovers one session folder; returns a line describing what was done.
pub fn recover_folder(folder: &Path, session: &str, key: Arc<PrivateKey>, level: i32) -> std::io::Result<String> {
    let sealed = sealed_lengths(folder);
    let mut done = Vec::new();
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
    }
    mark_json(folder)?;
    Sealer::create(folder, session, key)?.seal_folder(folder)?;
    Ok(if done.is_empty() { "nothing lost beyond the last frame".into() } else { done.join("; ") })
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

fn mark_json(folder: &Path) -> std::io::Result<()> {
    let path = folder.join("session.json");
    let mut json: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&path).unwrap_or_default())
        .unwrap_or_else(|_| serde_json::json!({}));
    json["state"] = serde_json::json!("interrupted");
    let mut text = serde_json::to_string_pretty(&json).map_err(std::io::Error::other)?;
    text.push('\n');
    let tmp = folder.join(".session.json.tmp");
    std::fs::write(&tmp, text)?;
    std::fs::rename(tmp, path)
}
