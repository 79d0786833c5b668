//! The test harness: a real OpenSSH `sshd` as the target, the real `chaperone` binary,
//! and the real `ssh` client, all on loopback ports in a fresh temp dir per test.

#![allow(dead_code)]

pub mod pty;
pub mod supervised;

use std::io::{BufRead, BufReader, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

pub const BIN: &str = env!("CARGO_BIN_EXE_chaperone");
const SSHD: &str = "/usr/sbin/sshd";

/// Prints numbered lines (`line-1`, `line-2`, ...) until killed: a session busy writing
/// when the bastion dies, whose lines say how far the recording got.
pub const COUNTING: &str = "i=0; while true; do i=$((i+1)); echo line-$i; sleep 0.02; done";

/// A free loopback port (bound, read, released: the child binds it right after).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

pub fn wait_for_port(port: u16, what: &str) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(Instant::now() < deadline, "{what} did not listen on port {port}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Generates an ed25519 key pair at `path` (and `path.pub`).
pub fn keygen(path: &Path) {
    let status = Command::new("ssh-keygen")
        .args(["-q", "-t", "ed25519", "-N", "", "-C", "test", "-f"])
        .arg(path)
        .status()
        .unwrap();
    assert!(status.success(), "ssh-keygen failed");
}

pub fn whoami() -> String {
    let out = Command::new("id").arg("-un").output().unwrap();
    String::from_utf8(out.stdout).unwrap().trim().to_string()
}

/// A real sshd on a loopback port, accepting the keys in `authorized_keys`.
pub struct Sshd {
    child: Child,
    pub port: u16,
    pub host_key_pub: String,
    pub dir: PathBuf,
}

impl Sshd {
    pub fn start(dir: &Path, authorized_keys: &str) -> Sshd {
        Sshd::start_with(dir, authorized_keys, "")
    }

    /// An sshd with `extra` lines in its configuration.
    pub fn start_with(dir: &Path, authorized_keys: &str, extra: &str) -> Sshd {
        let dir = dir.join("sshd");
        std::fs::create_dir_all(&dir).unwrap();
        let host_key = dir.join("host_ed25519");
        keygen(&host_key);
        std::fs::write(dir.join("authorized_keys"), authorized_keys).unwrap();
        // sshd (as root) needs its privilege separation directory.
        let _ = std::fs::create_dir_all("/run/sshd");
        let port = free_port();
        let config = format!(
            "Port {port}\nListenAddress 127.0.0.1\nHostKey {}\nAuthorizedKeysFile {}\nStrictModes no\n\
             PasswordAuthentication no\nKbdInteractiveAuthentication no\nUsePAM no\nPidFile none\n\
             PermitRootLogin yes\nAcceptEnv LANG LC_* TERM\nSubsystem sftp internal-sftp\n\
             AllowTcpForwarding yes\nPrintMotd no\nPrintLastLog no\nLogLevel ERROR\n{extra}",
            host_key.display(),
            dir.join("authorized_keys").display()
        );
        std::fs::write(dir.join("sshd_config"), config).unwrap();
        let log = std::fs::File::create(dir.join("sshd.log")).unwrap();
        let child = Command::new(SSHD)
            .args(["-D", "-e", "-f"])
            .arg(dir.join("sshd_config"))
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("start sshd (is openssh-server installed? run scripts/test)");
        wait_for_port(port, "sshd");
        let host_key_pub = std::fs::read_to_string(dir.join("host_ed25519.pub")).unwrap();
        Sshd { child, port, host_key_pub: host_key_pub.trim().to_string(), dir }
    }

    pub fn address(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }
}

impl Drop for Sshd {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The chaperone binary with its own config, data and recordings in a temp dir.
pub struct Bastion {
    pub dir: PathBuf,
    pub config: PathBuf,
    child: Option<Child>,
    pub port: u16,
}

impl Bastion {
    pub fn new(dir: &Path) -> Bastion {
        Bastion::with_config(dir, "")
    }

    /// A bastion whose config has `extra` appended (e.g. a `[policy]` or `[mail]` table).
    pub fn with_config(dir: &Path, extra: &str) -> Bastion {
        Bastion::with_tables(dir, "", extra)
    }

    /// The same, with `server` lines added to the `[server]` table.
    pub fn with_tables(dir: &Path, server: &str, extra: &str) -> Bastion {
        let dir = dir.join("bastion");
        std::fs::create_dir_all(dir.join("config")).unwrap();
        let config = dir.join("config/chaperone.toml");
        std::fs::write(
            &config,
            format!(
                "[server]\nlisten = \"127.0.0.1:0\"\ndata_dir = \"../data\"\nrecordings_dir = \"../recordings\"\n{server}\n\
                 [recording]\nflush_interval_ms = 200\n\n[upstream]\nconnect_timeout_secs = 5\n\n{extra}\n"
            ),
        )
        .unwrap();
        Bastion { dir, config, child: None, port: 0 }
    }

    pub fn command(&self) -> Command {
        let mut cmd = Command::new(BIN);
        cmd.arg("--config")
            .arg(&self.config)
            .env("CHAPERONE_LOG", "info")
            .env("CHAPERONE_TEST_CLOCK", self.dir.join("clock"));
        cmd
    }

    /// Sets the (debug-build) clock of every chaperone process to `rfc3339`; it runs on
    /// from there.
    pub fn set_clock(&self, rfc3339: &str) {
        let path = self.dir.join("clock");
        let tmp = self.dir.join("clock.tmp");
        std::fs::write(&tmp, rfc3339).unwrap();
        std::fs::rename(tmp, path).unwrap();
    }

    /// Runs a chaperone subcommand to completion.
    /// Registers a target of client `globex` at `address`, pinned to `host_key`.
    pub fn add_target(&self, name: &str, address: &str, host_key: &str, accounts: &[&str]) {
        let mut args = vec!["target", "add", name, "--address", address, "--host-key", host_key, "--client", "globex"];
        for account in accounts {
            args.extend(["--account", account]);
        }
        self.ok(&args);
    }

    /// Books `target` as `account` for acme with the plan at `plan`, from an hour before
    /// to ten hours after `TEST_NOW` (an emergency for `reason`: no lead time), and
    /// approves it as alice. Returns `B-n`.
    pub fn book_now(&self, target: &str, account: &str, plan: &Path, reason: &str) -> String {
        let id = self
            .ok(&[
                "booking",
                "create",
                "--vendor",
                "acme",
                "--target",
                target,
                "--account",
                account,
                "--start",
                "2026-12-03 09:00",
                "--end",
                "2026-12-03 20:00",
                "--plan",
                plan.to_str().unwrap(),
                "--emergency",
                reason,
                "--by",
                "alice",
            ])
            .trim()
            .to_string();
        self.ok(&["booking", "approve", &id, "--by", "alice"]);
        id
    }

    pub fn run(&self, args: &[&str]) -> Output {
        self.command().args(args).output().unwrap()
    }

    /// Runs a subcommand that must succeed; returns its stdout.
    pub fn ok(&self, args: &[&str]) -> String {
        let out = self.run(args);
        assert!(out.status.success(), "chaperone {args:?} failed: {}", String::from_utf8_lossy(&out.stderr));
        String::from_utf8(out.stdout).unwrap()
    }

    pub fn upstream_public_key(&self) -> String {
        let out = self.ok(&["keys"]);
        let line = out.lines().find(|l| l.starts_with("upstream key")).unwrap();
        line.split_once("): ").unwrap().1.to_string()
    }

    pub fn host_public_key(&self) -> String {
        std::fs::read_to_string(self.dir.join("data/keys/host_ed25519.pub")).unwrap().trim().to_string()
    }

    pub fn recordings(&self) -> PathBuf {
        self.dir.join("recordings")
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("serve.log")).unwrap_or_default()
    }

    /// Starts `serve --listen 127.0.0.1:0` and waits for the port it reports.
    pub fn start(&mut self) {
        let log = std::fs::File::create(self.dir.join("serve.log")).unwrap();
        let mut child = self
            .command()
            .args(["serve", "--listen", "127.0.0.1:0"])
            .stdout(Stdio::piped())
            .stderr(log)
            .spawn()
            .unwrap();
        let stdout = child.stdout.take().unwrap();
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if let Some(addr) = line.split("listening on ").nth(1) {
                    let _ = tx.send(addr.trim().to_string());
                }
            }
        });
        let addr =
            rx.recv_timeout(Duration::from_secs(20)).unwrap_or_else(|_| panic!("serve did not start: {}", self.log()));
        self.port = addr.rsplit_once(':').unwrap().1.parse().unwrap();
        self.child = Some(child);
    }

    pub fn pid(&self) -> i32 {
        self.child.as_ref().unwrap().id() as i32
    }

    pub fn signal(&self, signal: i32) {
        unsafe { libc::kill(self.pid(), signal) };
    }

    /// Waits for the serve process to exit and returns its status.
    pub fn wait(&mut self, timeout: Duration) -> std::process::ExitStatus {
        let child = self.child.as_mut().unwrap();
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(status) = child.try_wait().unwrap() {
                self.child = None;
                return status;
            }
            assert!(Instant::now() < deadline, "serve did not exit: {}", self.log());
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for Bastion {
    fn drop(&mut self) {
        if let Some(child) = self.child.as_mut() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// A vendor with a key pair and a known_hosts file that pins the bastion.
pub struct VendorClient {
    pub key: PathBuf,
    pub known_hosts: PathBuf,
}

impl VendorClient {
    pub fn new(dir: &Path, name: &str) -> VendorClient {
        let key = dir.join(format!("{name}_ed25519"));
        keygen(&key);
        VendorClient { key, known_hosts: dir.join(format!("{name}_known_hosts")) }
    }

    pub fn public_key_path(&self) -> String {
        format!("{}.pub", self.key.display())
    }

    pub fn trust(&self, bastion: &Bastion) {
        let line = format!("[127.0.0.1]:{} {}\n", bastion.port, bastion.host_public_key());
        std::fs::write(&self.known_hosts, line).unwrap();
    }

    /// An `ssh` command to the bastion as `user`, strict about the bastion's host key.
    pub fn ssh(&self, bastion: &Bastion, user: &str) -> Command {
        let mut cmd = Command::new("ssh");
        cmd.args(self.options(bastion)).arg("-p").arg(bastion.port.to_string()).arg(format!("{user}@127.0.0.1"));
        cmd
    }

    /// The options every client program (ssh, sftp, scp) gets.
    pub fn options(&self, _bastion: &Bastion) -> Vec<String> {
        vec![
            "-o".into(),
            "BatchMode=yes".into(),
            "-o".into(),
            "IdentitiesOnly=yes".into(),
            "-o".into(),
            format!("UserKnownHostsFile={}", self.known_hosts.display()),
            "-o".into(),
            "StrictHostKeyChecking=yes".into(),
            "-o".into(),
            "ConnectTimeout=10".into(),
            "-i".into(),
            self.key.display().to_string(),
        ]
    }
}

/// When the usual scene happens (test clock): a Thursday morning in Berlin.
pub const TEST_NOW: &str = "2026-12-03T10:00:00+01:00";

/// The usual scene: a target sshd, a running bastion that may log into it, a client
/// `globex` owning target `erp01`, a technician `alice`, a vendor `acme`, and (for
/// `World::new`) an approved booking covering now, so that acme may log in.
pub struct World {
    pub tmp: tempfile::TempDir,
    pub sshd: Sshd,
    pub bastion: Bastion,
    pub vendor: VendorClient,
    pub tech: VendorClient,
    pub account: String,
}

impl World {
    /// Acknowledgements not required, and a booking open now.
    pub fn new() -> World {
        let w = World::bare("[policy]\nrequire_acknowledgements = false\nrequire_supervisor = false\n");
        w.book_now("erp01", &w.account.clone());
        w
    }

    /// Registered and serving, no booking; `extra` config appended.
    pub fn bare(extra: &str) -> World {
        World::with_tables("", extra)
    }

    /// The same, with `server` lines added to the config's `[server]` table.
    pub fn with_tables(server: &str, extra: &str) -> World {
        let tmp = tempfile::tempdir().unwrap();
        let mut bastion = Bastion::with_tables(tmp.path(), server, extra);
        bastion.set_clock(TEST_NOW);
        let sshd = Sshd::start(tmp.path(), &bastion.upstream_public_key());
        let vendor = VendorClient::new(tmp.path(), "acme");
        let tech = VendorClient::new(tmp.path(), "alice");
        let account = whoami();
        bastion.ok(&["client", "add", "globex", "--email", "it@globex.example"]);
        bastion.ok(&["tech", "add", "alice", "--email", "alice@provider.example", "--key", &tech.public_key_path()]);
        bastion.ok(&["vendor", "add", "acme", "--email", "ops@acme.example", "--key", &vendor.public_key_path()]);
        bastion.add_target("erp01", &sshd.address(), &sshd.host_key_pub, &[&account]);
        bastion.start();
        vendor.trust(&bastion);
        tech.trust(&bastion);
        World { tmp, sshd, bastion, vendor, tech, account }
    }

    /// Books `target` as `account` for acme from an hour before to ten hours after
    /// `TEST_NOW` (an emergency: no lead time) and approves it. Returns `B-n`.
    pub fn book_now(&self, target: &str, account: &str) -> String {
        let plan = self.path("plan-now.md");
        std::fs::write(&plan, "# Maintenance\n- look around\n").unwrap();
        self.bastion.book_now(target, account, &plan, "integration test")
    }

    /// Registers a target of client `globex` at `address`, pinned to `host_key`.
    pub fn add_target(&self, name: &str, address: &str, host_key: &str, accounts: &[&str]) {
        self.bastion.add_target(name, address, host_key, accounts);
    }

    /// Starts `ssh acme:erp01@bastion COUNTING` with its stdout piped for the test to read
    /// (stderr dropped).
    pub fn start_counting(&self) -> Child {
        let mut ssh = self.vendor.ssh(&self.bastion, "acme:erp01");
        ssh.arg(COUNTING).stdin(Stdio::null()).stdout(Stdio::piped()).stderr(Stdio::null());
        ssh.spawn().unwrap()
    }

    /// Starts `ssh acme:erp01@bastion 'echo started; sleep 300'` (stderr to `stderr`) and
    /// waits until the command runs on the target.
    pub fn start_long_session(&self, stderr: Stdio) -> std::process::Child {
        self.start_long_session_as(&self.vendor, stderr)
    }

    /// The same, logged in with `client`'s key.
    pub fn start_long_session_as(&self, client: &VendorClient, stderr: Stdio) -> std::process::Child {
        let mut child = client
            .ssh(&self.bastion, "acme:erp01")
            .arg("echo started; sleep 300")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(stderr)
            .spawn()
            .unwrap();
        let mut first = String::new();
        BufReader::new(child.stdout.take().unwrap()).read_line(&mut first).unwrap();
        assert_eq!(first, "started\n", "the session did not start");
        child
    }

    /// The vendor's interactive shell on erp01 in a terminal of `cols`×`rows`.
    pub fn vendor_shell(&self, cols: u16, rows: u16) -> pty::Pty {
        let mut ssh = self.vendor.ssh(&self.bastion, "acme:erp01");
        ssh.arg("-t").env("TERM", "xterm-256color");
        pty::Pty::spawn(ssh, cols, rows)
    }

    /// The vendor's shell with a known prompt (`rdy> `), ready for the first command.
    pub fn vendor_prompt(&self, cols: u16, rows: u16) -> pty::Pty {
        let mut pty = self.vendor_shell(cols, rows);
        pty.type_text("PS1='rdy> '\r");
        pty.expect("rdy> ");
        pty
    }

    /// A shell session of `cols`×`rows` that runs `command`, waits for `shown`, and exits;
    /// returns the session's id once it has ended.
    pub fn prompt_session(&self, cols: u16, rows: u16, command: &str, shown: &str) -> String {
        let mut pty = self.vendor_prompt(cols, rows);
        pty.type_text(&format!("{command}\r"));
        pty.expect(shown);
        pty.type_text("exit\r");
        assert!(pty.wait(Duration::from_secs(15)).success(), "{}", pty.output());
        let id = self.last_session();
        self.ended_session_json(&id);
        id
    }

    /// `ssh alice@bastion COMMAND` (the technician's console), waiting for it.
    pub fn console(&self, command: &str) -> Output {
        self.tech.ssh(&self.bastion, "alice").arg(command).stdin(Stdio::null()).output().unwrap()
    }

    /// The id of the one live session, as the technician's `sessions` shows it.
    pub fn live_session(&self) -> String {
        let mut id = String::new();
        self.eventually("a live session", || {
            let out = self.console("sessions");
            id = stdout(&out)
                .lines()
                .find(|l| !l.starts_with("no live"))
                .and_then(|l| l.split_whitespace().next())
                .unwrap_or_default()
                .to_string();
            !id.is_empty()
        });
        id
    }

    pub fn path(&self, name: &str) -> PathBuf {
        self.tmp.path().join(name)
    }

    /// `ssh acme:erp01@bastion COMMAND`, waiting for it to finish.
    pub fn exec(&self, command: &str) -> Output {
        self.vendor.ssh(&self.bastion, "acme:erp01").arg(command).stdin(Stdio::null()).output().unwrap()
    }

    /// The ids of recorded sessions, oldest first.
    pub fn session_ids(&self) -> Vec<String> {
        self.bastion
            .ok(&["recordings", "list"])
            .lines()
            .filter(|l| !l.starts_with("no recorded"))
            .map(|l| l.split_whitespace().next().unwrap().to_string())
            .collect()
    }

    pub fn last_session(&self) -> String {
        self.session_ids().pop().expect("no session recorded")
    }

    /// The folder of a session (recordings/YYYY/MM/<id>).
    pub fn folder(&self, id: &str) -> PathBuf {
        for year in std::fs::read_dir(self.bastion.recordings()).unwrap().flatten() {
            for month in std::fs::read_dir(year.path()).unwrap().flatten() {
                let candidate = month.path().join(id);
                if candidate.is_dir() {
                    return candidate;
                }
            }
        }
        panic!("no folder for session {id}");
    }

    /// Waits until `f` holds (sessions are written up by the bastion just after ssh exits).
    pub fn eventually(&self, what: &str, mut f: impl FnMut() -> bool) {
        let deadline = Instant::now() + Duration::from_secs(15);
        while !f() {
            assert!(Instant::now() < deadline, "timed out waiting for {what}; bastion log:\n{}", self.bastion.log());
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// The first channel's recording of session `id` as asciicast text, read by the real
    /// zstd (what an auditor without chaperone would do).
    pub fn recording_text(&self, id: &str) -> String {
        unzstd(&self.folder(id).join("session.cast.zst"))
    }

    /// session.json of a session once it has ended.
    pub fn ended_session_json(&self, id: &str) -> serde_json::Value {
        let path = self.folder(id).join("session.json");
        let mut json = serde_json::Value::Null;
        self.eventually("session.json to say the session ended", || {
            json = serde_json::from_str(&std::fs::read_to_string(&path).unwrap_or_default()).unwrap_or_default();
            json["state"] != "live" && !json["state"].is_null()
        });
        json
    }
}

/// A helper process (a relay, a second `serve`) killed when the test ends, also when it
/// fails, so no process outlives the test that started it.
pub struct Killed(pub Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Runs `cmd` with `stdin`, killing it if it has not ended within 20 s (an endless input
/// read to its end would grow until the machine runs out of memory).
pub fn run_bounded(mut cmd: Command, stdin: Stdio) -> Output {
    let mut child = cmd.stdin(stdin).stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    while child.try_wait().unwrap().is_none() {
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("{cmd:?} was still reading after 20 s");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    child.wait_with_output().unwrap()
}

/// `booking create` for acme on erp01 as `account`, by alice, then `rest` (the window,
/// the plan, other flags): the command line most booking tests start from.
pub fn booking_create<'a>(account: &'a str, rest: &[&'a str]) -> Vec<&'a str> {
    let mut args =
        vec!["booking", "create", "--vendor", "acme", "--target", "erp01", "--account", account, "--by", "alice"];
    args.extend_from_slice(rest);
    args
}

/// Writes `size` bytes of incompressible pseudo-random data (fast, deterministic).
pub fn random_file(path: &Path, size: usize, seed: u64) {
    let mut state = seed | 1;
    let mut out = std::io::BufWriter::new(std::fs::File::create(path).unwrap());
    let mut left = size;
    let mut block = vec![0u8; 64 * 1024];
    while left > 0 {
        for chunk in block.chunks_mut(8) {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            let bytes = state.to_le_bytes();
            chunk.copy_from_slice(&bytes[..chunk.len()]);
        }
        let n = left.min(block.len());
        out.write_all(&block[..n]).unwrap();
        left -= n;
    }
    out.flush().unwrap();
}

pub fn sha256_file(path: &Path) -> String {
    use sha2::{Digest, Sha256};
    let mut hasher = Sha256::new();
    let mut file = std::fs::File::open(path).unwrap();
    std::io::copy(&mut file, &mut hasher).unwrap();
    format!("{:x}", hasher.finalize())
}

/// A memory figure of a process from /proc (VmRSS:, VmHWM:, RssAnon:), in KiB.
pub fn status_kb(pid: i32, field: &str) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let line = status.lines().find_map(|l| l.strip_prefix(field)).unwrap();
    line.trim().trim_end_matches("kB").trim().parse().unwrap()
}

/// The text of the zstd file at `path`, read by the real `zstd -dc`; fails the test if
/// zstd cannot read it or it is not UTF-8 (a recording is JSON lines).
pub fn unzstd(path: &Path) -> String {
    let out = Command::new("zstd").arg("-dc").arg(path).output().unwrap();
    assert!(out.status.success(), "zstd -dc {}: {}", path.display(), stderr(&out));
    String::from_utf8(out.stdout).unwrap()
}

pub fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

pub fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}
