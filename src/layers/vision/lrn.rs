//! Local response normalization, Caffe's two regions:
//! - ACROSS_CHANNELS: `scale = k + alpha/n · Σ x²` over `local_size` channels
//!   centred on each channel (zero padded), `top = x · scale^-beta`;
//! - WITHIN_CHANNEL: Caffe composes it from layers (square, AVE pooling with
//!   pad (n-1)/2, power with shift 1): `top = x · (1 + alpha · avg x²)^-beta`,
//!   where the average is over the n×n window and always divides by n² (with
//!   stride 1 and that pad no window is clipped by the padded border).
//!   `k` is not used there.
//!
//! On the CPU both regions are `csrc/lrn.cpp`: one pass forward, and where
//! autograd records, one autograd node whose backward is Caffe's (one pass
//! too). Elsewhere (CUDA) the layer is a handful of vectorised whole-tensor
//! ops and autograd gives the backward, which for both regions is the true
//! gradient, as Caffe's is.
use std::ffi::{c_char, c_void};

use crate::Result;
use tch::Tensor;

use crate::bail;
use crate::layers::registry::{family_of, LayerInfo};
use crate::layers::{check_bottoms, Ctx, Layer, SetupOut, Shape};
use crate::proto::caffe::lrn_parameter::NormRegion;
use crate::proto::caffe::{LayerParameter, LrnParameter};

pub fn register(r: &mut Vec<LayerInfo>) {
    r.push(LayerInfo {
        type_name: "LRN",
        family: family_of(file!()),
        params: "local_size, alpha, beta, k, norm_region (ACROSS_CHANNELS, WITHIN_CHANNEL)",
        tests: "parity (cifar10_full: WITHIN_CHANNEL), naive-reference tests and gradient checks for both regions; the CPU kernel (both regions) against Caffe's forward and backward in NCHW and channels-last, float and double",
        create: |p| Ok(Box::new(Lrn::new(p)?)),
    });
}

pub struct Lrn {
    size: i64,
    alpha: f64,
    beta: f64,
    k: f64,
    region: NormRegion,
}

impl Lrn {
    fn new(lp: &LayerParameter) -> Result<Self> {
        let p: LrnParameter = lp.lrn_param.unwrap_or_default();
        let size = p.local_size() as i64;
        if size % 2 != 1 {
            bail!("LRN only supports odd values for local_size, got {size}");
        }
        Ok(Lrn { size, alpha: p.alpha() as f64, beta: p.beta() as f64, k: p.k() as f64, region: p.norm_region() })
    }
}

impl Layer for Lrn {
    fn setup(&mut self, bottoms: &[Shape]) -> Result<SetupOut> {
        check_bottoms(bottoms, 1, 1)?;
        let s = &bottoms[0];
        if s.len() != 4 {
            bail!("Input must have 4 axes, corresponding to (num, channels, height, width); got {s:?}");
        }
        Ok(SetupOut { tops: vec![s.clone()], params: vec![] })
    }

    fn forward(&mut self, _ctx: &Ctx, bottoms: &[Tensor], _params: &[Tensor]) -> Result<Vec<Tensor>> {
        let x = &bottoms[0];
        let n = self.size;
        let pad = (n - 1) / 2;
        if let Some(y) = cpu_lrn(x, self.region, n, self.alpha, self.beta, self.k)? {
            return Ok(vec![y]);
        }
        let scale = match self.region {
            NormRegion::AcrossChannels => {
                // Σ over the channel window as n shifted slices of the
                // zero-padded squares: cheaper than a pooling kernel both ways.
                let channels = x.size()[1];
                let padded = x.f_square()?.f_constant_pad_nd([0, 0, 0, 0, pad, pad])?;
                let mut sum = padded.f_narrow(1, 0, channels)?;
                for i in 1..n {
                    sum = sum.f_add(&padded.f_narrow(1, i, channels)?)?;
                }
                sum.f_mul_scalar(self.alpha / n as f64)?.f_add_scalar(self.k)?
            }
            NormRegion::WithinChannel => {
                let avg = x.f_square()?.f_avg_pool2d([n, n], [1, 1], [pad, pad], false, true, None::<i64>)?;
                avg.f_mul_scalar(self.alpha)?.f_add_scalar(1.0)?
            }
        };
        // scale^-beta as exp(-beta·ln scale): libtorch's pow with a general
        // exponent is scalar code, several times slower on the CPU.
        let factor = scale.f_log()?.f_mul_scalar(-self.beta)?.f_exp()?;
        Ok(vec![x.f_mul(&factor)?])
    }
}

extern "C" {
    fn caffe_tch_lrn(
        x: *mut c_void,
        region: i64,
        size: i64,
        alpha: f64,
        beta: f64,
        k: f64,
        out: *mut *mut c_void,
    ) -> *mut c_char;
}

/// The LRN of `csrc/lrn.cpp` (one pass forward, and one autograd node with
/// Caffe's backward where autograd records), for a CPU float or double blob
/// in NCHW or channels-last order; `None` elsewhere.
fn cpu_lrn(x: &Tensor, region: NormRegion, size: i64, alpha: f64, beta: f64, k: f64) -> Result<Option<Tensor>> {
    let region = match region {
        NormRegion::AcrossChannels => 0,
        NormRegion::WithinChannel => 1,
    };
    let mut out: *mut c_void = std::ptr::null_mut();
    // SAFETY: `x` is a live at::Tensor owned by tch for the call; the shim
    // only reads it, catches every C++ exception, and on success either leaves
    // `out` null or sets it to a new at::Tensor that we own.
    let err = unsafe { caffe_tch_lrn(x.as_ptr() as *mut c_void, region, size, alpha, beta, k, &mut out) };
    // SAFETY: what the entry point returned, as `optional_tensor` expects.
    unsafe { crate::util::shim::optional_tensor(err, out) }
}
