//! Reading what a person or a file feeds us (keys, plans, signatures, configuration,
//! standard input) with a bound: a path like `/dev/zero` or a huge file fails fast with a
//! one-line error naming it and the limit, instead of growing the bastion's memory.

use std::io::Read;
use std::path::Path;

#[derive(Debug, thiserror::Error)]
pub enum ReadError {
    #[error("cannot read {what} {name}: {source}")]
    Io { what: String, name: String, source: std::io::Error },
    #[error("{what} {name} is over the {} limit", size(*limit))]
    TooLarge { what: String, name: String, limit: usize },
    #[error("{what} {name} is not UTF-8 text")]
    NotText { what: String, name: String },
}

impl ReadError {
    /// The file is not there (a key file that is created on first use).
    pub fn is_not_found(&self) -> bool {
        matches!(self, ReadError::Io { source, .. } if source.kind() == std::io::ErrorKind::NotFound)
    }
}

/// Reads the file at `path`, refusing more than `limit` bytes; `what` names it in
/// errors ("plan", "key file"). A regular file that is too large fails before it is read.
pub fn read(path: &Path, limit: usize, what: &str) -> Result<Vec<u8>, ReadError> {
    let name = path.display().to_string();
    let io = |source| ReadError::Io { what: what.to_string(), name: name.clone(), source };
    let file = std::fs::File::open(path).map_err(io)?;
    let meta = file.metadata().map_err(io)?;
    if meta.is_dir() {
        return Err(io(std::io::Error::other("it is a folder")));
    }
    if meta.is_file() && meta.len() > limit as u64 {
        return Err(ReadError::TooLarge { what: what.to_string(), name, limit });
    }
    read_from(file, &name, limit, what)
}

/// Reads `reader` to its end (standard input, a file already open), refusing more than
/// `limit` bytes; `name` says where it came from.
pub fn read_from(reader: impl Read, name: &str, limit: usize, what: &str) -> Result<Vec<u8>, ReadError> {
    let mut bytes = Vec::new();
    reader.take(limit as u64 + 1).read_to_end(&mut bytes).map_err(|source| ReadError::Io {
        what: what.to_string(),
        name: name.to_string(),
        source,
    })?;
    if bytes.len() > limit {
        return Err(ReadError::TooLarge { what: what.to_string(), name: name.to_string(), limit });
    }
    Ok(bytes)
}

/// [`read`] for text.
pub fn read_text(path: &Path, limit: usize, what: &str) -> Result<String, ReadError> {
    String::from_utf8(read(path, limit, what)?)
        .map_err(|_| ReadError::NotText { what: what.to_string(), name: path.display().to_string() })
}

/// A limit as people write it: `64 KiB`, `1 MiB`.
fn size(bytes: usize) -> String {
    match bytes {
        b if b >= 1 << 20 && b % (1 << 20) == 0 => format!("{} MiB", b >> 20),
        b if b >= 1 << 10 && b % (1 << 10) == 0 => format!("{} KiB", b >> 10),
        b => format!("{b} bytes"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn endless_and_large_inputs_fail_fast_with_the_limit() {
        let err = read(Path::new("/dev/zero"), 64 * 1024, "key file").unwrap_err().to_string();
        assert_eq!(err, "key file /dev/zero is over the 64 KiB limit");
        let dir = tempfile::tempdir().unwrap();
        let big = dir.path().join("big.md");
        std::fs::File::create(&big).unwrap().set_len(100 << 20).unwrap();
        let err = read(&big, 1 << 20, "plan").unwrap_err().to_string();
        assert!(err.ends_with("big.md is over the 1 MiB limit"), "{err}");
        let err = read_from(&b"12345"[..], "from standard input", 4, "plan").unwrap_err().to_string();
        assert_eq!(err, "plan from standard input is over the 4 bytes limit");
        assert_eq!(read_from(&b"1234"[..], "standard input", 4, "plan").unwrap(), b"1234");
        let err = read(dir.path(), 10, "plan").unwrap_err().to_string();
        assert!(err.contains("it is a folder"), "{err}");
        assert!(read(&dir.path().join("none"), 10, "key").unwrap_err().is_not_found());
    }
}
