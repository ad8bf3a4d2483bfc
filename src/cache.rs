//! Compiling modules, with an on-disk cache of compiled artifacts keyed by the module's content
//! hash and the engine's identity (DESIGN decision 11), so a second start compiles nothing.
//! A long compile (CPython is 8–22 MB of wasm) shows a spinner on a terminal.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use sha2::{Digest, Sha256};
use wasmer::{Engine, Module};

use crate::error::Error;
use crate::load::LoadedModule;

/// Size the cache may reach before the least recently used artifacts are removed.
const DEFAULT_MAX_BYTES: u64 = 1 << 30;

/// A library file as this process saw it: guest path, host path (when in a mapped
/// directory: programs that share a [`crate::Runtime`] may map different files at one guest
/// path), size, modification time (ns).
pub type FileIdentity = (PathBuf, Option<PathBuf>, u64, u64);

/// Compiles modules for one engine, through the cache when there is one.
#[derive(Clone)]
pub struct Compiler {
    pub engine: Engine,
    /// What an artifact must have been compiled by to be loaded: the engine, its target and
    /// features, the wasmer version and ours (an artifact of another is never deserialized).
    identity: String,
    /// Libraries opened before in this process, parsed and compiled, by file identity and
    /// whether they have epoch checks: a second `dlopen` of the same file reads, hashes and
    /// deserializes nothing. They stay for the life of the process (a compiled module is
    /// shared code, not per-instance state).
    opened: Arc<Mutex<HashMap<(FileIdentity, bool), LoadedModule>>>,
    /// Every module compiled or deserialized in this process, by cache key: a program run
    /// again on the same [`crate::Runtime`] reads no artifact from disk.
    compiled: Arc<Mutex<HashMap<String, Module>>>,
    /// Directory of cached artifacts; `None` disables the cache.
    dir: Option<PathBuf>,
    max_bytes: u64,
    /// Whether modules in link form get the sync protocol's epoch checks (see
    /// [`crate::rewrite`]).
    pub epoch_checks: bool,
}

impl Compiler {
    /// A compiler whose cache of compiled artifacts is `dir` (`None`: no disk cache; see
    /// [`default_dir`]). It holds at most `$WASIX_DL_CACHE_MAX_BYTES` (default 1 GiB): storing
    /// an artifact removes the least recently used ones beyond that.
    pub fn with_dir(engine: Engine, dir: Option<PathBuf>) -> Self {
        let max_bytes = std::env::var("WASIX_DL_CACHE_MAX_BYTES")
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(DEFAULT_MAX_BYTES);
        let identity = format!(
            "{} {:?} wasmer {} wasix-dl {}",
            engine.deterministic_id(),
            wasmer::sys::NativeEngineExt::target(&engine),
            env!("WASIX_DL_WASMER_VERSION"),
            env!("CARGO_PKG_VERSION")
        );
        Compiler {
            engine,
            identity,
            opened: Default::default(),
            compiled: Default::default(),
            dir,
            max_bytes,
            epoch_checks: true,
        }
    }

    /// A fresh copy of the library compiled earlier from the file `identity`.
    pub fn opened(&self, identity: &FileIdentity) -> Option<LoadedModule> {
        let opened = self.opened.lock().unwrap_or_else(|p| p.into_inner());
        let key = (identity.clone(), self.epoch_checks);
        opened.get(&key).map(LoadedModule::fresh_copy)
    }

    /// Keeps `loaded` (just parsed and compiled from the file `identity`) for later opens.
    pub fn remember(&self, identity: FileIdentity, loaded: &LoadedModule) {
        let mut opened = self.opened.lock().unwrap_or_else(|p| p.into_inner());
        opened.insert((identity, self.epoch_checks), loaded.fresh_copy());
    }

    fn key(&self, parts: &[&[u8]]) -> String {
        let mut h = Sha256::new();
        h.update(self.identity.as_bytes());
        for part in parts {
            h.update((part.len() as u64).to_le_bytes());
            h.update(part);
        }
        format!("{:x}", h.finalize())
    }

    /// The compiled module for `bytes`; `name` is for messages.
    pub fn compile(&self, name: &str, bytes: &[u8]) -> Result<Module, Error> {
        self.compile_derived(name, &[bytes], || Ok(bytes.to_vec()))
    }

    /// The compiled module for the bytes `make` produces, cached under `identity` (what the
    /// bytes are derived from), so that a cache hit skips producing them at all.
    pub fn compile_derived(
        &self,
        name: &str,
        identity: &[&[u8]],
        make: impl FnOnce() -> Result<Vec<u8>, Error>,
    ) -> Result<Module, Error> {
        let key = self.key(identity);
        let compiled = self.compiled.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(module) = compiled.get(&key) {
            return Ok(module.clone());
        }
        drop(compiled);
        let module = self.compile_or_load(name, &key, make)?;
        let mut compiled = self.compiled.lock().unwrap_or_else(|p| p.into_inner());
        compiled.insert(key, module.clone());
        Ok(module)
    }

    /// The module cached on disk under `key`, else compiled from what `make` gives.
    fn compile_or_load(
        &self,
        name: &str,
        key: &str,
        make: impl FnOnce() -> Result<Vec<u8>, Error>,
    ) -> Result<Module, Error> {
        let cached = self.dir.as_ref().map(|d| d.join(format!("{key}.bin")));
        if let Some(path) = &cached {
            // SAFETY: the file was written by `Module::serialize` of an engine with the same
            // deterministic id (part of the key) and is renamed into place only when complete.
            // A file that fails to load is ignored and rewritten.
            if let Ok(module) = unsafe { Module::deserialize_from_file(&self.engine, path) } {
                tracing::debug!(target: "wasix_dl::libs", "{name}: compiled module loaded from the cache");
                mark_used(path);
                return Ok(module);
            }
        }
        let bytes = make()?;
        let module = with_spinner(name, bytes.len(), || Module::new(&self.engine, &bytes))
            .map_err(|e| Error::Compile {
                module: name.to_string(),
                reason: e.to_string(),
            })?;
        if let Some(path) = &cached {
            store(&module, path);
            evict(path, self.max_bytes);
        }
        Ok(module)
    }
}

/// `$WASIX_DL_CACHE/modules` (default `~/.cache/wasix-dl/modules`), `None` with
/// `WASIX_DL_NO_CACHE=1`.
pub fn default_dir() -> Option<PathBuf> {
    if std::env::var_os("WASIX_DL_NO_CACHE").is_some_and(|v| v != "0") {
        return None;
    }
    let base = std::env::var_os("WASIX_DL_CACHE")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| Path::new(&h).join(".cache/wasix-dl")));
    base.map(|b| b.join("modules"))
}

/// Writes the artifact atomically (temporary file, then rename). Failing to cache is not an
/// error: the next run compiles again.
fn store(module: &Module, path: &Path) {
    let Some(dir) = path.parent() else { return };
    let tmp = dir.join(format!(".{}.{}.tmp", std::process::id(), rand_suffix()));
    let result = std::fs::create_dir_all(dir)
        .map_err(|e| e.to_string())
        .and_then(|_| module.serialize_to_file(&tmp).map_err(|e| e.to_string()))
        .and_then(|_| std::fs::rename(&tmp, path).map_err(|e| e.to_string()));
    if let Err(e) = result {
        let _ = std::fs::remove_file(&tmp);
        tracing::debug!(target: "wasix_dl::libs", path = %path.display(), error = %e, "cannot cache a compiled module");
    }
}

/// An artifact's modification time is when it was last used: eviction goes by it (access
/// times are unreliable on `noatime`/`relatime` mounts).
fn mark_used(path: &Path) {
    if let Ok(file) = std::fs::File::options().append(true).open(path) {
        let _ = file.set_modified(std::time::SystemTime::now());
    }
}

/// Removes the least recently used artifacts until the cache holds at most `max_bytes`,
/// never `keep` (the one just stored). Another process may still be loading a removed file:
/// it then compiles the module again.
fn evict(keep: &Path, max_bytes: u64) {
    let Some(Ok(entries)) = keep.parent().map(std::fs::read_dir) else {
        return;
    };
    let mut artifacts: Vec<_> = entries
        .filter_map(|e| {
            let path = e.ok()?.path();
            let meta = std::fs::metadata(&path).ok()?;
            let used = meta.modified().ok()?;
            (path.extension()? == "bin").then_some((used, meta.len(), path))
        })
        .collect();
    let mut total: u64 = artifacts.iter().map(|(_, len, _)| len).sum();
    artifacts.sort();
    for (_, len, path) in artifacts {
        if total <= max_bytes {
            break;
        }
        if path != keep && std::fs::remove_file(&path).is_ok() {
            tracing::debug!(target: "wasix_dl::libs", path = %path.display(), "evicted from the module cache");
            total -= len;
        }
    }
}

fn rand_suffix() -> u64 {
    use std::time::{SystemTime, UNIX_EPOCH};
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(0)
}

/// Runs `compile`; if it takes more than a second, shows a spinner on stderr (a terminal only).
fn with_spinner<T>(name: &str, size: usize, compile: impl FnOnce() -> T) -> T {
    let file = Path::new(name)
        .file_name()
        .map(|f| f.to_string_lossy().into_owned());
    let message = format!(
        "compiling {} ({:.1} MB)",
        file.unwrap_or_default(),
        size as f64 / 1e6
    );
    let (done, finished) = std::sync::mpsc::channel::<()>();
    std::thread::scope(|s| {
        s.spawn(move || {
            if finished.recv_timeout(Duration::from_secs(1)).is_ok() {
                return;
            }
            let bar = indicatif::ProgressBar::new_spinner();
            bar.set_message(message);
            bar.enable_steady_tick(Duration::from_millis(120));
            let _ = finished.recv();
            bar.finish_and_clear();
        });
        let result = compile();
        let _ = done.send(());
        result
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_key_covers_the_wasmer_version_the_target_and_the_engine() {
        let mut compiler = Compiler::with_dir(crate::run::new_engine(), None);
        assert!(
            compiler.identity.contains(env!("WASIX_DL_WASMER_VERSION"))
                && compiler.identity.contains("cranelift")
                && compiler
                    .identity
                    .to_lowercase()
                    .contains(std::env::consts::ARCH),
            "{}",
            compiler.identity
        );
        let key = compiler.key(&[b"module"]);
        assert_eq!(key, compiler.key(&[b"module"]));
        compiler.identity.push_str(" +another-feature");
        assert_ne!(
            key,
            compiler.key(&[b"module"]),
            "a changed engine must recompile"
        );
    }
}
