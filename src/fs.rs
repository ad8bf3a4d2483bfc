//! The guest's file system: an in-memory root with the host directories given by `--dir`
//! mounted into it, a private host directory at `/tmp`, and the system library directory
//! mounted read-only at `/lib`. Nothing outside these is reachable from the guest.

use std::path::{Component, Path, PathBuf};
use std::sync::Arc;

use virtual_fs::{
    FileOpener, FileSystem, FsError, Metadata, MountFileSystem, OpenOptions, OpenOptionsConfig,
    ReadDir, RootFileSystemBuilder, VirtualFile,
};

use crate::error::Error;
use crate::hostdir::HostDir;

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

/// The guest's `/tmp`: a private host directory for this run, removed when the returned guard
/// is dropped, unless a mapped directory is `/tmp` or inside it (then the user chose).
/// Temporary files live on disk as they do natively, with the host file system's semantics
/// (times, links, sizes), and a program's large temporary files do not fill the memory. Where
/// the host has no writable temporary directory, `/tmp` stays in memory (with a warning).
pub fn private_tmp(dirs: &[MappedDir]) -> Option<(tempfile::TempDir, MappedDir)> {
    let guest = Path::new("/tmp");
    if dirs.iter().any(|d| d.guest.starts_with(guest)) {
        return None;
    }
    let dir = match tempfile::Builder::new().prefix("wasix-dl-tmp-").tempdir() {
        Ok(dir) => dir,
        Err(e) => {
            tracing::warn!(
                "no private /tmp in {} ({e}): the guest's /tmp is in memory",
                std::env::temp_dir().display()
            );
            return None;
        }
    };
    let mapped = MappedDir {
        host: std::fs::canonicalize(dir.path()).unwrap_or_else(|_| dir.path().to_path_buf()),
        guest: guest.to_path_buf(),
    };
    Some((dir, mapped))
}

/// Whether `guest` is one of the character devices the guest's `/dev` has.
pub fn is_device(guest: &Path) -> bool {
    let devices = ["null", "zero", "urandom", "stdin", "stdout", "stderr"];
    (guest.parent() == Some(Path::new("/dev")))
        && (guest.file_name()).is_some_and(|name| devices.iter().any(|d| name == *d))
}

/// Where the guest sees the system libraries: a directory of the default search path.
pub const SYSTEM_LIBS_GUEST: &str = "/lib";

/// The host directory of the guest's system libraries (the toolchain's shared C++ runtime):
/// `WASIX_DL_SYSTEM_LIBS` if set (empty: none), else the directory this checkout's toolchain
/// builds (`<cache>/sysroot-<key>/system-lib`, recorded when wasix-dl was built).
pub fn default_system_libs() -> Option<PathBuf> {
    match std::env::var_os("WASIX_DL_SYSTEM_LIBS") {
        Some(dir) if dir.is_empty() => None,
        Some(dir) => Some(PathBuf::from(dir)),
        None => option_env!("WASIX_DL_DEFAULT_SYSTEM_LIBS").map(PathBuf::from),
    }
}

/// Builds the guest's root file system with every mapped directory mounted, and `system_libs`
/// read-only at [`SYSTEM_LIBS_GUEST`] when it exists and no mapped directory takes that path.
pub fn build(
    dirs: &[MappedDir],
    system_libs: Option<&Path>,
    tokio: &tokio::runtime::Handle,
) -> Result<MountFileSystem, Error> {
    let system_libs = system_libs
        .filter(|host| host.is_dir())
        .filter(|_| !dirs.iter().any(|d| d.guest == Path::new(SYSTEM_LIBS_GUEST)));
    let mut guest_paths: Vec<String> = dirs
        .iter()
        .map(|d| d.guest.to_string_lossy().into_owned())
        .collect();
    if system_libs.is_some() {
        guest_paths.push(SYSTEM_LIBS_GUEST.to_string());
    }
    let refs: Vec<&str> = guest_paths.iter().map(String::as_str).collect();
    let root = RootFileSystemBuilder::default().build_tmp_ext(&refs);
    // wasmer's /dev/tty is a file that discards what is written to it, neither a terminal nor
    // a character device. The guest has no controlling terminal: no /dev/tty (natively,
    // opening it then fails too, and programs fall back to their standard streams).
    let _ = root.remove_file(Path::new("/dev/tty"));
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
        let host_dir = HostDir::new(host_fs, dir.host.clone(), dirs.into());
        mounts
            .mount(
                &dir.guest,
                Arc::new(host_dir) as Arc<dyn FileSystem + Send + Sync>,
            )
            .map_err(|e| Error::Dir {
                spec: format!("{}:{}", dir.host.display(), dir.guest.display()),
                reason: e.to_string(),
            })?;
    }
    if let Some(host) = system_libs {
        let host_fs =
            virtual_fs::host_fs::FileSystem::new(tokio.clone(), host).map_err(|e| Error::Dir {
                spec: host.display().to_string(),
                reason: format!("cannot open the system library directory: {e}"),
            })?;
        mounts
            .mount(
                Path::new(SYSTEM_LIBS_GUEST),
                Arc::new(ReadOnly(Arc::new(HostDir::new(
                    host_fs,
                    host.to_path_buf(),
                    dirs.into(),
                )))) as Arc<dyn FileSystem + Send + Sync>,
            )
            .map_err(|e| Error::Dir {
                spec: format!("{}:{SYSTEM_LIBS_GUEST}", host.display()),
                reason: e.to_string(),
            })?;
    }
    Ok(mounts)
}

/// A file system that refuses every change: the system libraries are shared by every program.
#[derive(Debug)]
struct ReadOnly(Arc<dyn FileSystem + Send + Sync>);

impl FileSystem for ReadOnly {
    fn readlink(&self, path: &Path) -> virtual_fs::Result<PathBuf> {
        self.0.readlink(path)
    }
    fn read_dir(&self, path: &Path) -> virtual_fs::Result<ReadDir> {
        self.0.read_dir(path)
    }
    fn create_dir(&self, _: &Path) -> virtual_fs::Result<()> {
        Err(FsError::PermissionDenied)
    }
    fn remove_dir(&self, _: &Path) -> virtual_fs::Result<()> {
        Err(FsError::PermissionDenied)
    }
    fn rename<'a>(
        &'a self,
        _: &'a Path,
        _: &'a Path,
    ) -> std::pin::Pin<Box<dyn std::future::Future<Output = virtual_fs::Result<()>> + Send + 'a>>
    {
        Box::pin(async { Err(FsError::PermissionDenied) })
    }
    fn metadata(&self, path: &Path) -> virtual_fs::Result<Metadata> {
        self.0.metadata(path)
    }
    fn symlink_metadata(&self, path: &Path) -> virtual_fs::Result<Metadata> {
        self.0.symlink_metadata(path)
    }
    fn remove_file(&self, _: &Path) -> virtual_fs::Result<()> {
        Err(FsError::PermissionDenied)
    }
    fn new_open_options(&self) -> OpenOptions<'_> {
        OpenOptions::new(self)
    }
}

impl FileOpener for ReadOnly {
    fn open(
        &self,
        path: &Path,
        conf: &OpenOptionsConfig,
    ) -> virtual_fs::Result<Box<dyn VirtualFile + Send + Sync + 'static>> {
        if conf.write || conf.append || conf.truncate || conf.create || conf.create_new {
            return Err(FsError::PermissionDenied);
        }
        self.0.new_open_options().options(conf.clone()).open(path)
    }
}
