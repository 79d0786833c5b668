//! The command line: registration rules and their errors, `check`, `keys`, `serve`'s
//! reporting of its port.

use crate::common::*;

fn fails_with_2(b: &Bastion, args: &[&str], text: &str) {
    let out = b.run(args);
    assert_eq!(out.status.code(), Some(2), "{args:?}: {}", stderr(&out));
    let err = stderr(&out);
    assert!(err.contains(text), "{args:?}: expected {text:?} in {err}");
    assert_eq!(err.trim().lines().count(), 1, "one line: {err}");
}

#[test]
fn registration_refuses_bad_input_with_exit_code_2_and_changes_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    let b = Bastion::new(tmp.path());
    let v = VendorClient::new(tmp.path(), "acme");
    let key = v.public_key_path();
    b.ok(&["vendor", "add", "acme", "--email", "ops@acme.example", "--key", &key]);
    fails_with_2(&b, &["vendor", "add", "acme", "--email", "x@y.example", "--key", &key], "already exists");
    fails_with_2(&b, &["vendor", "add", "Bad_Name", "--email", "x@y.example", "--key", &key], "invalid vendor name");
    fails_with_2(&b, &["vendor", "add", "other", "--email", "nope", "--key", &key], "invalid e-mail");
    fails_with_2(
        &b,
        &["vendor", "add", "other", "--email", "x@y.example", "--key", "ssh-ed25519 AAAAjunk"],
        "malformed public key",
    );
    fails_with_2(
        &b,
        &["vendor", "add", "other", "--email", "x@y.example", "--key", &key],
        "already registered for vendor \"acme\"",
    );
    fails_with_2(&b, &["vendor", "show", "ghost"], "no vendor");
    fails_with_2(&b, &["vendor", "disable", "ghost"], "no vendor");
    let list = b.ok(&["vendor", "list"]);
    assert_eq!(list.lines().count(), 1, "{list}");
    assert!(list.contains("acme") && list.contains("enabled"));
    let show = b.ok(&["vendor", "show", "acme"]);
    assert!(show.contains("SHA256:") && show.contains("ops@acme.example"), "{show}");

    let host = std::fs::read_to_string(&key).unwrap();
    b.ok(&["client", "add", "globex", "--email", "it@globex.example"]);
    let scanned = format!("[127.0.0.1]:2200 {}", host.trim());
    let h = host.trim();
    b.ok(&[
        "target",
        "add",
        "erp01",
        "--address",
        "127.0.0.1:2200",
        "--host-key",
        &scanned,
        "--account",
        "app",
        "--privileged-account",
        "root",
        "--client",
        "globex",
    ]);
    let add = |name: &'static str, address: &'static str, key: &str, account: &'static str, client: &'static str| {
        vec![
            "target".to_string(),
            "add".into(),
            name.into(),
            "--address".into(),
            address.into(),
            "--host-key".into(),
            key.to_string(),
            "--account".into(),
            account.into(),
            "--client".into(),
            client.into(),
        ]
    };
    let cases = [
        (add("erp01", "127.0.0.1:22", h, "app", "globex"), "already exists"),
        (add("erp-02", "no-port", h, "app", "globex"), "invalid address"),
        (add("erp-02", "h:22", "garbage", "app", "globex"), "malformed public key"),
        (add("erp-02", "h:22", h, "bad/name", "globex"), "invalid account"),
        (add("erp-02", "h:22", h, "app", "nobody"), "no client"),
    ];
    for (args, text) in &cases {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        fails_with_2(&b, &args, text);
    }
    fails_with_2(&b, &["target", "remove", "ghost"], "no target");
    let show = b.ok(&["target", "show", "erp01"]);
    assert!(show.contains("accounts: app, root") && show.contains("privileged: root"), "{show}");
    assert!(show.contains("client:   globex"), "{show}");
    assert_eq!(b.ok(&["target", "list"]).lines().count(), 1);
    b.ok(&["target", "remove", "erp01"]);
    assert!(b.ok(&["target", "list"]).contains("no targets"));
}

#[test]
fn check_and_keys() {
    let tmp = tempfile::tempdir().unwrap();
    let b = Bastion::new(tmp.path());
    let out = b.ok(&["check"]);
    assert!(out.contains("is valid"), "{out}");
    assert!(out.contains(&format!("data: {}", tmp.path().join("bastion/data").display())), "{out}");

    let first = b.ok(&["keys"]);
    assert!(first.contains("host key: SHA256:"), "{first}");
    assert!(first.contains("ssh-ed25519 AAAA"), "{first}");
    assert_eq!(b.ok(&["keys"]), first, "keys persist");
    for key in ["host_ed25519", "upstream_ed25519", "signing_ed25519"] {
        assert!(tmp.path().join("bastion/data/keys").join(key).exists(), "{key}");
    }

    std::fs::write(&b.config, "[server]\nlisten = \"127.0.0.1:2222\"\nlisen = 1\n").unwrap();
    fails_with_2(&b, &["check"], "line 3");
    std::fs::write(&b.config, "[recording]\nflush_interval_ms = 5000\n").unwrap();
    fails_with_2(&b, &["check"], "flush_interval_ms");
}

#[test]
fn serve_reports_the_port_and_keys_and_reuses_them() {
    let tmp = tempfile::tempdir().unwrap();
    let mut b = Bastion::new(tmp.path());
    let keys = b.ok(&["keys"]);
    b.start();
    assert_ne!(b.port, 0);
    wait_for_port(b.port, "chaperone");
    b.signal(libc::SIGINT);
    assert_eq!(b.wait(std::time::Duration::from_secs(20)).code(), Some(0));
    assert_eq!(b.ok(&["keys"]), keys, "a restart reuses the keys");
}

/// Every file a person names (keys, plans, signatures, the config and what it names) and
/// standard input are read with a limit: `/dev/zero`, a 100 MB file or an endless pipe
/// fail at once with one line naming the file and the limit, instead of growing the
/// bastion's memory.
#[test]
fn every_file_argument_is_read_with_a_limit() {
    use std::process::Stdio;
    let tmp = tempfile::tempdir().unwrap();
    let b = Bastion::new(tmp.path());
    b.set_clock(TEST_NOW);
    let v = VendorClient::new(tmp.path(), "acme");
    let key = v.public_key_path();
    let host = std::fs::read_to_string(&key).unwrap();
    b.ok(&["client", "add", "globex", "--email", "it@globex.example"]);
    b.ok(&["vendor", "add", "acme", "--email", "ops@acme.example", "--key", &key]);
    let t = VendorClient::new(tmp.path(), "alice");
    b.ok(&["tech", "add", "alice", "--email", "alice@provider.example", "--key", &t.public_key_path()]);
    let plan = tmp.path().join("plan.md");
    std::fs::write(&plan, "# Plan\n- step\n").unwrap();
    let big = tmp.path().join("big.md");
    std::fs::File::create(&big).unwrap().set_len(100 << 20).unwrap();
    let (plan, big) = (plan.display().to_string(), big.display().to_string());
    let booking = |plan: &str| -> Vec<String> {
        let window = ["--start", "2026-12-24 09:00", "--end", "2026-12-24 10:00", "--plan", plan];
        booking_create("app", &window).into_iter().map(String::from).collect()
    };
    let target = |host_key: &str| -> Vec<String> {
        [
            "target",
            "add",
            "erp01",
            "--address",
            "127.0.0.1:2200",
            "--host-key",
            host_key,
            "--account",
            "app",
            "--client",
            "globex",
        ]
        .map(String::from)
        .to_vec()
    };
    let check = |args: &[String], stdin: Stdio, expected: &str| {
        let mut cmd = b.command();
        cmd.args(args);
        let out = run_bounded(cmd, stdin);
        let err = stderr(&out);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {err}");
        assert!(err.contains(expected), "{args:?}: expected {expected:?} in {err}");
        assert_eq!(err.trim_end().lines().count(), 1, "{err}");
    };
    let key_limit = "key file /dev/zero is over the 64 KiB limit";
    let words = |s: &str| s.split(' ').map(String::from).collect::<Vec<_>>();
    check(&words("vendor add other --email x@y.example --key /dev/zero"), Stdio::null(), key_limit);
    check(&words("vendor key add acme --key /dev/zero"), Stdio::null(), key_limit);
    check(&words("vendor key remove acme /dev/zero"), Stdio::null(), key_limit);
    check(&words("tech add bob --email bob@y.example --key /dev/zero"), Stdio::null(), key_limit);
    check(&target("/dev/zero"), Stdio::null(), key_limit);
    b.ok(&target(host.trim()).iter().map(String::as_str).collect::<Vec<_>>());
    check(&booking("/dev/zero"), Stdio::null(), "plan /dev/zero is over the 64 KiB limit");
    check(&booking(&big), Stdio::null(), &format!("plan {big} is over the 64 KiB limit"));
    let zero = || Stdio::from(std::fs::File::open("/dev/zero").unwrap());
    check(&booking("-"), zero(), "plan from standard input is over the 64 KiB limit");
    let id = b.ok(&booking(&plan).iter().map(String::as_str).collect::<Vec<_>>());
    let ack = format!("booking ack {} --party vendor --signature", id.trim());
    check(&words(&format!("{ack} /dev/zero")), Stdio::null(), "signature /dev/zero is over the 64 KiB limit");
    check(&words(&format!("{ack} -")), zero(), "signature from standard input is over the 64 KiB limit");

    // The configuration, and the CA file it names.
    let mut cmd = std::process::Command::new(BIN);
    cmd.args(["--config", "/dev/zero", "check"]);
    let out = run_bounded(cmd, Stdio::null());
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert_eq!(stderr(&out).trim_end(), "chaperone: config /dev/zero is over the 1 MiB limit");
    std::fs::write(&b.config, "[mail]\ntransport = \"smtp\"\nsmtp_host = \"mail.example\"\nsmtp_ca = \"/dev/zero\"\n")
        .unwrap();
    check(&words("check"), Stdio::null(), "mail.smtp_ca: file /dev/zero is over the 4 MiB limit");
}

/// E-mail addresses are shown in listings and mails, a kill's reason on the vendor's
/// terminal: text that acts on a terminal or reads in another order ("Trojan source"
/// bidi overrides, which the e-mail check let through) is refused with its column.
#[test]
fn free_text_that_would_act_on_a_terminal_is_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let b = Bastion::new(tmp.path());
    let v = VendorClient::new(tmp.path(), "acme");
    let key = v.public_key_path();
    let bidi = "ops@moc.\u{202e}acme.example";
    fails_with_2(
        &b,
        &["vendor", "add", "acme", "--email", bidi, "--key", &key],
        "--email: column 9: a bidirectional override",
    );
    fails_with_2(&b, &["tech", "add", "alice", "--email", bidi, "--key", &key], "--email: column 9");
    fails_with_2(
        &b,
        &["client", "add", "globex", "--email", "it@globex.example", "--email", bidi],
        "--email: column 9",
    );
    fails_with_2(&b, &["kill", "01abc", "--reason", "done\u{1b}]0;x\u{7}"], "--reason: column 5: ESC (U+001B)");
    assert!(b.ok(&["vendor", "list"]).contains("no vendors"));
    assert!(b.ok(&["client", "list"]).contains("no clients"));
}
