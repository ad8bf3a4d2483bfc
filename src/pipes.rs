//! Descriptors that are not files. Seeking a pipe or a socket fails with `ESPIPE` natively;
//! wasmer-wasix answers `EACCES` (it checks the descriptor's rights first), and CPython's
//! `seekable()` and `tell()` on a pipe then raise the wrong error. Our `fd_seek` lets wasmer
//! answer and, only when it fails, asks what the descriptor is: a pipe or socket (WASI has no
//! FIFO type: "unknown") gets `ESPIPE`.

use wasmer::{
    AsStoreMut, Extern, Function, FunctionEnv, FunctionEnvMut, Imports, RuntimeError, Value,
};
use wasmer_wasix::wasmer_wasix_types::wasi::Errno;

use crate::guest::{
    call_errno, i32s, read_u8, scratch, FDSTAT_SIZE, FILETYPE_SOCKET_DGRAM, FILETYPE_SOCKET_STREAM,
    FILETYPE_UNKNOWN,
};
use crate::open::DlState;

/// Wraps `fd_seek(fd, offset, whence, newoffset)` of the WASI namespaces.
pub fn define(store: &mut impl AsStoreMut, env: &FunctionEnv<DlState>, imports: &mut Imports) {
    for ns in ["wasi_unstable", "wasi_snapshot_preview1", "wasix_32v1"] {
        let (Some(Extern::Function(seek)), Some(Extern::Function(fdstat))) = (
            imports.get_export(ns, "fd_seek"),
            imports.get_export(ns, "fd_fdstat_get"),
        ) else {
            continue;
        };
        let wrapper = move |mut ctx: FunctionEnvMut<DlState>,
                            fd: i32,
                            offset: i64,
                            whence: i32,
                            newoffset: u32|
              -> Result<i32, RuntimeError> {
            let args = [
                Value::I32(fd),
                Value::I64(offset),
                Value::I32(whence),
                Value::I32(newoffset as i32),
            ];
            let errno = call_errno(&mut ctx, &seek, &args)?;
            if errno == 0 || errno == Errno::Badf as i32 {
                return Ok(errno);
            }
            let Some(at) = scratch(&mut ctx, FDSTAT_SIZE) else {
                return Ok(errno);
            };
            if call_errno(&mut ctx, &fdstat, &i32s(&[fd, at as i32]))? != 0 {
                return Ok(errno);
            }
            Ok(match read_u8(&ctx, u64::from(at)) {
                Some(FILETYPE_UNKNOWN | FILETYPE_SOCKET_DGRAM | FILETYPE_SOCKET_STREAM) => {
                    Errno::Spipe as i32
                }
                _ => errno,
            })
        };
        imports.define(
            ns,
            "fd_seek",
            Function::new_typed_with_env(store, env, wrapper),
        );
    }
}
