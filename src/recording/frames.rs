//! The recording's compression stage: closed frames of asciicast text become independent
//! zstd frames in a sink (the recording file and its seal; memory in benchmarks and tests).
//!
//! While a session is quiet this runs inline, on the recording's writer thread. From the
//! first frame closed because it was full (a flood: `cat`, a build log, `journalctl`) it
//! moves to a thread of its own, so that escaping the next frame's text overlaps
//! compressing this one: zstd alone then sets the pace. The order of frames never changes,
//! and a full queue makes the encoder wait (and with it the relay); nothing is dropped.

use std::io;
use std::sync::mpsc::{Receiver, SyncSender, sync_channel};
use std::thread::JoinHandle;

/// Where compressed frames go, in order.
pub trait FrameSink: Send + 'static {
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
    out: Vec<u8>,
}

impl Compressor {
    fn new(level: i32) -> Compressor {
        Compressor { level, context: None, out: Vec::new() }
    }

    fn write(&mut self, text: &[u8], sink: &mut impl FrameSink) -> io::Result<()> {
        let context = match &mut self.context {
            Some(context) => context,
            empty => empty.insert(zstd::bulk::Compressor::new(self.level)?),
        };
        self.out.clear();
        self.out.reserve(zstd::zstd_safe::compress_bound(text.len()));
        context.compress_to_buffer(text, &mut self.out)?;
        sink.write_frame(&self.out)
    }
}

enum Stage<S> {
    Inline {
        compressor: Compressor,
        sink: S,
    },
    Thread {
        frames: SyncSender<Vec<u8>>,
        /// Emptied text buffers coming back, so that a flood does not allocate per frame.
        spare: Receiver<Vec<u8>>,
        thread: JoinHandle<io::Result<S>>,
    },
    Finished,
}

/// The compression stage of one recording.
pub struct Frames<S: FrameSink> {
    stage: Stage<S>,
    /// False keeps compression inline for good (benchmarks measuring CPU per byte).
    may_thread: bool,
}

impl<S: FrameSink> Frames<S> {
    pub fn new(level: i32, sink: S) -> Frames<S> {
        Frames { stage: Stage::Inline { compressor: Compressor::new(level), sink }, may_thread: true }
    }

    /// Never moves compression to a thread of its own.
    pub fn inline(mut self) -> Frames<S> {
        self.may_thread = false;
        self
    }

    /// Compresses and writes one closed frame of text; `full` says it was closed because
    /// it was full rather than by the flush timer. Returns an empty buffer for the next.
    pub fn write(&mut self, mut text: Vec<u8>, full: bool) -> io::Result<Vec<u8>> {
        if full && self.may_thread {
            self.start_thread()?;
        }
        match &mut self.stage {
            Stage::Inline { compressor, sink } => {
                compressor.write(&text, sink)?;
                text.clear();
                Ok(text)
            }
            Stage::Thread { frames, spare, .. } => {
                let capacity = text.capacity();
                if frames.send(text).is_err() {
                    // The thread stopped on an error: report it.
                    return Err(self.finish().err().unwrap_or_else(|| io::Error::other("compression stopped")));
                }
                Ok(spare.try_recv().unwrap_or_else(|_| Vec::with_capacity(capacity)))
            }
            Stage::Finished => Err(io::Error::other("recording already finished")),
        }
    }

    /// Waits for every frame to be written and hands back the sink (or the error that
    /// stopped the compression thread).
    pub fn finish(&mut self) -> io::Result<S> {
        match std::mem::replace(&mut self.stage, Stage::Finished) {
            Stage::Inline { sink, .. } => Ok(sink),
            Stage::Thread { frames, thread, .. } => {
                drop(frames);
                thread.join().map_err(|_| io::Error::other("compression thread panicked"))?
            }
            Stage::Finished => Err(io::Error::other("recording already finished")),
        }
    }

    /// Moves an inline stage to a thread of its own (once; later calls do nothing). If the
    /// thread cannot be started, the stage is `Finished`: the recording fails and its
    /// session ends.
    fn start_thread(&mut self) -> io::Result<()> {
        if !matches!(self.stage, Stage::Inline { .. }) {
            return Ok(());
        }
        let Stage::Inline { mut compressor, mut sink } = std::mem::replace(&mut self.stage, Stage::Finished) else {
            return Ok(());
        };
        let (frames, queued) = sync_channel::<Vec<u8>>(QUEUE_FRAMES);
        let (give_back, spare) = std::sync::mpsc::channel();
        let thread =
            std::thread::Builder::new().name("recorder-zstd".into()).stack_size(THREAD_STACK).spawn(move || {
                for mut text in queued {
                    compressor.write(&text, &mut sink)?;
                    text.clear();
                    // The encoder may be gone already; the buffer is then simply freed.
                    let _ = give_back.send(text);
                }
                Ok(sink)
            })?;
        self.stage = Stage::Thread { frames, spare, thread };
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
        for i in 0..40 {
            let mut text = format!("frame {i}\n").repeat(1000).into_bytes();
            expected.extend_from_slice(&text);
            // Quiet frames first (inline), then a flood (threaded), then quiet again.
            let buffer = frames.write(std::mem::take(&mut text), (10..30).contains(&i)).unwrap();
            assert!(buffer.is_empty());
        }
        assert!(matches!(frames.stage, Stage::Thread { .. }));
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
