//! Differential tests against glibc's ld.so: plain C programs using <dlfcn.h>, built once with
//! wasix-cc (run by wasix-dl) and once with gcc (run natively), must print exactly the same
//! and exit with the same status.

mod common;
use common::*;

use std::process::Command;

/// Runs `name` natively in fixtures/native and `name.wasm` under wasix-dl in the fixtures
/// directory (mapped as the working directory), and compares what they print.
fn same_as_glibc(name: &str) {
    let native_dir = fixtures().join("native");
    let native = Command::new(native_dir.join(name))
        .current_dir(&native_dir)
        .output_in_time();
    let wasm = run_in(fixtures(), &["--dir", ".", &format!("{name}.wasm")], b"");
    assert_eq!(
        stdout(&wasm),
        stdout(&native),
        "{name}: wasix-dl (left) and glibc (right) differ; wasix-dl's stderr: {}",
        stderr(&wasm)
    );
    assert_eq!(
        wasm.status.code(),
        native.status.code(),
        "{name}: exit status differs"
    );
}

#[test]
fn standard_streams_that_are_pipes_or_files_are_not_terminals() {
    same_as_glibc("isatty");
}

#[test]
fn file_times_set_by_utime_and_utimensat_reach_the_file() {
    same_as_glibc("utimes");
}

#[test]
fn mmap_of_files_and_anonymous_memory_behaves_as_natively() {
    same_as_glibc("mmap");
}

#[test]
fn appending_writes_go_to_the_current_end_of_the_file() {
    same_as_glibc("append");
}

#[test]
fn readdir_gives_each_entry_the_inode_stat_reports() {
    same_as_glibc("readdir_ino");
}

#[test]
fn needed_library_through_runpath() {
    same_as_glibc("uses_side");
}

#[test]
fn dlopen_dlsym_dlerror_and_the_global_scope() {
    same_as_glibc("dl_basic");
}

#[test]
fn main_interposes_data_and_functions_of_its_libraries() {
    same_as_glibc("interpose");
}

#[test]
fn main_interposes_the_functions_of_a_library_it_dlopens() {
    same_as_glibc("interpose_dlopen");
}

#[test]
fn an_earlier_rtld_global_library_interposes_a_later_librarys_functions() {
    same_as_glibc("interpose_global");
}

#[test]
fn dladdr_names_the_module_and_symbol_of_functions_and_data() {
    same_as_glibc("dladdr");
}

#[test]
fn rtld_next_finds_the_next_definition_after_the_caller() {
    same_as_glibc("rtld_next");
}

#[test]
fn a_closed_librarys_atexit_handlers_run_at_dlclose() {
    same_as_glibc("atexit_dlclose");
}

#[test]
fn dlopen_from_a_library_searches_that_librarys_runpath() {
    same_as_glibc("dlopen_origin");
}

#[test]
fn weak_references_and_weak_definitions() {
    same_as_glibc("weak");
}

#[test]
fn function_pointer_identity_and_data_relocations_across_modules() {
    same_as_glibc("fnptr");
}

#[test]
fn constructors_and_destructors_in_dependency_order() {
    same_as_glibc("ctors");
}

#[test]
fn rtld_local_runpath_of_dlopened_libraries_noload_and_rollback() {
    same_as_glibc("dl_local");
}

#[test]
fn cxx_exceptions_cross_module_boundaries_both_ways() {
    same_as_glibc("cxx_across");
}

#[test]
fn longjmp_crosses_module_boundaries_both_ways() {
    same_as_glibc("longjmp_across");
}

#[test]
fn thread_local_data_of_a_dlopened_library() {
    same_as_glibc("tls");
}

#[test]
fn errno_is_shared_across_modules() {
    same_as_glibc("errno_across");
}

#[test]
fn a_constructor_that_calls_dlopen() {
    same_as_glibc("ctor_dlopen");
}

#[test]
fn callbacks_across_modules_through_qsort() {
    same_as_glibc("qsort_cb");
}

#[test]
fn variadic_functions_across_modules() {
    same_as_glibc("varargs");
}

#[test]
fn every_value_type_across_a_module_boundary() {
    same_as_glibc("types");
}

#[test]
fn cxx_rtti_virtual_calls_and_global_constructors_across_modules() {
    same_as_glibc("cxx_rtti");
}

#[test]
fn data_symbols_of_the_program_through_dlsym() {
    same_as_glibc("dlsym_data");
}

#[test]
fn dlclose_unloads_runs_destructors_and_reloads_fresh() {
    same_as_glibc("dl_close");
}

#[test]
fn poll_and_select_with_a_zero_timeout_return_at_once() {
    same_as_glibc("poll_zero");
}

#[test]
fn recursion_as_deep_as_a_native_main_thread_allows() {
    same_as_glibc("deep_recursion");
}

#[test]
fn pthreads_mutexes_condvars_keys_once_semaphores_barriers_rwlocks_and_stdio() {
    same_as_glibc("threads_basic");
}

#[test]
fn thread_local_data_of_the_main_module_per_thread() {
    same_as_glibc("threads_tls");
}

#[test]
fn thread_local_data_and_errno_of_a_dlopened_library_in_threads_started_before_and_after() {
    same_as_glibc("threads_lib_tls");
}

#[test]
fn sixty_four_threads_each_calling_into_five_libraries() {
    same_as_glibc("threads_many");
}

#[test]
fn cxx_threads_mutexes_futures_thread_locals_and_exceptions_across_a_library() {
    same_as_glibc("cxx_threads");
}

#[test]
fn a_c_program_dlopens_two_cxx_plugins_that_share_one_cxx_runtime() {
    same_as_glibc("cxx_plugins");
}

#[test]
fn a_library_reopened_unchanged_and_after_it_was_rewritten() {
    same_as_glibc("reopen");
}

#[test]
fn thousands_of_dlopen_dlclose_rounds_each_find_the_library_as_loaded_with_threads_and_tls() {
    same_as_glibc("reopen_state");
}

#[test]
fn the_cxx_runtime_stays_loaded_after_its_last_plugin_is_closed() {
    same_as_glibc("cxx_runtime_stays");
}

#[test]
fn thread_locals_defined_in_one_module_and_used_in_another_per_thread() {
    same_as_glibc("tls_across");
}

#[test]
fn exit_called_in_a_thread_ends_the_whole_program_with_its_status() {
    same_as_glibc("thread_exit");
}

#[test]
fn a_library_opened_by_a_thread_closed_by_main_and_replaced_while_the_thread_lives() {
    same_as_glibc("threads_dlclose");
}

#[test]
fn the_program_outlives_a_main_thread_that_calls_pthread_exit() {
    same_as_glibc("main_pthread_exit");
}

#[test]
fn dlopen_returns_while_other_threads_block_in_read_poll_futex_and_sleep_or_spin() {
    same_as_glibc("sync_blocked");
}

#[test]
fn the_same_with_the_fenced_host_call_wrappers_of_systems_without_membarrier() {
    let native_dir = fixtures().join("native");
    for name in ["sync_blocked", "sync_stress"] {
        let native = Command::new(native_dir.join(name))
            .current_dir(&native_dir)
            .output_in_time();
        let mut wasm = wasix_dl();
        wasm.args(["run", "--dir", ".", &format!("{name}.wasm")])
            .current_dir(fixtures())
            .env("WASIX_DL_NO_MEMBARRIER", "1");
        let wasm = output_within(wasm, b"", std::time::Duration::from_secs(120));
        assert_eq!(stdout(&wasm), stdout(&native), "{name}: {}", stderr(&wasm));
    }
}

#[test]
fn dlopen_returns_while_a_thread_is_blocked_reading_stdin() {
    // wasmer's #6472: there, dlopen waits for the reader, which waits for input the test only
    // writes once dlopen has returned.
    let marker = "main: dlopen returned";
    let limit = std::time::Duration::from_secs(60);
    let native_dir = fixtures().join("native");
    let mut native = Command::new(native_dir.join("sync_stdin"));
    native.current_dir(&native_dir);
    let native = output_after_marker(native, marker, b"hello\n", limit);
    let mut wasm = wasix_dl();
    wasm.args(["run", "--dir", ".", "sync_stdin.wasm"])
        .current_dir(fixtures());
    let wasm = output_after_marker(wasm, marker, b"hello\n", limit);
    assert_eq!(stdout(&wasm), stdout(&native), "stderr: {}", stderr(&wasm));
    assert_eq!(wasm.status.code(), native.status.code());
}

#[test]
fn dlopen_dlclose_and_pthread_create_from_many_threads_at_once() {
    same_as_glibc("sync_stress");
}

#[test]
fn dup_dup2_dup3_and_fcntl_dupfd() {
    same_as_glibc("fd_dup");
}
