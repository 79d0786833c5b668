//! Hostile input from every side: a target whose output asks the watcher's terminal to
//! answer, a bastion started with `CHAPERONE_CONFIG` in its environment, keys too weak
//! to trust, and the bastion on IPv6.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::common::pty::Pty;
use crate::common::*;

fn watch(w: &World, id: &str) -> Pty {
    let mut ssh = w.tech.ssh(&w.bastion, "alice");
    ssh.arg("-t").arg(format!("watch {id}")).env("TERM", "xterm-256color");
    Pty::spawn(ssh, 80, 24)
}

/// What a real terminal answers to each query, typed into its input as if by its user.
const ANSWERS: &[(&str, &str)] = &[("\x1b[6n", "\x1b[24;1R"), ("\x1b[c", "\x1b[?62;22c"), ("\u{9b}6n", "\x1b[24;1R")];

/// During a take-over the technician's keyboard is the target's: a query the target
/// prints must never reach the technician's terminal, or its answer would be typed into
/// the target in the technician's name. The test plays the technician's terminal: it
/// answers every query that arrives, as xterm would.
#[test]
fn terminal_queries_never_answer_into_a_session_during_a_takeover() {
    let w = World::bare("[policy]\nrequire_acknowledgements = false\n");
    w.book_now("erp01", &w.account.clone());
    let mut vendor = w.vendor_shell(80, 24);
    let id = w.live_session();
    let mut alice = watch(&w, &id);
    vendor.expect("plan: Maintenance");
    vendor.type_text("PS1='rdy> '\r");
    alice.expect("rdy> ");
    alice.type_text("\x1dt");
    vendor.expect("technician alice took over the keyboard");

    // The target asks (7-bit and 8-bit CSI), then reads for 3 s whatever comes back,
    // without waiting for a line end.
    alice.type_text(
        "stty -echo -icanon min 0 time 30; printf 'q:\\033[6n\\033[c\\302\\2336n:q\\n'; \
         IFS= read -r x; stty sane; printf 'got:%s\\n' \"[$(printf %q \"$x\")]\"\r",
    );
    vendor.expect(":q");
    let deadline = Instant::now() + Duration::from_secs(2);
    let mut answered = Vec::new();
    while Instant::now() < deadline {
        for (query, answer) in ANSWERS {
            if alice.output().contains(query) && !answered.contains(query) {
                alice.type_text(answer);
                answered.push(*query);
            }
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    vendor.expect("got:[");
    alice.expect("got:[");
    assert!(vendor.output().contains("got:['']"), "the target read an answer: {:?}", vendor.output());
    assert!(answered.is_empty(), "the watcher's terminal was asked {answered:?}; it shows:\n{:?}", alice.output());
    // The query reached the vendor's own terminal unchanged: it is the vendor's session.
    assert!(vendor.output().contains("q:\x1b[6n\x1b[c"), "{:?}", vendor.output());
    assert!(alice.output().contains("q::q"), "{:?}", alice.output());

    alice.type_text("\x1dt");
    vendor.expect("handed the keyboard back");
    vendor.type_text("exit\r");
    assert!(vendor.wait(Duration::from_secs(15)).success(), "{}", vendor.output());
    w.ended_session_json(&id);
    let plain = Command::new("zstd").arg("-dc").arg(w.folder(&id).join("session.cast.zst")).output().unwrap();
    let cast = stdout(&plain);
    let typed: Vec<&str> = cast.lines().filter(|l| l.contains("\"i\"")).collect();
    assert!(
        typed.iter().all(|l| !l.contains("24;1R") && !l.contains("62;22c")),
        "an answer was recorded as typed: {typed:?}"
    );
}
