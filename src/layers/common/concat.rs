//! Concat: joins its bottoms along `axis`.
use crate::Result;
use tch::Tensor;

use super::{at_least_bottoms, legacy_axis};
use crate::bail;
use crate::layers::registry::{family_of, LayerInfo};
use crate::layers::{canonical_axis, Ctx, Layer, SetupOut, Shape};
use crate::proto::caffe::{ConcatParameter, LayerParameter};

pub fn register(r: &mut Vec<LayerInfo>) {
    r.push(LayerInfo {
        type_name: "Concat",
        family: family_of(file!()),
        params: "axis, concat_dim (legacy; not both)",
        tests: "layers_common: concat_* (values, legacy concat_dim, shape mismatch error, gradient check)",
        create: |p| Ok(Box::new(Concat::new(p)?)),
    });
}

pub struct Concat {
    p: ConcatParameter,
}

impl Concat {
    fn new(lp: &LayerParameter) -> Result<Self> {
        let p = lp.concat_param.unwrap_or_default();
        if p.axis.is_some() && p.concat_dim.is_some() {
            bail!("Either axis or concat_dim should be specified; not both.");
        }
        Ok(Concat { p })
    }

    fn axis(&self, ndim: usize) -> Result<usize> {
        match self.p.concat_dim {
            Some(d) => legacy_axis(d, ndim, "concat_dim"),
            None => canonical_axis(self.p.axis(), ndim),
        }
    }

    /// The top shape, after checking the bottoms agree on every other axis.
    fn top_shape(&self, bottoms: &[Shape]) -> Result<(usize, Shape)> {
        let first = &bottoms[0];
        let axis = self.axis(first.len())?;
        let mut top = first.clone();
        for (i, b) in bottoms.iter().enumerate().skip(1) {
            if b.len() != first.len() {
                bail!("All inputs must have the same #axes: bottom[0] is {first:?}, bottom[{i}] is {b:?}");
            }
            if let Some(j) = (0..b.len()).find(|&j| j != axis && b[j] != first[j]) {
                bail!(
                    "All inputs must have the same shape, except at concat axis {axis}: bottom[0] {first:?} and bottom[{i}] {b:?} differ at axis {j}"
                );
            }
            top[axis] += b[axis];
        }
        Ok((axis, top))
    }
}

impl Layer for Concat {
    fn setup(&mut self, bottoms: &[Shape]) -> Result<SetupOut> {
        at_least_bottoms(bottoms, 1)?;
        let (_, top) = self.top_shape(bottoms)?;
        Ok(SetupOut { tops: vec![top], params: vec![] })
    }

    fn forward(&mut self, _ctx: &Ctx, bottoms: &[Tensor], _params: &[Tensor]) -> Result<Vec<Tensor>> {
        let shapes: Vec<Shape> = bottoms.iter().map(|b| b.size()).collect();
        let (axis, _) = self.top_shape(&shapes)?;
        Ok(vec![Tensor::f_cat(bottoms, axis as i64)?])
    }
}
