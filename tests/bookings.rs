//! Bookings as the SOP wants them: only inside approved windows, planned in writing and
//! acknowledged (signed with real `ssh-keygen -Y sign`), warned and closed at the end,
//! confirmed by e-mail (outbox and a real SMTP server), everything in a verifiable audit
//! log. Time moves with the test clock (debug builds only).

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::common::*;

fn write_plan(w: &World, name: &str, text: &str) -> String {
    let path = w.path(name);
    std::fs::write(&path, text).unwrap();
    path.display().to_string()
}

const PLAN: &str = "# Upgrade ERP to 9.2\n\nWho: Jane (acme)\n\n1. stop erp\n2. back up the database\n3. install 9.2\n\nRollback: restore the backup.\n";

fn create(w: &World, start: &str, end: &str, extra: &[&str]) -> std::process::Output {
    let plan = write_plan(w, "plan.md", PLAN);
    let mut args = booking_create(&w.account, &["--start", start, "--end", end, "--plan", &plan]);
    args.extend_from_slice(extra);
    w.bastion.run(&args)
}

fn wait_for_file_containing(path: &std::path::Path, text: &str) -> String {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let content = std::fs::read_to_string(path).unwrap_or_default();
        if content.contains(text) {
            return content;
        }
        assert!(Instant::now() < deadline, "{} never contained {text:?}; it has:\n{content}", path.display());
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Parses an .eml with Python's email package: prints the subject, the recipients, each
/// part's content type, and the decoded calendar attachment.
fn parse_mail(raw: &str) -> String {
    let script = "import sys, email\n\
                  m = email.message_from_string(sys.stdin.read())\n\
                  print('SUBJECT', m['Subject'])\n\
                  print('TO', m['To'])\n\
                  print('MESSAGE-ID', m['Message-ID'])\n\
                  for p in m.walk():\n    \
                      print('PART', p.get_content_type(), p.get_filename())\n    \
                      if p.get_content_type() in ('text/calendar', 'text/plain'):\n        \
                          print(p.get_payload(decode=True).decode())\n";
    let mut child = Command::new("/usr/bin/python3")
        .args(["-c", script])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    std::io::Write::write_all(child.stdin.as_mut().unwrap(), raw.as_bytes()).unwrap();
    let out = child.wait_with_output().unwrap();
    String::from_utf8(out.stdout).unwrap()
}

#[test]
fn window_is_enforced_from_refusal_to_warnings_to_close_and_confirmed_by_mail() {
    let w = World::bare("[policy]\nrequire_acknowledgements = false\nrequire_supervisor = false\n");
    w.bastion.set_clock("2026-11-20T09:00:00+01:00");
    let out = create(&w, "2026-12-03 09:00", "2026-12-03 10:00", &[]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(stdout(&out).trim(), "B-1");
    w.bastion.ok(&["booking", "approve", "B-1", "--by", "alice"]);

    // Before the window: refused, with the next window.
    let out = w.exec("echo too-early");
    assert_eq!(out.status.code(), Some(255));
    assert!(
        stderr(&out).contains(
            "chaperone: no booking for acme on erp01 now; next approved window: 2026-12-03 09:00–10:00 Europe/Berlin"
        ),
        "{}",
        stderr(&out)
    );

    // Inside: admitted; the window's opening sends the confirmation.
    w.bastion.set_clock("2026-12-03T09:45:00+01:00");
    let outbox = w.bastion.dir.join("data/outbox/B-1-open.eml");
    let mail = wait_for_file_containing(&outbox, "BEGIN:VCALENDAR").replace("=\r\n", "");
    let parsed = parse_mail(&mail);
    assert!(parsed.contains("SUBJECT Access enabled: acme on erp01 (B-1)"), "{parsed}");
    assert!(parsed.contains("it@globex.example") && parsed.contains("ops@acme.example"), "{parsed}");
    assert!(parsed.contains("PART text/calendar booking-B-1.ics"), "{parsed}");
    assert!(parsed.contains("DTSTART:20261203T080000Z"), "{parsed}");
    assert!(parsed.contains("Supervising: alice") && parsed.contains("1. stop erp"), "{parsed}");

    let stderr_path = w.path("session.stderr");
    let mut session = w.start_long_session(std::fs::File::create(&stderr_path).unwrap().into());

    for (clock, expected) in [
        ("2026-12-03T09:50:00+01:00", "ends in 10 minutes (at 10:00 Europe/Berlin)"),
        ("2026-12-03T09:55:00+01:00", "ends in 5 minutes"),
        ("2026-12-03T09:59:00+01:00", "ends in 1 minute ("),
        ("2026-12-03T10:00:00+01:00", "the window of booking B-1 ended at 10:00 Europe/Berlin"),
    ] {
        w.bastion.set_clock(clock);
        wait_for_file_containing(&stderr_path, expected);
    }
    let status = session.wait().unwrap();
    assert_eq!(status.code(), Some(255), "closed without an exit status");
    let err = std::fs::read_to_string(&stderr_path).unwrap();
    let order: Vec<usize> =
        ["10 minutes", "5 minutes", "1 minute (", "ended at"].iter().map(|t| err.find(t).unwrap()).collect();
    assert!(order.windows(2).all(|p| p[0] < p[1]), "{err}");

    // The warnings are on the recording's timeline as markers.
    let id = w.last_session();
    let json = w.ended_session_json(&id);
    assert_eq!(json["booking"], "B-1");
    let cast = w.recording_text(&id);
    let markers = cast.lines().filter(|l| l.contains("\"m\", ")).count();
    assert_eq!(markers, 4, "{cast}");

    // After the window: refused again; the audit log tells the story.
    let out = w.exec("echo too-late");
    assert_eq!(out.status.code(), Some(255));
    let audit = w.bastion.ok(&["audit", "--booking", "B-1"]);
    for kind in [
        "booking.create",
        "booking.approve",
        "window.open",
        "mail.sent",
        "session.start",
        "session.ended",
        "session.end",
    ] {
        assert!(audit.contains(kind), "{kind} missing from:\n{audit}");
    }
    w.eventually("the window to close", || w.bastion.ok(&["audit", "--booking", "1"]).contains("window.close"));
    assert!(w.bastion.ok(&["audit"]).contains("login.refused"));
}

#[test]
fn cancelling_ends_the_live_session_at_once() {
    let w = World::new();
    let session = w.start_long_session(Stdio::piped());
    w.bastion.ok(&["booking", "cancel", "B-1", "--reason", "vendor unavailable", "--by", "alice"]);
    // The command sleeps for five minutes: only the cancellation ends it with this message.
    let out = session.wait_with_output().unwrap();
    assert!(
        stderr(&out).contains("chaperone: booking B-1 was cancelled (vendor unavailable); the session has been ended"),
        "{}",
        stderr(&out)
    );
    let out = w.exec("echo again");
    assert!(stderr(&out).contains("no booking for acme on erp01 now"), "{}", stderr(&out));
    // The approved booking's cancellation is mailed too.
    let cancel = wait_for_file_containing(&w.bastion.dir.join("data/outbox/B-1-cancel.eml"), "Cancelled");
    assert!(parse_mail(&cancel).contains("vendor unavailable"));
    let fails = w.bastion.run(&["booking", "cancel", "B-1", "--reason", "again", "--by", "alice"]);
    assert_eq!(fails.status.code(), Some(2));
}

#[test]
fn plans_are_acknowledged_with_real_ssh_signatures_before_approval() {
    let w = World::bare("[policy]\nrequire_supervisor = false\n");
    w.bastion.set_clock("2026-11-20T09:00:00+01:00");
    assert!(create(&w, "2026-12-03 09:00", "2026-12-03 12:00", &[]).status.success());

    // Not approved: refused inside the window, and approval wants the acknowledgements.
    let approve = w.bastion.run(&["booking", "approve", "B-1", "--by", "alice"]);
    assert_eq!(approve.status.code(), Some(2));
    assert!(stderr(&approve).contains("needs the vendor's signed acknowledgement"), "{}", stderr(&approve));

    // Until someone acknowledges it, the plan may still be corrected.
    let corrected = write_plan(&w, "corrected.md", &PLAN.replace("Who: Jane", "Who: Jane Roe"));
    w.bastion.ok(&["booking", "replan", "B-1", "--plan", &corrected, "--by", "alice"]);
    let plan_now = w.bastion.ok(&["booking", "plan", "B-1"]);
    assert!(plan_now.contains("Jane Roe"));

    // The vendor signs exactly the stored plan with its registered key.
    let plan = w.path("B-1-plan.md");
    std::fs::write(&plan, w.bastion.ok(&["booking", "plan", "B-1"])).unwrap();
    assert_eq!(std::fs::read_to_string(&plan).unwrap(), PLAN.replace("Who: Jane", "Who: Jane Roe"));
    let sign = |key: &std::path::Path, file: &std::path::Path, namespace: &str| {
        let _ = std::fs::remove_file(format!("{}.sig", file.display()));
        let out =
            Command::new("ssh-keygen").args(["-Y", "sign", "-n", namespace, "-f"]).arg(key).arg(file).output().unwrap();
        assert!(out.status.success(), "ssh-keygen: {}", stderr(&out));
        format!("{}.sig", file.display())
    };
    let ack = |sig: &str| w.bastion.run(&["booking", "ack", "B-1", "--party", "vendor", "--signature", sig]);

    let tampered = w.path("tampered.md");
    std::fs::write(&tampered, plan_now.replace("install 9.2", "install 9.3")).unwrap();
    let out = ack(&sign(&w.vendor.key, &tampered, "chaperone-plan"));
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr(&out).contains("does not match the plan"), "{}", stderr(&out));

    let out = ack(&sign(&w.tech.key, &plan, "chaperone-plan"));
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr(&out).contains("not registered for this party"), "{}", stderr(&out));

    let out = ack(&sign(&w.vendor.key, &plan, "git"));
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr(&out).contains("namespace \"git\""), "{}", stderr(&out));

    let out = ack(&sign(&w.vendor.key, &plan, "chaperone-plan"));
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(stdout(&out).contains("vendor acknowledged the plan, signed with SHA256:"), "{}", stdout(&out));

    let approve = w.bastion.run(&["booking", "approve", "B-1", "--by", "alice"]);
    assert!(stderr(&approve).contains("needs the client's acknowledgement"), "{}", stderr(&approve));
    // Acknowledged: the plan is frozen.
    let replan = w.bastion.run(&["booking", "replan", "B-1", "--plan", &corrected, "--by", "alice"]);
    assert_eq!(replan.status.code(), Some(2));
    assert!(stderr(&replan).contains("is frozen"), "{}", stderr(&replan));
    w.bastion.ok(&[
        "booking",
        "ack",
        "B-1",
        "--party",
        "client",
        "--note",
        "mail from J. Doe, 2026-11-19",
        "--by",
        "alice",
    ]);
    let provider_sig = sign(&w.tech.key, &plan, "chaperone-plan");
    w.bastion.ok(&["booking", "ack", "B-1", "--party", "provider", "--by", "alice", "--signature", &provider_sig]);

    w.bastion.set_clock("2026-12-03T09:30:00+01:00");
    let out = w.exec("echo hi");
    assert!(stderr(&out).contains("chaperone: booking B-1 is not approved yet"), "{}", stderr(&out));

    w.bastion.ok(&["booking", "approve", "B-1", "--by", "alice"]);
    let out = w.exec("echo admitted");
    assert_eq!(stdout(&out), "admitted\n", "{}", stderr(&out));

    let show = w.bastion.ok(&["booking", "show", "B-1"]);
    for text in [
        "state:      approved",
        "ack:        vendor by acme",
        "ack:        client by alice",
        "mail from J. Doe",
        "ack:        provider by alice",
        "# Upgrade ERP to 9.2",
    ] {
        assert!(show.contains(text), "{text:?} missing from:\n{show}");
    }
}

#[test]
fn booking_rules_are_enforced_on_the_command_line() {
    let w = World::bare("[policy]\nrequire_supervisor = false\n");
    // Half a minute before 09:00, so that "exactly 7 days" still holds while the test runs.
    w.bastion.set_clock("2026-11-26T08:59:30+01:00");
    let refused = |start: &str, end: &str, extra: &[&str], text: &str| {
        let out = create(&w, start, end, extra);
        assert_eq!(out.status.code(), Some(2), "{start}–{end} {extra:?}: {}", stderr(&out));
        assert!(stderr(&out).contains(text), "{start}–{end}: expected {text:?} in {}", stderr(&out));
        assert_eq!(stderr(&out).trim().lines().count(), 1);
    };
    refused("2026-12-03 08:59", "2026-12-03 10:00", &[], "at least 7 days");
    refused("2027-03-28 02:30", "2027-03-28 05:00", &[], "does not exist in Europe/Berlin");
    refused("2027-10-31 02:30", "2027-10-31 05:00", &[], "happens twice in Europe/Berlin");
    refused("2026-12-03 10:00", "2026-12-03 09:00", &[], "end after it starts");
    refused("2026-12-03 08:00", "2026-12-03 21:00", &[], "longer than 12 hours");
    refused("2026-11-26 10:00", "2026-11-26 11:00", &["--emergency", " "], "needs a reason");
    assert!(create(&w, "2026-12-03 09:00", "2026-12-03 12:00", &[]).status.success(), "exactly 7 days ahead is fine");
    refused("2026-12-03 11:00", "2026-12-03 13:00", &[], "overlaps booking B-1");

    let out = create(&w, "2026-11-26 10:00", "2026-11-26 11:00", &["--emergency", "ERP down, invoices stuck"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let show = w.bastion.ok(&["booking", "show", "B-2"]);
    assert!(show.contains("EMERGENCY:  ERP down, invoices stuck"), "{show}");
    assert!(show.contains("[EMERGENCY booking: ERP down, invoices stuck]"), "the plan header shows it: {show}");
    let audit = w.bastion.ok(&["audit", "--booking", "B-2"]);
    assert!(audit.contains("emergency: ERP down, invoices stuck"), "{audit}");

    let ics = w.bastion.ok(&["booking", "ics", "B-1"]);
    assert!(ics.contains("BEGIN:VEVENT\r\n") && ics.contains("DTSTART:20261203T080000Z\r\n"), "{ics}");
    assert!(ics.contains("DTEND:20261203T110000Z\r\n") && ics.contains("UID:booking-1@chaperone"), "{ics}");
    let list = w.bastion.ok(&["booking", "list"]);
    assert!(list.contains("B-1") && list.contains("B-2") && list.contains("Upgrade ERP to 9.2"), "{list}");

    // A privileged account needs a justification, shown in the plan and the audit.
    w.bastion.ok(&[
        "target",
        "add",
        "db01",
        "--address",
        &w.sshd.address(),
        "--host-key",
        &w.sshd.host_key_pub,
        "--account",
        "postgres",
        "--privileged-account",
        &w.account,
        "--client",
        "globex",
    ]);
    let plan = write_plan(&w, "db.md", "# Vacuum\n- vacuum full\n");
    let base = [
        "booking",
        "create",
        "--vendor",
        "acme",
        "--target",
        "db01",
        "--account",
        &w.account,
        "--start",
        "2026-12-10 09:00",
        "--end",
        "2026-12-10 10:00",
        "--plan",
        &plan,
    ];
    let out = w.bastion.run(&base);
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr(&out).contains("is privileged"), "{}", stderr(&out));
    let mut justified = base.to_vec();
    justified.extend(["--privileged", "kernel module needs root"]);
    w.bastion.ok(&justified);
    assert!(w.bastion.ok(&["booking", "show", "B-3"]).contains("[PRIVILEGED account"));

    std::fs::write(w.path("empty.md"), "  \n").unwrap();
    let mut empty = base.to_vec();
    empty[13] = w.path("empty.md").to_str().unwrap().to_string().leak();
    let out = w.bastion.run(&empty);
    assert!(stderr(&out).contains("plan is empty"), "{}", stderr(&out));
    std::fs::write(w.path("binary.md"), b"\xff\xfe plan").unwrap();
    let mut binary = base.to_vec();
    binary[13] = w.path("binary.md").to_str().unwrap().to_string().leak();
    let out = w.bastion.run(&binary);
    assert!(stderr(&out).contains("not valid UTF-8"), "{}", stderr(&out));
}

#[test]
fn confirmation_goes_through_a_real_smtp_server_with_retries() {
    let tmp = tempfile::tempdir().unwrap();
    let port = free_port();
    let maildir = tmp.path().join("maildir");
    let config = format!(
        "[policy]\nrequire_acknowledgements = false\nrequire_supervisor = false\n\n[mail]\ntransport = \"smtp\"\nfrom = \"chaperone@provider.example\"\n\
         smtp_host = \"127.0.0.1\"\nsmtp_port = {port}\nsmtp_tls = \"none\"\n"
    );
    let w = World::bare(&config);
    // The SMTP server is down at first: the failure is audited and retried.
    w.book_now("erp01", &w.account);
    w.eventually("a failed delivery in the audit log", || w.bastion.ok(&["audit"]).contains("mail.failed"));
    assert!(w.bastion.ok(&["audit"]).contains("(will retry)"));
    // Admission does not wait for mail.
    assert_eq!(stdout(&w.exec("echo admitted")), "admitted\n");

    let mut server = Command::new("/usr/bin/python3")
        .args(["-m", "aiosmtpd", "-n", "-l", &format!("127.0.0.1:{port}"), "-c", "aiosmtpd.handlers.Mailbox"])
        .arg(&maildir)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("python3-aiosmtpd (scripts/test installs it)");
    wait_for_port(port, "aiosmtpd");
    // Jump past the backoff instead of waiting for it.
    w.bastion.set_clock("2026-12-03T10:05:00+01:00");
    w.eventually("the mail to be sent", || w.bastion.ok(&["audit"]).contains("mail.sent"));
    let _ = server.kill();
    let _ = server.wait();

    let delivered: Vec<_> = std::fs::read_dir(maildir.join("new")).unwrap().flatten().collect();
    assert_eq!(delivered.len(), 1);
    let raw = std::fs::read_to_string(delivered[0].path()).unwrap();
    let parsed = parse_mail(&raw);
    assert!(parsed.contains("SUBJECT Access enabled: acme on erp01 (B-1)"), "{parsed}");
    assert!(parsed.contains("PART text/calendar booking-B-1.ics") && parsed.contains("BEGIN:VEVENT"), "{parsed}");
    // The Message-ID and a copy are kept with the booking.
    let show = w.bastion.ok(&["booking", "show", "B-1"]);
    let message_id = parsed.lines().find_map(|l| l.strip_prefix("MESSAGE-ID ")).unwrap();
    assert!(show.contains(message_id) && show.contains("(sent, 2 attempt(s))"), "{show}");
    assert!(w.bastion.dir.join("data/mail/B-1/open.eml").exists());
}

/// A private CA and a certificate it signed for a relay at 127.0.0.1, made with openssl.
fn private_ca(dir: &std::path::Path) {
    let run = |args: &str| {
        let out = Command::new("openssl")
            .args(args.split_whitespace())
            .current_dir(dir)
            .output()
            .expect("openssl (scripts/test installs it)");
        assert!(out.status.success(), "openssl {args}: {}", stderr(&out));
    };
    let ec = "-newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes";
    run(&format!("req -x509 {ec} -keyout ca.key -out ca.pem -days 2 -subj /CN=relay-ca"));
    run(&format!("req {ec} -keyout relay.key -out relay.csr -subj /CN=127.0.0.1"));
    let ext = "subjectAltName=IP:127.0.0.1\nbasicConstraints=CA:FALSE\nextendedKeyUsage=serverAuth\n";
    std::fs::write(dir.join("relay.ext"), ext).unwrap();
    run("x509 -req -in relay.csr -CA ca.pem -CAkey ca.key -CAcreateserial -out relay.pem -days 2 -extfile relay.ext");
}

/// aiosmtpd on `port` with the certificate from [`private_ca`] (`--tlscert`/`--tlskey`
/// for STARTTLS, `--smtpscert`/`--smtpskey` for TLS from the first byte), delivering into
/// `dir/maildir`; killed when the test ends (also when it fails).
fn tls_relay(dir: &std::path::Path, port: u16, cert: &str, key: &str) -> Killed {
    let server = Command::new("/usr/bin/python3")
        .args(["-m", "aiosmtpd", "-n", "-l", &format!("127.0.0.1:{port}"), "-c", "aiosmtpd.handlers.Mailbox"])
        .arg(dir.join("maildir"))
        .arg(cert)
        .arg(dir.join("relay.pem"))
        .arg(key)
        .arg(dir.join("relay.key"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("python3-aiosmtpd (scripts/test installs it)");
    wait_for_port(port, "aiosmtpd");
    Killed(server)
}

#[test]
fn confirmation_goes_over_implicit_tls_to_a_relay_signed_by_a_private_ca() {
    let certs = tempfile::tempdir().unwrap();
    private_ca(certs.path());
    let port = free_port();
    let server = tls_relay(certs.path(), port, "--smtpscert", "--smtpskey");
    let config = format!(
        "[policy]\nrequire_acknowledgements = false\nrequire_supervisor = false\n\n[mail]\ntransport = \"smtp\"\n\
         from = \"chaperone@provider.example\"\nsmtp_host = \"127.0.0.1\"\nsmtp_port = {port}\nsmtp_tls = \"tls\"\n\
         smtp_ca = \"{}\"\n",
        certs.path().join("ca.pem").display()
    );
    let w = World::bare(&config);
    w.book_now("erp01", &w.account);
    w.eventually("the mail to be sent", || w.bastion.ok(&["audit"]).contains("mail.sent"));
    drop(server);
    let delivered: Vec<_> = std::fs::read_dir(certs.path().join("maildir/new")).unwrap().flatten().collect();
    assert_eq!(delivered.len(), 1);
}

#[test]
fn confirmation_goes_over_starttls_to_a_relay_signed_by_a_private_ca() {
    let certs = tempfile::tempdir().unwrap();
    private_ca(certs.path());
    let port = free_port();
    let maildir = certs.path().join("maildir");
    // The relay insists on STARTTLS before it takes a message.
    let server = tls_relay(certs.path(), port, "--tlscert", "--tlskey");
    let config = format!(
        "[policy]\nrequire_acknowledgements = false\nrequire_supervisor = false\n\n[mail]\ntransport = \"smtp\"\n\
         from = \"chaperone@provider.example\"\nsmtp_host = \"127.0.0.1\"\nsmtp_port = {port}\nsmtp_tls = \"starttls\"\n"
    );
    let mut w = World::bare(&config);

    // Without the CA the relay's certificate is not trusted: nothing is sent in clear.
    w.book_now("erp01", &w.account);
    w.eventually("a failed delivery", || w.bastion.ok(&["audit"]).contains("mail.failed"));
    assert!(w.bastion.log().contains("certificate"), "{}", w.bastion.log());
    assert!(!maildir.join("new").exists() || std::fs::read_dir(maildir.join("new")).unwrap().next().is_none());

    // With the CA configured, the retry goes through.
    w.bastion.signal(libc::SIGTERM);
    assert!(w.bastion.wait(Duration::from_secs(20)).success());
    let mut text = std::fs::read_to_string(&w.bastion.config).unwrap();
    text.push_str(&format!("smtp_ca = \"{}\"\n", certs.path().join("ca.pem").display()));
    std::fs::write(&w.bastion.config, text).unwrap();
    w.bastion.start();
    w.bastion.set_clock("2026-12-03T10:05:00+01:00");
    w.eventually("the mail to be sent", || w.bastion.ok(&["audit"]).contains("mail.sent"));
    drop(server);
    let delivered: Vec<_> = std::fs::read_dir(maildir.join("new")).unwrap().flatten().collect();
    assert_eq!(delivered.len(), 1);
    let parsed = parse_mail(&std::fs::read_to_string(delivered[0].path()).unwrap());
    assert!(parsed.contains("SUBJECT Access enabled: acme on erp01 (B-1)"), "{parsed}");
}

#[test]
fn audit_verify_finds_an_entry_edited_in_the_database() {
    let w = World::new();
    assert_eq!(stdout(&w.exec("echo hi")), "hi\n");
    let ok = w.bastion.ok(&["audit", "verify"]);
    assert!(ok.contains("audit log intact"), "{ok}");

    let db = rusqlite::Connection::open(w.bastion.dir.join("data/chaperone.db")).unwrap();
    // The log refuses edits; someone with the database file can still drop the guard.
    assert!(db.execute("UPDATE audit SET detail = 'x' WHERE id = 2", []).is_err());
    db.execute_batch("DROP TRIGGER audit_no_update; UPDATE audit SET detail = 'approved by mallory' WHERE id = 2;")
        .unwrap();
    let out = w.bastion.run(&["audit", "verify"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("audit entry 2 was altered"), "{}", stderr(&out));
}

/// No ESC, BEL or other control in `text`, nor a bidirectional override.
fn no_controls(text: &str) -> bool {
    !text.chars().any(|c| (c.is_control() && c != '\n' && c != '\t') || ('\u{202a}'..='\u{202e}').contains(&c))
}

/// A plan is shown to technicians, to the vendor at login and signed byte for byte: text
/// that would act on a terminal (ESC, other controls, a lone CR) or read differently from
/// what it is ("Trojan source" bidi overrides) is refused where it comes in, with its line
/// and column, as are controls in reasons and notes. A plan stored before that check (an
/// old database) is shown escaped: in `booking show`, `list`, `plan` over ssh, the audit
/// log and the vendor's login banner.
#[test]
fn plans_and_reasons_that_would_act_on_a_terminal_are_refused_and_old_ones_shown_escaped() {
    let w = World::bare("[policy]\nrequire_acknowledgements = false\nrequire_supervisor = false\n");
    let window = ["--start", "2026-12-03 09:00", "--end", "2026-12-03 20:00", "--emergency", "test"];
    let create = |plan: &str, extra: &[&str]| {
        let mut args = booking_create(&w.account, &window);
        args.extend_from_slice(&["--plan", plan]);
        args.extend_from_slice(extra);
        w.bastion.run(&args)
    };
    let refused = |out: std::process::Output, expected: &str| {
        let err = stderr(&out);
        assert_eq!(out.status.code(), Some(2), "{err}");
        assert!(err.contains(expected), "expected {expected:?} in {err}");
        assert_eq!(err.trim_end().lines().count(), 1, "{err}");
        assert!(no_controls(&err), "{err:?}");
    };
    let hostile = [
        ("# Plan\n- step\n- clear \x1b]52;c;ZXZpbA==\x07\x1b[2J\n", "line 3, column 9: ESC (U+001B)"),
        ("# Plan\n- ok\nrm -rf /\rls -l    \n", "line 3, column 9: CR (U+000D)"),
        ("# Plan\x00\n", "line 1, column 7: NUL (U+0000)"),
        ("# Plan\n- ask \u{9b}6n\n", "line 2, column 7: CSI (U+009B)"),
        ("# Plan\n- access for user \u{202e}nimda\u{202c}\n", "line 2, column 19: a bidirectional override (U+202E)"),
    ];
    for (i, (text, expected)) in hostile.iter().enumerate() {
        let plan = write_plan(&w, &format!("hostile-{i}.md"), text);
        refused(create(&plan, &[]), &format!("the plan, {expected}"));
    }
    // The same over ssh, with the plan on standard input.
    let mut ssh = w.tech.ssh(&w.bastion, "alice");
    ssh.arg(format!(
        "booking create --vendor acme --target erp01 --account {} --start '2026-12-03 09:00' --end '2026-12-03 20:00' --emergency test --plan -",
        w.account
    ));
    let mut child = ssh.stdin(Stdio::piped()).stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().unwrap();
    std::io::Write::write_all(&mut child.stdin.take().unwrap(), hostile[0].0.as_bytes()).unwrap();
    refused(child.wait_with_output().unwrap(), "line 3, column 9: ESC (U+001B)");
    // An endless standard input is not waited for.
    let zero = std::fs::File::open("/dev/zero").unwrap();
    refused(run_bounded(ssh, Stdio::from(zero)), "plan from standard input is over the 64 KiB limit");
    // Reasons and notes are one line of plain text.
    let good = write_plan(&w, "good.md", "# Plan\r\n- step one\twith a tab\r\n");
    refused(create(&good, &["--privileged", "needs root\x1b[6n"]), "--privileged: column 11: ESC (U+001B)");
    assert!(w.bastion.ok(&["booking", "list", "--all"]).contains("no bookings"), "a hostile booking was made");

    // CRLF line ends (a Windows editor) stay as written: they are what is signed.
    assert_eq!(stdout(&create(&good, &[])).trim(), "B-1");
    assert_eq!(w.bastion.ok(&["booking", "plan", "B-1"]), "# Plan\r\n- step one\twith a tab\r\n");
    let bad = write_plan(&w, "bad.md", hostile[0].0);
    refused(
        w.bastion.run(&["booking", "replan", "B-1", "--plan", &bad, "--by", "alice"]),
        "line 3, column 9: ESC (U+001B)",
    );
    refused(
        w.bastion.run(&["booking", "cancel", "B-1", "--reason", "bye\u{7}", "--by", "alice"]),
        "--reason: column 4: BEL (U+0007)",
    );
    refused(
        w.bastion.run(&["booking", "ack", "B-1", "--party", "client", "--by", "alice", "--note", "ok\u{202e}"]),
        "--note: column 3: a bidirectional override",
    );
    w.bastion.ok(&["booking", "approve", "B-1", "--by", "alice"]);

    // An old database: control strings in a stored plan and reason.
    let old_plan = "# Old\x1b]0;pwned\x07 plan\n- look \x1b[6naround\n";
    let db = rusqlite::Connection::open(w.bastion.dir.join("data/chaperone.db")).unwrap();
    db.execute("UPDATE bookings SET plan = ?1, emergency = ?2 WHERE id = 1", [old_plan, "why\x1b[2J"]).unwrap();
    drop(db);
    for shown in [w.bastion.ok(&["booking", "show", "B-1"]), stdout(&w.console("booking show B-1"))] {
        assert!(no_controls(&shown), "{shown:?}");
        assert!(shown.contains("# Old\\u{1b}]0;pwned\\u{7} plan") && shown.contains("why\\u{1b}[2J"), "{shown}");
    }
    for listed in [w.bastion.ok(&["booking", "list"]), stdout(&w.console("booking list"))] {
        assert!(no_controls(&listed) && listed.contains("Old\\u{1b}]0;pwned"), "{listed:?}");
    }
    // Its exact bytes into a local file; escaped over ssh, where stdout may be a terminal.
    assert_eq!(w.bastion.ok(&["booking", "plan", "B-1"]), old_plan);
    let out = w.console("booking plan B-1");
    assert!(out.status.success() && no_controls(&stdout(&out)), "{:?}", stdout(&out));
    assert!(stderr(&out).contains("shown escaped"), "{}", stderr(&out));
    // What a technician types over ssh is audited as typed, and printed escaped.
    w.console("booking list --vendor 'x\x1b]2;title\x07'");
    let audit = w.bastion.ok(&["audit"]);
    assert!(no_controls(&audit) && audit.contains("x\\u{1b}]2;title"), "{audit:?}");
    // The vendor's login banner shows the old plan's title and steps escaped.
    let mut vendor = w.vendor_shell(80, 24);
    vendor.expect("plan: Old");
    vendor.expect("look ");
    vendor.type_text("exit\r");
    let _ = vendor.wait(Duration::from_secs(15));
    let banner = vendor.output();
    assert!(!banner.contains("\x1b]0;pwned") && !banner.contains("\x1b[6n"), "{banner:?}");
    assert!(banner.contains("plan: Old\\u{1b}]0;pwned\\u{7} plan"), "{banner:?}");
}
