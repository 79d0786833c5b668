//! The recording's compression stage: closed frames of asciicast text become independent
//! zstd frames in a sink (the recording file and its seal; memory in benchmarks and tests).
//!
//! While a session is quiet this runs inline, on the recording's writer thread. From the
//! first frame closed because it was full (a flood: `cat`, a build log, `journalctl`),
//! compression moves to a thread of its own, so that escaping the next frame's text
//! overlaps compressing this one: zstd alone then sets the pace. Compressed frames come
//! back to the writer thread, which writes, hashes and seals them (it has the time; the
//! compression thread has none to spare). The order of frames never changes, a full queue
//! makes the encoder wait (and with it the relay), and nothing is dropped. Each frame ends
//! with zstd's checksum of its content (readers tell a damaged frame from a good one);
//! the writer thread computes it while the compression thread compresses, and puts it in
//! the frame when it comes back: zstd computing it would slow the thread that sets the
//! pace by some 7 % (measured: the level-1 recorder at 0.87 of bare zstd against 0.94).
//! A flush tick
//! that saw no full frame ends the flood: compression goes back inline, and the thread
//! and its buffers are freed.

use std::io;
use std::sync::mpsc::{Receiver, SyncSender, TryRecvError, sync_channel};
use std::thread::JoinHandle;

/// Where compressed frames go, in order.
pub trait FrameSink {
    /// Writes one complete zstd frame.
    fn write_frame(&mut self, frame: &[u8]) -> io::Result<()>;
}

impl FrameSink for Vec<u8> {
    fn write_frame(&mut self, frame: &[u8]) -> io::Result<()> {
        self.extend_from_slice(frame);
        Ok(())
    }
}

/// Frames waiting for the compression thread while it compresses another (one measured
/// the same as two). With the one the encoder is filling, a flood holds at most three
/// frame buffers; full means zstd is behind, and the encoder waits.
const QUEUE_FRAMES: usize = 1;

/// Stack of the compression thread, as for the writer's: zstd keeps its state on the heap.
const THREAD_STACK: usize = 512 * 1024;

/// Compresses one frame at a time, with a zstd context kept for the whole recording (a
/// context per frame would cost more than compressing a small frame).
struct Compressor {
    level: i32,
    context: Option<zstd::bulk::Compressor<'static>>,
}

impl Compressor {
    fn new(level: i32) -> Compressor {
        Compressor { level, context: None }
    }

    /// Compresses `text` into `frame`, replacing what it held, without the content
    /// checksum (see [`with_checksum`]).
    fn compress(&mut self, text: &[u8], frame: &mut Vec<u8>) -> io::Result<()> {
        let context = match &mut self.context {
            Some(context) => context,
            empty => empty.insert(zstd::bulk::Compressor::new(self.level)?),
        };
        frame.clear();
        frame.reserve(zstd::zstd_safe::compress_bound(text.len()) + CHECKSUM_BYTES);
        context.compress_to_buffer(text, frame)?;
        Ok(())
    }
}

/// Bytes of a zstd frame's content checksum: the low 32 bits of XXH64 (seed 0) of the
/// frame's content, little-endian, after its last block (RFC 8878, 3.1.1).
const CHECKSUM_BYTES: usize = 4;

/// The checksum zstd would write for a frame of `text`.
fn content_checksum(text: &[u8]) -> u32 {
    xxhash_rust::xxh64::xxh64(text, 0) as u32
}

/// Makes `frame` (one zstd frame written without a checksum) end with `checksum`: its
/// descriptor's Content_Checksum_flag set (bit 2 of the byte after the magic number) and
/// the four bytes appended, as zstd itself writes them.
fn with_checksum(frame: &mut Vec<u8>, checksum: u32) -> io::Result<()> {
    match frame.get(..5) {
        Some([m0, m1, m2, m3, descriptor]) if [*m0, *m1, *m2, *m3] == ZSTD_MAGIC && descriptor & 0x04 == 0 => {
            frame[4] |= 0x04
        }
        _ => return Err(io::Error::other("compressed frame is not a zstd frame without a checksum")),
    }
    frame.extend_from_slice(&checksum.to_le_bytes());
    Ok(())
}

/// The magic number a zstd frame starts with.
const ZSTD_MAGIC: [u8; 4] = [0x28, 0xb5, 0x2f, 0xfd];

/// A zstd context whose frames end with a checksum of their content, so that a reader
/// tells a damaged frame (a flipped bit on disk, a bad copy) from a good one, skips it and
/// goes on with the next, instead of showing garbage as the record.
pub fn checksummed(level: i32) -> io::Result<zstd::bulk::Compressor<'static>> {
    let mut context = zstd::bulk::Compressor::new(level)?;
    context.set_parameter(zstd::zstd_safe::CParameter::ChecksumFlag(true))?;
    Ok(context)
}

/// A frame's text on its way to the compression thread, and back with its compressed
/// frame: both buffers are reused for later frames.
struct Job {
    text: Vec<u8>,
    frame: Vec<u8>,
    /// The text's content checksum, computed on the writer thread meanwhile.
    checksum: u32,
}

/// The compression thread and the buffers going round it.
struct Pipeline {
    jobs: SyncSender<Job>,
    done: Receiver<Job>,
    /// Jobs sent and not yet back.
    in_flight: usize,
    /// Buffers of jobs that came back, for the next frames.
    texts: Vec<Vec<u8>>,
    frames: Vec<Vec<u8>>,
    /// Hands the compressor back when it ends.
    thread: JoinHandle<io::Result<Compressor>>,
}

enum Stage {
    Inline { compressor: Compressor, frame: Vec<u8> },
    Thread(Pipeline),
    Finished,
}

/// The compression stage of one recording.
pub struct Frames<S: FrameSink> {
    stage: Stage,
    sink: Option<S>,
    /// False keeps compression inline for good (benchmarks measuring CPU per byte).
    may_thread: bool,
    /// A full frame came since the last [`Frames::settle`]: the flood goes on.
    flooding: bool,
}

impl<S: FrameSink> Frames<S> {
    pub fn new(level: i32, sink: S) -> Frames<S> {
        Frames {
            stage: Stage::Inline { compressor: Compressor::new(level), frame: Vec::new() },
            sink: Some(sink),
            may_thread: true,
            flooding: false,
        }
    }

    /// Never moves compression to a thread of its own.
    pub fn inline(mut self) -> Frames<S> {
        self.may_thread = false;
        self
    }

    /// Compresses and writes one closed frame of text; `full` says it was closed because
    /// it was full rather than by the flush timer. Returns an empty buffer for the next.
    /// On the compression thread, the frame is written by a later call (this one writes
    /// those compressed meanwhile), by [`Frames::settle`] or by [`Frames::finish`].
    pub fn write(&mut self, mut text: Vec<u8>, full: bool) -> io::Result<Vec<u8>> {
        self.flooding |= full;
        if full && self.may_thread {
            self.start_thread()?;
        }
        let (stage, sink) = self.parts()?;
        match stage {
            Stage::Inline { compressor, frame } => {
                compressor.compress(&text, frame)?;
                with_checksum(frame, content_checksum(&text))?;
                sink.write_frame(frame)?;
                text.clear();
                Ok(text)
            }
            Stage::Thread(pipeline) => {
                let capacity = text.capacity();
                let frame = pipeline.frames.pop().unwrap_or_default();
                // Hashed while the frame before it may still be compressing; the text is
                // not touched again on this thread until it comes back.
                let checksum = content_checksum(&text);
                if pipeline.jobs.send(Job { text, frame, checksum }).is_err() {
                    return Err(self.stopped());
                }
                pipeline.in_flight += 1;
                self.write_done(false)?;
                let spare = self.pipeline().and_then(|pipeline| pipeline.texts.pop());
                Ok(spare.unwrap_or_else(|| Vec::with_capacity(capacity)))
            }
            Stage::Finished => Err(finished()),
        }
    }

    /// Waits until every frame handed over is compressed and written (the flush timer's
    /// call: a crash then loses at most the text of one flush interval). When no full frame
    /// came since the last call, the flood is over: the compression thread ends and its
    /// buffers and large zstd context are freed, so that a session that once ran a `cat`
    /// holds no more than one that never did. Returns whether a flood ended so.
    pub fn settle(&mut self) -> io::Result<bool> {
        self.write_done(true)?;
        if std::mem::take(&mut self.flooding) || !self.threaded() {
            return Ok(false);
        }
        self.end_thread()?;
        Ok(true)
    }

    /// Whether compression runs on a thread of its own (a flood is on).
    pub fn threaded(&self) -> bool {
        matches!(self.stage, Stage::Thread(_))
    }

    /// Writes every frame handed over, waits for the compression thread to end, and hands
    /// back the sink (or the error that stopped compression).
    pub fn finish(&mut self) -> io::Result<S> {
        self.write_done(true)?;
        self.end_thread()?;
        self.stage = Stage::Finished;
        self.sink.take().ok_or_else(finished)
    }

    /// Ends the compression thread, if there is one, once every frame handed over is
    /// written; compression goes back inline, without the thread's large zstd context.
    fn end_thread(&mut self) -> io::Result<()> {
        let stage = std::mem::replace(&mut self.stage, Stage::Finished);
        let Stage::Thread(Pipeline { jobs, thread, .. }) = stage else {
            self.stage = stage;
            return Ok(());
        };
        drop(jobs);
        let mut compressor = thread.join().map_err(|_| io::Error::other("compression thread panicked"))??;
        compressor.context = None;
        self.stage = Stage::Inline { compressor, frame: Vec::new() };
        Ok(())
    }

    /// Writes the frames the compression thread has finished, in order; with `wait`, waits
    /// for all of them.
    fn write_done(&mut self, wait: bool) -> io::Result<()> {
        let (Stage::Thread(pipeline), sink) = self.parts()? else {
            return Ok(());
        };
        while pipeline.in_flight > 0 {
            let job = if wait {
                pipeline.done.recv().map_err(|_| TryRecvError::Disconnected)
            } else {
                pipeline.done.try_recv()
            };
            match job {
                Ok(Job { mut text, mut frame, checksum }) => {
                    pipeline.in_flight -= 1;
                    with_checksum(&mut frame, checksum)?;
                    sink.write_frame(&frame)?;
                    text.clear();
                    pipeline.texts.push(text);
                    pipeline.frames.push(frame);
                }
                Err(TryRecvError::Empty) => break,
                Err(TryRecvError::Disconnected) => return Err(self.stopped()),
            }
        }
        Ok(())
    }

    fn parts(&mut self) -> io::Result<(&mut Stage, &mut S)> {
        match &mut self.sink {
            Some(sink) => Ok((&mut self.stage, sink)),
            None => Err(finished()),
        }
    }

    fn pipeline(&mut self) -> Option<&mut Pipeline> {
        match &mut self.stage {
            Stage::Thread(pipeline) => Some(pipeline),
            _ => None,
        }
    }

    /// The compression thread stopped early: its error (the recording has failed).
    fn stopped(&mut self) -> io::Error {
        self.sink = None;
        match std::mem::replace(&mut self.stage, Stage::Finished) {
            Stage::Thread(Pipeline { thread, .. }) => match thread.join() {
                Ok(Err(err)) => err,
                Ok(Ok(_)) => io::Error::other("compression stopped"),
                Err(_) => io::Error::other("compression thread panicked"),
            },
            _ => io::Error::other("compression stopped"),
        }
    }

    /// Moves an inline stage to a thread of its own (once; later calls do nothing). If the
    /// thread cannot be started, the stage is `Finished`: the recording fails and its
    /// session ends.
    fn start_thread(&mut self) -> io::Result<()> {
        if !matches!(self.stage, Stage::Inline { .. }) {
            return Ok(());
        }
        let Stage::Inline { mut compressor, frame } = std::mem::replace(&mut self.stage, Stage::Finished) else {
            return Ok(());
        };
        let (jobs, queued) = sync_channel::<Job>(QUEUE_FRAMES);
        let (give_back, done) = std::sync::mpsc::channel();
        let thread =
            std::thread::Builder::new().name("recorder-zstd".into()).stack_size(THREAD_STACK).spawn(move || {
                for mut job in queued {
                    compressor.compress(&job.text, &mut job.frame)?;
                    if give_back.send(job).is_err() {
                        break; // the encoder is gone
                    }
                }
                Ok(compressor)
            })?;
        let frames = vec![frame];
        self.stage = Stage::Thread(Pipeline { jobs, done, in_flight: 0, texts: Vec::new(), frames, thread });
        Ok(())
    }
}

fn finished() -> io::Error {
    io::Error::other("recording already finished")
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The checksum put in on the writer thread makes exactly the frame zstd writes with
    /// its own checksum, so every zstd reader checks it (and finds a changed byte).
    #[test]
    fn the_checksum_added_after_compression_is_zstds_own() {
        let text: Vec<u8> =
            (0..300_000u32).flat_map(|i| format!("[0.001, \"o\", \"line {i}\\r\\n\"]\n").into_bytes()).collect();
        for level in [1, 3] {
            let mut ours = Vec::new();
            Compressor::new(level).compress(&text, &mut ours).unwrap();
            with_checksum(&mut ours, content_checksum(&text)).unwrap();
            let theirs = checksummed(level).unwrap().compress(&text).unwrap();
            assert_eq!(ours, theirs, "level {level}");
            assert_eq!(zstd::decode_all(&ours[..]).unwrap(), text);
            // The last byte is the checksum's: a changed one is found.
            let mut changed = ours.clone();
            *changed.last_mut().unwrap() ^= 1;
            assert!(zstd::decode_all(&changed[..]).is_err());
        }
        assert!(with_checksum(&mut zstd_checksummed(&text), 0).is_err(), "a frame with a checksum already");
    }

    fn zstd_checksummed(text: &[u8]) -> Vec<u8> {
        checksummed(1).unwrap().compress(text).unwrap()
    }

    /// A sink that fails from its third frame on, as a full disk would.
    struct FailingSink(usize);

    impl FrameSink for FailingSink {
        fn write_frame(&mut self, _frame: &[u8]) -> io::Result<()> {
            self.0 += 1;
            if self.0 >= 3 { Err(io::Error::other("no space left on device")) } else { Ok(()) }
        }
    }

    #[test]
    fn threaded_frames_arrive_in_order_and_decode() {
        let mut frames = Frames::new(1, Vec::new());
        let mut expected = Vec::new();
        for i in 0..45 {
            let mut text = format!("frame {i}\n").repeat(1000).into_bytes();
            expected.extend_from_slice(&text);
            // Quiet frames (inline), a flood (threaded), quiet again, a second flood, quiet.
            let full = (10..20).contains(&i) || (30..35).contains(&i);
            let buffer = frames.write(std::mem::take(&mut text), full).unwrap();
            assert!(buffer.is_empty());
            // Threaded from the first full frame until a tick that saw none.
            assert_eq!(frames.threaded(), (10..25).contains(&i) || (30..40).contains(&i), "frame {i}");
            if i % 5 == 4 {
                // What the flush timer waits for: everything so far in the sink. A tick
                // without a full frame since the last one ends the compression thread.
                let flood_over = frames.settle().unwrap();
                assert_eq!(flood_over, i == 24 || i == 39, "settled after frame {i}");
                let written = frames.sink.as_ref().unwrap();
                assert_eq!(zstd::decode_all(&written[..]).unwrap(), expected, "settled after frame {i}");
            }
        }
        let file = frames.finish().unwrap();
        assert_eq!(zstd::decode_all(&file[..]).unwrap(), expected);
    }

    #[test]
    fn a_failing_sink_is_reported_inline_and_threaded() {
        for full in [false, true] {
            let mut frames = Frames::new(1, FailingSink(0));
            let mut first_error = None;
            for _ in 0..10 {
                if let Err(err) = frames.write(b"text".to_vec(), full) {
                    first_error = Some(err.to_string());
                    break;
                }
            }
            assert_eq!(first_error.as_deref(), Some("no space left on device"), "full: {full}");
        }
    }
}
