//! Local response normalization, Caffe's two regions:
//! - ACROSS_CHANNELS: `scale = k + alpha/n · Σ x²` over `local_size` channels
//!   centred on each channel (zero padded), `top = x · scale^-beta`;
//! - WITHIN_CHANNEL: Caffe composes it from layers (square, AVE pooling with
//!   pad (n-1)/2, power with shift 1): `top = x · (1 + alpha · avg x²)^-beta`,
//!   where the average is over the n×n window and always divides by n² (with
//!   stride 1 and that pad no window is clipped by the padded border).
//!   `k` is not used there.
//!
//! Both window sums are one average-pooling kernel over `x²`, so forward and
//! backward are a handful of vectorised ops. Caffe's backward for both is the
//! true gradient, which autograd gives.
use tch::Tensor;

use crate::layer_bail;
use crate::layers::registry::LayerInfo;
use crate::layers::{check_bottoms, Ctx, Layer, LayerResult, SetupOut, Shape};
use crate::proto::caffe::lrn_parameter::NormRegion;
use crate::proto::caffe::{LayerParameter, LrnParameter};

pub fn register(r: &mut Vec<LayerInfo>) {
    r.push(LayerInfo {
        type_name: "LRN",
        family: "vision/lrn.rs",
        params: "local_size, alpha, beta, k, norm_region (ACROSS_CHANNELS, WITHIN_CHANNEL)",
        tests: "parity (cifar10_full: WITHIN_CHANNEL), naive-reference tests and gradient checks for both regions",
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
    fn new(lp: &LayerParameter) -> LayerResult<Self> {
        let p: LrnParameter = lp.lrn_param.clone().unwrap_or_default();
        let size = p.local_size() as i64;
        if size % 2 != 1 {
            layer_bail!("LRN only supports odd values for local_size, got {size}");
        }
        Ok(Lrn { size, alpha: p.alpha() as f64, beta: p.beta() as f64, k: p.k() as f64, region: p.norm_region() })
    }
}

impl Layer for Lrn {
    fn setup(&mut self, bottoms: &[Shape]) -> LayerResult<SetupOut> {
        check_bottoms(bottoms, 1, 1)?;
        let s = &bottoms[0];
        if s.len() != 4 {
            layer_bail!("Input must have 4 axes, corresponding to (num, channels, height, width); got {s:?}");
        }
        Ok(SetupOut { tops: vec![s.clone()], params: vec![] })
    }

    fn forward(&mut self, _ctx: &Ctx, bottoms: &[Tensor], _params: &[Tensor]) -> LayerResult<Vec<Tensor>> {
        let x = &bottoms[0];
        let n = self.size;
        let pad = (n - 1) / 2;
        let sq = x.f_square()?;
        let scale = match self.region {
            NormRegion::AcrossChannels => {
                // The channel axis becomes the pooled height of a one-channel image.
                let s = x.size();
                let planes = sq.f_reshape([s[0], 1, s[1], s[2] * s[3]])?;
                let avg = planes.f_avg_pool2d([n, 1], [1, 1], [pad, 0], false, true, None::<i64>)?;
                avg.f_reshape(s.as_slice())?.f_mul_scalar(self.alpha)?.f_add_scalar(self.k)?
            }
            NormRegion::WithinChannel => {
                let avg = sq.f_avg_pool2d([n, n], [1, 1], [pad, pad], false, true, None::<i64>)?;
                avg.f_mul_scalar(self.alpha)?.f_add_scalar(1.0)?
            }
        };
        Ok(vec![x.f_mul(&scale.f_pow_tensor_scalar(-self.beta)?)?])
    }
}
