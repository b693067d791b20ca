//! oneDNN kernels libtorch registers for its own compiler but tch does not bind
//! (C++ in `csrc/onednn_ops.cpp`, called through libtorch's dispatcher). Each
//! returns `None` where the kernel is not there, so the caller keeps its
//! portable path.
use std::ffi::{c_char, c_void, CStr};
use std::sync::atomic::{AtomicBool, Ordering};

use tch::Tensor;

extern "C" {
    fn caffe_tch_onednn_linear(x: *mut c_void, w: *mut c_void, b: *mut c_void, out: *mut *mut c_void) -> *mut c_char;
}

/// Set once the kernel failed for a reason that will not change (not
/// registered in this libtorch): later calls go straight to the fallback.
static LINEAR_MISSING: AtomicBool = AtomicBool::new(false);

/// `x·wᵀ + b` by oneDNN's inner product, for 2-D CPU float tensors; `None`
/// when this libtorch cannot run it or autograd records (the kernel has no
/// backward), and the caller computes it another way.
pub fn linear(x: &Tensor, w: &Tensor, b: Option<&Tensor>) -> Option<Tensor> {
    if LINEAR_MISSING.load(Ordering::Relaxed) {
        return None;
    }
    let mut out: *mut c_void = std::ptr::null_mut();
    let b_ptr = b.map_or(std::ptr::null_mut(), |b| b.as_ptr() as *mut c_void);
    // SAFETY: the pointers are live at::Tensor objects owned by tch for the
    // call; the shim only reads them (copying the handles), catches every C++
    // exception, and on success hands back a new at::Tensor that we own.
    let err = unsafe { caffe_tch_onednn_linear(x.as_ptr() as *mut c_void, w.as_ptr() as *mut c_void, b_ptr, &mut out) };
    if err.is_null() {
        // SAFETY: `out` is a heap at::Tensor the shim allocated for us.
        return Some(unsafe { Tensor::from_ptr(out as *mut torch_sys::C_tensor) });
    }
    // SAFETY: a NUL-terminated string the shim malloc'd, read once ...
    let msg = unsafe { CStr::from_ptr(err) }.to_string_lossy().into_owned();
    // SAFETY: ... and freed once, with the allocator that made it.
    unsafe { libc::free(err as *mut c_void) };
    if msg.contains("no mkldnn::_linear_pointwise") {
        LINEAR_MISSING.store(true, Ordering::Relaxed);
    }
    None
}
