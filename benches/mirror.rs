//! The mirror: session output fanned out to 0, 1, 10 and 100 watchers, one of which never
//! reads. Measures the streaming path as the relay runs it per chunk (queue for the real
//! recorder, which writes a sealed recording on threads of its own, then publish to the
//! mirror, which never waits) until the recording is complete, while the watchers and the
//! terminal emulator drain in other tasks on the same two cores. Target: with 100 watchers, one
//! stalled, ≥ 0.95 × the throughput with none.

#![allow(clippy::unwrap_used, clippy::expect_used)]

#[path = "corpus.rs"]
mod corpus;

use std::time::{Duration, Instant};

use chaperone::config::RecordingConfig;
use chaperone::keys::Keys;
use chaperone::mirror::Mirror;
use chaperone::recording::seal::Sealer;
use chaperone::recording::{Event, Recorder};
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
        // The relay is a task on the runtime's workers, among the watchers' tasks: as in the
        // bastion it queues each chunk for the recording (written by the real recorder on
        // threads of its own) and publishes it to the mirror.
        let chunks: Vec<bytes::Bytes> = chunks.to_vec();
        let publisher = mirror.clone();
        let folder = tempfile::tempdir().unwrap();
        let keys = Keys::load_or_create(folder.path()).unwrap();
        let sealer = Sealer::create(folder.path(), "bench", keys.signing.expose().clone()).unwrap();
        let config = RecordingConfig::default();
        let path = folder.path().join("session.cast.zst");
        let (recorder, summary) = Recorder::create(&path, "bench".into(), chrono::Utc::now(), config, sealer).unwrap();
        let took = tokio::spawn(async move {
            let start = Instant::now();
            for chunk in &chunks {
                recorder.record(Event::Output(chunk.clone())).await.unwrap();
                publisher.output(chunk.clone());
            }
            drop(recorder);
            let summary = summary.await.unwrap();
            assert!(summary.error.is_none());
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
