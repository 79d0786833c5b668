//! Validation of the names people type: vendor and target names, login accounts, the
//! `VENDOR[:TARGET[:ACCOUNT]]` user name a vendor logs in with, and the free text of
//! reasons and notes (which must not hold what acts on a terminal).

use crate::UserError;

/// Longest vendor or target name; they appear in paths, e-mails and ssh user names.
const MAX_NAME: usize = 63;

/// Longest account name (Linux's limit for user names).
const MAX_ACCOUNT: usize = 32;

/// Checks a vendor or target name: lowercase `[a-z0-9][a-z0-9-]*`.
pub fn check_name(kind: &str, name: &str) -> Result<(), UserError> {
    let mut bytes = name.bytes();
    let first_ok = matches!(bytes.next(), Some(b'a'..=b'z' | b'0'..=b'9'));
    let rest_ok = bytes.all(|b| matches!(b, b'a'..=b'z' | b'0'..=b'9' | b'-'));
    if first_ok && rest_ok && name.len() <= MAX_NAME {
        Ok(())
    } else {
        Err(UserError(format!(
            "invalid {kind} name {name:?}: use lowercase letters, digits and '-', starting with a letter or digit (at most {MAX_NAME})"
        )))
    }
}

/// Checks a login account on a target: a POSIX-ish user name.
pub fn check_account(account: &str) -> Result<(), UserError> {
    let mut bytes = account.bytes();
    let first_ok = matches!(bytes.next(), Some(b'a'..=b'z' | b'A'..=b'Z' | b'_'));
    let rest_ok = bytes.all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.'));
    if first_ok && rest_ok && account.len() <= MAX_ACCOUNT {
        Ok(())
    } else {
        Err(UserError(format!(
            "invalid account name {account:?}: use letters, digits, '_', '-' and '.', starting with a letter or '_' (at most {MAX_ACCOUNT})"
        )))
    }
}

/// What a vendor asked for in the SSH user name: `VENDOR`, `VENDOR:TARGET` or
/// `VENDOR:TARGET:ACCOUNT`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LoginName {
    pub vendor: String,
    pub target: Option<String>,
    pub account: Option<String>,
}

impl LoginName {
    /// Parses the SSH user name. Anything malformed is `None`: the login is then treated
    /// like an unknown vendor (authentication fails), telling an attacker nothing.
    pub fn parse(user: &str) -> Option<LoginName> {
        let mut parts = user.split(':');
        let vendor = parts.next()?.to_string();
        let target = parts.next().map(str::to_string);
        let account = parts.next().map(str::to_string);
        if parts.next().is_some() {
            return None;
        }
        check_name("vendor", &vendor).ok()?;
        if let Some(t) = &target {
            check_name("target", t).ok()?;
        }
        if let Some(a) = &account {
            check_account(a).ok()?;
        }
        Some(LoginName { vendor, target, account })
    }
}

/// A character that acts on a terminal or on how text reads instead of being read: C0
/// controls (ESC, NUL, CR, BEL…) and DEL, C1 controls (U+0080-U+009F, 8-bit CSI among
/// them), and the bidirectional overrides and isolates of "Trojan source" (U+202A-U+202E,
/// U+2066-U+2069), which make text display in another order than it is stored. Tab and
/// line feed are the caller's to allow.
pub fn acts_on_terminal(c: char) -> bool {
    matches!(c, '\u{0}'..='\u{1f}' | '\u{7f}'..='\u{9f}' | '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}')
}

/// How a refused character is named in a message: `ESC (U+001B)`.
pub fn describe(c: char) -> String {
    let name = match c {
        '\u{0}' => "NUL",
        '\u{7}' => "BEL",
        '\u{8}' => "backspace",
        '\r' => "CR",
        '\u{1b}' => "ESC",
        '\u{7f}' => "DEL",
        '\u{9b}' => "CSI",
        '\u{80}'..='\u{9f}' => "a C1 control",
        '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}' => "a bidirectional override",
        _ => "a control character",
    };
    format!("{name} (U+{:04X})", c as u32)
}

/// Checks one line of free text (a reason, a note): nothing that acts on a terminal, no
/// line break (it is shown on one line, in the audit log too).
pub fn check_line(field: &str, text: &str) -> Result<(), UserError> {
    match text.char_indices().find(|(_, c)| acts_on_terminal(*c)) {
        None => Ok(()),
        Some((at, c)) => Err(UserError(format!(
            "{field}: column {}: {} is not allowed: write plain text on one line",
            text[..at].chars().count() + 1,
            describe(c)
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names() {
        for ok in ["acme", "erp01", "a", "0x", "acme-gmbh"] {
            assert!(check_name("vendor", ok).is_ok(), "{ok}");
        }
        for bad in ["", "-a", "Acme", "a_b", "a b", "a:b", "ä", &"a".repeat(64)] {
            assert!(check_name("vendor", bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn login_names() {
        assert_eq!(
            LoginName::parse("acme:erp01:app"),
            Some(LoginName { vendor: "acme".into(), target: Some("erp01".into()), account: Some("app".into()) })
        );
        assert_eq!(LoginName::parse("acme").map(|l| l.target), Some(None));
        for bad in ["", "acme:", "acme:erp01:", "a:b:c:d", "ACME", "acme:erp01:-x", "acme:../x"] {
            assert_eq!(LoginName::parse(bad), None, "{bad}");
        }
    }

    #[test]
    fn free_text_holds_nothing_that_acts_on_a_terminal() {
        assert!(check_line("--reason", "wrong server, see ticket #42 (ä)").is_ok());
        let err = check_line("--reason", "ok\u{1b}[2Jgone").unwrap_err().0;
        assert_eq!(err, "--reason: column 3: ESC (U+001B) is not allowed: write plain text on one line");
        for bad in ["a\nb", "a\rb", "\u{0}", "x\u{9b}6n", "\u{202e}txt", "\u{2066}", "\u{7f}", "\t"] {
            assert!(check_line("--note", bad).is_err(), "{bad:?}");
        }
    }
}
