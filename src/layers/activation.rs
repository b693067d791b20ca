//! Element-wise activations (neuron layers). All may run in place.
use tch::Tensor;

use super::registry::LayerInfo;
use super::{check_bottoms, Ctx, Layer, LayerResult, SetupOut, Shape};

pub fn register(r: &mut Vec<LayerInfo>) {
    r.push(LayerInfo {
        type_name: "ReLU",
        family: "activation.rs",
        params: "negative_slope",
        tests: "parity (lenet, cifar10, resnet_small), gradient check",
        create: |p| Ok(Box::new(ReLU { slope: p.relu_param.as_ref().map(|r| r.negative_slope()).unwrap_or(0.0) as f64 })),
    });
}

/// Shapes pass through unchanged (one bottom, one top).
pub fn same_shape(bottoms: &[Shape]) -> LayerResult<SetupOut> {
    check_bottoms(bottoms, 1, 1)?;
    Ok(SetupOut { tops: vec![bottoms[0].clone()], params: vec![] })
}

pub struct ReLU {
    slope: f64,
}

impl Layer for ReLU {
    fn setup(&mut self, bottoms: &[Shape]) -> LayerResult<SetupOut> {
        same_shape(bottoms)
    }
    fn forward(&mut self, _ctx: &Ctx, bottoms: &[Tensor], _params: &[Tensor]) -> LayerResult<Vec<Tensor>> {
        let x = &bottoms[0];
        if self.slope == 0.0 {
            return Ok(vec![x.relu()]);
        }
        // Caffe's leaky form: x for x > 0, slope·x otherwise (any slope).
        Ok(vec![x.f_where_self(&x.gt(0.0), &x.f_mul_scalar(self.slope)?)?])
    }
}
