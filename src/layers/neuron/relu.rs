//! ReLU, with Caffe's leaky form when negative_slope is set.
use crate::Result;
use tch::Tensor;

use super::same_shape;
use crate::layers::fold::Epilogue;
use crate::layers::registry::{family_of, LayerInfo};
use crate::layers::{Ctx, Layer, SetupOut, Shape};

pub fn register(r: &mut Vec<LayerInfo>) {
    r.push(LayerInfo {
        type_name: "ReLU",
        family: family_of(file!()),
        params: "negative_slope",
        tests: "parity (lenet, cifar10, resnet_small), gradient check, numeric tests (tests/layers_activation.rs)",
        create: |p| {
            Ok(Box::new(ReLU { slope: p.relu_param.as_ref().map(|r| r.negative_slope()).unwrap_or(0.0) as f64 }))
        },
    });
}

pub struct ReLU {
    slope: f64,
}

impl Layer for ReLU {
    fn setup(&mut self, bottoms: &[Shape]) -> Result<SetupOut> {
        same_shape(bottoms)
    }
    fn forward(&mut self, _ctx: &Ctx, bottoms: &[Tensor], _params: &[Tensor]) -> Result<Vec<Tensor>> {
        let x = &bottoms[0];
        if self.slope == 0.0 {
            return Ok(vec![x.f_relu()?]);
        }
        // Caffe's leaky form: x for x > 0, slope·x otherwise (any slope).
        Ok(vec![x.f_where_self(&x.f_gt(0.0)?, &x.f_mul_scalar(self.slope)?)?])
    }

    fn inference_epilogue(&self, _ctx: &Ctx, _params: &[Tensor]) -> Option<Epilogue> {
        (self.slope == 0.0).then_some(Epilogue::Relu)
    }

    fn forward_in_place(&mut self, _ctx: &Ctx, bottom: &mut Tensor) -> Option<Result<()>> {
        // Autograd's in-place ReLU keeps its output for backward; the leaky
        // form has no in-place equivalent for every slope.
        if self.slope != 0.0 {
            return None;
        }
        Some(bottom.f_relu_().map(|_| ()).map_err(Into::into))
    }
}
