//! Reshape: a new shape for the same data, with Caffe's 0 and -1 rules.
use crate::Result;
use tch::Tensor;

use super::forbid_in_place;
use crate::bail;
use crate::layers::registry::{family_of, LayerInfo};
use crate::layers::{check_bottoms, count, Ctx, Layer, SetupOut, Shape};
use crate::proto::caffe::LayerParameter;

pub fn register(r: &mut Vec<LayerInfo>) {
    r.push(LayerInfo {
        type_name: "Reshape",
        family: family_of(file!()),
        params: "shape (0 copies a bottom dim, one -1 is inferred), axis, num_axes (no in-place, as in Caffe)",
        tests: "layers_common: reshape_* (0/-1 inference, axis/num_axes, errors, new batch size, gradient check)",
        create: |p| Ok(Box::new(Reshape::new(p)?)),
    });
}

/// Reshape, with Caffe's rules: the new dims replace bottom axes
/// `axis .. axis + num_axes` (num_axes -1: to the end; a negative axis counts
/// from the end, -1 meaning "after the last axis"); 0 copies the bottom dim
/// at the same position; one -1 takes whatever count is left.
pub struct Reshape {
    dims: Vec<i64>,
    axis: i32,
    num_axes: i32,
    copy_axes: Vec<usize>,
    inferred_axis: Option<usize>,
    constant_count: i64,
}

impl Reshape {
    fn new(lp: &LayerParameter) -> Result<Self> {
        forbid_in_place(lp)?;
        let p = lp.reshape_param.clone().unwrap_or_default();
        let dims = p.shape.as_ref().map(|s| s.dim.clone()).unwrap_or_default();
        let mut copy_axes = vec![];
        let mut inferred_axis = None;
        let mut constant_count = 1i64;
        for (i, &d) in dims.iter().enumerate() {
            match d {
                0 => copy_axes.push(i),
                -1 => {
                    if inferred_axis.is_some() {
                        bail!("new shape {dims:?} contains multiple -1 dims; at most a single (1) value of -1 may be specified");
                    }
                    inferred_axis = Some(i);
                }
                d if d < -1 => bail!("new shape {dims:?} has an invalid dim {d} (use 0 to copy, -1 to infer)"),
                d => constant_count *= d,
            }
        }
        if p.num_axes() < -1 {
            bail!("num_axes must be >= 0, or -1 for all; got {}", p.num_axes());
        }
        Ok(Reshape { dims, axis: p.axis(), num_axes: p.num_axes(), copy_axes, inferred_axis, constant_count })
    }

    fn top_shape(&self, bottom: &[i64]) -> Result<Shape> {
        let n = bottom.len() as i64;
        let start = if self.axis >= 0 { self.axis as i64 } else { n + self.axis as i64 + 1 };
        if start < 0 || start > n {
            bail!("axis {} out of range for a {n}-D input blob {bottom:?}", self.axis);
        }
        let start = start as usize;
        let end = if self.num_axes == -1 { bottom.len() } else { start + self.num_axes as usize };
        if end > bottom.len() {
            bail!("end_axis = axis + num_axes ({end}) is out of range for a {n}-D input blob {bottom:?}");
        }
        let mut top = bottom[..start].to_vec();
        top.extend_from_slice(&self.dims);
        top.extend_from_slice(&bottom[end..]);
        for &c in &self.copy_axes {
            if start + c >= bottom.len() {
                bail!("new shape {:?} contains a 0 at position {c}, but there was no corresponding bottom axis to copy (bottom {bottom:?})", self.dims);
            }
            top[start + c] = bottom[start + c];
        }
        let bottom_count: i64 = bottom.iter().product();
        if let Some(i) = self.inferred_axis {
            let mut explicit = self.constant_count * count(bottom, 0, start) * count(bottom, end, bottom.len());
            for &c in &self.copy_axes {
                explicit *= top[start + c];
            }
            if explicit == 0 || bottom_count % explicit != 0 {
                bail!(
                    "bottom count ({bottom_count}, shape {bottom:?}) must be divisible by the product of the specified dimensions ({explicit}) to infer the -1 in {:?}",
                    self.dims
                );
            }
            top[start + i] = bottom_count / explicit;
        }
        let top_count: i64 = top.iter().product();
        if top_count != bottom_count {
            bail!("output count must match input count: new shape {top:?} has {top_count} elements, bottom {bottom:?} has {bottom_count}");
        }
        Ok(top)
    }
}

impl Layer for Reshape {
    fn setup(&mut self, bottoms: &[Shape]) -> Result<SetupOut> {
        check_bottoms(bottoms, 1, 1)?;
        Ok(SetupOut { tops: vec![self.top_shape(&bottoms[0])?], params: vec![] })
    }

    fn forward(&mut self, _ctx: &Ctx, bottoms: &[Tensor], _params: &[Tensor]) -> Result<Vec<Tensor>> {
        let x = &bottoms[0];
        Ok(vec![crate::layers::layout::reshape(x, &self.top_shape(&x.size())?)?])
    }
}
