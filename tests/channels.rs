//! Supervision covers every channel: a vendor sharing one connection among several
//! commands (OpenSSH's ControlMaster) cannot start a shell or command while the session's
//! input is held, channels opened while waiting for a technician wait with the session,
//! and watchers see each channel, follow one at a time and switch between them.

use std::io::Write;
use std::path::Path;
use std::process::{Output, Stdio};
use std::time::Duration;

use crate::common::supervised::*;
use crate::common::*;

fn run_via_master(w: &World, sock: &Path, command: &str) -> Output {
    via_master(w, sock, command).stdin(Stdio::null()).output().unwrap()
}

/// The first channel's recording as text, once the session has ended.
fn first_recording(w: &World, id: &str) -> String {
    w.ended_session_json(id);
    w.recording_text(id)
}

#[test]
fn a_new_channel_is_refused_while_frozen_taken_over_or_unwatched() {
    let w = supervised_world();
    let (mut vendor, sock, id, mut alice) = watched_master(&w);

    // Frozen: a command through the shared connection does not run.
    alice.type_text("\x1df");
    vendor.expect("technician alice froze your input");
    let frozen = w.path("hidden-frozen");
    let out = run_via_master(&w, &sock, &format!("touch {}", frozen.display()));
    assert!(!out.status.success(), "the command ran while frozen: {}", stderr(&out));
    let said = stderr(&out);
    assert!(
        said.contains("chaperone: channel 2 refused: a new command \"touch ")
            && said.contains("cannot start while technician alice froze the session's input"),
        "{said}"
    );
    // Nor does a shell.
    let mut shell = w.vendor.ssh(&w.bastion, "acme:erp01");
    shell.args(["-T", "-o", "ControlMaster=no", "-o"]).arg(format!("ControlPath={}", sock.display()));
    let out = shell.stdin(Stdio::null()).output().unwrap();
    assert!(stderr(&out).contains("channel 3 refused: a new shell cannot start"), "{}", stderr(&out));
    alice.type_text("\x1df");
    vendor.expect("technician alice unfroze your input");

    // Taken over: the same.
    alice.type_text("\x1dt");
    vendor.expect("technician alice took over the keyboard");
    let taken = w.path("hidden-takeover");
    let out = run_via_master(&w, &sock, &format!("touch {}", taken.display()));
    assert!(
        stderr(&out).contains("cannot start while technician alice has taken over the keyboard"),
        "{}",
        stderr(&out)
    );
    alice.type_text("\x1dt");
    vendor.expect("handed the keyboard back");

    // Open again: a command runs.
    let allowed = w.path("allowed");
    let out = run_via_master(&w, &sock, &format!("touch {}", allowed.display()));
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(allowed.exists());

    // Nobody watching: the same.
    alice.type_text("\x1dd");
    assert!(alice.wait(Duration::from_secs(15)).success());
    vendor.expect("your input is paused until a technician returns");
    let unwatched = w.path("hidden-unwatched");
    let out = run_via_master(&w, &sock, &format!("touch {}", unwatched.display()));
    assert!(stderr(&out).contains("cannot start while no technician is watching"), "{}", stderr(&out));

    std::thread::sleep(Duration::from_millis(300));
    for file in [&frozen, &taken, &unwatched] {
        assert!(!file.exists(), "{} was created on the target", file.display());
    }
    let audit = w.bastion.ok(&["audit", "--vendor", "acme"]);
    let refused: Vec<_> = audit.lines().filter(|l| l.contains("channel.refused")).collect();
    assert_eq!(refused.len(), 4, "{audit}");
    assert!(refused.iter().any(|l| l.contains("hidden-frozen") && l.contains(&id)), "{audit}");
    assert!(refused.iter().any(|l| l.contains("shell refused")), "{audit}");

    // The timeline (the first channel's recording, which replay shows) marks each refusal.
    let bob = add_tech(&w, "bob");
    let _bob = watch_as(&w, &bob, "bob", &id);
    vendor.expect("technician bob is watching");
    vendor.type_text("exit\r");
    let _ = vendor.wait(Duration::from_secs(15));
    let cast = first_recording(&w, &id);
    for marker in ["channel 2 refused", "channel 3 refused", "channel 4 refused", "channel 6 refused"] {
        assert!(cast.contains(marker), "marker {marker:?} missing from the recording");
    }
}

/// A channel already running when a freeze begins keeps running, but its input is held
/// like the first channel's: keystrokes meanwhile are discarded, not delivered later.
#[test]
fn a_running_second_channel_gets_no_input_while_frozen() {
    let w = supervised_world();
    let (vendor, sock, _id, alice) = watched_master(&w);
    let file = w.path("typed.txt");
    let mut cat = via_master(&w, &sock, &format!("cat > {}", file.display()))
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut input = cat.stdin.take().unwrap();
    input.write_all(b"before\n").unwrap();
    w.eventually("the first line on the target", || std::fs::read_to_string(&file).unwrap_or_default() == "before\n");
    let mut alice = alice;
    alice.type_text("\x1df");
    vendor.expect("technician alice froze your input");
    input.write_all(b"during\n").unwrap();
    input.flush().unwrap();
    std::thread::sleep(Duration::from_millis(500));
    alice.type_text("\x1df");
    vendor.expect("technician alice unfroze your input");
    input.write_all(b"after\n").unwrap();
    drop(input);
    // (Its exit status is not the point here: see the relay's exit-status tests.)
    let out = cat.wait_with_output().unwrap();
    assert!(stderr(&out).contains("your input is discarded (frozen by alice)"), "{}", stderr(&out));
    assert_eq!(std::fs::read_to_string(&file).unwrap(), "before\nafter\n");
}

#[test]
fn channels_opened_while_waiting_wait_for_the_technician_and_are_listed() {
    let w = supervised_world();
    let sock = w.path("cm.sock");
    let mut vendor = master_shell(&w, &sock);
    vendor.expect("waiting for a technician to join");
    let id = w.live_session();
    // Typed ahead while nobody watches: discarded, not run the moment a technician joins.
    let typed_ahead = w.path("typed-ahead");
    vendor.type_text(&format!("touch {}\r", typed_ahead.display()));
    vendor.expect("your input is discarded (input paused: nobody watching)");
    w.eventually("the shared connection's socket", || sock.exists());
    let file = w.path("ran.txt");
    let command = format!("echo ran > {}; echo exec-done", file.display());
    let exec = via_master(&w, &sock, &command).stdin(Stdio::null()).stdout(Stdio::piped()).spawn().unwrap();
    let mut listed = String::new();
    w.eventually("the waiting channel listed with its command", || {
        listed = stdout(&w.console("sessions"));
        listed.contains("channel 2  exec \"echo ran > ") && listed.contains("exec-done\"  waiting for a technician")
    });
    assert!(listed.contains("channel 1  shell (pty)  waiting for a technician"), "{listed}");
    std::thread::sleep(Duration::from_millis(500));
    assert!(!file.exists(), "the command ran before a technician watched");

    let alice = watch(&w, "alice", &id);
    alice.expect("2 exec \"echo ran");
    let out = exec.wait_with_output().unwrap();
    assert!(out.status.success() && stdout(&out) == "exec-done\n", "{}", stdout(&out));
    assert_eq!(std::fs::read_to_string(&file).unwrap(), "ran\n");
    alice.expect("ended, exit status 0");
    vendor.expect("plan: Maintenance");
    vendor.type_text("echo started-$((2*3))\r");
    vendor.expect("started-6");
    assert!(!typed_ahead.exists(), "what the vendor typed while waiting ran on the target");
    let listed = stdout(&w.console("sessions"));
    assert!(listed.contains("channel 2  exec") && listed.contains("ended, exit status 0"), "{listed}");
    assert!(listed.contains("channel 1  shell (pty)  open"), "{listed}");
}

#[test]
fn watchers_follow_one_channel_and_switch_between_them() {
    let w = supervised_world();
    let (mut vendor, sock, id, mut alice) = watched_master(&w);
    vendor.type_text("echo shell-$((6*7))\r");
    alice.expect("shell-42");
    let command = "for i in 1 2 3; do echo exec-line-$i; done; exit 3";
    let out = run_via_master(&w, &sock, command);
    assert_eq!(out.status.code(), Some(3), "{}", stderr(&out));
    assert!(stdout(&out).contains("exec-line-3"));

    // alice follows the shell: she sees channel 2 open and end, not its output.
    alice.expect("exit status 3");
    // (The title names the command, `exec-line-$i`; its output would be `exec-line-2`.)
    assert!(!alice.output().contains("exec-line-2"), "the exec channel's output scrambled the shell's screen");
    let listed = stdout(&w.console("sessions"));
    assert!(listed.contains(&format!("channel 2  exec {command:?}  ended, exit status 3")), "{listed}");

    // bob joins channel 2 late: he gets its screen.
    let bob_client = add_tech(&w, "bob");
    let bob = watch_as(&w, &bob_client, "bob", &format!("{id} --channel 2"));
    bob.expect("exec-line-3");
    bob.expect("channel 2 ended, exit status 3");
    assert!(!bob.output().contains("shell-42"), "{}", bob.output());
    // A command's lines are shown as lines (it has no pty: bare line feeds).
    let lines = screen(&bob.output());
    assert!(lines.iter().any(|l| l == "exec-line-2"), "{lines:?}");

    // A key switches alice to the next channel, and back.
    alice.type_text("\x1dc");
    alice.expect("exec-line-2");
    alice.expect("channel 2 of 2");
    alice.type_text("\x1dc");
    alice.expect("channel 1 of 2");
    vendor.type_text("echo back-$((1+1))\r");
    alice.expect("back-2");

    let out = w.tech.ssh(&w.bastion, "alice").arg("-tt").arg(format!("watch {id} --channel 9")).output().unwrap();
    let said = format!("{}{}", stdout(&out), stderr(&out));
    assert!(said.contains(&format!("session {id} has no channel 9")), "{said}");
    drop(bob);
}
