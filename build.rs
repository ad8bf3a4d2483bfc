//! Records where this checkout's toolchain puts the guest's system libraries (the shared C++
//! runtime), the default of `Program::system_libs` / `wasix-dl run --system-libs`.

use std::process::Command;

/// `python3 toolchain/wasix_toolchain.py SUBCOMMAND`'s answer.
fn toolchain(subcommand: &str) -> Option<String> {
    let out = Command::new("python3")
        .args(["toolchain/wasix_toolchain.py", subcommand])
        .output()
        .ok()?;
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).trim().to_string())
}

fn main() {
    println!("cargo:rerun-if-changed=toolchain");
    println!("cargo:rerun-if-env-changed=WASIX_DL_CACHE");
    // The sysroot is <cache>/sysroot-<key> (toolchain/setup.sh); known before it is built.
    match (toolchain("cache-dir"), toolchain("key")) {
        (Some(cache), Some(key)) => println!(
            "cargo:rustc-env=WASIX_DL_DEFAULT_SYSTEM_LIBS={cache}/sysroot-{key}/system-lib"
        ),
        // Without python3 there is no toolchain either: no default; WASIX_DL_SYSTEM_LIBS and
        // --system-libs still work.
        _ => println!("cargo:warning=cannot ask toolchain/wasix_toolchain.py where the sysroot is: no default system library directory"),
    }
}
