//! Inode numbers as the guest sees them. wasmer-wasix numbers an inode by hashing the path it
//! was reached by, so two hard links of one file, or `/` and `/..`, had different `st_ino`
//! (tarfile finds hard links by it; shutil, pathlib and `os.path.samefile` compare it). Here a
//! file in a mapped directory has the host's inode number, in `stat`, `fstat` and directory
//! entries alike; outside them (the in-memory root) one path has one number, however it was
//! named. What a wasmer-wasix number stands for is learned from the calls that name a path
//! (`path_open`, `path_filestat_get`): its number for a path never changes, so from then on
//! the guest path is known for it.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use wasmer::{AsStoreMut, Extern, Function, FunctionEnv, FunctionEnvMut, Imports, RuntimeError};

use crate::guest::{
    call_errno, i32s, read_u64, scratch, write, FILESTAT_INO, FILESTAT_NLINK, FILESTAT_SIZE,
};
use crate::hostfs::host_path;
use crate::open::DlState;

/// Paths remembered before the tables start again (a program that names millions of files).
const MAX_PATHS: usize = 1 << 20;

/// wasmer-wasix's inode numbers and the guest paths they stand for.
#[derive(Default)]
pub struct Inodes {
    by_ino: HashMap<u64, PathBuf>,
    /// The number the guest sees for a path outside the mapped directories: the first
    /// wasmer-wasix number seen for it.
    by_path: HashMap<PathBuf, u64>,
}

impl Inodes {
    /// Records that wasmer-wasix's `ino` stands for `guest` (absolute, normalised); returns
    /// the number the guest sees for it outside the mapped directories.
    fn learn(&mut self, ino: u64, guest: &Path) -> u64 {
        if self.by_ino.len() >= MAX_PATHS {
            *self = Inodes::default();
        }
        self.by_ino
            .entry(ino)
            .or_insert_with(|| guest.to_path_buf());
        *self.by_path.entry(guest.to_path_buf()).or_insert(ino)
    }

    /// The guest path wasmer-wasix's `ino` stands for, if it was seen.
    pub fn path_of(&self, ino: u64) -> Option<PathBuf> {
        self.by_ino.get(&ino).cloned()
    }
}

/// The inode number and link count the guest sees for `guest` (following a last symbolic
/// link with `follow`), whose wasmer-wasix number is `ino`: the host's for a file in a mapped
/// directory, else one number per path (no link count: wasmer-wasix's stands).
pub fn seen(
    ctx: &FunctionEnvMut<DlState>,
    guest: &Path,
    follow: bool,
    ino: u64,
) -> (u64, Option<u64>) {
    if let Some((ino, nlink)) = on_host(ctx, guest, follow) {
        return (ino, Some(nlink));
    }
    let inodes = &ctx.data().process.inodes;
    (
        inodes
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .learn(ino, guest),
        None,
    )
}

/// The host's inode number and link count of `guest`, if it is in a mapped directory.
pub fn on_host(ctx: &FunctionEnvMut<DlState>, guest: &Path, follow: bool) -> Option<(u64, u64)> {
    use std::os::unix::fs::MetadataExt;
    let (_, host) = host_path(&ctx.data().process.fs.dirs, guest)?;
    let metadata = match follow {
        true => std::fs::metadata(host),
        false => std::fs::symlink_metadata(host),
    };
    metadata.ok().map(|m| (m.ino(), m.nlink()))
}

/// Writes what [`seen`] gives into the filestat at `buf`.
pub fn correct_filestat(ctx: &FunctionEnvMut<DlState>, buf: u32, guest: &Path, follow: bool) {
    let Some(ino) = read_u64(ctx, u64::from(buf) + FILESTAT_INO) else {
        return;
    };
    let (ino, nlink) = seen(ctx, guest, follow, ino);
    write(ctx, u64::from(buf) + FILESTAT_INO, &ino.to_le_bytes());
    if let Some(nlink) = nlink {
        write(ctx, u64::from(buf) + FILESTAT_NLINK, &nlink.to_le_bytes());
    }
}

/// The guest path of what descriptor `fd` refers to, if it was opened by a path (asks
/// wasmer-wasix's `fd_filestat_get`, `filestat`, for its number).
pub fn path_of_fd(
    ctx: &mut FunctionEnvMut<DlState>,
    filestat: &Function,
    fd: i32,
) -> Result<Option<PathBuf>, RuntimeError> {
    let Some(scratch) = scratch(ctx, FILESTAT_SIZE) else {
        return Ok(None);
    };
    if call_errno(ctx, filestat, &i32s(&[fd, scratch as i32]))? != 0 {
        return Ok(None);
    }
    let Some(ino) = read_u64(ctx, u64::from(scratch) + FILESTAT_INO) else {
        return Ok(None);
    };
    let inodes = ctx.data().process.inodes.lock();
    let path = inodes.unwrap_or_else(|p| p.into_inner()).path_of(ino);
    Ok(path)
}

/// Wraps `fd_filestat_get`, to report the numbers of [`seen`], in the WASI namespaces whose
/// filestat has the layout of `wasi_snapshot_preview1`. (`path_open` learns the numbers of
/// what it opens: see [`crate::hostfs`].)
pub fn define(store: &mut impl AsStoreMut, env: &FunctionEnv<DlState>, imports: &mut Imports) {
    for ns in ["wasi_snapshot_preview1", "wasix_32v1"] {
        let Some(Extern::Function(filestat)) = imports.get_export(ns, "fd_filestat_get") else {
            continue;
        };
        let wrapper = move |mut ctx: FunctionEnvMut<DlState>,
                            fd: i32,
                            buf: u32|
              -> Result<i32, RuntimeError> {
            let errno = call_errno(&mut ctx, &filestat, &i32s(&[fd, buf as i32]))?;
            if errno == 0 {
                let ino = read_u64(&ctx, u64::from(buf) + FILESTAT_INO);
                let guest = ino.and_then(|ino| {
                    let inodes = ctx.data().process.inodes.lock();
                    inodes.unwrap_or_else(|p| p.into_inner()).path_of(ino)
                });
                if let Some(guest) = guest {
                    correct_filestat(&ctx, buf, &guest, true);
                }
            }
            Ok(errno)
        };
        imports.define(
            ns,
            "fd_filestat_get",
            Function::new_typed_with_env(store, env, wrapper),
        );
    }
}

/// Learns wasmer-wasix's number of descriptor `fd` (asked of its `fd_filestat_get`,
/// `filestat`), just opened at `guest`.
pub fn learn_opened(
    ctx: &mut FunctionEnvMut<DlState>,
    filestat: &Function,
    fd: i32,
    guest: &Path,
) -> Result<(), RuntimeError> {
    let Some(scratch) = scratch(ctx, FILESTAT_SIZE) else {
        return Ok(());
    };
    if call_errno(ctx, filestat, &i32s(&[fd, scratch as i32]))? != 0 {
        return Ok(());
    }
    if let Some(ino) = read_u64(ctx, u64::from(scratch) + FILESTAT_INO) {
        let mut inodes = ctx
            .data()
            .process
            .inodes
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        inodes.learn(ino, guest);
    }
    Ok(())
}
