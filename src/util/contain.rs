//! Panics inside a third-party decoder, turned into errors. A decoding
//! library can assert on a hostile file (fuzzing found an assertion in the
//! JPEG decoder the image crate uses); for caffe-tch that is a corrupt file,
//! not a crash. The panic is caught at the call and its message kept for the
//! error; the process's panic hook stays silent for it, and prints every
//! other panic as before. The same for a panic of tch's that carries a
//! libtorch error (a refused allocation inside an operator): a command's
//! error, not a crash.
use std::cell::Cell;
use std::panic::{self, AssertUnwindSafe};
use std::sync::Once;

thread_local! {
    static CONTAINING: Cell<bool> = const { Cell::new(false) };
}

/// The process's panic hook, silent for the panics this module turns into
/// errors: those inside `contain_panic`, and those carrying a libtorch error.
fn install_quiet_hook() {
    static HOOK: Once = Once::new();
    HOOK.call_once(|| {
        let previous = panic::take_hook();
        panic::set_hook(Box::new(move |info| {
            let message = info
                .payload()
                .downcast_ref::<String>()
                .map(String::as_str)
                .or_else(|| info.payload().downcast_ref::<&str>().copied())
                .unwrap_or_default();
            if !CONTAINING.with(Cell::get) && libtorch_error_in_panic(message).is_none() {
                previous(info);
            }
        }));
    });
}

/// Runs `f`; a panic inside it becomes `Err` with the first line of the panic's message.
/// Only for code that owns nothing the caller goes on using (a decoder
/// reading a byte slice), so nothing is left half-updated by the unwind.
pub fn contain_panic<T>(f: impl FnOnce() -> T) -> std::result::Result<T, String> {
    install_quiet_hook();
    let was = CONTAINING.with(|c| c.replace(true));
    let result = panic::catch_unwind(AssertUnwindSafe(f));
    CONTAINING.with(|c| c.set(was));
    result.map_err(|payload| {
        payload
            .downcast_ref::<String>()
            .cloned()
            .or_else(|| payload.downcast_ref::<&str>().map(|s| s.to_string()))
            .unwrap_or_else(|| "a panic without a message".to_string())
            .lines()
            .next()
            .unwrap_or_default()
            .to_string()
    })
}

/// The libtorch error inside a panic of tch's, which unwraps libtorch's
/// errors in its operators and destructors (a `Tensor * Tensor`, a Scalar
/// freed while an error is pending): `...: Torch("message ...")`. None for
/// any other panic, which is a bug and stays one.
pub fn libtorch_error_in_panic(message: &str) -> Option<String> {
    let start = message.find("Torch(\"")? + "Torch(\"".len();
    let inner = &message[start..];
    let inner = inner.strip_suffix("\")").unwrap_or(inner);
    Some(crate::error::libtorch_message(&inner.replace("\\n", "\n").replace("\\\"", "\"")))
}

/// Runs a whole command; a panic carrying a libtorch error (an allocation
/// refused by the system, say, inside a tch operator) becomes that error,
/// printed by the caller as its one error line, and the panic hook stays
/// silent for it. Any other panic goes on as a panic.
pub fn libtorch_panics_as_errors<T>(f: impl FnOnce() -> T) -> std::result::Result<T, String> {
    install_quiet_hook();
    panic::catch_unwind(AssertUnwindSafe(f)).map_err(|payload| {
        let message = payload
            .downcast_ref::<String>()
            .cloned()
            .or_else(|| payload.downcast_ref::<&str>().map(|s| s.to_string()))
            .unwrap_or_default();
        match libtorch_error_in_panic(&message) {
            Some(error) => error,
            None => panic::resume_unwind(payload),
        }
    })
}
