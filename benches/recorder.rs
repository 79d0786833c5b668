//! The recorder (UTF-8 carry, asciicast v3 encoding, merging, zstd frames) against bare
//! zstd compressing the same bytes at the same level in frames of the same size.
//! Target: recorder ≥ 0.9 × bare zstd. After criterion's figures, both are run side by
//! side (alternating) and the ratio printed.

#![allow(clippy::unwrap_used, clippy::expect_used)]

#[path = "corpus.rs"]
mod corpus;

use std::hint::black_box;
use std::time::{Duration, Instant};

use chaperone::config::RecordingConfig;
use chaperone::recording::Event;
use chaperone::recording::encoder::{Encoder, FRAME_BYTES};
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

fn recorder(chunks: &[bytes::Bytes], level: i32) -> usize {
    let start = Instant::now();
    let config = RecordingConfig { zstd_level: level, flush_interval: Duration::from_secs(1) };
    let mut encoder = Encoder::new("bench".into(), chrono::Utc::now(), config, start);
    let mut file = Vec::with_capacity(CORPUS / 3);
    for (i, chunk) in chunks.iter().enumerate() {
        // One packet every 20 µs, as in a fast stream.
        let at = start + Duration::from_micros(20 * i as u64);
        encoder.encode(at, Event::Output(chunk.clone()), &mut file).unwrap();
    }
    encoder.finish(&mut file).unwrap();
    file.len()
}

fn main() {
    let data = corpus::terminal_output(CORPUS, 42);
    let chunks = corpus::chunks(&data, 7);
    let mut criterion = Criterion::default().sample_size(10).configure_from_args();
    for level in [1, 3] {
        let mut group = criterion.benchmark_group(format!("recorder/zstd-{level}"));
        group.throughput(Throughput::Bytes(data.len() as u64));
        group.bench_function("bare zstd", |b| b.iter(|| black_box(bare_zstd(&data, level))));
        group.bench_function("recorder", |b| b.iter(|| black_box(recorder(&chunks, level))));
        group.finish();
    }
    criterion.final_summary();

    println!("\nside by side, best of 15 alternating runs over {} MiB:", CORPUS >> 20);
    for level in [1, 3] {
        let (mut bare, mut rec) = (Duration::MAX, Duration::MAX);
        let mut sizes = (0, 0);
        for _ in 0..15 {
            let t = Instant::now();
            sizes.0 = black_box(bare_zstd(&data, level));
            bare = bare.min(t.elapsed());
            let t = Instant::now();
            sizes.1 = black_box(recorder(&chunks, level));
            rec = rec.min(t.elapsed());
        }
        let mbps = |d: Duration| data.len() as f64 / d.as_secs_f64() / 1e6;
        println!(
            "zstd -{level}: bare {:.0} MB/s, recorder {:.0} MB/s, ratio {:.2} (target ≥ 0.9); recording {:.3} × raw (bare {:.3})",
            mbps(bare),
            mbps(rec),
            bare.as_secs_f64() / rec.as_secs_f64(),
            sizes.1 as f64 / data.len() as f64,
            sizes.0 as f64 / data.len() as f64
        );
    }
}
