//! Records where this checkout's toolchain puts the guest's system libraries (the shared C++
//! runtime), the default of `Program::system_libs` / `wasix-dl run --system-libs`.

use std::process::Command;

fn main() {
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
