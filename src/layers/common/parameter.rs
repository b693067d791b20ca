//! Parameter: a learnable blob exposed as a top.
use crate::Result;
use tch::Tensor;

use crate::bail;
use crate::layers::registry::{family_of, LayerInfo};
use crate::layers::{check_bottoms, Ctx, Layer, ParamDecl, SetupOut, Shape};
use crate::proto::caffe::LayerParameter;

pub fn register(r: &mut Vec<LayerInfo>) {
    r.push(LayerInfo {
        type_name: "Parameter",
        family: family_of(file!()),
        params: "parameter_param.shape (the blob starts at zero, as in Caffe)",
        tests: "layers_common: parameter_* (net-level gradient, gradient check)",
        create: |p| Ok(Box::new(Parameter::new(p)?)),
    });
}

/// Parameter: exposes one learnable blob of `parameter_param.shape` as its
/// top; gradients reaching the top train the blob. Caffe allocates the blob
/// without a filler, so it starts at zero (or at the loaded weights).
pub struct Parameter {
    shape: Shape,
}

impl Parameter {
    fn new(lp: &LayerParameter) -> Result<Self> {
        let shape =
            lp.parameter_param.as_ref().and_then(|p| p.shape.as_ref()).map(|s| s.dim.clone()).unwrap_or_default();
        if let Some(d) = shape.iter().find(|&&d| d < 0) {
            bail!("parameter_param.shape {shape:?} has a negative dimension ({d})");
        }
        Ok(Parameter { shape })
    }
}

impl Layer for Parameter {
    fn setup(&mut self, bottoms: &[Shape]) -> Result<SetupOut> {
        check_bottoms(bottoms, 0, 0)?;
        Ok(SetupOut { tops: vec![self.shape.clone()], params: vec![ParamDecl::constant(self.shape.clone(), 0.0)] })
    }

    fn forward(&mut self, _ctx: &Ctx, _bottoms: &[Tensor], params: &[Tensor]) -> Result<Vec<Tensor>> {
        Ok(vec![params[0].alias()])
    }
}
