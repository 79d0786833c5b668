//! The recorder (UTF-8 carry, asciicast v3 encoding, merging, zstd frames) against bare
//! zstd compressing the same bytes at the same level in frames of the same size.
//! Target: recorder ≥ 0.9 × bare zstd. After criterion's figures, both are run side by
//! side (alternating) and the ratio printed: the recorder as the bastion runs it (zstd on
//! a thread of its own during a flood), all on one thread, and its CPU time per byte.

#![allow(clippy::unwrap_used, clippy::expect_used)]

#[path = "corpus.rs"]
mod corpus;

use std::hint::black_box;
use std::time::{Duration, Instant};

use chaperone::recording::Event;
use chaperone::recording::encoder::{Encoder, FRAME_BYTES};
use chaperone::recording::frames::Frames;
use criterion::{Criterion, Throughput};

const CORPUS: usize = 16 * 1024 * 1024;

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
    let frames = Frames::new(level, Vec::with_capacity(CORPUS / 3));
    let frames = if threaded { frames } else { frames.inline() };
    let mut encoder = Encoder::with_frames("bench".into(), chrono::Utc::now(), start, frames);
    for (i, chunk) in chunks.iter().enumerate() {
        // One packet every 20 µs, as in a fast stream.
        let at = start + Duration::from_micros(20 * i as u64);
        encoder.encode(at, Event::Output(chunk.clone())).unwrap();
    }
    encoder.finish().unwrap().len()
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
    let mut criterion = Criterion::default().sample_size(10).configure_from_args();
    for level in [1, 3] {
        let mut group = criterion.benchmark_group(format!("recorder/zstd-{level}"));
        group.throughput(Throughput::Bytes(data.len() as u64));
        group.bench_function("bare zstd", |b| b.iter(|| black_box(bare_zstd(&data, level))));
        group.bench_function("recorder", |b| b.iter(|| black_box(recorder(&chunks, level, true))));
        group.bench_function("recorder, one thread", |b| b.iter(|| black_box(recorder(&chunks, level, false))));
        group.finish();
    }
    criterion.final_summary();

    println!("\nside by side, best of 15 alternating runs over {} MiB:", CORPUS >> 20);
    for level in [1, 3] {
        // Wall time of bare zstd, the recorder, the recorder on one thread; CPU time of each.
        let mut wall = [Duration::MAX; 3];
        let mut cpu = [Duration::MAX; 3];
        let mut sizes = [0; 3];
        for _ in 0..15 {
            for (k, run) in
                [&(|| bare_zstd(&data, level)) as &dyn Fn() -> usize, &|| recorder(&chunks, level, true), &|| {
                    recorder(&chunks, level, false)
                }]
                .into_iter()
                .enumerate()
            {
                let (t, c) = (Instant::now(), cpu_time());
                sizes[k] = black_box(run());
                wall[k] = wall[k].min(t.elapsed());
                cpu[k] = cpu[k].min(cpu_time() - c);
            }
        }
        let mbps = |d: Duration| data.len() as f64 / d.as_secs_f64() / 1e6;
        let ratio = |a: Duration, b: Duration| a.as_secs_f64() / b.as_secs_f64();
        println!(
            "zstd -{level}: bare {:.0} MB/s, recorder {:.0} MB/s: ratio {:.2} (target ≥ 0.9); on one thread {:.0} MB/s: {:.2}; \
             CPU per byte {:.2} × bare zstd; recording {:.3} × raw (bare {:.3})",
            mbps(wall[0]),
            mbps(wall[1]),
            ratio(wall[0], wall[1]),
            mbps(wall[2]),
            ratio(wall[0], wall[2]),
            ratio(cpu[1], cpu[0]),
            sizes[1] as f64 / data.len() as f64,
            sizes[0] as f64 / data.len() as f64
        );
    }
}
