//! An attacker's pass over supervision and hostile input: a vendor who wants to act on
//! the target while the session's input is held, or to put something on a technician's
//! terminal, with the real OpenSSH client and the real binary.

use std::process::Stdio;
use std::time::Duration;

use crate::common::supervised::*;
use crate::common::*;

/// A terminal's size is input too: a window change carries two numbers of the vendor's
/// choosing to the program in front (SIGWINCH), as often as the vendor likes. While the
/// input is frozen the target hears of no resize; it gets the newest size on unfreeze.
#[test]
fn a_resize_during_a_freeze_reaches_the_target_only_after_it() {
    let w = supervised_world();
    let (mut vendor, _sock, _id, mut alice) = watched_master(&w);
    let seen = w.path("winch.txt");
    let ready = w.path("winch.ready");
    // A program on the target that acts on each resize.
    // (Its own process group, which the terminal signals; an interactive shell is not in it.)
    let script =
        format!("trap 'stty size >> {}' WINCH; : > {}; while :; do sleep 0.1; done", seen.display(), ready.display());
    vendor.type_text(&format!("sh -c \"{script}\"\r"));
    // Its trap is set once it says so (a loaded machine may take a while to start it).
    w.eventually("the program on the target runs", || ready.exists());
    vendor.resize(90, 25);
    w.eventually("a resize while open", || std::fs::read_to_string(&seen).unwrap_or_default() == "25 90\n");
    std::fs::remove_file(&seen).unwrap();
    alice.type_text("\x1df");
    vendor.expect("technician alice froze your input");
    vendor.resize(100, 30);
    std::thread::sleep(Duration::from_millis(300));
    vendor.resize(120, 40);
    std::thread::sleep(Duration::from_millis(1500));
    assert!(
        !seen.exists(),
        "a resize reached the target while frozen: {}",
        std::fs::read_to_string(&seen).unwrap_or_default()
    );
    alice.type_text("\x1df");
    vendor.expect("technician alice unfroze your input");
    // The newest size, once.
    w.eventually("the newest size on the target", || std::fs::read_to_string(&seen).unwrap_or_default() == "40 120\n");
}

/// A command line is shown to technicians (`sessions`, the watch title, a refusal's
/// reason, `recordings commands` and `search` over ssh): a bidirectional override in it
/// would make it read otherwise than what ran (`rm -rf /srv` shown as something else).
#[test]
fn a_command_line_with_bidi_overrides_is_shown_escaped() {
    let w = supervised_world();
    let (mut vendor, sock, id, _alice) = watched_master(&w);
    let command = "sleep 30 # \u{202e}txt.emdaer\u{202c} \u{2066}x\u{2069}";
    let mut exec = via_master(&w, &sock, command).stdin(Stdio::null()).stdout(Stdio::null()).spawn().unwrap();
    let mut listed = String::new();
    w.eventually("the command listed", || {
        listed = stdout(&w.console("sessions"));
        listed.contains("channel 2  exec \"sleep 30")
    });
    let _ = exec.kill();
    let _ = exec.wait();
    // Typed in the shell, the same.
    vendor.type_text("echo typed-\u{202e}fdp.eciovni\u{202c}-end\r");
    vendor.expect("-end");
    vendor.type_text("exit\r");
    let _ = vendor.wait(Duration::from_secs(15));
    w.ended_session_json(&id);
    let commands = w.console(&format!("recordings commands {id}"));
    let commands = format!("{}{}", stdout(&commands), stderr(&commands));
    let search = w.console("recordings search eciovni");
    let search = format!("{}{}", stdout(&search), stderr(&search));
    for shown in [&listed, &commands, &search] {
        for c in ['\u{202e}', '\u{202c}', '\u{2066}', '\u{2069}'] {
            assert!(!shown.contains(c), "{c:?} shown raw: {shown}");
        }
    }
    assert!(listed.contains("\\u{202e}txt.emdaer"), "{listed}");
    assert!(commands.contains("echo typed-\\u{202e}fdp.eciovni"), "{commands}");
    assert!(search.contains("typed: echo typed-\\u{202e}fdp.eciovni"), "{search}");
}

/// bob froze the vendor's input; alice takes the keyboard over and hands it back (or
/// leaves while holding it): bob's freeze is still in force, the vendor still cannot type.
#[test]
fn a_take_over_ending_does_not_lift_another_technicians_freeze() {
    let w = supervised_world();
    let (mut vendor, _sock, id, mut alice) = watched_master(&w);
    let bob_client = add_tech(&w, "bob");
    let mut bob = watch_as(&w, &bob_client, "bob", &id);
    vendor.expect("technician bob is watching");
    bob.type_text("\x1df");
    vendor.expect("technician bob froze your input");
    alice.type_text("\x1dt");
    vendor.expect("technician alice took over the keyboard");
    alice.type_text("echo alice-$((20+1))\r");
    bob.expect("alice-21");
    alice.type_text("\x1dt");
    vendor.expect("technician alice handed the keyboard back; your input stays frozen by bob");

    let typed = w.path("typed-while-frozen");
    vendor.type_text(&format!("touch {}\r", typed.display()));
    vendor.expect("your input is discarded (frozen by bob)");
    let listed = stdout(&w.console("sessions"));
    assert!(listed.contains("frozen by bob"), "{listed}");

    // Taken over again, and alice leaves holding the keyboard: still frozen by bob.
    alice.type_text("\x1dt");
    vendor.expect("technician alice took over the keyboard; your input is held\u{7}");
    alice.type_text("\x1dd");
    assert!(alice.wait(Duration::from_secs(15)).success());
    vendor.expect("technician alice stopped watching");
    w.eventually("the session frozen by bob again", || stdout(&w.console("sessions")).contains("frozen by bob"));
    vendor.type_text(&format!("touch {}\r", typed.display()));
    std::thread::sleep(Duration::from_millis(500));
    assert!(!typed.exists(), "the vendor typed into the target while bob's freeze was in force");

    // bob unfreezes: the vendor types again.
    bob.type_text("\x1df");
    vendor.expect("technician bob unfroze your input");
    vendor.type_text(&format!("touch {}\r", typed.display()));
    w.eventually("the vendor's command after the unfreeze", || typed.exists());
}

/// What the sanitizer let through before: DEC reports some terminals answer (supplemental
/// set, displayed extent, key function modes), formatOtherKeys, alternate scroll (the
/// wheel sent as arrow keys), the VT52 mode, and a mouse mode switched back on by a mode
/// restore. None of them reaches the technician reading the recording over ssh.
#[test]
fn recordings_cat_over_ssh_drops_the_reports_and_key_modes_let_through_before() {
    let w = World::new();
    let sent = r#"printf 'a-\033[&u-b-\033["v-c-\033[+x-d-\033[>4;1f-e-\033[?1007h-f-\033[?2l-g-\033[?1000;25r-h\n'"#;
    let out = w.exec(sent);
    assert!(out.status.success(), "{}", stderr(&out));
    let id = w.last_session();
    w.ended_session_json(&id);
    let printed = stdout(&w.console(&format!("recordings cat {id}")));
    assert_eq!(printed, "a--b--c--d--e--f--g-\x1b[?25r-h\n");
}

/// A client of its own (not OpenSSH) sends a channel's requests as it likes.
struct AnyKey;

impl russh::client::Handler for AnyKey {
    type Error = russh::Error;

    async fn check_server_key(&mut self, _key: &russh::keys::PublicKeyOrCertificate) -> Result<bool, Self::Error> {
        Ok(true)
    }
}

/// A channel runs one command, its first: a second exec request on the same channel
/// (sent while the session waits for a technician) changed what the listing named, so the
/// technician joined to a harmless-looking command while the first one ran.
#[test]
fn a_second_exec_request_on_a_channel_does_not_rename_what_runs() {
    let w = supervised_world();
    let ran = w.path("first-ran");
    // Its connection runs on the runtime's worker while the test polls the bastion.
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(1).enable_all().build().unwrap();
    let first = format!("touch {}", ran.display());
    let (session, channel) = rt.block_on(async {
        let config = std::sync::Arc::new(russh::client::Config::default());
        let mut session = russh::client::connect(config, ("127.0.0.1", w.bastion.port), AnyKey).await.unwrap();
        let key = russh::keys::load_secret_key(&w.vendor.key, None).unwrap();
        let key = russh::keys::PrivateKeyWithHashAlg::new(std::sync::Arc::new(key), None);
        assert!(session.authenticate_publickey("acme:erp01", key).await.unwrap().success());
        let channel = session.channel_open_session().await.unwrap();
        channel.exec(true, first.as_str()).await.unwrap();
        channel.exec(true, "echo harmless").await.unwrap();
        (session, channel)
    });
    let mut listed = String::new();
    w.eventually("the waiting channel listed with its command", || {
        listed = stdout(&w.console("sessions"));
        listed.contains("channel 1  exec")
    });
    std::thread::sleep(Duration::from_millis(500));
    let listed = stdout(&w.console("sessions"));
    assert!(listed.contains(&format!("channel 1  exec {first:?}  waiting")), "{listed}");
    assert!(!listed.contains("harmless"), "{listed}");

    let id = w.live_session();
    let _alice = watch(&w, "alice", &id);
    w.eventually("the first command run", || ran.exists());
    let listed = stdout(&w.console("sessions"));
    assert!(listed.contains(&format!("channel 1  exec {first:?}")) && !listed.contains("harmless"), "{listed}");
    drop(channel);
    drop(session);
}

/// Keystrokes typed during a freeze are discarded even when they wait in the bastion
/// behind input the target has not taken yet: the vendor fills the target's window (a
/// command that does not read), types during the freeze, and the queue drains after it.
#[test]
fn input_typed_during_a_freeze_is_discarded_even_if_it_waited_behind_a_full_target() {
    use std::io::Write;
    let w = supervised_world();
    let (vendor, sock, _id, mut alice) = watched_master(&w);
    let (go, out) = (w.path("go"), w.path("received.txt"));
    let command = format!("while [ ! -e {} ]; do sleep 0.1; done; cat > {}", go.display(), out.display());
    let mut cat = via_master(&w, &sock, &command).stdin(Stdio::piped()).stderr(Stdio::piped()).spawn().unwrap();
    let mut input = cat.stdin.take().unwrap();
    // More than the target's channel window and pipe hold: the rest waits in the bastion.
    let padding = vec![b'.'; 6 << 20];
    input.write_all(&padding).unwrap();
    input.write_all(b"\nbefore\n").unwrap();
    input.flush().unwrap();
    std::thread::sleep(Duration::from_millis(500));
    alice.type_text("\x1df");
    vendor.expect("technician alice froze your input");
    input.write_all(b"during\n").unwrap();
    input.flush().unwrap();
    std::thread::sleep(Duration::from_millis(700));
    alice.type_text("\x1df");
    vendor.expect("technician alice unfroze your input");
    input.write_all(b"after\n").unwrap();
    input.flush().unwrap();
    std::thread::sleep(Duration::from_millis(300));
    std::fs::write(&go, "").unwrap();
    drop(input);
    let result = cat.wait_with_output().unwrap();
    let received = std::fs::read(&out).unwrap();
    let tail = String::from_utf8_lossy(&received[padding.len()..]).into_owned();
    assert_eq!(tail, "\nbefore\nafter\n", "{}", stderr(&result));
}

/// A vendor's client opens channels by the thousand over one connection, beyond the
/// session's limit of 10 (refused and closed by the bastion). The bastion's memory must not
/// grow with them.
///
/// russh 0.65's server keeps the sender of every channel the server closed first: the
/// client's CHANNEL_CLOSE reply finds the channel no longer "established" and returns
/// before removing it (russh server/encrypted.rs, `msg::CHANNEL_CLOSE`), so each such
/// channel stays in the connection's table until the vendor disconnects (about 3 KB each
/// here: +66 MB for every 20,000). The gate bounds it: one connection opens at most 4096
/// session channels, later ones are refused at open (which keeps nothing).
#[test]
fn a_flood_of_channels_does_not_grow_the_bastions_memory() {
    let w = supervised_world();
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(1).enable_all().build().unwrap();
    let (session, _kept) = rt.block_on(async {
        let config = std::sync::Arc::new(russh::client::Config::default());
        let mut session = russh::client::connect(config, ("127.0.0.1", w.bastion.port), AnyKey).await.unwrap();
        let key = russh::keys::load_secret_key(&w.vendor.key, None).unwrap();
        let key = russh::keys::PrivateKeyWithHashAlg::new(std::sync::Arc::new(key), None);
        assert!(session.authenticate_publickey("acme:erp01", key).await.unwrap().success());
        let first = session.channel_open_session().await.unwrap();
        first.exec(true, "sleep 120").await.unwrap();
        (std::sync::Arc::new(session), first)
    });
    let id = w.live_session();
    let _alice = watch(&w, "alice", &id);
    w.eventually("the session started", || {
        stdout(&w.console("sessions")).contains("channel 1  exec \"sleep 120\"  open")
    });
    let _running = rt.block_on(async {
        let mut kept = Vec::new();
        for _ in 0..9 {
            let channel = session.channel_open_session().await.unwrap();
            channel.exec(true, "sleep 120").await.unwrap();
            kept.push(channel);
        }
        kept
    });
    let flood = || {
        rt.block_on(async {
            let mut opens = tokio::task::JoinSet::new();
            for _ in 0..20_000 {
                let session = session.clone();
                opens.spawn(async move { session.channel_open_session().await.map(drop).is_ok() });
            }
            while opens.join_next().await.is_some() {}
        });
        std::thread::sleep(Duration::from_secs(2));
        status_kb(w.bastion.pid(), "VmRSS:")
    };
    let warmed = flood();
    let after = [flood(), flood()];
    assert!(
        after[1] < warmed + 32 * 1024,
        "the bastion grew from {warmed} kB to {after:?} kB with 40,000 refused channels"
    );
    assert!(warmed < 160 * 1024, "the first 20,000 channels grew the bastion to {warmed} kB");
    // Past the bound, a channel is refused at open, with the reason.
    let refused = rt.block_on(session.channel_open_session());
    assert!(refused.is_err(), "a channel opened past the connection's bound");
}
