//! What the programs run in one process share: see [`Runtime`].

use std::sync::Arc;

use wasmer::Engine;

use crate::cache::Compiler;
use crate::error::Error;

/// The engine, the compiled modules (kept in memory, on top of the disk cache) and the async
/// runtime that programs run on. Cheap to clone, `Send + Sync`: make one per process and run
/// every program on it, so that a program run again compiles and reads nothing.
///
/// ```
/// use wasix_dl::{Program, Runtime};
///
/// # let dir = std::env::temp_dir().join(format!("wasix-dl-doc-rt-{}", std::process::id()));
/// # std::fs::create_dir_all(&dir).unwrap();
/// # let path = dir.join("exit7.wasm");
/// # std::fs::write(&path, wasmer::wat2wasm(br#"(module
/// #   (import "wasi_snapshot_preview1" "proc_exit" (func $exit (param i32)))
/// #   (memory (export "memory") 1)
/// #   (func (export "_start") (call $exit (i32.const 7))))"#).unwrap()).unwrap();
/// let runtime = Runtime::new().unwrap();
/// let program = Program::new(&path); // a WASI command that exits with status 7
/// assert_eq!(program.run_on(&runtime).unwrap(), 7);
/// assert_eq!(program.run_on(&runtime).unwrap(), 7); // compiled once
/// ```
#[derive(Clone)]
pub struct Runtime {
    inner: Arc<Inner>,
}

struct Inner {
    engine: Engine,
    compiler: Compiler,
    tokio: tokio::runtime::Handle,
    /// The tokio runtime, when this made its own.
    owned: Option<tokio::runtime::Runtime>,
}

impl Drop for Inner {
    fn drop(&mut self) {
        // Without waiting: the last clone may go in async code, where blocking panics.
        if let Some(tokio) = self.owned.take() {
            tokio.shutdown_background();
        }
    }
}

impl Runtime {
    /// A runtime with its own engine (Cranelift, with the WebAssembly proposals the toolchain's
    /// modules use: threads, bulk memory, exceptions), its own multi-threaded tokio runtime
    /// and the default module cache (see [`RuntimeBuilder::cache_dir`]).
    pub fn new() -> Result<Runtime, Error> {
        Runtime::builder().build()
    }

    /// A runtime on the embedder's tokio runtime (`handle`: wasmer-wasix's tasks run there,
    /// and [`crate::Program::run_async`] runs programs on its blocking threads) and engine,
    /// which must have the proposals of [`Runtime::new`]'s (`None`: that engine).
    ///
    /// ```
    /// use wasix_dl::Runtime;
    ///
    /// let tokio = tokio::runtime::Runtime::new().unwrap();
    /// let runtime = Runtime::on(tokio.handle().clone(), None);
    /// # drop(runtime);
    /// ```
    pub fn on(handle: tokio::runtime::Handle, engine: Option<Engine>) -> Runtime {
        let builder = Runtime::builder().tokio(handle);
        let builder = match engine {
            Some(engine) => builder.engine(engine),
            None => builder,
        };
        builder
            .build()
            .expect("a runtime on a given tokio runtime starts nothing")
    }

    /// A runtime made to measure.
    ///
    /// ```
    /// use wasix_dl::Runtime;
    ///
    /// let runtime = Runtime::builder().cache_dir(None).build().unwrap(); // compiles in memory only
    /// # drop(runtime);
    /// ```
    pub fn builder() -> RuntimeBuilder {
        RuntimeBuilder {
            engine: None,
            tokio: None,
            cache_dir: crate::cache::default_dir(),
        }
    }

    /// The engine every program of this runtime is compiled for.
    pub fn engine(&self) -> &Engine {
        &self.inner.engine
    }

    /// Compiles through the module cache (a run sets its own epoch-check choice on a copy).
    pub(crate) fn compiler(&self) -> &Compiler {
        &self.inner.compiler
    }

    pub(crate) fn tokio(&self) -> &tokio::runtime::Handle {
        &self.inner.tokio
    }
}

/// Builds a [`Runtime`]: each part the embedder does not give is made as [`Runtime::new`]
/// makes it.
pub struct RuntimeBuilder {
    engine: Option<Engine>,
    tokio: Option<tokio::runtime::Handle>,
    cache_dir: Option<std::path::PathBuf>,
}

impl RuntimeBuilder {
    /// The engine to compile for (it must have the proposals of [`Runtime::new`]'s).
    pub fn engine(mut self, engine: Engine) -> Self {
        self.engine = Some(engine);
        self
    }

    /// The embedder's tokio runtime, instead of one of the runtime's own.
    pub fn tokio(mut self, handle: tokio::runtime::Handle) -> Self {
        self.tokio = Some(handle);
        self
    }

    /// Where compiled modules are kept on disk (`None`: in memory only). Default:
    /// `$WASIX_DL_CACHE/modules`, `~/.cache/wasix-dl/modules` without it, none with
    /// `WASIX_DL_NO_CACHE=1`.
    pub fn cache_dir(mut self, dir: Option<std::path::PathBuf>) -> Self {
        self.cache_dir = dir;
        self
    }

    pub fn build(self) -> Result<Runtime, Error> {
        let (tokio, owned) = match self.tokio {
            Some(handle) => (handle, None),
            None => {
                let tokio = tokio::runtime::Builder::new_multi_thread()
                    .enable_all()
                    .build()
                    .map_err(|e| Error::Wasi(format!("cannot start the async runtime: {e}")))?;
                (tokio.handle().clone(), Some(tokio))
            }
        };
        let engine = self.engine.unwrap_or_else(crate::run::new_engine);
        Ok(Runtime {
            inner: Arc::new(Inner {
                compiler: Compiler::with_dir(engine.clone(), self.cache_dir),
                engine,
                tokio,
                owned,
            }),
        })
    }
}
