//! Ending a run from outside: a wall-clock deadline, or cancellation by the embedder. The
//! guest is interrupted in every thread: threads blocked in a WASI call are woken by a
//! `SIGKILL` to wasmer-wasix's process (its blocking calls end on a signal); threads running
//! wasm meet an epoch check (the sync protocol's, see [`crate::sync`]) whose epoch no longer
//! matches, and their catch-up refuses to go on, which traps. A plain WASI module has no
//! epoch checks: it ends at its next WASI call.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use wasmer_wasix::WasiProcess;

use crate::error::Error;

/// Why a run was ended from outside.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reason {
    Deadline(Duration),
    Cancelled,
}

impl Reason {
    pub fn error(self) -> Error {
        match self {
            Reason::Deadline(after) => Error::DeadlineExceeded { after },
            Reason::Cancelled => Error::Cancelled,
        }
    }
}

/// A run's interruption: asked for by the embedder (cancellation) or the deadline, carried
/// out once the program's parts are known ([`Interrupt::arm`]).
#[derive(Default)]
pub struct Interrupt {
    reason: Mutex<Option<Reason>>,
    /// Wakes the run's watcher (see [`watch`]).
    cancel: tokio::sync::Notify,
    /// What to stop, once the run has started.
    target: Mutex<Option<Target>>,
}

/// What an interruption stops.
struct Target {
    process: WasiProcess,
    words: Option<crate::sync::RuntimeWords>,
}

impl Interrupt {
    /// Why the run was interrupted, if it was.
    pub fn reason(&self) -> Option<Reason> {
        *self.reason.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Asks for the run to end (from any thread; it ends soon after, see the module).
    pub fn cancel(&self) {
        self.cancel.notify_one();
    }

    /// Records what to stop: the program's wasmer-wasix process and, for a program with epoch
    /// checks, the sync protocol's words.
    pub fn arm(&self, process: WasiProcess, words: Option<crate::sync::RuntimeWords>) {
        *self.target.lock().unwrap_or_else(|p| p.into_inner()) = Some(Target { process, words });
        if let Some(reason) = self.reason() {
            self.stop(reason);
        }
    }

    fn stop(&self, reason: Reason) {
        self.reason
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get_or_insert(reason);
        let target = self.target.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(target) = target.as_ref() {
            if let Some(words) = &target.words {
                words.interrupt();
            }
            target
                .process
                .signal_process(wasmer_wasix::wasmer_wasix_types::wasi::Signal::Sigkill);
        }
    }
}

/// Watches a run on `tokio`: stops it at `deadline` or when it is cancelled. The watcher ends
/// with the run (the caller aborts it).
pub fn watch(
    tokio: &tokio::runtime::Handle,
    interrupt: Arc<Interrupt>,
    deadline: Option<Duration>,
) -> tokio::task::JoinHandle<()> {
    tokio.spawn(async move {
        let cancelled = interrupt.cancel.notified();
        let reason = match deadline {
            Some(after) => match tokio::time::timeout(after, cancelled).await {
                Ok(()) => Reason::Cancelled,
                Err(_) => Reason::Deadline(after),
            },
            None => {
                cancelled.await;
                Reason::Cancelled
            }
        };
        interrupt.stop(reason);
    })
}
