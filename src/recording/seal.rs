//! The seal: tamper evidence for a session folder. While a recording is written, every
//! zstd frame that reaches the disk is followed by a checkpoint appended to the folder's
//! `seal` file: which file, how many bytes of it, the SHA-256 of those bytes, the time,
//! signed with the bastion's signing key (Ed25519, as an SSH signature in the namespace
//! `chaperone-seal`). So a recording cut short by a crash still verifies up to its last
//! checkpoint, and any change to a sealed byte is found with only the public key:
//! `chaperone recordings verify`, or by hand with `sha256sum` and `ssh-keygen -Y
//! check-novalidate`.
//!
//! `seal` is JSON lines; each line's `signed` text is exactly what the signature covers.

use std::fs::File;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use chrono::{SecondsFormat, Utc};
use russh::keys::ssh_key::{LineEnding, SshSig};
use russh::keys::{HashAlg, PrivateKey, PublicKey};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

/// The SSH signature namespace of seal checkpoints.
pub const NAMESPACE: &str = "chaperone-seal";

/// The seal file's name in a session folder.
pub const SEAL_FILE: &str = "seal";

/// One line of `seal`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Checkpoint {
    /// The text the signature covers:
    /// `chaperone-seal-v1 SESSION N FILE LENGTH SHA256 TIME` (one space between fields).
    pub signed: String,
    /// The armored SSH signature of `signed`.
    pub signature: String,
}

/// The parsed fields of a checkpoint's signed text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Covered {
    pub session: String,
    pub n: u64,
    pub file: String,
    pub length: u64,
    pub sha256: String,
    pub time: String,
}

impl Covered {
    pub fn parse(signed: &str) -> Option<Covered> {
        let mut f = signed.split(' ');
        if f.next()? != "chaperone-seal-v1" {
            return None;
        }
        let c = Covered {
            session: f.next()?.to_string(),
            n: f.next()?.parse().ok()?,
            file: f.next()?.to_string(),
            length: f.next()?.parse().ok()?,
            sha256: f.next()?.to_string(),
            time: f.next()?.to_string(),
        };
        f.next().is_none().then_some(c)
    }
}

/// Appends signed checkpoints to a session folder's `seal`. Shared by the session's
/// recordings (cheap to clone).
#[derive(Clone)]
pub struct Sealer {
    inner: Arc<Mutex<Inner>>,
}

impl std::fmt::Debug for Sealer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Sealer")
    }
}

struct Inner {
    file: File,
    key: Arc<PrivateKey>,
    session: String,
    n: u64,
    /// The length of each file that this sealer's last checkpoint for it covers: a
    /// recording sealed whole as its last frame was written is not read and hashed again
    /// when the folder is sealed at the end.
    covered: std::collections::HashMap<String, u64>,
}

impl Sealer {
    /// Opens the folder's seal for appending; numbering goes on after any checkpoints it
    /// already holds (a recovered folder is sealed anew on top of the old seal).
    pub fn create(folder: &Path, session: &str, key: Arc<PrivateKey>) -> std::io::Result<Sealer> {
        let path = folder.join(SEAL_FILE);
        let n = checkpoints(&path).iter().map(|c| c.n).max().unwrap_or(0);
        let file = std::fs::OpenOptions::new().create(true).append(true).open(path)?;
        let inner = Inner { file, key, session: session.to_string(), n, covered: Default::default() };
        Ok(Sealer { inner: Arc::new(Mutex::new(inner)) })
    }

    /// The key of the folder's seek index MACs (see [`super::replay::IndexKey`]).
    pub fn index_key(&self) -> Option<super::replay::IndexKey> {
        let inner = self.inner.lock().ok()?;
        super::replay::IndexKey::from_signing(&inner.key)
    }

    /// Seals the first `length` bytes of `file` (a name in the folder), whose SHA-256 is
    /// `sha256`.
    pub fn checkpoint(&self, file: &str, length: u64, sha256: &str) -> std::io::Result<()> {
        let mut inner = self.inner.lock().map_err(|_| std::io::Error::other("seal lock poisoned"))?;
        inner.n += 1;
        let time = Utc::now().to_rfc3339_opts(SecondsFormat::Millis, true);
        let signed = format!("chaperone-seal-v1 {} {} {file} {length} {sha256} {time}", inner.session, inner.n);
        let signature = inner
            .key
            .sign(NAMESPACE, HashAlg::Sha512, signed.as_bytes())
            .and_then(|s| s.to_pem(LineEnding::LF))
            .map_err(|e| std::io::Error::other(format!("cannot sign a seal checkpoint: {e}")))?;
        let mut line = serde_json::to_string(&Checkpoint { signed, signature }).map_err(std::io::Error::other)?;
        line.push('\n');
        inner.file.write_all(line.as_bytes())?;
        inner.covered.insert(file.to_string(), length);
        Ok(())
    }

    /// The final checkpoints: every file of the folder (but `seal`) whole, unless this
    /// sealer's last checkpoint of it already covers it whole (the recordings, written
    /// only by their writers and sealed frame by frame).
    pub fn seal_folder(&self, folder: &Path) -> std::io::Result<()> {
        for (name, size) in evidence_files(folder)?.into_iter().filter(|(n, _)| n != SEAL_FILE) {
            let covered = self.inner.lock().ok().and_then(|inner| inner.covered.get(&name).copied());
            if covered == Some(size) {
                continue;
            }
            let (length, sha256) = hash_prefix(&folder.join(&name), None)?;
            self.checkpoint(&name, length, &sha256)?;
        }
        self.inner.lock().map_err(|_| std::io::Error::other("seal lock poisoned"))?.file.sync_data()
    }
}

/// The files of a session folder that are evidence, by name with their sizes, sorted:
/// every regular file but dotfiles (derived data such as the seek index).
pub fn evidence_files(folder: &Path) -> std::io::Result<Vec<(String, u64)>> {
    let mut files: Vec<(String, u64)> = std::fs::read_dir(folder)?
        .flatten()
        // Following links, as reading them does.
        .filter_map(|e| Some((e.file_name().to_string_lossy().into_owned(), std::fs::metadata(e.path()).ok()?)))
        .filter(|(name, meta)| meta.is_file() && !name.starts_with('.'))
        .map(|(name, meta)| (name, meta.len()))
        .collect();
    files.sort();
    Ok(files)
}

/// The well-formed checkpoints of a seal file, unverified (our own file, read to go on
/// from it; `verify` checks signatures).
pub fn checkpoints(seal: &Path) -> Vec<Covered> {
    let Ok(lines) = seal_lines(seal) else { return Vec::new() };
    lines
        .filter_map(|line| serde_json::from_str::<Checkpoint>(line.ok()?.as_str()).ok())
        .filter_map(|cp| Covered::parse(&cp.signed))
        .collect()
}

/// Longest line of a seal read: a checkpoint is some 500 bytes; a longer line is not
/// one, and is not held (a seal file is as open to damage as any file).
const MAX_SEAL_LINE: usize = 64 * 1024;

/// The lines of a seal file, read one at a time, each at most [`MAX_SEAL_LINE`] (a
/// longer line, or one that is not UTF-8, is an `Err` with the reason).
fn seal_lines(seal: &Path) -> std::io::Result<impl Iterator<Item = Result<String, &'static str>> + use<>> {
    let mut input = std::io::BufReader::new(File::open(seal)?);
    let mut line = Vec::new();
    Ok(std::iter::from_fn(move || {
        let (read, complete) = bounded_line(&mut input, &mut line, MAX_SEAL_LINE).ok()?;
        if read == 0 {
            return None;
        }
        Some(match complete {
            true => String::from_utf8(std::mem::take(&mut line)).map_err(|_| "not UTF-8"),
            false => Err("longer than any checkpoint"),
        })
    }))
}

/// Reads one line into `line` (without its newline), holding at most `limit` of it.
/// Returns the bytes read and whether the line was held whole.
fn bounded_line(input: &mut impl std::io::BufRead, line: &mut Vec<u8>, limit: usize) -> std::io::Result<(u64, bool)> {
    line.clear();
    let (mut read, mut whole) = (0u64, true);
    loop {
        let buf = input.fill_buf()?;
        if buf.is_empty() {
            return Ok((read, whole));
        }
        let (take, newline) = match buf.iter().position(|&b| b == b'\n') {
            Some(i) => (i + 1, true),
            None => (buf.len(), false),
        };
        let piece = &buf[..take - usize::from(newline)];
        if whole && line.len() + piece.len() > limit {
            whole = false;
            line.clear();
        }
        if whole {
            line.extend_from_slice(piece);
        }
        input.consume(take);
        read += take as u64;
        if newline {
            return Ok((read, whole));
        }
    }
}

/// A writer that keeps the running SHA-256 and length of what went through it.
pub struct Hashing<W> {
    pub inner: W,
    hasher: Sha256,
    pub length: u64,
}

impl<W> Hashing<W> {
    pub fn new(inner: W) -> Hashing<W> {
        Hashing { inner, hasher: Sha256::new(), length: 0 }
    }

    /// The SHA-256 of everything written so far, as lowercase hex.
    pub fn digest(&self) -> String {
        format!("{:x}", self.hasher.clone().finalize())
    }
}

impl<W: Write> Write for Hashing<W> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.hasher.update(&buf[..n]);
        self.length += n as u64;
        Ok(n)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.inner.flush()
    }
}

/// Length and SHA-256 of the first `limit` bytes of a file (all of it for None).
pub fn hash_prefix(path: &Path, limit: Option<u64>) -> std::io::Result<(u64, String)> {
    use std::io::Read;
    let file = File::open(path)?;
    let mut reader: Box<dyn Read> = match limit {
        Some(l) => Box::new(file.take(l)),
        None => Box::new(file),
    };
    let mut hasher = Sha256::new();
    let length = std::io::copy(&mut reader, &mut hasher)?;
    Ok((length, format!("{:x}", hasher.finalize())))
}

/// The running hash of each file's prefix that checkpoints named so far: a recording's
/// checkpoints come in order of length, so each is checked by hashing on from the last
/// one, and the whole file is read once (hashing every prefix from the start would read a
/// recording of N frames N/2 times over).
#[derive(Default)]
struct Prefixes {
    /// Per file: the open file, read up to its length, and the hash of those bytes.
    files: std::collections::HashMap<String, Hashing<File>>,
}

impl Hashing<File> {
    /// Reads on up to `length` bytes (or the end of the file), hashing them.
    fn read_to(&mut self, length: u64) -> std::io::Result<()> {
        use std::io::Read;
        let mut buf = vec![0u8; 64 * 1024];
        while self.length < length {
            let want = usize::try_from(length - self.length).unwrap_or(usize::MAX).min(buf.len());
            let n = self.inner.read(&mut buf[..want])?;
            if n == 0 {
                break;
            }
            self.hasher.update(&buf[..n]);
            self.length += n as u64;
        }
        Ok(())
    }
}

impl Prefixes {
    /// Length and SHA-256 of the first `length` bytes of `path` (fewer if it is shorter).
    fn prefix(&mut self, name: &str, path: &Path, length: u64) -> std::io::Result<(u64, String)> {
        let behind = self.files.get(name).is_some_and(|h| h.length > length);
        if behind {
            // Out of order (not how chaperone writes): from the start again.
            self.files.remove(name);
        }
        let hashing = match self.files.entry(name.to_string()) {
            std::collections::hash_map::Entry::Occupied(e) => e.into_mut(),
            std::collections::hash_map::Entry::Vacant(e) => e.insert(Hashing::new(File::open(path)?)),
        };
        hashing.read_to(length)?;
        Ok((hashing.length, hashing.digest()))
    }
}

/// Problems `verify` lists, at most: a seal of garbage would otherwise make the list as
/// large as the file.
const MAX_PROBLEMS: usize = 1000;

/// What `verify` found.
#[derive(Debug, Default)]
pub struct Report {
    /// Files and how many bytes of each are proven intact.
    pub intact: Vec<(String, u64)>,
    /// Everything wrong, one line each.
    pub problems: Vec<String>,
    pub checkpoints: usize,
}

/// Verifies a session folder against its `seal` with the signing public key.
pub fn verify(folder: &Path, key: &PublicKey) -> Report {
    let mut report = Report::default();
    let lines = match seal_lines(&folder.join(SEAL_FILE)) {
        Ok(lines) => lines,
        Err(e) => {
            report.problems.push(format!("{}: cannot read: {e}", folder.join(SEAL_FILE).display()));
            return report;
        }
    };
    let mut proven: std::collections::BTreeMap<String, u64> = Default::default();
    let mut hashed = Prefixes::default();
    let mut last_n = 0;
    for (i, line) in lines.enumerate() {
        let at = format!("seal line {}", i + 1);
        if report.problems.len() >= MAX_PROBLEMS {
            report.problems.push(format!("{at}: stopped after {MAX_PROBLEMS} problems; the seal is beyond checking"));
            break;
        }
        let cp = match line.as_deref().map(serde_json::from_str::<Checkpoint>) {
            Ok(Ok(cp)) => cp,
            Ok(Err(_)) => {
                report.problems.push(format!("{at}: not a checkpoint (the seal file was altered or cut)"));
                continue;
            }
            Err(why) => {
                report.problems.push(format!("{at}: not a checkpoint ({why}; the seal file was altered)"));
                continue;
            }
        };
        report.checkpoints += 1;
        let sig: Result<SshSig, _> = cp.signature.parse();
        let valid =
            sig.is_ok_and(|s| s.namespace() == NAMESPACE && key.verify(NAMESPACE, cp.signed.as_bytes(), &s).is_ok());
        if !valid {
            report.problems.push(format!(
                "{at}: the signature does not verify with key {} (checkpoint altered, or another key)",
                crate::keys::fingerprint(key)
            ));
            continue;
        }
        let Some(c) = Covered::parse(&cp.signed) else {
            report.problems.push(format!("{at}: signed text has an unknown form"));
            continue;
        };
        if c.n != last_n + 1 {
            report.problems.push(format!("{at}: checkpoint {} follows {last_n}: checkpoints are missing", c.n));
        }
        last_n = c.n;
        let path: PathBuf = folder.join(&c.file);
        if c.file.contains('/') || c.file.contains("..") {
            report.problems.push(format!("{at}: names an odd file {:?}", c.file));
            continue;
        }
        match hashed.prefix(&c.file, &path, c.length) {
            Ok((length, sha)) if length == c.length && sha == c.sha256 => {
                let entry = proven.entry(c.file.clone()).or_default();
                *entry = (*entry).max(c.length);
            }
            Ok((length, _)) if length < c.length => report.problems.push(format!(
                "{}: shorter than sealed: {length} bytes, checkpoint {} (at {}) sealed {} bytes",
                c.file, c.n, c.time, c.length
            )),
            Ok(_) => {
                let from = proven.get(&c.file).copied().unwrap_or(0);
                report.problems.push(format!(
                    "{}: bytes {from}..{} differ from what checkpoint {} sealed at {}",
                    c.file, c.length, c.n, c.time
                ));
            }
            Err(e) => report.problems.push(format!("{}: cannot read: {e} (sealed by checkpoint {})", c.file, c.n)),
        }
    }
    // Files present but never sealed, or longer than sealed, are reported too.
    if let Ok(files) = evidence_files(folder) {
        for (name, size) in files.into_iter().filter(|(n, _)| n != SEAL_FILE) {
            match proven.get(&name) {
                None => report.problems.push(format!("{name}: not covered by the seal")),
                Some(&sealed) if size > sealed => {
                    report.problems.push(format!("{name}: bytes {sealed}..{size} were added after the last checkpoint"))
                }
                Some(_) => {}
            }
        }
    }
    report.intact = proven.into_iter().collect();
    // Names come from the folder: anyone who could add a file there could put ESC in its
    // name, and the problems are printed on the verifier's terminal.
    report.problems = report.problems.iter().map(|p| printable(p)).collect();
    report
}

/// Text as it may be printed on a terminal: control characters as `\u{1b}` escapes (a
/// file name may hold ESC or a newline), everything else as it is.
pub fn printable(text: &str) -> String {
    text.chars().map(|c| if c.is_control() { c.escape_unicode().to_string() } else { c.to_string() }).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_final_seal_skips_files_already_sealed_whole_and_still_verifies() {
        let dir = tempfile::tempdir().unwrap();
        let keys = crate::keys::Keys::load_or_create(&dir.path().join("keys")).unwrap();
        let folder = dir.path().join("session");
        std::fs::create_dir(&folder).unwrap();
        let sealer = Sealer::create(&folder, "s1", keys.signing.expose().clone()).unwrap();
        // A recording sealed frame by frame, as its writer does.
        let mut cast = Hashing::new(File::create(folder.join("session.cast.zst")).unwrap());
        for frame in [&b"frame one"[..], b"frame two"] {
            cast.write_all(frame).unwrap();
            sealer.checkpoint("session.cast.zst", cast.length, &cast.digest()).unwrap();
        }
        std::fs::write(folder.join("session.json"), "{}\n").unwrap();
        sealer.seal_folder(&folder).unwrap();
        let files: Vec<String> = checkpoints(&folder.join(SEAL_FILE)).into_iter().map(|c| c.file).collect();
        assert_eq!(files, ["session.cast.zst", "session.cast.zst", "session.json"]);
        let public = keys.signing.expose().public_key().clone();
        let report = verify(&folder, &public);
        assert!(report.problems.is_empty(), "{:?}", report.problems);
        assert_eq!(report.intact, [("session.cast.zst".to_string(), 18), ("session.json".to_string(), 3)]);

        // A file that grew after its last checkpoint is sealed again, whole.
        cast.write_all(b"!").unwrap();
        sealer.seal_folder(&folder).unwrap();
        let last = checkpoints(&folder.join(SEAL_FILE)).into_iter().rev().find(|c| c.file == "session.cast.zst");
        assert_eq!(last.map(|c| c.length), Some(19));
        assert!(verify(&folder, &public).problems.is_empty());
    }
}
