//! The paper's layers (Smith, Hand & Doster, "Gradual DropIn of Layers to Train
//! Very Deep Neural Networks", CVPR 2016):
//!
//! * DropIn mixes a skip path `bottom[0]` = y(ℓ̂) with a new layer's output
//!   `bottom[1]` = y(ℓ), unit by unit: top = r·y(ℓ) + (1−r)·y(ℓ̂).
//!   - Gradual mode (`dropin_length` d > 0): at iteration τ,
//!     p = clamp((τ − dropin_start)/d, 0, 1), q = 1 − p; within each sample the
//!     C·H·W units in index order λ take y(ℓ̂) when λ < q·n, else y(ℓ).
//!   - Regularizing mode (d = 0): in TRAIN each unit takes y(ℓ̂) with probability
//!     q = `dropin_ratio`, redrawn every pass; in TEST top = q·y(ℓ̂) + (1−q)·y(ℓ).
//! * Resize changes a blob's height, width and channel count so DropIn can join
//!   layers of different sizes.
use crate::Result;
use tch::{Kind, Tensor};

use super::layout;
use super::{check_bottoms, Ctx, Layer, SetupOut, Shape};
use crate::bail;
use crate::layers::registry::{family_of, LayerInfo};
use crate::proto::caffe::resize_parameter::Interpolation;
use crate::proto::caffe::{DropInParameter, LayerParameter, ResizeParameter};

pub fn register(r: &mut Vec<LayerInfo>) {
    r.push(LayerInfo {
        type_name: "DropIn",
        family: family_of(file!()),
        params: "dropin_param.dropin_length (gradual mode), dropin_start, dropin_ratio (regularizing mode)",
        tests: "tests/dropin.rs: τ=0, τ≥start+d, midpoint ⌈q·n⌉, empirical mix, TEST expectation, gradient routing; gradient check",
        create: |p| Ok(Box::new(DropIn::new(p)?)),
    });
    r.push(LayerInfo {
        type_name: "Resize",
        family: family_of(file!()),
        params: "resize_param.height, width, channels, interpolation (BILINEAR, NEAREST); optional second bottom gives the target shape",
        tests: "tests/dropin.rs: shapes, channel rules; gradient check",
        create: |p| Ok(Box::new(Resize::new(p))),
    });
}

pub struct DropIn {
    p: DropInParameter,
}

impl DropIn {
    fn new(lp: &LayerParameter) -> Result<Self> {
        let p = lp.dropin_param.unwrap_or_default();
        if p.dropin_length() == 0 && !(0.0..=1.0).contains(&p.dropin_ratio()) {
            bail!("dropin_ratio must be in [0, 1], got {}", p.dropin_ratio());
        }
        Ok(DropIn { p })
    }

    /// The fraction q of units that take the skip path y(ℓ̂) at iteration τ (gradual mode).
    pub fn skip_fraction(&self, iteration: i64) -> f64 {
        let d = self.p.dropin_length() as f64;
        let start = self.p.dropin_start() as f64;
        let progress = ((iteration as f64 - start) / d).clamp(0.0, 1.0);
        1.0 - progress
    }

    /// How many of `n` units (λ < q·n) take the skip path: ⌈q·n⌉.
    pub fn skip_units(q: f64, n: i64) -> i64 {
        ((q * n as f64).ceil() as i64).clamp(0, n)
    }
}

impl Layer for DropIn {
    fn setup(&mut self, bottoms: &[Shape]) -> Result<SetupOut> {
        check_bottoms(bottoms, 2, 2)?;
        if bottoms[0] != bottoms[1] {
            bail!(
                "DropIn needs bottoms of the same shape, got {:?} (skip path) and {:?} (new layer); add a Resize layer to match them",
                bottoms[0], bottoms[1]
            );
        }
        if bottoms[0].is_empty() {
            bail!("DropIn needs at least a batch axis");
        }
        Ok(SetupOut { tops: vec![bottoms[0].clone()], params: vec![] })
    }

    fn forward(&mut self, ctx: &Ctx, bottoms: &[Tensor], _params: &[Tensor]) -> Result<Vec<Tensor>> {
        let (skip, new) = (&bottoms[0], &bottoms[1]);
        let shape = skip.size();
        let n: i64 = shape[1..].iter().product();
        if self.p.dropin_length() > 0 {
            let q = self.skip_fraction(ctx.iteration);
            let k = DropIn::skip_units(q, n);
            if k == 0 {
                return Ok(vec![new.shallow_clone()]);
            }
            if k == n {
                return Ok(vec![skip.shallow_clone()]);
            }
            let mut unit_shape = vec![1i64];
            unit_shape.extend(&shape[1..]);
            let take_skip = Tensor::arange(n, (Kind::Int64, skip.device())).lt(k).reshape(unit_shape.as_slice());
            let take_skip = layout::in_layout_of(&take_skip, skip)?;
            return Ok(vec![skip.f_where_self(&take_skip, new)?]);
        }
        let q = self.p.dropin_ratio() as f64;
        if ctx.train() {
            // empty_like keeps skip's memory order (see layout.rs).
            let take_skip = tch::no_grad(|| skip.empty_like().bernoulli_float_(q).gt(0.5));
            Ok(vec![skip.f_where_self(&take_skip, new)?])
        } else {
            Ok(vec![skip * q + new * (1.0 - q)])
        }
    }
}

pub struct Resize {
    p: ResizeParameter,
    target: Shape,
}

impl Resize {
    fn new(lp: &LayerParameter) -> Self {
        Resize { p: lp.resize_param.unwrap_or_default(), target: vec![] }
    }
}

impl Layer for Resize {
    fn setup(&mut self, bottoms: &[Shape]) -> Result<SetupOut> {
        check_bottoms(bottoms, 1, 2)?;
        let s = &bottoms[0];
        if s.len() != 4 {
            bail!("Resize needs a 4-D bottom (N, C, H, W), got {s:?}");
        }
        let mut t = s.clone();
        if let Some(r) = bottoms.get(1) {
            if r.len() != 4 {
                bail!("Resize's second bottom gives the target shape and must be 4-D, got {r:?}");
            }
            t[1..].copy_from_slice(&r[1..]);
        }
        if let Some(c) = self.p.channels {
            t[1] = c as i64;
        }
        if let Some(h) = self.p.height {
            t[2] = h as i64;
        }
        if let Some(w) = self.p.width {
            t[3] = w as i64;
        }
        if t.iter().skip(1).any(|&d| d <= 0) {
            bail!("Resize target {t:?} has a zero dimension");
        }
        self.target = t.clone();
        Ok(SetupOut { tops: vec![t], params: vec![] })
    }

    fn forward(&mut self, _ctx: &Ctx, bottoms: &[Tensor], _params: &[Tensor]) -> Result<Vec<Tensor>> {
        let x = &bottoms[0];
        let s = x.size();
        let (c, h, w) = (self.target[1], self.target[2], self.target[3]);
        // Channels: fewer keeps the first c; more repeats them cyclically.
        let x = if c == s[1] {
            x.shallow_clone()
        } else {
            let idx = Tensor::arange(c, (Kind::Int64, x.device())).remainder(s[1]);
            x.f_index_select(1, &idx)?
        };
        let y = if (h, w) == (s[2], s[3]) {
            x
        } else {
            match self.p.interpolation() {
                Interpolation::Bilinear => x.f_upsample_bilinear2d([h, w], false, None, None)?,
                Interpolation::Nearest => x.f_upsample_nearest2d([h, w], None, None)?,
            }
        };
        Ok(vec![y])
    }
}
