//! `recordings …`: list sessions, print one's output, export it as plain asciicast.

use std::io::Write;
use std::path::{Path, PathBuf};

use super::{Ctx, ON_THE_BASTION};
use crate::UserError;
use crate::cli::RecordingsCommand;
use crate::config::Config;
use crate::recording::{self, bundle, export, reader::CastReader, text};
use crate::store::Store;

pub fn run(ctx: &mut Ctx<'_>, cmd: RecordingsCommand) -> anyhow::Result<()> {
    let (config, store) = (ctx.config, ctx.store);
    let over_ssh = ctx.caller.technician().is_some();
    let out = &mut *ctx.out;
    let err = &mut *ctx.err;
    let hangup = &ctx.hangup;
    let tty = ctx.tty;
    match cmd {
        RecordingsCommand::List => {
            let sessions = store.session_list()?;
            if sessions.is_empty() {
                say!(out, "no recorded sessions");
            }
            for s in sessions {
                let end = s.ended_at.map(|e| e.format("%H:%M:%S").to_string()).unwrap_or_else(|| "-".into());
                let exit = s.exit_status.map(|e| e.to_string()).unwrap_or_else(|| "-".into());
                say!(
                    out,
                    "{}  {}  {:>8}  {:<7} {}@{} as {}  exit {}  in {} B  out {} B",
                    s.id,
                    s.started_at.format("%Y-%m-%d %H:%M:%S"),
                    end,
                    s.state,
                    s.vendor,
                    s.target,
                    s.account,
                    exit,
                    s.bytes_in,
                    s.bytes_out
                );
            }
        }
        RecordingsCommand::Cat { id, channel, raw } => {
            let folder = find_folder(config, store, &id, over_ssh)?;
            let files = select(&folder, channel)?;
            // On a terminal without the control strings a vendor's output may hold (as in
            // `watch` and `replay`); into a local pipe or file byte for byte. Over ssh
            // without a pty the caller's stdout is as likely their terminal as a file:
            // byte for byte only when asked for.
            let sanitize = !raw && (tty || over_ssh);
            let mut shown = crate::sanitize::SanitizingWriter::new(out);
            let out: &mut dyn Write = if sanitize { &mut shown } else { out };
            let mut out = std::io::BufWriter::new(out);
            let mut damaged = 0;
            for path in files {
                let mut reader = CastReader::open(&path)?;
                export::write_output(&mut reader, !sanitize, &mut out)?;
                out.flush()?;
                damaged += report_reading(&reader, err);
            }
            out.flush()?;
            fail_if_damaged(damaged)?;
        }
        RecordingsCommand::Search { pattern, vendor, target, since } => {
            let needle = pattern.to_lowercase();
            let mut found = 0;
            // Recordings that could not be read, or only in part: each gets a warning, the
            // search goes on, and the exit status says that it saw less than all.
            let mut unreadable = 0;
            for s in store.session_list()? {
                let wanted = vendor.as_ref().is_none_or(|v| v == &s.vendor)
                    && target.as_ref().is_none_or(|t| t == &s.target)
                    && since.is_none_or(|d| s.started_at.date_naive() >= d);
                if !wanted {
                    continue;
                }
                for path in recording::cast_files(Path::new(&s.folder)) {
                    let mut show = |kind: &str, line: &text::Line| {
                        if line.text.to_lowercase().contains(&needle) {
                            found += 1;
                            say!(
                                out,
                                "{}  {}  {}@{}  {kind}: {}",
                                s.id,
                                text::clock(line.time_ms),
                                s.vendor,
                                s.target,
                                crate::sanitize::printable_line(&line.text)
                            );
                        }
                    };
                    let mut reader = match CastReader::open(&path) {
                        Ok(reader) => reader,
                        Err(e) => {
                            let _ = writeln!(err, "chaperone: warning: session {}: {e}; skipped", s.id);
                            unreadable += 1;
                            continue;
                        }
                    };
                    // Lines are matched as they are read, none held; a technician who
                    // leaves stops the search.
                    text::each_line(&mut reader, |kind, line| {
                        match kind {
                            text::Kind::Output => show("output", &line),
                            text::Kind::Typed => show("typed", &line),
                            text::Kind::Marker => {}
                        }
                        if hangup.happened() { Err(anyhow::anyhow!("the caller went away")) } else { Ok(()) }
                    })?;
                    if report_reading(&reader, err) > 0 {
                        unreadable += 1;
                    }
                }
            }
            if found == 0 {
                say!(out, "no match for {pattern:?}");
            }
            if unreadable > 0 {
                out.flush()?;
                anyhow::bail!(
                    "{unreadable} recording(s) could not be read in full; the search did not see all of them"
                );
            }
        }
        RecordingsCommand::Commands { id } => {
            let folder = find_folder(config, store, &id, over_ssh)?;
            let mut damaged = 0;
            for path in select(&folder, None)? {
                let mut reader = CastReader::open(&path)?;
                // Printed as they come, none held (a crafted recording may have millions).
                text::each_line(&mut reader, |kind, line| {
                    if kind == text::Kind::Typed {
                        // What the vendor typed may hold bidi overrides (the rest of the controls are
                        // gone already): shown escaped, it reads as what ran.
                        writeln!(
                            out,
                            "{}  {}",
                            text::clock(line.time_ms),
                            crate::sanitize::printable_line(&line.text)
                        )?;
                    }
                    if hangup.happened() { Err(anyhow::anyhow!("the caller went away")) } else { Ok(()) }
                })?;
                out.flush()?;
                damaged += report_reading(&reader, err);
            }
            fail_if_damaged(damaged)?;
        }
        RecordingsCommand::Verify { id, key } => {
            let folder = find_folder(config, store, &id, over_ssh)?;
            let key = signing_key(config, key, over_ssh)?;
            let report = crate::recording::seal::verify(&folder, &key);
            for (file, bytes) in &report.intact {
                say!(out, "sealed: {} ({bytes} bytes)", crate::recording::seal::printable(file));
            }
            for problem in &report.problems {
                let _ = writeln!(err, "NOT INTACT: {problem}");
            }
            if !report.problems.is_empty() {
                anyhow::bail!("{}: {} problem(s) found", folder.display(), report.problems.len());
            }
            say!(
                out,
                "intact: {} checkpoints verified with signing key {}",
                report.checkpoints,
                crate::keys::fingerprint(&key)
            );
        }
        RecordingsCommand::Export { id, bundle: Some(bundle), key, .. } => {
            let folder = find_folder(config, store, &id, over_ssh)?;
            let key = signing_key(config, key, over_ssh)?;
            write_bundle(&folder, &key, &bundle, over_ssh, out, err)?;
        }
        RecordingsCommand::Export { id, format, output, channel, key, raw_output, raw_stderr, raw_input, .. } => {
            let raw = [
                (export::Stream::Stdout, raw_output),
                (export::Stream::Stderr, raw_stderr),
                (export::Stream::Input, raw_input),
            ]
            .into_iter()
            .find_map(|(stream, dest)| dest.map(|dest| (stream, dest)));
            if let Some((stream, dest)) = raw {
                let folder = find_folder(config, store, &id, over_ssh)?;
                let key = signing_key(config, key, over_ssh)?;
                return write_raw(&folder, channel, stream, &dest, &key, over_ssh, out, err);
            }
            let output = output.unwrap_or_else(|| PathBuf::from("-"));
            let folder = find_folder(config, store, &id, over_ssh)?;
            let path = channel_file(&folder, channel)?;
            let mut reader = CastReader::open(&path)?;
            if output == Path::new("-") {
                let mut out = std::io::BufWriter::new(out);
                export::write_asciicast(&mut reader, format, &mut out)?;
                out.flush()?;
            } else if over_ssh {
                return Err(UserError("over ssh, export to standard output: -o - > FILE".into()).into());
            } else {
                let file = std::fs::File::create(&output)
                    .map_err(|e| anyhow::anyhow!("cannot create {}: {e}", output.display()))?;
                let mut out = std::io::BufWriter::new(file);
                export::write_asciicast(&mut reader, format, &mut out)?;
                out.flush()?;
                let _ = writeln!(err, "wrote {}", output.display());
            }
            fail_if_damaged(report_reading(&reader, err))?;
        }
    }
    Ok(())
}

/// The key a seal is checked against: `--key` (over ssh the key's line itself, never a
/// file of the bastion's), or this bastion's own signing key.
fn signing_key(config: &Config, key: Option<String>, over_ssh: bool) -> anyhow::Result<russh::keys::PublicKey> {
    Ok(match key {
        // Parsed as text only: not even a file's existence is looked up for the caller.
        Some(k) if over_ssh => crate::keys::parse_public_key(&k).map_err(|e| {
            UserError(format!("{ON_THE_BASTION}: give --key the key's line (\"ssh-ed25519 AAAA…\"): {e}"))
        })?,
        Some(k) => crate::keys::read_public_key(&k)?,
        None => {
            let own = config.keys_dir().join("signing_ed25519.pub");
            crate::keys::read_public_key(&own.display().to_string())
                .map_err(|_| UserError("no signing key here; give the bastion's public key with --key".into()))?
        }
    })
}

/// Verifies the folder (a bundle of a folder that does not verify is still written, with
/// a warning: it is what there is), then writes the bundle to a file or, as a tar, to
/// standard output.
fn write_bundle(
    folder: &Path,
    key: &russh::keys::PublicKey,
    path: &Path,
    over_ssh: bool,
    out: &mut dyn Write,
    err: &mut dyn Write,
) -> anyhow::Result<()> {
    let to_stdout = path == Path::new("-");
    let archive = match (to_stdout, bundle::Archive::from_path(path)) {
        (true, _) => bundle::Archive::Tar,
        (false, Some(a)) => a,
        (false, None) => return Err(UserError(format!("{}: a bundle is a .tar or a .zip", path.display())).into()),
    };
    if over_ssh && !to_stdout {
        return Err(UserError("over ssh, write the bundle to standard output: --bundle - > FILE.tar".into()).into());
    }
    let report = crate::recording::seal::verify(folder, key);
    if report.problems.is_empty() {
        let _ = writeln!(err, "{}: intact ({} checkpoints)", folder.display(), report.checkpoints);
    } else {
        let _ = writeln!(
            err,
            "chaperone: warning: {} does NOT verify ({} problem(s), see `recordings verify`); bundling it as it is",
            folder.display(),
            report.problems.len()
        );
    }
    if to_stdout {
        bundle::write_tar(folder, key, &mut *out)?;
        out.flush()?;
        return Ok(());
    }
    // Written beside the destination and renamed, so that a failure leaves no half bundle.
    let partial = PathBuf::from(format!("{}.partial", path.display()));
    let file =
        std::fs::File::create(&partial).map_err(|e| UserError(format!("cannot create {}: {e}", partial.display())))?;
    let written = bundle::write(folder, key, archive, std::io::BufWriter::new(file));
    if let Err(e) = written {
        let _ = std::fs::remove_file(&partial);
        return Err(e.into());
    }
    std::fs::rename(&partial, path).map_err(|e| UserError(format!("cannot write {}: {e}", path.display())))?;
    let _ = writeln!(err, "wrote {}", path.display());
    Ok(())
}

/// `recordings export --raw-…`: one stream of a channel, byte for byte, once the folder's
/// seal verifies (bytes of an altered recording are not handed out as what was sent). A
/// file is written beside its name and renamed, so that a failure leaves none.
#[allow(clippy::too_many_arguments)]
fn write_raw(
    folder: &Path,
    channel: usize,
    stream: export::Stream,
    dest: &Path,
    key: &russh::keys::PublicKey,
    over_ssh: bool,
    out: &mut dyn Write,
    err: &mut dyn Write,
) -> anyhow::Result<()> {
    let flag = match stream {
        export::Stream::Stdout => "--raw-output",
        export::Stream::Stderr => "--raw-stderr",
        export::Stream::Input => "--raw-input",
    };
    let to_stdout = dest == Path::new("-");
    if over_ssh && !to_stdout {
        return Err(UserError(format!("over ssh, export to standard output: {flag} - > FILE")).into());
    }
    let report = crate::recording::seal::verify(folder, key);
    if !report.problems.is_empty() {
        for problem in &report.problems {
            let _ = writeln!(err, "NOT INTACT: {problem}");
        }
        anyhow::bail!(
            "{}: the seal does not verify ({} problem(s)); its bytes are not exported",
            folder.display(),
            report.problems.len()
        );
    }
    let path = channel_file(folder, channel)?;
    let mut reader = CastReader::open(&path)?;
    if reader.header.exact_bytes.is_none() {
        let _ = writeln!(
            err,
            "chaperone: note: {} was recorded before exact bytes were kept: bytes that were not UTF-8 are U+FFFD in it, \
             and its output holds stderr too",
            path.display()
        );
    }
    let what = |e: export::ExportError| anyhow::anyhow!("{}: {e}", path.display());
    if to_stdout {
        let mut out = std::io::BufWriter::new(out);
        export::write_stream(&mut reader, stream, &mut out).map_err(what)?;
        out.flush()?;
    } else {
        let partial = PathBuf::from(format!("{}.partial", dest.display()));
        let file = std::fs::File::create(&partial)
            .map_err(|e| UserError(format!("cannot create {}: {e}", partial.display())))?;
        let mut file = std::io::BufWriter::new(file);
        let written = export::write_stream(&mut reader, stream, &mut file).map_err(what).and_then(|n| {
            file.flush().map(|_| n).map_err(|e| anyhow::anyhow!("cannot write {}: {e}", partial.display()))
        });
        let n = match written {
            Ok(n) => n,
            Err(e) => {
                let _ = std::fs::remove_file(&partial);
                return Err(e);
            }
        };
        std::fs::rename(&partial, dest).map_err(|e| UserError(format!("cannot write {}: {e}", dest.display())))?;
        let _ = writeln!(err, "wrote {} ({n} bytes)", dest.display());
    }
    fail_if_damaged(report_reading(&reader, err))
}

/// Tells what a reader found besides events: an end cut short by a crash (a note), and
/// each damaged frame or line it skipped (a warning saying where). Returns how many were
/// skipped.
fn report_reading(reader: &CastReader, err: &mut dyn Write) -> usize {
    if reader.truncated {
        let _ = writeln!(
            err,
            "chaperone: note: {} ends early (the session was cut short); everything up to the last complete event was read",
            reader.path().display()
        );
    }
    for problem in reader.problems() {
        let _ = writeln!(err, "chaperone: warning: {}: {problem}", reader.path().display());
    }
    reader.damage_count()
}

/// Fails (exit status 1) after the whole output was written, when damaged places were
/// skipped: what was shown is not the whole record.
pub(super) fn fail_if_damaged(damaged: usize) -> anyhow::Result<()> {
    if damaged > 0 {
        anyhow::bail!(
            "{damaged} damaged place(s) of the recording skipped (see the warnings above); the rest was read"
        );
    }
    Ok(())
}

/// The recording files to read: one channel, or all of them in order.
pub(super) fn select(folder: &Path, channel: Option<usize>) -> anyhow::Result<Vec<PathBuf>> {
    let files = recording::cast_files(folder);
    if files.is_empty() {
        return Err(UserError(format!("no recording in {}", folder.display())).into());
    }
    match channel {
        None => Ok(files),
        Some(n) if n >= 1 && n <= files.len() => Ok(vec![files[n - 1].clone()]),
        Some(n) => {
            Err(UserError(format!("channel {n} does not exist; the session has {} channel(s)", files.len())).into())
        }
    }
}

/// The recording file of one channel (1-based).
pub(super) fn channel_file(folder: &Path, channel: usize) -> anyhow::Result<PathBuf> {
    let [path] = select(folder, Some(channel))?.try_into().map_err(|_| UserError("no such channel".into()))?;
    Ok(path)
}

/// A session's folder: by a session id from the store, or found under the recordings
/// folder (the store may be gone), or (locally, not over ssh) by the folder's path.
pub(super) fn find_folder(config: &Config, store: &Store, id: &str, over_ssh: bool) -> anyhow::Result<PathBuf> {
    let as_path = Path::new(id);
    if over_ssh && !crate::id::is_session_id(id) {
        return Err(UserError(format!("{ON_THE_BASTION}: give a session id, not {id:?}")).into());
    }
    if as_path.is_dir() {
        return Ok(as_path.to_path_buf());
    }
    if !crate::id::is_session_id(id) {
        return Err(UserError(format!("{id:?} is neither a session id nor a recording folder")).into());
    }
    if let Some(session) = store.session(id)? {
        return Ok(PathBuf::from(session.folder));
    }
    let pattern_root = &config.recordings_dir;
    for year in read_dirs(pattern_root) {
        for month in read_dirs(&year) {
            let candidate = month.join(id);
            if candidate.is_dir() {
                return Ok(candidate);
            }
        }
    }
    Err(UserError(format!("no session {id:?}")).into())
}

fn read_dirs(dir: &Path) -> Vec<PathBuf> {
    let mut dirs: Vec<PathBuf> =
        std::fs::read_dir(dir).into_iter().flatten().flatten().map(|e| e.path()).filter(|p| p.is_dir()).collect();
    dirs.sort();
    dirs
}
