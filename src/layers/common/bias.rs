//! Bias: adds a blob (learned, or the second bottom) broadcast along `axis`.
use crate::Result;
use tch::Tensor;

use super::broadcast::{aligned_axis, broadcast_view, default_filler, learned_blob_shape};
use crate::layers::registry::{family_of, LayerInfo};
use crate::layers::{check_bottoms, Ctx, Layer, ParamDecl, SetupOut, Shape};
use crate::proto::caffe::{BiasParameter, LayerParameter};

pub fn register(r: &mut Vec<LayerInfo>) {
    r.push(LayerInfo {
        type_name: "Bias",
        family: family_of(file!()),
        params: "axis, num_axes (-1: to the end), filler (default constant 0); one bottom (learned bias) or two (bottom[1] is the bias)",
        tests: "layers_common: bias_* (broadcast values, shape errors, gradient check in both forms)",
        create: |p| Ok(Box::new(Bias::new(p))),
    });
}

pub struct Bias {
    p: BiasParameter,
}

impl Bias {
    fn new(lp: &LayerParameter) -> Self {
        Bias { p: lp.bias_param.clone().unwrap_or_default() }
    }
}

impl Layer for Bias {
    fn setup(&mut self, bottoms: &[Shape]) -> Result<SetupOut> {
        check_bottoms(bottoms, 1, 2)?;
        let mut params = vec![];
        let bias_shape = match bottoms.get(1) {
            Some(s) => s.clone(),
            None => {
                let s = learned_blob_shape(&bottoms[0], self.p.axis(), self.p.num_axes(), "bias")?;
                params.push(ParamDecl::new(s.clone(), default_filler(&self.p.filler, 0.0)));
                s
            }
        };
        aligned_axis(&bottoms[0], self.p.axis(), &bias_shape, "bias")?;
        Ok(SetupOut { tops: vec![bottoms[0].clone()], params })
    }

    fn forward(&mut self, _ctx: &Ctx, bottoms: &[Tensor], params: &[Tensor]) -> Result<Vec<Tensor>> {
        let x = &bottoms[0];
        let b = match bottoms.get(1) {
            Some(b) => b,
            None => &params[0],
        };
        let axis = aligned_axis(&x.size(), self.p.axis(), &b.size(), "bias")?;
        Ok(vec![x.f_add(&broadcast_view(b, x.dim(), axis)?)?])
    }
}
