//! Session ids: short, unique and time-sortable.
//!
//! An id is the creation time in milliseconds (10 Crockford base32 digits, so ids sort by
//! time as plain strings until the year 36812) followed by 4 random digits (20 bits), which
//! keeps ids made in the same millisecond apart. 14 lowercase characters, safe in paths.

use rand::RngExt;

/// Crockford's base32 alphabet, lowercase: no i, l, o, u, so ids read aloud unambiguously.
const ALPHABET: &[u8; 32] = b"0123456789abcdefghjkmnpqrstvwxyz";

/// Makes a new session id for the given Unix time in milliseconds.
pub fn session_id(unix_ms: u64) -> String {
    let random: u32 = rand::rng().random();
    let mut out = String::with_capacity(14);
    for shift in (0..10).rev() {
        out.push(char::from(ALPHABET[((unix_ms >> (shift * 5)) & 31) as usize]));
    }
    for shift in (0..4).rev() {
        out.push(char::from(ALPHABET[((random >> (shift * 5)) & 31) as usize]));
    }
    out
}

/// True when `s` has the shape of a session id (used before touching the file system).
pub fn is_session_id(s: &str) -> bool {
    s.len() == 14 && s.bytes().all(|b| ALPHABET.contains(&b))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_sort_by_time_and_differ() {
        let a = session_id(1_700_000_000_000);
        let b = session_id(1_700_000_000_001);
        let c = session_id(1_700_000_000_001);
        assert!(a < b && a < c);
        assert_ne!(b, c);
        assert!(is_session_id(&a));
        assert!(!is_session_id("../etc/passwd00"));
    }
}
