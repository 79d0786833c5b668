//! The session plan: the written agreement a booking carries (SOP rules 2, 3, 6). Its
//! exact bytes are what the parties acknowledge; a vendor signs them with
//! `ssh-keygen -Y sign -n chaperone-plan -f KEY plan.md`. The title and steps are shown
//! to the vendor at login.

use chrono_tz::Tz;
use russh::keys::PublicKey;
use russh::keys::ssh_key::SshSig;

use crate::sanitize::printable_line;
use crate::store::Booking;

/// The namespace plan signatures must be made for, so that a signature made for any other
/// purpose (git commits, files) cannot be passed off as agreement to a plan.
pub const SIGNATURE_NAMESPACE: &str = "chaperone-plan";

/// Most steps shown in the login banner; the full plan is in the booking.
const BANNER_STEPS: usize = 12;

/// Refuses a plan holding what acts on a terminal (see [`crate::names::acts_on_terminal`]):
/// it is shown to technicians, to the vendor at login and in `booking show`, and signed
/// byte for byte. Tabs and line ends are text; a CRLF line end (a Windows editor's) is kept
/// as written, since the exact bytes are what the parties sign, but a CR alone could draw
/// one line over another. The error names the first such character's line and column.
pub fn check_text(plan: &str) -> Result<(), String> {
    for (number, line) in plan.split('\n').enumerate() {
        let line = line.strip_suffix('\r').unwrap_or(line);
        if let Some((at, c)) = line.char_indices().find(|&(_, c)| c != '\t' && crate::names::acts_on_terminal(c)) {
            return Err(format!(
                "the plan, line {}, column {}: {} is not allowed: a plan is plain text (tabs and line ends allowed)",
                number + 1,
                line[..at].chars().count() + 1,
                crate::names::describe(c)
            ));
        }
    }
    Ok(())
}

/// The first Markdown heading with text, or else the first line with text (a bare `#`
/// is none: the title would be empty where people look for what the booking is about).
pub fn title(plan: &str) -> String {
    let lines = || plan.lines().map(str::trim).filter(|l| !l.trim_start_matches('#').trim().is_empty());
    lines()
        .find(|l| l.starts_with('#'))
        .map(|l| l.trim_start_matches('#').trim())
        .or_else(|| lines().next())
        .unwrap_or("(untitled)")
        .to_string()
}

/// The plan's list items (`- `, `* `, `1. `), in order.
pub fn steps(plan: &str) -> Vec<String> {
    plan.lines()
        .map(str::trim)
        .filter_map(|l| {
            if let Some(rest) = l.strip_prefix("- ").or_else(|| l.strip_prefix("* ")) {
                return Some(rest.trim().to_string());
            }
            let (number, rest) = l.split_once(". ")?;
            (!number.is_empty() && number.bytes().all(|b| b.is_ascii_digit())).then(|| rest.trim().to_string())
        })
        .collect()
}

/// What the vendor reads when the session starts (CRLF: it goes to a terminal).
pub fn banner(booking: &Booking, tz: Tz) -> String {
    let mut out = format!(
        "chaperone: booking {} on {} as {}, window ends {}\r\nplan: {}\r\n",
        booking.label(),
        booking.target,
        booking.account,
        crate::policy::format_time(booking.end, tz),
        printable_line(&title(&booking.plan))
    );
    let steps = steps(&booking.plan);
    for (i, step) in steps.iter().take(BANNER_STEPS).enumerate() {
        out.push_str(&format!("  {}. {}\r\n", i + 1, printable_line(step)));
    }
    if steps.len() > BANNER_STEPS {
        out.push_str(&format!("  … and {} more steps\r\n", steps.len() - BANNER_STEPS));
    }
    out
}

/// Checks an armored SSH signature (`-----BEGIN SSH SIGNATURE-----`) over `plan` in the
/// plan namespace. With `allowed` keys, the signer must be one of them; returns the key.
pub fn verify_signature(plan: &str, armored: &str, allowed: Option<&[PublicKey]>) -> Result<PublicKey, String> {
    let sig: SshSig = armored.trim().parse().map_err(|e: russh::keys::ssh_key::Error| {
        format!("not an SSH signature: {}", printable_line(&e.to_string()))
    })?;
    if sig.namespace() != SIGNATURE_NAMESPACE {
        return Err(format!(
            "the signature is for namespace {:?}; sign with: ssh-keygen -Y sign -n {SIGNATURE_NAMESPACE} -f KEY plan.md",
            sig.namespace()
        ));
    }
    let signer = PublicKey::from(sig.public_key().clone());
    if let Some(allowed) = allowed
        && !allowed.iter().any(|k| k.key_data() == signer.key_data())
    {
        return Err(format!(
            "the signature was made with key {}, which is not registered for this party",
            crate::keys::fingerprint(&signer)
        ));
    }
    signer
        .verify(SIGNATURE_NAMESPACE, plan.as_bytes(), &sig)
        .map_err(|_| "the signature does not match the plan (was the plan changed after signing?)".to_string())?;
    Ok(signer)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn title_and_steps() {
        let plan = "# Upgrade ERP to 9.2\n\nWho: Jane\n\n1. stop erp\n2. backup db\n- install 9.2\n* start erp\n10. check\nnot. a step\n";
        assert_eq!(title(plan), "Upgrade ERP to 9.2");
        assert_eq!(steps(plan), vec!["stop erp", "backup db", "install 9.2", "start erp", "check"]);
        assert_eq!(title("\n  plain first line\nmore"), "plain first line");
    }

    #[test]
    fn a_plan_holds_nothing_that_acts_on_a_terminal() {
        assert!(check_text("# Plan\r\n\n- step\twith tab\r\n- ünïcödé 日本 → ok\n").is_ok());
        let cases = [
            ("# Plan\n- clear \u{1b}[2J\n", "line 2, column 9: ESC (U+001B)"),
            ("a\u{0}", "line 1, column 2: NUL (U+0000)"),
            ("ok\nrm -rf /\rls  \n", "line 2, column 9: CR (U+000D)"),
            ("x\n\ny\u{9b}6n", "line 3, column 2: CSI (U+009B)"),
            ("é\u{202e}txt.exe", "line 1, column 2: a bidirectional override (U+202E)"),
            ("\u{2069}", "line 1, column 1: a bidirectional override (U+2069)"),
            ("\u{7}", "line 1, column 1: BEL (U+0007)"),
            ("\u{85}", "line 1, column 1: a C1 control (U+0085)"),
            ("\u{7f}", "line 1, column 1: DEL (U+007F)"),
        ];
        for (plan, expected) in cases {
            let err = check_text(plan).unwrap_err();
            assert!(err.contains(expected), "{plan:?}: {err}");
            assert!(!err.contains('\n'), "{err}");
        }
    }

    #[test]
    fn the_banner_shows_no_control_string_of_an_old_plan() {
        let plan = "# Up\u{1b}]0;x\u{7}grade\n- stop \u{1b}[6n\n";
        let shown: String = [title(plan), steps(plan).join("")].concat();
        assert!(shown.contains('\u{1b}'));
        let printed = printable_line(&shown);
        assert!(!printed.contains('\u{1b}') && !printed.contains('\u{7}'), "{printed}");
    }

    #[test]
    fn garbage_is_not_a_signature() {
        assert!(verify_signature("plan", "hello", None).unwrap_err().contains("not an SSH signature"));
    }
}
