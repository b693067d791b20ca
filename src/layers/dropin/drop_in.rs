//! DropIn: mixes a skip path with a new layer's output, unit by unit (see mod.rs).
use crate::Result;
use tch::{Kind, Tensor};

use crate::bail;
use crate::layers::layout;
use crate::layers::registry::{family_of, LayerInfo};
use crate::layers::{check_bottoms, Ctx, Layer, SetupOut, Shape};
use crate::proto::caffe::{DropInParameter, LayerParameter};

pub fn register(r: &mut Vec<LayerInfo>) {
    r.push(LayerInfo {
        type_name: "DropIn",
        family: family_of(file!()),
        params: "dropin_param.dropin_length (gradual mode), dropin_start, dropin_ratio (regularizing mode)",
        tests: "tests/dropin.rs: τ=0, τ≥start+d, midpoint ⌈q·n⌉, empirical mix, TEST expectation, gradient routing; gradient check",
        create: |p| Ok(Box::new(DropIn::new(p)?)),
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
        // A bottom whose size only the forward knows (a Filter's, a
        // DetectionOutput's) can differ from set-up.
        if new.size() != shape {
            bail!("DropIn needs bottoms of the same shape, got {shape:?} (skip path) and {:?} (new layer)", new.size());
        }
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
            Ok(vec![skip.f_mul_scalar(q)?.f_add(&new.f_mul_scalar(1.0 - q)?)?])
        }
    }
}
