//! What the C++ shims (`csrc/`) hand back: a malloc'd message or null (every
//! entry point catches its C++ exceptions, `csrc/shim_errors.h`), and for
//! some a new at::Tensor the caller owns.
use std::ffi::{c_char, c_void, CStr};

use tch::Tensor;

use crate::Result;

/// The shim's malloc'd message, freed; `None` for null.
///
/// # Safety
/// `err` is null or a malloc'd NUL-terminated string nobody else frees.
pub(crate) unsafe fn take_error(err: *mut c_char) -> Option<String> {
    if err.is_null() {
        return None;
    }
    let msg = unsafe { CStr::from_ptr(err) }.to_string_lossy().into_owned();
    unsafe { libc::free(err as *mut c_void) };
    Some(msg)
}

/// An entry point's result that may hand back a tensor: its message as an
/// error, else the tensor it set (`None` where it left `out` null: the call
/// did not apply and the caller takes its own path).
///
/// # Safety
/// As [`take_error`] for `err`; when `err` is null, `out` is null or a heap
/// at::Tensor the shim allocated for the caller.
pub(crate) unsafe fn optional_tensor(err: *mut c_char, out: *mut c_void) -> Result<Option<Tensor>> {
    if let Some(msg) = unsafe { take_error(err) } {
        crate::bail!("{}", crate::error::libtorch_message(&msg));
    }
    if out.is_null() {
        return Ok(None);
    }
    Ok(Some(unsafe { Tensor::from_ptr(out as *mut torch_sys::C_tensor) }))
}
