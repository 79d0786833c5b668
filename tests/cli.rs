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
