//! The standard streams as the host has them. wasmer-wasix describes stdin, stdout and stderr
//! as terminals (character devices, not seekable) whatever they are, so `isatty()` is true for
//! a pipe or a file and CPython colours tracebacks written to logs. Our `fd_fdstat_get` and
//! `fd_filestat_get` correct the file type of a descriptor that refers to one of the three
//! (also after a `dup2`): a terminal stays a character device; the host's `/dev/null` is a
//! character device that can seek (not a terminal, as natively); a file is a regular file; a
//! pipe or socket is of unknown type (WASI has no FIFO). And since wasmer-wasix answers
//! `fd_fdstat_get` for descriptors 0-2 by their number, one that now refers to something else
//! (`dup2` of a file onto stdout) gets that file's type.

use wasmer::{AsStoreMut, Extern, Function, FunctionEnv, FunctionEnvMut, Imports, RuntimeError};

use crate::guest::{
    self, call_errno, i32s, read_u64, scratch, write, FDSTAT_RIGHTS, FILESTAT_FILETYPE,
    FILESTAT_INO, FILESTAT_SIZE, FILETYPE_CHARACTER_DEVICE, FILETYPE_REGULAR_FILE,
    FILETYPE_UNKNOWN, RIGHTS_FD_SEEK, RIGHTS_FD_TELL,
};
use crate::open::DlState;
use crate::run::Stream;

/// wasmer-wasix's inode numbers of its stdin, stdout and stderr (fs/mod.rs `FS_STDIN_INO`...),
/// in host descriptor order.
const STDIO_INODES: std::ops::RangeInclusive<u64> = 10..=12;

/// What the guest's standard stream `fd` (0-2) is, as a WASI file type, and whether it can
/// seek: the host's descriptor of that number, or what the embedder gave instead.
fn stream_truth(ctx: &FunctionEnvMut<DlState>, fd: i32) -> (u8, bool) {
    match ctx.data().process.streams.get(fd as usize) {
        Some(Stream::Null) => (FILETYPE_CHARACTER_DEVICE, true),
        Some(Stream::Pipe) => (FILETYPE_UNKNOWN, false),
        _ => host_truth(fd),
    }
}

/// What the host's descriptor `host_fd` is, as a WASI file type, and whether it can seek.
fn host_truth(host_fd: i32) -> (u8, bool) {
    // SAFETY: isatty and fstat only read the descriptor's state into our own struct.
    let (tty, stat) = unsafe {
        let mut stat: libc::stat = std::mem::zeroed();
        let ok = libc::fstat(host_fd, &mut stat) == 0;
        (libc::isatty(host_fd) == 1, ok.then_some(stat))
    };
    let mode = stat.map_or(0, |s| s.st_mode & libc::S_IFMT);
    match mode {
        _ if tty => (FILETYPE_CHARACTER_DEVICE, false),
        libc::S_IFCHR => (FILETYPE_CHARACTER_DEVICE, true),
        libc::S_IFREG => (FILETYPE_REGULAR_FILE, true),
        _ => (FILETYPE_UNKNOWN, false),
    }
}

/// Wraps `fd_fdstat_get` and `fd_filestat_get` of the WASI namespaces with these layouts.
pub fn define(store: &mut impl AsStoreMut, env: &FunctionEnv<DlState>, imports: &mut Imports) {
    for ns in ["wasi_snapshot_preview1", "wasix_32v1"] {
        let (Some(Extern::Function(fdstat)), Some(Extern::Function(filestat))) = (
            imports.get_export(ns, "fd_fdstat_get"),
            imports.get_export(ns, "fd_filestat_get"),
        ) else {
            continue;
        };
        let runtime_filestat = filestat.clone();
        let fdstat_wrapper = move |mut ctx: FunctionEnvMut<DlState>,
                                   fd: i32,
                                   buf: u32|
              -> Result<i32, RuntimeError> {
            let errno = call(&mut ctx, &fdstat, fd, buf)?;
            // wasmer-wasix answers for descriptors 0-2 by number, whatever they refer to now.
            if errno == 0 && (0..=2).contains(&fd) {
                let (filetype, seekable) = match what_is(&mut ctx, &runtime_filestat, fd)? {
                    Some(What::Stdio(stream)) => stream_truth(&ctx, stream),
                    Some(What::Other(filetype)) => (filetype, filetype == FILETYPE_REGULAR_FILE),
                    None => return Ok(errno),
                };
                correct_fdstat(&ctx, buf, filetype, seekable);
            }
            Ok(errno)
        };
        let filestat_wrapper = move |mut ctx: FunctionEnvMut<DlState>,
                                     fd: i32,
                                     buf: u32|
              -> Result<i32, RuntimeError> {
            let errno = call(&mut ctx, &filestat, fd, buf)?;
            if errno == 0 {
                if let Some(host_fd) = read_u64(&ctx, u64::from(buf) + FILESTAT_INO)
                    .filter(|ino| STDIO_INODES.contains(ino))
                    .map(|ino| (ino - STDIO_INODES.start()) as i32)
                {
                    let filetype = stream_truth(&ctx, host_fd).0;
                    write(&ctx, u64::from(buf) + FILESTAT_FILETYPE, &[filetype]);
                }
            }
            Ok(errno)
        };
        imports.define(
            ns,
            "fd_fdstat_get",
            Function::new_typed_with_env(store, env, fdstat_wrapper),
        );
        imports.define(
            ns,
            "fd_filestat_get",
            Function::new_typed_with_env(store, env, filestat_wrapper),
        );
    }
}

fn call(
    ctx: &mut FunctionEnvMut<DlState>,
    f: &Function,
    fd: i32,
    buf: u32,
) -> Result<i32, RuntimeError> {
    call_errno(ctx, f, &i32s(&[fd, buf as i32]))
}

/// What a guest descriptor refers to.
enum What {
    /// A standard stream of the host (0, 1, 2).
    Stdio(i32),
    /// Something else, of this WASI file type.
    Other(u8),
}

/// What guest descriptor `fd` refers to, from its filestat, asked of wasmer-wasix into scratch
/// space below the thread's stack pointer.
fn what_is(
    ctx: &mut FunctionEnvMut<DlState>,
    filestat: &Function,
    fd: i32,
) -> Result<Option<What>, RuntimeError> {
    let Some(scratch) = scratch(ctx, FILESTAT_SIZE) else {
        return Ok(None);
    };
    if call(ctx, filestat, fd, scratch)? != 0 {
        return Ok(None);
    }
    let Some(ino) = read_u64(ctx, u64::from(scratch) + FILESTAT_INO) else {
        return Ok(None);
    };
    if STDIO_INODES.contains(&ino) {
        return Ok(Some(What::Stdio((ino - STDIO_INODES.start()) as i32)));
    }
    let filetype = guest::read_u8(ctx, u64::from(scratch) + FILESTAT_FILETYPE);
    Ok(filetype.map(What::Other))
}

fn correct_fdstat(ctx: &FunctionEnvMut<DlState>, buf: u32, filetype: u8, seekable: bool) {
    let buf = u64::from(buf);
    write(ctx, buf, &[filetype]);
    if seekable {
        if let Some(rights) = read_u64(ctx, buf + FDSTAT_RIGHTS) {
            let rights = rights | RIGHTS_FD_SEEK | RIGHTS_FD_TELL;
            write(ctx, buf + FDSTAT_RIGHTS, &rights.to_le_bytes());
        }
    }
}
