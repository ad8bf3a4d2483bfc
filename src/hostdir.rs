//! A mapped host directory as the guest's file system sees it: wasmer's host file system
//! (virtual-fs `host_fs`), with what it gets wrong done here instead — symbolic links read as
//! guest paths, and regular files read and written in place.

use std::path::{Component, Path, PathBuf};
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use tokio::io::{AsyncRead, AsyncSeek, AsyncWrite, ReadBuf};
use virtual_fs::{
    FileOpener, FileSystem, FsError, Metadata, OpenOptions, OpenOptionsConfig, ReadDir, VirtualFile,
};

use crate::fs::MappedDir;

/// A mapped host directory. Its symbolic links hold host paths, which the guest reads as guest
/// paths: wasmer's host file system gives an absolute target relative to the mapped directory
/// instead, which means nothing (or something else) in the guest unless that directory is
/// mounted at `/`, and wasmer resolves paths through links with what `readlink` says.
#[derive(Debug)]
pub struct HostDir {
    fs: virtual_fs::host_fs::FileSystem,
    /// The mapped directory's host path (canonical).
    root: PathBuf,
    /// Every mapped directory: a link may point into another one.
    dirs: Arc<[MappedDir]>,
}

impl HostDir {
    /// The host directory `root` (canonical) that `fs` serves; `dirs`: every mapped directory.
    pub fn new(fs: virtual_fs::host_fs::FileSystem, root: PathBuf, dirs: Arc<[MappedDir]>) -> Self {
        HostDir { fs, root, dirs }
    }

    /// The host path of `path` (relative to the mapped directory); `..` is refused.
    fn host(&self, path: &Path) -> virtual_fs::Result<PathBuf> {
        let mut host = self.root.clone();
        for c in path.components() {
            match c {
                Component::Normal(part) => host.push(part),
                Component::RootDir | Component::CurDir => {}
                Component::ParentDir | Component::Prefix(_) => return Err(FsError::InvalidInput),
            }
        }
        Ok(host)
    }

    /// The guest path of an absolute host path inside a mapped directory; others unchanged.
    fn guest_path(&self, host: PathBuf) -> PathBuf {
        let inside = (self.dirs.iter())
            .filter(|d| host.starts_with(&d.host))
            .max_by_key(|d| d.host.components().count());
        match inside {
            Some(d) => d
                .guest
                .join(host.strip_prefix(&d.host).unwrap_or(Path::new(""))),
            None => host,
        }
    }
}

impl FileSystem for HostDir {
    fn readlink(&self, path: &Path) -> virtual_fs::Result<PathBuf> {
        // wasmer's answer first: it checks the path and maps errors; relative targets are exact.
        let target = self.fs.readlink(path)?;
        if target.is_relative() {
            return Ok(target);
        }
        Ok(self.guest_path(std::fs::read_link(self.host(path)?)?))
    }

    fn read_dir(&self, path: &Path) -> virtual_fs::Result<ReadDir> {
        self.fs.read_dir(path)
    }
    fn create_dir(&self, path: &Path) -> virtual_fs::Result<()> {
        self.fs.create_dir(path)
    }
    fn remove_dir(&self, path: &Path) -> virtual_fs::Result<()> {
        self.fs.remove_dir(path)
    }
    fn rename<'a>(
        &'a self,
        from: &'a Path,
        to: &'a Path,
    ) -> std::pin::Pin<Box<dyn std::future::Future<Output = virtual_fs::Result<()>> + Send + 'a>>
    {
        self.fs.rename(from, to)
    }
    fn metadata(&self, path: &Path) -> virtual_fs::Result<Metadata> {
        self.fs.metadata(path)
    }
    fn symlink_metadata(&self, path: &Path) -> virtual_fs::Result<Metadata> {
        self.fs.symlink_metadata(path)
    }
    fn remove_file(&self, path: &Path) -> virtual_fs::Result<()> {
        self.fs.remove_file(path)
    }
    fn new_open_options(&self) -> OpenOptions<'_> {
        OpenOptions::new(self)
    }
}

impl FileOpener for HostDir {
    fn open(
        &self,
        path: &Path,
        conf: &OpenOptionsConfig,
    ) -> virtual_fs::Result<Box<dyn VirtualFile + Send + Sync + 'static>> {
        let host = self.host(path)?;
        // Devices, FIFOs and sockets keep wasmer's file, whose reads and writes, which may
        // block, run in the background.
        if std::fs::metadata(&host).is_ok_and(|m| !m.is_file()) {
            return self.fs.new_open_options().options(conf.clone()).open(path);
        }
        // Rust refuses truncate with append; truncating first makes the append moot anyway.
        let file = std::fs::OpenOptions::new()
            .read(conf.read)
            .write(conf.write)
            .append(conf.append && !conf.truncate)
            .truncate(conf.truncate)
            .create(conf.create)
            .create_new(conf.create_new)
            .open(&host)?;
        Ok(Box::new(HostFile {
            file,
            host,
            sought: None,
        }))
    }
}

/// A regular file opened in a mapped directory, read and written in place, as natively.
/// (virtual-fs's host file sends every read and write to tokio's blocking pool and back, about
/// a hundred microseconds a call, completes writes in the background while it answers size,
/// times and truncation from the host file directly — `fstat` right after a `write` saw the
/// old size, a `ftruncate` right after one was undone when it landed — and takes the
/// nanoseconds of `futimens` as seconds.)
#[derive(Debug)]
struct HostFile {
    file: std::fs::File,
    /// The host path it was opened under (`unlink` of an open file removes that name).
    host: PathBuf,
    /// The result of the seek `start_seek` made, for `poll_complete`.
    sought: Option<std::io::Result<u64>>,
}

/// Nanoseconds since the epoch of a file time (0 if the host has none).
fn nanos(time: std::io::Result<std::time::SystemTime>) -> u64 {
    time.ok()
        .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
        .map_or(0, |d| d.as_nanos() as u64)
}

impl VirtualFile for HostFile {
    fn last_accessed(&self) -> u64 {
        self.file.metadata().map_or(0, |m| nanos(m.accessed()))
    }
    fn last_modified(&self) -> u64 {
        self.file.metadata().map_or(0, |m| nanos(m.modified()))
    }
    fn created_time(&self) -> u64 {
        self.file.metadata().map_or(0, |m| nanos(m.created()))
    }
    fn set_times(&mut self, atime: Option<u64>, mtime: Option<u64>) -> virtual_fs::Result<()> {
        use std::os::fd::AsRawFd;
        let time = |t: Option<u64>| match t {
            Some(ns) => libc::timespec {
                tv_sec: (ns / 1_000_000_000) as libc::time_t,
                tv_nsec: (ns % 1_000_000_000) as libc::c_long,
            },
            None => libc::timespec {
                tv_sec: 0,
                tv_nsec: libc::UTIME_OMIT,
            },
        };
        let times = [time(atime), time(mtime)];
        // SAFETY: an open descriptor and two timespecs, as futimens(2) takes them.
        match unsafe { libc::futimens(self.file.as_raw_fd(), times.as_ptr()) } {
            0 => Ok(()),
            _ => Err(std::io::Error::last_os_error().into()),
        }
    }
    fn size(&self) -> u64 {
        self.file.metadata().map_or(0, |m| m.len())
    }
    fn set_len(&mut self, new_size: u64) -> virtual_fs::Result<()> {
        Ok(self.file.set_len(new_size)?)
    }
    fn unlink(&mut self) -> virtual_fs::Result<()> {
        Ok(std::fs::remove_file(&self.host)?)
    }
    fn poll_read_ready(
        mut self: Pin<&mut Self>,
        _: &mut Context<'_>,
    ) -> Poll<std::io::Result<usize>> {
        use std::io::Seek;
        let at = self.file.stream_position();
        Poll::Ready(at.map(|at| self.size().saturating_sub(at) as usize))
    }
    fn poll_write_ready(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<std::io::Result<usize>> {
        Poll::Ready(Ok(8192))
    }
}

impl AsyncRead for HostFile {
    fn poll_read(
        mut self: Pin<&mut Self>,
        _: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        use std::io::Read;
        let read = self.file.read(buf.initialize_unfilled());
        Poll::Ready(read.map(|n| buf.advance(n)))
    }
}

impl AsyncWrite for HostFile {
    fn poll_write(
        mut self: Pin<&mut Self>,
        _: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        use std::io::Write;
        Poll::Ready(self.file.write(buf))
    }
    fn poll_flush(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Poll::Ready(Ok(()))
    }
    fn poll_shutdown(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Poll::Ready(Ok(()))
    }
}

impl AsyncSeek for HostFile {
    fn start_seek(mut self: Pin<&mut Self>, position: std::io::SeekFrom) -> std::io::Result<()> {
        use std::io::Seek;
        self.sought = Some(self.file.seek(position));
        Ok(())
    }
    fn poll_complete(mut self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<std::io::Result<u64>> {
        use std::io::Seek;
        let sought = self.sought.take();
        Poll::Ready(sought.unwrap_or_else(|| self.file.stream_position()))
    }
}
