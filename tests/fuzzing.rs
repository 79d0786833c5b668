//! The fuzz targets' inputs on stable: every committed corpus file and every crash input
//! the fuzzer found (`fuzz/corpus/<target>/`, `fuzz/regressions/<target>/`) through the
//! same harness the fuzzer runs (`chaperone::fuzzing`), so that `cargo test` keeps fixed
//! what fuzzing found without nightly.

use std::path::Path;

use chaperone::fuzzing::TARGETS;

fn inputs(dir: &Path) -> Vec<std::path::PathBuf> {
    let mut files: Vec<_> = std::fs::read_dir(dir)
        .map(|entries| entries.flatten().map(|e| e.path()).filter(|p| p.is_file()).collect())
        .unwrap_or_default();
    files.sort();
    files
}

fn run(kind: &str, target: &str, harness: fn(&[u8])) -> usize {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz").join(kind).join(target);
    let files = inputs(&dir);
    for file in &files {
        let data = std::fs::read(file).unwrap();
        let ran = std::panic::catch_unwind(|| harness(&data));
        assert!(ran.is_ok(), "{target}: {} breaks an invariant", file.display());
    }
    files.len()
}

#[test]
fn every_fuzz_corpus_passes_its_harness() {
    for (target, harness) in TARGETS {
        let n = run("corpus", target, harness);
        assert!(n > 0, "{target}: no corpus under fuzz/corpus/{target}");
    }
}

#[test]
fn every_crash_the_fuzzer_found_stays_fixed() {
    for (target, harness) in TARGETS {
        run("regressions", target, harness);
    }
}

#[test]
#[ignore = "rewrites the seed corpus: scripts/fuzz --seeds"]
fn write_fuzz_seeds() {
    chaperone::fuzzing::write_seeds(&Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz").join("corpus")).unwrap();
}
