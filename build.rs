//! Records where this checkout's toolchain puts the guest's system libraries (the shared C++
//! runtime), the default of `Program::system_libs` / `wasix-dl run --system-libs`, and the
//! wasmer version (a part of the compiled-module cache key).

use std::process::Command;

/// The wasmer version Cargo.lock pins: part of the compiled-module cache key.
fn wasmer_version() -> Option<String> {
    let lock = std::fs::read_to_string("Cargo.lock").ok()?;
    let mut lines = lock.lines();
    while let Some(line) = lines.next() {
        if line == "name = \"wasmer\"" {
            let version = lines.next()?.strip_prefix("version = \"")?;
            return Some(version.trim_end_matches('"').to_string());
        }
    }
    None
}

fn main() {
    println!("cargo:rerun-if-changed=Cargo.lock");
    let wasmer = wasmer_version().unwrap_or_else(|| "unknown".into());
    println!("cargo:rustc-env=WASIX_DL_WASMER_VERSION={wasmer}");
    println!("cargo:rerun-if-changed=toolchain");
    println!("cargo:rerun-if-env-changed=WASIX_DL_CACHE");
    let answer = Command::new("python3")
        .args(["toolchain/wasix_toolchain.py", "system-libs"])
        .output();
    match answer {
        Ok(out) if out.status.success() => {
            let dir = String::from_utf8_lossy(&out.stdout).trim().to_string();
            println!("cargo:rustc-env=WASIX_DL_DEFAULT_SYSTEM_LIBS={dir}");
        }
        // Without python3 there is no toolchain either: no default; WASIX_DL_SYSTEM_LIBS and
        // --system-libs still work.
        _ => println!(
            "cargo:warning=toolchain/wasix_toolchain.py system-libs failed: no default system library directory"
        ),
    }
}
