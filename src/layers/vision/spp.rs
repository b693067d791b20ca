//! Spatial pyramid pooling, as Caffe builds it: level `l` (0-based, up to
//! `pyramid_height - 1`) pools the input into 2^l × 2^l bins with
//! `kernel = ceil(size / bins)`, `stride = kernel` and
//! `pad = (kernel·bins − size + 1) / 2` per axis (a plain Pooling layer, so
//! its ceil output size and AVE divisor rules hold). With one level the top
//! is that pooling's 4-D output; otherwise each level is flattened to
//! (N, C·bins²) and the levels are concatenated along axis 1, coarsest first.
//! The pooling geometry follows the input size, which may change per batch.
use crate::error::Context;
use crate::Result;
use tch::Tensor;

use super::pooling::Pooling;
use crate::bail;
use crate::layers::registry::{family_of, LayerInfo};
use crate::layers::{check_bottoms, Ctx, Layer, SetupOut, Shape};
use crate::proto::caffe::pooling_parameter::PoolMethod;
use crate::proto::caffe::spp_parameter::PoolMethod as SppPool;
use crate::proto::caffe::{LayerParameter, PoolingParameter, SppParameter};

pub fn register(r: &mut Vec<LayerInfo>) {
    r.push(LayerInfo {
        type_name: "SPP",
        family: family_of(file!()),
        params: "pyramid_height, pool (MAX, AVE, STOCHASTIC)",
        tests: "layers_vision (geometry and values against per-level Pooling, gradient check)",
        create: |p| Ok(Box::new(Spp::new(p)?)),
    });
}

pub struct Spp {
    p: SppParameter,
    levels: Vec<Pooling>,
    /// The (H, W) the levels were built for.
    built_for: Option<(i64, i64)>,
}

impl Spp {
    fn new(lp: &LayerParameter) -> Result<Self> {
        let p = lp.spp_param.unwrap_or_default();
        if p.pyramid_height.is_none() || p.pyramid_height() == 0 {
            bail!("spp_param.pyramid_height is required and must be positive");
        }
        if p.pyramid_height() > 31 {
            bail!("spp_param.pyramid_height {} is too large", p.pyramid_height());
        }
        Ok(Spp { p, levels: Vec::new(), built_for: None })
    }

    /// Caffe's pooling parameters for one pyramid level.
    pub fn level_param(level: u32, height: i64, width: i64, pool: SppPool) -> PoolingParameter {
        let bins = 1i64 << level;
        let axis = |size: i64| {
            let kernel = (size + bins - 1) / bins;
            let pad = (kernel * bins - size + 1) / 2;
            (kernel, pad)
        };
        let (kh, ph) = axis(height);
        let (kw, pw) = axis(width);
        let method = match pool {
            SppPool::Max => PoolMethod::Max,
            SppPool::Ave => PoolMethod::Ave,
            SppPool::Stochastic => PoolMethod::Stochastic,
        };
        PoolingParameter {
            pool: Some(method as i32),
            kernel_h: Some(kh as u32),
            kernel_w: Some(kw as u32),
            stride_h: Some(kh as u32),
            stride_w: Some(kw as u32),
            pad_h: Some(ph as u32),
            pad_w: Some(pw as u32),
            ..Default::default()
        }
    }

    /// Builds the levels for a (N, C, H, W) bottom and returns the top shape.
    fn build(&mut self, s: &[i64]) -> Result<Shape> {
        let (h, w) = (s[2], s[3]);
        if h <= 0 || w <= 0 {
            bail!("Input dimensions cannot be zero (got {s:?})");
        }
        self.levels.clear();
        let mut width = 0;
        let mut single = Vec::new();
        for level in 0..self.p.pyramid_height() {
            let mut pool = Pooling::from_param(Self::level_param(level, h, w, self.p.pool()));
            let out = pool.setup(&[s.to_vec()]).context(format!("pyramid level {level}"))?;
            let top = &out.tops[0];
            width += top[1] * top[2] * top[3];
            single.clone_from(top);
            self.levels.push(pool);
        }
        self.built_for = Some((h, w));
        Ok(if self.levels.len() == 1 { single } else { vec![s[0], width] })
    }
}

impl Layer for Spp {
    fn setup(&mut self, bottoms: &[Shape]) -> Result<SetupOut> {
        check_bottoms(bottoms, 1, 1)?;
        let s = &bottoms[0];
        if s.len() != 4 {
            bail!("Input must have 4 axes, corresponding to (num, channels, height, width); got {s:?}");
        }
        let top = self.build(s)?;
        Ok(SetupOut { tops: vec![top], params: vec![] })
    }

    fn forward(&mut self, ctx: &Ctx, bottoms: &[Tensor], _params: &[Tensor]) -> Result<Vec<Tensor>> {
        let x = &bottoms[0];
        let s = x.size();
        if self.built_for != Some((s[2], s[3])) {
            self.build(&s)?;
        }
        let mut outs = Vec::with_capacity(self.levels.len());
        for pool in &mut self.levels {
            let y = pool.forward(ctx, bottoms, &[])?.remove(0);
            outs.push(y);
        }
        if outs.len() == 1 {
            return Ok(outs);
        }
        let flat: Vec<Tensor> = outs.iter().map(|y| y.f_flatten(1, -1)).collect::<Result<_, _>>()?;
        Ok(vec![Tensor::f_cat(&flat, 1)?])
    }
}
