//! ArgMax: the indices (and optionally the values) of the top k entries.
use crate::Result;
use tch::Tensor;

use crate::bail;
use crate::layers::registry::{family_of, LayerInfo};
use crate::layers::{canonical_axis, check_bottoms, count, Ctx, Layer, SetupOut, Shape};
use crate::proto::caffe::{ArgMaxParameter, LayerParameter};

pub fn register(r: &mut Vec<LayerInfo>) {
    r.push(LayerInfo {
        type_name: "ArgMax",
        family: family_of(file!()),
        params: "out_max_val, top_k, axis (unset: top is (N, 1 or 2, top_k) over the flattened item, indices then values); ties go to the higher index, as Caffe's sort does; no backward",
        tests: "layers_common: argmax_* (layouts with and without axis, out_max_val, top_k order, ties)",
        create: |p| Ok(Box::new(ArgMax::new(p)?)),
    });
}

/// ArgMax: the top_k indices (or values) along `axis`, or over each flattened
/// item when `axis` is unset. Not differentiable: its top is detached.
pub struct ArgMax {
    p: ArgMaxParameter,
    axis: Option<usize>,
}

impl ArgMax {
    fn new(lp: &LayerParameter) -> Result<Self> {
        let p = lp.argmax_param.unwrap_or_default();
        if p.top_k() < 1 {
            bail!("argmax_param.top_k must not be less than 1");
        }
        Ok(ArgMax { p, axis: None })
    }

    fn top_shape(&self, bottom: &[i64]) -> Shape {
        let k = self.p.top_k() as i64;
        match self.axis {
            Some(a) => {
                let mut s = bottom.to_vec();
                s[a] = k;
                s
            }
            None => {
                // Caffe's layout: at least 3 axes, (N, 1, top_k, 1...), or
                // (N, 2, top_k, ...) holding indices then values.
                let mut s = vec![1i64; bottom.len().max(3)];
                s[0] = bottom[0];
                s[1] = if self.p.out_max_val() { 2 } else { 1 };
                s[2] = k;
                s
            }
        }
    }
}

/// The top k of `x` along `dim`, ordered as Caffe's `partial_sort` with
/// `greater<pair<value, index>>`: by value descending, and among equal values
/// the higher index first. Sorting the flipped tensor stably gives that order.
fn caffe_top_k(x: &Tensor, dim: i64, k: i64) -> Result<(Tensor, Tensor)> {
    let n = x.size()[dim as usize];
    let (values, flipped_idx) = x.f_flip([dim])?.f_sort_stable(true, dim, true)?;
    let values = values.f_narrow(dim, 0, k)?;
    let idx = flipped_idx.f_narrow(dim, 0, k)?.f_neg()?.f_add_scalar(n - 1)?;
    Ok((values, idx))
}

impl Layer for ArgMax {
    fn setup(&mut self, bottoms: &[Shape]) -> Result<SetupOut> {
        check_bottoms(bottoms, 1, 1)?;
        let s = &bottoms[0];
        let k = self.p.top_k() as i64;
        if s.is_empty() {
            bail!("ArgMax needs a bottom with at least one axis");
        }
        match self.p.axis {
            Some(a) => {
                let axis = canonical_axis(a, s.len())?;
                if k > s[axis] {
                    bail!(
                        "top_k ({k}) must be less than or equal to the dimension of the axis ({} at axis {axis})",
                        s[axis]
                    );
                }
                self.axis = Some(axis);
            }
            None => {
                let dim = count(s, 1, s.len());
                if k > dim {
                    bail!("top_k ({k}) must be less than or equal to the dimension of the flattened bottom blob per instance ({dim})");
                }
            }
        }
        Ok(SetupOut { tops: vec![self.top_shape(s)], params: vec![] })
    }

    fn forward(&mut self, _ctx: &Ctx, bottoms: &[Tensor], _params: &[Tensor]) -> Result<Vec<Tensor>> {
        let x = bottoms[0].detach();
        let shape = x.size();
        let k = self.p.top_k() as i64;
        let top = match self.axis {
            Some(a) => {
                let (values, idx) = caffe_top_k(&x, a as i64, k)?;
                if self.p.out_max_val() {
                    values
                } else {
                    idx.f_to_kind(x.kind())?
                }
            }
            None => {
                let flat = x.f_reshape([shape[0], -1])?;
                if k > flat.size()[1] {
                    bail!("top_k ({k}) exceeds the flattened item size {}", flat.size()[1]);
                }
                let (values, idx) = caffe_top_k(&flat, 1, k)?;
                let idx = idx.f_to_kind(x.kind())?;
                if self.p.out_max_val() {
                    Tensor::f_cat(&[idx, values], 1)?
                } else {
                    idx
                }
            }
        };
        Ok(vec![top.f_reshape(self.top_shape(&shape).as_slice())?])
    }
}
