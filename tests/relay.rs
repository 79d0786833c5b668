//! The relay is faithful: output, stderr, exit codes, binary streams both ways, EOF,
//! environment, several channels on one connection.

use std::process::Stdio;
use std::time::Duration;

use crate::common::*;

#[test]
fn exec_keeps_stdout_stderr_and_exit_status_apart() {
    let w = World::new();
    let out = w.exec("echo to-stdout; echo to-stderr >&2; exit 3");
    assert_eq!(out.status.code(), Some(3), "stderr: {}", stderr(&out));
    assert_eq!(stdout(&out), "to-stdout\n");
    assert!(stderr(&out).contains("to-stderr"), "{}", stderr(&out));
    assert!(!stdout(&out).contains("to-stderr"));

    let out = w.exec("true");
    assert_eq!(out.status.code(), Some(0));

    // A command killed by a signal reaches the client as an exit signal (ssh exits 255).
    let out = w.exec("kill -KILL $$");
    assert_eq!(out.status.code(), Some(255), "stderr: {}", stderr(&out));
}

#[test]
fn binary_streams_round_trip_byte_exact_both_ways() {
    let w = World::new();
    let source = w.path("source.bin");
    random_file(&source, 50 * 1024 * 1024, 7);
    let expected = sha256_file(&source);

    // Upload: the vendor's stdin reaches the target, then EOF ends `cat`.
    let uploaded = w.path("uploaded.bin");
    let out = w
        .vendor
        .ssh(&w.bastion, "acme:erp01")
        .arg(format!("cat > {}", uploaded.display()))
        .stdin(std::fs::File::open(&source).unwrap())
        .output()
        .unwrap();
    assert!(out.status.success(), "upload failed: {}", stderr(&out));
    assert_eq!(sha256_file(&uploaded), expected, "upload altered the bytes");

    // Download.
    let downloaded = w.path("downloaded.bin");
    let out = w
        .vendor
        .ssh(&w.bastion, "acme:erp01")
        .arg(format!("cat {}", source.display()))
        .stdin(Stdio::null())
        .stdout(std::fs::File::create(&downloaded).unwrap())
        .output()
        .unwrap();
    assert!(out.status.success(), "download failed: {}", stderr(&out));
    assert_eq!(sha256_file(&downloaded), expected, "download altered the bytes");

    // Both directions at once through one channel: a full-duplex stream must not stall.
    let echoed = w.path("echoed.bin");
    let out = w
        .vendor
        .ssh(&w.bastion, "acme:erp01")
        .arg("cat")
        .stdin(std::fs::File::open(&source).unwrap())
        .stdout(std::fs::File::create(&echoed).unwrap())
        .output()
        .unwrap();
    assert!(out.status.success(), "echo failed: {}", stderr(&out));
    assert_eq!(sha256_file(&echoed), expected, "full-duplex echo altered the bytes");
}

#[test]
fn tar_pipes_through_and_env_is_filtered() {
    let w = World::new();
    let src = w.path("tree");
    std::fs::create_dir_all(src.join("sub")).unwrap();
    std::fs::write(src.join("a.txt"), "alpha\n").unwrap();
    random_file(&src.join("sub/b.bin"), 300_000, 3);
    let dst = w.path("unpacked");
    std::fs::create_dir_all(&dst).unwrap();
    let mut tar =
        std::process::Command::new("tar").args(["c", "-C"]).arg(&src).arg(".").stdout(Stdio::piped()).spawn().unwrap();
    let out = w
        .vendor
        .ssh(&w.bastion, "acme:erp01")
        .arg(format!("tar x -C {}", dst.display()))
        .stdin(tar.stdout.take().unwrap())
        .output()
        .unwrap();
    assert!(tar.wait().unwrap().success());
    assert!(out.status.success(), "tar x failed: {}", stderr(&out));
    assert_eq!(std::fs::read_to_string(dst.join("a.txt")).unwrap(), "alpha\n");
    assert_eq!(sha256_file(&dst.join("sub/b.bin")), sha256_file(&src.join("sub/b.bin")));

    // LC_* passes; anything else (which could change the target's behaviour) does not.
    let out = w
        .vendor
        .ssh(&w.bastion, "acme:erp01")
        .args(["-o", "SetEnv=LC_CHAPERONE=passed EVIL_VAR=leaked"])
        .arg("echo \"[$LC_CHAPERONE][$EVIL_VAR]\"")
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert_eq!(stdout(&out), "[passed][]\n", "stderr: {}", stderr(&out));
}

/// A vendor's OpenSSH connection multiplexer (`ControlMaster`) to erp01 through the
/// bastion: every `channel` command is one more channel on the same session.
struct Multiplexer<'a> {
    w: &'a World,
    login: &'static str,
    control: std::path::PathBuf,
}

impl<'a> Multiplexer<'a> {
    fn start(w: &'a World) -> Multiplexer<'a> {
        Multiplexer::start_as(w, "acme:erp01")
    }

    fn start_as(w: &'a World, login: &'static str) -> Multiplexer<'a> {
        let control = w.path("cm.sock");
        let master = w
            .vendor
            .ssh(&w.bastion, login)
            .args(["-o", "ControlMaster=yes", "-o"])
            .arg(format!("ControlPath={}", control.display()))
            .args(["-N", "-f"])
            .output()
            .unwrap();
        assert!(master.status.success(), "control master: {}", stderr(&master));
        Multiplexer { w, login, control }
    }

    /// `ssh` running `command` on a new channel of the session.
    fn channel(&self, command: &str) -> std::process::Command {
        let mut ssh = self.w.vendor.ssh(&self.w.bastion, self.login);
        ssh.arg("-o").arg(format!("ControlPath={}", self.control.display())).arg(command);
        ssh
    }

    /// Ends the connection (and so the session).
    fn exit(self) {
        let mut ssh = self.w.vendor.ssh(&self.w.bastion, self.login);
        let _ = ssh.arg("-o").arg(format!("ControlPath={}", self.control.display())).args(["-O", "exit"]).output();
    }
}

#[test]
fn several_channels_on_one_connection_are_each_recorded() {
    let w = World::new();
    let mux = Multiplexer::start(&w);
    for word in ["first-channel", "second-channel"] {
        let out = mux.channel(&format!("echo {word}")).stdin(Stdio::null()).output().unwrap();
        assert_eq!(stdout(&out), format!("{word}\n"), "stderr: {}", stderr(&out));
    }
    mux.exit();
    let id = w.last_session();
    assert_eq!(w.session_ids().len(), 1, "one connection is one session");
    let json = w.ended_session_json(&id);
    assert_eq!(json["channels"].as_array().map(Vec::len), Some(2), "{json}");
    let first = w.bastion.ok(&["recordings", "cat", &id, "--channel", "1"]);
    let second = w.bastion.ok(&["recordings", "cat", &id, "--channel", "2"]);
    assert_eq!(first, "first-channel\n");
    assert_eq!(second, "second-channel\n");
}

/// Starts `command` (which must print `started` first) on a new channel; returns once it
/// runs on the target.
fn started_channel(mux: &Multiplexer, command: &str, stdin: Stdio) -> std::process::Child {
    let mut child = mux.channel(command).stdin(stdin).stdout(Stdio::piped()).stderr(Stdio::null()).spawn().unwrap();
    let mut first = String::new();
    std::io::BufRead::read_line(&mut std::io::BufReader::new(child.stdout.take().unwrap()), &mut first).unwrap();
    assert_eq!(first, "started\n", "the channel's command did not start");
    child
}

#[test]
fn a_session_has_at_most_ten_channels_open_and_the_eleventh_is_told_why() {
    let w = World::new();
    let mux = Multiplexer::start(&w);
    // Ten commands that end when their input does.
    let mut open: Vec<_> = (0..10).map(|_| started_channel(&mux, "echo started; read line", Stdio::piped())).collect();
    let out = mux.channel("echo eleventh").stdin(Stdio::null()).output().unwrap();
    assert!(!out.status.success());
    assert_eq!(stdout(&out), "", "the eleventh channel ran");
    assert!(stderr(&out).contains("already has 10 channels open"), "stderr: {}", stderr(&out));
    // A channel that ends makes room for another.
    let mut first = open.remove(0);
    drop(first.stdin.take());
    first.wait().unwrap();
    w.eventually("a channel to be free again", || {
        let out = mux.channel("echo again").stdin(Stdio::null()).output().unwrap();
        stdout(&out) == "again\n"
    });
    for mut child in open {
        drop(child.stdin.take());
        let _ = child.wait();
    }
    mux.exit();
    // The refused channel has no recording: the ten and the one after.
    let json = w.ended_session_json(&w.last_session());
    assert_eq!(json["channels"].as_array().map(Vec::len), Some(11), "{json}");
}

#[test]
fn a_channel_the_target_refuses_is_told_why_and_leaves_no_recording() {
    let w = World::new();
    // erp02 allows one channel per connection.
    let sshd = Sshd::start_with(&w.path("erp02"), &w.bastion.upstream_public_key(), "MaxSessions 1\n");
    w.add_target("erp02", &sshd.address(), &sshd.host_key_pub, &[&w.account]);
    w.book_now("erp02", &w.account);
    let mux = Multiplexer::start_as(&w, "acme:erp02");
    let mut first = started_channel(&mux, "echo started; read line", Stdio::piped());
    let out = mux.channel("echo second").stdin(Stdio::null()).output().unwrap();
    assert!(!out.status.success());
    assert_eq!(stdout(&out), "", "the second channel ran");
    assert!(stderr(&out).contains("cannot open a channel"), "stderr: {}", stderr(&out));
    drop(first.stdin.take());
    first.wait().unwrap();
    mux.exit();
    let id = w.last_session();
    let json = w.ended_session_json(&id);
    assert_eq!(json["channels"].as_array().map(Vec::len), Some(1), "{json}");
    let folder = w.folder(&id);
    assert!(!folder.join("session.2.cast.zst").exists(), "a recording for the refused channel");
}

#[test]
fn input_the_targets_never_read_is_held_up_to_one_budget_per_session() {
    let w = World::new();
    let pid = w.bastion.pid();
    let mux = Multiplexer::start(&w);
    let before = status_kb(pid, "RssAnon:");
    // Three channels upload without end to commands that never read their input: the
    // target stops taking it, and what the vendor keeps sending waits in the bastion. All
    // three are open before any sends: once the budget is full, the whole connection waits
    // (a channel opened then would start only when the target reads).
    let mut uploads: Vec<_> = (0..3).map(|_| started_channel(&mux, "echo started; sleep 60", Stdio::piped())).collect();
    for upload in &mut uploads {
        let mut stdin = upload.stdin.take().unwrap();
        std::thread::spawn(move || {
            let zeros = vec![0u8; 1 << 20];
            while std::io::Write::write_all(&mut stdin, &zeros).is_ok() {}
        });
    }
    // Until the bastion's memory stops growing (three seconds without 1 MiB more).
    let (mut last, mut still) = (status_kb(pid, "RssAnon:"), std::time::Instant::now());
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    while still.elapsed() < Duration::from_secs(3) && std::time::Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(200));
        let now = status_kb(pid, "RssAnon:");
        if now > last + 1024 {
            (last, still) = (now, std::time::Instant::now());
        }
    }
    let grown = status_kb(pid, "RssAnon:").saturating_sub(before);
    // The session's budget (64 MiB) is full, and no more: per channel it would be 192.
    assert!(grown > 48 * 1024, "the uploads did not fill the budget: {grown} KiB");
    assert!(grown < 96 * 1024, "the bastion holds {grown} KiB more for the session's uploads");
    // The connection now waits on the target; a technician can still end the session.
    let id = w.live_session();
    let out = w.console(&format!("kill {id} --reason 'stuck upload'"));
    assert!(out.status.success(), "kill: {}", stderr(&out));
    w.ended_session_json(&id);
    for child in &mut uploads {
        let _ = child.kill();
        let _ = child.wait();
    }
    mux.exit();
}

/// chaperone's resident memory high-water mark, in KiB.
fn peak_rss_kb(pid: i32) -> u64 {
    status_kb(pid, "VmHWM:")
}

#[test]
fn a_200_mb_stream_arrives_intact_is_recorded_exactly_and_memory_stays_flat() {
    let w = World::new();
    // 200 MB of log-like text (UTF-8, so the recording can reproduce it byte for byte).
    let source = w.path("big.log");
    {
        let mut out = std::io::BufWriter::new(std::fs::File::create(&source).unwrap());
        let mut n = 0u64;
        let mut written = 0;
        while written < 200_000_000 {
            let line = format!(
                "Dec  3 10:{:02}:{:02} erp01 app[{}]: invoice batch {} processed, Größe {} \x1b[32mok\x1b[0m\n",
                n % 60,
                n % 59,
                1000 + n % 9000,
                n,
                n * 7
            );
            std::io::Write::write_all(&mut out, line.as_bytes()).unwrap();
            written += line.len();
            n += 1;
        }
    }
    let expected = sha256_file(&source);
    // What the bastion holds once it has run a session (its threads' heaps exist then).
    assert!(w.exec("true").status.success());
    let before = status_kb(w.bastion.pid(), "RssAnon:");
    let received = w.path("received.log");
    let out = w
        .vendor
        .ssh(&w.bastion, "acme:erp01")
        .arg(format!("cat {}", source.display()))
        .stdin(Stdio::null())
        .stdout(std::fs::File::create(&received).unwrap())
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(sha256_file(&received), expected, "the stream arrived altered");

    let id = w.last_session();
    w.ended_session_json(&id);
    let replayed = w.path("replayed.log");
    let cat = w
        .bastion
        .command()
        .args(["recordings", "cat", &id])
        .stdout(std::fs::File::create(&replayed).unwrap())
        .output()
        .unwrap();
    assert!(cat.status.success(), "{}", stderr(&cat));
    assert_eq!(sha256_file(&replayed), expected, "the recording does not decode to the output");
    let cast = std::fs::metadata(w.folder(&id).join("session.cast.zst")).unwrap().len();
    assert!(cast < 200_000_000 / 2, "recording of {cast} bytes: not compressed");

    // Streaming 200 MB did not make chaperone hold it: memory stays within a few dozen MB.
    let peak = peak_rss_kb(w.bastion.pid());
    assert!(peak < 150 * 1024, "chaperone's peak RSS grew to {peak} KiB");
    // And what floods take is given back once their sessions have ended, also when
    // several ran at once (each on threads of its own, whose freed heaps glibc would keep).
    // (Each over the size that is indexed when the session ends, so that nothing is
    // left running at low priority while the whole suite keeps the machine busy.)
    let floods: Vec<_> = (0..3)
        .map(|_| {
            w.vendor
                .ssh(&w.bastion, "acme:erp01")
                .arg(format!("head -c 70000000 {}", source.display()))
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .spawn()
                .unwrap()
        })
        .collect();
    for mut flood in floods {
        assert!(flood.wait().unwrap().success());
    }
    // Counted without the binary's code pages, which running more of it brings in.
    w.eventually("the floods' memory to be given back", || status_kb(w.bastion.pid(), "RssAnon:") < before + 8 * 1024);
}

#[test]
fn ctrl_c_interrupts_a_flood_promptly() {
    let w = World::new();
    let mut pty = w.vendor_prompt(80, 24);
    pty.type_text("yes flood-line-of-text-for-the-terminal\r");
    pty.expect("flood-line-of-text-for-the-terminal\r\nflood");
    std::thread::sleep(Duration::from_millis(500));
    pty.type_text("\x03");
    pty.type_text("echo after-$((6*7))\r");
    pty.expect("after-42");
    pty.type_text("exit\r");
    assert!(pty.wait(Duration::from_secs(30)).success());
    let peak = peak_rss_kb(w.bastion.pid());
    assert!(peak < 150 * 1024, "chaperone's peak RSS grew to {peak} KiB");
}
