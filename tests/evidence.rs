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

/// Unpacks a bundle with the standard tools a recipient has: tar, or Python's zipfile.
fn unpack(bundle: &Path, into: &Path) {
    std::fs::create_dir_all(into).unwrap();
    let out = if bundle.extension().unwrap() == "tar" {
        Command::new("tar").arg("-xf").arg(bundle).arg("-C").arg(into).output().unwrap()
    } else {
        let script =
            format!("import zipfile; zipfile.ZipFile('{}').extractall('{}')", bundle.display(), into.display());
        Command::new("/usr/bin/python3").args(["-c", &script]).output().unwrap()
    };
    assert!(out.status.success(), "cannot unpack {}: {}", bundle.display(), stderr(&out));
}

#[test]
fn the_dispute_bundle_verifies_by_hand_and_plays_offline_in_chromium() {
    let w = World::new();
    let id = w.prompt_session(90, 24, "echo bundle-proof-$((6*7))", "bundle-proof-42");
    let folder = w.folder(&id);
    w.eventually("the final seal", || {
        std::fs::read_to_string(folder.join("seal")).unwrap_or_default().contains(" audit.jsonl ")
    });

    // The bastion indexes the finished recording for seeking; the index is not evidence.
    w.eventually("the seek index", || folder.join(".session.cast.idx").is_file());
    for kind in ["tar", "zip"] {
        let bundle = w.path(&format!("evidence.{kind}"));
        let out = w.bastion.run(&["recordings", "export", &id, "--bundle", bundle.to_str().unwrap()]);
        assert!(out.status.success(), "{}", stderr(&out));
        assert!(stderr(&out).contains("intact"), "{}", stderr(&out));
        let unpacked = w.path(&format!("unpacked-{kind}"));
        unpack(&bundle, &unpacked);
        let root = unpacked.join(format!("chaperone-{id}"));
        let copy = root.join(&id);

        // The folder byte for byte (but the derived seek index), and it verifies with the
        // key shipped beside it.
        assert!(!copy.join(".session.cast.idx").exists());
        for entry in std::fs::read_dir(&folder).unwrap().flatten().filter(|e| e.file_name() != ".session.cast.idx") {
            assert_eq!(
                sha256_file(&entry.path()),
                sha256_file(&copy.join(entry.file_name())),
                "{:?}",
                entry.file_name()
            );
        }
        let verify = Command::new(BIN)
            .current_dir(&root)
            .args(["recordings", "verify", &id, "--key", "signing_ed25519.pub"])
            .output()
            .unwrap();
        assert!(verify.status.success(), "{}", stderr(&verify));

        let transcript = std::fs::read_to_string(root.join("transcript.txt")).unwrap();
        assert!(transcript.contains("echo bundle-proof-$((6*7))"), "{transcript}");
        assert!(transcript.contains("  bundle-proof-42\n"), "{transcript}");
        assert!(transcript.contains("Vendor:         acme"), "{transcript}");
    }

    // A technician gets the same bundle over ssh, as a tar on standard output.
    let out = w.console(&format!("recordings export {id} --bundle -"));
    assert!(out.status.success(), "{}", stderr(&out));
    let over_ssh = w.path("over-ssh.tar");
    std::fs::write(&over_ssh, &out.stdout).unwrap();
    unpack(&over_ssh, &w.path("unpacked-ssh"));
    let seal = format!("chaperone-{id}/{id}/seal");
    assert_eq!(sha256_file(&w.path("unpacked-ssh").join(&seal)), sha256_file(&folder.join("seal")));

    // README.txt's by-hand procedure, run as written (bash, jq, ssh-keygen, coreutils).
    let root = w.path("unpacked-tar").join(format!("chaperone-{id}"));
    let readme = std::fs::read_to_string(root.join("README.txt")).unwrap();
    let fingerprint = w.bastion.ok(&["keys"]);
    let expected = readme.lines().find_map(|l| l.trim().strip_prefix("expected: ")).unwrap();
    assert!(fingerprint.contains(expected), "README fingerprint {expected} not in `keys`:\n{fingerprint}");
    let script: String = readme
        .split("Verify by hand")
        .nth(1)
        .unwrap()
        .lines()
        .skip_while(|l| !l.trim_start().starts_with("cd "))
        .take_while(|l| !l.trim().is_empty())
        .map(|l| format!("{}\n", l.trim_start()))
        .collect();
    assert!(script.contains("done < seal"), "{script}");
    let run_by_hand = |root: &Path| Command::new("bash").arg("-c").arg(&script).current_dir(root).output().unwrap();
    let out = run_by_hand(&root);
    assert!(out.status.success() && stdout(&out).is_empty(), "{}{}", stdout(&out), stderr(&out));
    flip_byte(&root.join(&id).join("plan.md"), 3);
    let out = run_by_hand(&root);
    assert!(stdout(&out).contains("plan.md differs"), "{}{}", stdout(&out), stderr(&out));

    // The offline player, opened from disk by a real browser with the network closed.
    let page = w.path("unpacked-zip").join(format!("chaperone-{id}")).join("player.html");
    let html = std::fs::read_to_string(&page).unwrap();
    assert!(html.contains("content=\"default-src 'none';"), "the page must forbid the network");
    assert!(!html.contains("<script src") && !html.contains("<link"), "the page must not load anything");
    if let Ok(keep) = std::env::var("CHAPERONE_TEST_KEEP_BUNDLE") {
        std::fs::copy(&page, keep).unwrap();
    }
    // Headless Chromium dumps the DOM when its virtual time runs out, which can come before
    // the page's off-thread gzip decoding has finished on a loaded machine: up to three
    // tries, each a fresh browser; a page that never shows the recording still fails.
    let url = format!("file://{}#t=3600", page.display());
    let mut dom = chromium_dom(&url);
    for _ in 0..2 {
        if dom.contains("bundle-proof-42") {
            break;
        }
        dom = chromium_dom(&url);
    }
    assert!(dom.contains("bundle-proof-42"), "the player does not show the recording:\n{dom}");
    assert!(dom.contains("look around"), "the plan is not shown beside the player");
}

/// The DOM of a page after its scripts ran, from headless Chromium (Debian's package).
fn chromium_dom(url: &str) -> String {
    let profile = tempfile::tempdir().unwrap();
    let out = Command::new("chromium")
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--allow-file-access-from-files",
            "--virtual-time-budget=10000",
            "--dump-dom",
        ])
        .arg(format!("--user-data-dir={}", profile.path().display()))
        .arg(url)
        .output()
        .expect("chromium (scripts/test installs it)");
    assert!(out.status.success(), "chromium failed: {}", stderr(&out));
    stdout(&out)
}

/// Runs `cmd` to its end and returns its exit status and peak resident memory in KiB
/// (from `wait4`, for this child alone).
fn run_measured(mut cmd: Command) -> (i32, i64) {
    // Reaped by wait4 below, not by `Child::wait`, which does not report the memory.
    let pid = cmd.spawn().unwrap().id() as i32;
    let mut status = 0;
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    assert_eq!(unsafe { libc::wait4(pid, &mut status, 0, &mut usage) }, pid, "wait4");
    (libc::WEXITSTATUS(status), usage.ru_maxrss)
}

#[test]
fn a_bundle_of_a_large_session_is_written_in_bounded_memory() {
    let w = World::new();
    // ~19 MB of output: the recordings, the transcript and the page grow with it.
    let lines = 300_000;
    let script = format!("seq 1 {lines} | sed 's/.*/line & of a long log: invoice batch processed, Größe ok/'");
    let out = w.vendor.ssh(&w.bastion, "acme:erp01").arg(&script).output().unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    let id = w.last_session();
    w.ended_session_json(&id);
    let folder = w.folder(&id);
    w.eventually("the final seal", || {
        std::fs::read_to_string(folder.join("seal")).unwrap_or_default().contains(" audit.jsonl ")
    });

    // A zip to a file.
    let zip = w.path("large.zip");
    let mut cmd = w.bastion.command();
    cmd.args(["recordings", "export", &id, "--bundle", zip.to_str().unwrap()]).stderr(std::process::Stdio::null());
    let (code, zip_kb) = run_measured(cmd);
    assert_eq!(code, 0);
    assert!(zip_kb < 48 * 1024, "writing the bundle took {zip_kb} KiB");
    // A tar over ssh, as a technician: the bastion sends it on as it is written.
    let pid = w.bastion.pid();
    std::fs::write(format!("/proc/{pid}/clear_refs"), "5").unwrap(); // resets VmHWM
    let before = status_kb(pid, "VmRSS:");
    let remote = w.path("remote.tar");
    let out = w.console(&format!("recordings export {id} --bundle -"));
    assert!(out.status.success(), "{}", stderr(&out));
    std::fs::write(&remote, &out.stdout).unwrap();
    let grown = status_kb(pid, "VmHWM:").saturating_sub(before);
    assert!(grown < 16 * 1024, "the bastion grew by {grown} KiB sending a {} byte bundle", out.stdout.len());

    // Complete: the transcript has every line, the page every recording.
    for bundle in [&zip, &remote] {
        let unpacked = w.path(&format!("unpacked-{}", bundle.file_name().unwrap().to_str().unwrap()));
        unpack(bundle, &unpacked);
        let root = unpacked.join(format!("chaperone-{id}"));
        let transcript = std::fs::read_to_string(root.join("transcript.txt")).unwrap();
        let output = transcript.split("--- Output ---\n").nth(1).unwrap();
        assert_eq!(output.lines().filter(|l| l.contains("of a long log")).count(), lines);
        assert!(output.contains(&format!("line {lines} of a long log: invoice batch processed, Größe ok")));
        let page = std::fs::read_to_string(root.join("player.html")).unwrap();
        assert_eq!(page.matches("class=\"cast\"").count(), 1);
        assert!(page.contains("</html>"));
    }
}
