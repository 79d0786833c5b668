//! Tamper evidence: a session folder verifies against its seal with only the bastion's
//! public signing key, and a flipped byte anywhere is found and named.

use std::path::Path;
use std::process::Command;

use crate::common::*;

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap().flatten() {
        std::fs::copy(entry.path(), to.join(entry.file_name())).unwrap();
    }
}

fn flip_byte(path: &Path, at: usize) {
    let mut bytes = std::fs::read(path).unwrap();
    let at = at.min(bytes.len() - 1);
    bytes[at] ^= 0x01;
    std::fs::write(path, bytes).unwrap();
}

#[test]
fn a_session_folder_verifies_and_any_flipped_byte_is_named() {
    let w = World::new();
    let out = w.exec("for i in $(seq 1 2000); do echo evidence line $i; done");
    assert!(out.status.success());
    let id = w.last_session();
    w.ended_session_json(&id);
    let folder = w.folder(&id);
    w.eventually("the final seal", || {
        std::fs::read_to_string(folder.join("seal")).unwrap_or_default().contains(" session.json ")
            && std::fs::read_to_string(folder.join("seal")).unwrap_or_default().contains(" audit.jsonl ")
    });

    // The agreement and the trail sit next to the recording, and are sealed with it.
    assert_eq!(std::fs::read_to_string(folder.join("plan.md")).unwrap(), "# Maintenance\n- look around\n");
    assert!(std::fs::read_to_string(folder.join("acknowledgements.json")).unwrap().starts_with('['));
    let audit = std::fs::read_to_string(folder.join("audit.jsonl")).unwrap();
    for kind in ["booking.create", "booking.approve", "login.admit", "session.start", "session.end"] {
        assert!(audit.contains(&format!("\"kind\":\"{kind}\"")), "{kind} missing from audit.jsonl:\n{audit}");
    }
    let ok = w.bastion.run(&["recordings", "verify", &id]);
    assert!(ok.status.success(), "{}", stderr(&ok));
    assert!(
        stdout(&ok).contains("sealed: session.cast.zst") && stdout(&ok).contains("sealed: session.json"),
        "{}",
        stdout(&ok)
    );

    // A copy, checked with nothing but the public key (no database, no bastion).
    let public = w.bastion.dir.join("data/keys/signing_ed25519.pub");
    let elsewhere = tempfile::tempdir().unwrap();
    let copy = elsewhere.path().join("copy");
    copy_dir(&folder, &copy);
    // Run where there is no config at all: the built-in defaults, no database needed.
    let verify = |dir: &Path| {
        Command::new(BIN)
            .current_dir(elsewhere.path())
            .args(["recordings", "verify"])
            .arg(dir)
            .arg("--key")
            .arg(&public)
            .output()
            .unwrap()
    };
    let out = verify(&copy);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(stdout(&out).contains("intact:"), "{}", stdout(&out));

    // Another key: nothing verifies.
    let other = elsewhere.path().join("other");
    keygen(&other);
    let out = Command::new(BIN)
        .current_dir(elsewhere.path())
        .args(["recordings", "verify"])
        .arg(&copy)
        .arg("--key")
        .arg(other.with_extension("pub"))
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(stderr(&out).contains("does not verify with key"), "{}", stderr(&out));

    for (file, what) in [
        ("session.cast.zst", "session.cast.zst: bytes"),
        ("session.json", "session.json: bytes"),
        ("seal", "seal line"),
    ] {
        let tampered = elsewhere.path().join(format!("tampered-{file}"));
        copy_dir(&folder, &tampered);
        flip_byte(&tampered.join(file), 200);
        let out = verify(&tampered);
        assert!(!out.status.success(), "a flipped byte in {file} went unnoticed");
        assert!(stderr(&out).contains(what), "{file}: {}", stderr(&out));
    }
}
