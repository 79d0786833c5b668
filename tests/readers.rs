//! Readers of recordings against hostile and damaged files (zstd bombs, flipped bytes,
//! garbage), and the evidence an interrupted session keeps after kill -9 and a restart.

use std::io::{BufRead, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use crate::common::*;

/// What a finished command left, and the most memory it held (its peak resident set).
struct Run {
    code: Option<i32>,
    stdout: String,
    stderr: String,
    peak_kb: u64,
}

/// Runs `cmd` under `/usr/bin/time` with its output into files and returns its exit,
/// output and peak memory (the kernel's count for the process, so no sampling misses the
/// peak; not from this test process, whose memory a forked child would inherit).
fn run_measured(cmd: Command, dir: &Path) -> Run {
    let (out, err, peak) = (dir.join("run.stdout"), dir.join("run.stderr"), dir.join("run.peak"));
    let mut timed = Command::new("/usr/bin/time");
    timed.arg("-f").arg("%M").arg("-o").arg(&peak).arg(cmd.get_program()).args(cmd.get_args());
    for (key, value) in cmd.get_envs() {
        if let Some(value) = value {
            timed.env(key, value);
        }
    }
    let status = timed
        .stdin(Stdio::null())
        .stdout(std::fs::File::create(&out).unwrap())
        .stderr(std::fs::File::create(&err).unwrap())
        .status()
        .unwrap();
    let read = |p: &PathBuf| String::from_utf8_lossy(&std::fs::read(p).unwrap()).into_owned();
    let peak_kb = read(&peak).lines().last().unwrap_or_default().trim().parse().unwrap_or(u64::MAX);
    Run { code: status.code(), stdout: read(&out), stderr: read(&err), peak_kb }
}

/// The offsets and lengths of the zstd frames of a file.
fn frames_of(file: &[u8]) -> Vec<(usize, usize)> {
    let mut frames = Vec::new();
    let mut at = 0;
    while at < file.len() {
        let length = zstd::zstd_safe::find_frame_compressed_size(&file[at..]).unwrap();
        frames.push((at, length));
        at += length;
    }
    frames
}

fn frame(text: &str) -> Vec<u8> {
    zstd::bulk::compress(text.as_bytes(), 1).unwrap()
}

/// A frame of `mib` MiB of one byte and no newline, written with a window of 2^`window_log`
/// (compressed to a few bytes per 128 KiB block: a bomb).
fn bomb(mib: usize, window_log: u32) -> Vec<u8> {
    let mut out = Vec::new();
    let mut encoder = zstd::stream::write::Encoder::new(&mut out, 1).unwrap();
    encoder.window_log(window_log).unwrap();
    let run = vec![b'a'; 1 << 20];
    for _ in 0..mib {
        encoder.write_all(&run).unwrap();
    }
    encoder.finish().unwrap();
    out
}

/// A zstd bomb placed as a session's recording: a good frame (the header and a line), a
/// frame of 1 GiB of one byte, a frame asking for a 128 MiB window holding 256 MiB, and a
/// good frame. Every reader stays within a few tens of megabytes, says where the bombs
/// are, shows what is around them and exits non-zero.
#[test]
fn a_zstd_bomb_costs_the_readers_no_memory() {
    let w = World::new();
    let out = w.exec("echo hi");
    assert!(out.status.success(), "{}", stderr(&out));
    let id = w.last_session();
    w.ended_session_json(&id);
    let header = "{\"version\":3,\"term\":{\"cols\":80,\"rows\":24},\"timestamp\":0}\n";
    let mut file = frame(&format!("{header}[0.1, \"o\", \"before-bomb\\r\\n\"]\n[0.1, \"i\", \"typed-before\\r\"]\n"));
    let second = file.len();
    file.extend(bomb(1024, 20));
    let third = file.len();
    file.extend(bomb(256, 27));
    file.extend(frame("[0.1, \"o\", \"after-bomb\\r\\n\"]\n[0.1, \"i\", \"typed-after\\r\"]\n"));
    assert!(file.len() < 64 * 1024, "a small file: {} bytes", file.len());
    std::fs::write(w.folder(&id).join("session.cast.zst"), &file).unwrap();

    let runs: [(&str, &[&str], &str); 5] = [
        ("cat", &["recordings", "cat", &id], "before-bomb\r\nafter-bomb\r\n"),
        ("export", &["recordings", "export", &id, "--output", "-"], "after-bomb"),
        ("replay", &["replay", &id, "--speed", "1000"], "after-bomb"),
        ("search", &["recordings", "search", "bomb"], "output: after-bomb"),
        ("commands", &["recordings", "commands", &id], "typed-after"),
    ];
    for (name, args, shown) in runs {
        let mut cmd = w.bastion.command();
        cmd.args(args);
        let run = run_measured(cmd, w.tmp.path());
        eprintln!("{name}: peak {} KiB", run.peak_kb);
        assert!(run.peak_kb < 64 * 1024, "{name} held {} MiB", run.peak_kb / 1024);
        assert!(run.stdout.contains(shown), "{name}: {:?} {}", run.stdout, run.stderr);
        assert!(!run.stdout.contains("aaaa"), "{name} showed the bomb");
        assert_eq!(run.code, Some(1), "{name}: {}", run.stderr);
        assert!(
            run.stderr.contains(&format!(
                "frame 2 at byte {second}: damaged (decompresses to more than 8 MiB); skipped its {} bytes",
                third - second
            )),
            "{name}: {}",
            run.stderr
        );
        assert!(
            run.stderr.contains(&format!("frame 3 at byte {third}: damaged (frame requires too much memory")),
            "{name}: {}",
            run.stderr
        );
    }
    // The seal does not cover the planted file, which is reported too.
    let verify = w.bastion.run(&["recordings", "verify", &id]);
    assert_eq!(verify.status.code(), Some(1));
    assert!(stderr(&verify).contains("NOT INTACT: session.cast.zst"), "{}", stderr(&verify));
}

/// A session long enough for several frames; one byte flipped in its middle frame (as a
/// bad disk or copy would): the readers show what comes before and after, say which frame
/// at which byte was skipped, and exit non-zero.
#[test]
fn a_damaged_frame_is_skipped_and_the_rest_is_read() {
    let w = World::new();
    let out = w.exec("for i in $(seq 1 40); do echo line-$i; sleep 0.05; done");
    assert!(out.status.success(), "{}", stderr(&out));
    let id = w.last_session();
    w.ended_session_json(&id);
    let cast = w.folder(&id).join("session.cast.zst");
    let mut file = std::fs::read(&cast).unwrap();
    let frames = frames_of(&file);
    assert!(frames.len() >= 5, "{} frames", frames.len());
    let n = frames.len() / 2;
    let (at, length) = frames[n];
    let lost: Vec<String> = String::from_utf8(zstd::decode_all(&file[at..at + length]).unwrap())
        .unwrap()
        .split("\\n")
        .filter_map(|l| l.rsplit_once("line-").map(|(_, n)| format!("line-{n}")))
        .collect();
    assert!(!lost.is_empty() && !lost.contains(&"line-1".to_string()) && !lost.contains(&"line-40".to_string()));
    file[at + length / 2] ^= 0x20;
    std::fs::write(&cast, &file).unwrap();

    let said = format!("frame {} at byte {at}: damaged (", n + 1);
    for (name, args) in [
        ("cat", vec!["recordings", "cat", &id]),
        ("export", vec!["recordings", "export", &id, "--format", "v2", "--output", "-"]),
        ("replay", vec!["replay", &id, "--speed", "1000"]),
    ] {
        let out = w.bastion.run(&args);
        let shown = stdout(&out);
        assert_eq!(out.status.code(), Some(1), "{name}: {}", stderr(&out));
        assert!(stderr(&out).contains(&said), "{name}: {}", stderr(&out));
        for i in 1..=40 {
            let line = format!("line-{i}");
            let expected = !lost.contains(&line);
            // As shown (cat, replay) or as JSON (export).
            let found = shown.contains(&format!("{line}\n")) || shown.contains(&format!("{line}\\n"));
            assert_eq!(found, expected, "{name}: {line} (lost: {lost:?})");
        }
    }
}

/// `recordings search` goes on past a recording it cannot read, with a warning naming it,
/// and its exit status says that some were unreadable.
#[test]
fn search_goes_on_past_an_unreadable_recording() {
    let w = World::new();
    assert!(w.exec("echo first-needle").status.success());
    let first = w.last_session();
    w.ended_session_json(&first);
    assert!(w.exec("echo second-needle").status.success());
    let second = w.last_session();
    w.ended_session_json(&second);
    std::fs::write(w.folder(&first).join("session.cast.zst"), b"this is not a recording at all").unwrap();

    let out = w.bastion.run(&["recordings", "search", "needle"]);
    assert!(stdout(&out).contains(&format!("{second}  ")) && stdout(&out).contains("output: second-needle"));
    assert!(!stdout(&out).contains("first-needle"));
    assert!(stderr(&out).contains(&format!("warning: session {first}: cannot read recording")), "{}", stderr(&out));
    assert!(stderr(&out).contains("1 recording(s) could not be read in full"), "{}", stderr(&out));
    assert_eq!(out.status.code(), Some(1));
}

/// kill -9 of the bastion during a session, then a restart: the recovered folder has the
/// audit trail, the channel with its command, the bytes the recording holds and the end
/// at its last event; `recordings list` shows the same bytes.
#[test]
fn an_interrupted_session_keeps_full_evidence() {
    let mut w = World::new();
    let mut child = w.start_counting();
    let mut out = std::io::BufReader::new(child.stdout.take().unwrap());
    let mut line = String::new();
    for _ in 0..100 {
        line.clear();
        out.read_line(&mut line).unwrap();
    }
    std::thread::sleep(Duration::from_millis(1000));
    w.bastion.signal(libc::SIGKILL);
    let _ = child.wait();
    let id = w.last_session();
    w.bastion.start();
    w.eventually("the session to be marked interrupted", || {
        w.bastion.ok(&["recordings", "list"]).contains("interrupted")
    });

    let folder = w.folder(&id);
    let json: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(folder.join("session.json")).unwrap()).unwrap();
    assert_eq!(json["state"], "interrupted");
    // The bytes are those the recording holds: every output byte `cat` gives back.
    let recorded = w.bastion.ok(&["recordings", "cat", &id]);
    assert!(recorded.contains("line-100\n"), "{}", &recorded[recorded.len().saturating_sub(200)..]);
    assert_eq!(json["bytes_out"], recorded.len(), "{json}");
    assert_eq!(json["bytes_in"], 0);
    let channels = json["channels"].as_array().unwrap();
    assert_eq!(channels.len(), 1, "{json}");
    assert_eq!(channels[0]["file"], "session.cast.zst");
    assert_eq!(channels[0]["command"], COUNTING);
    assert_eq!(channels[0]["bytes_out"], recorded.len());
    // The end is the time of the last recorded event (the interrupted marker is put at it).
    let v2 = w.bastion.ok(&["recordings", "export", &id, "--format", "v2", "--output", "-"]);
    let last: (f64, String, String) = serde_json::from_str(v2.lines().last().unwrap()).unwrap();
    assert_eq!(last.1, "m");
    let start = chrono::DateTime::parse_from_rfc3339(json["start"].as_str().unwrap()).unwrap();
    let end = chrono::DateTime::parse_from_rfc3339(json["end"].as_str().unwrap()).unwrap();
    let offset_ms = (end - start).num_milliseconds();
    assert!(
        (offset_ms - (last.0 * 1000.0).round() as i64).abs() <= 1,
        "end {end}, start {start}, last event {}",
        last.0
    );
    assert!(offset_ms >= 2000, "{offset_ms} ms");
    // The audit trail is in the folder, this session's start and interruption included.
    let audit = std::fs::read_to_string(folder.join("audit.jsonl")).unwrap();
    assert!(audit.contains("\"session.start\"") && audit.contains("\"session.interrupted\""), "{audit}");
    let listed = w.bastion.ok(&["recordings", "list"]);
    let row = listed.lines().find(|l| l.starts_with(&id)).unwrap();
    assert!(row.contains(&format!("out {} B", recorded.len())), "{row}");
    assert!(row.contains(&end.with_timezone(&chrono::Utc).format("%H:%M:%S").to_string()), "{row}");
    // And the folder, with its new files, verifies.
    let verify = w.bastion.run(&["recordings", "verify", &id]);
    assert!(verify.status.success(), "{}", stderr(&verify));
}

/// The next bomb of the class: a recording of valid events that decompresses to lines
/// without end (input without Enter, output without a newline) or without number (five
/// million typed lines, 600,000 markers), each frame within the bounds. Search, replay
/// and commands hold none of it whole.
#[test]
fn endless_or_countless_lines_cost_the_readers_no_memory() {
    let w = World::new();
    assert!(w.exec("echo hi").status.success());
    let id = w.last_session();
    w.ended_session_json(&id);
    let header = "{\"version\":3,\"term\":{\"cols\":80,\"rows\":24},\"timestamp\":0}\n";
    let mut file = frame(header);
    let frame_text = |line: &str, count: usize| format!("[0, \"i\", \"{}\"]\n", line.repeat(count));
    for _ in 0..2 {
        file.extend(frame(&frame_text("a\\r", 2_600_000)));
    }
    for _ in 0..2 {
        file.extend(frame(&frame_text("a", 7_900_000)));
        file.extend(frame(&format!("[0, \"o\", \"{}\"]\n", "b".repeat(7_900_000))));
    }
    file.extend(frame(&"[0, \"m\", \"\"]\n".repeat(600_000)));
    // Ctrl-U: what was typed so far is discarded, and the last line is just this.
    file.extend(frame("[0.1, \"i\", \"\\u0015last-typed\\r\"]\n"));
    assert!(file.len() < 64 * 1024, "a small file: {} bytes", file.len());
    std::fs::write(w.folder(&id).join("session.cast.zst"), &file).unwrap();

    for (name, args, shown) in [
        ("search", vec!["recordings", "search", "last-typed"], "typed: last-typed\n"),
        // Everything is at 0 s: the replay starts with the screen then, a screen of b.
        ("replay", vec!["replay", &id, "--speed", "1000"], "b\x1b[79b"),
    ] {
        let mut cmd = w.bastion.command();
        cmd.args(&args);
        let run = run_measured(cmd, w.tmp.path());
        eprintln!("{name}: peak {} KiB", run.peak_kb);
        assert!(run.peak_kb < 64 * 1024, "{name} held {} MiB", run.peak_kb / 1024);
        assert!(run.stdout.contains(shown), "{name}: {}", run.stderr);
        // The file is not sealed as it is, but every frame of it decodes.
        assert_eq!(run.code, Some(0), "{name}: {}", run.stderr);
    }
    let mut cmd = w.bastion.command();
    cmd.args(["recordings", "commands", &id]);
    let run = run_measured(cmd, w.tmp.path());
    eprintln!("commands: peak {} KiB", run.peak_kb);
    assert!(run.peak_kb < 64 * 1024, "commands held {} MiB", run.peak_kb / 1024);
    assert!(run.stdout.ends_with("  last-typed\n"), "{}", run.stderr);
    assert!(run.stdout.lines().count() > 2 * 2_600_000, "{} lines", run.stdout.lines().count());
}

/// A recording made huge and sparse (128 MiB of zeros after its frames, nothing on disk):
/// replay reads it frame by frame instead of holding the file, says where the zeros
/// start, and plays what is there.
#[test]
fn a_huge_sparse_recording_is_replayed_without_holding_it() {
    let w = World::new();
    assert!(w.exec("echo before-the-zeros").status.success());
    let id = w.last_session();
    w.ended_session_json(&id);
    let cast = w.folder(&id).join("session.cast.zst");
    let recorded = std::fs::read(&cast).unwrap();
    let length = recorded.len() as u64;
    std::fs::OpenOptions::new().write(true).open(&cast).unwrap().set_len(length + (128 << 20)).unwrap();
    let mut cmd = w.bastion.command();
    cmd.args(["replay", &id, "--speed", "1000"]);
    let run = run_measured(cmd, w.tmp.path());
    eprintln!("replay: peak {} KiB", run.peak_kb);
    assert!(run.peak_kb < 64 * 1024, "replay held {} MiB", run.peak_kb / 1024);
    assert!(run.stdout.contains("before-the-zeros"), "{}", run.stderr);
    let frames = frames_of(&recorded).len();
    let said = format!("frame {} at byte {length}: damaged (unknown frame descriptor)", frames + 1);
    assert!(run.stderr.contains(&said), "{}", run.stderr);
    assert_eq!(run.code, Some(1), "{}", run.stderr);
}

/// The seal made huge (256 MiB of zeros appended, sparse: no newline in it): `verify`
/// reads it line by line, holds no line beyond a checkpoint's size, still proves what the
/// checkpoints before it cover, and names the line that is not one.
#[test]
fn a_seal_made_huge_is_verified_in_bounded_memory() {
    let w = World::new();
    assert!(w.exec("echo sealed").status.success());
    let id = w.last_session();
    w.ended_session_json(&id);
    let seal = w.folder(&id).join("seal");
    let lines = std::fs::read_to_string(&seal).unwrap().lines().count();
    let length = std::fs::metadata(&seal).unwrap().len();
    std::fs::OpenOptions::new().write(true).open(&seal).unwrap().set_len(length + (256 << 20)).unwrap();
    let mut cmd = w.bastion.command();
    cmd.args(["recordings", "verify", &id]);
    let run = run_measured(cmd, w.tmp.path());
    eprintln!("verify: peak {} KiB", run.peak_kb);
    assert!(run.peak_kb < 64 * 1024, "verify held {} MiB", run.peak_kb / 1024);
    assert_eq!(run.code, Some(1), "{}", run.stderr);
    let said = format!("NOT INTACT: seal line {}: not a checkpoint (longer than any checkpoint", lines + 1);
    assert!(run.stderr.contains(&said), "{}", run.stderr);
    assert!(run.stdout.contains("sealed: session.cast.zst ("), "{}", run.stdout);
}

/// The seek index is not sealed (it is derived data): a forged one beside a recording that
/// verifies must not make `replay` show screens the recording does not hold.
#[test]
fn a_forged_seek_index_is_not_shown() {
    let w = World::new();
    assert!(w.exec("echo real-text; sleep 0.5; echo more-text").status.success());
    let id = w.last_session();
    w.ended_session_json(&id);
    let index = w.folder(&id).join(".session.cast.idx");
    w.eventually("the seek index", || index.is_file());
    // The first keyframe (the screen at 0 s) made to show what never was.
    let saved = std::fs::read_to_string(&index).unwrap();
    let forged = saved.replacen("\"screen\":\"", "\"screen\":\"fake-text", 1);
    assert_ne!(forged, saved);
    std::fs::write(&index, forged).unwrap();
    w.bastion.ok(&["recordings", "verify", &id]);
    let out = w.bastion.run(&["replay", &id, "--speed", "100"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(stdout(&out).contains("real-text") && !stdout(&out).contains("fake-text"), "{:?}", stdout(&out));
    // Rebuilt, and saved again with the bastion's MAC.
    assert!(!std::fs::read_to_string(&index).unwrap().contains("fake-text"));
}
