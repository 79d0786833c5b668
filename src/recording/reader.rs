//! Reads a recording back, streaming, bounded and tolerant. A recording is a sequence of
//! independent zstd frames, each a whole number of event lines, so the reader goes frame
//! by frame:
//!
//! - Bounded: zstd's window is capped ([`WINDOW_LOG_MAX`]) and a frame may decompress to
//!   at most [`MAX_FRAME_TEXT`] (the encoder's frames hold about 1 MiB), so a small file
//!   crafted to decompress to gigabytes (a zstd bomb) costs a few megabytes and is reported,
//!   never held. A plain `.cast` is read line by line with the same bound on a line.
//! - Damage does not blind it: a frame that does not decode (checksum mismatch, corrupt
//!   block, garbage bytes, beyond the bounds) is skipped, the reader resynchronizes at the
//!   next zstd frame magic (`28 B5 2F FD`) that decodes, and the [`Damage`] says where.
//!   A line that is not an event is skipped the same way.
//! - A file cut short by a crash decodes up to its last complete event line, and the
//!   reader says that it was cut short ([`CastReader::truncated`]).

use std::fs::File;
use std::io::{BufRead, BufReader, Seek, SeekFrom};
use std::path::{Path, PathBuf};

use zstd::zstd_safe::{DCtx, DParameter, InBuffer, OutBuffer, ResetDirective};

use super::RecordingError;
use super::asciicast::{Header, Term};

/// What one zstd frame (or, in a plain `.cast`, one line) may decompress to. The encoder
/// closes a frame at 1 MiB of text plus at most one event; eight times that leaves room
/// for any recording chaperone writes and bounds what a hostile file can make a reader
/// hold.
pub const MAX_FRAME_TEXT: usize = 8 * 1024 * 1024;

/// zstd's window, at most 2^23 = 8 MiB: the size of the largest frame allowed (a frame
/// whose size is known uses it as its window). zstd's own default allows 128 MiB, and a
/// frame header claiming more is refused before anything is allocated.
pub const WINDOW_LOG_MAX: u32 = 23;

/// How many damaged places a reader keeps to report; beyond it they are only counted (a
/// file of garbage would otherwise make the report itself unbounded).
const MAX_DAMAGE_KEPT: usize = 100;

/// Decompressed bytes taken from zstd per call.
const CHUNK: usize = 64 * 1024;

/// The magic number that opens every zstd frame, little-endian 0xFD2FB528.
const MAGIC: [u8; 4] = [0x28, 0xB5, 0x2F, 0xFD];

/// One event, with its time from the start of the recording.
#[derive(Debug, Clone, PartialEq)]
pub struct CastEvent {
    /// Milliseconds since the start of the recording.
    pub time_ms: u64,
    /// Milliseconds since the previous event, as recorded.
    pub interval_ms: u64,
    pub code: String,
    pub data: String,
}

/// One damaged place of a recording, for a line on stderr: `{at}: {what}`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Damage {
    /// Where: the frame's number (1-based) and byte offset in the file.
    pub at: String,
    /// What was wrong and what the reader did about it.
    pub what: String,
}

impl std::fmt::Display for Damage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.at, self.what)
    }
}

/// The damaged places found so far, the first [`MAX_DAMAGE_KEPT`] kept.
#[derive(Debug, Clone, Default)]
pub struct DamageLog {
    /// The first damaged places, in file order.
    pub kept: Vec<Damage>,
    /// All of them, kept or not.
    pub count: usize,
}

impl DamageLog {
    pub fn push(&mut self, at: String, what: String) {
        self.count += 1;
        if self.kept.len() < MAX_DAMAGE_KEPT {
            self.kept.push(Damage { at, what });
        }
    }

    /// The lines to show: every kept place, then how many more there were.
    pub fn lines(&self) -> Vec<String> {
        let mut lines: Vec<String> = self.kept.iter().map(|d| d.to_string()).collect();
        if self.count > self.kept.len() {
            lines.push(format!("and {} more damaged place(s)", self.count - self.kept.len()));
        }
        lines
    }
}

/// How decoding one frame from a given offset went.
enum Step {
    /// A whole frame, this many bytes long; its text is in the buffer.
    Frame(u64),
    /// Nothing left: the offset is the end of the file.
    End,
    /// The file ended inside the frame; the buffer holds what decoded before.
    Torn,
    /// It is not a frame that decodes within the bounds; why.
    Bad(String),
}

/// The zstd frames of a recording, decoded one at a time within the bounds, skipping
/// damaged stretches (see the module doc).
pub struct FrameReader<R> {
    input: R,
    context: DCtx<'static>,
    /// Offset of the next frame to decode.
    offset: u64,
    /// Frames passed so far, good or damaged, for numbering them as people count.
    passed: u64,
    /// zstd's output, before it is added to a frame's text.
    chunk: Vec<u8>,
    /// The damaged stretches skipped.
    pub damage: DamageLog,
    /// Set when the file ends inside its last frame (a crash while it was written).
    pub truncated: bool,
}

impl<R: BufRead + Seek> FrameReader<R> {
    /// Frames from `offset` (a frame boundary) on.
    pub fn new(input: R, offset: u64) -> Result<FrameReader<R>, String> {
        let mut context = DCtx::try_create().ok_or("cannot create a zstd decoder")?;
        context.set_parameter(DParameter::WindowLogMax(WINDOW_LOG_MAX)).map_err(error_name)?;
        Ok(FrameReader {
            input,
            context,
            offset,
            passed: 0,
            chunk: vec![0; CHUNK],
            damage: DamageLog::default(),
            truncated: false,
        })
    }

    /// Offset of the next frame (after the one last returned).
    pub fn offset(&self) -> u64 {
        self.offset
    }

    /// The next frame that decodes, with its offset, its text in `text` (replacing what
    /// it held); `None` at the end.
    pub fn next_into(&mut self, text: &mut Vec<u8>) -> Option<u64> {
        loop {
            let at = self.offset;
            let failed = match self.decode(at, text) {
                Step::Frame(length) => {
                    self.passed += 1;
                    self.offset = at + length;
                    return Some(at);
                }
                Step::End => return None,
                Step::Torn => None,
                Step::Bad(why) => Some(why),
            };
            self.passed += 1;
            let place = format!("frame {} at byte {at}", self.passed);
            // A frame whose structure holds (a checksum mismatch, a bomb) is skipped whole:
            // the next frame starts right after it.
            if let (Some(why), Some(length)) = (&failed, self.extent(at)) {
                self.damage.push(place, format!("damaged ({why}); skipped its {length} bytes"));
                self.offset = at + length;
                continue;
            }
            return self.resync(at, place, failed, text);
        }
    }

    /// After a frame at `at` whose structure is broken (garbage, a frame cut short):
    /// the next zstd frame magic after it that starts a frame that decodes.
    fn resync(&mut self, at: u64, place: String, failed: Option<String>, text: &mut Vec<u8>) -> Option<u64> {
        let mut partial = std::mem::take(text);
        let mut from = at + 1;
        while let Some(candidate) = self.find_magic(from) {
            if let Step::Frame(length) = self.decode(candidate, text) {
                let why = failed.unwrap_or_else(|| "the frame is cut short".into());
                self.damage.push(place, format!("damaged ({why}); skipped {} bytes to the next frame", candidate - at));
                self.passed += 1;
                self.offset = candidate + length;
                return Some(candidate);
            }
            from = candidate + 1;
        }
        let end = self.input.seek(SeekFrom::End(0)).unwrap_or(at);
        self.offset = end;
        match failed {
            Some(why) => {
                let what = format!("damaged ({why}); no readable frame in the {} bytes after it", end - at);
                self.damage.push(place, what);
                None
            }
            None => {
                // A crash while the last frame was written: its complete lines stand.
                self.truncated = true;
                let complete = partial.iter().rposition(|&b| b == b'\n').map_or(0, |i| i + 1);
                partial.truncate(complete);
                *text = partial;
                (!text.is_empty()).then_some(at)
            }
        }
    }

    /// The length of the zstd frame at `at` from its headers alone (frame header, block
    /// headers, checksum), if they make sense and it ends within the file.
    fn extent(&mut self, at: u64) -> Option<u64> {
        let mut header = [0u8; 5];
        self.input.seek(SeekFrom::Start(at)).ok()?;
        self.input.read_exact(&mut header).ok()?;
        let magic = u32::from_le_bytes([header[0], header[1], header[2], header[3]]);
        if magic & 0xFFFF_FFF0 == 0x184D_2A50 {
            // A skippable frame: its length follows the magic.
            let mut size = [0u8; 4];
            self.input.seek(SeekFrom::Start(at + 4)).ok()?;
            self.input.read_exact(&mut size).ok()?;
            return self.within(at, 8 + u64::from(u32::from_le_bytes(size)));
        }
        if header[..4] != MAGIC {
            return None;
        }
        let descriptor = header[4];
        if descriptor & 0x08 != 0 {
            return None; // a reserved bit
        }
        let single_segment = descriptor & 0x20 != 0;
        let content_size = match descriptor >> 6 {
            0 => u64::from(single_segment),
            1 => 2,
            2 => 4,
            _ => 8,
        };
        let dictionary = [0, 1, 2, 4][usize::from(descriptor & 0x03)];
        let mut length = 5 + u64::from(!single_segment) + dictionary + content_size;
        loop {
            let mut block = [0u8; 3];
            self.input.seek(SeekFrom::Start(at + length)).ok()?;
            self.input.read_exact(&mut block).ok()?;
            let block = u32::from_le_bytes([block[0], block[1], block[2], 0]);
            let size = u64::from(block >> 3);
            let body = match (block >> 1) & 0x03 {
                1 => 1, // RLE: one byte repeated `size` times
                3 => return None,
                _ => size,
            };
            if size > 128 * 1024 {
                return None; // beyond the largest block zstd writes
            }
            length += 3 + body;
            if block & 1 == 1 {
                break;
            }
        }
        if descriptor & 0x04 != 0 {
            length += 4; // the content checksum
        }
        self.within(at, length)
    }

    /// `length` if a frame of it at `at` ends within the file, at its end or where a
    /// frame magic follows (else the headers were read from garbage).
    fn within(&mut self, at: u64, length: u64) -> Option<u64> {
        let end = self.input.seek(SeekFrom::End(0)).ok()?;
        if at + length == end {
            return Some(length);
        }
        let mut next = [0u8; 4];
        self.input.seek(SeekFrom::Start(at + length)).ok()?;
        self.input.read_exact(&mut next).ok()?;
        let skippable = u32::from_le_bytes(next) & 0xFFFF_FFF0 == 0x184D_2A50;
        (next == MAGIC || skippable).then_some(length)
    }

    /// Decodes the frame at `at` into `text`, within the bounds.
    fn decode(&mut self, at: u64, text: &mut Vec<u8>) -> Step {
        text.clear();
        if let Err(e) = self.input.seek(SeekFrom::Start(at)) {
            return Step::Bad(format!("cannot seek: {e}"));
        }
        if let Err(code) = self.context.reset(ResetDirective::SessionOnly) {
            return Step::Bad(error_name(code));
        }
        let mut consumed = 0u64;
        loop {
            let buf = match self.input.fill_buf() {
                Ok(buf) => buf,
                Err(e) => return Step::Bad(format!("cannot read: {e}")),
            };
            if buf.is_empty() && consumed == 0 {
                return Step::End;
            }
            let mut input = InBuffer::around(buf);
            let mut output = OutBuffer::around(&mut self.chunk[..]);
            let result = self.context.decompress_stream(&mut output, &mut input);
            let (used, produced) = (input.pos(), output.pos());
            let input_left = buf.len() - used;
            self.input.consume(used);
            consumed += used as u64;
            if text.len() + produced > MAX_FRAME_TEXT {
                return Step::Bad(format!("decompresses to more than {} MiB", MAX_FRAME_TEXT >> 20));
            }
            text.extend_from_slice(&self.chunk[..produced]);
            match result {
                Ok(0) => return Step::Frame(consumed),
                Ok(_) if used == 0 && produced == 0 && input_left == 0 => return Step::Torn,
                Ok(_) if used == 0 && produced == 0 => return Step::Bad("zstd made no progress".into()),
                Ok(_) => {}
                Err(code) => return Step::Bad(error_name(code)),
            }
        }
    }

    /// The offset of the next zstd frame magic at or after `from`.
    fn find_magic(&mut self, from: u64) -> Option<u64> {
        let mut at = from;
        loop {
            // Seeking drops what was buffered, so each read starts at `at`.
            self.input.seek(SeekFrom::Start(at)).ok()?;
            let buf = self.input.fill_buf().ok()?;
            if let Some(i) = buf.windows(MAGIC.len()).position(|w| w == MAGIC) {
                return Some(at + i as u64);
            }
            if buf.len() < MAGIC.len() {
                return None;
            }
            // The last bytes again with the next read: a magic may straddle the two.
            at += (buf.len() - (MAGIC.len() - 1)) as u64;
        }
    }
}

fn error_name(code: usize) -> String {
    zstd::zstd_safe::get_error_name(code).to_lowercase()
}

/// Where a reader's lines come from.
enum Source {
    /// A `.cast.zst`: frames, and the text of the current one.
    Frames { frames: FrameReader<BufReader<File>>, text: Vec<u8>, at: usize, offset: u64, line: usize },
    /// A plain `.cast`, line by line.
    Plain { lines: BufReader<File>, offset: u64, line: usize },
}

pub struct CastReader {
    source: Source,
    path: PathBuf,
    pub header: Header,
    /// Set once the end was reached early (truncated frame or torn last line).
    pub truncated: bool,
    /// Damaged frames and lines skipped (a plain file's damage is kept here too).
    damage: DamageLog,
    time_ms: u64,
    line: Vec<u8>,
    /// The offset of a line put back (the first line, when the header was lost).
    unread: Option<u64>,
}

impl CastReader {
    /// Opens a `.cast.zst` (or, by extension, a plain `.cast`) recording.
    pub fn open(path: &Path) -> Result<CastReader, RecordingError> {
        let read_err = |message: String| RecordingError::Read { path: path.to_path_buf(), message };
        let file = File::open(path).map_err(|e| read_err(e.to_string()))?;
        let source = if path.extension().is_some_and(|e| e == "zst") {
            let frames = FrameReader::new(BufReader::with_capacity(CHUNK, file), 0).map_err(read_err)?;
            Source::Frames { frames, text: Vec::new(), at: 0, offset: 0, line: 0 }
        } else {
            Source::Plain { lines: BufReader::with_capacity(CHUNK, file), offset: 0, line: 0 }
        };
        let mut reader = CastReader {
            source,
            path: path.to_path_buf(),
            header: Header::new(Term { cols: 80, rows: 24, kind: None }, 0, None, String::new()),
            truncated: false,
            damage: DamageLog::default(),
            time_ms: 0,
            line: Vec::new(),
            unread: None,
        };
        match reader.next_line() {
            Some(0) => {
                let header: Header = serde_json::from_slice(&reader.line)
                    .map_err(|e| read_err(format!("header is not an asciicast v3 header: {e}")))?;
                if header.version != 3 {
                    return Err(read_err(format!("asciicast version {} (expected 3)", header.version)));
                }
                reader.header = header;
            }
            // The first frame is lost, later ones are not: their events are worth more
            // than the header's facts, which session.json also holds.
            Some(offset) => {
                reader.damage.push("the header".into(), "lost with the first frame; read as 80x24".into());
                reader.unread_line(offset);
            }
            None => {
                let mut problems = reader.problems();
                if problems.is_empty() {
                    problems.push("no asciicast v3 header".into());
                }
                return Err(read_err(problems.join("; ")));
            }
        }
        Ok(reader)
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// How many damaged frames or lines were skipped so far.
    pub fn damage_count(&self) -> usize {
        self.damage.count + self.frame_damage().map_or(0, |d| d.count)
    }

    /// One line per damaged place skipped so far (frame or line, where, what).
    pub fn problems(&self) -> Vec<String> {
        let mut lines = self.frame_damage().map(|d| d.lines()).unwrap_or_default();
        lines.extend(self.damage.lines());
        lines
    }

    fn frame_damage(&self) -> Option<&DamageLog> {
        match &self.source {
            Source::Frames { frames, .. } => Some(&frames.damage),
            Source::Plain { .. } => None,
        }
    }

    /// Puts the line just read back: the next call returns it again.
    fn unread_line(&mut self, offset: u64) {
        self.unread = Some(offset);
    }

    /// The next line (without its newline) into `self.line`, with the offset in the file
    /// of its frame (a plain file: of the line). Lines longer than the bound are skipped.
    fn next_line(&mut self) -> Option<u64> {
        if let Some(offset) = self.unread.take() {
            return Some(offset);
        }
        self.line.clear();
        match &mut self.source {
            Source::Frames { frames, text, at, offset, line } => loop {
                while *at >= text.len() {
                    *offset = frames.next_into(text)?;
                    *at = 0;
                    *line = 0;
                    self.truncated |= frames.truncated;
                }
                let rest = &text[*at..];
                let Some(end) = rest.iter().position(|&b| b == b'\n') else {
                    // A frame's text ends at a line's end (the recorder closes frames
                    // there): a line without it is torn, as in a plain file; what stands
                    // before it stands.
                    self.truncated = true;
                    *at = text.len();
                    continue;
                };
                self.line.extend_from_slice(&rest[..end]);
                *at += end + 1;
                *line += 1;
                return Some(*offset);
            },
            Source::Plain { lines, offset, line } => loop {
                let start = *offset;
                let (read, complete) = read_line_bounded(lines, &mut self.line).ok()?;
                if read == 0 {
                    return None;
                }
                *offset += read;
                *line += 1;
                match complete {
                    Some(true) => return Some(start),
                    // A torn last line: everything before it stands.
                    Some(false) => {
                        self.truncated = true;
                        return None;
                    }
                    None => {
                        let what = format!("longer than {} MiB; skipped", MAX_FRAME_TEXT >> 20);
                        self.damage.push(format!("line {line} at byte {start}"), what);
                    }
                }
            },
        }
    }

    /// The next event, or `None` at the end (check [`CastReader::truncated`] and
    /// [`CastReader::problems`]).
    pub fn next_event(&mut self) -> Option<CastEvent> {
        loop {
            let offset = self.next_line()?;
            if let Some(event) = parse_event(&self.line, self.time_ms) {
                self.time_ms = event.time_ms;
                return Some(event);
            }
            let at = match &self.source {
                Source::Frames { frames, line, .. } => {
                    format!("frame {} at byte {offset}, line {line}", frames.passed)
                }
                Source::Plain { line, .. } => format!("line {line} at byte {offset}"),
            };
            self.damage.push(at, "not an asciicast event; skipped".into());
        }
    }
}

/// Reads one line into `line` (without the newline), holding at most [`MAX_FRAME_TEXT`]
/// of it. Returns the bytes read and whether the line is whole (`Some(true)`), the end of
/// the file came first (`Some(false)`), or it was too long and was skipped (`None`).
fn read_line_bounded(input: &mut impl BufRead, line: &mut Vec<u8>) -> std::io::Result<(u64, Option<bool>)> {
    line.clear();
    let (mut read, mut too_long) = (0u64, false);
    loop {
        let buf = input.fill_buf()?;
        if buf.is_empty() {
            return Ok((read, if too_long { None } else { Some(false) }));
        }
        let (take, newline) = match buf.iter().position(|&b| b == b'\n') {
            Some(i) => (i + 1, true),
            None => (buf.len(), false),
        };
        let piece = &buf[..take - usize::from(newline)];
        if !too_long && line.len() + piece.len() > MAX_FRAME_TEXT {
            too_long = true;
            line.clear();
        }
        if !too_long {
            line.extend_from_slice(piece);
        }
        input.consume(take);
        read += take as u64;
        if newline {
            return Ok((read, if too_long { None } else { Some(true) }));
        }
    }
}

/// Latest time an event is read at: 2^53 ms (some 285,000 years), exact as the f64 that
/// players and exports compute with, and far enough from `u64::MAX` that adding to it
/// never overflows. A hostile interval (`1e300`) stops the clock here instead of wrapping
/// it around.
pub const MAX_TIME_MS: u64 = 1 << 53;

/// One event line, `[interval, code, data]`, following an event at `previous_ms`.
pub fn parse_event(line: &[u8], previous_ms: u64) -> Option<CastEvent> {
    let (interval, code, data) = serde_json::from_slice::<(f64, String, String)>(line).ok()?;
    let interval_ms = ((interval.max(0.0) * 1000.0).round() as u64).min(MAX_TIME_MS);
    let time_ms = previous_ms.saturating_add(interval_ms).min(MAX_TIME_MS);
    Some(CastEvent { time_ms, interval_ms, code, data })
}

impl Iterator for CastReader {
    type Item = CastEvent;
    fn next(&mut self) -> Option<CastEvent> {
        self.next_event()
    }
}

#[cfg(test)]
mod tests {
    use std::io::{Cursor, Write};

    use super::*;
    use crate::recording::frames::checksummed;

    const HEADER: &str = "{\"version\":3,\"term\":{\"cols\":80,\"rows\":24},\"timestamp\":0}\n";

    fn frame(text: &str) -> Vec<u8> {
        checksummed(1).unwrap().compress(text.as_bytes()).unwrap()
    }

    fn event(n: usize) -> String {
        format!("[0.5, \"o\", \"line-{n}\\n\"]\n")
    }

    /// Three frames: the header and lines 1-2, lines 3-4, lines 5-6; and their offsets.
    fn three_frames() -> (Vec<u8>, Vec<usize>) {
        let texts = [format!("{HEADER}{}{}", event(1), event(2)), event(3) + &event(4), event(5) + &event(6)];
        let (mut file, mut offsets) = (Vec::new(), Vec::new());
        for text in texts {
            offsets.push(file.len());
            file.extend(frame(&text));
        }
        (file, offsets)
    }

    fn read(file: &[u8]) -> (Result<CastReader, RecordingError>, tempfile::TempDir) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("session.cast.zst");
        std::fs::File::create(&path).unwrap().write_all(file).unwrap();
        (CastReader::open(&path), dir)
    }

    fn output(reader: &mut CastReader) -> String {
        reader.by_ref().filter(|e| e.code == "o").map(|e| e.data).collect()
    }

    #[test]
    fn frames_are_read_one_by_one_with_their_offsets() {
        let (file, offsets) = three_frames();
        let mut frames = FrameReader::new(Cursor::new(&file[..]), 0).unwrap();
        let mut text = Vec::new();
        let mut seen = Vec::new();
        while let Some(at) = frames.next_into(&mut text) {
            seen.push(at as usize);
        }
        assert_eq!(seen, offsets);
        assert_eq!(frames.damage.count, 0);
        let (reader, _dir) = read(&file);
        let mut reader = reader.unwrap();
        assert_eq!(output(&mut reader), (1..=6).map(|n| format!("line-{n}\n")).collect::<String>());
        assert!(!reader.truncated && reader.problems().is_empty());
        assert_eq!(reader.header.term.cols, 80);
    }

    #[test]
    fn a_damaged_frame_is_skipped_and_said_where() {
        let (file, offsets) = three_frames();
        let middle = (offsets[1] + offsets[2]) / 2;
        // A flipped byte (the checksum or a block fails), garbage bytes, a frame cut in two.
        let mut flipped = file.clone();
        flipped[middle] ^= 0x55;
        let mut garbage = file[..offsets[1]].to_vec();
        garbage.extend_from_slice(b"not zstd at all, just bytes\n");
        garbage.extend_from_slice(&file[offsets[1]..]);
        let mut cut = file[..middle].to_vec();
        cut.extend_from_slice(&file[offsets[2]..]);
        for (name, file, lost) in [("flipped", flipped, "34"), ("garbage", garbage, ""), ("cut", cut, "34")] {
            let (reader, _dir) = read(&file);
            let mut reader = reader.unwrap();
            let expected: String =
                (1..=6).filter(|n| !lost.contains(&n.to_string())).map(|n| format!("line-{n}\n")).collect();
            assert_eq!(output(&mut reader), expected, "{name}");
            let problems = reader.problems();
            assert_eq!(problems.len(), 1, "{name}: {problems:?}");
            assert!(problems[0].starts_with(&format!("frame 2 at byte {}: damaged (", offsets[1])), "{problems:?}");
            let skipped = if name == "flipped" { "skipped its " } else { "bytes to the next frame" };
            assert!(problems[0].contains(skipped), "{name}: {problems:?}");
            assert!(!reader.truncated, "{name}");
        }
    }

    #[test]
    fn a_lost_first_frame_loses_the_header_not_the_rest() {
        let (mut file, offsets) = three_frames();
        file[offsets[1] / 2] ^= 0x55;
        let (reader, _dir) = read(&file);
        let mut reader = reader.unwrap();
        assert_eq!(output(&mut reader), (3..=6).map(|n| format!("line-{n}\n")).collect::<String>());
        let problems = reader.problems();
        assert!(problems[0].starts_with("frame 1 at byte 0: damaged ("), "{problems:?}");
        assert_eq!(problems[1], "the header: lost with the first frame; read as 80x24");
        assert_eq!((reader.header.term.cols, reader.header.term.rows), (80, 24));
    }

    #[test]
    fn a_torn_last_frame_keeps_its_complete_lines() {
        let (file, offsets) = three_frames();
        // Cut inside the last frame's checksum: its lines decoded, but it cannot be
        // checked; they stand, and the reader says the file ends early.
        let (reader, _dir) = read(&file[..file.len() - 3]);
        let mut reader = reader.unwrap();
        assert_eq!(output(&mut reader), (1..=6).map(|n| format!("line-{n}\n")).collect::<String>());
        assert!(reader.truncated && reader.problems().is_empty(), "{:?}", reader.problems());
        assert!(offsets[2] < file.len());
    }

    #[test]
    fn zstd_bombs_are_refused_within_bounds() {
        // A header, then 256 MiB of one byte in one frame (a few kilobytes compressed),
        // then a good frame.
        let mut bomb = Vec::new();
        {
            let mut encoder = zstd::stream::write::Encoder::new(&mut bomb, 1).unwrap();
            encoder.write_all(HEADER.as_bytes()).unwrap();
            let run = vec![b'a'; 1 << 20];
            for _ in 0..256 {
                encoder.write_all(&run).unwrap();
            }
            encoder.finish().unwrap();
        }
        assert!(bomb.len() < 100_000, "{}", bomb.len());
        let mut file = frame(&format!("{HEADER}{}", event(1)));
        file.extend(&bomb);
        file.extend(frame(&event(2)));
        let (reader, _dir) = read(&file);
        let mut reader = reader.unwrap();
        assert_eq!(output(&mut reader), "line-1\nline-2\n");
        let problems = reader.problems();
        assert!(problems[0].contains("decompresses to more than 8 MiB"), "{problems:?}");

        // A frame header asking for a 1 GiB window is refused before anything is allocated.
        let mut streamed = Vec::new();
        {
            let mut encoder = zstd::stream::write::Encoder::new(&mut streamed, 1).unwrap();
            encoder.window_log(30).unwrap();
            encoder.long_distance_matching(true).unwrap();
            encoder.write_all(HEADER.as_bytes()).unwrap();
            encoder.finish().unwrap();
        }
        let (reader, _dir) = read(&streamed);
        let err = reader.err().map(|e| e.to_string()).unwrap_or_default();
        assert!(err.contains("frame 1 at byte 0: damaged (frame requires too much memory"), "{err}");
    }

    #[test]
    fn plain_lines_are_bounded_and_bad_lines_skipped() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("session.cast");
        let mut file = std::fs::File::create(&path).unwrap();
        file.write_all(HEADER.as_bytes()).unwrap();
        file.write_all(event(1).as_bytes()).unwrap();
        file.write_all(&vec![b'x'; MAX_FRAME_TEXT + 10]).unwrap();
        file.write_all(b"\nnot json\n").unwrap();
        file.write_all(event(2).as_bytes()).unwrap();
        drop(file);
        let mut reader = CastReader::open(&path).unwrap();
        assert_eq!(output(&mut reader), "line-1\nline-2\n");
        let problems = reader.problems();
        assert_eq!(problems.len(), 2, "{problems:?}");
        assert!(problems[0].starts_with("line 3 at byte ") && problems[0].ends_with("longer than 8 MiB; skipped"));
        assert!(problems[1].starts_with("line 4 at byte ") && problems[1].ends_with("not an asciicast event; skipped"));
    }
}
