//! Replays every fuzz corpus through the targets' entry points on stable, as
//! part of the workspace's `cargo test`: the seeds (`fuzz/corpus/<target>/`)
//! and every crash found so far (`fuzz/regressions/<target>/`). A crash whose
//! parser bug comes back fails here without a nightly toolchain or libFuzzer.
//! It also checks that the cargo-fuzz crate and this list agree, so a target
//! cannot be added or renamed in one place only.

use std::path::{Path, PathBuf};

use ingot_fuzz_targets::TARGETS;

fn fuzz_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("fuzz/targets has a parent")
        .to_path_buf()
}

fn files(dir: &Path) -> Vec<PathBuf> {
    let Ok(rd) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut v: Vec<PathBuf> = rd
        .map(|e| e.expect("read_dir entry").path())
        .filter(|p| p.is_file())
        .collect();
    v.sort();
    v
}

#[test]
fn every_corpus_and_regression_replays_without_a_panic() {
    let mut total = 0;
    for (name, entry) in TARGETS {
        let seeds = files(&fuzz_dir().join("corpus").join(name));
        assert!(!seeds.is_empty(), "fuzz/corpus/{name}/ has no seed");
        let crashes = files(&fuzz_dir().join("regressions").join(name));
        for f in seeds.iter().chain(&crashes) {
            let data = std::fs::read(f).expect("read a corpus file");
            let outcome = std::panic::catch_unwind(|| entry(&data));
            assert!(outcome.is_ok(), "{name}: {} panics", f.display());
            total += 1;
        }
        println!(
            "{name}: {} seeds, {} regressions",
            seeds.len(),
            crashes.len()
        );
    }
    println!("{total} inputs replayed");
}

#[test]
fn the_cargo_fuzz_crate_builds_every_target() {
    let manifest = std::fs::read_to_string(fuzz_dir().join("Cargo.toml")).expect("fuzz/Cargo.toml");
    let mut binaries: Vec<String> = files(&fuzz_dir().join("fuzz_targets"))
        .iter()
        .filter_map(|p| Some(p.file_stem()?.to_str()?.to_owned()))
        .collect();
    binaries.sort();
    let mut names: Vec<String> = TARGETS.iter().map(|(n, _)| (*n).to_owned()).collect();
    names.sort();
    assert_eq!(binaries, names, "fuzz/fuzz_targets/*.rs and TARGETS differ");
    for n in &names {
        assert!(
            manifest.contains(&format!("name = \"{n}\"")),
            "fuzz/Cargo.toml has no [[bin]] {n}"
        );
        let src = std::fs::read_to_string(fuzz_dir().join("fuzz_targets").join(format!("{n}.rs")))
            .expect("read the target");
        assert!(
            src.contains(&format!("ingot_fuzz_targets::{n}(")),
            "fuzz/fuzz_targets/{n}.rs does not call ingot_fuzz_targets::{n}"
        );
    }
}
