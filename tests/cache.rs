//! The compiled-module cache: artifacts are written on the first run, used on the next, and a
//! damaged artifact is ignored and replaced rather than trusted or fatal.

mod common;
use common::*;

fn run_with_cache(cache: &std::path::Path) -> std::process::Output {
    wasix_dl()
        .args(["run", "--dir", ".", "uses_side.wasm"])
        .current_dir(fixtures())
        .env("WASIX_DL_CACHE", cache)
        .env_remove("WASIX_DL_NO_CACHE")
        .output()
        .unwrap()
}

fn artifacts(cache: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut files: Vec<_> = std::fs::read_dir(cache.join("modules"))
        .map(|d| d.map(|e| e.unwrap().path()).collect())
        .unwrap_or_default();
    files.sort();
    files
}

#[test]
fn artifacts_are_written_reused_and_replaced_when_damaged() {
    let cache = scratch("module-cache");
    let first = run_with_cache(&cache);
    assert_eq!(stdout(&first), "45\n", "stderr: {}", stderr(&first));
    let files = artifacts(&cache);
    // The main module in its final form only (its calls into libside.so made direct, see
    // src/rewrite.rs: main is never compiled as built first), the trampolines its imports are
    // bound to, and libside.so.
    assert_eq!(files.len(), 3, "expected three artifacts: {files:?}");
    let written: Vec<_> = files
        .iter()
        .map(|f| std::fs::metadata(f).unwrap().modified().unwrap())
        .collect();

    let second = run_with_cache(&cache);
    assert_eq!(stdout(&second), "45\n");
    let reused: Vec<_> = files
        .iter()
        .map(|f| std::fs::metadata(f).unwrap().modified().unwrap())
        .collect();
    assert_eq!(written, reused, "a warm run must not rewrite the artifacts");

    std::fs::write(&files[0], b"not an artifact").unwrap();
    let third = run_with_cache(&cache);
    assert_eq!(stdout(&third), "45\n", "stderr: {}", stderr(&third));
    assert_ne!(
        std::fs::read(&files[0]).unwrap(),
        b"not an artifact",
        "the damaged artifact was not replaced"
    );
}
