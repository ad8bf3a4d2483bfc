//! The guest's memory as the host functions that wrap WASI calls see it, and the layouts of
//! the WASI structures they read and correct (wasi_snapshot_preview1, wasix_32v1).

use wasmer::{Function, FunctionEnvMut, MemoryView, RuntimeError, Value};

use crate::open::DlState;

/// fdstat (24 bytes): fs_filetype u8 at 0, fs_flags u16 at 2, fs_rights_base u64 at 8.
pub const FDSTAT_SIZE: u32 = 24;
pub const FDSTAT_FLAGS: u64 = 2;
pub const FDSTAT_RIGHTS: u64 = 8;
/// filestat (64 bytes): st_ino u64 at 8, st_filetype u8 at 16, st_nlink u64 at 24.
pub const FILESTAT_SIZE: u32 = 64;
pub const FILESTAT_INO: u64 = 8;
pub const FILESTAT_FILETYPE: u64 = 16;
pub const FILESTAT_NLINK: u64 = 24;

pub const FILETYPE_UNKNOWN: u8 = 0;
pub const FILETYPE_CHARACTER_DEVICE: u8 = 2;
pub const FILETYPE_REGULAR_FILE: u8 = 4;
pub const FILETYPE_SOCKET_DGRAM: u8 = 5;
pub const FILETYPE_SOCKET_STREAM: u8 = 6;

pub const FDFLAGS_APPEND: u16 = 1;
pub const RIGHTS_FD_SEEK: u64 = 1 << 2;
pub const RIGHTS_FD_TELL: u64 = 1 << 5;
pub const WHENCE_END: i32 = 2;

/// Where a plain WASI module's host functions find scratch space: below its stack pointer
/// when it exports it, else in a page the runtime grew its memory by before it started (an
/// allocator only hands out pages it grew itself; only the main thread of a plain module
/// runs our host functions, so one page does). `None` if neither could be had.
#[derive(Clone)]
pub enum Scratch {
    StackPointer(wasmer::Global),
    /// The end of the page.
    Page(u32),
    None,
}

/// The program's memory, once it is loaded.
pub fn view<'a>(ctx: &'a FunctionEnvMut<DlState>) -> Option<MemoryView<'a>> {
    let state = ctx.data();
    let memory = match (&state.loaded, &state.plain) {
        (Some(loaded), _) => &loaded.group.memory,
        (None, Some((memory, _))) => memory,
        (None, None) => return None,
    };
    Some(memory.view(ctx))
}

/// `size` bytes of scratch space below the thread's stack pointer (free during a host call:
/// nothing runs on this thread's stack meanwhile), 8-aligned. `None` for a plain module that
/// does not export its stack pointer.
pub fn scratch(ctx: &mut FunctionEnvMut<DlState>, size: u32) -> Option<u32> {
    let state = ctx.data();
    let stack_pointer = match (&state.loaded, &state.plain) {
        (Some(loaded), _) => loaded.group.stack_pointer.clone(),
        (None, Some((_, Scratch::StackPointer(global)))) => global.clone(),
        (None, Some((_, Scratch::Page(end)))) => {
            return (size <= 65536).then(|| (end - size) & !7);
        }
        _ => return None,
    };
    let sp = stack_pointer.get(ctx).i32()? as u32;
    sp.checked_sub(size).map(|s| s & !7)
}

pub fn read_u8(ctx: &FunctionEnvMut<DlState>, address: u64) -> Option<u8> {
    let mut byte = [0u8];
    view(ctx)?.read(address, &mut byte).ok()?;
    Some(byte[0])
}

pub fn read_u16(ctx: &FunctionEnvMut<DlState>, address: u64) -> Option<u16> {
    let mut bytes = [0u8; 2];
    view(ctx)?.read(address, &mut bytes).ok()?;
    Some(u16::from_le_bytes(bytes))
}

pub fn read_u32(ctx: &FunctionEnvMut<DlState>, address: u64) -> Option<u32> {
    let mut bytes = [0u8; 4];
    view(ctx)?.read(address, &mut bytes).ok()?;
    Some(u32::from_le_bytes(bytes))
}

pub fn read_u64(ctx: &FunctionEnvMut<DlState>, address: u64) -> Option<u64> {
    let mut bytes = [0u8; 8];
    view(ctx)?.read(address, &mut bytes).ok()?;
    Some(u64::from_le_bytes(bytes))
}

/// A UTF-8 string of `len` bytes at `ptr`.
pub fn read_string(ctx: &FunctionEnvMut<DlState>, ptr: u32, len: u32) -> Option<String> {
    let mut bytes = vec![0u8; len as usize];
    view(ctx)?.read(u64::from(ptr), &mut bytes).ok()?;
    String::from_utf8(bytes).ok()
}

/// Writes `bytes` at `address`; a write outside the memory is dropped (the call it corrects
/// already succeeded there, so it cannot happen).
pub fn write(ctx: &FunctionEnvMut<DlState>, address: u64, bytes: &[u8]) {
    if let Some(view) = view(ctx) {
        let _ = view.write(address, bytes);
    }
}

/// Calls a WASI function and returns its errno.
pub fn call_errno(
    ctx: &mut FunctionEnvMut<DlState>,
    f: &Function,
    args: &[Value],
) -> Result<i32, RuntimeError> {
    Ok(f.call(ctx, args)?.first().and_then(Value::i32).unwrap_or(0))
}

/// `i32` arguments of a WASI call.
pub fn i32s(args: &[i32]) -> Vec<Value> {
    args.iter().map(|&a| Value::I32(a)).collect()
}
