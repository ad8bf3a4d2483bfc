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
        .output_in_time()
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
    // bound to, libside.so, and the host-call wrappers (src/sync.rs).
    assert_eq!(files.len(), 4, "expected four artifacts: {files:?}");
    // Artifacts are replaced by rename, so a rewritten one has a new inode.
    let inodes = |files: &[std::path::PathBuf]| -> Vec<u64> {
        use std::os::unix::fs::MetadataExt;
        files
            .iter()
            .map(|f| std::fs::metadata(f).unwrap().ino())
            .collect()
    };
    let written = inodes(&files);

    let second = run_with_cache(&cache);
    assert_eq!(stdout(&second), "45\n");
    assert_eq!(
        written,
        inodes(&artifacts(&cache)),
        "a warm run must not rewrite the artifacts"
    );

    std::fs::write(&files[0], b"not an artifact").unwrap();
    let third = run_with_cache(&cache);
    assert_eq!(stdout(&third), "45\n", "stderr: {}", stderr(&third));
    assert_ne!(
        std::fs::read(&files[0]).unwrap(),
        b"not an artifact",
        "the damaged artifact was not replaced"
    );
}

#[test]
fn the_cache_keeps_to_its_size_limit_by_evicting_the_least_recently_used() {
    let cache = scratch("module-cache-limit");
    let limited = |max_bytes: u64| {
        wasix_dl()
            .args(["run", "--dir", ".", "uses_side.wasm"])
            .current_dir(fixtures())
            .env("WASIX_DL_CACHE", &cache)
            .env("WASIX_DL_CACHE_MAX_BYTES", max_bytes.to_string())
            .env_remove("WASIX_DL_NO_CACHE")
            .output_in_time()
    };
    let out = limited(u64::MAX);
    assert_eq!(stdout(&out), "45\n", "stderr: {}", stderr(&out));
    let files = artifacts(&cache);
    assert_eq!(files.len(), 4, "{files:?}");
    let size = |f: &std::path::PathBuf| std::fs::metadata(f).unwrap().len();
    let total: u64 = files.iter().map(size).sum();

    // An artifact no run uses any more, used an hour ago: the first to go when a new artifact
    // (a damaged one is recompiled) takes the cache past its limit.
    let stale = cache.join("modules").join("stale.bin");
    std::fs::write(&stale, vec![0u8; 4096]).unwrap();
    std::fs::File::options()
        .append(true)
        .open(&stale)
        .unwrap()
        .set_modified(std::time::SystemTime::now() - std::time::Duration::from_secs(3600))
        .unwrap();
    let damaged = &files[1];
    std::fs::write(damaged, b"not an artifact").unwrap();
    let out = limited(total + 4096 - 1);
    assert_eq!(stdout(&out), "45\n", "stderr: {}", stderr(&out));
    assert_eq!(artifacts(&cache), files, "only the stale artifact goes");

    // A limit below one artifact keeps only the one written last (the run recompiles what
    // it finds evicted, each store evicting the others).
    std::fs::write(damaged, b"not an artifact").unwrap();
    let out = limited(1);
    assert_eq!(stdout(&out), "45\n", "stderr: {}", stderr(&out));
    let left = artifacts(&cache);
    assert_eq!(left.len(), 1, "{left:?}");
}
