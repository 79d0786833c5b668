//! Every channel is recorded as zstd-compressed asciicast v3 beside session.json; real
//! readers (zstd, asciinema) read it; a crash loses at most about a second; shutdown
//! finishes recordings.

use std::io::Read;
use std::process::{Command, Stdio};
use std::time::Duration;

use crate::common::*;

#[test]
fn exec_session_is_recorded_with_its_metadata() {
    let w = World::new();
    let out = w.exec("printf 'größe\\n'; echo oops >&2; exit 4");
    assert_eq!(out.status.code(), Some(4));
    let id = w.last_session();
    assert_eq!(id.len(), 14);
    let json = w.ended_session_json(&id);
    assert_eq!(json["vendor"], "acme");
    assert_eq!(json["target"], "erp01");
    assert_eq!(json["account"], w.account.as_str());
    assert_eq!(json["exit_status"], 4);
    assert_eq!(json["state"], "ended");
    assert_eq!(json["bytes_out"], "größe\noops\n".len());
    assert!(json["client_address"].as_str().unwrap().starts_with("127.0.0.1:"));
    assert_eq!(json["chaperone_version"], env!("CARGO_PKG_VERSION"));
    assert!(json["end"].is_string());

    // The real zstd reads the file (a sequence of frames) as asciicast v3.
    let cast = w.folder(&id).join("session.cast.zst");
    let text = unzstd(&cast);
    let mut lines = text.lines();
    let header: serde_json::Value = serde_json::from_str(lines.next().unwrap()).unwrap();
    assert_eq!(header["version"], 3);
    assert_eq!(header["command"], "printf 'größe\\n'; echo oops >&2; exit 4");
    assert!(header["term"]["cols"].as_u64().unwrap() > 0);
    let events: Vec<(f64, String, String)> = lines.map(|l| serde_json::from_str(l).unwrap()).collect();
    let output: String = events.iter().filter(|e| e.1 == "o").map(|e| e.2.as_str()).collect();
    assert_eq!(output, "größe\noops\n");
    // The exit status is recorded where the target sent it: sshd may report the exit before
    // it has read the rest of the command's output (here the stderr line), and the relay
    // keeps the target's order.
    let exits: Vec<&str> = events.iter().filter(|e| e.1 == "x").map(|e| e.2.as_str()).collect();
    assert_eq!(exits, ["4"]);

    assert_eq!(w.bastion.ok(&["recordings", "cat", &id]), "größe\noops\n");
    let listed = w.bastion.ok(&["recordings", "list"]);
    assert!(listed.contains("acme@erp01") && listed.contains("exit 4"), "{listed}");
}

/// A vendor's client may claim any terminal size; every player of the recording would
/// have to hold that screen. The recording keeps sizes within 1000×1000 and says what was
/// claimed; the target still gets what the client asked for.
#[test]
fn an_absurd_terminal_size_is_recorded_within_bounds_and_noted() {
    let w = World::new();
    let id = w.prompt_session(65535, 65535, "stty size", "65535 65535");
    let text = w.recording_text(&id);
    let header: serde_json::Value = serde_json::from_str(text.lines().next().unwrap()).unwrap();
    assert_eq!(header["term"]["cols"], 1000, "{header}");
    assert_eq!(header["term"]["rows"], 1000, "{header}");
    assert!(text.contains("the vendor's client reported a terminal of 65535x65535; recorded as 1000x1000"), "{text}");
    let out = w.bastion.run(&["replay", &id]);
    assert!(out.status.success(), "{}", stderr(&out));
}

#[test]
fn interactive_session_with_resize_is_read_by_asciinema() {
    let w = World::new();
    let mut pty = w.vendor_prompt(100, 30);
    pty.type_text("echo typed-$((40+2))\r");
    pty.expect("typed-42");
    pty.resize(120, 40);
    std::thread::sleep(Duration::from_millis(300));
    pty.type_text("stty size\r");
    pty.expect("40 120");
    pty.type_text("exit\r");
    assert!(pty.wait(Duration::from_secs(15)).success(), "{}", pty.output());

    let id = w.last_session();
    w.ended_session_json(&id);
    let v2 = w.path("session.v2.cast");
    w.bastion.ok(&["recordings", "export", &id, "--format", "v2", "-o", v2.to_str().unwrap()]);

    // `asciinema cat` wants a terminal: give it one with script(1).
    let cat = Command::new("script")
        .args(["-qec", &format!("asciinema cat {}", v2.display()), "/dev/null"])
        .stdin(Stdio::null())
        .output()
        .unwrap();
    let shown = stdout(&cat);
    assert!(cat.status.success(), "asciinema cat failed: {shown} {}", stderr(&cat));
    assert!(shown.contains("typed-42"), "{shown}");
    assert!(shown.contains("40 120"), "{shown}");

    // asciinema's own parser: header size, what was typed, the resize.
    let script = format!(
        "from asciinema import asciicast\n\
         with asciicast.open_from_url('{}') as a:\n    \
             ev = list(a.events())\n    \
             print('SIZE', a.v2_header['width'], a.v2_header['height'], a.v2_header['env']['TERM'])\n    \
             print('INPUT', repr(''.join(e[2] for e in ev if e[1] == 'i')))\n    \
             print('RESIZE', [e[2] for e in ev if e[1] == 'r'])\n",
        v2.display()
    );
    let parsed = Command::new("/usr/bin/python3").args(["-c", &script]).output().unwrap();
    let report = stdout(&parsed);
    assert!(parsed.status.success(), "{}", stderr(&parsed));
    assert!(report.contains("SIZE 100 30 xterm-256color"), "{report}");
    assert!(report.contains("echo typed-$((40+2))"), "{report}");
    assert!(report.contains("RESIZE ['120x40']"), "{report}");

    // Find things: what was typed, what was shown, with the offset into the session.
    let found = w.bastion.ok(&["recordings", "search", "typed-$((40"]);
    assert!(found.contains(&id) && found.contains("typed: echo typed-$((40+2))"), "{found}");
    let found = w.bastion.ok(&["recordings", "search", "TYPED-42", "--vendor", "acme"]);
    let line = found.lines().find(|l| l.contains("output: typed-42")).unwrap_or_else(|| panic!("{found}"));
    let offset = line.split_whitespace().nth(1).unwrap();
    assert!(offset.len() == 8 && offset.starts_with("00:00:"), "{line}");
    assert!(w.bastion.ok(&["recordings", "search", "typed-42", "--vendor", "nobody"]).contains("no match"));
    let commands = w.bastion.ok(&["recordings", "commands", &id]);
    let typed: Vec<&str> = commands.lines().map(|l| l.split_once("  ").unwrap().1).collect();
    assert_eq!(typed, vec!["PS1='rdy> '", "echo typed-$((40+2))", "stty size", "exit"], "{commands}");
}

#[test]
fn recording_survives_kill_9_mid_session() {
    let mut w = World::new();
    let mut child = w.start_counting();
    let mut out = std::io::BufReader::new(child.stdout.take().unwrap());
    let mut seen = 0;
    let mut line = String::new();
    // Read until the vendor has seen 100 lines, then give the recorder more than a flush
    // interval before killing chaperone without warning.
    while seen < 100 {
        line.clear();
        std::io::BufRead::read_line(&mut out, &mut line).unwrap();
        seen += 1;
    }
    std::thread::sleep(Duration::from_millis(1500));
    w.bastion.signal(libc::SIGKILL);
    let _ = child.wait();

    let id = w.last_session();
    let cat = w.bastion.run(&["recordings", "cat", &id]);
    assert!(cat.status.success(), "{}", stderr(&cat));
    let text = stdout(&cat);
    for n in 1..=100 {
        assert!(text.contains(&format!("line-{n}\n")), "line-{n} lost after kill -9");
    }
    assert!(stderr(&cat).contains("ends early") || text.ends_with('\n'), "{}", stderr(&cat));
    // zstd reads every complete frame of the cut file.
    let cast = w.folder(&id).join("session.cast.zst");
    let frames = Command::new("sh")
        .arg("-c")
        .arg(format!("zstd -dc {} 2>/dev/null | head -1", cast.display()))
        .output()
        .unwrap();
    assert!(stdout(&frames).contains("\"version\":3"));

    // The next start closes the recording: cut to what the seal covers, marked
    // interrupted, sealed anew, and the session marked interrupted everywhere.
    w.bastion.start();
    w.eventually("the session to be marked interrupted", || {
        w.bastion.ok(&["recordings", "list"]).contains("interrupted")
    });
    let json: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(w.folder(&id).join("session.json")).unwrap()).unwrap();
    assert_eq!(json["state"], "interrupted");
    let verify = w.bastion.run(&["recordings", "verify", &id]);
    assert!(verify.status.success(), "{}", stderr(&verify));
    let plain = Command::new("zstd").arg("-dc").arg(&cast).output().unwrap();
    assert!(plain.status.success(), "the recovered file is a clean zstd stream");
    let text = stdout(&plain);
    assert!(text.contains("line-100\\n"), "line-100 lost in recovery");
    let marker = "\"m\", \"interrupted: chaperone stopped without closing this recording\"]";
    assert!(text.trim_end().ends_with(marker), "{}", &text[text.len().saturating_sub(300)..]);
    let cat = w.bastion.run(&["recordings", "cat", &id]);
    assert!(!stderr(&cat).contains("ends early"), "{}", stderr(&cat));
    assert!(w.bastion.ok(&["audit"]).contains("session.interrupted"));
}

#[test]
fn sigterm_ends_sessions_with_a_message_and_finishes_recordings() {
    let mut w = World::new();
    let child = w
        .vendor
        .ssh(&w.bastion, "acme:erp01")
        .arg("echo started; sleep 60")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    w.eventually("the session to start", || w.session_ids().len() == 1);
    std::thread::sleep(Duration::from_millis(500));
    w.bastion.signal(libc::SIGTERM);
    let out = child.wait_with_output().unwrap();
    assert!(stderr(&out).contains("chaperone: the bastion is shutting down"), "{}", stderr(&out));
    assert_eq!(stdout(&out), "started\n");
    let status = w.bastion.wait(Duration::from_secs(20));
    assert_eq!(status.code(), Some(0), "{}", w.bastion.log());

    let id = w.last_session();
    let json = w.ended_session_json(&id);
    assert_eq!(json["state"], "ended");
    let cat = w.bastion.run(&["recordings", "cat", &id]);
    assert_eq!(stdout(&cat), "started\n");
    assert!(!stderr(&cat).contains("ends early"), "recording was not finished: {}", stderr(&cat));
    // The reason is on the timeline too.
    let cast = w.recording_text(&id);
    assert!(cast.contains("\"m\", \"the bastion is shutting down"), "{cast}");
}

#[test]
fn no_recording_no_session() {
    let w = World::new();
    // Make the recordings folder impossible to create sessions in (a file in its place;
    // permissions would not stop root).
    let recordings = w.bastion.recordings();
    std::fs::remove_dir_all(&recordings).unwrap();
    std::fs::write(&recordings, "not a folder").unwrap();
    let out = w.exec("echo must-not-run > /dev/null; echo ran");
    assert_eq!(out.status.code(), Some(255));
    assert!(!stdout(&out).contains("ran"));
    assert!(stderr(&out).contains("chaperone: the session cannot be recorded"), "{}", stderr(&out));
}

/// Unmounts a test file system however the test ends.
struct Mount(std::path::PathBuf);

impl Drop for Mount {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.0).status();
    }
}

#[test]
fn a_recording_that_cannot_be_written_ends_the_session() {
    let w = World::new();
    // A disk that fills up mid-session: a 256 KiB tmpfs under the recordings folder.
    let recordings = w.bastion.recordings();
    let mounted =
        Command::new("mount").args(["-t", "tmpfs", "-o", "size=256k", "tmpfs"]).arg(&recordings).status().unwrap();
    assert!(mounted.success(), "this test needs to mount a tmpfs (run as root)");
    let _mount = Mount(recordings.clone());

    let out = w
        .vendor
        .ssh(&w.bastion, "acme:erp01")
        .arg("head -c 30000000 /dev/urandom | base64")
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(255), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("chaperone: the recording cannot be written, so the session has been ended"),
        "{}",
        stderr(&out)
    );
    assert!(out.stdout.len() < 30_000_000 * 4 / 3, "the output went on unrecorded");
    // What was recorded before the disk filled is still readable.
    let id = w.last_session();
    let cat = w.bastion.run(&["recordings", "cat", &id]);
    assert!(cat.status.success(), "{}", stderr(&cat));
    assert!(!cat.stdout.is_empty());
    // The vendor saw no more than what reached the disk plus what was in flight to it (the
    // recorder's queue of 64 packets of 32 KiB and the batch of 16 taken from it, the frame
    // being filled, the one queued for compression and the one being compressed): the
    // session stopped at once.
    let in_flight = (64 + 16) * 32 * 1024 + 3 * chaperone::recording::encoder::FRAME_BYTES;
    assert!(
        out.stdout.len() <= cat.stdout.len() + in_flight,
        "vendor saw {} bytes, the recording has {}",
        out.stdout.len(),
        cat.stdout.len()
    );
}

/// `chaperone replay` in a terminal: starts at a marker, paused; keys play, seek and quit.
#[test]
fn replay_starts_at_a_marker_and_obeys_its_keys() {
    let w = World::new();
    let mut pty = w.vendor_prompt(80, 24);
    pty.type_text("echo before-$((1))\r");
    pty.expect("before-1");
    // Ten minutes before the window ends: the warning is a marker on the timeline.
    w.bastion.set_clock("2026-12-03T19:50:00+01:00");
    pty.expect("ends in 10 minutes");
    std::thread::sleep(Duration::from_millis(1500));
    pty.type_text("echo after-$((2))\r");
    pty.expect("after-2");
    pty.type_text("exit\r");
    assert!(pty.wait(Duration::from_secs(15)).success(), "{}", pty.output());
    let id = w.last_session();
    w.ended_session_json(&id);

    let replay = |args: &[&str]| {
        let mut cmd = w.bastion.command();
        cmd.arg("replay").arg(&id).args(args);
        pty::Pty::spawn(cmd, 80, 24)
    };

    // At the marker, paused: what came before is on the screen, what came after is not.
    let mut player = replay(&["--from-marker", "1", "--paused", "--speed", "4"]);
    player.expect("paused  [");
    let shown = player.output();
    assert!(shown.contains("before-1"), "{shown}");
    assert!(
        shown.contains("paused  [the window of booking B-1 ends in 10 minutes"),
        "marker label in the title: {shown}"
    );
    assert!(!shown.contains("after-2"), "{shown}");
    // Space plays on to the end, and the player exits by itself.
    player.type_text(" ");
    player.expect("after-2");
    assert!(player.wait(Duration::from_secs(15)).success(), "{}", player.output());
    player.expect("replay ended at");

    // From the start, paused; → jumps 10 s (here: to the end) at once; q quits.
    let seek_and_quit = |mut player: pty::Pty| {
        player.expect("00:00:00 / ");
        assert!(!player.output().contains("after-2"));
        player.type_text("\x1b[C");
        player.expect("after-2");
        player.type_text("q");
        assert!(player.wait(Duration::from_secs(15)).success(), "{}", player.output());
        player.expect("replay stopped at");
    };
    seek_and_quit(replay(&["--paused"]));

    // Over ssh, as a technician with a terminal: the same player, its keys through the channel.
    let mut cmd = w.tech.ssh(&w.bastion, "alice");
    cmd.arg("-tt").arg(format!("replay {id} --paused")).env("TERM", "xterm-256color");
    seek_and_quit(pty::Pty::spawn(cmd, 80, 24));
    // Without a terminal it plays through, without keys.
    let out = w.console(&format!("replay {id} --speed 100"));
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(stdout(&out).contains("after-2") && stderr(&out).contains("replay ended at"), "{}", stderr(&out));
    // A technician who leaves mid-replay stops it, also in a quiet stretch (from the marker,
    // 1.5 s played a hundred times slower): the bastion does not play on for nobody.
    let mut slow = w.tech.ssh(&w.bastion, "alice");
    slow.arg(format!("replay {id} --from-marker 1 --speed 0.01")).stdin(Stdio::null()).stdout(Stdio::piped());
    let mut slow = slow.spawn().unwrap();
    let (mut shown, mut pipe) = (Vec::new(), slow.stdout.take().unwrap());
    while !String::from_utf8_lossy(&shown).contains("before-1") {
        let mut buf = [0u8; 4096];
        let n = pipe.read(&mut buf).unwrap();
        assert!(n > 0, "the replay ended early: {}", String::from_utf8_lossy(&shown));
        shown.extend_from_slice(&buf[..n]);
    }
    assert!(!String::from_utf8_lossy(&shown).contains("after-2"));
    slow.kill().unwrap();
    slow.wait().unwrap();
    w.eventually("the replay to stop", || {
        w.bastion.log().contains(&format!("alice left; their command stopped: replay {id}"))
    });

    // The seek index sits beside the recording; it is derived, and the folder still verifies.
    assert!(w.folder(&id).join(".session.cast.idx").is_file());
    w.bastion.ok(&["recordings", "verify", &id]);

    // Bad requests are one-line errors.
    let out = w.bastion.run(&["replay", &id, "--from-marker", "9"]);
    assert_eq!(stderr(&out).trim(), "chaperone: --from-marker 9: the recording has 1 marker(s)");
    let out = w.bastion.run(&["replay", &id, "--from", "1:75"]);
    assert_eq!(stderr(&out).trim(), "chaperone: --from \"1:75\": give HH:MM:SS");
}

/// `recordings cat` on a terminal or over ssh shows the output without the control
/// strings a vendor could aim at whoever reads it (as `watch` and `replay` do); into a
/// local file, or with `--raw`, every byte.
#[test]
fn recordings_cat_on_a_terminal_or_over_ssh_drops_control_strings_and_raw_keeps_every_byte() {
    let w = World::new();
    let out = w.exec("printf 'before-\\033]52;c;ZXZpbA==\\007-after\\n'");
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(stdout(&out).contains("\x1b]52;c;ZXZpbA=="), "relayed as it was");
    let id = w.last_session();
    w.ended_session_json(&id);
    let raw = w.bastion.ok(&["recordings", "cat", &id]);
    assert!(raw.contains("before-\x1b]52;c;ZXZpbA==\x07-after"), "{raw:?}");

    let mut cmd = w.bastion.command();
    cmd.args(["recordings", "cat", &id]);
    let mut local = pty::Pty::spawn(cmd, 80, 24);
    assert!(local.wait(Duration::from_secs(15)).success(), "{}", local.output());
    local.expect("before--after");
    assert!(!local.output().contains("\x1b]52"), "{:?}", local.output());
    // Over ssh the same, with a terminal or without (the bastion cannot tell the caller's
    // terminal from a file); every byte only with --raw.
    let mut cmd = w.tech.ssh(&w.bastion, "alice");
    cmd.arg("-tt").arg(format!("recordings cat {id}"));
    let mut remote = pty::Pty::spawn(cmd, 80, 24);
    assert!(remote.wait(Duration::from_secs(15)).success(), "{}", remote.output());
    remote.expect("before--after");
    assert!(!remote.output().contains("\x1b]52"), "{:?}", remote.output());
    let piped = stdout(&w.console(&format!("recordings cat {id}")));
    assert!(piped.contains("before--after") && !piped.contains("\x1b]52"), "{piped:?}");
    assert!(stdout(&w.console(&format!("recordings cat --raw {id}"))).contains("before-\x1b]52;c;ZXZpbA==\x07-after"));
    let mut cmd = w.bastion.command();
    cmd.args(["recordings", "cat", "--raw", &id]);
    let mut local = pty::Pty::spawn(cmd, 80, 24);
    assert!(local.wait(Duration::from_secs(15)).success(), "{}", local.output());
    assert!(local.output().contains("\x1b]52;c;ZXZpbA=="), "--raw on a terminal: {:?}", local.output());
}
