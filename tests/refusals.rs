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

/// A key-guessing client cannot grow the audit log by a row per connection: ten failed
/// logins a minute from one address are itemized, the rest counted, and the count is
/// audited when the minute is over (here: at shutdown).
#[test]
fn failed_logins_beyond_ten_a_minute_from_one_address_are_counted_not_itemized() {
    let w = World::new();
    let stranger = VendorClient::new(w.tmp.path(), "stranger");
    stranger.trust(&w.bastion);
    for _ in 0..13 {
        refused(&w, &stranger, "acme:erp01");
    }
    let audit = w.bastion.ok(&["audit"]);
    assert_eq!(audit.matches("authentication refused from 127.0.0.1").count(), 10, "{audit}");
    let mut bastion = w.bastion;
    bastion.signal(libc::SIGTERM);
    assert!(bastion.wait(std::time::Duration::from_secs(20)).success());
    let audit = bastion.ok(&["audit"]);
    assert!(audit.contains("3 more authentication refusals from 127.0.0.1 in the minute from"), "{audit}");
    assert!(bastion.ok(&["audit", "verify"]).contains("audit log intact"));
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

/// Access withdrawn while connected ends what it covered, within the scheduler's tick,
/// and nothing else: a removed key the session that logged in with it, a disabled vendor
/// all its sessions. A target stays while a booking needs it. Each change is audited.
#[test]
fn sessions_end_when_their_key_or_vendor_is_withdrawn() {
    let w = World::new();
    let colleague = VendorClient::new(w.tmp.path(), "colleague");
    colleague.trust(&w.bastion);
    let added = w.bastion.ok(&["vendor", "key", "add", "acme", "--key", &colleague.public_key_path()]);
    assert!(added.contains("added to vendor acme"), "{added}");
    let mine = w.start_long_session(Stdio::piped());
    let theirs = w.start_long_session_as(&colleague, Stdio::piped());

    let removed = w.bastion.ok(&["vendor", "key", "remove", "acme", &w.vendor.public_key_path()]);
    let fingerprint = removed.split_whitespace().nth(1).unwrap().to_string();
    assert!(fingerprint.starts_with("SHA256:"), "{removed}");
    // The command sleeps for five minutes: only the removal ends it with this message.
    let out = mine.wait_with_output().unwrap();
    let expected =
        format!("chaperone: the key {fingerprint} has been removed from vendor acme; the session has been ended");
    assert!(stderr(&out).contains(&expected), "{}", stderr(&out));
    let err = refused(&w, &w.vendor, "acme:erp01");
    assert!(err.contains("Permission denied"), "{err}");
    // The colleague's session went on; the last key stays.
    let out = colleague.ssh(&w.bastion, "acme:erp01").arg("echo still").stdin(Stdio::null()).output().unwrap();
    assert_eq!(stdout(&out), "still\n", "{}", stderr(&out));
    let last = w.bastion.run(&["vendor", "key", "remove", "acme", &colleague.public_key_path()]);
    assert_eq!(last.status.code(), Some(2));
    assert!(stderr(&last).contains("is the last key of vendor \"acme\""), "{}", stderr(&last));

    w.bastion.ok(&["vendor", "disable", "acme"]);
    let out = theirs.wait_with_output().unwrap();
    assert!(
        stderr(&out).contains("chaperone: vendor acme has been disabled; the session has been ended"),
        "{}",
        stderr(&out)
    );

    // A target stays while a booking needs it (its window not over), live sessions included.
    let refused = w.bastion.run(&["target", "remove", "erp01"]);
    assert_eq!(refused.status.code(), Some(2));
    assert!(stderr(&refused).contains("target \"erp01\" has bookings not over yet (B-1): cancel them first"));
    w.bastion.ok(&["booking", "cancel", "B-1", "--reason", "server retired", "--by", "alice"]);
    w.bastion.ok(&["target", "remove", "erp01"]);

    let audit = w.bastion.ok(&["audit"]);
    for kind in ["vendor.key_add", "vendor.key_remove", "vendor.disable", "target.remove"] {
        assert!(audit.contains(kind), "{kind} missing: {audit}");
    }
    assert!(audit.contains(&format!("key {fingerprint}")), "the login names its key: {audit}");
    assert_eq!(audit.matches("; the session has been ended").count(), 2, "{audit}");
    assert!(w.bastion.ok(&["audit", "verify"]).contains("audit log intact"));
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
    assert!(stderr(&out).contains("chaperone: subsystem sftp (sftp, scp) is not allowed"), "{}", stderr(&out));
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

/// A TCP connection to the gate from `source` (any 127.0.0.0/8 address).
fn connect_from(source: &str, bastion: &Bastion) -> std::net::TcpStream {
    let runtime = tokio::runtime::Builder::new_current_thread().enable_io().build().unwrap();
    let stream = runtime.block_on(async {
        let socket = tokio::net::TcpSocket::new_v4().unwrap();
        socket.bind(format!("{source}:0").parse().unwrap()).unwrap();
        socket.connect(format!("127.0.0.1:{}", bastion.port).parse().unwrap()).await.unwrap()
    });
    let stream = stream.into_std().unwrap();
    stream.set_nonblocking(false).unwrap();
    stream
}

/// What the gate sends on `stream` until it closes it; None if it is still open after
/// `within`.
fn until_closed(stream: &mut std::net::TcpStream, within: std::time::Duration) -> Option<String> {
    use std::io::Read;
    let deadline = std::time::Instant::now() + within;
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        let left = deadline.checked_duration_since(std::time::Instant::now())?;
        stream.set_read_timeout(Some(left.max(std::time::Duration::from_millis(1)))).unwrap();
        match stream.read(&mut buf) {
            Ok(0) => return Some(String::from_utf8_lossy(&got).into_owned()),
            Ok(n) => got.extend_from_slice(&buf[..n]),
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => {
                return Some(String::from_utf8_lossy(&got).into_owned());
            }
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(_) => return None,
        }
    }
}

/// Reads the gate's version line (the connection is accepted and counted).
fn greeted(stream: &mut std::net::TcpStream) {
    use std::io::Read;
    stream.set_read_timeout(Some(std::time::Duration::from_secs(10))).unwrap();
    let mut line = Vec::new();
    let mut byte = [0u8; 1];
    while !line.ends_with(b"\n") {
        assert_eq!(stream.read(&mut byte).unwrap(), 1, "closed before the version line");
        line.push(byte[0]);
    }
    assert!(line.starts_with(b"SSH-2.0-"), "{:?}", String::from_utf8_lossy(&line));
}

#[test]
fn connections_not_logged_in_are_bounded_and_closed_after_the_grace_time() {
    use std::io::Write;
    let w = World::with_tables(
        "login_grace_secs = 2\nmax_unauthenticated = 4\nmax_unauthenticated_per_address = 3\n",
        "[policy]\nrequire_acknowledgements = false\nrequire_supervisor = false\n",
    );
    w.book_now("erp01", &w.account.clone());
    // A logged-in session holds no place.
    let mut session = w.start_long_session(Stdio::null());
    // Three connections from 127.0.0.1 that never log in: one says nothing at all, two
    // send their version line and stop there (in the key exchange).
    let mut silent: Vec<_> = (0..3).map(|_| connect_from("127.0.0.1", &w.bastion)).collect();
    for (i, stream) in silent.iter_mut().enumerate() {
        greeted(stream);
        if i > 0 {
            stream.write_all(b"SSH-2.0-OpenSSH_9.9 stalled\r\n").unwrap();
        }
    }
    // A fourth from that address is closed at once, before a word.
    let mut fourth = connect_from("127.0.0.1", &w.bastion);
    assert_eq!(until_closed(&mut fourth, std::time::Duration::from_secs(10)).as_deref(), Some(""));
    // Another address has room, until four are waiting in all.
    let mut other = connect_from("127.0.0.2", &w.bastion);
    greeted(&mut other);
    let mut fifth = connect_from("127.0.0.3", &w.bastion);
    assert_eq!(until_closed(&mut fifth, std::time::Duration::from_secs(10)).as_deref(), Some(""));
    // The grace time over, each is closed.
    silent.push(other);
    for (i, stream) in silent.iter_mut().enumerate() {
        assert!(
            until_closed(stream, std::time::Duration::from_secs(30)).is_some(),
            "{i} still open after the grace time"
        );
    }
    assert!(w.bastion.log().contains("no login within 2s: connection closed"), "{}", w.bastion.log());
    // The session went on, and logins work again.
    assert_eq!(stdout(&w.exec("echo in")), "in\n");
    let _ = session.kill();
    let _ = session.wait();
}

/// Everything the session's recordings say, decompressed, one after another.
fn timeline(w: &World, id: &str) -> String {
    let folder = w.folder(id);
    let mut all = String::new();
    for n in 1.. {
        let name = if n == 1 { "session.cast.zst".to_string() } else { format!("session.{n}.cast.zst") };
        let path = folder.join(name);
        if !path.exists() {
            break;
        }
        let plain = std::process::Command::new("zstd").arg("-dc").arg(&path).output().unwrap();
        all.push_str(&String::from_utf8_lossy(&plain.stdout));
    }
    all
}

/// The markers (`"m"` events) of a session's recordings.
fn markers(w: &World, id: &str) -> Vec<String> {
    timeline(w, id)
        .lines()
        .filter_map(|line| serde_json::from_str::<serde_json::Value>(line).ok())
        .filter(|event| event[1] == "m")
        .map(|event| event[2].as_str().unwrap_or_default().to_string())
        .collect()
}

/// The `n`th session (from 1) once it has ended: a client refused at once may exit
/// before its session has been written up.
fn ended_session(w: &World, n: usize) -> String {
    w.eventually("the session to be recorded", || w.session_ids().len() >= n);
    let id = w.session_ids()[n - 1].clone();
    w.ended_session_json(&id);
    id
}

/// The audit log's `channel.refused` lines.
fn refusal_entries(w: &World) -> Vec<String> {
    w.bastion.ok(&["audit"]).lines().filter(|l| l.contains("channel.refused")).map(str::to_string).collect()
}

/// `-A`, `-X`, `-R` and a refused variable have no reply text of their own: the vendor
/// reads why on the session's stderr, and each is audited with the session and marked on
/// its timeline. The command itself runs.
#[test]
fn agent_x11_remote_forwarding_and_env_refusals_are_told_audited_and_marked() {
    let w = World::new();
    // A real agent: without one the client does not ask to forward it.
    let agent_socket = w.path("agent.sock");
    let mut agent = std::process::Command::new("ssh-agent").arg("-D").arg("-a").arg(&agent_socket).spawn().unwrap();
    w.eventually("the agent's socket", || agent_socket.exists());
    let out = w
        .vendor
        .ssh(&w.bastion, "acme:erp01")
        .args(["-A", "-X", "-R", "0:127.0.0.1:9", "-o", "ExitOnForwardFailure=no"])
        .args(["-o", "SetEnv=LD_PRELOAD=/tmp/evil.so"])
        .arg("echo ran")
        .env("DISPLAY", ":99")
        .env("SSH_AUTH_SOCK", &agent_socket)
        .stdin(Stdio::null())
        .output()
        .unwrap();
    let _ = agent.kill();
    let _ = agent.wait();
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert_eq!(stdout(&out), "ran\n");
    let err = stderr(&out);
    for told in [
        "chaperone: agent forwarding is not allowed",
        "chaperone: X11 forwarding is not allowed",
        "chaperone: remote port forwarding (localhost:0) is not allowed",
        "chaperone: environment variable LD_PRELOAD is not passed on (only LANG, LC_* and TERM are)",
    ] {
        assert!(err.contains(told), "{told:?} missing: {err}");
    }
    let id = w.last_session();
    w.ended_session_json(&id);
    let entries = refusal_entries(&w);
    for what in [
        "agent forwarding refused",
        "X11 forwarding refused",
        "remote port forwarding of localhost:0 refused",
        "environment variable LD_PRELOAD refused",
    ] {
        assert!(entries.iter().any(|e| e.contains(what) && e.contains(&id)), "{what:?} not audited: {entries:#?}");
        assert!(markers(&w, &id).iter().any(|m| m == what), "{what:?} not marked: {:#?}", markers(&w, &id));
    }
}

/// Forwarding by channel (`-W`, `-L`, `-D`) is refused with the reason in the open failure,
/// and audited with where it was to go.
#[test]
fn local_forwarding_is_refused_with_its_reason_and_audited() {
    let w = World::new();
    let out =
        w.vendor.ssh(&w.bastion, "acme:erp01").args(["-W", &w.sshd.address()]).stdin(Stdio::null()).output().unwrap();
    assert_eq!(out.status.code(), Some(255));
    assert!(stderr(&out).contains("chaperone: port forwarding is not allowed"), "{}", stderr(&out));
    let id = ended_session(&w, 1);
    let entries = refusal_entries(&w);
    assert!(entries.iter().all(|e| e.contains(&id)), "{entries:#?}");
    let to = format!("port forwarding to {} refused", w.sshd.address());
    assert!(entries.iter().any(|e| e.contains(&to) && e.contains("acme")), "{entries:#?}");
}

/// A client can send thousands of refused requests: the first five of a kind are itemized
/// (and told), the rest counted in one entry, audited before the session's end.
#[test]
fn a_flood_of_refused_requests_is_itemized_then_counted() {
    let w = World::new();
    let vars: Vec<String> = (0..40).map(|i| format!("FLOOD{i}=x")).collect();
    let out = w
        .vendor
        .ssh(&w.bastion, "acme:erp01")
        .arg("-o")
        .arg(format!("SetEnv={}", vars.join(" ")))
        .arg("echo ran")
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert_eq!(stdout(&out), "ran\n", "{}", stderr(&out));
    assert_eq!(stderr(&out).matches("chaperone: environment variable FLOOD").count(), 5, "{}", stderr(&out));
    let id = w.last_session();
    w.ended_session_json(&id);
    let entries = refusal_entries(&w);
    assert_eq!(entries.len(), 6, "{entries:#?}");
    let counted = "35 more environment variable refusals on this connection";
    assert!(entries.iter().any(|e| e.contains(counted) && e.contains(&id)), "{entries:#?}");
    let marked = markers(&w, &id);
    assert_eq!(marked.iter().filter(|m| m.starts_with("environment variable FLOOD")).count(), 5, "{marked:#?}");
    assert!(marked.iter().any(|m| m.starts_with("more environment variable refusals follow")), "{marked:#?}");
    assert!(w.bastion.ok(&["audit", "verify"]).contains("audit log intact"));
}

/// An `sftp` client pointed at the target's sftp-server (`sftp -s PATH`, run as a command),
/// `rsync -e ssh` and legacy `scp -O`: each refused, nothing written on the target, each
/// audited and marked on the session's timeline.
#[test]
fn file_transfer_by_command_is_refused_like_the_sftp_subsystem() {
    let w = World::new();
    let port = w.bastion.port.to_string();
    let options = w.vendor.options(&w.bastion).join(" ");
    let check = |what: &str, out: std::process::Output, dest: &std::path::Path, entries_before: usize| {
        assert!(!out.status.success(), "{what} went through: {}", stderr(&out));
        let protocol = what.split_whitespace().next().unwrap();
        let told = format!("chaperone: file transfer ({protocol}) is not allowed; use a shell or a command");
        assert!(stderr(&out).contains(&told), "{what}: {}", stderr(&out));
        assert!(!dest.exists(), "{what} wrote {}", dest.display());
        let id = ended_session(&w, entries_before + 1);
        let entries = refusal_entries(&w);
        assert_eq!(entries.len(), entries_before + 1, "{what}: {entries:#?}");
        let entry = entries.last().unwrap();
        assert!(entry.contains("file transfer") && entry.contains(&id), "{what}: {entry}");
        assert!(markers(&w, &id).iter().any(|m| m.starts_with("file transfer")), "{what}: {}", timeline(&w, &id));
    };

    let dest = w.path("by-sftp");
    let batch = w.path("batch");
    std::fs::write(&batch, format!("put /etc/hostname {}\n", dest.display())).unwrap();
    let out = std::process::Command::new("sftp")
        .args(w.vendor.options(&w.bastion))
        .args(["-o", "User=acme:erp01", "-P", &port, "-s", "/usr/lib/openssh/sftp-server", "-b"])
        .arg(&batch)
        .arg("127.0.0.1")
        .stdin(Stdio::null())
        .output()
        .unwrap();
    check("sftp -s /usr/lib/openssh/sftp-server", out, &dest, 0);

    let dest = w.path("by-rsync");
    let out = std::process::Command::new("rsync")
        .arg("-e")
        .arg(format!("ssh {options} -p {port} -l acme:erp01"))
        .arg("/etc/hostname")
        .arg(format!("127.0.0.1:{}", dest.display()))
        .stdin(Stdio::null())
        .output()
        .unwrap();
    check("rsync -e ssh", out, &dest, 1);

    let dest = w.path("by-scp");
    let out = std::process::Command::new("scp")
        .args(w.vendor.options(&w.bastion))
        .args(["-o", "User=acme:erp01", "-O", "-P", &port, "/etc/hostname"])
        .arg(format!("127.0.0.1:{}", dest.display()))
        .stdin(Stdio::null())
        .output()
        .unwrap();
    check("scp -O", out, &dest, 2);
    assert!(refusal_entries(&w)[2].contains("scp -t"), "{:#?}", refusal_entries(&w));
}

/// A command line can always be disguised (here the program's path is decoded by the
/// shell at run time): the transfer is recognised by what the client sends first, the
/// channel is ended before a byte of it reaches the target, and the vendor told why.
#[test]
fn a_disguised_transfer_is_recognised_by_its_first_bytes() {
    let w = World::new();
    let port = w.bastion.port.to_string();
    let options = w.vendor.options(&w.bastion).join(" ");
    let encoded = |text: &str| {
        let out = std::process::Command::new("base64").arg("-w0").stdin(Stdio::piped()).stdout(Stdio::piped()).spawn();
        let mut child = out.unwrap();
        use std::io::Write;
        child.stdin.take().unwrap().write_all(text.as_bytes()).unwrap();
        String::from_utf8(child.wait_with_output().unwrap().stdout).unwrap()
    };

    let dest = w.path("by-sftp");
    let batch = w.path("batch");
    std::fs::write(&batch, format!("put /etc/hostname {}\n", dest.display())).unwrap();
    let server = format!("/bin/sh -c 'exec $(echo {} | base64 -d)'", encoded("/usr/lib/openssh/sftp-server"));
    let out = std::process::Command::new("sftp")
        .args(w.vendor.options(&w.bastion))
        .args(["-o", "User=acme:erp01", "-P", &port, "-s", &server, "-b"])
        .arg(&batch)
        .arg("127.0.0.1")
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert!(!out.status.success(), "sftp went through: {}", stderr(&out));
    assert!(stderr(&out).contains("chaperone: file transfer (sftp) is not allowed"), "{}", stderr(&out));
    assert!(!dest.exists());
    let id = ended_session(&w, 1);
    let entries = refusal_entries(&w);
    assert!(entries.iter().any(|e| e.contains("file transfer (sftp) refused") && e.contains(&id)), "{entries:#?}");
    assert!(markers(&w, &id).iter().any(|m| m.starts_with("file transfer (sftp) refused")), "{}", timeline(&w, &id));

    let dest = w.path("by-rsync");
    let out = std::process::Command::new("rsync")
        .arg("-e")
        .arg(format!("ssh {options} -p {port} -l acme:erp01"))
        .arg(format!("--rsync-path=R=$(echo {} | base64 -d); $R", encoded("rsync")))
        .arg("/etc/hostname")
        .arg(format!("127.0.0.1:{}", dest.display()))
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert!(!out.status.success(), "rsync went through: {}", stderr(&out));
    assert!(!dest.exists());
    assert!(stderr(&out).contains("chaperone: file transfer (rsync) is not allowed"), "{}", stderr(&out));
    ended_session(&w, 2);
    let entries = refusal_entries(&w);
    assert!(entries.iter().any(|e| e.contains("file transfer (rsync) refused")), "{entries:#?}");
}

/// SFTP through a terminal in raw mode (`ssh -tt … 'stty raw -echo; exec …'`), its
/// server's path hidden: the init packet gives it away all the same.
#[test]
fn sftp_through_a_raw_terminal_is_recognised_by_its_init_packet() {
    let w = World::new();
    let dest = w.path("by-sftp");
    let batch = w.path("batch");
    std::fs::write(&batch, format!("put /etc/hostname {}\n", dest.display())).unwrap();
    // sftp runs this as its ssh; the server's path is decoded by the target's shell.
    let wrapper = w.path("ssh-raw.sh");
    let hidden = "L3Vzci9saWIvb3BlbnNzaC9zZnRwLXNlcnZlcg=="; // /usr/lib/openssh/sftp-server
    std::fs::write(
        &wrapper,
        format!(
            "#!/bin/sh\nexec ssh {} -p {} -tt acme:erp01@127.0.0.1 'stty raw -echo; exec $(echo {hidden} | base64 -d)'\n",
            w.vendor.options(&w.bastion).join(" "),
            w.bastion.port
        ),
    )
    .unwrap();
    std::fs::set_permissions(&wrapper, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    use std::os::unix::process::CommandExt;
    let mut sftp = std::process::Command::new("sftp")
        .process_group(0)
        .arg("-S")
        .arg(&wrapper)
        .arg("-b")
        .arg(&batch)
        .arg("127.0.0.1")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // Without the refusal, sftp-server sits on the target's terminal and the client waits.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    while sftp.try_wait().unwrap().is_none() {
        if std::time::Instant::now() > deadline {
            // sftp and the ssh it started (which holds its pipes).
            unsafe { libc::kill(-(sftp.id() as i32), libc::SIGKILL) };
            let _ = sftp.wait();
            panic!("sftp through a raw terminal was not ended within 20 s");
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    let out = sftp.wait_with_output().unwrap();
    assert!(!out.status.success(), "sftp went through: {}", stderr(&out));
    assert!(!dest.exists());
    assert!(stderr(&out).contains("chaperone: file transfer (sftp) is not allowed"), "{}", stderr(&out));
    let id = ended_session(&w, 1);
    let entries = refusal_entries(&w);
    assert!(entries.iter().any(|e| e.contains("file transfer (sftp) refused") && e.contains(&id)), "{entries:#?}");
}

/// Refused while the session waits for its technician (no recording yet): the markers
/// wait too, and are in the recording once the technician has joined.
#[test]
fn refusals_while_waiting_for_the_technician_are_marked_when_the_recording_starts() {
    let w = World::bare("[policy]\nrequire_acknowledgements = false\n");
    w.book_now("erp01", &w.account.clone());
    let vendor = w
        .vendor
        .ssh(&w.bastion, "acme:erp01")
        .args(["-R", "0:127.0.0.1:9", "-o", "ExitOnForwardFailure=no", "-o", "SetEnv=EVIL=1"])
        .arg("echo ran")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let id = w.live_session();
    let mut alice = crate::common::supervised::watch(&w, "alice", &id);
    let out = vendor.wait_with_output().unwrap();
    assert_eq!(stdout(&out), "ran\n", "{}", stderr(&out));
    assert!(stderr(&out).contains("chaperone: environment variable EVIL is not passed on"), "{}", stderr(&out));
    w.ended_session_json(&id);
    let marked = markers(&w, &id);
    for what in ["environment variable EVIL refused", "remote port forwarding of localhost:0 refused"] {
        assert!(marked.iter().any(|m| m == what), "{what:?} not marked: {marked:#?}");
    }
    alice.wait(std::time::Duration::from_secs(15));
}

/// `git push` over ssh writes files on the target as surely as scp: refused the same way.
#[test]
fn git_push_through_the_bastion_is_file_transfer() {
    let w = World::new();
    let git = |dir: &std::path::Path, args: &[&str]| {
        std::process::Command::new("git")
            .args(["-c", "user.name=t", "-c", "user.email=t@t", "-c", "init.defaultBranch=main"])
            .args(args)
            .current_dir(dir)
            .env("GIT_SSH_COMMAND", format!("ssh {} -l acme:erp01", w.vendor.options(&w.bastion).join(" ")))
            .stdin(Stdio::null())
            .output()
            .unwrap()
    };
    let remote = w.path("remote.git");
    let local = w.path("local");
    std::fs::create_dir_all(&local).unwrap();
    assert!(git(w.tmp.path(), &["init", "-q", "--bare", remote.to_str().unwrap()]).status.success());
    assert!(git(&local, &["init", "-q"]).status.success());
    std::fs::write(local.join("payload"), "vendor's file\n").unwrap();
    assert!(git(&local, &["add", "payload"]).status.success());
    assert!(git(&local, &["commit", "-q", "-m", "x"]).status.success());
    let url = format!("ssh://127.0.0.1:{}{}", w.bastion.port, remote.display());
    let out = git(&local, &["push", "-q", &url, "main"]);
    assert!(!out.status.success(), "git push went through: {}", stderr(&out));
    assert!(stderr(&out).contains("chaperone: file transfer (git) is not allowed"), "{}", stderr(&out));
    let refs = git(&remote, &["for-each-ref"]);
    assert_eq!(stdout(&refs), "", "the push reached the target");
    let id = ended_session(&w, 1);
    let entries = refusal_entries(&w);
    assert!(
        entries.iter().any(|e| e.contains("file transfer (git) refused: command") && e.contains(&id)),
        "{entries:#?}"
    );
}

/// Legacy scp whose remote `scp -t` is disguised (its name decoded by the target's shell):
/// the file's header line, the first thing the client sends, gives it away.
#[test]
fn a_disguised_scp_upload_is_recognised_by_its_first_line() {
    let w = World::new();
    let dest = w.path("by-scp");
    let wrapper = w.path("ssh-disguised.sh");
    let hidden = "c2Nw"; // scp
    std::fs::write(
        &wrapper,
        format!(
            "#!/bin/sh\nexec ssh {} -p {} acme:erp01@127.0.0.1 'exec $(echo {hidden} | base64 -d) -t {}'\n",
            w.vendor.options(&w.bastion).join(" "),
            w.bastion.port,
            dest.display()
        ),
    )
    .unwrap();
    std::fs::set_permissions(&wrapper, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    let out = std::process::Command::new("scp")
        .args(["-O", "-S"])
        .arg(&wrapper)
        .arg("/etc/hostname")
        .arg(format!("127.0.0.1:{}", dest.display()))
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert!(!out.status.success(), "scp went through: {}", stderr(&out));
    assert!(!dest.exists(), "scp wrote the file");
    assert!(stderr(&out).contains("chaperone: file transfer (scp) is not allowed"), "{}", stderr(&out));
    let id = ended_session(&w, 1);
    let entries = refusal_entries(&w);
    assert!(entries.iter().any(|e| e.contains("file transfer (scp) refused") && e.contains(&id)), "{entries:#?}");
}
