//! Memory order of 4-D CPU activations. oneDNN's convolutions and libtorch's
//! pooling run several times faster on channels-last (NHWC) tensors than on
//! NCHW ones (LeNet(10)'s 3x3 convs 2.6x, CaffeNet's pool1 4.5x), so
//! convolutions hand their layers NHWC activations and the order then flows
//! through element-wise ops, pooling and concatenation. Only the memory order
//! changes: shapes, values and every reader that copies data out (all go
//! through `contiguous()` or `reshape`) see Caffe's NCHW blob. CUDA keeps NCHW
//! (unmeasured there). `CAFFE_TCH_CHANNELS_LAST=0` turns it off (for benchmarks).
use std::ffi::{c_char, c_void};

use tch::{Device, Tensor};

use crate::Result;

extern "C" {
    fn caffe_tch_reshape_from_channels_last(
        x: *mut c_void,
        shape: *const i64,
        ndim: usize,
        out: *mut *mut c_void,
    ) -> *mut c_char;
}

fn enabled() -> bool {
    static ENABLED: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *ENABLED.get_or_init(|| std::env::var("CAFFE_TCH_CHANNELS_LAST").map_or(true, |v| v != "0"))
}

/// `x` in channels-last memory order (a no-op when it is already), for the
/// inputs of convolutions.
pub fn channels_last(x: &Tensor) -> Result<Tensor> {
    if !enabled() || x.dim() != 4 || x.device() != Device::Cpu {
        return Ok(x.shallow_clone());
    }
    let size = x.size();
    if size[1] == 1 {
        // One channel: NCHW and NHWC are the same bytes, but libtorch reads the
        // order from the strides and calls (N,1,H,W) with NCHW strides NCHW, so
        // the conv's output (and the pooling after it) would stay NCHW: give the
        // contiguous tensor NHWC strides instead (no copy): LeNet's step ~30% shorter.
        let x = x.f_contiguous()?;
        let (h, w) = (size[2], size[3]);
        return Ok(x.f_as_strided([size[0], 1, h, w], [h * w, 1, w, 1], None::<i64>)?);
    }
    to_nhwc(x)
}

/// A convolution's weights in the memory order of its channels-last input:
/// given NCHW weights and an NHWC input, libtorch reorders the weights inside
/// every call on a slower path than one explicit copy (CaffeNet's conv1 about 15%).
pub fn conv_weights_for(w: &Tensor, x: &Tensor) -> Result<Tensor> {
    if enabled() && w.dim() == 4 && w.size()[1] > 1 && x.dim() == 4 && x.device() == Device::Cpu {
        return to_nhwc(w);
    }
    Ok(w.shallow_clone())
}

/// tch has no memory-format argument: NHWC-contiguous, viewed back as NCHW
/// (a no-op when `x` is channels-last already).
fn to_nhwc(x: &Tensor) -> Result<Tensor> {
    // The check reads sizes and strides only; the three ops it spares cost
    // more than a small layer's own work at batch 1.
    if nhwc_contiguous(&x.size(), &x.stride()) {
        return Ok(x.shallow_clone());
    }
    Ok(x.f_permute([0, 2, 3, 1])?.f_contiguous()?.f_permute([0, 3, 1, 2])?)
}

/// Whether a 4-D NCHW-shaped tensor with these strides is contiguous when its
/// axes are read in NHWC order, by libtorch's rule (an axis of size 1 may have
/// any stride), so that `to_nhwc`'s copy would give it back unchanged.
fn nhwc_contiguous(size: &[i64], stride: &[i64]) -> bool {
    if size.len() != 4 || stride.len() != 4 {
        return false;
    }
    if size.contains(&0) {
        return true;
    }
    let mut expected = 1;
    for axis in [1, 3, 2, 0] {
        if size[axis] != 1 {
            if stride[axis] != expected {
                return false;
            }
            expected *= size[axis];
        }
    }
    true
}

/// Whether `x` is a 4-D tensor laid out channels-last.
pub fn is_channels_last(x: &Tensor) -> bool {
    if x.dim() != 4 {
        return false;
    }
    let (size, stride) = (x.size(), x.stride());
    size[1] > 1 && stride[1] == 1 && stride[3] == size[1]
}

/// `t` (broadcastable to `like`, e.g. a per-unit mask of shape 1×C×H×W) in
/// `like`'s memory order, so element-wise ops over the two take libtorch's
/// vectorised same-layout path: a DropIn `where` with an NCHW mask over NHWC
/// activations ran 7x slower, and its output came back NCHW.
pub fn in_layout_of(t: &Tensor, like: &Tensor) -> Result<Tensor> {
    if t.dim() == 4 && is_channels_last(like) {
        return to_nhwc(t);
    }
    Ok(t.shallow_clone())
}

/// `x` reshaped to `shape`, for a layer that merges axes (InnerProduct,
/// Flatten, Reshape). A channels-last `x` that autograd records, reshaped to
/// fewer axes (which libtorch does by a copy into NCHW order), goes through
/// one autograd node (`csrc/layout_reshape.cpp`) whose backward returns its
/// gradient channels-last, where libtorch's reshape would return it NCHW and
/// the layer below (pooling) would take its slow mixed-order path. Values and
/// gradients are the same either way.
pub fn reshape(x: &Tensor, shape: &[i64]) -> Result<Tensor> {
    if x.dim() == 4 && shape.len() < 4 && x.device() == Device::Cpu && x.requires_grad() && is_channels_last(x) {
        let mut out: *mut c_void = std::ptr::null_mut();
        // SAFETY: `x` is a live at::Tensor owned by tch and `shape` a live
        // slice for the call; the shim catches every C++ exception and on
        // success leaves `out` null or sets it to a new at::Tensor we own.
        let err = unsafe {
            caffe_tch_reshape_from_channels_last(x.as_ptr() as *mut c_void, shape.as_ptr(), shape.len(), &mut out)
        };
        // SAFETY: what the entry point returned, as `optional_tensor` expects.
        if let Some(y) = unsafe { crate::util::shim::optional_tensor(err, out) }? {
            return Ok(y);
        }
    }
    Ok(x.f_reshape(shape)?)
}
