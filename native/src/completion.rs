//! Promises for the calls that move data (TCP `read` and `write`, UDP `recv` and `send`),
//! settled through one threadsafe function per JavaScript thread.
//!
//! napi-rs settles each `async fn` call through a threadsafe function of its own: made when the
//! call starts (a libuv handle, an environment cleanup hook) and closed when it settles, on the
//! JavaScript thread. A stream moving data makes thousands of calls a second, so here they share
//! one: a call makes its promise, spawns its future, and the future's outcome is queued to that
//! function, which settles the promise on the JavaScript thread. The function keeps the event
//! loop alive only while calls are pending, as each call's own function did.

use std::cell::{Cell, RefCell};
use std::ffi::c_void;
use std::panic::AssertUnwindSafe;
use std::ptr;
use std::sync::{Arc, RwLock};

use futures_util::FutureExt;
use napi::bindgen_prelude::{This, ToNapiValue};
use napi::{Env, JsError, JsValue, check_status, sys};

use crate::error::{Failure, Settled};
use crate::sync::RecoverRw;

/// What a finished call hands to the JavaScript thread: settles its promise there.
type Settle = Box<dyn FnOnce(sys::napi_env) + Send>;

/// The JavaScript thread's threadsafe function, shared with the tasks that settle through it.
struct Port {
    /// `None` once Node has finalized it (its environment is going away): nothing may call it.
    function: RwLock<Option<Function>>,
}

#[derive(Clone, Copy)]
struct Function(sys::napi_threadsafe_function);

// SAFETY: napi allows `napi_call_threadsafe_function` from any thread, and the handle is only
// used while `Port::function` says Node has not finalized it.
#[allow(unsafe_code)]
unsafe impl Send for Function {}
#[allow(unsafe_code)]
unsafe impl Sync for Function {}

impl Port {
    /// Queues `settle` for the JavaScript thread; dropped if the environment is gone.
    #[allow(unsafe_code)]
    fn send(&self, settle: Settle) {
        let function = self.function.read_recover();
        let Some(Function(raw)) = *function else { return };
        let data = Box::into_raw(Box::new(settle)).cast::<c_void>();
        // SAFETY: the function is alive (the read lock keeps `finalized` from running); a queue
        // without a limit never answers "full", and a closing one hands `data` back to us.
        let status =
            unsafe { sys::napi_call_threadsafe_function(raw, data, sys::ThreadsafeFunctionCallMode::nonblocking) };
        if status != sys::Status::napi_ok {
            // SAFETY: not queued, so still ours.
            drop(unsafe { Box::from_raw(data.cast::<Settle>()) });
        }
    }
}

thread_local! {
    /// This JavaScript thread's port, made on its first call.
    static PORT: RefCell<Option<Arc<Port>>> = const { RefCell::new(None) };
    /// Calls made on this thread and not yet settled: the port holds the event loop while any are.
    static PENDING: Cell<usize> = const { Cell::new(0) };
}

/// The promise of a value that a JavaScript caller awaits.
pub struct Promise(sys::napi_value);

#[allow(unsafe_code)]
impl ToNapiValue for Promise {
    unsafe fn to_napi_value(_: sys::napi_env, promise: Self) -> napi::Result<sys::napi_value> {
        Ok(promise.0)
    }
}

/// A pending call's promise resolver and the reference that holds its object, sent to the
/// runtime and back.
struct Settling {
    deferred: sys::napi_deferred,
    owner: sys::napi_ref,
}

// SAFETY: the runtime only carries them; both are used once, on the JavaScript thread that made them.
#[allow(unsafe_code)]
unsafe impl Send for Settling {}

/// Starts `call` on the runtime and returns its promise, settled on this (the JavaScript) thread
/// with what the call returns. `owner`, the JavaScript object whose method this is, is held
/// until then, as napi-rs holds it through an `async fn` method: a stream that JavaScript no
/// longer references is not collected (and so closed) in the middle of a write. The call also
/// hands back what it kept of its arguments, to be dropped there too: napi-rs releases a
/// JavaScript buffer dropped on another thread through a threadsafe function of its own, one
/// more trip per call.
#[allow(unsafe_code)]
pub fn promise<T, K, F>(env: &Env, owner: &This, call: F) -> napi::Result<Promise>
where
    T: ToNapiValue + Send + 'static,
    K: Send + 'static,
    F: Future<Output = (Settled<T>, K)> + Send + 'static,
{
    let raw_env = env.raw();
    let port = port(raw_env)?;
    let mut deferred = ptr::null_mut();
    let mut promise = ptr::null_mut();
    let mut held = ptr::null_mut();
    // SAFETY: on the JavaScript thread, with its live `env` and a value of this call.
    unsafe {
        check_status!(sys::napi_create_reference(raw_env, owner.object.raw(), 1, &mut held))?;
        let made = sys::napi_create_promise(raw_env, &mut deferred, &mut promise);
        if made != sys::Status::napi_ok {
            sys::napi_delete_reference(raw_env, held);
            check_status!(made)?;
        }
    }
    hold(raw_env, &port, true);
    let pending = Settling { deferred, owner: held };
    let settling = Arc::clone(&port);
    napi::bindgen_prelude::spawn(async move {
        let (settled, keep) = match AssertUnwindSafe(call).catch_unwind().await {
            Ok((settled, keep)) => (settled, Some(keep)),
            Err(_) => (Settled(Err(Failure::internal("call", "the call panicked".to_string()))), None),
        };
        let port = Arc::clone(&settling);
        settling.send(Box::new(move |env| {
            let pending = pending;
            // SAFETY: `call_js` runs this on the JavaScript thread with its live `env`; the
            // deferred and the reference were made on this thread and are used once, here.
            unsafe {
                match Settled::to_napi_value(env, settled) {
                    Ok(value) => sys::napi_resolve_deferred(env, pending.deferred, value),
                    Err(error) => {
                        sys::napi_reject_deferred(env, pending.deferred, JsError::from(error).into_value(env))
                    }
                };
                sys::napi_delete_reference(env, pending.owner);
            }
            drop(keep);
            hold(env, &port, false);
        }));
    });
    Ok(Promise(promise))
}

/// Counts a call in (`true`) or out; the port holds the event loop while any is pending.
#[allow(unsafe_code)]
fn hold(env: sys::napi_env, port: &Port, call_started: bool) {
    let Some(Function(raw)) = *port.function.read_recover() else { return };
    PENDING.with(|pending| {
        let before = pending.get();
        let after = if call_started { before + 1 } else { before.saturating_sub(1) };
        pending.set(after);
        // SAFETY: on the JavaScript thread that owns the function, which is alive.
        unsafe {
            if before == 0 && after > 0 {
                sys::napi_ref_threadsafe_function(env, raw);
            } else if before > 0 && after == 0 {
                sys::napi_unref_threadsafe_function(env, raw);
            }
        }
    });
}

/// This thread's port, made on first use.
#[allow(unsafe_code)]
fn port(env: sys::napi_env) -> napi::Result<Arc<Port>> {
    if let Some(port) = PORT.with_borrow(Clone::clone) {
        return Ok(port);
    }
    let port = Arc::new(Port { function: RwLock::new(None) });
    let mut name = ptr::null_mut();
    let mut raw = ptr::null_mut();
    let label = "effect-tailscale call";
    // SAFETY: on the JavaScript thread with its live `env`. The function owns one count of
    // `port` (`finalized` gives it back); it calls no JavaScript function of its own.
    unsafe {
        check_status!(sys::napi_create_string_utf8(env, label.as_ptr().cast(), label.len() as isize, &mut name))?;
        let context = Arc::into_raw(Arc::clone(&port)).cast_mut().cast::<c_void>();
        let status = sys::napi_create_threadsafe_function(
            env,
            ptr::null_mut(),
            ptr::null_mut(),
            name,
            0,
            1,
            context,
            Some(finalized),
            ptr::null_mut(),
            Some(call_js),
            &mut raw,
        );
        if status != sys::Status::napi_ok {
            drop(Arc::from_raw(context.cast::<Port>()));
            check_status!(status)?;
        }
        // Idle until a call is pending.
        sys::napi_unref_threadsafe_function(env, raw);
    }
    *port.function.write_recover() = Some(Function(raw));
    PORT.with_borrow_mut(|slot| *slot = Some(Arc::clone(&port)));
    Ok(port)
}

/// Node finalizes the function as its environment goes away: no call may reach it after this.
#[allow(unsafe_code)]
unsafe extern "C" fn finalized(_env: sys::napi_env, data: *mut c_void, _hint: *mut c_void) {
    // SAFETY: `data` is the count of the port that `port` gave the function.
    let port = unsafe { Arc::from_raw(data.cast::<Port>()) };
    *port.function.write_recover() = None;
    PORT.with_borrow_mut(|slot| *slot = None);
    PENDING.with(|pending| pending.set(0));
}

/// Runs a queued settle on the JavaScript thread; with no `env` (the function is being torn
/// down) the settle is dropped unrun.
#[allow(unsafe_code)]
unsafe extern "C" fn call_js(env: sys::napi_env, _: sys::napi_value, _: *mut c_void, data: *mut c_void) {
    if data.is_null() {
        return;
    }
    // SAFETY: `Port::send` queued a boxed settle as `data`; it comes back exactly once.
    let settle = unsafe { Box::from_raw(data.cast::<Settle>()) };
    if !env.is_null() {
        settle(env);
    }
}
