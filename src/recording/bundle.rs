//! The dispute bundle: one `.tar` or `.zip` a provider hands to a client, a vendor or a
//! court. It holds the session folder exactly as sealed, the bastion's signing public key,
//! a plain-text transcript, a README on verifying it, and `player.html`, a page that plays
//! the recording offline beside the plan (asciinema-player embedded at build time; the
//! page's Content-Security-Policy forbids any network access).
//!
//! ```text
//! chaperone-<id>/README.txt
//! chaperone-<id>/player.html
//! chaperone-<id>/transcript.txt
//! chaperone-<id>/signing_ed25519.pub
//! chaperone-<id>/<id>/…          the session folder, byte for byte
//! ```

use std::io::Write;
use std::path::{Path, PathBuf};

use russh::keys::PublicKey;
use serde_json::Value;

use super::export;
use super::reader::CastReader;
use super::seal::evidence_files;
use super::text::{self, clock};
use super::{RecordingError, cast_files};

const PLAYER_JS: &str = include_str!(concat!(env!("CHAPERONE_PLAYER_ASSETS"), "/asciinema-player.min.js"));
const PLAYER_CSS: &str = include_str!(concat!(env!("CHAPERONE_PLAYER_ASSETS"), "/asciinema-player.css"));
const PLAYER_MISSING: &str = env!("CHAPERONE_PLAYER_MISSING");
const PAGE: &str = include_str!("player.html");

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Archive {
    Tar,
    Zip,
}

impl Archive {
    /// `.tar` or `.zip`, from the file name.
    pub fn from_path(path: &Path) -> Option<Archive> {
        match path.extension()?.to_str()? {
            "tar" => Some(Archive::Tar),
            "zip" => Some(Archive::Zip),
            _ => None,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum BundleError {
    #[error(
        "this chaperone was built without asciinema-player ({0}); install Node.js and npm and rebuild to write bundles"
    )]
    NoPlayer(&'static str),
    #[error("{0}")]
    Recording(#[from] RecordingError),
    #[error("cannot read {path}: {source}")]
    Read { path: PathBuf, source: std::io::Error },
    #[error("cannot write the bundle: {0}")]
    Write(String),
}

/// One file of the bundle: its path inside the archive and where its bytes are. What may
/// be large (the recordings, the transcript and the page that embeds the recordings) is
/// copied from a file, never held in memory whole.
struct Entry {
    name: String,
    source: Source,
}

enum Source {
    Bytes(Vec<u8>),
    File(PathBuf),
}

impl Entry {
    fn bytes(name: String, bytes: Vec<u8>) -> Entry {
        Entry { name, source: Source::Bytes(bytes) }
    }

    fn file(name: String, path: PathBuf) -> Entry {
        Entry { name, source: Source::File(path) }
    }

    fn copy_to(&self, out: &mut dyn Write) -> std::io::Result<()> {
        match &self.source {
            Source::Bytes(bytes) => out.write_all(bytes),
            Source::File(path) => std::io::copy(&mut open(path)?, out).map(|_| ()),
        }
    }
}

/// Opens a file to copy into the archive; an error names it.
fn open(path: &Path) -> std::io::Result<std::fs::File> {
    std::fs::File::open(path).map_err(|e| std::io::Error::new(e.kind(), format!("{}: {e}", path.display())))
}

/// Writes a generated file into `spool` through a buffer and returns its path.
fn spooled(
    spool: &Path,
    name: &str,
    write: impl FnOnce(&mut dyn Write) -> Result<(), BundleError>,
) -> Result<PathBuf, BundleError> {
    let path = spool.join(name);
    let file = std::fs::File::create(&path).map_err(|e| BundleError::Write(format!("{}: {e}", path.display())))?;
    let mut out = std::io::BufWriter::new(file);
    write(&mut out)?;
    out.flush().map_err(|e| BundleError::Write(format!("{}: {e}", path.display())))?;
    Ok(path)
}

/// Writes the bundle of the session folder `folder` to `out`, a file (a zip seeks).
pub fn write(
    folder: &Path,
    key: &PublicKey,
    archive: Archive,
    out: impl Write + std::io::Seek,
) -> Result<(), BundleError> {
    let bundle = Prepared::new(folder, key)?;
    let written = match archive {
        Archive::Tar => tar_entries(&bundle.entries, out).map_err(|e| e.to_string()),
        Archive::Zip => zip_entries(&bundle.entries, out).map_err(|e| e.to_string()),
    };
    written.map_err(BundleError::Write)
}

/// Writes the bundle as a tar to `out` as it goes (standard output, over ssh).
pub fn write_tar(folder: &Path, key: &PublicKey, out: impl Write) -> Result<(), BundleError> {
    let bundle = Prepared::new(folder, key)?;
    tar_entries(&bundle.entries, out).map_err(|e| BundleError::Write(e.to_string()))
}

/// The bundle's files, with the generated ones that grow with the recording (the page
/// and the transcript) written to a temporary folder that lives as long as this.
struct Prepared {
    entries: Vec<Entry>,
    _spool: tempfile::TempDir,
}

impl Prepared {
    fn new(folder: &Path, key: &PublicKey) -> Result<Prepared, BundleError> {
        if PLAYER_JS.is_empty() {
            return Err(BundleError::NoPlayer(PLAYER_MISSING));
        }
        let id = folder.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_else(|| "session".into());
        let root = format!("chaperone-{id}");
        let key_line = key.to_openssh().map_err(|e| BundleError::Write(e.to_string()))?;
        let fingerprint = crate::keys::fingerprint(key);
        let meta = session_json(folder);
        let spool = tempfile::tempdir().map_err(|e| BundleError::Write(format!("a temporary folder: {e}")))?;
        let player = spooled(spool.path(), "player.html", |out| player_html(folder, &id, &meta, out))?;
        let transcript = spooled(spool.path(), "transcript.txt", |out| transcript(folder, &id, &meta, out))?;
        let mut entries = vec![
            Entry::bytes(format!("{root}/README.txt"), readme(&id, &fingerprint, &meta).into_bytes()),
            Entry::file(format!("{root}/player.html"), player),
            Entry::file(format!("{root}/transcript.txt"), transcript),
            Entry::bytes(format!("{root}/signing_ed25519.pub"), format!("{key_line}\n").into_bytes()),
        ];
        let files =
            evidence_files(folder).map_err(|source| BundleError::Read { path: folder.to_path_buf(), source })?;
        for (name, _) in files {
            entries.push(Entry::file(format!("{root}/{id}/{name}"), folder.join(&name)));
        }
        Ok(Prepared { entries, _spool: spool })
    }
}

fn tar_entries(entries: &[Entry], out: impl Write) -> std::io::Result<()> {
    let mut tar = tar::Builder::new(out);
    let mtime = chrono::Utc::now().timestamp().max(0) as u64;
    for e in entries {
        let mut header = tar::Header::new_ustar();
        header.set_mode(0o644);
        header.set_mtime(mtime);
        header.set_entry_type(tar::EntryType::Regular);
        match &e.source {
            Source::Bytes(bytes) => {
                header.set_size(bytes.len() as u64);
                tar.append_data(&mut header, &e.name, &bytes[..])?;
            }
            Source::File(path) => {
                // The length read once: a file still growing (a live session's
                // recording) is taken up to it, as the header says.
                let file = open(path)?;
                let len = file.metadata()?.len();
                header.set_size(len);
                tar.append_data(&mut header, &e.name, std::io::Read::take(file, len))?;
            }
        }
    }
    tar.into_inner()?.flush()
}

fn zip_entries(entries: &[Entry], out: impl Write + std::io::Seek) -> zip::result::ZipResult<()> {
    let mut zip = zip::ZipWriter::new(out);
    let options = zip::write::SimpleFileOptions::default()
        .compression_method(zip::CompressionMethod::Deflated)
        .unix_permissions(0o644);
    for e in entries {
        // Already compressed recordings are stored as they are.
        let options =
            if e.name.ends_with(".zst") { options.compression_method(zip::CompressionMethod::Stored) } else { options };
        zip.start_file(e.name.as_str(), options)?;
        e.copy_to(&mut zip)?;
    }
    zip.finish()?.flush()?;
    Ok(())
}

/// `session.json` of the folder, or an empty object if it cannot be read (the bundle is
/// still made; `verify` tells what is wrong with the folder).
fn session_json(folder: &Path) -> Value {
    read_bounded(&folder.join("session.json"), MAX_SESSION_JSON)
        .and_then(|b| serde_json::from_slice(&b).ok())
        .unwrap_or(Value::Object(Default::default()))
}

/// Largest `session.json` read: chaperone's are a few KiB (a channel is a few lines).
pub const MAX_SESSION_JSON: u64 = 1024 * 1024;

/// Largest `plan.md` put in the page: plans are pages of text; the file in the folder,
/// whatever its size, is in the bundle as it is.
const MAX_PLAN: u64 = 16 * 1024 * 1024;

/// A small file of the folder, if it is at most `limit` bytes (a larger one, not what
/// chaperone wrote, is not read into memory).
pub fn read_bounded(path: &Path, limit: u64) -> Option<Vec<u8>> {
    use std::io::Read;
    let mut bytes = Vec::new();
    std::fs::File::open(path).ok()?.take(limit + 1).read_to_end(&mut bytes).ok()?;
    (bytes.len() as u64 <= limit).then_some(bytes)
}

fn field(meta: &Value, name: &str) -> String {
    match &meta[name] {
        Value::String(s) => s.clone(),
        Value::Null => "-".into(),
        other => other.to_string(),
    }
}

/// The facts at the top of the transcript and beside the player.
fn facts(meta: &Value) -> Vec<(&'static str, String)> {
    vec![
        ("Vendor", field(meta, "vendor")),
        ("Target", field(meta, "target")),
        ("Account", field(meta, "account")),
        ("Booking", field(meta, "booking")),
        ("Connected from", field(meta, "client_address")),
        ("Started", field(meta, "start")),
        ("Ended", field(meta, "end")),
        ("State", field(meta, "state")),
        ("Exit status", field(meta, "exit_status")),
    ]
}

/// The plain-text transcript: per channel, the commands typed, the markers and the
/// output lines (escape sequences removed), each with its offset from the start. Two
/// passes per recording: the first keeps the (small) typed commands and markers, the
/// second streams the output.
fn transcript(folder: &Path, id: &str, meta: &Value, out: &mut dyn Write) -> Result<(), BundleError> {
    let failed = |e: std::io::Error| BundleError::Write(format!("transcript: {e}"));
    let mut head = format!("Transcript of chaperone session {id}\n\n");
    for (name, value) in facts(meta) {
        head.push_str(&format!("{:<16}{value}\n", format!("{name}:")));
    }
    head.push_str(
        "\nTimes are offsets from the start of each recording (HH:MM:SS). This text is derived from\n\
         the recordings for reading; the sealed recordings in the session folder are the evidence.\n",
    );
    out.write_all(head.as_bytes()).map_err(failed)?;
    for (n, path) in cast_files(folder).iter().enumerate() {
        let mut reader = CastReader::open(path)?;
        let file = path.file_name().map(|f| f.to_string_lossy().into_owned()).unwrap_or_default();
        let command = reader.header.command.as_ref().map(|c| format!(": {c}")).unwrap_or_default();
        writeln!(out, "\n=== Channel {} ({file}){command} ===", n + 1).map_err(failed)?;
        // The typed commands are written as they come; the markers are kept for their
        // section (a session has tens; a crafted recording's millions are counted).
        writeln!(out, "\n--- Commands typed ---").map_err(failed)?;
        let (mut markers, mut more_markers) = (Vec::new(), 0usize);
        text::each_line(&mut reader, |kind, line| match kind {
            text::Kind::Typed => writeln!(out, "{}  {}", clock(line.time_ms), line.text),
            text::Kind::Marker if markers.len() < MAX_MARKERS => {
                markers.push(line);
                Ok(())
            }
            text::Kind::Marker => {
                more_markers += 1;
                Ok(())
            }
            text::Kind::Output => Ok(()),
        })
        .map_err(failed)?;
        writeln!(out, "\n--- Markers ---").map_err(failed)?;
        for line in &markers {
            writeln!(out, "{}  {}", clock(line.time_ms), line.text).map_err(failed)?;
        }
        if more_markers > 0 {
            writeln!(out, "(and {more_markers} more markers)").map_err(failed)?;
        }
        writeln!(out, "\n--- Output ---").map_err(failed)?;
        let mut reader = CastReader::open(path)?;
        text::each_line(&mut reader, |kind, line| match kind {
            text::Kind::Output => writeln!(out, "{}  {}", clock(line.time_ms), line.text),
            _ => Ok(()),
        })
        .map_err(failed)?;
        let problems = reader.problems();
        if reader.truncated || !problems.is_empty() {
            writeln!(out, "\n--- Not read ---").map_err(failed)?;
        }
        if reader.truncated {
            writeln!(out, "The recording ends early (the session was cut short).").map_err(failed)?;
        }
        for problem in problems {
            writeln!(out, "Skipped, damaged: {problem}").map_err(failed)?;
        }
    }
    Ok(())
}

/// Markers a channel's transcript lists, at most (see [`transcript`]).
const MAX_MARKERS: usize = 10_000;

fn readme(id: &str, fingerprint: &str, meta: &Value) -> String {
    format!(
        "\
Evidence bundle of chaperone session {id}
(vendor {vendor}, target {target}, account {account}, booking {booking}, started {start})

What is here
  {id}/                  the session folder exactly as the bastion sealed it:
    session.cast.zst     the recording (asciicast v3, zstd-compressed; more channels: session.N.cast.zst)
    session.json         who, where, when, how it ended
    plan.md              the session plan as the parties acknowledged it
    acknowledgements.json, ack-*.sig   who acknowledged the plan, with their SSH signatures
    mail-*.eml           copies of the confirmation mails
    audit.jsonl          the audit entries of the booking and the session
    seal                 signed checkpoints over all of the above
  signing_ed25519.pub    the bastion's signing public key
  transcript.txt         the output and the typed commands as plain text, for reading
  player.html            open it in a browser to replay the session beside its plan (offline)

First compare the key. The key in this bundle proves nothing by itself: compare its
fingerprint with the one the provider published (`chaperone keys` on the bastion prints it):

  ssh-keygen -lf signing_ed25519.pub
  expected: {fingerprint}

Verify with chaperone (anywhere; no database needed):

  chaperone recordings verify {id} --key signing_ed25519.pub

It lists what is intact, or names the file, byte range and checkpoint that is not.

Verify by hand (OpenSSH, coreutils and jq). Each line of {id}/seal is a JSON object:
`signed` is the text the signature covers,
  chaperone-seal-v1 SESSION N FILE LENGTH SHA256 TIME
and `signature` is an SSH signature (namespace chaperone-seal) of exactly that text.
For each line: check the signature, then that the first LENGTH bytes of FILE hash to SHA256:

  cd {id}
  echo \"bastion $(cat ../signing_ed25519.pub)\" > ../allowed_signers
  n=0
  while IFS= read -r line; do
    n=$((n+1))
    printf '%s' \"$line\" | jq -j .signed > /tmp/signed.txt
    printf '%s' \"$line\" | jq -r .signature > /tmp/sig.txt
    ssh-keygen -Y verify -f ../allowed_signers -I bastion -n chaperone-seal \\
        -s /tmp/sig.txt < /tmp/signed.txt >/dev/null || echo \"checkpoint $n: BAD SIGNATURE\"
    set -- $(cat /tmp/signed.txt)
    [ \"$(head -c \"$5\" \"$4\" | sha256sum | cut -d' ' -f1)\" = \"$6\" ] || echo \"checkpoint $n: $4 differs\"
  done < seal

No output means every checkpoint holds. Each file's last checkpoint covers it in full (a
recording's is that of its last frame; the other files' were written when the session
ended); compare its LENGTH with `ls -l`. A
recording cut short by a crash is sealed up to its last checkpoint and then marked
`interrupted` in session.json.

The plan's acknowledgements can be checked the same way: acknowledgements.json names each
party's key; `ssh-keygen -Y verify -n chaperone-plan -s ack-N-PARTY.sig` against plan.md.

Replay: open player.html (keys: space play/pause, ←/→ seek, [ and ] markers), or on a
machine with chaperone: `chaperone replay {id}`; with asciinema:
`zstd -dc {id}/session.cast.zst | asciinema play -` (asciinema 3 reads asciicast v3).
",
        vendor = field(meta, "vendor"),
        target = field(meta, "target"),
        account = field(meta, "account"),
        booking = field(meta, "booking"),
        start = field(meta, "start"),
    )
}

/// The offline player: the page template with the player's JS and CSS, the session's
/// facts and plan, and every channel's recording gzip-compressed in base64, encoded on
/// the way out.
fn player_html(folder: &Path, id: &str, meta: &Value, out: &mut dyn Write) -> Result<(), BundleError> {
    let plan = read_bounded(&folder.join("plan.md"), MAX_PLAN)
        .map(|bytes| String::from_utf8_lossy(&bytes).into_owned())
        .unwrap_or_else(|| "(no plan.md in the folder, or larger than 16 MiB: see the folder)".into());
    let mut facts_html = String::new();
    for (name, value) in facts(meta) {
        facts_html.push_str(&format!("<dt>{}</dt><dd>{}</dd>\n", name, escape_html(&value)));
    }
    let css = PLAYER_CSS.replace("</style", "<\\/style");
    let js = PLAYER_JS.replace("</script", "<\\/script");
    let values = [
        ("ID", escape_html(id)),
        ("FACTS", facts_html),
        ("PLAN", escape_html(&plan)),
        ("PLAYER_CSS", css),
        ("PLAYER_JS", js),
    ];
    // Each opened once first, so that a recording that cannot be read fails the bundle as
    // such; then one at a time as the page is written.
    let paths = cast_files(folder);
    for path in &paths {
        CastReader::open(path)?;
    }
    fill(PAGE, out, &mut |name, out| {
        if name == "CASTS" {
            return casts(&paths, out).map(|()| true);
        }
        match values.iter().find(|(k, _)| *k == name) {
            Some((_, value)) => out.write_all(value.as_bytes()).map(|()| true),
            None => Ok(false),
        }
    })
    .map_err(|e| BundleError::Write(format!("player.html: {e}")))
}

/// Each channel's recording as asciicast v3, gzip-compressed and base64-encoded into a
/// `<script>` element.
fn casts(paths: &[PathBuf], out: &mut dyn Write) -> std::io::Result<()> {
    for (n, path) in paths.iter().enumerate() {
        let mut reader = CastReader::open(path).map_err(|e| std::io::Error::other(e.to_string()))?;
        let label = path.file_name().map(|f| f.to_string_lossy().into_owned()).unwrap_or_default();
        let open = format!(
            "<script type=\"application/gzip;base64\" class=\"cast\" data-label=\"Channel {} ({})\">",
            n + 1,
            escape_html(&label)
        );
        out.write_all(open.as_bytes())?;
        {
            let mut base64 = base64::write::EncoderWriter::new(&mut *out, &base64::engine::general_purpose::STANDARD);
            let mut gz = flate2::write::GzEncoder::new(&mut base64, flate2::Compression::default());
            export::write_asciicast(&mut reader, export::Format::V3, &mut gz)?;
            gz.finish()?;
            base64.finish()?;
        }
        out.write_all(b"</script>\n")?;
    }
    Ok(())
}

/// Writes the template with each `{{NAME}}` replaced by what `value` writes for it (it
/// returns false for a name it does not know, which stays as it is), in one pass, so that
/// a value containing a placeholder (a plan mentioning `{{CASTS}}`) stays as it is.
fn fill(
    template: &str,
    out: &mut dyn Write,
    value: &mut dyn FnMut(&str, &mut dyn Write) -> std::io::Result<bool>,
) -> std::io::Result<()> {
    let mut rest = template;
    while let Some(start) = rest.find("{{") {
        out.write_all(&rest.as_bytes()[..start])?;
        let after = &rest[start + 2..];
        let filled = match after.find("}}") {
            Some(end) if value(&after[..end], out)? => Some(end),
            _ => None,
        };
        match filled {
            Some(end) => rest = &after[end + 2..],
            None => {
                out.write_all(b"{{")?;
                rest = after;
            }
        }
    }
    out.write_all(rest.as_bytes())
}

fn escape_html(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn html_is_escaped_and_archives_are_named_by_extension() {
        assert_eq!(escape_html("<script>\"a\" & 'b'"), "&lt;script&gt;&quot;a&quot; &amp; &#39;b&#39;");
        assert_eq!(Archive::from_path(Path::new("x.tar")), Some(Archive::Tar));
        assert_eq!(Archive::from_path(Path::new("x.zip")), Some(Archive::Zip));
        assert_eq!(Archive::from_path(Path::new("x.tgz")), None);
        let mut page = Vec::new();
        fill("a {{X}} b {{Y}} {{Z}} {{", &mut page, &mut |name, out| match name {
            "X" => out.write_all(b"{{Y}}").map(|()| true),
            "Y" => out.write_all(b"y").map(|()| true),
            _ => Ok(false),
        })
        .unwrap();
        assert_eq!(String::from_utf8(page).unwrap(), "a {{Y}} b y {{Z}} {{");
    }
}
