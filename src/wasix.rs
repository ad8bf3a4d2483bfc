//! The host functions of the DL ABI that wasix-dl serves itself (namespace `wasix_32v1`; see
//! shared/reference/WASIX-DL-ABI.md): argument decoding, result and error encoding. The work
//! is done in [`crate::open`].

use std::path::Path;

use wasmer::{
    AsStoreMut, Function, FunctionEnv, FunctionEnvMut, Imports, RuntimeError, Value, WasmPtr,
};
use wasmer_wasix::wasmer_wasix_types::wasi::Errno;

use crate::guest::view;
use crate::open::{self, DlState};
use crate::search;

/// The runtime's own functions that this toolchain's libc finds with `dlsym(RTLD_DEFAULT,
/// name)` (so that programs add no import and still run on runtimes without them), and the
/// import of ours that serves each: guest name, import name in `wasix_32v1`.
pub const BUILTINS: [(&str, &str); 4] = [
    ("__wasix_dlclose", "dlclose"),
    // dlopen/dlsym with the caller's `__dso_handle`: its RUNPATH, and RTLD_NEXT.
    ("__wasix_dlopen_from", "dlopen_from"),
    ("__wasix_dlsym_from", "dlsym_from"),
    ("__wasix_dladdr", "dladdr"),
];

/// Replaces wasmer-wasix's DL functions (and `proc_fork`) in `imports` with ours, and wraps its
/// `chdir` so that the loader follows the guest's working directory.
pub fn define(store: &mut impl AsStoreMut, env: &FunctionEnv<DlState>, imports: &mut Imports) {
    let ns = "wasix_32v1";
    if let Some(wasmer::Extern::Function(runtime_chdir)) = imports.get_export(ns, "chdir") {
        env.as_mut(store).runtime_chdir = Some(runtime_chdir);
        imports.define(ns, "chdir", Function::new_typed_with_env(store, env, chdir));
    }
    imports.define(
        ns,
        "dlopen",
        Function::new_typed_with_env(store, env, dlopen),
    );
    imports.define(ns, "dlsym", Function::new_typed_with_env(store, env, dlsym));
    imports.define(
        ns,
        "dl_invalid_handle",
        Function::new_typed_with_env(store, env, dl_invalid_handle),
    );
    imports.define(ns, "dlclose", dlclose_function(store, env));
    imports.define(
        ns,
        "dlopen_from",
        Function::new_typed_with_env(store, env, dlopen_from),
    );
    imports.define(
        ns,
        "dlsym_from",
        Function::new_typed_with_env(store, env, dlsym_from),
    );
    imports.define(
        ns,
        "dladdr",
        Function::new_typed_with_env(store, env, dladdr),
    );
    imports.define(
        ns,
        "proc_fork",
        Function::new_typed_with_env(store, env, proc_fork),
    );
}

/// `dlclose(handle, err_buf, err_buf_len) -> errno`: served as the `wasix_32v1.dlclose` import
/// (newer wasix-libc) and as the runtime symbol `__wasix_dlclose` (this toolchain's libc).
pub fn dlclose_function(store: &mut impl AsStoreMut, env: &FunctionEnv<DlState>) -> Function {
    Function::new_typed_with_env(store, env, dlclose)
}

fn read_str(ctx: &FunctionEnvMut<DlState>, ptr: u32, len: u32) -> Result<String, Errno> {
    let view = view(ctx).ok_or(Errno::Noexec)?;
    let mut bytes = vec![0u8; len as usize];
    view.read(ptr as u64, &mut bytes)
        .map_err(|_| Errno::Fault)?;
    String::from_utf8(bytes).map_err(|_| Errno::Ilseq)
}

fn write_u32(ctx: &FunctionEnvMut<DlState>, ptr: u32, value: u32) -> Result<(), Errno> {
    let view = view(ctx).ok_or(Errno::Noexec)?;
    WasmPtr::<u32>::new(ptr)
        .write(&view, value)
        .map_err(|_| Errno::Fault)
}

/// Writes `message` NUL-terminated into a guest buffer (an error message, a name), cut to fit
/// (at a character boundary).
fn write_error(ctx: &FunctionEnvMut<DlState>, buf: u32, buf_len: u32, message: &str) {
    if let (Some(view), Some(bytes)) = (view(ctx), fit_message(message, buf_len as usize)) {
        let _ = view.write(buf as u64, &bytes);
    }
}

/// `message` NUL-terminated in at most `buf_len` bytes; one that does not fit is cut at a
/// character boundary and ends in "..." (wasix-libc's buffer is 256 bytes).
fn fit_message(message: &str, buf_len: usize) -> Option<Vec<u8>> {
    let room = buf_len.checked_sub(1)?;
    let (mut end, marker) = if message.len() <= room {
        (message.len(), "")
    } else {
        (room.saturating_sub(3), &"..."[..room.min(3)])
    };
    while !message.is_char_boundary(end) {
        end -= 1;
    }
    Some([message.as_bytes()[..end].to_vec(), marker.into(), vec![0]].concat())
}

#[allow(clippy::too_many_arguments)] // the ABI's signature
fn dlopen(
    ctx: FunctionEnvMut<DlState>,
    path: u32,
    path_len: u32,
    flags: u32,
    err_buf: u32,
    err_buf_len: u32,
    ld_library_path: u32,
    ld_library_path_len: u32,
    out_handle: u32,
) -> i32 {
    let args = (path, path_len, flags, err_buf, err_buf_len);
    dlopen_by(
        ctx,
        args,
        ld_library_path,
        ld_library_path_len,
        None,
        out_handle,
    )
}

/// `dlopen` with the caller's `__dso_handle` last but one (its RUNPATH and `$ORIGIN` count).
#[allow(clippy::too_many_arguments)]
fn dlopen_from(
    ctx: FunctionEnvMut<DlState>,
    path: u32,
    path_len: u32,
    flags: u32,
    err_buf: u32,
    err_buf_len: u32,
    ld_library_path: u32,
    ld_library_path_len: u32,
    caller: u32,
    out_handle: u32,
) -> i32 {
    let args = (path, path_len, flags, err_buf, err_buf_len);
    let caller = Some(caller);
    dlopen_by(
        ctx,
        args,
        ld_library_path,
        ld_library_path_len,
        caller,
        out_handle,
    )
}

fn dlopen_by(
    mut ctx: FunctionEnvMut<DlState>,
    (path, path_len, flags, err_buf, err_buf_len): (u32, u32, u32, u32, u32),
    ld_library_path: u32,
    ld_library_path_len: u32,
    caller: Option<u32>,
    out_handle: u32,
) -> i32 {
    let decoded = (|| {
        let path = if path == 0 {
            None
        } else {
            Some(read_str(&ctx, path, path_len)?)
        };
        let ld = read_str(&ctx, ld_library_path, ld_library_path_len)?;
        Ok::<_, Errno>((path, ld))
    })();
    let (path, ld) = match decoded {
        Ok(v) => v,
        Err(errno) => return errno as i32,
    };
    let ld: Vec<String> = ld
        .split(':')
        .filter(|s| !s.is_empty())
        .map(String::from)
        .collect();
    match open::dlopen(&mut ctx, path.as_deref(), flags, &ld, caller) {
        Ok(handle) => match write_u32(&ctx, out_handle, handle) {
            Ok(()) => Errno::Success as i32,
            Err(errno) => errno as i32,
        },
        Err(e) => {
            write_error(&ctx, err_buf, err_buf_len, &e.to_string());
            Errno::Noent as i32
        }
    }
}

fn dlsym(
    ctx: FunctionEnvMut<DlState>,
    handle: u32,
    symbol: u32,
    symbol_len: u32,
    err_buf: u32,
    err_buf_len: u32,
    out: u32,
) -> i32 {
    dlsym_by(
        ctx,
        handle,
        symbol,
        symbol_len,
        None,
        err_buf,
        err_buf_len,
        out,
    )
}

/// `dlsym` with the caller's `__dso_handle` (what `RTLD_NEXT` is relative to).
#[allow(clippy::too_many_arguments)]
fn dlsym_from(
    ctx: FunctionEnvMut<DlState>,
    handle: u32,
    symbol: u32,
    symbol_len: u32,
    caller: u32,
    err_buf: u32,
    err_buf_len: u32,
    out: u32,
) -> i32 {
    dlsym_by(
        ctx,
        handle,
        symbol,
        symbol_len,
        Some(caller),
        err_buf,
        err_buf_len,
        out,
    )
}

#[allow(clippy::too_many_arguments)]
fn dlsym_by(
    mut ctx: FunctionEnvMut<DlState>,
    handle: u32,
    symbol: u32,
    symbol_len: u32,
    caller: Option<u32>,
    err_buf: u32,
    err_buf_len: u32,
    out: u32,
) -> i32 {
    let name = match read_str(&ctx, symbol, symbol_len) {
        Ok(name) => name,
        Err(errno) => return errno as i32,
    };
    match open::dlsym(&mut ctx, handle, &name, caller) {
        Ok(value) => match write_u32(&ctx, out, value) {
            Ok(()) => Errno::Success as i32,
            Err(errno) => errno as i32,
        },
        Err(e) => {
            write_error(&ctx, err_buf, err_buf_len, &e.to_string());
            Errno::Noent as i32
        }
    }
}

fn dlclose(mut ctx: FunctionEnvMut<DlState>, handle: u32, err_buf: u32, err_buf_len: u32) -> i32 {
    match open::dlclose(&mut ctx, handle) {
        Ok(()) => Errno::Success as i32,
        Err(e) => {
            write_error(&ctx, err_buf, err_buf_len, &e.to_string());
            Errno::Inval as i32
        }
    }
}

/// `dladdr(addr, info, fname_buf, fname_len, sname_buf, sname_len) -> 0 | 1`: 0 when `addr`
/// belongs to a module, with `info` = {fbase, saddr} and both names written NUL-terminated
/// (the symbol's empty when none is known; a name cut to fit ends in "...").
fn dladdr(
    ctx: FunctionEnvMut<DlState>,
    addr: u32,
    info: u32,
    fname_buf: u32,
    fname_len: u32,
    sname_buf: u32,
    sname_len: u32,
) -> i32 {
    let Some(loaded) = ctx.data().loaded.as_ref() else {
        return 1;
    };
    let Some(found) = crate::addr::dladdr(&open::lock(&loaded.linker), addr) else {
        return 1;
    };
    let (symbol, saddr) = found.symbol.unwrap_or_default();
    let written = write_u32(&ctx, info, found.base).and_then(|()| write_u32(&ctx, info + 4, saddr));
    if written.is_err() {
        return 1;
    }
    write_error(&ctx, fname_buf, fname_len, &found.file);
    write_error(&ctx, sname_buf, sname_len, &symbol);
    0
}

fn dl_invalid_handle(ctx: FunctionEnvMut<DlState>, handle: u32) -> i32 {
    i32::from(!open::is_valid_handle(&ctx, handle))
}

/// `chdir(path, path_len) -> errno`: wasmer-wasix's, after which the loader remembers the new
/// directory, so that a relative path handed to dlopen as is (wasix-libc passes it unchanged)
/// means what it means to the guest.
fn chdir(mut ctx: FunctionEnvMut<DlState>, path: u32, path_len: u32) -> Result<i32, RuntimeError> {
    let Some(runtime_chdir) = ctx.data().runtime_chdir.clone() else {
        return Ok(Errno::Nosys as i32);
    };
    let args = [Value::I32(path as i32), Value::I32(path_len as i32)];
    let errno = runtime_chdir
        .call(&mut ctx, &args)?
        .first()
        .and_then(Value::i32)
        .unwrap_or(Errno::Inval as i32);
    if errno == Errno::Success as i32 {
        if let Ok(dir) = read_str(&ctx, path, path_len) {
            let mut cwd = ctx
                .data()
                .process
                .cwd
                .lock()
                .unwrap_or_else(|p| p.into_inner());
            *cwd = search::absolute(&cwd, Path::new(&dir));
        }
    }
    Ok(errno)
}

/// fork() cannot copy an instance group with its libraries: say so instead of misbehaving.
fn proc_fork(_ctx: FunctionEnvMut<DlState>, _copy_memory: i32, _pid_ptr: u32) -> i32 {
    Errno::Notsup as i32
}

#[cfg(test)]
mod tests {
    use super::fit_message;

    #[test]
    fn messages_are_cut_with_a_marker_at_a_character_boundary() {
        assert_eq!(fit_message("short", 16).unwrap(), b"short\0");
        assert_eq!(fit_message("exactly", 8).unwrap(), b"exactly\0");
        assert_eq!(fit_message("too long by far", 8).unwrap(), b"too ...\0");
        // "é" is two bytes: it is dropped whole, not split.
        assert_eq!(fit_message("abcé-rest", 8).unwrap(), b"abc...\0");
        assert_eq!(fit_message("anything", 1).unwrap(), b"\0");
        assert_eq!(fit_message("anything", 3).unwrap(), b"..\0");
        assert_eq!(fit_message("anything", 0), None);
    }
}
