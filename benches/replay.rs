//! Seeking in a long recording: a three-hour session with 128 MiB of realistic terminal
//! output. Measures building the seek index (once, when a recording is first replayed),
//! opening a recording with its saved index, and a seek to 90 % of the session — against
//! what a player without an index does: emulate everything from the start up to there.

#![allow(clippy::unwrap_used, clippy::expect_used)]

#[path = "corpus.rs"]
mod corpus;

use std::hint::black_box;
use std::path::Path;
use std::time::{Duration, Instant};

use chaperone::config::RecordingConfig;
use chaperone::recording::encoder::Encoder;
use chaperone::recording::replay::{self, Replay};
use chaperone::recording::{Event, Term};
use criterion::Criterion;

const OUTPUT: usize = 128 * 1024 * 1024;
const SESSION: Duration = Duration::from_secs(3 * 3600);

/// Writes the recording as the recorder would: frames closed when full and at least every
/// second of session time.
fn write_recording(path: &Path) {
    let data = corpus::terminal_output(OUTPUT, 11);
    let chunks = corpus::chunks(&data, 5);
    let start = Instant::now();
    let config = RecordingConfig::default();
    let mut enc = Encoder::new("bench".into(), chrono::Utc::now(), config, start, Vec::with_capacity(OUTPUT / 3));
    let term = Term { cols: 120, rows: 40, kind: Some("xterm-256color".into()) };
    enc.encode(start, Event::Start { term, command: None }).unwrap();
    let step = SESSION.as_micros() as u64 / chunks.len() as u64;
    let mut second = 0;
    for (i, chunk) in chunks.iter().enumerate() {
        let offset = Duration::from_micros(step * i as u64);
        if offset.as_secs() != second {
            second = offset.as_secs();
            enc.flush().unwrap();
        }
        enc.encode(start + offset, Event::Output(chunk.clone())).unwrap();
    }
    let file = enc.finish().unwrap();
    std::fs::write(path, file).unwrap();
}

/// A player without an index: emulate from the start.
fn linear_seek(replay: &Replay, to_ms: u64) -> usize {
    let mut vt = avt::Terminal::new(120, 40).unwrap();
    for event in replay.events().take_while(|e| e.time_ms <= to_ms) {
        replay::apply(&mut vt, &event);
    }
    vt.dump().len()
}

fn main() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("session.cast.zst");
    write_recording(&path);
    let compressed = std::fs::metadata(&path).unwrap().len();

    let key = replay::IndexKey::from_bytes([7; 32]);
    let t = Instant::now();
    let replay = Replay::open(&path, Some(&key)).unwrap();
    let build = t.elapsed();
    let index_size = std::fs::metadata(replay::index_path(&path)).unwrap().len();
    let late = replay.index.duration_ms * 9 / 10;

    let mut criterion = Criterion::default().sample_size(10).configure_from_args();
    let mut group = criterion.benchmark_group("replay");
    group.bench_function("open with saved index", |b| {
        b.iter(|| black_box(Replay::open(&path, Some(&key)).unwrap().index.keyframes.len()))
    });
    group.bench_function("seek to 90 %", |b| b.iter(|| black_box(replay.seek(late).screen.len())));
    group.finish();
    criterion.final_summary();

    let t = Instant::now();
    let opened = Replay::open(&path, Some(&key)).unwrap();
    let open = t.elapsed();
    let t = Instant::now();
    black_box(opened.seek(late).screen.len());
    let seek = t.elapsed();
    let t = Instant::now();
    black_box(linear_seek(&replay, late));
    let linear = t.elapsed();
    println!(
        "\n{} MiB of output over {} h ({:.1} MiB compressed), {} keyframes, index {:.0} KiB:\n\
         build index once {:.2} s; open with index {:.0} ms; seek to {} {:.0} ms; \
         from the start without index {:.2} s ({:.0} × slower)",
        OUTPUT >> 20,
        SESSION.as_secs() / 3600,
        compressed as f64 / 1048576.0,
        replay.index.keyframes.len(),
        index_size as f64 / 1024.0,
        build.as_secs_f64(),
        open.as_secs_f64() * 1000.0,
        chaperone::recording::text::clock(late),
        seek.as_secs_f64() * 1000.0,
        linear.as_secs_f64(),
        linear.as_secs_f64() / (open + seek).as_secs_f64()
    );
}
