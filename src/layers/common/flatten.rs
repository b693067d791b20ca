//! Flatten: merges the axes from `axis` to `end_axis` into one.
use crate::Result;
use tch::Tensor;

use super::forbid_in_place;
use crate::bail;
use crate::layers::registry::{family_of, LayerInfo};
use crate::layers::{canonical_axis, check_bottoms, count, Ctx, Layer, SetupOut, Shape};
use crate::proto::caffe::LayerParameter;

pub fn register(r: &mut Vec<LayerInfo>) {
    r.push(LayerInfo {
        type_name: "Flatten",
        family: family_of(file!()),
        params: "axis, end_axis (no in-place, as in Caffe)",
        tests: "layers_common: flatten_* (shapes, gradient check)",
        create: |p| Ok(Box::new(Flatten::new(p)?)),
    });
}

pub struct Flatten {
    axis: i32,
    end_axis: i32,
}

impl Flatten {
    fn new(lp: &LayerParameter) -> Result<Self> {
        forbid_in_place(lp)?;
        let p = lp.flatten_param.unwrap_or_default();
        Ok(Flatten { axis: p.axis(), end_axis: p.end_axis() })
    }

    fn top_shape(&self, s: &[i64]) -> Result<Shape> {
        let start = canonical_axis(self.axis, s.len())?;
        let end = canonical_axis(self.end_axis, s.len())?;
        // Caffe's count(start, end + 1) needs start <= end + 1; end == start - 1
        // flattens nothing and inserts a unit axis.
        if end + 1 < start {
            bail!("Flatten end_axis {end} is before axis {start} (bottom {s:?})");
        }
        let mut top = s[..start].to_vec();
        top.push(count(s, start, end + 1));
        top.extend_from_slice(&s[end + 1..]);
        Ok(top)
    }
}

impl Layer for Flatten {
    fn setup(&mut self, bottoms: &[Shape]) -> Result<SetupOut> {
        check_bottoms(bottoms, 1, 1)?;
        Ok(SetupOut { tops: vec![self.top_shape(&bottoms[0])?], params: vec![] })
    }

    fn forward(&mut self, _ctx: &Ctx, bottoms: &[Tensor], _params: &[Tensor]) -> Result<Vec<Tensor>> {
        let x = &bottoms[0];
        Ok(vec![crate::layers::layout::reshape(x, &self.top_shape(&x.size())?)?])
    }
}
