//! Live supervision from the test's side: a world whose sessions wait only for a
//! technician, technicians watching over real `ssh -t`, and a vendor sharing one
//! connection among several channels (OpenSSH's ControlMaster).

use std::path::{Path, PathBuf};
use std::process::Command;

use super::pty::Pty;
use super::{VendorClient, World};

/// Sessions need a watching technician but no signed plan, so a test reaches the
/// supervision it is about without acknowledging first.
pub const SUPERVISED: &str = "[policy]\nrequire_acknowledgements = false\n";

/// A world with [`SUPERVISED`] and acme booked on erp01 now.
pub fn supervised_world() -> World {
    let w = World::bare(SUPERVISED);
    w.book_now("erp01", &w.account.clone());
    w
}

/// Registers technician `name` with a key of its own and returns its client.
pub fn add_tech(w: &World, name: &str) -> VendorClient {
    let client = VendorClient::new(w.tmp.path(), name);
    let email = format!("{name}@provider.example");
    w.bastion.ok(&["tech", "add", name, "--email", &email, "--key", &client.public_key_path()]);
    client.trust(&w.bastion);
    client
}

/// `ssh -t tech@bastion 'watch ARGS'` on an 80x24 terminal, with `client`'s key.
pub fn watch_as(w: &World, client: &VendorClient, tech: &str, args: &str) -> Pty {
    let mut ssh = client.ssh(&w.bastion, tech);
    ssh.arg("-t").arg(format!("watch {args}")).env("TERM", "xterm-256color");
    Pty::spawn(ssh, 80, 24)
}

/// [`watch_as`] with the world's technician key (alice's, and any other name's).
pub fn watch(w: &World, tech: &str, args: &str) -> Pty {
    watch_as(w, &w.tech, tech, args)
}

/// The visible screen after feeding everything a terminal received to a fresh emulator.
pub fn screen(output: &str) -> Vec<String> {
    let mut vt = avt::Terminal::new(80, 24).unwrap();
    vt.feed(output);
    vt.screen().text().into_iter().map(|l| l.trim_end().to_string()).collect()
}

/// The vendor's interactive shell as the master of a shared connection at `sock`.
pub fn master_shell(w: &World, sock: &Path) -> Pty {
    let mut ssh = w.vendor.ssh(&w.bastion, "acme:erp01");
    ssh.args(["-o", "ControlMaster=yes", "-o"])
        .arg(format!("ControlPath={}", sock.display()))
        .arg("-t")
        .env("TERM", "xterm-256color");
    Pty::spawn(ssh, 80, 24)
}

/// `ssh` through the shared connection at `sock` running `command` (a new channel).
pub fn via_master(w: &World, sock: &Path, command: &str) -> Command {
    let mut ssh = w.vendor.ssh(&w.bastion, "acme:erp01");
    ssh.args(["-o", "ControlMaster=no", "-o"]).arg(format!("ControlPath={}", sock.display())).arg(command);
    ssh
}

/// The vendor's interactive shell, master of a shared connection at `sock`, with alice
/// watching, both at the prompt (`rdy> `): the shell, the socket, the session's id and
/// alice's terminal.
pub fn watched_master(w: &World) -> (Pty, PathBuf, String, Pty) {
    let sock = w.path("cm.sock");
    let mut vendor = master_shell(w, &sock);
    let id = w.live_session();
    let alice = watch(w, "alice", &id);
    vendor.expect("plan: Maintenance");
    vendor.type_text("PS1='rdy> '\r");
    alice.expect("rdy> ");
    w.eventually("the shared connection's socket", || sock.exists());
    (vendor, sock, id, alice)
}
