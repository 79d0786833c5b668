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
    #[error(transparent)]
    Read(crate::files::ReadError),
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

/// Most a key file may hold: an OpenSSH RSA key of 16384 bits is about 13 KiB.
pub const MAX_KEY_FILE: usize = 64 * 1024;

/// Shortest RSA modulus accepted for a login key or a host key, in bits: what OpenSSH's
/// `RequiredRSASize` asks of keys today (shorter ones can be factored).
pub const MIN_RSA_BITS: usize = 2048;

fn load_or_create_key(path: &Path, comment: &str) -> Result<PrivateKey, KeyError> {
    match crate::files::read(path, MAX_KEY_FILE, "key file") {
        Ok(text) => PrivateKey::from_openssh(&text)
            .map_err(|e| KeyError::Parse { path: path.to_path_buf(), message: e.to_string() }),
        Err(e) if e.is_not_found() => create_key(path, comment),
        Err(e) => Err(KeyError::Read(e)),
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
    let text = crate::files::read_text(Path::new(text_or_path), MAX_KEY_FILE, "key file")
        .map_err(|e| crate::UserError(e.to_string()))?;
    parse_public_key(&text).map_err(|e| crate::UserError(format!("{text_or_path}: {e}")))
}

/// Reads a key someone will log in with (or a target's host key), refusing the weak ones
/// ([`check_strength`]).
pub fn read_login_key(text_or_path: &str) -> Result<PublicKey, crate::UserError> {
    let key = read_public_key(text_or_path)?;
    check_strength(&key).map_err(|e| crate::UserError(format!("{}: {e}", fingerprint(&key))))?;
    Ok(key)
}

/// Why a login with `key` was refused, for the audit log: its weakness, or else that it
/// is not registered.
pub fn refusal(key: &PublicKey) -> String {
    match check_strength(key) {
        Err(weak) => format!("is refused: {weak}"),
        Ok(()) => "is not a registered vendor key".into(),
    }
}

/// Refuses what OpenSSH refuses: RSA keys shorter than [`MIN_RSA_BITS`] (its
/// `RequiredRSASize`) and DSA keys (disabled since OpenSSH 7.0, removed in 9.8). Used at
/// registration and again at login, for keys registered before this check existed.
pub fn check_strength(key: &PublicKey) -> Result<(), String> {
    let data = key.key_data();
    if let Some(rsa) = data.rsa() {
        let bits = rsa.n().as_positive_bytes().map_or(0, |n| match n.first() {
            Some(top) => n.len() * 8 - top.leading_zeros() as usize,
            None => 0,
        });
        if bits < MIN_RSA_BITS {
            return Err(format!("an RSA key of {bits} bits is too short: at least {MIN_RSA_BITS} bits are required"));
        }
    }
    if data.is_dsa() {
        return Err("DSA (ssh-dss) keys are refused, as OpenSSH does: use an ed25519 key".into());
    }
    Ok(())
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

    #[test]
    fn short_rsa_and_dsa_keys_are_refused() {
        let short = parse_public_key("ssh-rsa AAAAB3NzaC1yc2EAAAADAQABAAAAgQCrGwVaS1s4Tg5mu2hVVkFBZlnc+45Li6hq8j6qJ3A0bt9bJE/Mt0IhViDEUlZ/IkBUzNNnSHwnMGAgMzCSWuweombA2xQgNeASgiUgMjX0owkf3x+EmTmAdL3d8qwVijAEY3OOlsn2mBqlZg9fQVMW/AcHPh+58nzs19UQHfQ6OQ==").unwrap();
        let err = check_strength(&short).unwrap_err();
        assert_eq!(err, "an RSA key of 1024 bits is too short: at least 2048 bits are required");
        assert!(refusal(&short).starts_with("is refused: an RSA key of 1024 bits"));
        let long = parse_public_key("ssh-rsa AAAAB3NzaC1yc2EAAAADAQABAAABAQC/Kt9D3VJ4dVpAjjPGxLMlz+1YmuC1lRGDanHYEPFGJZvWBgoAm8/YBGAm3vQOKW+FA4AoQoOYf3ddvLgcYBCb7gIjHftTx3pUkRkMwniQ30AHfv8zcXH6ELMVsQN9CuXzh98OUKSCgxU6golYPR9W6kv1/AJVJJRjPgANel1leVQC8Z2V3bnIbuJTIKscAQkTAGai19Rlunaa8PhQ2wJ6yaTsoF2ne3jfzkL249WDzBMtCx0BjqJ/buJ344JWJ8G/KycWWBzQjRqT+8nl3rwso7ekGCGfFNgtLvLU+YQ7HPzkUqEz8fgZrtv6iIVerOdCyzbYn35F05hkPD9azqkB").unwrap();
        assert!(check_strength(&long).is_ok());
        let dir = tempfile::tempdir().unwrap();
        let keys = Keys::load_or_create(dir.path()).unwrap();
        assert!(check_strength(keys.upstream.expose().public_key()).is_ok());
        let dsa = parse_public_key(concat!(
            "ssh-dss AAAAB3NzaC1kc3MAAACBAL7NnM5hPp+jraEaTyMJX8c/yTdnMqyM0tqzUvZPxFI7LJqhNZOjsWZzoRpB866IVxemkABnC1Y4mN5nHO3eGsdJVRD6pgoP/rKPUlp8CXgm/88ayvYBReW7x1L8dcRuSJ7532bsCR43yvGBP5vlks0VEk2tJ+2Wz7aaogS5iO/fAAAAFQDqtEU0UehCd7Uduk3yfcuIS4VkSQAAAIEAmE+2GcqIwA8Gyk2ek/OZg0FjbzwrtcA8NKdEIuMTczFxoxaLSCJRaDmF7+3K",
            "CL0JFqck9E2TesckZcZbC7BRx31KpSnpKLcHBZfyHooUg6aUQYLXS+00ux3Ji8FHImYN0iaoTuHwI1vmZBv5CFAdIgUlSiAgR2KWOQbXIl0KLfQAAACAWciJQByTcxVwNIw44hyxrgM1xQpb8kXTf/y3ZE+bqySUPfp6SK+CqPuk+D+BED2CTcwSYPZ64v4OOgmwu/dKOkWt/SoAxsObrlDYEk/fkjSLN6bdlgsAVuJF1T6gEI+HBlAJ7CxwxC91QM4eLBm70165H0lhNte/JkmG1+hrrDs="
        ))
        .unwrap();
        assert!(check_strength(&dsa).unwrap_err().contains("DSA (ssh-dss) keys are refused"));
    }

    #[test]
    fn key_files_are_read_with_a_limit() {
        let err = read_public_key("/dev/zero").unwrap_err().0;
        assert_eq!(err, "key file /dev/zero is over the 64 KiB limit");
    }
}
