//! The guest's file system: an in-memory root with the host directories given by `--dir`
//! mounted into it. Nothing outside a mapped directory is reachable from the guest.

use std::path::{Component, Path, PathBuf};
use std::sync::Arc;

use virtual_fs::{FileSystem, MountFileSystem, RootFileSystemBuilder};

use crate::error::Error;

/// A host directory visible to the guest at `guest`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MappedDir {
    pub host: PathBuf,
    pub guest: PathBuf,
}

impl MappedDir {
    /// Parses `HOST[:GUEST]`. Without GUEST the directory appears at its absolute host path, so
    /// paths a program prints are the same inside and outside.
    pub fn parse(spec: &str) -> Result<Self, Error> {
        let err = |reason: &str| Error::Dir {
            spec: spec.to_string(),
            reason: reason.to_string(),
        };
        let (host, guest) = match spec.split_once(':') {
            Some((h, g)) => (h, Some(g)),
            None => (spec, None),
        };
        if host.is_empty() {
            return Err(err("the host directory is empty"));
        }
        let host = std::fs::canonicalize(host)
            .map_err(|e| err(&format!("cannot open the host directory: {e}")))?;
        if !host.is_dir() {
            return Err(err("not a directory"));
        }
        let guest = match guest {
            Some(g) if g.starts_with('/') => normalize_guest(Path::new(g))
                .ok_or_else(|| err("the guest path must not contain '..'"))?,
            Some(_) => return Err(err("the guest path must be absolute")),
            None => host.clone(),
        };
        Ok(MappedDir { host, guest })
    }
}

fn normalize_guest(path: &Path) -> Option<PathBuf> {
    let mut out = PathBuf::from("/");
    for c in path.components() {
        match c {
            Component::Normal(part) => out.push(part),
            Component::RootDir | Component::CurDir => {}
            Component::ParentDir | Component::Prefix(_) => return None,
        }
    }
    Some(out)
}

/// Builds the guest's root file system with every mapped directory mounted.
pub fn build(dirs: &[MappedDir], tokio: &tokio::runtime::Handle) -> Result<MountFileSystem, Error> {
    let guest_paths: Vec<String> = dirs
        .iter()
        .map(|d| d.guest.to_string_lossy().into_owned())
        .collect();
    let refs: Vec<&str> = guest_paths.iter().map(String::as_str).collect();
    let root = RootFileSystemBuilder::default().build_tmp_ext(&refs);
    let mounts = MountFileSystem::new();
    mounts
        .mount(
            Path::new("/"),
            Arc::new(root) as Arc<dyn FileSystem + Send + Sync>,
        )
        .map_err(|e| Error::Wasi(format!("cannot mount the root file system: {e}")))?;
    for (i, dir) in dirs.iter().enumerate() {
        // The same mapping twice (e.g. `--dir "$PWD"` when the cwd is already mapped) is one.
        if dirs[..i].contains(dir) {
            continue;
        }
        if let Some(other) = dirs[..i].iter().find(|d| d.guest == dir.guest) {
            return Err(Error::Dir {
                spec: format!("{}:{}", dir.host.display(), dir.guest.display()),
                reason: format!(
                    "{} is already mapped to {}",
                    dir.guest.display(),
                    other.host.display()
                ),
            });
        }
        if dir.guest == Path::new("/") {
            return Err(Error::Dir {
                spec: dir.host.display().to_string(),
                reason: "mapping a directory over the guest's root is not supported".into(),
            });
        }
        let host_fs =
            virtual_fs::host_fs::FileSystem::new(tokio.clone(), &dir.host).map_err(|e| {
                Error::Dir {
                    spec: dir.host.display().to_string(),
                    reason: e.to_string(),
                }
            })?;
        mounts
            .mount(
                &dir.guest,
                Arc::new(host_fs) as Arc<dyn FileSystem + Send + Sync>,
            )
            .map_err(|e| Error::Dir {
                spec: format!("{}:{}", dir.host.display(), dir.guest.display()),
                reason: e.to_string(),
            })?;
    }
    Ok(mounts)
}
