//! The drivers' output, inspected: side modules carry dylink.0 with mem-info, needed and
//! runtime-path; PIE mains import a shared `env.memory` and export the libc; every module uses
//! exnref exception handling and never legacy `try`.

mod common;
use common::*;

use std::path::PathBuf;
use wasmparser::{ExternalKind, Operator, Parser, Payload, SymbolFlags, TypeRef};

fn bytes(name: &str) -> Vec<u8> {
    std::fs::read(fixture(name)).unwrap()
}

fn dylink(name: &str) -> wasix_dl::DylinkInfo {
    wasix_dl::parse_dylink(name, &bytes(name))
        .unwrap()
        .unwrap_or_else(|| panic!("{name} has no dylink.0 section"))
}

fn imports(wasm: &[u8]) -> Vec<(String, String, TypeRef)> {
    let mut out = Vec::new();
    for payload in Parser::new(0).parse_all(wasm) {
        if let Payload::ImportSection(reader) = payload.unwrap() {
            for import in reader.into_imports() {
                let i = import.unwrap();
                out.push((i.module.to_string(), i.name.to_string(), i.ty));
            }
        }
    }
    out
}

fn exports(wasm: &[u8]) -> Vec<(String, ExternalKind)> {
    let mut out = Vec::new();
    for payload in Parser::new(0).parse_all(wasm) {
        if let Payload::ExportSection(reader) = payload.unwrap() {
            for export in reader {
                let e = export.unwrap();
                out.push((e.name.to_string(), e.kind));
            }
        }
    }
    out
}

/// The sysroot's system library directory (`wasix_toolchain.py system-libs`), which the
/// runtime mounts at the guest's `/lib`.
fn system_libs() -> PathBuf {
    let out = std::process::Command::new("python3")
        .arg(root().join("toolchain/wasix_toolchain.py"))
        .arg("system-libs")
        .output_in_time();
    assert!(out.status.success(), "{}", stderr(&out));
    PathBuf::from(stdout(&out).trim())
}

/// Counts (legacy try/catch/rethrow/delegate, exnref try_table/throw_ref) instructions.
fn eh_instructions(wasm: &[u8]) -> (usize, usize) {
    let (mut legacy, mut exnref) = (0, 0);
    for payload in Parser::new(0).parse_all(wasm) {
        if let Payload::CodeSectionEntry(body) = payload.unwrap() {
            let mut ops = body.get_operators_reader().unwrap();
            while !ops.eof() {
                match ops.read().unwrap() {
                    Operator::Try { .. }
                    | Operator::Catch { .. }
                    | Operator::CatchAll
                    | Operator::Rethrow { .. }
                    | Operator::Delegate { .. } => legacy += 1,
                    Operator::TryTable { .. } | Operator::ThrowRef => exnref += 1,
                    _ => {}
                }
            }
        }
    }
    (legacy, exnref)
}

#[test]
fn side_module_has_mem_info_needed_and_runtime_path() {
    let side = dylink("libside.so");
    assert!(
        side.memory_size > 0,
        "libside.so reserves no memory: {side:?}"
    );
    assert!(side.needed.is_empty());

    let user = dylink("libside_user.so");
    assert_eq!(user.needed, ["libside.so"]);
    assert_eq!(user.runtime_path, ["$ORIGIN"]);
}

#[test]
fn side_module_imports_what_it_lacks_and_exports_the_loader_entry_points() {
    let wasm = bytes("libside.so");
    let imports = imports(&wasm);
    let has_import = |m: &str, n: &str| imports.iter().any(|(im, iname, _)| im == m && iname == n);
    assert!(has_import("env", "memory"));
    assert!(has_import("env", "__indirect_function_table"));
    assert!(has_import("env", "__memory_base"));
    assert!(
        has_import("env", "__errno_location"),
        "errno must go through __errno_location: {imports:?}"
    );
    let exports = exports(&wasm);
    for name in [
        "side_add",
        "side_value",
        "__wasix_init_tls",
        "__wasm_init_tls",
        "__tls_size",
        "__tls_align",
    ] {
        assert!(
            exports.iter().any(|(e, _)| e == name),
            "libside.so does not export {name}: {exports:?}"
        );
    }
}

#[test]
fn pie_main_imports_shared_memory_and_exports_the_libc() {
    let wasm = bytes("hello.wasm");
    dylink("hello.wasm");
    let memory = imports(&wasm)
        .into_iter()
        .find(|(m, n, _)| m == "env" && n == "memory")
        .expect("the main module must import env.memory");
    match memory.2 {
        TypeRef::Memory(ty) => {
            assert!(ty.shared, "env.memory must be shared");
            assert_eq!(ty.maximum, Some(65536), "env.memory must allow 4 GiB");
        }
        other => panic!("env.memory is not a memory: {other:?}"),
    }
    let exports = exports(&wasm);
    for name in [
        "_start",
        "printf",
        "malloc",
        "free",
        "aligned_alloc",
        "__errno_location",
        "dlopen",
    ] {
        assert!(
            exports
                .iter()
                .any(|(e, k)| e == name && *k == ExternalKind::Func),
            "hello.wasm does not export function {name}"
        );
    }
    assert!(
        exports.len() > 500,
        "the whole libc should be exported, found {} exports",
        exports.len()
    );
}

#[test]
fn main_linked_against_a_library_records_it_as_needed() {
    assert_eq!(dylink("uses_side.wasm").needed, ["libside.so"]);
}

#[test]
fn exception_handling_is_exnref_only() {
    for name in ["exceptions.wasm", "setjmp.wasm", "hello.wasm", "libside.so"] {
        let (legacy, exnref) = eh_instructions(&bytes(name));
        assert_eq!(legacy, 0, "{name} contains {legacy} legacy EH instructions");
        // Modules that throw or longjmp must do it with exnref.
        if name == "exceptions.wasm" || name == "setjmp.wasm" {
            assert!(exnref > 0, "{name} has no exnref instructions");
        }
    }
}

#[test]
fn tags_are_imported_from_env_not_defined() {
    let wasm = bytes("exceptions.wasm");
    let tags: Vec<_> = imports(&wasm)
        .into_iter()
        .filter(|(_, _, ty)| matches!(ty, TypeRef::Tag(_)))
        .map(|(m, n, _)| format!("{m}.{n}"))
        .collect();
    assert!(
        tags.contains(&"env.__cpp_exception".to_string()),
        "tags: {tags:?}"
    );
    assert!(
        tags.contains(&"env.__c_longjmp".to_string()),
        "tags: {tags:?}"
    );
}

#[test]
fn pthread_is_accepted_and_the_same_program_builds_without_it() {
    let dir = scratch("pthread");
    for (flag, out) in [(Some("-pthread"), "with.wasm"), (None, "without.wasm")] {
        let built = std::process::Command::new(root().join("toolchain/bin/wasix-cc"))
            .args(flag)
            .args(["-O2", "-o", out])
            .arg(root().join("fixtures/src/hello.c"))
            .current_dir(&dir)
            .output_in_time();
        assert!(
            built.status.success(),
            "{flag:?}: {}",
            String::from_utf8_lossy(&built.stderr)
        );
        let ran = run_in(&dir, &["--dir", ".", out], b"");
        assert_eq!(stdout(&ran), "hello\n", "{out}: {}", stderr(&ran));
    }
}

#[test]
fn cxx_modules_need_the_one_shared_cxx_runtime() {
    fixtures(); // the sysroot is built
    let name = "libc++.so";
    let libcxx = std::fs::read(system_libs().join(name)).unwrap();
    let info = wasix_dl::parse_dylink(name, &libcxx).unwrap().unwrap();
    assert!(info.needed.is_empty(), "{:?}", info.needed);
    let (legacy, exnref) = eh_instructions(&libcxx);
    assert!(
        legacy == 0 && exnref > 0,
        "{name}: {legacy} legacy, {exnref} exnref"
    );
    // The one unwinder's landing-pad context, thread-local, for every module's landing pads.
    assert!(
        info.export_flags
            .iter()
            .any(|(n, f)| n == "__wasm_lpad_context" && f.contains(SymbolFlags::TLS)),
        "{:?}",
        info.export_flags
    );
    assert_eq!(dylink("exceptions.wasm").needed, ["libc++.so"]);
    assert_eq!(
        dylink("libcxx_plugin_b.so").needed,
        ["libcxx_plugin_a.so", "libc++.so"]
    );
    assert!(dylink("cxx_plugins.wasm").needed.is_empty()); // a C program
    for name in ["exceptions.wasm", "libcxx_plugin_a.so"] {
        assert!(
            imports(&bytes(name))
                .iter()
                .any(|(m, n, _)| m == "GOT.mem" && n == "__wasm_lpad_context"),
            "{name} does not import the landing-pad context"
        );
    }
}

#[test]
fn static_libstdcxx_links_the_archives_and_needs_no_system_library() {
    let dir = scratch("static-libstdcxx");
    let built = std::process::Command::new(root().join("toolchain/bin/wasix-c++"))
        .args(["-O2", "-static-libstdc++", "-o", "exceptions.wasm"])
        .arg(root().join("fixtures/src/exceptions.cpp"))
        .current_dir(&dir)
        .output_in_time();
    assert!(built.status.success(), "{}", stderr(&built));
    let wasm = std::fs::read(dir.join("exceptions.wasm")).unwrap();
    let info = wasix_dl::parse_dylink("exceptions.wasm", &wasm)
        .unwrap()
        .unwrap();
    assert!(info.needed.is_empty(), "{:?}", info.needed);
    let ran = run_in(&dir, &["--dir", ".", "exceptions.wasm"], b"");
    assert_eq!(
        stdout(&ran),
        "caught std::exception: runtime error from thrower\n\
         caught Custom 7\n\
         caught out_of_range\n\
         done\n",
        "{}",
        stderr(&ran)
    );
}

#[test]
fn a_header_can_be_preprocessed_but_not_linked() {
    let dir = scratch("header");
    std::fs::write(
        dir.join("api.h"),
        "#define ANSWER 42\nint answer = ANSWER;\n",
    )
    .unwrap();
    let cc = root().join("toolchain/bin/wasix-cc");
    let out = std::process::Command::new(&cc)
        .args(["-E", "api.h"])
        .current_dir(&dir)
        .output_in_time();
    assert!(
        out.status.success() && stdout(&out).contains("int answer = 42;"),
        "{}",
        stderr(&out)
    );
    let out = std::process::Command::new(&cc)
        .args(["api.h", "-o", "api.wasm"])
        .current_dir(&dir)
        .output_in_time();
    assert!(
        !out.status.success() && stderr(&out).contains("a header is not something to link"),
        "{}",
        stderr(&out)
    );
}
