//! Fuzzing harnesses: one plain function per parser that a person or a file feeds, each
//! driving the real parser over arbitrary bytes and checking what must hold whatever the
//! bytes (no panic, bounded work, round trips where there are any, one-line errors).
//!
//! The cargo-fuzz targets in `fuzz/` (nightly) call these, and so does the stable
//! regression test (`tests/fuzzing.rs`), which runs every committed corpus file and crash
//! input through the same functions: `cargo test` keeps what the fuzzer found fixed.
//!
//! A broken invariant is an `assert!`: a panic is how a fuzzer is told. These are test
//! code living in the library only so that both callers share them; nothing else calls
//! them.

use std::io::Write;
use std::path::Path;
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use bytes::Bytes;
use chrono::{DateTime, Utc};
use russh::keys::ssh_key::private::Ed25519Keypair;
use russh::keys::ssh_key::{LineEnding, SshSig};
use russh::keys::{HashAlg, PrivateKey};

use crate::config::{Config, RecordingConfig};
use crate::recording::asciicast::{Header, Term, push_event};
use crate::recording::encoder::Encoder;
use crate::recording::reader::{CastEvent, CastReader};
use crate::recording::replay::{IndexKey, Replay, SeekIndex, index_path};
use crate::recording::seal::{self, Checkpoint, Covered};
use crate::recording::{Event, FIRST_CAST};
use crate::sanitize::Sanitizer;

/// A harness: arbitrary bytes in, a panic when an invariant breaks.
pub type Harness = fn(&[u8]);

/// The targets by name, as `fuzz/fuzz_targets/` and `fuzz/corpus/` name them.
pub const TARGETS: [(&str, Harness); 8] = [
    ("cast_reader", cast_reader),
    ("seal", seal_lines),
    ("seek_index", seek_index),
    ("plan", plan_text),
    ("config", config_toml),
    ("console", console_words),
    ("sanitize", sanitize),
    ("keys", key_text),
];

/// Most events a harness reads from one recording: far more than any input of the
/// fuzzer's size can hold in plain text; a zstd input that decodes to more is cut here so
/// that one input stays fast.
const MAX_EVENTS: usize = 100_000;

/// A fixed signing key (from a fixed seed, so runs are reproducible), for seal lines and
/// plan signatures the fuzzer cannot forge itself: it signs what the fuzzer wrote, so the
/// code behind the signature check is reached too.
fn signing_key() -> &'static PrivateKey {
    static KEY: OnceLock<PrivateKey> = OnceLock::new();
    KEY.get_or_init(|| PrivateKey::from(Ed25519Keypair::from_seed(&[7u8; 32])))
}

/// A scratch folder for one input's files (the parsers read files).
fn scratch() -> Option<tempfile::TempDir> {
    tempfile::Builder::new().prefix("chaperone-fuzz").tempdir().ok()
}

fn text(data: &[u8]) -> std::borrow::Cow<'_, str> {
    String::from_utf8_lossy(data)
}

/// Cut points for feeding `len` bytes in chunks, from the seed bytes: the same input
/// always splits the same way.
fn splits(seed: &[u8], len: usize) -> Vec<usize> {
    let mut cuts: Vec<usize> = seed.iter().map(|&b| usize::from(b) * len / 255).collect();
    cuts.push(len);
    cuts.sort_unstable();
    cuts.dedup();
    cuts
}

// ---------------------------------------------------------------------------------------
// asciicast reader

/// The asciicast reader over arbitrary bytes. The first byte chooses how they reach it:
/// as a plain `.cast`, as raw bytes named `.cast.zst` (the zstd decoder on garbage), as
/// valid zstd frames around the text (the line parser behind the decoder, which must
/// agree with the plain reading and with replay's own frame reader), or as events to
/// write and read back (the writer→reader round trip, line by line and via the encoder).
pub fn cast_reader(data: &[u8]) {
    let Some((&mode, body)) = data.split_first() else { return };
    match mode % 5 {
        0 => {
            let Some(dir) = scratch() else { return };
            let events = read_cast(&dir.path().join("a.cast"), body);
            if let Ok((_, events, _)) = &events {
                let lines = body.iter().filter(|&&b| b == b'\n').count();
                assert!(events.len() < lines.max(1), "more events than lines");
            }
        }
        1 => {
            let Some(dir) = scratch() else { return };
            let _ = read_cast(&dir.path().join(FIRST_CAST), body);
        }
        2 => framed_agrees_with_plain(body),
        3 => lines_round_trip(body),
        _ => encoder_round_trip(body),
    }
}

type Read = (Header, Vec<CastEvent>, bool);

/// Writes `bytes` at `path` and reads them with [`CastReader`], checking what holds for
/// any file: times never go back, each the previous time plus the interval.
fn read_cast(path: &Path, bytes: &[u8]) -> Result<Read, String> {
    std::fs::write(path, bytes).map_err(|e| e.to_string())?;
    let mut reader = CastReader::open(path).map_err(|e| e.to_string())?;
    let mut events = Vec::new();
    let mut previous = 0u64;
    while let Some(event) = reader.next_event() {
        assert!(event.time_ms >= previous, "time went back: {} after {previous}", event.time_ms);
        assert!(event.time_ms <= previous.saturating_add(event.interval_ms), "time beyond previous + interval");
        previous = event.time_ms;
        events.push(event);
        if events.len() >= MAX_EVENTS {
            break;
        }
    }
    Ok((reader.header.clone(), events, reader.truncated))
}

/// `body` compressed as zstd frames, cut after the lines chosen by `seed` (as the
/// recorder cuts them: at line ends).
fn frames_at_lines(body: &[u8], seed: u8) -> Vec<u8> {
    let mut out = Vec::new();
    let mut start = 0;
    let mut line = 0usize;
    for (i, &b) in body.iter().enumerate() {
        if b == b'\n' {
            line += 1;
            if seed != 0 && line % usize::from(seed) == 0 {
                out.extend(zstd::encode_all(&body[start..=i], 1).unwrap_or_default());
                start = i + 1;
            }
        }
    }
    if start < body.len() || out.is_empty() {
        out.extend(zstd::encode_all(&body[start..], 1).unwrap_or_default());
    }
    out
}

/// The same text read plain and from zstd frames gives the same header and events; and
/// replay (which reads frame by frame for seeking) sees the same events as the reader
/// when every line is whole.
fn framed_agrees_with_plain(data: &[u8]) {
    let Some((&seed, body)) = data.split_first() else { return };
    let Some(dir) = scratch() else { return };
    let plain = read_cast(&dir.path().join("a.cast"), body);
    let compressed = frames_at_lines(body, seed);
    let cast = dir.path().join(FIRST_CAST);
    let framed = read_cast(&cast, &compressed);
    match (&plain, &framed) {
        (Ok(p), Ok(f)) => {
            assert_eq!(p.0, f.0, "header");
            assert_eq!(p.1, f.1, "events plain vs zstd");
            assert_eq!(p.2, f.2, "truncated plain vs zstd");
        }
        (Err(_), Err(_)) => {}
        _ => {
            fail(format!("plain and zstd readings disagree: {:?} vs {:?}", plain.as_ref().err(), framed.as_ref().err()))
        }
    }
    let (Ok((header, events, truncated)), true) = (framed, body.ends_with(b"\n")) else { return };
    if truncated || events.len() >= MAX_EVENTS {
        return;
    }
    let replay = Replay::open(&cast, Some(index_key()));
    let Ok(replay) = replay else {
        return fail(format!("replay cannot open what the reader reads: {:?}", replay.err()));
    };
    assert_eq!(replay.header, header, "replay's header");
    let replayed: Vec<CastEvent> = replay.events().take(MAX_EVENTS).collect();
    assert_eq!(replayed, events, "replay's events vs the reader's");
}

/// A broken invariant found without an `assert!` to hand.
#[allow(clippy::panic)]
fn fail(message: String) {
    panic!("{message}");
}

/// A small cursor over fuzz bytes for building structured input.
struct Bytes8<'a>(&'a [u8]);

impl<'a> Bytes8<'a> {
    fn byte(&mut self) -> Option<u8> {
        let (&b, rest) = self.0.split_first()?;
        self.0 = rest;
        Some(b)
    }

    fn take(&mut self, n: usize) -> &'a [u8] {
        let (now, rest) = self.0.split_at(n.min(self.0.len()));
        self.0 = rest;
        now
    }
}

/// Events built from the bytes, written as the recorder writes event lines, read back
/// exactly (plain and zstd).
fn lines_round_trip(data: &[u8]) {
    let mut input = Bytes8(data);
    let (Some(cols), Some(rows)) = (input.byte(), input.byte()) else { return };
    let title = text(input.take(8)).into_owned();
    let header = Header::new(Term { cols: cols.into(), rows: rows.into(), kind: None }, 1_700_000_000, None, title);
    let Ok(mut file) = serde_json::to_vec(&header) else { return };
    file.push(b'\n');
    let mut written = Vec::new();
    let mut time_ms = 0u64;
    while let (Some(code), Some(a), Some(b), Some(len)) = (input.byte(), input.byte(), input.byte(), input.byte()) {
        let code = ["o", "i", "m", "r", "x"][usize::from(code) % 5];
        // Up to some 16 s apart: what a recording holds (f64 keeps milliseconds exact).
        let interval_ms = u64::from(u16::from_le_bytes([a, b])) * u64::from(len % 4 + 1);
        let data = text(input.take(usize::from(len))).into_owned();
        push_event(&mut file, interval_ms, code, &data);
        time_ms += interval_ms;
        written.push(CastEvent { time_ms, interval_ms, code: code.to_string(), data });
    }
    let Some(dir) = scratch() else { return };
    for (name, bytes) in [("a.cast", file.clone()), (FIRST_CAST, zstd::encode_all(&file[..], 1).unwrap_or_default())] {
        let read = read_cast(&dir.path().join(name), &bytes);
        let Ok((read_header, events, truncated)) = read else {
            return assert!(read.is_ok(), "{name}: written recording does not read: {:?}", read.err());
        };
        assert_eq!(read_header, header, "{name}: header");
        assert!(!truncated, "{name}: a whole recording reads as cut short");
        assert_eq!(events, written, "{name}: events");
    }
}

/// Output and input in chunks at chosen milliseconds, through the recorder's encoder
/// (merging, UTF-8 carried across chunks, frames): each stream reads back as its bytes
/// decoded with U+FFFD for what is not UTF-8.
fn encoder_round_trip(data: &[u8]) {
    let start = Instant::now();
    let started = DateTime::<Utc>::from_timestamp(1_700_000_000, 0).unwrap_or_default();
    let mut enc = Encoder::new("fuzz".into(), started, RecordingConfig::default(), start, Vec::new());
    let mut input = Bytes8(data);
    let (mut out_bytes, mut in_bytes) = (Vec::new(), Vec::new());
    let mut at = 0u64;
    while let (Some(kind), Some(len)) = (input.byte(), input.byte()) {
        at += u64::from(kind >> 4);
        let when = start + Duration::from_millis(at);
        let chunk = input.take(usize::from(len));
        let event = match kind % 8 {
            0..=3 => {
                out_bytes.extend_from_slice(chunk);
                Event::Output(Bytes::copy_from_slice(chunk))
            }
            4 | 5 => {
                in_bytes.extend_from_slice(chunk);
                Event::Input(Bytes::copy_from_slice(chunk))
            }
            6 => Event::Resize { cols: u32::from(len) * 40, rows: u32::from(kind) },
            _ => Event::Marker(text(chunk).into_owned()),
        };
        if enc.encode(when, event).is_err() {
            return;
        }
        if kind & 8 != 0 && enc.flush().is_err() {
            return;
        }
    }
    let Ok(file) = enc.finish() else { return };
    let Some(dir) = scratch() else { return };
    let read = read_cast(&dir.path().join(FIRST_CAST), &file);
    let Ok((_, events, truncated)) = read else {
        return assert!(read.is_ok(), "the encoder's recording does not read: {:?}", read.err());
    };
    assert!(!truncated, "the encoder's recording reads as cut short");
    let stream = |code: &str| events.iter().filter(|e| e.code == code).map(|e| e.data.as_str()).collect::<String>();
    assert_eq!(stream("o"), String::from_utf8_lossy(&out_bytes), "output stream");
    assert_eq!(stream("i"), String::from_utf8_lossy(&in_bytes), "input stream");
}

// ---------------------------------------------------------------------------------------
// seal

/// Seal lines. The first byte chooses: the bytes as a whole `seal` file, or each line of
/// them as a checkpoint's signed text, signed with [`signing_key`] (what the fuzzer
/// cannot forge), so that what follows the signature check runs too; beside the seal, a
/// file named by the first line. `verify` must report every problem in one line without
/// control characters (they are printed on a terminal) and never read outside the folder.
pub fn seal_lines(data: &[u8]) {
    let Some((&mode, body)) = data.split_first() else { return };
    let key = signing_key();
    let seal_text = if mode % 2 == 0 {
        body.to_vec()
    } else {
        let mut out = Vec::new();
        for signed in text(body).lines() {
            if let Some(c) = Covered::parse(signed) {
                let again =
                    format!("chaperone-seal-v1 {} {} {} {} {} {}", c.session, c.n, c.file, c.length, c.sha256, c.time);
                assert_eq!(Covered::parse(&again), Some(c), "signed text does not parse back");
            }
            let Ok(signature) = key.sign(seal::NAMESPACE, HashAlg::Sha512, signed.as_bytes()) else { return };
            let Ok(signature) = signature.to_pem(LineEnding::LF) else { return };
            let line = serde_json::to_string(&Checkpoint { signed: signed.to_string(), signature });
            out.extend(line.unwrap_or_default().bytes());
            out.push(b'\n');
        }
        out
    };
    let Some(dir) = scratch() else { return };
    let folder = dir.path().join("session");
    if std::fs::create_dir(&folder).is_err() {
        return;
    }
    // Evidence beside the seal, and a file outside the folder a checkpoint could name.
    let written = std::fs::write(folder.join(FIRST_CAST), b"frame one frame two")
        .and_then(|_| std::fs::write(folder.join("session.json"), b"{}\n"))
        .and_then(|_| std::fs::write(dir.path().join("outside"), b"not evidence"))
        .and_then(|_| std::fs::write(folder.join(seal::SEAL_FILE), &seal_text));
    if written.is_err() {
        return;
    }
    // A file someone added, named by the fuzzer: its name is printed among the problems.
    let added: String =
        text(body).lines().next().unwrap_or_default().chars().filter(|&c| c != '/' && c != '\0').take(64).collect();
    if !added.is_empty() && added != "." && added != ".." {
        let _ = std::fs::write(folder.join(&added), b"added");
    }
    let _ = seal::checkpoints(&folder.join(seal::SEAL_FILE));
    let report = seal::verify(&folder, key.public_key());
    for problem in &report.problems {
        assert!(!problem.chars().any(char::is_control), "a problem holds a control character: {problem:?}");
    }
    for (file, _) in &report.intact {
        assert!(!file.contains('/') && file != ".." && !file.is_empty(), "proved a file outside the folder: {file:?}");
    }
    assert!(report.intact.iter().all(|(f, _)| f != "outside"), "a file outside the folder counted as intact");
}

// ---------------------------------------------------------------------------------------
// seek index

/// A real recording (made by the recorder's encoder): several frames, colours, redraws,
/// a resize and markers, for the seek index target to point into.
pub fn sample_recording() -> Vec<u8> {
    let start = Instant::now();
    let started = DateTime::<Utc>::from_timestamp(1_700_000_000, 0).unwrap_or_default();
    let mut enc = Encoder::new("sample".into(), started, RecordingConfig::default(), start, Vec::new());
    let term = Term { cols: 40, rows: 10, kind: None };
    let _ = enc.encode(start, Event::Start { term, command: None });
    for i in 0..120u64 {
        let at = start + Duration::from_millis(i * 700);
        let line = match i % 5 {
            0 => format!("\x1b[2J\x1b[Hscreen {i}\r\n"),
            1 => format!("\x1b[1;3{}mline {i} käse\x1b[0m\r\n", i % 8),
            _ => format!("{}\r\n", "x".repeat((i % 30) as usize)),
        };
        let _ = enc.encode(at, Event::Output(Bytes::from(line)));
        if i == 60 {
            let _ = enc.encode(at, Event::Resize { cols: 60, rows: 12 });
        }
        if i % 40 == 39 {
            let _ = enc.encode(at, Event::Marker(format!("mark {i}")));
        }
        if i % 10 == 9 {
            let _ = enc.flush();
        }
    }
    enc.finish().unwrap_or_default()
}

/// The seek index key the harnesses' replays use (a bastion's, fixed).
fn index_key() -> &'static IndexKey {
    static KEY: OnceLock<IndexKey> = OnceLock::new();
    KEY.get_or_init(|| IndexKey::from_bytes([7; 32]))
}

fn sample() -> &'static [u8] {
    static SAMPLE: OnceLock<Vec<u8>> = OnceLock::new();
    SAMPLE.get_or_init(sample_recording)
}

/// What the index replay builds for the sample names: its version and the recording.
fn sample_index_names() -> Option<&'static (u32, u64, String)> {
    static NAMES: OnceLock<Option<(u32, u64, String)>> = OnceLock::new();
    NAMES
        .get_or_init(|| {
            let dir = scratch()?;
            let cast = dir.path().join(FIRST_CAST);
            std::fs::write(&cast, sample()).ok()?;
            let index = Replay::open(&cast, Some(index_key())).ok()?.index;
            Some((index.version, index.recording_length, index.recording_sha256))
        })
        .as_ref()
}

/// The seek index file over a real recording. Bytes that parse as an index are made to
/// name the recording (length, SHA-256 and version, as an attacker who can write the
/// folder would), so replay trusts them; then seeks to every time they mention must
/// stay within a sane screen and never panic.
pub fn seek_index(data: &[u8]) {
    let Some(dir) = scratch() else { return };
    let cast = dir.path().join(FIRST_CAST);
    if std::fs::write(&cast, sample()).is_err() {
        return;
    }
    let Some((version, length, sha256)) = sample_index_names() else { return };
    let Ok(mut index) = serde_json::from_slice::<SeekIndex>(data) else { return };
    index.version = *version;
    index.recording_length = *length;
    index.recording_sha256 = sha256.clone();
    // Made as the bastion would (its key's MAC), so that replay uses it.
    index.mac = index_key().mac(&index);
    let Ok(bytes) = serde_json::to_vec(&index) else { return };
    if std::fs::write(index_path(&cast), bytes).is_err() {
        return;
    }
    let Ok(replay) = Replay::open(&cast, Some(index_key())) else { return };
    assert_eq!(replay.index.keyframes.len(), index.keyframes.len(), "the planted index was not used");
    let mut times: Vec<u64> = index.keyframes.iter().map(|k| k.time_ms).collect();
    times.extend(index.markers.iter().map(|m| m.time_ms));
    times.extend([0, 1, index.duration_ms, u64::MAX]);
    for time in times.into_iter().take(64) {
        let position = replay.seek(time);
        let max = crate::mirror::MAX_SIDE as usize;
        assert!((1..=max).contains(&position.cols) && (1..=max).contains(&position.rows), "screen size");
        let mut previous = 0;
        for event in position.events.take(1000) {
            assert!(event.time_ms >= previous, "seek's events go back in time");
            previous = event.time_ms;
        }
    }
}

// ---------------------------------------------------------------------------------------
// plan

/// Plan text: title and steps never span lines and the title is never empty. After a NUL
/// byte comes an armored signature to check against the plan; the first byte says whether
/// to replace it with a real signature of the plan (which must then verify, and must not
/// verify for a changed plan).
pub fn plan_text(data: &[u8]) {
    let Some((&mode, body)) = data.split_first() else { return };
    let (plan, armored) = match body.iter().position(|&b| b == 0) {
        Some(nul) => (text(&body[..nul]), Some(text(&body[nul + 1..]))),
        None => (text(body), None),
    };
    let title = crate::plan::title(&plan);
    assert!(!title.is_empty(), "empty title");
    assert!(!title.contains('\n'), "title spans lines: {title:?}");
    for step in crate::plan::steps(&plan) {
        assert!(!step.contains('\n'), "step spans lines: {step:?}");
    }
    if let Some(armored) = armored {
        match crate::plan::verify_signature(&plan, &armored, None) {
            Ok(_) => {}
            Err(e) => assert!(!e.contains('\n'), "error spans lines: {e:?}"),
        }
        let _ = armored.trim().parse::<SshSig>();
    }
    if mode % 2 == 1 {
        let key = signing_key();
        let signed = key
            .sign(crate::plan::SIGNATURE_NAMESPACE, HashAlg::Sha512, plan.as_bytes())
            .and_then(|s| s.to_pem(LineEnding::LF));
        let Ok(armored) = signed else { return };
        let allowed = [key.public_key().clone()];
        let signer = crate::plan::verify_signature(&plan, &armored, Some(&allowed));
        assert!(signer.is_ok(), "a real signature of the plan does not verify: {:?}", signer.err());
        let changed = format!("{plan}.");
        assert!(crate::plan::verify_signature(&changed, &armored, None).is_err(), "a changed plan verifies");
    }
}

// ---------------------------------------------------------------------------------------
// config

/// Config TOML, raw into validated: never a panic, every error one line naming the file.
pub fn config_toml(data: &[u8]) {
    let text = text(data);
    // Relative paths in it resolve against a folder that does not exist: nothing real is
    // read (an absolute CA path is read, as `check` would).
    let path = Path::new("/nonexistent/chaperone-fuzz/chaperone.toml");
    if let Err(e) = Config::from_toml(path, &text) {
        let message = format!("{e:#}");
        assert!(!message.contains('\n'), "error spans lines: {message:?}");
        assert!(message.contains("chaperone.toml"), "error does not name the file: {message:?}");
    }
}

// ---------------------------------------------------------------------------------------
// console

/// A technician's ssh command line: split into words (quoting them back splits to the
/// same words), then parsed by the command tree as the console parses it; and the bytes
/// as keys typed during a replay.
pub fn console_words(data: &[u8]) {
    let _ = crate::commands::parse_keys(data);
    let line = text(data);
    let Ok(words) = crate::console::split_words(&line) else { return };
    let quoted: Vec<String> = words.iter().map(|w| format!("'{}'", w.replace('\'', r"'\''"))).collect();
    assert_eq!(crate::console::split_words(&quoted.join(" ")).ok(), Some(words.clone()), "quoted words");
    let args = std::iter::once("chaperone".to_string()).chain(words);
    if let Err(err) = <crate::cli::Cli as clap::Parser>::try_parse_from(args) {
        let _ = err.render().to_string();
    }
}

// ---------------------------------------------------------------------------------------
// sanitizer

/// Bytes that start a control string the sanitizer exists to remove, 7-bit (ESC and
/// `]`, `P`, `X`, `^`, `_`) and C1 in UTF-8 (0xC2 and 0x90, 0x98, 0x9D, 0x9E, 0x9F).
fn control_string_at(out: &[u8]) -> Option<usize> {
    out.windows(2)
        .position(|w| matches!(w, [0x1b, b']' | b'P' | b'X' | b'^' | b'_'] | [0xc2, 0x90 | 0x98 | 0x9d | 0x9e | 0x9f]))
}

fn sanitized(input: &[u8], cuts: &[usize]) -> Vec<u8> {
    let mut sanitizer = Sanitizer::default();
    let mut out = Vec::new();
    let mut from = 0;
    for &cut in cuts {
        sanitizer.filter_bytes(&input[from..cut], &mut out);
        from = cut;
    }
    out
}

/// The sanitizer over raw output in chunks (the first eight bytes choose the cuts): the
/// result is the same however it is cut, holds no control string, and sanitizing it
/// again changes nothing (removing one sequence never leaves another behind). The text
/// form (`filter`) holds no control string either. And the watchers' terminal emulator
/// takes the same bytes, and its screen dump (what a late watcher is sent), without a
/// panic.
pub fn sanitize(data: &[u8]) {
    let (seed, input) = data.split_at(data.len().min(8));
    let whole = sanitized(input, &[input.len()]);
    let chunked = sanitized(input, &splits(seed, input.len()));
    assert_eq!(chunked, whole, "chunks change the result");
    if let Some(at) = control_string_at(&whole) {
        let near = &whole[at.saturating_sub(8)..(at + 8).min(whole.len())];
        fail(format!("a control string survives at byte {at}: {near:x?}"));
    }
    assert_eq!(sanitized(&whole, &[whole.len()]), whole, "sanitizing twice differs from once");
    let mut out = String::new();
    Sanitizer::default().filter(&text(input), &mut out);
    assert!(control_string_at(out.as_bytes()).is_none(), "a control string survives filter: {out:?}");
    // The watchers' emulator takes the vendor's output, and a late watcher its dump.
    let (cols, rows) =
        (usize::from(seed.first().copied().unwrap_or(80)) % 200, usize::from(seed.get(1).copied().unwrap_or(24)) % 100);
    let mut vt = crate::mirror::emulator(cols, rows);
    vt.feed(text(input).as_ref());
    let mut late = crate::mirror::emulator(cols, rows);
    late.feed(vt.dump().as_str());
}

// ---------------------------------------------------------------------------------------
// keys

/// Public key text as people paste it (and as a `.pub` file holds it): a key that parses
/// prints as an OpenSSH line that parses to the same key; an error is one line. Also the
/// bytes as an armored SSH signature.
pub fn key_text(data: &[u8]) {
    let text = text(data);
    match crate::keys::parse_public_key(&text) {
        Ok(key) => {
            let line = crate::keys::openssh_line(&key);
            let again = crate::keys::parse_public_key(&line);
            assert!(
                again.as_ref().is_ok_and(|k| k.key_data() == key.key_data()),
                "{line:?} does not parse back: {:?}",
                again.err()
            );
            let _ = crate::keys::fingerprint(&key);
        }
        Err(e) => assert!(!e.0.contains('\n'), "error spans lines: {:?}", e.0),
    }
    let _ = text.trim().parse::<SshSig>();
}

/// Writes every target's seed inputs (real recordings, seal, index, config, plans, keys)
/// into `corpus/<target>/`; `scripts/fuzz --seed` runs it to refresh the committed corpus.
pub fn write_seeds(corpus: &Path) -> std::io::Result<()> {
    let write = |target: &str, name: &str, bytes: &[u8]| -> std::io::Result<()> {
        let dir = corpus.join(target);
        std::fs::create_dir_all(&dir)?;
        std::fs::File::create(dir.join(name))?.write_all(bytes)
    };
    let recording = sample();
    let plain = zstd::decode_all(recording)?;
    let mut plain_mode = vec![0u8];
    plain_mode.extend_from_slice(&plain);
    write("cast_reader", "plain", &plain_mode)?;
    let mut zstd_mode = vec![1u8];
    zstd_mode.extend_from_slice(recording);
    write("cast_reader", "zstd", &zstd_mode)?;
    let mut framed = vec![2u8, 3];
    framed.extend_from_slice(&plain);
    write("cast_reader", "framed", &framed)?;
    write("cast_reader", "lines", b"\x03\x50\x18title!!!\x00\x10\x00\x05hello\x02\xe8\x03\x03x\xff\n")?;
    write("cast_reader", "encoder", b"\x04\x08\x05hello\x1a\x02\xc3\xa4\x45\x03ls\r\x06\x02\x07\x04mark")?;

    // A real seal of a real folder.
    let dir = scratch().ok_or_else(|| std::io::Error::other("no scratch folder"))?;
    let folder = dir.path().join("session");
    std::fs::create_dir(&folder)?;
    let sealer = seal::Sealer::create(&folder, "01seedsession", std::sync::Arc::new(signing_key().clone()))?;
    std::fs::write(folder.join(FIRST_CAST), b"frame one frame two")?;
    sealer.checkpoint(FIRST_CAST, 9, &seal::hash_prefix(&folder.join(FIRST_CAST), Some(9))?.1)?;
    std::fs::write(folder.join("session.json"), b"{}\n")?;
    sealer.seal_folder(&folder)?;
    let seal_file = std::fs::read(folder.join(seal::SEAL_FILE))?;
    write("seal", "file", &[&[0u8][..], &seal_file].concat())?;
    let texts: String = String::from_utf8_lossy(&seal_file)
        .lines()
        .filter_map(|l| serde_json::from_str::<Checkpoint>(l).ok())
        .map(|c| c.signed + "\n")
        .collect();
    write("seal", "signed", &[&[1u8][..], texts.as_bytes()].concat())?;

    // A real index of the sample recording.
    let cast = dir.path().join(FIRST_CAST);
    std::fs::write(&cast, recording)?;
    let replay = Replay::open(&cast, Some(index_key())).map_err(std::io::Error::other)?;
    write("seek_index", "index", &serde_json::to_vec(&replay.index)?)?;

    let plan = b"# Upgrade ERP to 9.2\n\nWho: Jane\n\n1. stop erp\n2. backup db\n- install 9.2\n* start erp\n";
    write("plan", "plan", &[&[0u8][..], plan].concat())?;
    let signature = signing_key()
        .sign(crate::plan::SIGNATURE_NAMESPACE, HashAlg::Sha512, plan)
        .and_then(|s| s.to_pem(LineEnding::LF))
        .map_err(std::io::Error::other)?;
    write("plan", "signed", &[&[1u8][..], plan, b"\0", signature.as_bytes()].concat())?;

    write("config", "shipped", include_bytes!("../config/chaperone.toml"))?;
    write(
        "config",
        "mail",
        b"[server]\nlisten = \"[::1]:2222\"\n[mail]\ntransport = \"smtp\"\nsmtp_host = \"mail\"\nsmtp_tls = \"tls\"\n",
    )?;

    for (name, line) in [
        ("sessions", "sessions"),
        ("kill", r#"kill 01ab --reason "wrong server, \"prod\"" x\ y 'it''s'"#),
        (
            "booking",
            "booking create --vendor acme --target erp01 --account erp --start '2026-01-05 09:00' --end '2026-01-05 11:00' --plan -",
        ),
        ("replay", "replay 01ab --speed 2"),
        ("keys", " +-.[]q\x1b[C\x1b[D\x1bOC"),
    ] {
        write("console", name, line.as_bytes())?;
    }

    // The first eight bytes choose where the output is cut into chunks.
    for (name, bytes) in [
        ("osc", &b"a\x1b]52;c;ZXZpbA==\x07b\x1b[1mc\x1b]0;title\x1b\\d"[..]),
        ("c1", "\u{1b}Pq#0\u{1b}\\e\u{9d}8;;x\u{9c}f é grün".as_bytes()),
        ("colours", b"\x1b[2J\x1b[H\x1b[1;31mred\x1b[0m\r\n"),
    ] {
        write("sanitize", name, &[&[9, 30, 60, 90, 120, 150, 200, 250][..], bytes].concat())?;
    }

    let public = crate::keys::openssh_line(signing_key().public_key());
    write("keys", "line", public.as_bytes())?;
    write("keys", "hosts", format!("# scanned\n\nerp01,10.0.0.5 {public} comment\n").as_bytes())?;
    write("keys", "signature", signature.as_bytes())?;
    Ok(())
}
