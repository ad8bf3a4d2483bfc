//! `poll_oneoff` with WASI's meaning of a zero timeout.
//!
//! WASI says a clock subscription with timeout 0 is due at once; wasmer-wasix reads 0 as "no
//! timeout" and waits forever (wasix-libc works around it by sending 1). Programs built with
//! wasi-libc, this project's toolchain included, send 0 for `poll(fds, n, 0)`, `select` with a
//! zero `timeval` and CPython's `selectors` probe, and would hang. Our wrapper turns a zero
//! timeout into 1 ns (which wasmer-wasix treats as "due now") for the call and puts the guest's
//! subscription back afterwards.

use wasmer::{AsStoreMut, Extern, Function, FunctionEnv, FunctionEnvMut, Imports, RuntimeError};

use crate::open::DlState;

/// Where the clock timeout sits in a subscription, and a subscription's size, per namespace.
const LAYOUTS: [(&str, u64, u64); 3] = [
    ("wasi_snapshot_preview1", 24, 48),
    ("wasix_32v1", 24, 48),
    // wasi_unstable's clock subscription starts with a 64-bit `identifier`.
    ("wasi_unstable", 32, 56),
];
/// Offset of the event type in a subscription; 0 is a clock.
const TAG_OFFSET: u64 = 8;
const EVENTTYPE_CLOCK: u8 = 0;

/// Wraps the `poll_oneoff` of every WASI namespace in `imports`.
pub fn define(store: &mut impl AsStoreMut, env: &FunctionEnv<DlState>, imports: &mut Imports) {
    for (ns, timeout_offset, size) in LAYOUTS {
        let Some(Extern::Function(runtime)) = imports.get_export(ns, "poll_oneoff") else {
            continue;
        };
        let wrapper = move |mut ctx: FunctionEnvMut<DlState>,
                            subs: u32,
                            events: u32,
                            nsubs: u32,
                            nevents: u32|
              -> Result<i32, RuntimeError> {
            let zeroed = zero_timeouts(&ctx, u64::from(subs), nsubs, timeout_offset, size);
            set_timeouts(&ctx, &zeroed, 1);
            let args = [subs, events, nsubs, nevents].map(|a| wasmer::Value::I32(a as i32));
            let result = runtime.call(&mut ctx, &args);
            set_timeouts(&ctx, &zeroed, 0);
            Ok(result?.first().and_then(wasmer::Value::i32).unwrap_or(0))
        };
        imports.define(
            ns,
            "poll_oneoff",
            Function::new_typed_with_env(store, env, wrapper),
        );
    }
}

/// The addresses of the clock timeouts that are 0. Subscriptions outside memory are left for
/// wasmer-wasix to refuse.
fn zero_timeouts(
    ctx: &FunctionEnvMut<DlState>,
    subs: u64,
    nsubs: u32,
    timeout_offset: u64,
    size: u64,
) -> Vec<u64> {
    let Some(view) = crate::guest::view(ctx) else {
        return Vec::new();
    };
    let mut zeroed = Vec::new();
    for at in (0..u64::from(nsubs)).map(|i| subs + i * size) {
        let (mut tag, mut timeout) = ([0u8; 1], [0u8; 8]);
        if view.read(at + TAG_OFFSET, &mut tag).is_err()
            || view.read(at + timeout_offset, &mut timeout).is_err()
        {
            break;
        }
        if tag[0] == EVENTTYPE_CLOCK && u64::from_le_bytes(timeout) == 0 {
            zeroed.push(at + timeout_offset);
        }
    }
    zeroed
}

fn set_timeouts(ctx: &FunctionEnvMut<DlState>, addresses: &[u64], value: u64) {
    if let Some(view) = crate::guest::view(ctx) {
        for &at in addresses {
            // Readable a moment ago, so writable: the memory only grows.
            let _ = view.write(at, &value.to_le_bytes());
        }
    }
}
