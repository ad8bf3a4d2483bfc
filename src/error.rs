//! Every way a run can fail before or around the guest, each naming what was wrong and where.

use std::path::PathBuf;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("cannot read {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{module}: not a WebAssembly module: {reason}")]
    NotWasm { module: String, reason: String },
    #[error("{module}: malformed dylink.0 section: {reason}")]
    MalformedDylink { module: String, reason: String },
    #[error("{module}: {reason}")]
    Layout { module: String, reason: String },
    #[error("{module}: cannot bind import {import_module}.{field}: {reason}")]
    Bind {
        module: String,
        import_module: String,
        field: String,
        reason: String,
    },
    /// `requester` says who asked: "needed by X" or "dlopen from X".
    #[error("{library}: cannot open shared library: not found ({requester}); tried: {}", tried.join(", "))]
    LibraryNotFound {
        library: String,
        requester: String,
        tried: Vec<String>,
    },
    #[error("{library}: cannot read shared library: {reason}")]
    LibraryRead { library: String, reason: String },
    #[error("{module}: not a shared library (no dylink.0 section)")]
    NotSharedLibrary { module: String },
    #[error(
        "{module}: cannot dynamically load a program (it exports _start); build it with -shared"
    )]
    NotLoadable { module: String },
    #[error("{module}: {reason}")]
    Unsupported { module: String, reason: String },
    #[error("{module}: failed to compile: {reason}")]
    Compile { module: String, reason: String },
    #[error("{module}: failed to instantiate: {reason}")]
    Instantiate { module: String, reason: String },
    /// A run-time dlopen/dlsym failure, reported to the guest through dlerror().
    #[error("{message}")]
    Dl { message: String },
    #[error("invalid --dir {spec}: {reason}")]
    Dir { spec: String, reason: String },
    #[error("WASI environment: {0}")]
    Wasi(String),
    #[error("the program ran past its deadline ({after:?}) and was ended")]
    DeadlineExceeded { after: std::time::Duration },
    #[error("the program was cancelled and ended")]
    Cancelled,
    /// A thread running wasm did not apply a change within the sync timeout.
    #[error(
        "thread {tid} did not catch up within {waited:?}: it runs wasm without host calls and \
         without epoch checks (raise the limit with --sync-timeout, or keep epoch checks on)"
    )]
    Sync {
        tid: u32,
        waited: std::time::Duration,
    },
    #[error("{module}: {function} trapped: {reason}")]
    Trap {
        module: String,
        function: String,
        reason: String,
    },
}
