//! Everything not allowed is refused, with a reason the vendor can read.

use std::process::Stdio;

use crate::common::*;

fn refused(w: &World, client: &VendorClient, user: &str) -> String {
    let out = client.ssh(&w.bastion, user).arg("echo should-not-run").stdin(Stdio::null()).output().unwrap();
    assert_eq!(out.status.code(), Some(255), "expected a refusal for {user}: {}", stderr(&out));
    assert!(!stdout(&out).contains("should-not-run"));
    stderr(&out)
}

#[test]
fn unknown_vendor_and_wrong_key_get_permission_denied() {
    let w = World::new();
    let stranger = VendorClient::new(w.tmp.path(), "stranger");
    stranger.trust(&w.bastion);
    let err = refused(&w, &stranger, "acme:erp01");
    assert!(err.contains("Permission denied"), "{err}");
    let err = refused(&w, &w.vendor, "nobody:erp01");
    assert!(err.contains("Permission denied"), "{err}");
    let err = refused(&w, &w.vendor, "ACME");
    assert!(err.contains("Permission denied"), "{err}");
}

#[test]
fn disabled_vendor_is_refused_until_enabled_without_restart() {
    let w = World::new();
    w.bastion.ok(&["vendor", "disable", "acme"]);
    let err = refused(&w, &w.vendor, "acme:erp01");
    assert!(err.contains("chaperone: vendor \"acme\" is disabled"), "{err}");
    assert_eq!(err.trim().lines().count(), 1, "one line: {err}");
    w.bastion.ok(&["vendor", "enable", "acme"]);
    let out = w.exec("echo back");
    assert_eq!(stdout(&out), "back\n", "{}", stderr(&out));
}

#[test]
fn unknown_and_unbooked_targets_and_accounts_are_refused() {
    let w = World::new();
    let err = refused(&w, &w.vendor, "acme:erp99");
    assert!(err.contains("chaperone: unknown target \"erp99\""), "{err}");
    let err = refused(&w, &w.vendor, "acme:erp01:admin");
    assert!(err.contains("chaperone: booking B-1 is for account"), "{err}");
    w.add_target("erp02", &w.sshd.address(), &w.sshd.host_key_pub, &[&w.account]);
    let err = refused(&w, &w.vendor, "acme:erp02");
    assert!(err.contains("chaperone: no booking for acme on erp02 now; no approved window ahead"), "{err}");
    let audit = w.bastion.ok(&["audit", "--vendor", "acme"]);
    assert!(audit.contains("login.refused") && audit.contains("no booking for acme on erp02"), "{audit}");
}

#[test]
fn the_booking_decides_target_and_account() {
    let w = World::new();
    // One current booking: VENDOR alone goes to its target, as its account.
    let out = w.vendor.ssh(&w.bastion, "acme").arg("id -un").stdin(Stdio::null()).output().unwrap();
    assert_eq!(stdout(&out).trim(), w.account, "{}", stderr(&out));

    // A second target, booked as `nobody`: the login must now name the target, and the
    // account is the booked one, whatever the login asks for.
    w.add_target("erp02", &w.sshd.address(), &w.sshd.host_key_pub, &["nobody", &w.account]);
    w.book_now("erp02", "nobody");
    let err = refused(&w, &w.vendor, "acme");
    assert!(err.contains("bookings on 2 targets now"), "{err}");
    let err = refused(&w, &w.vendor, &format!("acme:erp02:{}", w.account));
    assert!(err.contains("is for account \"nobody\""), "{err}");
    // `nobody`'s shell refuses logins on Debian: the target, not chaperone, answers,
    // which shows chaperone logged in as `nobody`.
    let out = w.vendor.ssh(&w.bastion, "acme:erp02").arg("id -un").stdin(Stdio::null()).output().unwrap();
    assert_ne!(stdout(&out).trim(), w.account, "logged in as the wrong account");
    let session = w.last_session();
    let json = w.ended_session_json(&session);
    assert_eq!(json["account"], "nobody");
    assert_eq!(json["booking"], "B-2");
}

#[test]
fn host_key_mismatch_and_unreachable_target_are_refused() {
    let w = World::new();
    let other = w.path("other_host_key");
    keygen(&other);
    let wrong_key = std::fs::read_to_string(other.with_extension("pub")).unwrap();
    w.add_target("spoofed", &w.sshd.address(), wrong_key.trim(), &[&w.account]);
    w.book_now("spoofed", &w.account);
    let err = refused(&w, &w.vendor, "acme:spoofed");
    assert!(err.contains("host key mismatch: expected SHA256:"), "{err}");

    let closed = free_port();
    w.add_target("down", &format!("127.0.0.1:{closed}"), &w.sshd.host_key_pub, &[&w.account]);
    w.book_now("down", &w.account);
    let err = refused(&w, &w.vendor, "acme:down");
    assert!(err.contains("target \"down\"") && err.contains("unreachable"), "{err}");
    assert!(w.bastion.log().contains("host key mismatch"), "refusals are logged");
}

#[test]
fn forwarding_sftp_and_scp_are_refused() {
    let w = World::new();
    // Local (stdio) forwarding.
    let out =
        w.vendor.ssh(&w.bastion, "acme:erp01").args(["-W", &w.sshd.address()]).stdin(Stdio::null()).output().unwrap();
    assert_eq!(out.status.code(), Some(255));
    assert!(stderr(&out).contains("forwarding failed") || stderr(&out).contains("not allowed"), "{}", stderr(&out));
    // Remote forwarding.
    let out = w
        .vendor
        .ssh(&w.bastion, "acme:erp01")
        .args(["-o", "ExitOnForwardFailure=yes", "-R", "0:127.0.0.1:9"])
        .arg("echo forwarded")
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert_ne!(out.status.code(), Some(0));
    assert!(stderr(&out).contains("remote port forwarding failed"), "{}", stderr(&out));
    // sftp (subsystem).
    let out = std::process::Command::new("sftp")
        .args(w.vendor.options(&w.bastion))
        .args(["-o", "User=acme:erp01", "-b", "-", "-P", &w.bastion.port.to_string(), "127.0.0.1"])
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(stderr(&out).contains("subsystem request failed"), "{}", stderr(&out));
    // Legacy scp runs as a command; it is a file transfer all the same.
    let copied = w.path("copied");
    let out = std::process::Command::new("scp")
        .args(w.vendor.options(&w.bastion))
        .args(["-o", "User=acme:erp01", "-O", "-P", &w.bastion.port.to_string(), "/etc/hostname"])
        .arg(format!("127.0.0.1:{}", copied.display()))
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert!(!out.status.success(), "scp went through");
    assert!(!copied.exists());
}
