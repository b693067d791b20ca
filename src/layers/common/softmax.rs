//! Softmax along `axis`.
use crate::Result;
use tch::Tensor;

use crate::layers::registry::{family_of, LayerInfo};
use crate::layers::{canonical_axis, check_bottoms, Ctx, Layer, SetupOut, Shape};

pub fn register(r: &mut Vec<LayerInfo>) {
    r.push(LayerInfo {
        type_name: "Softmax",
        family: family_of(file!()),
        params: "axis (engine is ignored)",
        tests: "layers_common: softmax_matches_caffe_resnet (resnet_small prob vs BVLC Caffe), softmax_* (axis, gradient checks)",
        create: |p| Ok(Box::new(Softmax { axis: p.softmax_param.as_ref().map(|s| s.axis()).unwrap_or(1), canonical: 1 })),
    });
}

pub struct Softmax {
    axis: i32,
    canonical: usize,
}

impl Layer for Softmax {
    fn setup(&mut self, bottoms: &[Shape]) -> Result<SetupOut> {
        check_bottoms(bottoms, 1, 1)?;
        self.canonical = canonical_axis(self.axis, bottoms[0].len())?;
        Ok(SetupOut { tops: vec![bottoms[0].clone()], params: vec![] })
    }

    fn forward(&mut self, _ctx: &Ctx, bottoms: &[Tensor], _params: &[Tensor]) -> Result<Vec<Tensor>> {
        let x = &bottoms[0];
        Ok(vec![x.f_softmax(self.canonical as i64, x.kind())?])
    }
}
