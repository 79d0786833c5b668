//! The mirror: session output fanned out to 0, 1, 10 and 100 watchers, one of which never
//! reads. Measures the streaming path as the relay runs it per chunk (record, then
//! publish to the mirror, which never waits) while the watchers and the terminal
//! emulator drain in other tasks on the same two cores. Target: with 100 watchers, one
//! stalled, ≥ 0.95 × the throughput with none.

#![allow(clippy::unwrap_used, clippy::expect_used)]

#[path = "corpus.rs"]
mod corpus;

use std::time::{Duration, Instant};

use chaperone::config::RecordingConfig;
use chaperone::mirror::Mirror;
use chaperone::recording::Event;
use chaperone::recording::encoder::Encoder;
use tokio::sync::broadcast::error::RecvError;

const CORPUS: usize = 64 * 1024 * 1024;

/// Publishes every chunk with `watchers` joined (one of them stalled); returns the time
/// the publishing side took.
fn run(runtime: &tokio::runtime::Runtime, chunks: &[bytes::Bytes], watchers: usize) -> Duration {
    runtime.block_on(async {
        let mirror = Mirror::new(80, 24);
        let mut stalled = None;
        let mut drains = Vec::new();
        for i in 0..watchers {
            let mut joined = mirror.join().await.unwrap();
            if i == 0 {
                stalled = Some(joined);
                continue;
            }
            drains.push(tokio::spawn(
                async move { while !matches!(joined.frames.recv().await, Err(RecvError::Closed)) {} },
            ));
        }
        // The relay is a task on the runtime's workers, among the watchers' tasks.
        let chunks: Vec<bytes::Bytes> = chunks.to_vec();
        let publisher = mirror.clone();
        let took = tokio::spawn(async move {
            let config = RecordingConfig { zstd_level: 3, flush_interval: Duration::from_secs(1) };
            let start = Instant::now();
            let mut encoder = Encoder::new("bench".into(), chrono::Utc::now(), config, start);
            let mut file = Vec::with_capacity(CORPUS / 3);
            for (i, chunk) in chunks.iter().enumerate() {
                let at = start + Duration::from_micros(20 * i as u64);
                encoder.encode(at, Event::Output(chunk.clone()), &mut file).unwrap();
                publisher.output(chunk.clone());
                if i % 64 == 0 {
                    // Give the watchers their turn, as the relay's awaits do.
                    tokio::task::yield_now().await;
                }
            }
            encoder.finish(&mut file).unwrap();
            start.elapsed()
        })
        .await
        .unwrap();
        for d in drains {
            d.abort();
        }
        drop(stalled);
        took
    })
}

fn main() {
    let data = corpus::terminal_output(CORPUS, 42);
    let chunks = corpus::chunks(&data, 7);
    let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    println!("mirror fan-out of {} MiB in {} chunks, best of 5 alternating runs:", CORPUS >> 20, chunks.len());
    let counts = [0usize, 1, 10, 100];
    let mut best = [Duration::MAX; 4];
    for _ in 0..5 {
        for (i, &n) in counts.iter().enumerate() {
            best[i] = best[i].min(run(&runtime, &chunks, n));
        }
    }
    for (i, &n) in counts.iter().enumerate() {
        let mbps = data.len() as f64 / best[i].as_secs_f64() / 1e6;
        println!(
            "{n:>3} watchers (one stalled when any): {mbps:>8.0} MB/s, {:.2} × none",
            best[0].as_secs_f64() / best[i].as_secs_f64()
        );
    }
    println!("target: 100 watchers ≥ 0.95 × none");
}
