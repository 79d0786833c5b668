//! The fuzz targets' inputs on stable: every committed corpus file and every crash input
//! the fuzzer found (`fuzz/corpus/<target>/`, `fuzz/regressions/<target>/`) through the
//! same harness the fuzzer runs (`chaperone::fuzzing`), so that `cargo test` keeps fixed
//! what fuzzing found without nightly.

use std::path::Path;

use chaperone::fuzzing::TARGETS;

use crate::common::*;

fn inputs(dir: &Path) -> Vec<std::path::PathBuf> {
    let mut files: Vec<_> = std::fs::read_dir(dir)
        .map(|entries| entries.flatten().map(|e| e.path()).filter(|p| p.is_file()).collect())
        .unwrap_or_default();
    files.sort();
    files
}

/// Runs every input of `fuzz/<kind>/<target>/` through the harness; how many there were,
/// and the ones that broke an invariant.
fn run(kind: &str, target: &str, harness: fn(&[u8])) -> (usize, Vec<String>) {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz").join(kind).join(target);
    let files = inputs(&dir);
    let broken = files
        .iter()
        .filter(|file| {
            let data = std::fs::read(file).unwrap();
            std::panic::catch_unwind(|| harness(&data)).is_err()
        })
        .map(|file| file.display().to_string())
        .collect();
    (files.len(), broken)
}

#[test]
fn every_fuzz_corpus_passes_its_harness() {
    let mut broken = Vec::new();
    for (target, harness) in TARGETS {
        let (n, failed) = run("corpus", target, harness);
        assert!(n > 0, "{target}: no corpus under fuzz/corpus/{target}");
        broken.extend(failed);
    }
    assert!(broken.is_empty(), "inputs that break an invariant: {broken:#?}");
}

#[test]
fn every_crash_the_fuzzer_found_stays_fixed() {
    let broken: Vec<String> =
        TARGETS.iter().flat_map(|(target, harness)| run("regressions", target, *harness).1).collect();
    assert!(broken.is_empty(), "inputs that break an invariant: {broken:#?}");
}

#[test]
#[ignore = "rewrites the seed corpus: scripts/fuzz --seeds"]
fn write_fuzz_seeds() {
    chaperone::fuzzing::write_seeds(&Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz").join("corpus")).unwrap();
}

/// Found writing the `sanitize` target (its invariant: sanitizing twice changes nothing): a byte the sanitizer wrote just before a control string
/// it removed (an ESC that another ESC followed, a lone 0xC2) joined what came after the
/// string into a new one: `ESC ESC ]0;x BEL ]52;c;…` became `ESC ]52;c;…`, a clipboard
/// write on the terminal of whoever reads the recording; `C2 ESC ]0;y BEL 9D 52;c;…` the
/// same as an 8-bit OSC.
#[test]
fn removing_a_control_string_never_leaves_another_behind() {
    let w = World::new();
    let out = w.exec(
        r"printf 'before-\033\033]0;x\007]52;c;ZXZpbA==\007-mid-\302\033]0;y\007\23552;c;ZXZpbA==\007-end-\033\302\235z\007]2;title\007-after\n'",
    );
    assert!(out.status.success(), "{}", stderr(&out));
    let id = w.last_session();
    w.ended_session_json(&id);
    // Exact bytes: the lone 0xC2s the target printed are in them, not UTF-8.
    let raw = w.bastion.run(&["recordings", "cat", "--raw", &id]);
    assert!(raw.status.success(), "{}", stderr(&raw));
    let raw = String::from_utf8_lossy(&raw.stdout);
    assert!(raw.contains("]52;c;ZXZpbA=="), "recorded as sent: {raw:?}");
    // Over ssh, as a technician reads it (sanitized with or without a terminal).
    let shown = stdout(&w.console(&format!("recordings cat {id}")));
    assert!(shown.contains("before-") && shown.contains("-after"), "{shown:?}");
    for control in ["\x1b]", "\u{9d}"] {
        assert!(!shown.contains(control), "{control:?} reaches the reader's terminal: {shown:?}");
    }
}

/// Found writing the `cast_reader` target (times never go back): an event interval no recorder writes (`1e300`
/// seconds) overflowed the reader's clock: `recordings cat`, `replay` and `export` of
/// such a file panicked (debug builds) or saw time run backwards (release).
#[test]
fn a_recording_with_absurd_intervals_still_reads() {
    let w = World::new();
    let out = w.exec("echo hello");
    assert!(out.status.success(), "{}", stderr(&out));
    let id = w.last_session();
    w.ended_session_json(&id);
    let cast = w.folder(&id).join("session.cast.zst");
    let plain = zstd::decode_all(&std::fs::read(&cast).unwrap()[..]).unwrap();
    let header = String::from_utf8(plain).unwrap().lines().next().unwrap().to_string();
    let events = "[1e300, \"o\", \"first\\n\"]\n[1e300, \"m\", \"mark\"]\n[1e300, \"o\", \"second\\n\"]\n";
    let hostile = zstd::encode_all(format!("{header}\n{events}").as_bytes(), 1).unwrap();
    std::fs::write(&cast, hostile).unwrap();

    let cat = w.bastion.run(&["recordings", "cat", &id]);
    assert!(cat.status.success(), "cat: {}", stderr(&cat));
    assert_eq!(stdout(&cat), "first\nsecond\n");
    let export = w.bastion.run(&["recordings", "export", &id, "--format", "v2", "-o", "-"]);
    assert!(!stderr(&export).contains("panicked"), "export: {}", stderr(&export));
    let times: Vec<f64> = stdout(&export)
        .lines()
        .skip(1)
        .filter_map(|l| serde_json::from_str::<(f64, String, String)>(l).ok())
        .map(|e| e.0)
        .collect();
    assert!(times.windows(2).all(|t| t[0] <= t[1]), "export's times go back: {times:?}");
    let replay = w.bastion.run(&["replay", &id, "--idle-limit", "0.01"]);
    assert!(!stderr(&replay).contains("panicked"), "replay: {}", stderr(&replay));
    assert!(stdout(&replay).contains("second"), "replay: {}", stdout(&replay));
}

/// The same over a live watch, where the sanitizer sees raw bytes: a lone 0xC2 before a
/// removed string joined the 0x9D after it into an 8-bit OSC (U+009D) on the watcher's
/// terminal, and an ESC before `C2 9D` (an 8-bit OSC that was removed) joined the `]`
/// after it.
#[test]
fn a_watcher_gets_no_control_string_made_of_the_pieces_around_a_removed_one() {
    let w = World::bare("[policy]\nrequire_acknowledgements = false\n");
    w.book_now("erp01", &w.account.clone());
    let mut vendor = w.vendor_shell(80, 24);
    let id = w.live_session();
    let mut ssh = w.tech.ssh(&w.bastion, "alice");
    ssh.arg("-t").arg(format!("watch {id}")).env("TERM", "xterm-256color");
    let alice = pty::Pty::spawn(ssh, 80, 24);
    vendor.expect("plan: Maintenance");
    vendor.type_text("PS1='rdy> '\r");
    alice.expect("rdy> ");
    vendor.type_text(
        r"printf 'c1-\302\033]0;y\007\23552;c;ZXZpbA==\007-esc-\033\302\235z\007]52;c;ZXZpbA==\007-twice-\033\033]0;x\007]2;hijacked\007-fin''ished\n'",
    );
    vendor.type_text("\r");
    alice.expect("-finished");
    assert!(vendor.output().contains("52;c;ZXZpbA=="), "the vendor's own terminal gets it all");
    // What the watcher got after the command line's echo (the status line is chaperone's
    // own title, set before it).
    let all = alice.output();
    let seen = &all[all.find("-fin''ished").unwrap_or(0)..];
    assert!(seen.contains("c1-") && seen.contains("-twice-"), "{seen:?}");
    for control in ["\x1b]", "\u{9d}"] {
        assert!(!seen.contains(control), "{control:?} reaches the watcher's terminal: {seen:?}");
    }
}

/// Found by fuzzing the `cast_reader` target (encoder round trip), within seconds: input that ended inside a
/// character lost its last bytes from the recording (stdout's were written as U+FFFD,
/// the vendor's input was not).
#[test]
fn input_that_ends_inside_a_character_is_still_recorded() {
    let w = World::new();
    let typed = w.path("typed");
    std::fs::write(&typed, b"echo hi\n\xc3").unwrap();
    let out = w
        .vendor
        .ssh(&w.bastion, "acme:erp01")
        .arg("cat > /dev/null")
        .stdin(std::fs::File::open(&typed).unwrap())
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    let id = w.last_session();
    w.ended_session_json(&id);
    let export = w.bastion.run(&["recordings", "export", &id, "-o", "-"]);
    assert!(export.status.success(), "{}", stderr(&export));
    let input: String = stdout(&export)
        .lines()
        .skip(1)
        .filter_map(|l| serde_json::from_str::<(f64, String, String)>(l).ok())
        .filter(|e| e.1 == "i")
        .map(|e| e.2)
        .collect();
    assert_eq!(input, "echo hi\n\u{fffd}");
}

/// Found writing the `seal` target (problems hold no control character): `recordings verify` printed the names of files it found in
/// a session folder as they were, so a file added under the name `ESC ]52;…` wrote the
/// verifier's clipboard (and a newline in a name forged a line of the report).
#[test]
fn verify_prints_no_control_string_from_a_file_name() {
    let w = World::new();
    let out = w.exec("echo hello");
    assert!(out.status.success(), "{}", stderr(&out));
    let id = w.last_session();
    w.ended_session_json(&id);
    let name = "\x1b]52;c;ZXZpbA==\x07\nsealed: forged";
    std::fs::write(w.folder(&id).join(name), "added later").unwrap();
    let verify = w.bastion.run(&["recordings", "verify", &id]);
    assert!(!verify.status.success(), "an added file is a problem");
    let shown = format!("{}{}", stdout(&verify), stderr(&verify));
    assert!(shown.contains("not covered by the seal"), "{shown}");
    assert!(!shown.contains('\x1b'), "{shown:?}");
    assert!(!shown.lines().any(|l| l.starts_with("sealed: forged")), "{shown:?}");
    let console = w.console(&format!("recordings verify {id}"));
    let shown = format!("{}{}", stdout(&console), stderr(&console));
    assert!(shown.contains("not covered by the seal") && !shown.contains('\x1b'), "{shown:?}");
}

/// Next of the class the `seek_index` target covers: the seek index is a dotfile beside
/// the recording, trusted when it names the recording's length and SHA-256 (which anyone
/// who can write the folder can compute). A marker planted at the end of time made `[`
/// (previous marker) in `replay` overflow and panic.
#[test]
fn a_planted_seek_index_with_absurd_markers_does_not_break_replay() {
    let w = World::new();
    let out = w.exec("echo hello-replay");
    assert!(out.status.success(), "{}", stderr(&out));
    let id = w.last_session();
    w.ended_session_json(&id);
    let folder = w.folder(&id);
    let first = w.bastion.run(&["replay", &id]);
    assert!(first.status.success(), "{}", stderr(&first));
    let index_file = folder.join(".session.cast.idx");
    let mut index: serde_json::Value = serde_json::from_slice(&std::fs::read(&index_file).unwrap()).unwrap();
    index["markers"] = serde_json::json!([{ "time_ms": u64::MAX, "label": "end of time" }]);
    std::fs::write(&index_file, serde_json::to_vec(&index).unwrap()).unwrap();

    let mut cmd = w.bastion.command();
    cmd.arg("replay").arg(&id).arg("--paused");
    let mut player = pty::Pty::spawn(cmd, 80, 24);
    player.expect("paused");
    player.type_text("[");
    std::thread::sleep(std::time::Duration::from_millis(300));
    player.type_text("q");
    let status = player.wait(std::time::Duration::from_secs(15));
    assert!(!player.output().contains("panicked"), "{}", player.output());
    assert!(status.success(), "{}", player.output());
}

/// Found by fuzzing the `plan` target (the title is never empty), within seconds: a plan
/// whose first heading was a bare `#` had an empty title, in `booking list` and in the
/// banner the vendor reads at login.
#[test]
fn a_bare_heading_does_not_empty_the_plan_title() {
    let w = World::bare("");
    let plan = w.path("plan-bare-heading.md");
    std::fs::write(&plan, "#\n\nUpgrade ERP to 9.2\n- stop erp\n").unwrap();
    let created = w.bastion.run(&[
        "booking",
        "create",
        "--vendor",
        "acme",
        "--target",
        "erp01",
        "--account",
        &w.account,
        "--start",
        "2026-12-03 09:00",
        "--end",
        "2026-12-03 20:00",
        "--plan",
        plan.to_str().unwrap(),
        "--emergency",
        "integration test",
        "--by",
        "alice",
    ]);
    assert!(created.status.success(), "{}", stderr(&created));
    let listed = w.bastion.ok(&["booking", "list"]);
    assert!(listed.lines().any(|l| l.trim_end().ends_with("Upgrade ERP to 9.2")), "{listed}");
}
