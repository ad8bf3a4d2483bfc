//! `path_symlink` that creates the link. wasmer-wasix's host file system cannot create
//! symbolic links: it records one in its own inode table, so `symlink()` returns 0 while
//! nothing exists on disk (other processes, and this one's next run, see nothing). Ours
//! creates a link in a mapped directory on the host, when both the link and what it points to
//! stay inside the mapped directories (a link to anywhere else would let the guest out of its
//! sandbox: the host file system follows links); anywhere else it fails with `EPERM`. In the
//! guest's in-memory root (outside every mapped directory) wasmer-wasix's own links remain.

use std::path::{Path, PathBuf};

use wasmer::{
    AsStoreMut, Extern, Function, FunctionEnv, FunctionEnvMut, Imports, RuntimeError, Value,
};
use wasmer_wasix::wasmer_wasix_types::wasi::Errno;

use crate::fs::MappedDir;
use crate::open::DlState;
use crate::search;

/// Wraps `path_symlink` of the WASI namespaces in `imports`.
pub fn define(store: &mut impl AsStoreMut, env: &FunctionEnv<DlState>, imports: &mut Imports) {
    for ns in ["wasi_unstable", "wasi_snapshot_preview1", "wasix_32v1"] {
        let (
            Some(Extern::Function(runtime)),
            Some(Extern::Function(prestat)),
            Some(Extern::Function(prestat_name)),
        ) = (
            imports.get_export(ns, "path_symlink"),
            imports.get_export(ns, "fd_prestat_get"),
            imports.get_export(ns, "fd_prestat_dir_name"),
        )
        else {
            continue;
        };
        let wrapper = move |mut ctx: FunctionEnvMut<DlState>,
                            old_path: u32,
                            old_len: u32,
                            fd: i32,
                            new_path: u32,
                            new_len: u32|
              -> Result<i32, RuntimeError> {
            let args = [old_path, old_len, fd as u32, new_path, new_len];
            let strings = (read(&ctx, old_path, old_len), read(&ctx, new_path, new_len));
            let dir = preopen_name(&mut ctx, (&prestat, &prestat_name), fd)?;
            let (Some(target), Some(link), Some(dir)) = (strings.0, strings.1, dir) else {
                return call(&mut ctx, &runtime, args);
            };
            let dirs = ctx.data().process.dirs.clone();
            let link = search::absolute(Path::new(&dir), Path::new(&link));
            match host_link(&dirs, &link, &target) {
                Placement::InMemory => call(&mut ctx, &runtime, args),
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
fn host_path(dirs: &[MappedDir], guest: &Path) -> Option<(usize, PathBuf)> {
    let (index, dir) = (dirs.iter().enumerate())
        .filter(|(_, d)| guest.starts_with(&d.guest))
        .max_by_key(|(_, d)| d.guest.components().count())?;
    let rest = guest.strip_prefix(&dir.guest).ok()?;
    Some((index, dir.host.join(rest)))
}

/// The guest path of preopened directory `fd` (wasi-libc resolves every path against one).
fn preopen_name(
    ctx: &mut FunctionEnvMut<DlState>,
    (prestat, prestat_name): (&Function, &Function),
    fd: i32,
) -> Result<Option<String>, RuntimeError> {
    // Scratch space below the thread's stack pointer: free during a host call.
    let Some(loaded) = ctx.data().loaded.as_ref() else {
        return Ok(None);
    };
    let stack_pointer = loaded.group.stack_pointer.clone();
    let Some(scratch) = (stack_pointer.get(ctx).i32()).and_then(|sp| (sp as u32).checked_sub(4096))
    else {
        return Ok(None);
    };
    let ok = |result: Box<[Value]>| result.first().and_then(Value::i32) == Some(0);
    // prestat: a tag byte, then the name's length (u32 at 4).
    if !ok(prestat.call(ctx, &[Value::I32(fd), Value::I32(scratch as i32)])?) {
        return Ok(None);
    }
    let mut len = [0u8; 4];
    if loaded_view(ctx)?
        .read(u64::from(scratch) + 4, &mut len)
        .is_err()
    {
        return Ok(None);
    }
    let len = u32::from_le_bytes(len).min(4000);
    let args = [
        Value::I32(fd),
        Value::I32(scratch as i32),
        Value::I32(len as i32),
    ];
    if !ok(prestat_name.call(ctx, &args)?) {
        return Ok(None);
    }
    let mut bytes = vec![0u8; len as usize];
    if loaded_view(ctx)?
        .read(u64::from(scratch), &mut bytes)
        .is_err()
    {
        return Ok(None);
    }
    let end = bytes.iter().position(|&b| b == 0).unwrap_or(bytes.len());
    Ok(String::from_utf8(bytes[..end].to_vec()).ok())
}

fn loaded_view<'a>(
    ctx: &'a FunctionEnvMut<DlState>,
) -> Result<wasmer::MemoryView<'a>, RuntimeError> {
    let loaded = ctx
        .data()
        .loaded
        .as_ref()
        .ok_or_else(|| RuntimeError::new("no program"))?;
    Ok(loaded.group.memory.view(ctx))
}

fn read(ctx: &FunctionEnvMut<DlState>, ptr: u32, len: u32) -> Option<String> {
    let view = loaded_view(ctx).ok()?;
    let mut bytes = vec![0u8; len as usize];
    view.read(u64::from(ptr), &mut bytes).ok()?;
    String::from_utf8(bytes).ok()
}

fn call(
    ctx: &mut FunctionEnvMut<DlState>,
    f: &Function,
    args: [u32; 5],
) -> Result<i32, RuntimeError> {
    let args = args.map(|a| Value::I32(a as i32));
    Ok(f.call(ctx, &args)?
        .first()
        .and_then(Value::i32)
        .unwrap_or(0))
}

fn errno_of(e: &std::io::Error) -> Errno {
    match e.kind() {
        std::io::ErrorKind::AlreadyExists => Errno::Exist,
        std::io::ErrorKind::NotFound => Errno::Noent,
        std::io::ErrorKind::PermissionDenied => Errno::Access,
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
