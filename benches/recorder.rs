//! The recorder (UTF-8 carry, asciicast v3 encoding, merging, zstd frames) against bare
//! zstd compressing the same bytes at the same level in frames of the same size.
//! Target: recorder ≥ 0.9 × bare zstd. After criterion's figures, all are run side by
//! side (alternating) and the ratios printed: the recorder as the bastion runs it (zstd on
//! a thread of its own during a flood), all on one thread, the whole recorder with its
//! queue, file and seal, and each one's CPU time per byte.

#![allow(clippy::unwrap_used, clippy::expect_used)]

#[path = "corpus.rs"]
mod corpus;

use std::cell::Cell;
use std::hint::black_box;
use std::time::{Duration, Instant};

use chaperone::config::RecordingConfig;
use chaperone::keys::Keys;
use chaperone::recording::encoder::{Encoder, FRAME_BYTES};
use chaperone::recording::frames::{FrameSink, Frames};
use chaperone::recording::seal::Sealer;
use chaperone::recording::{Event, Recorder};
use criterion::{Criterion, Throughput};

/// Large enough that starting and draining the pipeline (a frame each) weigh little, as
/// in the long floods it is for.
const CORPUS: usize = 64 * 1024 * 1024;

/// Counts the compressed bytes, as `bare_zstd` does: both leave storing them out.
struct Counted(usize);

impl FrameSink for Counted {
    fn write_frame(&mut self, frame: &[u8]) -> std::io::Result<()> {
        self.0 += frame.len();
        Ok(())
    }
}

fn bare_zstd(data: &[u8], level: i32) -> usize {
    let mut compressor = zstd::bulk::Compressor::new(level).unwrap();
    let mut out = Vec::with_capacity(zstd::zstd_safe::compress_bound(FRAME_BYTES));
    let mut written = 0;
    for frame in data.chunks(FRAME_BYTES) {
        out.clear();
        compressor.compress_to_buffer(frame, &mut out).unwrap();
        written += out.len();
    }
    written
}

/// The recorder as the bastion runs it (`threaded`: zstd moves to a thread of its own once
/// frames close because they are full), or all on one thread.
fn recorder(chunks: &[bytes::Bytes], level: i32, threaded: bool) -> usize {
    let start = Instant::now();
    let frames = Frames::new(level, Counted(0));
    let frames = if threaded { frames } else { frames.inline() };
    let mut encoder = Encoder::with_frames("bench".into(), chrono::Utc::now(), start, frames);
    for (i, chunk) in chunks.iter().enumerate() {
        // One packet every 20 µs, as in a fast stream.
        let at = start + Duration::from_micros(20 * i as u64);
        encoder.encode(at, Event::Output(chunk.clone())).unwrap();
    }
    encoder.finish().unwrap().0
}

/// The whole recorder as a session drives it: each chunk queued from a task on the runtime
/// to the writer thread, the recording written to a file in a temporary folder, with a seal
/// checkpoint (SHA-256 of the file so far, signed) after every frame, and made durable.
/// `streaming` keeps the shortest time until the last chunk was queued (the rest is the
/// session's end: the last frames and the fsync).
fn sealed_recorder(
    runtime: &tokio::runtime::Runtime,
    keys: &Keys,
    chunks: &[bytes::Bytes],
    level: i32,
    streaming: &Cell<Duration>,
) -> usize {
    let folder = tempfile::tempdir().unwrap();
    let sealer = Sealer::create(folder.path(), "bench", keys.signing.expose().clone()).unwrap();
    let config = RecordingConfig { zstd_level: level, ..RecordingConfig::default() };
    let path = folder.path().join("session.cast.zst");
    let start = Instant::now();
    runtime.block_on(async {
        let (recorder, summary) = Recorder::create(&path, "bench".into(), chrono::Utc::now(), config, sealer).unwrap();
        for chunk in chunks {
            recorder.record(Event::Output(chunk.clone())).await.unwrap();
        }
        drop(recorder);
        streaming.set(streaming.get().min(start.elapsed()));
        assert!(summary.await.unwrap().error.is_none());
    });
    std::fs::metadata(&path).unwrap().len() as usize
}

/// CPU time of the whole process (all threads) so far.
fn cpu_time() -> Duration {
    let mut usage = std::mem::MaybeUninit::<libc::rusage>::zeroed();
    // SAFETY: getrusage fills the struct it is given; zeroed is a valid rusage.
    let usage = unsafe {
        libc::getrusage(libc::RUSAGE_SELF, usage.as_mut_ptr());
        usage.assume_init()
    };
    let time = |t: libc::timeval| Duration::new(t.tv_sec as u64, t.tv_usec as u32 * 1000);
    time(usage.ru_utime) + time(usage.ru_stime)
}

fn main() {
    let data = corpus::terminal_output(CORPUS, 42);
    let chunks = corpus::chunks(&data, 7);
    let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    // The bastion's keys, loaded once at its start.
    let key_folder = tempfile::tempdir().unwrap();
    let keys = Keys::load_or_create(key_folder.path()).unwrap();
    let mut criterion = Criterion::default().sample_size(10).configure_from_args();
    for level in [1, 3] {
        let mut group = criterion.benchmark_group(format!("recorder/zstd-{level}"));
        group.throughput(Throughput::Bytes(data.len() as u64));
        group.bench_function("bare zstd", |b| b.iter(|| black_box(bare_zstd(&data, level))));
        group.bench_function("recorder", |b| b.iter(|| black_box(recorder(&chunks, level, true))));
        group.bench_function("recorder, one thread", |b| b.iter(|| black_box(recorder(&chunks, level, false))));
        group.bench_function("recorder, file and seal", |b| {
            b.iter(|| black_box(sealed_recorder(&runtime, &keys, &chunks, level, &Cell::new(Duration::MAX))))
        });
        group.finish();
    }
    criterion.final_summary();

    println!("\nside by side, best of 9 alternating runs over {} MiB:", CORPUS >> 20);
    for level in [1, 3] {
        let streaming = Cell::new(Duration::MAX);
        let runs: [(&str, &dyn Fn() -> usize); 4] = [
            ("bare zstd", &|| bare_zstd(&data, level)),
            ("recorder", &|| recorder(&chunks, level, true)),
            ("recorder, one thread", &|| recorder(&chunks, level, false)),
            ("recorder, file and seal", &|| sealed_recorder(&runtime, &keys, &chunks, level, &streaming)),
        ];
        // Best wall and CPU time of each, and the size it wrote.
        let mut wall = [Duration::MAX; 4];
        let mut cpu = [Duration::MAX; 4];
        let mut sizes = [0; 4];
        for _ in 0..9 {
            for (k, (_, run)) in runs.iter().enumerate() {
                let (t, c) = (Instant::now(), cpu_time());
                sizes[k] = black_box(run());
                wall[k] = wall[k].min(t.elapsed());
                cpu[k] = cpu[k].min(cpu_time() - c);
            }
        }
        println!("zstd -{level} (target: recorder ≥ 0.9 × bare zstd):");
        for (k, (name, _)) in runs.iter().enumerate() {
            println!(
                "  {name:<24} {:>5.0} MB/s  {:.2} × bare  CPU per byte {:.2} × bare  size {:.3} × raw",
                data.len() as f64 / wall[k].as_secs_f64() / 1e6,
                wall[0].as_secs_f64() / wall[k].as_secs_f64(),
                cpu[k].as_secs_f64() / cpu[0].as_secs_f64(),
                sizes[k] as f64 / data.len() as f64
            );
        }
        println!(
            "    of which streaming (until the last chunk is queued) {:.0} MB/s, {:.2} × bare; the session's end \
             (last frames, fsync) {:.0} ms",
            data.len() as f64 / streaming.get().as_secs_f64() / 1e6,
            wall[0].as_secs_f64() / streaming.get().as_secs_f64(),
            (wall[3].saturating_sub(streaming.get())).as_secs_f64() * 1e3
        );
    }

    // An upload of a compressed file: random bytes, mostly not UTF-8, so that every event
    // carries its exact bytes (base64) beside its text. Not the fast path; here to show
    // what binary costs.
    let mut rng = corpus::Rng::new(9);
    let binary: Vec<u8> = (0..CORPUS / 4 / 8).flat_map(|_| rng.next_u64().to_le_bytes()).collect();
    let binary_chunks = corpus::chunks(&binary, 7);
    let (mut wall, mut size) = ([Duration::MAX; 2], [0; 2]);
    let runs: [&dyn Fn() -> usize; 2] = [&|| bare_zstd(&binary, 1), &|| recorder(&binary_chunks, 1, true)];
    for _ in 0..5 {
        for (k, run) in runs.iter().enumerate() {
            let t = Instant::now();
            size[k] = black_box(run());
            wall[k] = wall[k].min(t.elapsed());
        }
    }
    println!(
        "random bytes ({} MiB, best of 5), zstd -1: bare zstd {:.0} MB/s; recorder {:.0} MB/s, {:.2} × bare, \
         size {:.2} × raw",
        binary.len() >> 20,
        binary.len() as f64 / wall[0].as_secs_f64() / 1e6,
        binary.len() as f64 / wall[1].as_secs_f64() / 1e6,
        wall[0].as_secs_f64() / wall[1].as_secs_f64(),
        size[1] as f64 / binary.len() as f64
    );
}
