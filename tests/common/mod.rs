//! Shared by the integration tests: the fixtures (built on demand by fixtures/build.py) and the
//! `wasix-dl` binary under test.
#![allow(dead_code)] // each test crate uses a different subset

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::OnceLock;

pub fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// The directory with the built fixtures. Builds what is missing or stale; panics with the
/// build's own message (e.g. "run toolchain/setup.sh") when that fails.
pub fn fixtures() -> &'static Path {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        let dir = root().join("target").join("fixtures");
        let out = Command::new("python3")
            .arg(root().join("fixtures").join("build.py"))
            .arg(&dir)
            .output()
            .expect("python3 is needed to build the fixtures");
        assert!(
            out.status.success(),
            "building the fixtures failed (set up the toolchain with toolchain/setup.sh):\n{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        dir
    })
}

pub fn fixture(name: &str) -> PathBuf {
    let path = fixtures().join(name);
    assert!(
        path.exists(),
        "fixture {name} was not built by fixtures/build.py"
    );
    path
}

pub fn wasix_dl() -> Command {
    Command::new(env!("CARGO_BIN_EXE_wasix-dl"))
}

/// Runs `wasix-dl run ARGS...` with stdin from `input`, in `cwd`.
pub fn run_in(cwd: &Path, args: &[&str], input: &[u8]) -> Output {
    use std::io::Write;
    let mut child = wasix_dl()
        .arg("run")
        .args(args)
        .current_dir(cwd)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start wasix-dl");
    child.stdin.take().unwrap().write_all(input).unwrap();
    child.wait_with_output().expect("wait for wasix-dl")
}

pub fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

pub fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// A fresh scratch directory under target/ (removed at the start of the next run of the test).
pub fn scratch(name: &str) -> PathBuf {
    let dir = root().join("target").join("scratch").join(name);
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}
