//! oneDNN kernels libtorch registers for its own compiler but tch does not bind
//! (C++ in `csrc/onednn_ops.cpp`, called through libtorch's dispatcher). Each
//! returns `None` where the kernel is not there, so the caller keeps its
//! portable path.
use std::ffi::{c_char, c_void};
use std::sync::atomic::{AtomicBool, Ordering};

use tch::Tensor;

extern "C" {
    fn caffe_tch_onednn_linear(x: *mut c_void, w: *mut c_void, b: *mut c_void, out: *mut *mut c_void) -> *mut c_char;
    fn caffe_tch_onednn_conv2d(
        x: *mut c_void,
        w: *mut c_void,
        b: *mut c_void,
        geometry: *const i64,
        groups: i64,
        relu: bool,
        out: *mut *mut c_void,
    ) -> *mut c_char;
}

/// Set once a kernel failed for a reason that will not change (not
/// registered in this libtorch): later calls go straight to the fallback.
static LINEAR_MISSING: AtomicBool = AtomicBool::new(false);
static CONV2D_MISSING: AtomicBool = AtomicBool::new(false);

/// `x·wᵀ + b` by oneDNN's inner product, for 2-D CPU float tensors; `None`
/// when this libtorch cannot run it or autograd records (the kernel has no
/// backward), and the caller computes it another way.
pub fn linear(x: &Tensor, w: &Tensor, b: Option<&Tensor>) -> Option<Tensor> {
    if LINEAR_MISSING.load(Ordering::Relaxed) {
        return None;
    }
    let mut out: *mut c_void = std::ptr::null_mut();
    // SAFETY: the pointers are live at::Tensor objects owned by tch for the
    // call; the shim only reads them (copying the handles), catches every C++
    // exception, and on success hands back a new at::Tensor that we own.
    let err =
        unsafe { caffe_tch_onednn_linear(x.as_ptr() as *mut c_void, w.as_ptr() as *mut c_void, ptr(b), &mut out) };
    // SAFETY: what the shim returned, as it documents.
    unsafe { result(err, out, "no mkldnn::_linear_pointwise", &LINEAR_MISSING) }
}

/// Where a 2-D convolution's window goes: pad, stride and dilation, each
/// (height, width).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Conv2dGeometry {
    pub pad: [i64; 2],
    pub stride: [i64; 2],
    pub dilation: [i64; 2],
}

/// 2-D convolution weights (OIHW, CPU float) packed once into the order
/// oneDNN's convolution wants for inputs of `input_size`; `None` where this
/// libtorch cannot.
pub fn pack_conv2d_weights(w: &Tensor, g: &Conv2dGeometry, groups: i64, input_size: &[i64]) -> Option<Tensor> {
    if CONV2D_MISSING.load(Ordering::Relaxed) {
        return None;
    }
    let plain = w.f_detach().and_then(|d| d.f_contiguous()).and_then(|d| d.f_to_mkldnn(None)).ok()?;
    plain.f_mkldnn_reorder_conv2d_weight(g.pad, g.stride, g.dilation, groups, Some(input_size)).ok()
}

/// A 2-D convolution by oneDNN on weights plain or packed by
/// [`pack_conv2d_weights`], and a ReLU after it when `relu` is set (oneDNN's
/// post-op); the output keeps `x`'s memory order. `None` when this libtorch
/// cannot run it or autograd records.
pub fn conv2d(
    x: &Tensor,
    w: &Tensor,
    b: Option<&Tensor>,
    g: &Conv2dGeometry,
    groups: i64,
    relu: bool,
) -> Option<Tensor> {
    if CONV2D_MISSING.load(Ordering::Relaxed) {
        return None;
    }
    let geometry = [g.pad[0], g.pad[1], g.stride[0], g.stride[1], g.dilation[0], g.dilation[1]];
    let mut out: *mut c_void = std::ptr::null_mut();
    // SAFETY: as in `linear`; `geometry` outlives the call and holds the six
    // values the shim reads.
    let err = unsafe {
        caffe_tch_onednn_conv2d(
            x.as_ptr() as *mut c_void,
            w.as_ptr() as *mut c_void,
            ptr(b),
            geometry.as_ptr(),
            groups,
            relu,
            &mut out,
        )
    };
    // SAFETY: what the shim returned, as it documents.
    unsafe { result(err, out, "no mkldnn::_convolution_pointwise", &CONV2D_MISSING) }
}

fn ptr(t: Option<&Tensor>) -> *mut c_void {
    t.map_or(std::ptr::null_mut(), |t| t.as_ptr() as *mut c_void)
}

/// The shim's answer: a tensor we now own, or an error message (NUL-terminated,
/// malloc'd) that is read, freed, and remembered when it says the kernel is missing.
///
/// # Safety
/// `err` is null or a string the shim malloc'd; when it is null, `out` is a
/// heap at::Tensor the shim allocated for the caller.
unsafe fn result(err: *mut c_char, out: *mut c_void, missing_text: &str, missing: &AtomicBool) -> Option<Tensor> {
    let Some(msg) = (unsafe { crate::util::shim::take_error(err) }) else {
        return Some(unsafe { Tensor::from_ptr(out as *mut torch_sys::C_tensor) });
    };
    if msg.contains(missing_text) {
        missing.store(true, Ordering::Relaxed);
    }
    None
}
