//! File-system calls that wasmer-wasix's host file system does not carry out on the host; ours
//! resolve the guest path (wasi-libc passes a preopened directory and a path relative to it)
//! to the host path in a mapped directory and do the work there. Outside every mapped
//! directory (the guest's in-memory root) wasmer-wasix's own calls remain.
//!
//! - `path_symlink`: wasmer-wasix records a link in its own inode table, so `symlink()` returns
//!   0 while nothing exists on disk. Ours creates it on the host when both the link and what
//!   it points to stay inside the mapped directories (a link to anywhere else would let the
//!   guest out of its sandbox: the host file system follows links), else fails with `EPERM`.
//! - `path_filestat_set_times`: wasmer-wasix's returns 0 and changes nothing for host files
//!   (`utime`, `touch -d`, tarfile and zipfile restoring dates). Ours sets them (`utimensat`).
//! - `fd_readdir`: wasmer-wasix gives host directory entries inode 0; ours gives every entry
//!   the inode number `stat` reports for it (`scandir`'s `inode()`, `ls -i`; see
//!   [`crate::inodes`]).
//! - `path_filestat_get`: the host's inode number and link count (see [`crate::inodes`]).
//! - `path_open` (and wasix's `path_open2`): learns the inode number of what it opened (see
//!   [`crate::inodes`]); `/dev/tty` cannot be opened (`ENXIO`, as natively without a
//!   controlling terminal: the guest has none) rather than created as a file.
//!
//! A path argument is relative to a directory descriptor: a preopened directory (whose name
//! is kept once asked, until the descriptor is closed or replaced: `fd_close` and
//! `fd_renumber` are wrapped for that), or a directory opened by path.

use std::path::{Path, PathBuf};

use wasmer::{
    AsStoreMut, Extern, Function, FunctionEnv, FunctionEnvMut, Imports, RuntimeError, Value,
};
use wasmer_wasix::wasmer_wasix_types::wasi::Errno;

use crate::fs::{self, MappedDir};
use crate::guest::{
    call_errno, i32s, read_string, read_u16, read_u32, read_u64, read_u8, scratch, write,
    FDFLAGS_APPEND, FDSTAT_FLAGS, FDSTAT_SIZE, FILESTAT_FILETYPE, FILESTAT_INO, FILESTAT_SIZE,
    FILETYPE_CHARACTER_DEVICE, FILETYPE_REGULAR_FILE, WHENCE_END,
};
use crate::inodes;
use crate::open::DlState;
use crate::search;

/// Wraps the WASI calls on paths and files that wasmer-wasix gets wrong for mapped host
/// directories (see each `define_*`), in every WASI namespace of `imports`.
pub fn define(store: &mut impl AsStoreMut, env: &FunctionEnv<DlState>, imports: &mut Imports) {
    for ns in ["wasi_unstable", "wasi_snapshot_preview1", "wasix_32v1"] {
        define_forget_preopen(store, env, imports, ns);
        define_set_times(store, env, imports, ns);
        define_readdir(store, env, imports, ns);
        if ns != "wasi_unstable" {
            // (whose filestat has another layout)
            define_filestat(store, env, imports, ns);
            define_open(store, env, imports, ns);
        }
        define_link(store, env, imports, ns);
        define_append_write(store, env, imports, ns);
        let (Some(Extern::Function(runtime)), Some(preopens)) = (
            imports.get_export(ns, "path_symlink"),
            Preopens::of(imports, ns),
        ) else {
            continue;
        };
        let wrapper = move |mut ctx: FunctionEnvMut<DlState>,
                            old_path: u32,
                            old_len: u32,
                            fd: i32,
                            new_path: u32,
                            new_len: u32|
              -> Result<i32, RuntimeError> {
            let args = i32s(&[
                old_path as i32,
                old_len as i32,
                fd,
                new_path as i32,
                new_len as i32,
            ]);
            let target = read_string(&ctx, old_path, old_len);
            let link = preopens.guest_path(&mut ctx, fd, new_path, new_len)?;
            let (Some(target), Some(link)) = (target, link) else {
                return call_errno(&mut ctx, &runtime, &args);
            };
            match host_link(&ctx.data().process.fs.dirs, &link, &target) {
                Placement::InMemory => call_errno(&mut ctx, &runtime, &args),
                Placement::Refused => Ok(Errno::Perm as i32),
                Placement::Host { link, target } => {
                    Ok(match std::os::unix::fs::symlink(&target, &link) {
                        Ok(()) => Errno::Success as i32,
                        Err(e) => errno_of(&e) as i32,
                    })
                }
            }
        };
        imports.define(
            ns,
            "path_symlink",
            Function::new_typed_with_env(store, env, wrapper),
        );
    }
}

/// `path_filestat_set_times(fd, lookup_flags, path, path_len, atim, mtim, fst_flags)`.
fn define_set_times(
    store: &mut impl AsStoreMut,
    env: &FunctionEnv<DlState>,
    imports: &mut Imports,
    ns: &str,
) {
    let (Some(Extern::Function(runtime)), Some(preopens)) = (
        imports.get_export(ns, "path_filestat_set_times"),
        Preopens::of(imports, ns),
    ) else {
        return;
    };
    let wrapper = move |mut ctx: FunctionEnvMut<DlState>,
                        fd: i32,
                        lookup: i32,
                        path: u32,
                        path_len: u32,
                        atim: i64,
                        mtim: i64,
                        fst_flags: i32|
          -> Result<i32, RuntimeError> {
        let Some((_, host)) = preopens.host_path(&mut ctx, fd, path, path_len)? else {
            let args = [
                Value::I32(fd),
                Value::I32(lookup),
                Value::I32(path as i32),
                Value::I32(path_len as i32),
                Value::I64(atim),
                Value::I64(mtim),
                Value::I32(fst_flags),
            ];
            return call_errno(&mut ctx, &runtime, &args);
        };
        Ok(set_times(&host, lookup & 1 != 0, atim, mtim, fst_flags as u16) as i32)
    };
    imports.define(
        ns,
        "path_filestat_set_times",
        Function::new_typed_with_env(store, env, wrapper),
    );
}

/// `path_open(dirfd, dirflags, path, path_len, ..., fd_out)` and wasix's `path_open2`.
fn define_open(
    store: &mut impl AsStoreMut,
    env: &FunctionEnv<DlState>,
    imports: &mut Imports,
    ns: &str,
) {
    let Some(preopens) = Preopens::of(imports, ns) else {
        return;
    };
    for name in ["path_open", "path_open2"] {
        let Some(Extern::Function(open)) = imports.get_export(ns, name) else {
            continue;
        };
        let preopens = preopens.clone();
        let ty = open.ty(store);
        let wrapper = move |mut ctx: FunctionEnvMut<DlState>,
                            args: &[Value]|
              -> Result<Vec<Value>, RuntimeError> {
            let int = |at: usize| args.get(at).and_then(Value::i32);
            let (Some(dirfd), Some(path), Some(len), Some(out)) =
                (int(0), int(2), int(3), args.last().and_then(Value::i32))
            else {
                return Ok(open.call(&mut ctx, args)?.into_vec());
            };
            let guest = preopens.guest_path(&mut ctx, dirfd, path as u32, len as u32)?;
            if guest.as_deref() == Some(Path::new("/dev/tty")) {
                return Ok(vec![Value::I32(Errno::Nxio as i32)]);
            }
            let result = open.call(&mut ctx, args)?;
            let opened = result.first().and_then(Value::i32) == Some(0);
            let fd = read_u32(&ctx, u64::from(out as u32));
            if let (true, Some(guest), Some(fd)) = (opened, guest, fd) {
                inodes::learn_opened(&mut ctx, &preopens.filestat, fd as i32, &guest)?;
            }
            Ok(result.into_vec())
        };
        imports.define(ns, name, Function::new_with_env(store, env, ty, wrapper));
    }
}

/// `fd_close(fd)` and `fd_renumber(from, to)`: a preopened directory's name is forgotten when
/// its descriptor goes (or is replaced), so that another file given its number is not taken
/// for it.
fn define_forget_preopen(
    store: &mut impl AsStoreMut,
    env: &FunctionEnv<DlState>,
    imports: &mut Imports,
    ns: &str,
) {
    let forget = |ctx: &FunctionEnvMut<DlState>, fds: &[i32]| {
        let mut names =
            (ctx.data().process.preopen_names.lock()).unwrap_or_else(|p| p.into_inner());
        for fd in fds {
            names.remove(fd);
        }
    };
    if let Some(Extern::Function(close)) = imports.get_export(ns, "fd_close") {
        let wrapper =
            move |mut ctx: FunctionEnvMut<DlState>, fd: i32| -> Result<i32, RuntimeError> {
                forget(&ctx, &[fd]);
                call_errno(&mut ctx, &close, &i32s(&[fd]))
            };
        imports.define(
            ns,
            "fd_close",
            Function::new_typed_with_env(store, env, wrapper),
        );
    }
    if let Some(Extern::Function(renumber)) = imports.get_export(ns, "fd_renumber") {
        let wrapper = move |mut ctx: FunctionEnvMut<DlState>,
                            from: i32,
                            to: i32|
              -> Result<i32, RuntimeError> {
            forget(&ctx, &[from, to]);
            call_errno(&mut ctx, &renumber, &i32s(&[from, to]))
        };
        imports.define(
            ns,
            "fd_renumber",
            Function::new_typed_with_env(store, env, wrapper),
        );
    }
}

/// `path_filestat_get(fd, lookup_flags, path, path_len, buf)`, with the inode numbers of
/// [`crate::inodes`] and the host's link count for files in mapped directories (wasmer
/// reports 1, also for hard-linked files), and the devices of `/dev` as character devices
/// (wasmer: regular files).
fn define_filestat(
    store: &mut impl AsStoreMut,
    env: &FunctionEnv<DlState>,
    imports: &mut Imports,
    ns: &str,
) {
    let (Some(Extern::Function(runtime)), Some(preopens)) = (
        imports.get_export(ns, "path_filestat_get"),
        Preopens::of(imports, ns),
    ) else {
        return;
    };
    let wrapper = move |mut ctx: FunctionEnvMut<DlState>,
                        fd: i32,
                        lookup: i32,
                        path: u32,
                        path_len: u32,
                        buf: u32|
          -> Result<i32, RuntimeError> {
        let args = i32s(&[fd, lookup, path as i32, path_len as i32, buf as i32]);
        let errno = call_errno(&mut ctx, &runtime, &args)?;
        if errno != 0 {
            return Ok(errno);
        }
        let Some(guest) = preopens.guest_path(&mut ctx, fd, path, path_len)? else {
            return Ok(errno);
        };
        let dirs = &ctx.data().process.fs.dirs;
        if host_path(dirs, &guest).is_none() && fs::is_device(&guest) {
            write(
                &ctx,
                u64::from(buf) + FILESTAT_FILETYPE,
                &[FILETYPE_CHARACTER_DEVICE],
            );
        }
        inodes::correct_filestat(&ctx, buf, &guest, lookup & 1 != 0);
        Ok(errno)
    };
    imports.define(
        ns,
        "path_filestat_get",
        Function::new_typed_with_env(store, env, wrapper),
    );
}

/// `path_link(old_fd, old_flags, old_path, old_len, new_fd, new_path, new_len)`: a hard link
/// on the host when both names are in one mapped directory. (wasmer would make the new name an
/// alias inside the runtime only: virtual-fs's `Arc` forwarding drops `hard_link`.)
fn define_link(
    store: &mut impl AsStoreMut,
    env: &FunctionEnv<DlState>,
    imports: &mut Imports,
    ns: &str,
) {
    let (Some(Extern::Function(runtime)), Some(preopens)) = (
        imports.get_export(ns, "path_link"),
        Preopens::of(imports, ns),
    ) else {
        return;
    };
    let wrapper = move |mut ctx: FunctionEnvMut<DlState>,
                        old_fd: i32,
                        old_flags: i32,
                        old_path: u32,
                        old_len: u32,
                        new_fd: i32,
                        new_path: u32,
                        new_len: u32|
          -> Result<i32, RuntimeError> {
        let old = preopens.host_path(&mut ctx, old_fd, old_path, old_len)?;
        let new = preopens.host_path(&mut ctx, new_fd, new_path, new_len)?;
        match (old, new) {
            (Some((old_dir, old)), Some((new_dir, new))) if old_dir == new_dir => {
                // linkat(2): a link to a symlink itself unless SYMLINK_FOLLOW.
                let old = match old_flags & 1 != 0 {
                    true => std::fs::canonicalize(&old).unwrap_or(old),
                    false => old,
                };
                Ok(match std::fs::hard_link(&old, &new) {
                    Ok(()) => Errno::Success as i32,
                    Err(e) => errno_of(&e) as i32,
                })
            }
            (Some(_), Some(_)) => Ok(Errno::Xdev as i32),
            _ => {
                let args = [old_fd, old_flags, old_path as i32, old_len as i32, new_fd];
                let args = i32s(&[&args[..], &[new_path as i32, new_len as i32]].concat());
                call_errno(&mut ctx, &runtime, &args)
            }
        }
    };
    imports.define(
        ns,
        "path_link",
        Function::new_typed_with_env(store, env, wrapper),
    );
}

/// `fd_write(fd, iovs, iovs_len, nwritten)`, writing at the file's real end when `fd` appends.
/// wasmer writes an appending descriptor's data at the size it cached for the file, which is
/// stale once another descriptor truncated it: the data landed past the end, after a hole of
/// zeros. Here such a write is made without the flag, after a seek to the end (which asks the
/// file its size).
fn define_append_write(
    store: &mut impl AsStoreMut,
    env: &FunctionEnv<DlState>,
    imports: &mut Imports,
    ns: &str,
) {
    let (
        Some(Extern::Function(runtime)),
        Some(Extern::Function(fdstat)),
        Some(Extern::Function(set_flags)),
        Some(Extern::Function(seek)),
    ) = (
        imports.get_export(ns, "fd_write"),
        imports.get_export(ns, "fd_fdstat_get"),
        imports.get_export(ns, "fd_fdstat_set_flags"),
        imports.get_export(ns, "fd_seek"),
    )
    else {
        return;
    };
    let wrapper = move |mut ctx: FunctionEnvMut<DlState>,
                        fd: i32,
                        iovs: u32,
                        iovs_len: u32,
                        nwritten: u32|
          -> Result<i32, RuntimeError> {
        let args = i32s(&[fd, iovs as i32, iovs_len as i32, nwritten as i32]);
        let write = |ctx: &mut FunctionEnvMut<DlState>| call_errno(ctx, &runtime, &args);
        // Standard streams never seek; everything else: is it appending?
        let Some(scratch) = (fd > 2).then(|| scratch(&mut ctx, FDSTAT_SIZE)).flatten() else {
            return write(&mut ctx);
        };
        if call_errno(&mut ctx, &fdstat, &i32s(&[fd, scratch as i32]))? != 0 {
            return write(&mut ctx);
        }
        // Only files: wasmer marks its standard output and error appending too (and a
        // duplicate of one is fd > 2).
        let filetype = read_u8(&ctx, u64::from(scratch));
        let flags = read_u16(&ctx, u64::from(scratch) + FDSTAT_FLAGS).unwrap_or(0);
        if flags & FDFLAGS_APPEND == 0 || filetype != Some(FILETYPE_REGULAR_FILE) {
            return write(&mut ctx);
        }
        let without = i32::from(flags & !FDFLAGS_APPEND);
        if call_errno(&mut ctx, &set_flags, &i32s(&[fd, without]))? != 0 {
            return write(&mut ctx);
        }
        let end = [
            Value::I32(fd),
            Value::I64(0),
            Value::I32(WHENCE_END),
            Value::I32(scratch as i32),
        ];
        // Should the seek fail, wasmer's own append is the next best thing.
        if call_errno(&mut ctx, &seek, &end)? != 0 {
            call_errno(&mut ctx, &set_flags, &i32s(&[fd, i32::from(flags)]))?;
            return write(&mut ctx);
        }
        let result = write(&mut ctx);
        call_errno(&mut ctx, &set_flags, &i32s(&[fd, i32::from(flags)]))?;
        result
    };
    imports.define(
        ns,
        "fd_write",
        Function::new_typed_with_env(store, env, wrapper),
    );
}

/// `fd_readdir(fd, buf, buf_len, cookie, bufused)`, with each entry's inode.
fn define_readdir(
    store: &mut impl AsStoreMut,
    env: &FunctionEnv<DlState>,
    imports: &mut Imports,
    ns: &str,
) {
    let (Some(Extern::Function(runtime)), Some(Extern::Function(filestat)), Some(preopens)) = (
        imports.get_export(ns, "fd_readdir"),
        imports.get_export(ns, "path_filestat_get"),
        Preopens::of(imports, ns),
    ) else {
        return;
    };
    let wrapper = move |mut ctx: FunctionEnvMut<DlState>,
                        fd: i32,
                        buf: u32,
                        buf_len: u32,
                        cookie: i64,
                        bufused: u32|
          -> Result<i32, RuntimeError> {
        let args = [
            Value::I32(fd),
            Value::I32(buf as i32),
            Value::I32(buf_len as i32),
            Value::I64(cookie),
            Value::I32(bufused as i32),
        ];
        let errno = call_errno(&mut ctx, &runtime, &args)?;
        if errno == 0 {
            let dir = preopens.guest_path_of_dir(&mut ctx, fd)?;
            fill_inodes(&mut ctx, &filestat, fd, dir.as_deref(), buf, bufused)?;
        }
        Ok(errno)
    };
    imports.define(
        ns,
        "fd_readdir",
        Function::new_typed_with_env(store, env, wrapper),
    );
}

/// Dirents: d_next u64, d_ino u64 at 8, d_namlen u32 at 16, d_type u8 at 20, then the name.
const DIRENT_SIZE: u32 = 24;

/// Gives every whole entry of `buf` (read from directory `fd`, at guest path `dir` if known)
/// the inode number `stat` reports for it; without `dir`, those that have none get
/// wasmer-wasix's.
fn fill_inodes(
    ctx: &mut FunctionEnvMut<DlState>,
    filestat: &Function,
    fd: i32,
    dir: Option<&Path>,
    buf: u32,
    bufused: u32,
) -> Result<(), RuntimeError> {
    let Some(scratch) = scratch(ctx, FILESTAT_SIZE) else {
        return Ok(());
    };
    let Some(used) = read_u32(ctx, u64::from(bufused)) else {
        return Ok(());
    };
    let mut at = 0;
    while at + DIRENT_SIZE <= used {
        let entry = u64::from(buf + at);
        let (Some(ino), Some(namlen)) = (read_u64(ctx, entry + 8), read_u32(ctx, entry + 16))
        else {
            return Ok(());
        };
        let name = buf + at + DIRENT_SIZE;
        if at + DIRENT_SIZE + namlen > used {
            break; // cut off: the guest asks again from this entry
        }
        let entry_path = dir
            .zip(read_string(ctx, name, namlen))
            .map(|(d, n)| d.join(n));
        let on_host = (entry_path.as_deref()).and_then(|p| inodes::on_host(ctx, p, false));
        if let Some((ino, _)) = on_host {
            write(ctx, entry + 8, &ino.to_le_bytes());
        } else if ino == 0 || entry_path.is_some() {
            let args = i32s(&[fd, 0, name as i32, namlen as i32, scratch as i32]);
            let found = call_errno(ctx, filestat, &args)? == 0;
            if let Some(ino) = found
                .then(|| read_u64(ctx, u64::from(scratch) + FILESTAT_INO))
                .flatten()
            {
                let ino = match &entry_path {
                    Some(path) => inodes::seen(ctx, path, false, ino).0,
                    None => ino,
                };
                write(ctx, entry + 8, &ino.to_le_bytes());
            }
        }
        at += DIRENT_SIZE + namlen;
    }
    Ok(())
}

/// `utimensat` on the host, with WASI's flags (ATIM 1, ATIM_NOW 2, MTIM 4, MTIM_NOW 8).
fn set_times(host: &Path, follow: bool, atim: i64, mtim: i64, flags: u16) -> Errno {
    let time = |set: u16, now: u16, ns: i64| {
        let (tv_sec, tv_nsec) = if flags & now != 0 {
            (0, libc::UTIME_NOW)
        } else if flags & set != 0 {
            (ns.div_euclid(1_000_000_000), ns.rem_euclid(1_000_000_000))
        } else {
            (0, libc::UTIME_OMIT)
        };
        libc::timespec { tv_sec, tv_nsec }
    };
    let times = [time(1, 2, atim), time(4, 8, mtim)];
    let Ok(path) = std::ffi::CString::new(host.as_os_str().as_encoded_bytes()) else {
        return Errno::Inval;
    };
    let at_flags = if follow { 0 } else { libc::AT_SYMLINK_NOFOLLOW };
    // SAFETY: a NUL-terminated path and two timespecs, as utimensat wants.
    let rc = unsafe { libc::utimensat(libc::AT_FDCWD, path.as_ptr(), times.as_ptr(), at_flags) };
    if rc == 0 {
        Errno::Success
    } else {
        errno_of(&std::io::Error::last_os_error())
    }
}

/// Where a guest link goes.
#[derive(Debug, PartialEq, Eq)]
enum Placement {
    /// Outside every mapped directory: wasmer-wasix's in-memory root.
    InMemory,
    /// It or its target would leave the mapped directories.
    Refused,
    /// On the host: the link's host path and the text to store in it.
    Host { link: PathBuf, target: PathBuf },
}

/// The host placement of a guest link at absolute guest path `link` to `target` (as the guest
/// wrote it: relative to the link's directory, or an absolute guest path).
fn host_link(dirs: &[MappedDir], link: &Path, target: &str) -> Placement {
    let Some((link_dir, host)) = host_path(dirs, link) else {
        return Placement::InMemory;
    };
    let parent = link.parent().unwrap_or(Path::new("/"));
    let resolved = search::absolute(parent, Path::new(target));
    let Some((target_dir, host_target)) = host_path(dirs, &resolved) else {
        return Placement::Refused;
    };
    // A relative target inside the same mapped directory means the same on the host.
    let text = if !target.starts_with('/') && target_dir == link_dir {
        PathBuf::from(target)
    } else {
        host_target
    };
    Placement::Host {
        link: host,
        target: text,
    }
}

/// The mapped directory (its index) holding absolute guest path `guest`, and its host path.
pub(crate) fn host_path(dirs: &[MappedDir], guest: &Path) -> Option<(usize, PathBuf)> {
    let (index, dir) = (dirs.iter().enumerate())
        .filter(|(_, d)| guest.starts_with(&d.guest))
        .max_by_key(|(_, d)| d.guest.components().count())?;
    let rest = guest.strip_prefix(&dir.guest).ok()?;
    Some((index, dir.host.join(rest)))
}

/// The two WASI calls that name a preopened directory, with which the wrappers turn a path
/// argument (relative to a preopen: wasi-libc resolves every path against one) into the
/// guest's absolute path and, inside a mapped directory, the host's.
#[derive(Clone)]
pub(crate) struct Preopens {
    prestat: Function,
    prestat_name: Function,
    /// wasmer-wasix's `fd_filestat_get`, for a directory opened by path.
    filestat: Function,
}

impl Preopens {
    pub(crate) fn of(imports: &Imports, ns: &str) -> Option<Self> {
        match (
            imports.get_export(ns, "fd_prestat_get"),
            imports.get_export(ns, "fd_prestat_dir_name"),
            imports.get_export(ns, "fd_filestat_get"),
        ) {
            (
                Some(Extern::Function(prestat)),
                Some(Extern::Function(prestat_name)),
                Some(Extern::Function(filestat)),
            ) => Some(Preopens {
                prestat,
                prestat_name,
                filestat,
            }),
            _ => None,
        }
    }

    /// The guest path of preopened directory `fd`.
    fn name(
        &self,
        ctx: &mut FunctionEnvMut<DlState>,
        fd: i32,
    ) -> Result<Option<String>, RuntimeError> {
        let names = &ctx.data().process.preopen_names;
        let known = names
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(&fd)
            .cloned();
        if known.is_some() {
            return Ok(known);
        }
        let name = self.ask_name(ctx, fd)?;
        if let Some(name) = &name {
            let names = &ctx.data().process.preopen_names;
            (names.lock().unwrap_or_else(|p| p.into_inner())).insert(fd, name.clone());
        }
        Ok(name)
    }

    /// The guest path of preopened directory `fd`, asked of wasmer-wasix.
    fn ask_name(
        &self,
        ctx: &mut FunctionEnvMut<DlState>,
        fd: i32,
    ) -> Result<Option<String>, RuntimeError> {
        let Some(scratch) = scratch(ctx, 4096) else {
            return Ok(None);
        };
        // prestat: a tag byte, then the name's length (u32 at 4).
        if call_errno(ctx, &self.prestat, &i32s(&[fd, scratch as i32]))? != 0 {
            return Ok(None);
        }
        let Some(len) = read_u32(ctx, u64::from(scratch) + 4).map(|len| len.min(4000)) else {
            return Ok(None);
        };
        let args = i32s(&[fd, scratch as i32, len as i32]);
        if call_errno(ctx, &self.prestat_name, &args)? != 0 {
            return Ok(None);
        }
        let name = read_string(ctx, scratch, len);
        Ok(name.map(|name| name.trim_end_matches('\0').to_string()))
    }

    /// The guest path of directory `fd`: preopened, or opened by a path.
    pub(crate) fn guest_path_of_dir(
        &self,
        ctx: &mut FunctionEnvMut<DlState>,
        fd: i32,
    ) -> Result<Option<PathBuf>, RuntimeError> {
        match self.name(ctx, fd)? {
            Some(name) => Ok(Some(PathBuf::from(name))),
            None => inodes::path_of_fd(ctx, &self.filestat, fd),
        }
    }

    /// The absolute guest path of the path argument at `path` (`len` bytes) relative to `fd`.
    pub(crate) fn guest_path(
        &self,
        ctx: &mut FunctionEnvMut<DlState>,
        fd: i32,
        path: u32,
        len: u32,
    ) -> Result<Option<PathBuf>, RuntimeError> {
        let dir = self.guest_path_of_dir(ctx, fd)?;
        Ok((dir.zip(read_string(ctx, path, len)))
            .map(|(dir, p)| search::absolute(&dir, Path::new(&p))))
    }

    /// The mapped directory (its index) and host path of that path argument, if it has one.
    fn host_path(
        &self,
        ctx: &mut FunctionEnvMut<DlState>,
        fd: i32,
        path: u32,
        len: u32,
    ) -> Result<Option<(usize, PathBuf)>, RuntimeError> {
        let guest = self.guest_path(ctx, fd, path, len)?;
        Ok(guest.and_then(|guest| host_path(&ctx.data().process.fs.dirs, &guest)))
    }
}

fn errno_of(e: &std::io::Error) -> Errno {
    match e.raw_os_error() {
        Some(libc::EEXIST) => Errno::Exist,
        Some(libc::ENOENT) => Errno::Noent,
        Some(libc::EACCES) => Errno::Access,
        Some(libc::EPERM) => Errno::Perm,
        Some(libc::ENOTDIR) => Errno::Notdir,
        Some(libc::ELOOP) => Errno::Loop,
        Some(libc::EINVAL) => Errno::Inval,
        Some(libc::EROFS) => Errno::Rofs,
        Some(libc::EXDEV) => Errno::Xdev,
        Some(libc::EMLINK) => Errno::Mlink,
        Some(libc::EISDIR) => Errno::Isdir,
        Some(libc::ENOSPC) => Errno::Nospc,
        Some(libc::ENAMETOOLONG) => Errno::Nametoolong,
        Some(libc::EDQUOT) => Errno::Dquot,
        _ => Errno::Io,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dirs() -> Vec<MappedDir> {
        vec![
            MappedDir {
                host: "/host/work".into(),
                guest: "/work".into(),
            },
            MappedDir {
                host: "/host/data".into(),
                guest: "/data".into(),
            },
        ]
    }

    #[test]
    fn links_stay_inside_the_mapped_directories() {
        let place = |link: &str, target: &str| host_link(&dirs(), Path::new(link), target);
        assert_eq!(
            place("/work/a/link", "../file"),
            Placement::Host {
                link: "/host/work/a/link".into(),
                target: "../file".into()
            }
        );
        assert_eq!(
            place("/work/link", "/data/x"),
            Placement::Host {
                link: "/host/work/link".into(),
                target: "/host/data/x".into()
            }
        );
        assert_eq!(place("/work/link", "../../etc/passwd"), Placement::Refused);
        assert_eq!(place("/work/link", "/etc/passwd"), Placement::Refused);
        assert_eq!(place("/tmp/link", "/etc/passwd"), Placement::InMemory);
    }
}
