//! Slice: cuts its bottom along `axis` into its tops.
use crate::Result;
use tch::Tensor;

use super::legacy_axis;
use crate::bail;
use crate::layers::registry::{family_of, LayerInfo};
use crate::layers::{canonical_axis, check_bottoms, Ctx, Layer, SetupOut, Shape};
use crate::proto::caffe::{LayerParameter, SliceParameter};

pub fn register(r: &mut Vec<LayerInfo>) {
    r.push(LayerInfo {
        type_name: "Slice",
        family: family_of(file!()),
        params: "axis, slice_point (or an equal split over the tops), slice_dim (legacy; not both)",
        tests: "layers_common: slice_* (slice points, equal split, legacy slice_dim, bad points, gradient check)",
        create: |p| Ok(Box::new(Slice::new(p)?)),
    });
}

pub struct Slice {
    p: SliceParameter,
    tops: usize,
}

impl Slice {
    fn new(lp: &LayerParameter) -> Result<Self> {
        let p = lp.slice_param.clone().unwrap_or_default();
        if p.axis.is_some() && p.slice_dim.is_some() {
            bail!("Either axis or slice_dim should be specified; not both.");
        }
        Ok(Slice { p, tops: lp.top.len() })
    }

    /// The slice axis and each top's extent along it.
    fn sizes(&self, bottom: &[i64]) -> Result<(usize, Vec<i64>)> {
        let axis = match self.p.slice_dim {
            Some(d) => legacy_axis(d, bottom.len(), "slice_dim")?,
            None => canonical_axis(self.p.axis(), bottom.len())?,
        };
        let dim = bottom[axis];
        let n = self.tops as i64;
        if self.tops == 0 {
            bail!("Slice needs at least one top");
        }
        if self.p.slice_point.is_empty() {
            if dim % n != 0 {
                bail!("Number of top blobs ({n}) should evenly divide input slice axis ({dim}, axis {axis})");
            }
            return Ok((axis, vec![dim / n; self.tops]));
        }
        if self.p.slice_point.len() != self.tops - 1 {
            bail!(
                "{} slice_point(s) given for {} tops: give one fewer than the tops",
                self.p.slice_point.len(),
                self.tops
            );
        }
        if n > dim {
            bail!("{n} tops cannot slice axis {axis} of size {dim}");
        }
        let mut sizes = Vec::with_capacity(self.tops);
        let mut prev = 0i64;
        for &pt in &self.p.slice_point {
            let pt = pt as i64;
            if pt <= prev {
                bail!("slice_point values must be strictly increasing and positive: {:?}", self.p.slice_point);
            }
            sizes.push(pt - prev);
            prev = pt;
        }
        if prev > dim {
            bail!("slice_point {prev} is past the end of axis {axis} (size {dim})");
        }
        // A last point equal to the size leaves an empty last top, as in Caffe.
        sizes.push(dim - prev);
        Ok((axis, sizes))
    }
}

impl Layer for Slice {
    fn setup(&mut self, bottoms: &[Shape]) -> Result<SetupOut> {
        check_bottoms(bottoms, 1, 1)?;
        let (axis, sizes) = self.sizes(&bottoms[0])?;
        let tops = sizes
            .iter()
            .map(|&s| {
                let mut t = bottoms[0].clone();
                t[axis] = s;
                t
            })
            .collect();
        Ok(SetupOut { tops, params: vec![] })
    }

    fn forward(&mut self, _ctx: &Ctx, bottoms: &[Tensor], _params: &[Tensor]) -> Result<Vec<Tensor>> {
        let x = &bottoms[0];
        let (axis, sizes) = self.sizes(&x.size())?;
        Ok(x.f_split_with_sizes(sizes.as_slice(), axis as i64)?)
    }
}
