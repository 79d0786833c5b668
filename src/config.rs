//! Configuration in two stages: the TOML file as written ([`RawConfig`], unknown keys
//! refused) becomes a validated [`Config`] with absolute paths. `chaperone check` runs
//! only this step.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

/// Where `chaperone` looks for its configuration when neither `--config` nor
/// `CHAPERONE_CONFIG` says otherwise (relative to the current folder).
pub const DEFAULT_CONFIG_PATH: &str = "config/chaperone.toml";

/// Most a configuration file may hold: a few dozen lines in practice.
pub const MAX_CONFIG: usize = 1024 * 1024;

/// Most a CA file (`mail.smtp_ca`) may hold: a whole system bundle is about 200 KiB.
pub const MAX_CA_FILE: usize = 4 * 1024 * 1024;

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error(transparent)]
    Read(#[from] crate::files::ReadError),
    #[error("config {path}: {message}")]
    Parse { path: PathBuf, message: String },
    #[error("config {path}: {message}")]
    Invalid { path: PathBuf, message: String },
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawConfig {
    #[serde(default)]
    pub server: RawServer,
    #[serde(default)]
    pub recording: RawRecording,
    #[serde(default)]
    pub upstream: RawUpstream,
    #[serde(default)]
    pub policy: RawPolicy,
    #[serde(default)]
    pub mail: RawMail,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawPolicy {
    pub timezone: Option<String>,
    pub lead_time_days: Option<i64>,
    pub max_window_hours: Option<i64>,
    pub require_acknowledgements: Option<bool>,
    pub require_supervisor: Option<bool>,
    pub supervisor_wait_minutes: Option<i64>,
    pub supervisor_grace_minutes: Option<i64>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawMail {
    pub transport: Option<String>,
    pub from: Option<String>,
    pub smtp_host: Option<String>,
    pub smtp_port: Option<u16>,
    pub smtp_tls: Option<String>,
    pub smtp_username: Option<String>,
    pub smtp_password: Option<String>,
    /// PEM file of the CA (or CAs) that signed the relay's certificate, trusted beside the
    /// public roots: for an internal relay with a private CA.
    pub smtp_ca: Option<PathBuf>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawServer {
    pub listen: Option<String>,
    pub data_dir: Option<PathBuf>,
    pub recordings_dir: Option<PathBuf>,
    pub login_grace_secs: Option<u64>,
    pub max_unauthenticated: Option<usize>,
    pub max_unauthenticated_per_address: Option<usize>,
    pub worker_threads: Option<usize>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawRecording {
    pub zstd_level: Option<i32>,
    pub flush_interval_ms: Option<u64>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawUpstream {
    pub connect_timeout_secs: Option<u64>,
}

/// The validated configuration every other module reads.
#[derive(Debug, Clone)]
pub struct Config {
    /// The file this came from, for messages.
    pub source: PathBuf,
    /// Where the SSH gate listens.
    pub listen: SocketAddr,
    /// Database, keys, outbox.
    pub data_dir: PathBuf,
    /// Root of `YYYY/MM/<session-id>/` folders.
    pub recordings_dir: PathBuf,
    pub recording: RecordingConfig,
    /// Bound on the TCP connect plus SSH handshake to a target.
    pub upstream_connect_timeout: Duration,
    /// Connections not yet logged in: how long they may take, how many there may be.
    pub logins: LoginLimits,
    /// The async runtime's worker threads, which carry the SSH traffic (see
    /// [`default_worker_threads`]).
    pub worker_threads: usize,
    pub policy: PolicyConfig,
    pub mail: MailConfig,
}

/// Bounds on connections that have not logged in yet (OpenSSH's `LoginGraceTime` and
/// `MaxStartups`): a client that connects and says nothing, or thousands of them, must not
/// hold the bastion's sockets and memory away from vendors and technicians.
#[derive(Debug, Clone)]
pub struct LoginLimits {
    /// From TCP accept to a successful login; then the connection is closed.
    pub grace: Duration,
    /// Connections in that state at once; more are closed at accept.
    pub max: usize,
    /// The same, from one client address.
    pub max_per_address: usize,
}

impl Default for LoginLimits {
    fn default() -> Self {
        LoginLimits { grace: Duration::from_secs(120), max: 100, max_per_address: 10 }
    }
}

/// The SOP's numbers (rules 4, 7, 8).
#[derive(Debug, Clone)]
pub struct PolicyConfig {
    /// Wall-clock zone of booking times typed and shown.
    pub timezone: chrono_tz::Tz,
    /// A window must start at least this long after it was booked (SOP rule 8).
    pub lead_time: chrono::Duration,
    /// Longest window; a day-long open door is not supervision.
    pub max_window: chrono::Duration,
    /// Approval needs the vendor's signed and the client's acknowledgement of the plan.
    pub require_acknowledgements: bool,
    /// A vendor's session runs only while a technician watches (SOP rule 5).
    pub require_supervisor: bool,
    /// How long an admitted vendor waits for a technician before giving up.
    pub supervisor_wait: chrono::Duration,
    /// How long a session may go on unwatched (input paused) before it ends.
    pub supervisor_grace: chrono::Duration,
}

impl Default for PolicyConfig {
    fn default() -> Self {
        PolicyConfig {
            timezone: chrono_tz::Europe::Berlin,
            lead_time: chrono::Duration::days(7),
            max_window: chrono::Duration::hours(12),
            require_acknowledgements: true,
            require_supervisor: true,
            supervisor_wait: chrono::Duration::minutes(15),
            supervisor_grace: chrono::Duration::minutes(5),
        }
    }
}

/// How confirmation e-mails leave.
#[derive(Debug, Clone)]
pub struct MailConfig {
    /// The From address of every message.
    pub from: String,
    pub transport: MailTransport,
}

#[derive(Debug, Clone)]
pub enum MailTransport {
    /// `.eml` files in this folder (default `<data>/outbox`), for a relay that picks them up.
    Outbox(PathBuf),
    Smtp(SmtpConfig),
}

#[derive(Debug, Clone)]
pub struct SmtpConfig {
    pub host: String,
    pub port: u16,
    pub tls: SmtpTls,
    pub credentials: Option<(String, crate::keys::Secret<String>)>,
    /// Extra trusted CA certificates (PEM), read when the configuration is loaded.
    pub ca: Option<Vec<u8>>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SmtpTls {
    /// Plain SMTP: only for a relay on loopback.
    None,
    StartTls,
    /// TLS from the first byte (port 465).
    Implicit,
}

#[derive(Debug, Clone, Copy)]
pub struct RecordingConfig {
    /// zstd compression level of recordings.
    pub zstd_level: i32,
    /// The longest a recorded event may wait in memory before its frame reaches the disk;
    /// this is what a crash can lose.
    pub flush_interval: Duration,
}

impl Default for RecordingConfig {
    fn default() -> Self {
        RecordingConfig { zstd_level: 1, flush_interval: Duration::from_millis(1000) }
    }
}

impl Config {
    pub fn data_db(&self) -> PathBuf {
        self.data_dir.join("chaperone.db")
    }

    pub fn keys_dir(&self) -> PathBuf {
        self.data_dir.join("keys")
    }

    /// The shipped `config/chaperone.toml` when it is there (a checkout), else the built-in
    /// defaults relative to the current folder.
    pub fn load_default() -> Result<Config, ConfigError> {
        let path = Path::new(DEFAULT_CONFIG_PATH);
        if path.exists() { Config::load(path) } else { Config::from_toml(Path::new("chaperone.toml"), "") }
    }

    /// Reads and validates the file at `path`.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let text = crate::files::read_text(path, MAX_CONFIG, "config")?;
        Config::from_toml(path, &text)
    }

    /// Validates `text` as if read from `path` (relative paths resolve against its folder).
    pub fn from_toml(path: &Path, text: &str) -> Result<Config, ConfigError> {
        let raw: RawConfig = toml::from_str(text)
            .map_err(|e| ConfigError::Parse { path: path.to_path_buf(), message: one_line_toml_error(&e, text) })?;
        let invalid = |message: String| ConfigError::Invalid { path: path.to_path_buf(), message };
        let base = absolute(path.parent().unwrap_or(Path::new(".")));

        let listen_text = raw.server.listen.as_deref().unwrap_or("127.0.0.1:2222");
        let listen: SocketAddr = listen_address(listen_text).map_err(|e| invalid(format!("server.listen: {e}")))?;
        let logins = login_limits(&raw.server).map_err(invalid)?;
        let data_dir = base.join(raw.server.data_dir.unwrap_or_else(|| PathBuf::from("data")));
        let recordings_dir = base.join(raw.server.recordings_dir.unwrap_or_else(|| PathBuf::from("recordings")));

        let zstd_level = raw.recording.zstd_level.unwrap_or(1);
        if !(1..=19).contains(&zstd_level) {
            return Err(invalid(format!("recording.zstd_level: {zstd_level} is not within 1..=19")));
        }
        let flush_ms = raw.recording.flush_interval_ms.unwrap_or(1000);
        if !(10..=1000).contains(&flush_ms) {
            return Err(invalid(format!(
                "recording.flush_interval_ms: {flush_ms} is not within 10..=1000 (a crash may lose at most a second)"
            )));
        }
        let connect_secs = raw.upstream.connect_timeout_secs.unwrap_or(10);
        if !(1..=300).contains(&connect_secs) {
            return Err(invalid(format!("upstream.connect_timeout_secs: {connect_secs} is not within 1..=300")));
        }
        let worker_threads = raw.server.worker_threads.unwrap_or_else(default_worker_threads);
        if !(1..=256).contains(&worker_threads) {
            return Err(invalid(format!("server.worker_threads: {worker_threads} is not within 1..=256")));
        }
        let policy = policy_config(&raw.policy).map_err(invalid)?;
        let mail = mail_config(&raw.mail, &data_dir, &base).map_err(invalid)?;
        Ok(Config {
            policy,
            mail,
            source: absolute(path),
            listen,
            data_dir: normalize(&data_dir),
            recordings_dir: normalize(&recordings_dir),
            recording: RecordingConfig { zstd_level, flush_interval: Duration::from_millis(flush_ms) },
            upstream_connect_timeout: Duration::from_secs(connect_secs),
            logins,
            worker_threads,
        })
    }
}

/// A listening address, with a message that shows both forms (IPv6 needs brackets).
pub fn listen_address(text: &str) -> Result<SocketAddr, String> {
    text.parse().map_err(|_| format!("{text:?} is not an address like 127.0.0.1:2222 or [::1]:2222"))
}

/// Half the CPU cores, at least one. The runtime's workers carry the SSH traffic (sockets,
/// ciphers): about a third of what a flood costs the bastion; the recordings are encoded
/// and compressed on threads of their own, the other two thirds. On two cores one worker
/// also spares a relayed chunk the wake-ups between workers (it passes three tasks: the
/// target's connection, the relay, the vendor's connection): 8 % less CPU per GB and 7 %
/// more throughput for a single stream, and an even share for twenty at once (see the
/// README's Performance section).
pub fn default_worker_threads() -> usize {
    std::thread::available_parallelism().map_or(1, |n| (n.get() / 2).max(1))
}

fn login_limits(raw: &RawServer) -> Result<LoginLimits, String> {
    let defaults = LoginLimits::default();
    let grace = raw.login_grace_secs.unwrap_or(defaults.grace.as_secs());
    if !(1..=600).contains(&grace) {
        return Err(format!("server.login_grace_secs: {grace} is not within 1..=600"));
    }
    let max = raw.max_unauthenticated.unwrap_or(defaults.max);
    if !(1..=10_000).contains(&max) {
        return Err(format!("server.max_unauthenticated: {max} is not within 1..=10000"));
    }
    // Unset, it follows a smaller `max_unauthenticated` down.
    let max_per_address = raw.max_unauthenticated_per_address.unwrap_or(defaults.max_per_address.min(max));
    if !(1..=max).contains(&max_per_address) {
        return Err(format!(
            "server.max_unauthenticated_per_address: {max_per_address} is not within 1..={max} (server.max_unauthenticated)"
        ));
    }
    Ok(LoginLimits { grace: Duration::from_secs(grace), max, max_per_address })
}

fn policy_config(raw: &RawPolicy) -> Result<PolicyConfig, String> {
    let defaults = PolicyConfig::default();
    let timezone = match &raw.timezone {
        Some(name) => name
            .parse::<chrono_tz::Tz>()
            .map_err(|_| format!("policy.timezone: {name:?} is not an IANA time zone like \"Europe/Berlin\""))?,
        None => defaults.timezone,
    };
    let lead_days = raw.lead_time_days.unwrap_or(7);
    if !(0..=365).contains(&lead_days) {
        return Err(format!("policy.lead_time_days: {lead_days} is not within 0..=365"));
    }
    let max_hours = raw.max_window_hours.unwrap_or(12);
    if !(1..=168).contains(&max_hours) {
        return Err(format!("policy.max_window_hours: {max_hours} is not within 1..=168"));
    }
    let minutes = |name: &str, value: Option<i64>, default: i64| -> Result<chrono::Duration, String> {
        let m = value.unwrap_or(default);
        if (1..=720).contains(&m) {
            Ok(chrono::Duration::minutes(m))
        } else {
            Err(format!("policy.{name}: {m} is not within 1..=720"))
        }
    };
    Ok(PolicyConfig {
        timezone,
        lead_time: chrono::Duration::days(lead_days),
        max_window: chrono::Duration::hours(max_hours),
        require_acknowledgements: raw.require_acknowledgements.unwrap_or(true),
        require_supervisor: raw.require_supervisor.unwrap_or(true),
        supervisor_wait: minutes("supervisor_wait_minutes", raw.supervisor_wait_minutes, 15)?,
        supervisor_grace: minutes("supervisor_grace_minutes", raw.supervisor_grace_minutes, 5)?,
    })
}

fn mail_config(raw: &RawMail, data_dir: &Path, base: &Path) -> Result<MailConfig, String> {
    let from = raw.from.clone().unwrap_or_else(|| "chaperone@localhost".to_string());
    if !from.contains('@') || from.contains(char::is_whitespace) {
        return Err(format!("mail.from: {from:?} is not an e-mail address"));
    }
    let transport = match raw.transport.as_deref().unwrap_or("outbox") {
        "outbox" => MailTransport::Outbox(data_dir.join("outbox")),
        "smtp" => {
            let host = raw.smtp_host.clone().ok_or("mail.smtp_host is required for transport \"smtp\"")?;
            let tls = match raw.smtp_tls.as_deref().unwrap_or("starttls") {
                "none" => SmtpTls::None,
                "starttls" => SmtpTls::StartTls,
                "tls" => SmtpTls::Implicit,
                other => return Err(format!("mail.smtp_tls: {other:?} is not one of none, starttls, tls")),
            };
            let port = raw.smtp_port.unwrap_or(match tls {
                SmtpTls::Implicit => 465,
                SmtpTls::StartTls => 587,
                SmtpTls::None => 25,
            });
            let credentials = match (&raw.smtp_username, &raw.smtp_password) {
                (Some(user), Some(password)) => Some((user.clone(), crate::keys::Secret::new(password.clone()))),
                (None, None) => None,
                _ => return Err("mail.smtp_username and mail.smtp_password go together".into()),
            };
            let ca = match &raw.smtp_ca {
                None => None,
                Some(_) if tls == SmtpTls::None => {
                    return Err("mail.smtp_ca needs smtp_tls \"starttls\" or \"tls\"".into());
                }
                Some(path) => {
                    let path = base.join(path);
                    let pem =
                        crate::files::read(&path, MAX_CA_FILE, "file").map_err(|e| format!("mail.smtp_ca: {e}"))?;
                    crate::notify::check_ca(&pem).map_err(|e| format!("mail.smtp_ca: {}: {e}", path.display()))?;
                    Some(pem)
                }
            };
            MailTransport::Smtp(SmtpConfig { host, port, tls, credentials, ca })
        }
        other => return Err(format!("mail.transport: {other:?} is not one of outbox, smtp")),
    };
    Ok(MailConfig { from, transport })
}

/// toml's errors span several lines (with a source excerpt); keep the first line and the
/// line number so `check` prints one line.
fn one_line_toml_error(err: &toml::de::Error, text: &str) -> String {
    let message = err.message().trim().to_string();
    match err.span() {
        Some(span) => {
            let line = text[..span.start.min(text.len())].matches('\n').count() + 1;
            format!("line {line}: {message}")
        }
        None => message,
    }
}

fn absolute(path: &Path) -> PathBuf {
    if path.is_absolute() {
        path.to_path_buf()
    } else {
        std::env::current_dir().map(|d| d.join(path)).unwrap_or_else(|_| path.to_path_buf())
    }
}

/// Removes `.` and `..` components lexically, so logged paths read cleanly
/// (`/repo/config/../data` becomes `/repo/data`).
fn normalize(path: &Path) -> PathBuf {
    let mut out = PathBuf::new();
    for part in path.components() {
        match part {
            std::path::Component::CurDir => {}
            std::path::Component::ParentDir => {
                out.pop();
            }
            other => out.push(other),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shipped_config_resolves_paths_against_its_folder() {
        let text = include_str!("../config/chaperone.toml");
        let cfg = Config::from_toml(Path::new("/repo/config/chaperone.toml"), text).unwrap();
        assert_eq!(cfg.data_dir, PathBuf::from("/repo/data"));
        assert_eq!(cfg.recordings_dir, PathBuf::from("/repo/recordings"));
        assert_eq!(cfg.listen.to_string(), "127.0.0.1:2222");
    }

    #[test]
    fn built_in_defaults() {
        let cfg = Config::from_toml(Path::new("/srv/chaperone.toml"), "").unwrap();
        assert_eq!(cfg.data_dir, PathBuf::from("/srv/data"));
        assert_eq!(cfg.recordings_dir, PathBuf::from("/srv/recordings"));
        assert_eq!(cfg.recording.flush_interval, Duration::from_secs(1));
        assert_eq!(cfg.logins.grace, Duration::from_secs(120));
        assert_eq!((cfg.logins.max, cfg.logins.max_per_address), (100, 10));
    }

    #[test]
    fn login_limits_are_checked() {
        let load = |text: &str| Config::from_toml(Path::new("/x/c.toml"), &format!("[server]\n{text}"));
        let cfg =
            load("login_grace_secs = 30\nmax_unauthenticated = 50\nmax_unauthenticated_per_address = 50\n").unwrap();
        assert_eq!((cfg.logins.grace, cfg.logins.max, cfg.logins.max_per_address), (Duration::from_secs(30), 50, 50));
        let err = load("login_grace_secs = 0\n").unwrap_err().to_string();
        assert!(err.contains("server.login_grace_secs: 0 is not within 1..=600"), "{err}");
        let cfg = load("max_unauthenticated = 5\n").unwrap();
        assert_eq!((cfg.logins.max, cfg.logins.max_per_address), (5, 5), "unset, the per-address bound follows");
        let err = load("max_unauthenticated = 5\nmax_unauthenticated_per_address = 6\n").unwrap_err().to_string();
        assert!(err.contains("server.max_unauthenticated_per_address: 6 is not within 1..=5"), "{err}");
        assert_eq!(load("").unwrap().worker_threads, default_worker_threads());
        assert_eq!(load("worker_threads = 3\n").unwrap().worker_threads, 3);
        let err = load("worker_threads = 0\n").unwrap_err().to_string();
        assert!(err.contains("server.worker_threads: 0 is not within 1..=256"), "{err}");
    }

    #[test]
    fn unknown_keys_and_bad_values_say_where() {
        let err = Config::from_toml(Path::new("/x/c.toml"), "[server]\nlisen = \"1\"\n").unwrap_err();
        assert!(err.to_string().contains("line 2"), "{err}");
        let err = Config::from_toml(Path::new("/x/c.toml"), "[recording]\nzstd_level = 40\n").unwrap_err();
        assert!(err.to_string().contains("zstd_level"), "{err}");
        let listen = |text: &str| Config::from_toml(Path::new("/x/c.toml"), &format!("[server]\nlisten = {text:?}\n"));
        assert_eq!(listen("[::1]:2222").unwrap().listen.to_string(), "[::1]:2222");
        let err = listen("::1:2222").unwrap_err().to_string();
        assert!(
            err.ends_with("server.listen: \"::1:2222\" is not an address like 127.0.0.1:2222 or [::1]:2222"),
            "{err}"
        );
    }

    #[test]
    fn a_relay_ca_is_read_and_checked_when_the_config_loads() {
        let dir = tempfile::tempdir().unwrap();
        let config = dir.path().join("chaperone.toml");
        let smtp = |extra: &str| {
            format!("[mail]\ntransport = \"smtp\"\nsmtp_host = \"mail.example\"\nsmtp_ca = \"ca.pem\"\n{extra}")
        };
        let err = Config::from_toml(&config, &smtp("")).unwrap_err().to_string();
        assert!(err.contains("mail.smtp_ca: cannot read") && err.contains("ca.pem"), "{err}");
        assert!(!err.contains('\n'), "{err}");
        std::fs::write(dir.path().join("ca.pem"), "not a certificate\n").unwrap();
        let err = Config::from_toml(&config, &smtp("")).unwrap_err().to_string();
        assert!(err.contains("no PEM certificate"), "{err}");
        let err = Config::from_toml(&config, &smtp("smtp_tls = \"none\"\n")).unwrap_err().to_string();
        assert!(err.contains("needs smtp_tls"), "{err}");
    }
}
