//! The host functions of the DL ABI that wasix-dl serves itself (namespace `wasix_32v1`; see
//! shared/reference/WASIX-DL-ABI.md): argument decoding, result and error encoding. The work
//! is done in [`crate::open`].

use std::path::Path;

use wasmer::{
    AsStoreMut, Function, FunctionEnv, FunctionEnvMut, Imports, MemoryView, RuntimeError, Value,
    WasmPtr,
};
use wasmer_wasix::wasmer_wasix_types::wasi::Errno;

use crate::open::{self, DlState};
use crate::search;

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
        "proc_fork",
        Function::new_typed_with_env(store, env, proc_fork),
    );
}

/// `dlclose(handle, err_buf, err_buf_len) -> errno`: served as the `wasix_32v1.dlclose` import
/// (newer wasix-libc) and as the runtime symbol `__wasix_dlclose` (this toolchain's libc).
pub fn dlclose_function(store: &mut impl AsStoreMut, env: &FunctionEnv<DlState>) -> Function {
    Function::new_typed_with_env(store, env, dlclose)
}

fn view<'a>(ctx: &'a FunctionEnvMut<DlState>) -> Option<MemoryView<'a>> {
    let loaded = ctx.data().loaded.as_ref()?;
    Some(loaded.group.memory.view(ctx))
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

/// Writes `message` NUL-terminated into the guest's error buffer, cut to fit (at a character
/// boundary).
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
    mut ctx: FunctionEnvMut<DlState>,
    path: u32,
    path_len: u32,
    flags: u32,
    err_buf: u32,
    err_buf_len: u32,
    ld_library_path: u32,
    ld_library_path_len: u32,
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
    match open::dlopen(&mut ctx, path.as_deref(), flags, &ld) {
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
    mut ctx: FunctionEnvMut<DlState>,
    handle: u32,
    symbol: u32,
    symbol_len: u32,
    err_buf: u32,
    err_buf_len: u32,
    out: u32,
) -> i32 {
    let name = match read_str(&ctx, symbol, symbol_len) {
        Ok(name) => name,
        Err(errno) => return errno as i32,
    };
    match open::dlsym(&mut ctx, handle, &name) {
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
