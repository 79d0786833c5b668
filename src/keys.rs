//! The bastion's own keys, kept in `<data>/keys/` and created on first start:
//! the SSH host key (what vendors' clients pin), the upstream client key (what chaperone
//! logs into targets with; its public half goes into the targets' `authorized_keys`) and
//! the signing key (seals recordings). All Ed25519, stored in OpenSSH format, mode 0600.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use russh::keys::ssh_key::{LineEnding, private::Ed25519Keypair};
use russh::keys::{HashAlg, PrivateKey, PublicKey};

#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    #[error("cannot create key folder {path}: {source}")]
    Folder { path: PathBuf, source: std::io::Error },
    #[error("cannot read key {path}: {source}")]
    Read { path: PathBuf, source: std::io::Error },
    #[error("key {path} is not an OpenSSH private key: {message}")]
    Parse { path: PathBuf, message: String },
    #[error("cannot write key {path}: {source}")]
    Write { path: PathBuf, source: std::io::Error },
}

/// A value that must never reach a log: `Debug` prints `<secret>`.
#[derive(Clone)]
pub struct Secret<T>(T);

impl<T> Secret<T> {
    pub fn new(value: T) -> Secret<T> {
        Secret(value)
    }

    pub fn expose(&self) -> &T {
        &self.0
    }
}

impl<T> std::fmt::Debug for Secret<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("<secret>")
    }
}

#[derive(Debug)]
pub struct Keys {
    /// Presented to vendors' SSH clients.
    pub host: Secret<PrivateKey>,
    /// Used to log into targets.
    pub upstream: Secret<PrivateKey>,
    /// Signs recording seals; shared by every session's sealer.
    pub signing: Secret<Arc<PrivateKey>>,
}

impl Keys {
    /// Loads the three keys from `dir`, creating any that is missing.
    pub fn load_or_create(dir: &Path) -> Result<Keys, KeyError> {
        std::fs::create_dir_all(dir).map_err(|source| KeyError::Folder { path: dir.to_path_buf(), source })?;
        Ok(Keys {
            host: Secret(load_or_create_key(&dir.join("host_ed25519"), "chaperone-host")?),
            upstream: Secret(load_or_create_key(&dir.join("upstream_ed25519"), "chaperone-upstream")?),
            signing: Secret(Arc::new(load_or_create_key(&dir.join("signing_ed25519"), "chaperone-signing")?)),
        })
    }

    /// The host key's fingerprint as OpenSSH prints it (`SHA256:…`).
    pub fn host_fingerprint(&self) -> String {
        fingerprint(self.host.expose().public_key())
    }

    /// The upstream key as one `authorized_keys` line.
    pub fn upstream_authorized_key(&self) -> String {
        openssh_line(self.upstream.expose().public_key())
    }

    /// The signing public key as one OpenSSH line.
    pub fn signing_public_key(&self) -> String {
        openssh_line(self.signing.expose().public_key())
    }

    pub fn signing_fingerprint(&self) -> String {
        fingerprint(self.signing.expose().public_key())
    }
}

pub fn fingerprint(key: &PublicKey) -> String {
    key.fingerprint(HashAlg::Sha256).to_string()
}

pub fn openssh_line(key: &PublicKey) -> String {
    key.to_openssh().unwrap_or_else(|_| fingerprint(key))
}

fn load_or_create_key(path: &Path, comment: &str) -> Result<PrivateKey, KeyError> {
    match std::fs::read_to_string(path) {
        Ok(text) => PrivateKey::from_openssh(text.as_bytes())
            .map_err(|e| KeyError::Parse { path: path.to_path_buf(), message: e.to_string() }),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => create_key(path, comment),
        Err(source) => Err(KeyError::Read { path: path.to_path_buf(), source }),
    }
}

fn create_key(path: &Path, comment: &str) -> Result<PrivateKey, KeyError> {
    use rand::RngExt;
    let write_err = |source| KeyError::Write { path: path.to_path_buf(), source };
    let seed: [u8; 32] = rand::rng().random();
    let mut key = PrivateKey::from(Ed25519Keypair::from_seed(&seed));
    key.set_comment(comment);
    let pem = key.to_openssh(LineEnding::LF).map_err(|e| write_err(std::io::Error::other(e.to_string())))?;
    write_private(path, pem.as_bytes()).map_err(write_err)?;
    let public = format!("{}\n", openssh_line(key.public_key()));
    std::fs::write(path.with_extension("pub"), public).map_err(write_err)?;
    Ok(key)
}

/// Writes a private key so that it is never readable by others, not even briefly.
fn write_private(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut file = std::fs::OpenOptions::new().write(true).create_new(true).mode(0o600).open(path)?;
    file.write_all(bytes)?;
    file.sync_all()
}

/// Reads a public key given on the local command line: an OpenSSH line, or a path to a
/// `.pub` file (see [`parse_public_key`]). Never for what a technician sends over ssh: a
/// path would name a file of the bastion's.
pub fn read_public_key(text_or_path: &str) -> Result<PublicKey, crate::UserError> {
    if !looks_like_path(text_or_path) {
        return parse_public_key(text_or_path);
    }
    let text = std::fs::read_to_string(text_or_path)
        .map_err(|e| crate::UserError(format!("cannot read key file {text_or_path:?}: {e}")))?;
    parse_public_key(&text).map_err(|e| crate::UserError(format!("{text_or_path}: {e}")))
}

/// Parses an OpenSSH public key line: `[host[,host…]] type base64 [comment]` (the leading
/// host list is what `ssh-keyscan` prints); the first line that is not blank or a comment.
pub fn parse_public_key(text: &str) -> Result<PublicKey, crate::UserError> {
    let line = text
        .lines()
        .map(str::trim)
        .find(|l| !l.is_empty() && !l.starts_with('#'))
        .ok_or_else(|| crate::UserError("no public key given".into()))?;
    let fields: Vec<&str> = line.split_whitespace().collect();
    // Try "type base64 …" first, then "hosts type base64 …".
    for start in 0..fields.len().min(2) {
        if let Some(rest) = fields.get(start..).filter(|f| f.len() >= 2)
            && let Ok(key) = PublicKey::from_openssh(&rest[..2].join(" "))
        {
            return Ok(key);
        }
    }
    let shown: String = line.chars().take(40).collect();
    Err(crate::UserError(format!(
        "malformed public key {shown:?}: expected an OpenSSH line like \"ssh-ed25519 AAAA…\""
    )))
}

fn looks_like_path(s: &str) -> bool {
    !s.contains(' ') && (s.ends_with(".pub") || s.starts_with('/') || s.starts_with('.') || Path::new(s).is_file())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_persist_across_loads() {
        let dir = tempfile::tempdir().unwrap();
        let first = Keys::load_or_create(dir.path()).unwrap();
        let second = Keys::load_or_create(dir.path()).unwrap();
        assert_eq!(first.host_fingerprint(), second.host_fingerprint());
        assert_eq!(first.upstream_authorized_key(), second.upstream_authorized_key());
        assert_ne!(first.host_fingerprint(), fingerprint(first.upstream.expose().public_key()));
        assert_eq!(format!("{:?}", first.signing), "<secret>");
    }

    #[test]
    fn public_key_lines_with_and_without_host() {
        let dir = tempfile::tempdir().unwrap();
        let keys = Keys::load_or_create(dir.path()).unwrap();
        let line = keys.upstream_authorized_key();
        let plain = parse_public_key(&line).unwrap();
        let scanned = parse_public_key(&format!("[127.0.0.1]:2200 {line}")).unwrap();
        assert_eq!(plain, scanned);
        assert!(parse_public_key("ssh-ed25519 AAAAnotbase64").is_err());
        assert!(parse_public_key("hello world").is_err());
    }
}
