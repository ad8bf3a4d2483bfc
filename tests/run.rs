//! `wasix-dl run` on real modules built by the toolchain: arguments, environment, exit status,
//! stdin/stdout/stderr, files in a mapped directory, traps, and load errors.

mod common;
use common::*;

#[test]
fn hello_prints_arguments_and_environment_and_returns_the_exit_code() {
    let dir = scratch("hello");
    std::fs::copy(fixture("hello.wasm"), dir.join("hello.wasm")).unwrap();
    let out = run_in(
        &dir,
        &[
            "--dir",
            ".",
            "--env",
            "GREETING=hi there",
            "--env",
            "EXIT_CODE=3",
            "hello.wasm",
            "world",
            "-x",
            "--flag",
        ],
        b"",
    );
    assert_eq!(
        stdout(&out),
        "hello world -x --flag\nGREETING=hi there\n",
        "stderr: {}",
        stderr(&out)
    );
    assert_eq!(out.status.code(), Some(3));
}

#[test]
fn exit_status_zero_by_default_and_host_environment_not_inherited() {
    // hello.wasm prints GREETING and exits with EXIT_CODE when they are set in the guest.
    let mut cmd = wasix_dl();
    cmd.args(["run", fixture("hello.wasm").to_str().unwrap()])
        .current_dir(fixtures())
        .env("GREETING", "from the host")
        .env("EXIT_CODE", "7");
    let out = cmd.output_in_time();
    assert_eq!(stdout(&out), "hello\n", "stderr: {}", stderr(&out));
    assert_eq!(out.status.code(), Some(0));
}

#[test]
fn stdin_reaches_the_guest_and_stderr_is_separate() {
    let input = b"some input\nover two lines\n";
    let out = run_in(
        fixtures(),
        &[fixture("stdin_upper.wasm").to_str().unwrap()],
        input,
    );
    assert_eq!(stdout(&out), "SOME INPUT\nOVER TWO LINES\n");
    assert_eq!(stderr(&out), format!("{} bytes\n", input.len()));
    assert_eq!(out.status.code(), Some(0));
}

#[test]
fn files_in_the_mapped_working_directory() {
    let dir = scratch("files");
    std::fs::write(dir.join("input.txt"), "first line\nsecond\n").unwrap();
    std::fs::copy(fixture("files.wasm"), dir.join("files.wasm")).unwrap();
    let out = run_in(&dir, &["--dir", ".", "files.wasm"], b"");
    let canonical = std::fs::canonicalize(&dir).unwrap();
    assert_eq!(
        stdout(&out),
        format!(
            "cwd={}\nread=first line\noutside the sandbox: No such file or directory\nlisted output.txt: 1\n",
            canonical.display()
        ),
        "stderr: {}",
        stderr(&out)
    );
    assert_eq!(out.status.code(), Some(0));
    assert_eq!(
        std::fs::read_to_string(dir.join("output.txt")).unwrap(),
        "written by wasm\n"
    );
    assert!(
        !dir.join("out.tmp").exists(),
        "rename left the old name behind"
    );
}

#[test]
fn a_directory_mapped_to_another_guest_path() {
    let dir = scratch("mapped");
    std::fs::write(dir.join("input.txt"), "mapped\n").unwrap();
    let spec = format!("{}:/data", dir.display());
    let out = run_in(
        fixtures(),
        &["--dir", &spec, fixture("files.wasm").to_str().unwrap()],
        b"",
    );
    assert!(
        stdout(&out).starts_with("cwd=/data\nread=mapped\n"),
        "stdout: {} stderr: {}",
        stdout(&out),
        stderr(&out)
    );
    assert!(dir.join("output.txt").exists());
}

#[test]
fn the_same_directory_mapped_twice_is_one_mapping_but_two_hosts_on_one_path_are_an_error() {
    let dir = scratch("mapped-twice");
    std::fs::write(dir.join("input.txt"), "twice\n").unwrap();
    let files = fixture("files.wasm");
    let files = files.to_str().unwrap();
    let out = run_in(&dir, &["--dir", ".", "--dir", ".", files], b"");
    assert!(
        stdout(&out).contains("read=twice\n"),
        "stdout: {} stderr: {}",
        stdout(&out),
        stderr(&out)
    );

    let first = format!("{}:/data", dir.display());
    let second = format!("{}:/data", fixtures().display());
    let out = run_in(&dir, &["--dir", &first, "--dir", &second, files], b"");
    assert_eq!(out.status.code(), Some(127));
    assert!(
        stderr(&out).contains(&format!(
            "/data is already mapped to {}",
            std::fs::canonicalize(&dir).unwrap().display()
        )),
        "{}",
        stderr(&out)
    );
}

#[test]
fn a_trap_is_reported_and_exits_non_zero() {
    let out = run_in(fixtures(), &[fixture("trap.wasm").to_str().unwrap()], b"");
    assert_eq!(stdout(&out), "before the trap\n");
    assert_eq!(out.status.code(), Some(wasix_dl::TRAP_EXIT_CODE));
    let err = stderr(&out);
    assert!(
        err.contains("_start trapped") && err.contains("unreachable"),
        "stderr: {err}"
    );
}

#[test]
fn a_trap_in_a_thread_ends_the_program_with_a_report_naming_the_thread_and_function() {
    let out = run_in(fixtures(), &["--dir", ".", "thread_exit.wasm", "trap"], b"");
    assert_eq!(stdout(&out), "thread traps\n");
    assert_eq!(out.status.code(), Some(wasix_dl::TRAP_EXIT_CODE));
    let err = stderr(&out);
    assert!(
        err.contains("trapped: unreachable") && err.contains("at crash (thread_exit.wasm)"),
        "stderr: {err}"
    );
}

#[test]
fn setjmp_and_longjmp_within_the_main_module() {
    let out = run_in(fixtures(), &[fixture("setjmp.wasm").to_str().unwrap()], b"");
    assert_eq!(
        stdout(&out),
        "setjmp returned 0\nlongjmp delivered 42\n",
        "stderr: {}",
        stderr(&out)
    );
    assert_eq!(out.status.code(), Some(0));
}

#[test]
fn cxx_exceptions_within_the_main_module() {
    let out = run_in(
        fixtures(),
        &[fixture("exceptions.wasm").to_str().unwrap()],
        b"",
    );
    assert_eq!(
        stdout(&out),
        "caught std::exception: runtime error from thrower\ncaught Custom 7\ncaught out_of_range\ndone\n",
        "stderr: {}",
        stderr(&out)
    );
    assert_eq!(out.status.code(), Some(0));
}

#[test]
fn a_plain_wasi_module_without_dylink_runs_with_its_exit_status() {
    let dir = scratch("plain");
    let wasm = wasmer::wat2wasm(
        br#"(module
          (import "wasi_snapshot_preview1" "fd_write" (func $write (param i32 i32 i32 i32) (result i32)))
          (import "wasi_snapshot_preview1" "proc_exit" (func $exit (param i32)))
          (memory (export "memory") 1)
          (data (i32.const 16) "plain module\n")
          (func (export "_start")
            (i32.store (i32.const 0) (i32.const 16))
            (i32.store (i32.const 4) (i32.const 13))
            (drop (call $write (i32.const 1) (i32.const 0) (i32.const 1) (i32.const 8)))
            (call $exit (i32.const 5))))"#,
    )
    .unwrap();
    std::fs::write(dir.join("plain.wasm"), &wasm).unwrap();
    let out = run_in(&dir, &["plain.wasm"], b"");
    assert_eq!(stdout(&out), "plain module\n");
    assert_eq!(out.status.code(), Some(5));
}

#[test]
fn a_plain_wasi_module_gets_the_runtime_s_poll_and_standard_streams() {
    // A zero clock timeout is due at once (wasmer-wasix waits for ever), and standard output
    // captured by a pipe is not a terminal (wasmer-wasix says every standard stream is).
    let dir = scratch("plain_poll");
    let wasm = wasmer::wat2wasm(
        br#"(module
          (import "wasi_snapshot_preview1" "poll_oneoff" (func $poll (param i32 i32 i32 i32) (result i32)))
          (import "wasi_snapshot_preview1" "fd_fdstat_get" (func $fdstat (param i32 i32) (result i32)))
          (import "wasi_snapshot_preview1" "fd_write" (func $write (param i32 i32 i32 i32) (result i32)))
          (memory (export "memory") 1)
          (data (i32.const 1024) "polled\n")
          (data (i32.const 1040) "a terminal\n")
          (data (i32.const 1056) "not a terminal\n")
          (func $print (param $at i32) (param $len i32)
            (i32.store (i32.const 0) (local.get $at))
            (i32.store (i32.const 4) (local.get $len))
            (drop (call $write (i32.const 1) (i32.const 0) (i32.const 1) (i32.const 8))))
          (func (export "_start")
            ;; one clock subscription at 256: tag 0 (clock) at +8, timeout 0 at +24
            (i32.store8 (i32.const 264) (i32.const 0))
            (i64.store (i32.const 280) (i64.const 0))
            (drop (call $poll (i32.const 256) (i32.const 512) (i32.const 1) (i32.const 768)))
            (call $print (i32.const 1024) (i32.const 7))
            (drop (call $fdstat (i32.const 1) (i32.const 800)))
            (if (i32.eq (i32.load8_u (i32.const 800)) (i32.const 2))
              (then (call $print (i32.const 1040) (i32.const 11)))
              (else (call $print (i32.const 1056) (i32.const 15))))))"#,
    )
    .unwrap();
    std::fs::write(dir.join("plain.wasm"), &wasm).unwrap();
    let mut cmd = wasix_dl();
    cmd.args(["run", "plain.wasm"]).current_dir(&dir);
    let out = output_within(cmd, b"", std::time::Duration::from_secs(30));
    assert_eq!(
        stdout(&out),
        "polled\nnot a terminal\n",
        "stderr: {}",
        stderr(&out)
    );
    assert_eq!(out.status.code(), Some(0));
}

#[test]
fn a_main_and_its_library_found_through_runpath_origin() {
    let out = run_in(fixtures(), &["--dir", ".", "uses_side.wasm"], b"");
    assert_eq!(stdout(&out), "45\n", "stderr: {}", stderr(&out));
    assert_eq!(out.status.code(), Some(0));
}

#[test]
fn a_missing_library_names_the_library_the_requester_and_every_path_tried() {
    // Outside any mapped directory the main module has no $ORIGIN: only the defaults remain.
    let out = run_in(
        fixtures(),
        &[fixture("uses_side.wasm").to_str().unwrap()],
        b"",
    );
    assert_eq!(out.status.code(), Some(127));
    let main = fixture("uses_side.wasm");
    assert_eq!(
        stderr(&out),
        format!(
            "wasix-dl: error: libside.so: cannot open shared library: not found (needed by {}); \
             tried: /lib/libside.so, /usr/lib/libside.so, /usr/local/lib/libside.so\n",
            main.display()
        )
    );
}

#[test]
fn the_system_library_directory_is_found_by_bare_name_and_is_read_only() {
    let system = scratch("system-libs");
    std::fs::copy(fixture("libside.so"), system.join("libside.so")).unwrap();
    let system_arg = system.to_str().unwrap();
    let out = run_in(
        fixtures(),
        &[
            "--system-libs",
            system_arg,
            "--dir",
            ".",
            "system_libs.wasm",
        ],
        b"",
    );
    assert_eq!(
        stdout(&out),
        "side_add(1, 2) = 45
\
         stat /lib/libside.so: ok
\
         open for reading: ok
\
         open for writing: Operation not permitted
\
         create: Operation not permitted
\
         unlink: Operation not permitted
\
         mkdir: Operation not permitted
\
         rename: Operation not permitted
",
        "stderr: {}",
        stderr(&out)
    );
    assert!(system.join("libside.so").exists() && !system.join("new.so").exists());

    // A directory the program maps at /lib itself takes the place of the system's.
    let own = scratch("own-lib");
    let own_spec = format!("{}:/lib", own.display());
    let out = run_in(
        fixtures(),
        &[
            "--system-libs",
            system_arg,
            "--dir",
            &own_spec,
            "--dir",
            ".",
            "system_libs.wasm",
        ],
        b"",
    );
    assert!(
        stdout(&out).starts_with("dlopen: libside.so: cannot open shared library: not found"),
        "stdout: {}",
        stdout(&out)
    );
}

#[test]
fn a_library_opened_again_unchanged_is_not_read_or_compiled_again() {
    let mut cmd = wasix_dl();
    cmd.args(["run", "--dir", ".", "reopen.wasm"])
        .current_dir(fixtures())
        .env("WASIX_DL_DEBUG", "libs");
    let out = output_within(cmd, b"", std::time::Duration::from_secs(60));
    assert_eq!(stdout(&out), "first: 1\nagain: 1\nrewritten: 2\n");
    let reused = stderr(&out)
        .lines()
        .filter(|l| l.ends_with("libreopen_current.so: compiled earlier in this process"))
        .count();
    assert_eq!(reused, 1, "stderr: {}", stderr(&out));
}

#[test]
fn symlink_creates_the_link_on_the_host_and_refuses_links_out_of_the_sandbox() {
    let dir = scratch("symlink");
    std::fs::copy(fixture("symlink.wasm"), dir.join("symlink.wasm")).unwrap();
    let out = run_in(&dir, &["--dir", ".", "symlink.wasm"], b"");
    assert_eq!(
        stdout(&out),
        "symlink: ok\nreadlink: target.txt\nread: through the link\n\
         symlink out of the sandbox: Operation not permitted\n\
         relative symlink out of the sandbox: Operation not permitted\n",
        "stderr: {}",
        stderr(&out)
    );
    let link = std::fs::read_link(dir.join("link.txt")).expect("the link exists on the host");
    assert_eq!(link, std::path::Path::new("target.txt"));
    assert!(!dir.join("escape.txt").exists() && !dir.join("escape2.txt").exists());
}

#[test]
fn load_errors_name_the_file_and_the_cause() {
    let dir = scratch("bad");
    std::fs::write(dir.join("notwasm.wasm"), b"#!/bin/sh\necho hi\n").unwrap();
    let out = run_in(&dir, &["notwasm.wasm"], b"");
    assert_eq!(out.status.code(), Some(127));
    assert!(
        stderr(&out).contains("notwasm.wasm: not a WebAssembly module"),
        "stderr: {}",
        stderr(&out)
    );

    let out = run_in(&dir, &["missing.wasm"], b"");
    assert_eq!(out.status.code(), Some(127));
    assert!(
        stderr(&out).contains("cannot read missing.wasm"),
        "stderr: {}",
        stderr(&out)
    );

    let out = run_in(&dir, &["--dir", "/nonexistent-dir", "notwasm.wasm"], b"");
    assert_eq!(out.status.code(), Some(127));
    assert!(
        stderr(&out).contains("invalid --dir /nonexistent-dir"),
        "stderr: {}",
        stderr(&out)
    );
}

#[test]
fn help_documents_every_flag() {
    let out = wasix_dl().args(["run", "--help"]).output_in_time();
    let help = String::from_utf8_lossy(&out.stdout);
    for flag in [
        "--dir",
        "--env",
        "--cwd",
        "--stack-size",
        "--sync-timeout",
        "--no-epoch-checks",
        "--system-libs",
    ] {
        assert!(
            help.contains(flag),
            "`wasix-dl run --help` does not document {flag}:\n{help}"
        );
    }
}

#[test]
fn proc_fork_is_refused_with_enotsup_in_a_dynamically_linked_program() {
    let out = run_in(fixtures(), &["--dir", ".", "fork.wasm"], b"");
    assert_eq!(
        stdout(&out),
        "proc_fork errno 58 (ENOTSUP is 58), pid untouched: 1\n",
        "stderr: {}",
        stderr(&out)
    );
}

#[test]
fn a_mismatched_indirect_call_names_the_callee_and_both_types_in_any_thread() {
    for args in [
        &["--dir", ".", "bad_cast.wasm"][..],
        &["--dir", ".", "bad_cast.wasm", "thread"],
    ] {
        let out = run_in(fixtures(), args, b"");
        assert_eq!(stdout(&out), "calling\n");
        assert_eq!(out.status.code(), Some(wasix_dl::TRAP_EXIT_CODE));
        let expected = format!(
            "trapped: indirect call type mismatch: the call expects [I32, I32] -> [I32], but \
             table slot {{}} holds `plus_one` of {}, [I32] -> [I32]\n",
            fixture("libbad_cast_lib.so").display()
        );
        let (before, after) = expected.split_once("{}").unwrap();
        let report = stderr(&out);
        let slot_and_rest = report
            .split_once(before)
            .unwrap_or_else(|| panic!("no `{before}` in: {report}"))
            .1;
        let digits = slot_and_rest
            .chars()
            .take_while(char::is_ascii_digit)
            .count();
        assert!(
            digits > 0 && slot_and_rest[digits..].starts_with(after),
            "stderr: {report}"
        );
    }
}

#[test]
fn calling_an_undefined_weak_function_traps_with_its_name() {
    let out = run_in(fixtures(), &["--dir", ".", "weak_call.wasm"], b"");
    assert_eq!(stdout(&out), "about to call\n");
    assert_eq!(out.status.code(), Some(wasix_dl::TRAP_EXIT_CODE));
    assert!(
        stderr(&out).contains("called undefined weak function `not_linked_anywhere`"),
        "stderr: {}",
        stderr(&out)
    );
}

#[test]
fn dlopen_of_a_relative_path_follows_the_guests_chdir() {
    // Like wasix-libc, the program hands dlopen "./libcyc_b.so" unchanged after chdir("stub").
    let out = run_in(fixtures(), &["--dir", ".", "raw_chdir.wasm"], b"");
    assert_eq!(
        stdout(&out),
        "cyc_b(40) = 40\n",
        "loaded the start-up directory's libcyc_b.so (cyc_b(40) = 42) instead of stub/'s; stderr: {}",
        stderr(&out)
    );
}

/// A side module with one thread-local (initial value 42) and `bump()`, which increments and
/// returns the calling thread's copy; its start function sets up the first thread's block
/// once, as wasm-ld's `__wasm_init_memory` does.
const WASI_THREADS_LIB: &str = r#"
(module
  (@dylink.0 (mem-info (memory 8 2)) (export-info "counter" tls))
  (import "env" "memory" (memory 1 65536 shared))
  (import "env" "__memory_base" (global $mb i32))
  (global $__tls_base (export "__tls_base") (mut i32) (i32.const 0))
  (global (export "__tls_size") i32 (i32.const 4))
  (global (export "__tls_align") i32 (i32.const 4))
  (global (export "counter") i32 (i32.const 0))
  (data $tdata "\2a\00\00\00")
  (func (export "__wasm_init_tls") (param $p i32)
    (global.set $__tls_base (local.get $p))
    (memory.init $tdata (local.get $p) (i32.const 0) (i32.const 4)))
  ;; Like wasm-ld's __wasm_init_memory: only the first instance sets up the first thread's
  ;; block (at memory_base), guarded by a flag after it.
  (func $init_memory
    (if (i32.eqz (i32.atomic.rmw.cmpxchg (i32.add (global.get $mb) (i32.const 4))
                                          (i32.const 0) (i32.const 1)))
      (then (call 0 (global.get $mb)))))
  (start $init_memory)
  ;; bump(): ++counter of this thread's copy, returns it
  (func (export "bump") (result i32)
    (i32.store (global.get $__tls_base) (i32.add (i32.load (global.get $__tls_base)) (i32.const 1)))
    (i32.load (global.get $__tls_base))))
"#;

/// A main module that starts a thread with wasi-threads' `thread-spawn` (not WASIX's
/// `thread_spawn_v2`) and exits with 10 if the thread's `bump()` saw its own fresh copy, plus
/// 1 if main's copy went on undisturbed.
const WASI_THREADS_MAIN: &str = r#"
(module
  (@dylink.0 (mem-info (memory 128 4)) (needed "libwt.so") (runtime-path "$ORIGIN"))
  (import "env" "memory" (memory 2 65536 shared))
  (import "env" "__memory_base" (global $mb i32))
  (import "env" "bump" (func $bump (result i32)))
  (import "wasi" "thread-spawn" (func $spawn (param i32) (result i32)))
  (import "wasi_snapshot_preview1" "proc_exit" (func $exit (param i32)))
  ;; The runtime asks the program for the new thread's library TLS blocks: one 16-byte
  ;; block at memory_base + 64 is all this test needs.
  (func (export "aligned_alloc") (param i32 i32) (result i32)
    (i32.add (global.get $mb) (i32.const 64)))
  (func (export "_start")
    (local $tid i32)
    (drop (call $bump))
    (drop (call $bump))
    (local.set $tid (call $spawn (i32.const 7)))
    (if (i32.le_s (local.get $tid) (i32.const 0)) (then (call $exit (i32.const 2))))
    (block $done
      (loop $wait
        (br_if $done (i32.atomic.load (i32.add (global.get $mb) (i32.const 4))))
        (drop (memory.atomic.wait32 (i32.add (global.get $mb) (i32.const 4)) (i32.const 0)
                                    (i64.const 1000000)))
        (br $wait)))
    ;; 10: the thread's first bump saw its own copy (42 + 1); 1: main's copy went on (45).
    (call $exit (i32.add
      (i32.mul (i32.eq (i32.load (global.get $mb)) (i32.const 43)) (i32.const 10))
      (i32.eq (call $bump) (i32.const 45)))))
  (func (export "wasi_thread_start") (param $tid i32) (param $arg i32)
    (i32.store (global.get $mb) (call $bump))
    (i32.atomic.store (i32.add (global.get $mb) (i32.const 4)) (local.get $arg))
    (drop (memory.atomic.notify (i32.add (global.get $mb) (i32.const 4)) (i32.const 1)))))
"#;

#[test]
fn wasi_threads_thread_spawn_gives_the_thread_every_library_with_its_own_thread_locals() {
    let dir = scratch("wasi-threads");
    let wasm = |wat: &str| wasmer::wat2wasm(wat.as_bytes()).unwrap().into_owned();
    std::fs::write(dir.join("libwt.so"), wasm(WASI_THREADS_LIB)).unwrap();
    std::fs::write(dir.join("main.wasm"), wasm(WASI_THREADS_MAIN)).unwrap();
    let out = run_in(&dir, &["--dir", ".", "main.wasm"], b"");
    assert_eq!(out.status.code(), Some(11), "stderr: {}", stderr(&out));
}

#[test]
fn without_epoch_checks_a_spinning_thread_makes_dlopen_fail_after_the_timeout_naming_it() {
    // sync_blocked's spinner waits, without host calls, for a pointer main publishes after
    // its dlopen. With epoch checks it answers at once (the differential test); without,
    // dlopen gives up after the timeout and dlerror says which thread did not answer.
    let out = run_in(
        fixtures(),
        &[
            "--no-epoch-checks",
            "--sync-timeout",
            "0.5",
            "--dir",
            ".",
            "sync_blocked.wasm",
        ],
        b"",
    );
    let printed = stdout(&out);
    assert!(
        printed.starts_with("dlopen: ")
            && printed.contains("libmany_lib3.so: thread ")
            && printed.contains("did not catch up within 500ms")
            && printed.contains("without epoch checks"),
        "stdout: {printed}\nstderr: {}",
        stderr(&out)
    );
    assert_eq!(out.status.code(), Some(1));
}

#[test]
fn reflect_signature_reports_the_type_of_any_function_pointer_in_any_thread() {
    // Served from the thread's own table (the one wasix-dl hands wasmer-wasix), so pointers
    // into libraries loaded at run time and from other threads are known too.
    let out = run_in(fixtures(), &["--dir", ".", "reflect.wasm"], b"");
    assert_eq!(
        stdout(&out),
        "main's two: errno 0, cacheable 1, 2 args ( 0 0 ), 1 results ( 0 )\n\
         library function: errno 0, cacheable 1, 3 args ( 0 1 2 ), 1 results ( 3 )\n\
         void(void): errno 0, cacheable 1, 0 args ( ), 0 results ( )\n\
         library function, in a thread: errno 0, cacheable 1, 3 args ( 0 1 2 ), 1 results ( 3 )\n\
         null: errno 28, cacheable 1, 0 args ( ), 0 results ( )\n\
         past the table: errno 28, cacheable 0, 0 args ( ), 0 results ( )\n\
         small buffer: errno 61, 3 args\n",
        "stderr: {}",
        stderr(&out)
    );
}

/// Peak host memory (RSS, KiB) of `wasix-dl run bench_reopen.wasm LIB ROUNDS`: dlopen, two
/// dlsym and dlclose of LIB, ROUNDS times. Killed, and the test failed, after two minutes.
#[allow(clippy::zombie_processes)] // reaped by wait4, which std's wait does not expose
fn peak_rss_over_rounds(lib: &str, rounds: u32) -> u64 {
    let child = wasix_dl()
        .args([
            "run",
            "--dir",
            ".",
            "bench_reopen.wasm",
            lib,
            &rounds.to_string(),
        ])
        .current_dir(fixtures())
        .stdout(std::process::Stdio::null())
        .spawn()
        .expect("start wasix-dl");
    let pid = child.id() as libc::pid_t;
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(120);
    loop {
        let mut status = 0;
        // SAFETY: an all-zero rusage is valid; wait4 fills it for our own child.
        let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
        let waited = unsafe { libc::wait4(pid, &mut status, libc::WNOHANG, &mut usage) };
        if waited == pid {
            assert!(
                libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0,
                "{rounds} rounds of {lib} failed: status {status:#x}"
            );
            return usage.ru_maxrss as u64;
        }
        if std::time::Instant::now() > deadline {
            unsafe { libc::kill(pid, libc::SIGKILL) };
            panic!("{rounds} rounds of {lib} did not end within two minutes");
        }
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
}

#[test]
fn host_memory_stays_flat_over_thousands_of_dlopen_dlclose_rounds() {
    // A wasmer Store keeps every instance it made: without parking closed libraries, each
    // round cost 2-3 KB of host memory for good (15 MB more after 6000 rounds).
    for lib in ["./libbench_reopen_small.so", "./libbench_reopen_1m.so"] {
        let few = peak_rss_over_rounds(lib, 300);
        let many = peak_rss_over_rounds(lib, 6000);
        assert!(
            many < few + 4096,
            "{lib}: peak RSS {few} KiB after 300 rounds, {many} KiB after 6000"
        );
    }
}
