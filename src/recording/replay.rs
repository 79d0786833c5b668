//! Replay with immediate seeking. A recording is a sequence of independent zstd frames,
//! so playback can start at any frame. The seek index (`.session.cast.idx` beside
//! `session.cast.zst`) holds terminal-screen keyframes: at a frame boundary at least every
//! [`KEYFRAME_BYTES`] of output or [`KEYFRAME_MS`] of session time, the screen as a
//! terminal emulator (avt) shows it, with the frame's byte offset and the session time. A
//! seek restores the nearest keyframe before the wanted time and emulates only from there.
//!
//! The index is derived data, not evidence: it is a dotfile, so the seal neither covers
//! nor misses it, and it names the length and SHA-256 of the recording it was built from;
//! one that does not match (a recording still growing, a different file) is rebuilt. Its
//! screens are shown as the recording's, so it carries a MAC keyed by the bastion's
//! signing key ([`IndexKey`]): an index someone else wrote (forged screens beside a
//! recording that verifies) is not used but rebuilt, as is any index where the key is
//! not at hand (a copy replayed elsewhere; then it stays in memory).
//! Where the folder cannot be written (a read-only copy), the index stays in memory. The
//! bastion builds the indexes when a session with up to [`INDEX_ON_END_BYTES`] of output
//! ends ([`index_later`]); `replay` builds whatever is missing or stale.

use std::fs::File;
use std::io::BufReader;
use std::iter::Peekable;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::RecordingError;
use super::asciicast::Header;
use super::asciicast::Term;
use super::reader::{CastEvent, DamageLog, FrameReader, parse_event};
use crate::mirror::{clamp_side, emulator};

/// Output between keyframes, at most (give or take a frame).
pub const KEYFRAME_BYTES: u64 = 2 * 1024 * 1024;
/// Session time between keyframes, at most (give or take a frame).
pub const KEYFRAME_MS: u64 = 60_000;
/// 3: the index also lists the recording's damaged places and carries a MAC (version 1
/// did neither, 2 had no MAC).
const INDEX_VERSION: u32 = 3;

/// Screens an index holds, at most, in all: a 1 GB session at 80x24 needs a few MB. A
/// crafted recording (tiny frames a minute apart, each after a resize to 1000x1000)
/// would otherwise make the index, held in memory, far larger than the file; beyond the
/// bound no keyframe is taken, and a seek emulates from the last one.
const MAX_INDEX_SCREENS: usize = 64 * 1024 * 1024;

/// Markers an index holds, at most: a session's warnings, freezes and notes are tens; a
/// crafted recording of millions of markers is not held whole.
const MAX_MARKERS: usize = 10_000;

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SeekIndex {
    pub version: u32,
    /// The recording this index was built from.
    pub recording_length: u64,
    pub recording_sha256: String,
    /// Time of the last event.
    pub duration_ms: u64,
    pub keyframes: Vec<Keyframe>,
    pub markers: Vec<Marker>,
    /// The recording's damaged places that were skipped, one line each (empty when whole).
    #[serde(default)]
    pub damage: Vec<String>,
    /// The index's MAC (see [`IndexKey`]), hex; empty while it is computed.
    #[serde(default)]
    pub mac: String,
}

/// The key of seek index MACs: a secret only the holder of the bastion's signing key can
/// derive (the hash of its Ed25519 signature, deterministic, of a fixed text), so no key
/// file is added and a copy of the folder elsewhere cannot pass a forged index off.
#[derive(Clone)]
pub struct IndexKey([u8; 32]);

impl std::fmt::Debug for IndexKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("IndexKey(<secret>)")
    }
}

/// The signature namespace of the index key's derivation (never a seal's).
const INDEX_KEY_NAMESPACE: &str = "chaperone-seek-index";

impl IndexKey {
    /// The index key of a signing key.
    pub fn from_signing(key: &russh::keys::PrivateKey) -> Option<IndexKey> {
        let signature = key.sign(INDEX_KEY_NAMESPACE, russh::keys::HashAlg::Sha512, b"seek index key v1").ok()?;
        Some(IndexKey(Sha256::digest(signature.signature_bytes()).into()))
    }

    /// A key from given bytes (tests and benchmarks).
    pub fn from_bytes(bytes: [u8; 32]) -> IndexKey {
        IndexKey(bytes)
    }

    /// H(k, H(k, index without its MAC)), hex: the index's MAC (SHA-256 nested so that
    /// nothing can be appended to a MAC'd text).
    pub(crate) fn mac(&self, index: &SeekIndex) -> String {
        let mut hasher = Sha256::new();
        hasher.update(self.0);
        let mut writer = HashWriter(&mut hasher);
        let unsigned = SeekIndex { mac: String::new(), ..index.clone() };
        let _ = serde_json::to_writer(&mut writer, &unsigned);
        let inner = hasher.finalize();
        format!("{:x}", Sha256::new().chain_update(self.0).chain_update(inner).finalize())
    }
}

/// Serializes straight into a hash.
struct HashWriter<'a>(&'a mut Sha256);

impl std::io::Write for HashWriter<'_> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.update(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Keyframe {
    /// Session time of the last event before this frame.
    pub time_ms: u64,
    /// Byte offset of the zstd frame in the recording file.
    pub offset: u64,
    pub cols: usize,
    pub rows: usize,
    /// The screen before the frame, as text and sequences that reproduce it (avt dump).
    pub screen: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Marker {
    pub time_ms: u64,
    pub label: String,
}

/// A recording opened for replay: its header and seek index. The file is read frame by
/// frame as the replay goes, never held whole (a recording of hours, or a file made
/// sparse and huge, costs no memory).
pub struct Replay {
    /// The recording, opened anew for each run of events.
    path: PathBuf,
    pub header: Header,
    pub index: SeekIndex,
}

/// Where a seek landed: the screen at that time and the events after it.
pub struct Position {
    pub time_ms: u64,
    pub cols: usize,
    pub rows: usize,
    /// Sequences that draw the screen on a terminal reset to that size.
    pub screen: String,
    pub events: Peekable<Events>,
}

/// The index file of a recording: `session.cast.zst` → `.session.cast.idx`.
pub fn index_path(cast: &Path) -> PathBuf {
    let name = cast.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    let stem = name.strip_suffix(".zst").unwrap_or(&name);
    cast.with_file_name(format!(".{stem}.idx"))
}

impl Replay {
    /// Opens a recording, with its index if one matches and carries `key`'s MAC, else
    /// building it (and saving it, with the MAC, when there is a key and the folder can
    /// be written).
    pub fn open(path: &Path, key: Option<&IndexKey>) -> Result<Replay, RecordingError> {
        let read_err = |message: String| RecordingError::Read { path: path.to_path_buf(), message };
        let (length, sha) = super::seal::hash_prefix(path, None).map_err(|e| read_err(e.to_string()))?;
        let header = first_line(path).map_err(read_err)?;
        let saved = load_index(&index_path(path))
            .filter(|i| i.version == INDEX_VERSION && i.recording_length == length && i.recording_sha256 == sha)
            .filter(|i| key.is_some_and(|key| key.mac(i) == i.mac));
        let index = match (saved, key) {
            (Some(index), _) => index,
            (None, key) => {
                let mut index = build_index(path, length, &header, sha);
                if let Some(key) = key {
                    index.mac = key.mac(&index);
                    save_index(&index_path(path), &index);
                }
                index
            }
        };
        Ok(Replay { path: path.to_path_buf(), header, index })
    }

    /// Every event from the start.
    pub fn events(&self) -> Events {
        Events::new(&self.path, 0, 0)
    }

    /// The screen at `time_ms` (all events up to and including that time applied), and
    /// the events after it.
    pub fn seek(&self, time_ms: u64) -> Position {
        let start = self.index.keyframes.iter().rev().find(|k| k.time_ms <= time_ms);
        let (mut vt, mut events) = match start {
            Some(k) => {
                let mut vt = emulator(k.cols, k.rows);
                vt.feed(k.screen.as_str());
                (vt, Events::new(&self.path, k.offset, k.time_ms).peekable())
            }
            None => {
                (emulator(self.header.term.cols as usize, self.header.term.rows as usize), self.events().peekable())
            }
        };
        while let Some(event) = events.next_if(|e| e.time_ms <= time_ms) {
            apply(&mut vt, &event);
        }
        let (cols, rows) = vt.size();
        Position { time_ms, cols, rows, screen: vt.dump(), events }
    }
}

/// Applies an event to the emulator: output is shown, a resize reshapes the screen.
pub fn apply(vt: &mut avt::Terminal, event: &CastEvent) {
    match event.code.as_str() {
        "o" => vt.feed(event.data.as_str()),
        "r" => {
            if let Some((cols, rows)) = parse_size(&event.data) {
                vt.resize(cols, rows);
            }
        }
        _ => {}
    }
}

/// `COLSxROWS` of a resize event, clamped to a sane terminal.
pub fn parse_size(data: &str) -> Option<(usize, usize)> {
    let (cols, rows) = data.split_once('x')?;
    Some((clamp_side(cols.trim().parse().ok()?), clamp_side(rows.trim().parse().ok()?)))
}

/// The header, from the first line of the first frame. When that frame is damaged and
/// later ones are not, the events are worth more than the header: the replay goes on at
/// 80x24 (the index lists the damage).
fn first_line(path: &Path) -> Result<Header, String> {
    let file = File::open(path).map_err(|e| e.to_string())?;
    let mut frames = FrameReader::new(BufReader::new(file), 0)?;
    let mut text = Vec::new();
    match frames.next_into(&mut text) {
        Some(0) => {
            let end = text.iter().position(|&b| b == b'\n').unwrap_or(text.len());
            serde_json::from_slice::<Header>(&text[..end])
                .ok()
                .filter(|h| h.version == 3)
                .ok_or_else(|| "no asciicast v3 header".to_string())
        }
        Some(_) => Ok(Header::new(Term { cols: 80, rows: 24, kind: None }, 0, None, String::new())),
        None if frames.damage.count > 0 => Err(frames.damage.lines().join("; ")),
        None => Err("no asciicast v3 header".into()),
    }
}

/// Emulates the whole recording once, taking a keyframe at the first frame boundary
/// after every [`KEYFRAME_BYTES`] of output or [`KEYFRAME_MS`] of time.
fn build_index(path: &Path, length: u64, header: &Header, sha256: String) -> SeekIndex {
    let mut vt = emulator(header.term.cols as usize, header.term.rows as usize);
    let mut index = SeekIndex {
        version: INDEX_VERSION,
        recording_length: length,
        recording_sha256: sha256,
        duration_ms: 0,
        keyframes: Vec::new(),
        markers: Vec::new(),
        damage: Vec::new(),
        mac: String::new(),
    };
    let mut events = Events::new(path, 0, 0);
    let (mut bytes_since, mut time_since, mut screens) = (0u64, 0u64, 0usize);
    loop {
        // At a frame boundary (the first frame holds the header: no keyframe before it).
        if events.at_frame_boundary()
            && events.offset > 0
            && screens < MAX_INDEX_SCREENS
            && (bytes_since >= KEYFRAME_BYTES
                || index.duration_ms >= time_since + KEYFRAME_MS
                || index.keyframes.is_empty())
        {
            let (cols, rows) = vt.size();
            let screen = vt.dump();
            screens += screen.len();
            index.keyframes.push(Keyframe { time_ms: index.duration_ms, offset: events.offset, cols, rows, screen });
            bytes_since = 0;
            time_since = index.duration_ms;
        }
        let Some(event) = events.next() else { break };
        index.duration_ms = event.time_ms;
        match event.code.as_str() {
            "o" => bytes_since += event.data.len() as u64,
            "m" if index.markers.len() < MAX_MARKERS => {
                index.markers.push(Marker { time_ms: event.time_ms, label: event.data.clone() })
            }
            _ => {}
        }
        apply(&mut vt, &event);
    }
    match &events.frames {
        Some(frames) => index.damage = frames.damage.lines(),
        None => index.damage.push("cannot be read (no longer there, or no memory for a decoder)".into()),
    }
    index.damage.extend(events.damage.lines());
    index
}

/// Sessions with at most this much output are indexed when they end. Emulation runs at
/// some 30 MB/s, several times the cost of recording: a flood of gigabytes is indexed on
/// its first replay instead of costing the bastion minutes of CPU after every big `cat`.
pub const INDEX_ON_END_BYTES: u64 = 64 * 1024 * 1024;

/// Builds the seek indexes of a finished session's recordings on a low-priority thread
/// of their own, so that even the first replay seeks at once. Nothing waits for it: if
/// the bastion stops first, `replay` builds what is missing. Then gives what the session
/// and the indexing freed back to the system.
pub fn index_later(folder: &Path, key: Option<IndexKey>) {
    let files = super::cast_files(folder);
    let spawned = std::thread::Builder::new().name("seek-index".into()).spawn(move || {
        // On Linux the nice value is per thread: this one yields to the relays.
        // SAFETY: setpriority on the calling thread (who = 0) with a plain integer.
        unsafe {
            libc::setpriority(libc::PRIO_PROCESS, 0, 10);
        }
        for path in files {
            if let Err(e) = Replay::open(&path, key.as_ref()) {
                tracing::debug!("no seek index for {}: {e}", path.display());
            }
        }
        crate::memory::release_free();
    });
    if let Err(e) = spawned {
        tracing::debug!("no seek index thread: {e}");
    }
}

/// Longest index file read: the screens it may hold and as much again for the rest. A
/// larger file (not one chaperone wrote) is not read, and the index is rebuilt.
const MAX_INDEX_FILE: u64 = 2 * MAX_INDEX_SCREENS as u64;

/// The saved index, if there is one of a sane size that parses.
fn load_index(path: &Path) -> Option<SeekIndex> {
    let file = File::open(path).ok()?;
    if file.metadata().ok()?.len() > MAX_INDEX_FILE {
        return None;
    }
    serde_json::from_reader(BufReader::new(std::io::Read::take(file, MAX_INDEX_FILE))).ok()
}

/// Saved with a temporary file and a rename, so a reader never sees half an index (two
/// writers at once use two temporary files). A folder that cannot be written keeps no
/// index; that is fine.
fn save_index(path: &Path, index: &SeekIndex) {
    let partial = path.with_extension(format!("idx.{}-{}.partial", std::process::id(), rand::random::<u32>()));
    let saved = serde_json::to_vec(index)
        .map_err(std::io::Error::other)
        .and_then(|bytes| std::fs::write(&partial, bytes))
        .and_then(|_| std::fs::rename(&partial, path));
    if let Err(e) = saved {
        let _ = std::fs::remove_file(&partial);
        tracing::debug!("seek index {} not saved: {e}", path.display());
    }
}

/// Events from a frame boundary on; the header line (in the first frame) is skipped.
/// Damaged frames and lines are skipped (see [`FrameReader`]) and counted.
pub struct Events {
    /// None when the file cannot be opened or no decoder made: no events.
    frames: Option<FrameReader<BufReader<File>>>,
    text: Vec<u8>,
    at: usize,
    time_ms: u64,
    /// Offset of the next frame to decode.
    offset: u64,
    /// Lines that were not events.
    damage: DamageLog,
}

impl Events {
    fn new(path: &Path, offset: u64, time_ms: u64) -> Events {
        let frames = File::open(path).ok().and_then(|file| FrameReader::new(BufReader::new(file), offset).ok());
        let mut events = Events { frames, text: Vec::new(), at: 0, time_ms, offset, damage: DamageLog::default() };
        if offset == 0 && events.load_frame() == Some(0) {
            // Skip the header line.
            events.at = events.text.iter().position(|&b| b == b'\n').map_or(events.text.len(), |i| i + 1);
        }
        events
    }

    /// Decodes the next good frame; returns its offset.
    fn load_frame(&mut self) -> Option<u64> {
        let frames = self.frames.as_mut()?;
        let at = frames.next_into(&mut self.text)?;
        self.at = 0;
        self.offset = frames.offset();
        Some(at)
    }

    /// True when every event of the frames decoded so far was returned.
    fn at_frame_boundary(&self) -> bool {
        self.at >= self.text.len()
    }
}

impl Iterator for Events {
    type Item = CastEvent;

    fn next(&mut self) -> Option<CastEvent> {
        loop {
            while self.at_frame_boundary() {
                self.load_frame()?;
            }
            let rest = &self.text[self.at..];
            let end = rest.iter().position(|&b| b == b'\n').map_or(rest.len(), |i| i + 1);
            let event = parse_event(&rest[..end], self.time_ms);
            self.at += end;
            match event {
                Some(event) => {
                    self.time_ms = event.time_ms;
                    return Some(event);
                }
                None => self.damage.push(format!("a line before byte {}", self.offset), "not an event; skipped".into()),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::{Duration, Instant};

    use bytes::Bytes;
    use chrono::Utc;

    use super::*;
    use crate::config::RecordingConfig;
    use crate::recording::encoder::Encoder;
    use crate::recording::{Event, Term};

    /// A recording of `minutes` of a busy terminal: colours, redraws, a resize, markers,
    /// frames closed every 50 events as the flush interval would.
    fn long_recording(path: &Path, minutes: u64) {
        let start = Instant::now();
        let mut enc = Encoder::new("t".into(), Utc::now(), RecordingConfig::default(), start, Vec::new());
        let term = Term { cols: 80, rows: 24, kind: None };
        enc.encode(start, Event::Start { term, command: None }).unwrap();
        for i in 0..minutes * 60 * 4 {
            let at = start + Duration::from_millis(i * 250);
            let text = match i % 7 {
                0 => format!("\x1b[2J\x1b[Hscreen {i}\r\n"),
                1 => format!("\x1b[1;3{}mline {i} käse\x1b[0m\r\n", i % 8),
                _ => format!("{}\r\n", "x".repeat((i % 90) as usize)),
            };
            enc.encode(at, Event::Output(Bytes::from(text))).unwrap();
            if i == 500 {
                enc.encode(at, Event::Resize { cols: 100, rows: 30 }).unwrap();
            }
            if i % 1000 == 999 {
                enc.encode(at, Event::Marker(format!("mark {i}"))).unwrap();
            }
            if i % 50 == 49 {
                enc.flush().unwrap();
            }
        }
        let file = enc.finish().unwrap();
        std::fs::write(path, file).unwrap();
    }

    fn screen_text(cols: usize, rows: usize, dump: &str) -> Vec<String> {
        let mut vt = avt::Terminal::new(cols, rows).unwrap();
        vt.feed(dump);
        vt.screen().text()
    }

    #[test]
    fn a_seek_shows_what_playing_from_the_start_shows() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("session.cast.zst");
        long_recording(&path, 20);
        let key = IndexKey::from_bytes([7; 32]);
        let replay = Replay::open(&path, Some(&key)).unwrap();
        assert!(index_path(&path).ends_with(".session.cast.idx"));
        assert!(index_path(&path).is_file(), "the index is saved beside the recording");
        assert!(replay.index.keyframes.len() >= 20, "{} keyframes", replay.index.keyframes.len());
        assert_eq!(replay.index.markers.len(), 4);
        assert_eq!(replay.index.markers[0], Marker { time_ms: 999 * 250, label: "mark 999".into() });

        for t in [0, 1_000, 125_000, 125_250, 300_001, 599_999, 1_199_750, 5_000_000] {
            let mut vt = emulator(80, 24);
            for e in replay.events().take_while(|e| e.time_ms <= t) {
                apply(&mut vt, &e);
            }
            let seek = replay.seek(t);
            assert_eq!((seek.cols, seek.rows), vt.size(), "size at {t}");
            assert_eq!(screen_text(seek.cols, seek.rows, &seek.screen), vt.screen().text(), "screen at {t} ms");
            let next = replay.events().find(|e| e.time_ms > t).map(|e| e.time_ms);
            assert_eq!(seek.events.map(|e| e.time_ms).next(), next, "first event after {t}");
        }

        // Reopened: the saved index is used; changed: it is rebuilt.
        let again = Replay::open(&path, Some(&key)).unwrap();
        assert_eq!(again.index.keyframes.len(), replay.index.keyframes.len());
        // An index not MAC'd with the key (forged, or written by another bastion) is not
        // used: its screens are rebuilt from the recording.
        let saved = std::fs::read_to_string(index_path(&path)).unwrap();
        std::fs::write(index_path(&path), saved.replace("screen ", "forged ")).unwrap();
        let rebuilt = Replay::open(&path, Some(&key)).unwrap();
        assert!(rebuilt.index.keyframes.iter().all(|k| !k.screen.contains("forged")));
        assert!(rebuilt.index.keyframes.iter().any(|k| k.screen.contains("screen ")));
        let other = IndexKey::from_bytes([8; 32]);
        let elsewhere = Replay::open(&path, Some(&other)).unwrap();
        assert_eq!(elsewhere.index.keyframes.len(), replay.index.keyframes.len());
        assert_ne!(std::fs::read_to_string(index_path(&path)).unwrap(), saved, "rebuilt and saved with its key");
        long_recording(&path, 2);
        let changed = Replay::open(&path, Some(&key)).unwrap();
        assert!(changed.index.keyframes.len() < replay.index.keyframes.len());
        assert_eq!(changed.index.duration_ms, 2 * 60 * 4 * 250 - 250);
    }

    #[test]
    fn sizes_from_the_recording_are_clamped() {
        assert_eq!(parse_size("120x40"), Some((120, 40)));
        assert_eq!(parse_size("99999999x0"), Some((1000, 1)));
        assert_eq!(parse_size("junk"), None);
    }
}
