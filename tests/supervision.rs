//! Live supervision over plain ssh: the vendor waits for a technician, watchers see the
//! vendor's screen (late joiners too, full-screen programs included), a stalled watcher
//! slows nobody, and freeze, take-over, notes and kill work and are recorded.

use std::process::Stdio;
use std::time::Duration;

use crate::common::pty::Pty;
use crate::common::supervised::*;
use crate::common::*;

fn vendor_shell(w: &World) -> Pty {
    w.vendor_shell(80, 24)
}

/// The vendor's shell with alice watching, both at the prompt (`rdy> `); the session's id.
fn watched_prompt(w: &World) -> (Pty, String, Pty) {
    let mut vendor = vendor_shell(w);
    let id = w.live_session();
    let alice = watch(w, "alice", &id);
    vendor.expect("plan: Maintenance");
    vendor.type_text("PS1='rdy> '\r");
    alice.expect("rdy> ");
    (vendor, id, alice)
}

#[test]
fn the_vendor_waits_for_a_technician_and_late_watchers_see_the_current_screen() {
    let w = supervised_world();
    let mut vendor = vendor_shell(&w);
    vendor.expect("waiting for a technician to join (booking B-1, window ends 20:00 Europe/Berlin");
    let id = w.live_session();
    let listed = stdout(&w.console("sessions"));
    assert!(listed.contains("acme@erp01") && listed.contains("watched by nobody"), "{listed}");
    std::thread::sleep(Duration::from_millis(500));
    assert!(!vendor.output().contains("plan: Maintenance"), "the shell started before anyone watched");

    let alice = watch(&w, "alice", &id);
    vendor.expect("technician alice is watching; starting the session");
    vendor.expect("plan: Maintenance");
    vendor.type_text("PS1='rdy> '\r");
    vendor.expect("rdy> ");
    alice.expect("rdy> ");
    // The vendor's output cannot act on the watcher's terminal: a clipboard write (OSC 52)
    // and a title (where the status line is) do not reach it; the text around them does.
    vendor.type_text("printf 'osc-\\033]52;c;ZXZpbA==\\007-\\033]2;hijacked\\007end\\n'\r");
    alice.expect("osc--end");
    assert!(vendor.output().contains("\x1b]52;c;ZXZpbA=="), "the vendor's own terminal gets it all");
    assert!(!alice.output().contains("\x1b]52") && !alice.output().contains("\x1b]2;hijacked"), "{}", alice.output());

    // A full-screen program, then a technician who joins late.
    let lines = w.path("lines.txt");
    std::fs::write(&lines, (1..=200).map(|n| format!("line-{n:03}\n")).collect::<String>()).unwrap();
    vendor.type_text(&format!("less {}\r", lines.display()));
    vendor.expect("line-023");
    alice.expect("line-023");
    let bob_client = add_tech(&w, "bob");
    let bob = watch_as(&w, &bob_client, "bob", &id);
    bob.expect("line-023");
    std::thread::sleep(Duration::from_millis(300));
    let vendor_screen = screen(&vendor.output());
    assert_eq!(screen(&bob.output()), vendor_screen, "bob's first screen differs from the vendor's");
    assert!(vendor_screen[0].starts_with("line-001"), "{vendor_screen:?}");
    // The status line names both watchers.
    bob.expect("watching: alice,bob");
    let listed = stdout(&w.console("sessions"));
    assert!(listed.contains("watched by alice,bob"), "{listed}");

    vendor.type_text("q");
    vendor.type_text("exit\r");
    assert!(vendor.wait(Duration::from_secs(15)).success(), "{}", vendor.output());
}

#[test]
fn a_stalled_watcher_slows_nobody_and_is_resynchronised() {
    let w = supervised_world();
    let mut stream = w
        .vendor
        .ssh(&w.bastion, "acme:erp01")
        .arg("yes '2026-12-03 10:00:00 erp01 app[4242]: processed invoice batch, 512 records' | head -c 200000000")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let id = w.live_session();
    // A watcher whose client stops reading entirely (stopped process, pty not drained).
    let mut watcher = w
        .tech
        .ssh(&w.bastion, "alice")
        .args(["-tt"])
        .arg(format!("watch {id}"))
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut received = 0usize;
    let mut out = stream.stdout.take().unwrap();
    let mut buf = vec![0u8; 1 << 16];
    let mut first = true;
    loop {
        let n = std::io::Read::read(&mut out, &mut buf).unwrap();
        if n == 0 {
            break;
        }
        if first {
            // The stream runs: the watcher has joined. Now it stops reading.
            unsafe { libc::kill(watcher.id() as i32, libc::SIGSTOP) };
            first = false;
        }
        if received < 100_000_000 && received + n >= 100_000_000 {
            // Half way, the watcher wakes up, far behind: it must be brought up to date
            // from a screen dump, not fed the backlog.
            unsafe { libc::kill(watcher.id() as i32, libc::SIGCONT) };
            let mut tail = watcher.stdout.take().unwrap();
            std::thread::spawn(move || std::io::copy(&mut tail, &mut std::io::sink()));
        }
        received += n;
    }
    assert!(stream.wait().unwrap().success());
    assert_eq!(received, 200_000_000, "the vendor's stream was cut short");
    w.eventually("the watcher to be resynchronised", || w.bastion.log().contains("resynchronised from a screen dump"));
    let _ = watcher.kill();
    let _ = watcher.wait();
    let id_json = w.ended_session_json(&id);
    assert_eq!(id_json["bytes_out"], 200_000_000u64);
}

#[test]
fn freeze_take_over_annotate_and_kill_from_the_watch_keys() {
    let w = supervised_world();
    let (mut vendor, id, mut alice) = watched_prompt(&w);

    // Freeze: the vendor's keystrokes do not reach the target.
    alice.type_text("\x1df");
    vendor.expect("technician alice froze your input");
    vendor.type_text("echo frozen-$((1+1))\r");
    vendor.expect("your input is discarded (frozen by alice)");
    std::thread::sleep(Duration::from_millis(500));
    assert!(!vendor.output().contains("frozen-2"), "frozen input reached the target");
    alice.type_text("\x1df");
    vendor.expect("technician alice unfroze your input");
    vendor.type_text("echo thawed-$((1+1))\r");
    vendor.expect("thawed-2");

    // Take over: the technician types into the session.
    alice.type_text("\x1dt");
    vendor.expect("technician alice took over the keyboard");
    alice.type_text("echo takeover-$((2+3))\r");
    vendor.expect("takeover-5");
    alice.expect("takeover-5");
    alice.type_text("\x1dt");
    vendor.expect("handed the keyboard back");

    // A note, then the kill (with its reason).
    alice.type_text("\x1daChecked the backup first\r");
    alice.type_text("\x1dkwrong server\r");
    vendor.expect("technician alice ended the session: wrong server");
    assert_eq!(vendor.wait(Duration::from_secs(15)).code(), Some(255));
    alice.expect("the session ended");
    let _ = alice.wait(Duration::from_secs(15));

    let json = w.ended_session_json(&id);
    assert_eq!(json["state"], "ended");
    let cast = w.recording_text(&id);
    for marker in [
        "froze your input",
        "took over the keyboard",
        "note by alice: Checked the backup first",
        "ended the session: wrong server",
    ] {
        assert!(cast.contains(marker), "marker {marker:?} missing from the recording");
    }
    assert!(cast.contains("\"i\", \"echo takeover-$((2+3))"), "the take-over input was not recorded");
    let audit = w.bastion.ok(&["audit", "--vendor", "acme"]);
    for kind in [
        "watch.join",
        "control.freeze",
        "control.unfreeze",
        "control.takeover",
        "control.handback",
        "control.annotate",
        "control.kill",
        "watch.leave",
    ] {
        assert!(audit.contains(kind), "{kind} missing from:\n{audit}");
    }
}

/// A technician who is disabled, or whose key is removed, is cut off at once: the watch
/// ends, and the vendor's input pauses as for any watcher leaving (the technician's freeze
/// goes with them). Enabled again (or with a new key), the technician gets back in.
#[test]
fn a_technician_whose_access_is_withdrawn_is_disconnected() {
    let w = supervised_world();
    let (vendor, id, mut alice) = watched_prompt(&w);
    alice.type_text("\x1df");
    vendor.expect("technician alice froze your input");

    let said = w.bastion.ok(&["tech", "disable", "alice"]);
    assert!(said.contains("technician alice disabled"), "{said}");
    alice.expect("technician alice has been disabled; the connection is closed");
    assert_eq!(alice.wait(Duration::from_secs(15)).code(), Some(255));
    vendor.expect("technician alice stopped watching; your input is paused until a technician returns");
    let console = w.console("sessions");
    assert_eq!(console.status.code(), Some(255), "a disabled technician logged in");

    w.bastion.ok(&["tech", "enable", "alice"]);
    let mut alice = watch(&w, "alice", &id);
    alice.expect("rdy> ");
    // A new key for alice, the old one removed: the connection made with it closes.
    let laptop = VendorClient::new(w.tmp.path(), "alice-laptop");
    laptop.trust(&w.bastion);
    w.bastion.ok(&["tech", "key", "add", "alice", "--key", &laptop.public_key_path()]);
    let removed = w.bastion.ok(&["tech", "key", "remove", "alice", &w.tech.public_key_path()]);
    let fingerprint = removed.split_whitespace().nth(1).unwrap().to_string();
    alice.expect(&format!("the key {fingerprint} has been removed from technician alice; the connection is closed"));
    assert_eq!(alice.wait(Duration::from_secs(15)).code(), Some(255));
    let sessions = laptop.ssh(&w.bastion, "alice").arg("sessions").stdin(Stdio::null()).output().unwrap();
    assert!(stdout(&sessions).contains("acme@erp01"), "{}", stderr(&sessions));
    assert_eq!(w.console("sessions").status.code(), Some(255), "the removed key still logs in");

    let audit = w.bastion.ok(&["audit"]);
    for kind in ["tech.disable", "tech.enable", "tech.key_add", "tech.key_remove", "tech.disconnect", "watch.leave"] {
        assert!(audit.contains(kind), "{kind} missing from:\n{audit}");
    }
    drop(vendor);
}

#[test]
fn unwatched_sessions_pause_then_end_and_waiting_gives_up() {
    let w = supervised_world();
    let (mut vendor, _, mut alice) = watched_prompt(&w);
    alice.type_text("\x1dd");
    assert!(alice.wait(Duration::from_secs(15)).success());
    vendor.expect("your input is paused until a technician returns (the session ends in 5 minutes otherwise)");
    vendor.type_text("echo unwatched-$((3+4))\r");
    vendor.expect("your input is discarded (input paused: nobody watching)");
    std::thread::sleep(Duration::from_millis(300));
    assert!(!vendor.output().contains("unwatched-7"));
    // Five minutes later (injected clock), the session ends.
    w.bastion.set_clock("2026-12-03T10:06:00+01:00");
    vendor.expect("no technician watched for 5 minutes; the session has been ended");
    assert_eq!(vendor.wait(Duration::from_secs(15)).code(), Some(255));

    // Nobody joins at all: after 15 minutes the vendor is told and the session never starts.
    let mut waiting = vendor_shell(&w);
    waiting.expect("waiting for a technician to join");
    w.bastion.set_clock("2026-12-03T10:25:00+01:00");
    waiting.expect("no technician joined within 15 minutes");
    assert_eq!(waiting.wait(Duration::from_secs(15)).code(), Some(255));
}

#[test]
fn kill_over_ssh_ends_the_session_with_the_reason() {
    let w = supervised_world();
    let session = w
        .vendor
        .ssh(&w.bastion, "acme:erp01")
        .arg("echo started; sleep 300")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let id = w.live_session();
    let _alice = watch(&w, "alice", &id);
    w.eventually("the session to start", || stdout(&w.console("sessions")).contains("watched by alice"));
    let out = w.console(&format!("kill {id} --reason 'wrong server'"));
    assert!(out.status.success(), "{}", stderr(&out));
    let out = session.wait_with_output().unwrap();
    assert!(stderr(&out).contains("chaperone: technician alice ended the session: wrong server"), "{}", stderr(&out));
}

#[test]
fn vendors_and_technicians_stay_in_their_lanes() {
    let w = supervised_world();
    // A vendor's key does not open the technicians' console.
    let out = w.vendor.ssh(&w.bastion, "alice").arg("sessions").stdin(Stdio::null()).output().unwrap();
    assert!(stderr(&out).contains("Permission denied"), "{}", stderr(&out));
    // A technician's key does not reach a target.
    let out = w.tech.ssh(&w.bastion, "alice:erp01").arg("id").stdin(Stdio::null()).output().unwrap();
    assert!(stderr(&out).contains("Permission denied"), "{}", stderr(&out));
    let out = w.tech.ssh(&w.bastion, "acme:erp01").arg("id").stdin(Stdio::null()).output().unwrap();
    assert!(stderr(&out).contains("Permission denied"), "{}", stderr(&out));

    // The console: sessions and help without a command; only technician commands.
    let out = w.tech.ssh(&w.bastion, "alice").arg("-T").stdin(Stdio::null()).output().unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(stdout(&out).contains("no live sessions") && stdout(&out).contains("watch ID"), "{}", stdout(&out));
    let out = w.console("vendor add evil --email e@x.example --key /etc/hostname");
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr(&out).contains("technicians may run"), "{}", stderr(&out));
    let out = w.console("booking list");
    assert!(stdout(&out).contains("B-1"), "{}", stderr(&out));
    let out = w.console("booking cancel B-1 --reason test --by bob");
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr(&out).contains("you are logged in as alice"), "{}", stderr(&out));
    let out = w.console("booking show B-1 --no-such-flag");
    assert_eq!(out.status.code(), Some(2));
    let out = w.console("watch 01nosuchsession");
    assert!(stderr(&out).contains("needs a terminal"), "{}", stderr(&out));
    // A plan can be piped in over ssh.
    let plan = w.path("piped.md");
    std::fs::write(&plan, "# Piped plan\n- step\n").unwrap();
    let out = w
        .tech
        .ssh(&w.bastion, "alice")
        .arg(format!(
            "booking create --vendor acme --target erp01 --account {} --start '2026-12-24 09:00' --end '2026-12-24 10:00' --plan -",
            w.account
        ))
        .stdin(std::fs::File::open(&plan).unwrap())
        .output()
        .unwrap();
    assert_eq!(stdout(&out).trim(), "B-2", "{}", stderr(&out));
    assert!(w.bastion.ok(&["booking", "show", "B-2"]).contains("created:    "));
    assert!(w.bastion.ok(&["booking", "show", "B-2"]).contains("by alice"));
}

/// Over ssh, a technician names no file or folder: they would be the bastion's (its keys,
/// its configuration with the SMTP password). Plans and signatures come on standard input,
/// keys as their line, recordings by session id. Locally, paths work as before.
#[test]
fn over_ssh_a_technician_cannot_make_the_bastion_read_its_files() {
    let w = World::new();
    assert!(w.exec("echo recorded").status.success());
    let id = w.last_session();
    w.ended_session_json(&id);
    let folder = w.folder(&id);
    // Stands for any file the bastion may read; the plan check would accept it.
    let secret = w.path("secret.md");
    std::fs::write(&secret, "# TOP SECRET smtp password\n").unwrap();
    let signing_pub = w
        .bastion
        .ok(&["keys"])
        .lines()
        .find_map(|l| l.strip_prefix("signing key (seals recordings; publish it and its fingerprint): "))
        .unwrap()
        .to_string();
    let key_file = w.path("signing.pub");
    std::fs::write(&key_file, format!("{signing_pub}\n")).unwrap();
    let (secret, key_file, folder_path) = (secret.display(), key_file.display(), folder.display());
    for command in [
        format!(
            "booking create --vendor acme --target erp01 --account {} --start '2026-12-24 09:00' --end '2026-12-24 10:00' --plan {secret}",
            w.account
        ),
        format!("booking replan B-1 --plan {secret}"),
        format!("booking ack B-1 --party vendor --signature {secret}"),
        format!("recordings verify {id} --key {key_file}"),
        format!("recordings export {id} --bundle - --key {key_file}"),
        format!("recordings cat {folder_path}"),
        format!("recordings verify {folder_path}"),
        format!("replay {folder_path}"),
    ] {
        let out = w.console(&command);
        assert_eq!(out.status.code(), Some(2), "{command}: {}", stderr(&out));
        let err = stderr(&out);
        assert_eq!(err.lines().count(), 1, "{command}: {err}");
        assert!(err.contains("over ssh, files and folders would be the bastion's"), "{command}: {err}");
        assert!(!stdout(&out).contains("TOP SECRET") && !err.contains("TOP SECRET"), "{command}");
    }
    assert!(!w.bastion.ok(&["booking", "list", "--all"]).contains("B-2"), "a booking was made");
    // What works over ssh instead: the key's line, the session id.
    let out = w.console(&format!("recordings verify {id} --key '{signing_pub}'"));
    assert!(out.status.success() && stdout(&out).contains("intact"), "{}", stderr(&out));
    let out = w.console(&format!("recordings cat {id}"));
    assert!(stdout(&out).contains("recorded"), "{}", stderr(&out));
    // Locally the bastion's operator names files and folders.
    assert!(
        w.bastion
            .ok(&["recordings", "verify", &folder.display().to_string(), "--key", &key_file.to_string()])
            .contains("intact")
    );
}
