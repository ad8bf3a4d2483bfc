//! The sync protocol (DESIGN decision 7): how a `dlopen`, `dlclose` or new table slot made in
//! one thread reaches every other thread's instance group before the call that made it
//! returns — without stopping the world and without ever waiting for a thread that cannot
//! observe the change. Applying the changes in a thread is [`crate::catchup`].
//!
//! # The pieces
//!
//! * **The log** ([`crate::linker::Linker::log`]): every change ([`LinkOp`]), append-only, under
//!   the `Linker` mutex. Its length is the *epoch*.
//! * **The epoch word**: the log's length, published in guest memory at
//!   [`EPOCH_ADDRESS`] (the runtime page) and in `Linker::published` for host code.
//! * **A state word per thread** (in the runtime page, [`THREAD_STATES`]): how deep the thread
//!   is in host calls. The generated host-call wrappers ([`wrap_imports`]) raise it on the way
//!   in and restore it on the way out; the runtime sets it while a thread starts or after it
//!   ended. `0` means the thread is running wasm.
//! * **`seen`** per thread ([`ThreadSync::seen`]): how much of the log its group has applied.
//! * **Epoch checks**: one load of the epoch word and a compare with the function's copy of
//!   `seen`, at every loop header and at the entry of every function on a cycle of direct
//!   calls, compiled into each module by the load-time rewrite ([`crate::rewrite`]); when they
//!   differ, the thread calls its catch-up function through table slot
//!   [`crate::layout::CATCH_UP_SLOT`].
//!
//! # A thread's states
//!
//! * *Running wasm, current* (`state == 0`, `seen == epoch`): nothing to do.
//! * *Running wasm, behind* (`state == 0`, `seen < epoch`): it catches up at its next epoch
//!   check or host call; a publisher waits for it (bounded by the timeout).
//! * *In a host call* (`state > 0`): sleeping, blocked on I/O, a futex, `poll`, or inside the
//!   linker. Never woken and never waited for: on its way back, after restoring its state word,
//!   the wrapper compares the epoch and catches up before any guest instruction runs.
//! * *Starting* (`state == 1`, set by the runtime): its group is being built from the log as it
//!   is; before entering wasm it clears the word and catches up with what came since.
//! * *Ended*: out of the registry; its state word and slot go back for reuse.
//!
//! # Memory ordering
//!
//! The one race that matters is a thread coming back from a host call while a publisher
//! decides not to wait for it. The thread stores `state = 0` and then loads the epoch
//! (`i32.atomic.load`); the publisher stores the epoch (`SeqCst`) and then loads the thread's
//! state (`SeqCst`). Each side needs its store ordered before its load (Dekker's argument): if
//! the publisher still reads `state > 0`, the thread's store comes later, and so does its
//! epoch load, which then sees the new epoch, and the thread catches up before running guest
//! code. On the thread's side, a fence on every host call costs ~20 ns (`i32.atomic.store`,
//! measured in `benches/linker.rs`), so on Linux the wrappers store with a plain `i32.store`
//! (kept in program order by the compiler, as the epoch load is atomic) and the publisher
//! instead runs `membarrier(PRIVATE_EXPEDITED)` between its store and its loads: a full
//! barrier on every running thread of the process, which gives the same guarantee; elsewhere
//! the wrappers use `i32.atomic.store`. Everything else only decides how soon a thread
//! answers, not whether the answer is right:
//! * the wrapper's entry store (`i32.store`, plain) can reach the publisher late, which only
//!   makes it wait one poll longer;
//! * epoch checks load with a plain `i32.load`: a stale value delays the catch-up to the next
//!   check;
//! * `seen` is stored with `Release` after the group is updated and loaded with `Acquire`;
//! * `Linker::published` is stored with `Release` after the log is appended (under the
//!   `Linker` mutex, which orders the log itself) and loaded with `Acquire` by host code.
//!
//! # Waiting
//!
//! The locks a publisher and a catching-up thread take, and their order, are listed with all
//! the others in the crate documentation (`src/lib.rs`); the registry and each thread's
//! prepared TLS blocks are leaf locks.
//!
//! A publisher calls [`Threads::rendezvous`] after its change is published and every lock but
//! the load lock is released. It waits on a tokio [`Notify`] (signalled when a thread catches
//! up or ends) with a short, growing poll interval (a thread entering a host call does not
//! signal: that is a store in wasm), up to the configured timeout; past it the operation fails
//! with an error naming the thread that did not answer.

use std::sync::atomic::{AtomicU32, AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use tokio::sync::Notify;
use wasmer::{
    AsStoreMut, AsStoreRef, Extern, Function, FunctionEnv, FunctionType, Global, Imports, Instance,
    Memory,
};

use crate::catchup;
use crate::error::Error;
use crate::open::DlState;
use crate::scope::ModuleId;
use crate::trampoline;

pub use crate::layout::{EPOCH_ADDRESS, MAX_THREADS, THREAD_STATES};

/// One change to the program, as the threads that did not make it must apply it. Module
/// ids are reused, so a module is named by its id and its incarnation (see
/// [`crate::load::LoadedModule::incarnation`]): a thread that is behind skips what was
/// undone since, and applies what the link state is now.
#[derive(Debug, Clone)]
pub enum LinkOp {
    /// Modules loaded by `dlopen`, in instantiation order (relocated and constructed).
    Load(Vec<(ModuleId, u64)>),
    /// A table slot handed out for a function of a loaded module.
    Slot(u32),
    /// Modules unloaded (or a failed load undone) and the table slots they gave back.
    Unload {
        modules: Vec<(ModuleId, u64)>,
        slots: Vec<u32>,
    },
    /// Modules closed and parked (see [`crate::park`]), each with the table slots it holds;
    /// a later `Load` of the same incarnation puts them back.
    Park {
        modules: Vec<((ModuleId, u64), Vec<u32>)>,
    },
}

/// The link log: every change to the program in order, by absolute position (what a
/// thread's `seen` counts). The part every thread has applied is dropped, so a program that
/// opens and closes libraries for ever keeps a log as long as its slowest thread is behind.
#[derive(Default)]
pub struct Log {
    /// Absolute position of `ops[0]`.
    first: usize,
    ops: Vec<LinkOp>,
}

impl Log {
    /// Every change ever published (the epoch).
    pub fn len(&self) -> usize {
        self.first + self.ops.len()
    }

    pub fn push(&mut self, op: LinkOp) {
        self.ops.push(op);
    }

    /// The changes after the first `seen`; `None` if some of them were dropped already
    /// (never: a thread's `seen` holds [`Log::forget_applied`] back).
    pub fn since(&self, seen: usize) -> Option<&[LinkOp]> {
        self.ops.get(seen.checked_sub(self.first)?..)
    }

    /// Drops the changes before position `applied` (what every thread has applied).
    pub fn forget_applied(&mut self, applied: usize) {
        let n = applied.saturating_sub(self.first).min(self.ops.len());
        self.ops.drain(..n);
        self.first += n;
    }
}

/// How long a publisher waits, by default, for a thread running wasm to catch up.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(10);

/// The words of the protocol in guest memory (the runtime page).
#[derive(Clone)]
pub struct RuntimeWords {
    base: *const AtomicU32,
    /// Set when the run is interrupted (see [`crate::limits`]): the epoch then stays at a
    /// value no thread has seen, so every thread's next check asks to catch up, and refuses.
    interrupted: Arc<std::sync::atomic::AtomicBool>,
    /// Keeps the mapping alive as long as this (threads outlive the main thread's Store).
    _memory: Arc<wasmer::SharedMemory>,
}

// SAFETY: the words lie in the program's shared memory, which never moves (a shared wasm
// memory is reserved at its maximum size up front) and stays mapped while `_memory` lives.
unsafe impl Send for RuntimeWords {}
unsafe impl Sync for RuntimeWords {}

impl RuntimeWords {
    /// The words of `memory`, which must be shared (the linker always makes it so).
    pub fn new(store: &impl AsStoreRef, memory: &Memory) -> Result<Self, Error> {
        let shared = memory
            .as_shared(store)
            .ok_or_else(|| Error::Wasi("the program's memory is not shared".into()))?;
        Ok(RuntimeWords {
            base: memory.view(store).data_ptr() as *const AtomicU32,
            interrupted: Default::default(),
            _memory: Arc::new(shared),
        })
    }

    fn word(&self, address: u32) -> &AtomicU32 {
        // SAFETY: see the type; the runtime page is mapped from start-up and the addresses
        // used are 4-byte aligned and inside it.
        unsafe { &*self.base.add(address as usize / 4) }
    }

    /// Publishes the log's length (see the module documentation for the ordering).
    pub fn publish_epoch(&self, log_len: usize) {
        let epoch = match self.interrupted.load(Ordering::SeqCst) {
            true => u32::MAX,
            false => log_len as u32,
        };
        self.word(EPOCH_ADDRESS).store(epoch, Ordering::SeqCst);
    }

    /// Makes every thread running wasm stop at its next epoch check (see
    /// [`crate::limits`]).
    pub fn interrupt(&self) {
        self.interrupted.store(true, Ordering::SeqCst);
        self.word(EPOCH_ADDRESS).store(u32::MAX, Ordering::SeqCst);
    }

    fn state(&self, slot: u32) -> &AtomicU32 {
        self.word(state_address(slot))
    }
}

/// The guest address of thread slot `slot`'s state word.
pub fn state_address(slot: u32) -> u32 {
    THREAD_STATES + 4 * slot
}

/// One thread as the protocol sees it.
pub struct ThreadSync {
    /// The thread id the guest knows (for messages).
    pub tid: u32,
    /// Its state word is at [`state_address`]`(slot)`.
    pub slot: u32,
    /// How much of the log its instance group has applied. Written only by the thread.
    pub seen: AtomicUsize,
    /// TLS blocks that the publisher of a load allocated for this thread, by module: the
    /// thread only initialises them, so it can catch up at an epoch check, where running the
    /// program's allocator could deadlock on a lock the thread itself holds.
    pub prepared_tls: Mutex<Vec<(ModuleId, u32)>>,
}

/// Every running thread of a program (the main thread in slot 0).
pub struct Threads {
    inner: Mutex<Registry>,
    /// Publishers waiting in [`Threads::rendezvous`].
    waiting: AtomicUsize,
    /// Whether the publisher runs `membarrier` (and the wrappers store without a fence).
    membarrier: Option<membarrier::Barrier>,
    /// Signalled when a thread has caught up or ended.
    changed: Notify,
    /// Signalled when the last thread other than the main thread ends.
    none_left: Condvar,
    words: std::sync::OnceLock<RuntimeWords>,
    timeout: Duration,
}

#[derive(Default)]
struct Registry {
    threads: Vec<Arc<ThreadSync>>,
    free_slots: Vec<u32>,
    next_slot: u32,
}

impl Threads {
    pub fn new(timeout: Duration) -> Self {
        Threads {
            inner: Mutex::new(Registry::default()),
            waiting: AtomicUsize::new(0),
            // WASIX_DL_NO_MEMBARRIER=1 gives the fenced wrappers other systems get (tests).
            membarrier: std::env::var_os("WASIX_DL_NO_MEMBARRIER")
                .is_none_or(|v| v == "0")
                .then(membarrier::Barrier::start)
                .flatten(),
            changed: Notify::new(),
            none_left: Condvar::new(),
            words: Default::default(),
            timeout,
        }
    }

    fn registry(&self) -> std::sync::MutexGuard<'_, Registry> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Whether the host-call wrappers must fence their state store themselves.
    pub fn wrappers_fence(&self) -> bool {
        self.membarrier.is_none()
    }

    /// The protocol's words, once the memory exists.
    pub fn words(&self) -> Option<&RuntimeWords> {
        self.words.get()
    }

    /// Sets where the protocol's words are, once the memory exists.
    pub fn set_words(&self, words: RuntimeWords) {
        let _ = self.words.set(words);
    }

    /// Registers a thread, in the *starting* state. `None` when [`MAX_THREADS`] run already.
    pub fn register(&self, tid: u32) -> Option<Arc<ThreadSync>> {
        if let Some(barrier) = &self.membarrier {
            if !self.registry().threads.is_empty() {
                barrier.prepare(); // a second thread: publishes will need the barrier
            }
        }
        let mut registry = self.registry();
        let slot = match registry.free_slots.pop() {
            Some(slot) => slot,
            None if registry.next_slot < MAX_THREADS => {
                registry.next_slot += 1;
                registry.next_slot - 1
            }
            None => return None,
        };
        if let Some(words) = self.words.get() {
            words.state(slot).store(1, Ordering::SeqCst);
        }
        let thread = Arc::new(ThreadSync {
            tid,
            slot,
            seen: AtomicUsize::new(0),
            prepared_tls: Mutex::new(Vec::new()),
        });
        registry.threads.push(thread.clone());
        Some(thread)
    }

    /// Marks `thread` as running wasm, as its last step before entering it; the caller then
    /// compares the epoch (see the module documentation).
    pub fn enter_wasm(&self, thread: &ThreadSync) {
        if let Some(words) = self.words.get() {
            words.state(thread.slot).store(0, Ordering::SeqCst);
        }
    }

    /// Marks `thread` as out of wasm for good (it ended, or the main thread waits for the
    /// others), so that no publisher waits for it.
    pub fn leave_wasm(&self, thread: &ThreadSync) {
        if let Some(words) = self.words.get() {
            words.state(thread.slot).store(1, Ordering::SeqCst);
        }
        self.changed.notify_waiters();
    }

    /// Takes an ended thread out. Returns the TLS blocks prepared for it and never used.
    pub fn remove(&self, thread: &ThreadSync) -> Vec<u32> {
        self.leave_wasm(thread);
        let mut registry = self.registry();
        registry.threads.retain(|t| t.slot != thread.slot);
        registry.free_slots.push(thread.slot);
        if registry.threads.len() <= 1 {
            self.none_left.notify_all();
        }
        drop(registry);
        self.changed.notify_waiters();
        let prepared = std::mem::take(&mut *lock_tls(&thread.prepared_tls));
        prepared.into_iter().map(|(_, block)| block).collect()
    }

    /// Records that `thread` has applied the log up to `seen`.
    pub fn caught_up(&self, thread: &ThreadSync, seen: usize) {
        thread.seen.store(seen, Ordering::Release);
        self.changed.notify_waiters();
        if self.waiting.load(Ordering::Relaxed) > 0 {
            // Someone waits for the threads that are behind: let them have this CPU now
            // rather than at the end of this thread's time slice.
            std::thread::yield_now();
        }
    }

    /// The least `seen` of the registered threads: how much of the log they all applied (a
    /// thread that is starting counts as 0 until it has taken its place in the log).
    pub fn least_seen(&self) -> usize {
        let registry = self.registry();
        (registry.threads.iter())
            .map(|t| t.seen.load(Ordering::Acquire))
            .min()
            .unwrap_or(0)
    }

    /// Every registered thread but `me`.
    pub fn others(&self, me: &ThreadSync) -> Vec<Arc<ThreadSync>> {
        let registry = self.registry();
        registry
            .threads
            .iter()
            .filter(|t| t.slot != me.slot)
            .cloned()
            .collect()
    }

    /// Blocks until every thread but the main thread has ended.
    pub fn wait_until_none(&self) {
        let mut registry = self.registry();
        while registry.threads.len() > 1 {
            registry = self
                .none_left
                .wait(registry)
                .unwrap_or_else(|p| p.into_inner());
        }
    }

    /// A thread other than `me` that runs wasm and has not applied the log up to `target`.
    fn laggard(&self, me: &ThreadSync, target: usize) -> Option<Arc<ThreadSync>> {
        let words = self.words.get()?;
        let registry = self.registry();
        registry
            .threads
            .iter()
            .find(|t| {
                t.slot != me.slot
                    && t.seen.load(Ordering::Acquire) < target
                    && words.state(t.slot).load(Ordering::SeqCst) == 0
            })
            .cloned()
    }

    /// Waits until every thread running wasm has applied the log up to `target` (threads in
    /// host calls will before they return to wasm). Called by the thread `me` that
    /// published, with no lock held but the load lock.
    pub fn rendezvous(
        &self,
        me: &ThreadSync,
        target: usize,
        tokio: &tokio::runtime::Handle,
    ) -> Result<(), Error> {
        if self.registry().threads.len() <= 1 {
            return Ok(());
        }
        if let Some(barrier) = &self.membarrier {
            barrier.run();
        }
        if self.laggard(me, target).is_none() {
            return Ok(());
        }
        let deadline = Instant::now() + self.timeout;
        self.waiting.fetch_add(1, Ordering::Relaxed);
        let _waiting = Waiting(&self.waiting);
        tokio.block_on(async {
            let mut pause = Duration::from_micros(20);
            loop {
                let notified = self.changed.notified();
                tokio::pin!(notified);
                notified.as_mut().enable();
                let Some(laggard) = self.laggard(me, target) else {
                    return Ok(());
                };
                let now = Instant::now();
                if now >= deadline {
                    return Err(Error::Sync {
                        tid: laggard.tid,
                        waited: self.timeout,
                    });
                }
                let _ = tokio::time::timeout(pause.min(deadline - now), notified).await;
                pause = (pause * 2).min(Duration::from_millis(5));
            }
        })
    }
}

/// Counts a publisher out of [`Threads::waiting`] however its wait ends.
struct Waiting<'a>(&'a AtomicUsize);

impl Drop for Waiting<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

/// Linux's `membarrier(2)`, the publisher's half of the ordering (see the module
/// documentation).
mod membarrier {
    use std::sync::Mutex;
    use std::thread::JoinHandle;

    enum Registration {
        NotStarted,
        /// The helper thread (`None` if it could not be started).
        Running(Option<JoinHandle<bool>>),
        Done,
    }

    fn register_in_background() -> Option<JoinHandle<bool>> {
        #[cfg(target_os = "linux")]
        {
            std::thread::Builder::new()
                .name("wasix-dl membarrier".into())
                .spawn(|| {
                    // SAFETY: a system call with integer arguments only.
                    unsafe {
                        libc::syscall(libc::SYS_membarrier, REGISTER_PRIVATE_EXPEDITED, 0, 0) == 0
                    }
                })
                .ok()
        }
        #[cfg(not(target_os = "linux"))]
        None
    }

    #[cfg(target_os = "linux")]
    const QUERY: libc::c_long = 0;
    #[cfg(target_os = "linux")]
    const GLOBAL: libc::c_long = 1;
    #[cfg(target_os = "linux")]
    const PRIVATE_EXPEDITED: libc::c_long = 1 << 3;
    #[cfg(target_os = "linux")]
    const REGISTER_PRIVATE_EXPEDITED: libc::c_long = 1 << 4;

    /// The process's membarrier. Registering for the expedited kind waits for a scheduler
    /// grace period (12 ms measured here: most of a small program's run), so it is done only
    /// once the program starts a second thread, by a helper thread; the first publish that
    /// needs it waits for it.
    pub struct Barrier {
        registering: Mutex<Registration>,
        /// The command to run: the expedited one once registered, else the global one.
        command: std::sync::OnceLock<libc::c_long>,
    }

    impl Barrier {
        /// `None` where the kernel cannot give a barrier on every thread of the process.
        pub fn start() -> Option<Barrier> {
            #[cfg(target_os = "linux")]
            {
                // SAFETY: system calls with integer arguments only.
                let supported = unsafe { libc::syscall(libc::SYS_membarrier, QUERY, 0, 0) };
                let needed = GLOBAL | PRIVATE_EXPEDITED | REGISTER_PRIVATE_EXPEDITED;
                if supported < 0 || supported & needed != needed {
                    return None;
                }
                Some(Barrier {
                    registering: Mutex::new(Registration::NotStarted),
                    command: Default::default(),
                })
            }
            #[cfg(not(target_os = "linux"))]
            None
        }

        /// Starts registering, in the background, if that has not started yet.
        pub fn prepare(&self) {
            let mut registering = self.registering.lock().unwrap_or_else(|p| p.into_inner());
            if let Registration::NotStarted = *registering {
                *registering = Registration::Running(register_in_background());
            }
        }

        /// A full memory barrier on every running thread of the process.
        pub fn run(&self) {
            #[cfg(target_os = "linux")]
            {
                let command = *self.command.get_or_init(|| {
                    self.prepare();
                    let mut registering =
                        self.registering.lock().unwrap_or_else(|p| p.into_inner());
                    let registered = match std::mem::replace(&mut *registering, Registration::Done)
                    {
                        Registration::Running(Some(h)) => h.join().unwrap_or(false),
                        _ => false,
                    };
                    // Else the global kind: slower, and needs no registration.
                    if registered {
                        PRIVATE_EXPEDITED
                    } else {
                        GLOBAL
                    }
                });
                // SAFETY: as above.
                let done = unsafe { libc::syscall(libc::SYS_membarrier, command, 0, 0) } == 0;
                assert!(
                    done,
                    "membarrier({command}) failed although the kernel offers it"
                );
            }
        }
    }
}

/// A thread's prepared TLS blocks (a leaf lock; poisoning is ignored: a `Vec` push or drain
/// leaves nothing half-done).
pub fn lock_tls(
    blocks: &Mutex<Vec<(ModuleId, u32)>>,
) -> std::sync::MutexGuard<'_, Vec<(ModuleId, u32)>> {
    blocks.lock().unwrap_or_else(|p| p.into_inner())
}

/// The globals of one thread's host-call wrappers.
pub struct Wrappers {
    /// The wrappers' copy of `seen`, kept current by [`crate::catchup`].
    pub seen: Global,
    /// The address of the thread's state word.
    pub state: Global,
}

/// Wraps every function of `imports` in generated wasm (see
/// [`trampoline::host_call_wrappers`]) that catches up before the call, raises the thread's
/// state word for the call's duration, and catches up again before returning to the caller:
/// a few loads and stores when nothing changed, no host frame added.
pub fn wrap_imports(
    store: &mut impl AsStoreMut,
    env: &FunctionEnv<DlState>,
    imports: &mut Imports,
    memory: &Memory,
) -> Result<Wrappers, Error> {
    let mut functions: Vec<(String, String, Function)> = imports
        .iter()
        .filter_map(|(ns, field, ext)| match ext {
            Extern::Function(f) => Some((ns.to_string(), field.to_string(), f.clone())),
            _ => None,
        })
        .collect();
    functions.sort_by(|a, b| (&a.0, &a.1).cmp(&(&b.0, &b.1)));
    let process = env.as_ref(store).process.clone();
    let module = match process.wrappers.get() {
        Some(module) => module.clone(),
        None => {
            let types: Vec<FunctionType> = functions.iter().map(|(_, _, f)| f.ty(store)).collect();
            let fence = process.threads.wrappers_fence();
            let bytes =
                trampoline::host_call_wrappers(&types, EPOCH_ADDRESS, fence).ok_or_else(|| {
                    Error::Wasi("a WASI function has a type the wrappers cannot express".into())
                })?;
            let module = process.compiler.compile("(host-call wrappers)", &bytes)?;
            process.wrappers.get_or_init(|| module).clone()
        }
    };
    let mut wrapped = Imports::new();
    wrapped.define("env", "memory", memory.clone());
    wrapped.define(
        "sync",
        "catch_up",
        Function::new_typed_with_env(store, env, catchup::at_host_call),
    );
    for (index, (_, _, f)) in functions.iter().enumerate() {
        wrapped.define("f", &index.to_string(), f.clone());
    }
    let instance = Instance::new(store, &module, &wrapped).map_err(|e| Error::Instantiate {
        module: "(host-call wrappers)".into(),
        reason: e.to_string(),
    })?;
    for (index, (ns, field, _)) in functions.iter().enumerate() {
        let wrapper = instance
            .exports
            .get_function(&format!("w{index}"))
            .map_err(|e| Error::Wasi(e.to_string()))?;
        imports.define(ns, field, wrapper.clone());
    }
    let global = |name: &str| {
        instance
            .exports
            .get_global(name)
            .cloned()
            .map_err(|e| Error::Wasi(e.to_string()))
    };
    Ok(Wrappers {
        seen: global("seen")?,
        state: global("state")?,
    })
}
