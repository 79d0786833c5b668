//! Hostile input from every side: a target whose output asks the watcher's terminal to
//! answer, a bastion started with `CHAPERONE_CONFIG` in its environment, keys too weak
//! to trust, and the bastion on IPv6.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::common::supervised::*;
use crate::common::*;

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
    let mut alice = watch(&w, "alice", &id);
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
    let cast = w.recording_text(&id);
    let typed: Vec<&str> = cast.lines().filter(|l| l.contains("\"i\"")).collect();
    assert!(
        typed.iter().all(|l| !l.contains("24;1R") && !l.contains("62;22c")),
        "an answer was recorded as typed: {typed:?}"
    );
    // The recording keeps the queries; printed for a technician over ssh they are gone.
    assert!(cast.contains("q:\\u001b[6n\\u001b[c"), "{cast}");
    let printed = stdout(&w.console(&format!("recordings cat {id}")));
    assert!(printed.contains("q::q") && !printed.contains("\x1b[6n") && !printed.contains("\x1b[c"), "{printed:?}");
}

/// `serve` started as `cmd`, with the address it reports and that address's port.
fn serve(cmd: &mut Command, b: &Bastion) -> (std::process::Child, String, u16) {
    let log = std::fs::File::create(b.dir.join("serve.log")).unwrap();
    let mut child = cmd
        .env("CHAPERONE_LOG", "info")
        .env("CHAPERONE_TEST_CLOCK", b.dir.join("clock"))
        .stdout(Stdio::piped())
        .stderr(log)
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if let Some(addr) = line.split("listening on ").nth(1) {
                let _ = tx.send(addr.trim().to_string());
            }
        }
    });
    let addr = rx.recv_timeout(Duration::from_secs(20)).unwrap_or_else(|_| panic!("serve did not start: {}", b.log()));
    let port = addr.rsplit_once(':').unwrap().1.parse().unwrap();
    (child, addr, port)
}

/// The README offers `CHAPERONE_CONFIG` instead of `--config`. The bastion's own
/// environment is no part of what a technician types: console commands work, and a
/// `--config` the technician does give is still refused.
#[test]
fn console_commands_work_when_serve_has_chaperone_config_in_its_environment() {
    let tmp = tempfile::tempdir().unwrap();
    let mut b = Bastion::new(tmp.path());
    b.set_clock(TEST_NOW);
    let tech = VendorClient::new(tmp.path(), "alice");
    b.ok(&["tech", "add", "alice", "--email", "alice@provider.example", "--key", &tech.public_key_path()]);
    let mut cmd = Command::new(BIN);
    cmd.env("CHAPERONE_CONFIG", &b.config).args(["serve", "--listen", "127.0.0.1:0"]);
    let (child, _, port) = serve(&mut cmd, &b);
    let _serving = Killed(child);
    b.port = port;
    tech.trust(&b);
    let console = |command: &str| tech.ssh(&b, "alice").arg(command).stdin(Stdio::null()).output().unwrap();
    for command in ["booking list", "sessions", "audit"] {
        let out = console(command);
        assert!(out.status.success(), "{command}: {}", stderr(&out));
        assert!(!stderr(&out).contains("--config"), "{command}: {}", stderr(&out));
    }
    assert!(stdout(&console("booking list")).contains("no bookings"));
    assert!(stdout(&console("audit")).contains("tech.login"));
    let out = console("booking list --config /etc/passwd");
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr(&out).contains("--config cannot be given over ssh"), "{}", stderr(&out));
}

/// `serve --listen [::1]:0` serves vendors over IPv6, to a target registered by its IPv6
/// address, and says where it listens.
#[test]
fn the_bastion_listens_and_reaches_targets_over_ipv6() {
    if std::net::TcpListener::bind("[::1]:0").is_err() {
        println!("note: this machine has no ::1; the IPv6 test is skipped");
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let b =
        Bastion::with_config(tmp.path(), "[policy]\nrequire_acknowledgements = false\nrequire_supervisor = false\n");
    b.set_clock(TEST_NOW);
    let sshd = Sshd::start_with(tmp.path(), &b.upstream_public_key(), "ListenAddress ::1\n");
    let vendor = VendorClient::new(tmp.path(), "acme");
    let account = whoami();
    let target = format!("[::1]:{}", sshd.port);
    b.ok(&["client", "add", "globex", "--email", "it@globex.example"]);
    b.ok(&["vendor", "add", "acme", "--email", "ops@acme.example", "--key", &vendor.public_key_path()]);
    let tech = VendorClient::new(tmp.path(), "alice");
    b.ok(&["tech", "add", "alice", "--email", "alice@provider.example", "--key", &tech.public_key_path()]);
    let plan = tmp.path().join("plan.md");
    std::fs::write(&plan, "# Over IPv6\n- look around\n").unwrap();
    b.add_target("erp01", &target, &sshd.host_key_pub, &[&account]);
    b.book_now("erp01", &account, &plan, "test");

    let mut cmd = b.command();
    cmd.args(["serve", "--listen", "[::1]:0"]);
    let (child, addr, port) = serve(&mut cmd, &b);
    let _serving = Killed(child);
    assert_eq!(addr, format!("[::1]:{port}"));
    std::fs::write(&vendor.known_hosts, format!("[::1]:{port} {}\n", b.host_public_key())).unwrap();
    let out = Command::new("ssh")
        .args(vendor.options(&b))
        .args(["-p", &port.to_string(), "acme:erp01@::1", "echo over-$((3+3))"])
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert!(out.status.success(), "{}\n{}", stderr(&out), b.log());
    assert!(stdout(&out).contains("over-6"), "{}", stdout(&out));
    let sessions = b.ok(&["recordings", "list"]);
    assert_eq!(sessions.lines().count(), 1, "{sessions}");
}

/// An RSA key pair of `bits` (ssh-keygen still makes 1024-bit ones).
fn rsa_key(dir: &std::path::Path, name: &str, bits: u32) -> VendorClient {
    let key = dir.join(name);
    let status = Command::new("ssh-keygen")
        .args(["-q", "-t", "rsa", "-b", &bits.to_string(), "-N", "", "-C", name, "-f"])
        .arg(&key)
        .status()
        .unwrap();
    assert!(status.success(), "ssh-keygen -t rsa -b {bits}");
    VendorClient { key, known_hosts: dir.join(format!("{name}_known_hosts")) }
}

/// RSA keys under 2048 bits are refused as OpenSSH's `RequiredRSASize` asks: at
/// registration with a one-line error, and at login when an old database holds one
/// (refused and audited). A 2048-bit key works.
#[test]
fn short_rsa_keys_are_refused_at_registration_and_at_login() {
    let w = World::new();
    let short = rsa_key(w.tmp.path(), "short_rsa", 1024);
    for args in [
        vec!["vendor", "key", "add", "acme", "--key", &short.public_key_path()],
        vec!["tech", "add", "bob", "--email", "bob@provider.example", "--key", &short.public_key_path()],
        vec!["vendor", "add", "globex-it", "--email", "it@globex.example", "--key", &short.public_key_path()],
        vec![
            "target",
            "add",
            "erp02",
            "--address",
            "127.0.0.1:22",
            "--host-key",
            &short.public_key_path(),
            "--account",
            "app",
            "--client",
            "globex",
        ],
    ] {
        let out = w.bastion.run(&args);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {}", stderr(&out));
        let err = stderr(&out);
        assert!(err.contains("an RSA key of 1024 bits is too short: at least 2048 bits are required"), "{err}");
        assert_eq!(err.trim_end().lines().count(), 1, "{err}");
    }
    assert!(w.bastion.ok(&["vendor", "show", "acme"]).lines().filter(|l| l.starts_with("key:")).count() == 1);

    let long = rsa_key(w.tmp.path(), "long_rsa", 2048);
    w.bastion.ok(&["vendor", "key", "add", "acme", "--key", &long.public_key_path()]);
    long.trust(&w.bastion);
    let out = long.ssh(&w.bastion, "acme:erp01").arg("echo rsa-ok").stdin(Stdio::null()).output().unwrap();
    assert!(stdout(&out).contains("rsa-ok"), "{}", stderr(&out));

    // A database from before the check holds the short key.
    let line = std::fs::read_to_string(short.public_key_path()).unwrap();
    let line = line.split_whitespace().take(2).collect::<Vec<_>>().join(" ");
    let listed = Command::new("ssh-keygen").arg("-lf").arg(short.public_key_path()).output().unwrap();
    let fingerprint = stdout(&listed).split_whitespace().nth(1).unwrap().to_string();
    let db = rusqlite::Connection::open(w.bastion.dir.join("data/chaperone.db")).unwrap();
    db.execute(
        "INSERT INTO vendor_keys (fingerprint, vendor, public_key) VALUES (?1, 'acme', ?2)",
        [&fingerprint, &line],
    )
    .unwrap();
    drop(db);
    short.trust(&w.bastion);
    let out = short.ssh(&w.bastion, "acme:erp01").arg("echo short-ok").stdin(Stdio::null()).output().unwrap();
    assert_eq!(out.status.code(), Some(255), "logged in with a 1024-bit key: {}", stdout(&out));
    assert!(!stdout(&out).contains("short-ok"));
    assert!(stderr(&out).contains("Permission denied"), "{}", stderr(&out));
    let audit = w.bastion.ok(&["audit", "--vendor", "acme"]);
    assert!(audit.contains(&format!("key {fingerprint} is refused: an RSA key of 1024 bits is too short")), "{audit}");
}
