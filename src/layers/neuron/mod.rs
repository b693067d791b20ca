//! Neuron layers (Caffe's NeuronLayer family): element-wise activations, one
//! bottom, one top of the same shape. All may run in place except AbsVal,
//! which Caffe forbids.
//!
//! Backward is autograd; each forward is written so that its gradient is
//! Caffe's Backward_cpu, including at the kinks (x == 0 takes Caffe's branch).
//!
//! One file per type, named after it. ReLU, PReLU and Dropout are layers of
//! their own, as is SeLuDropout. The parameter-free functions (ELU, SeLu, Sigmoid,
//! TanH, AbsVal, BNLL, Power, Exp, Log, Threshold, Clip, Swish) are one layer,
//! [`elementwise::Elementwise`], whose `Op` has a variant per type and whose
//! forward computes each of them; the type's own file registers it and builds
//! its `Op` from the prototxt parameters.
use crate::Result;

use super::registry::LayerInfo;
use super::{check_bottoms, SetupOut, Shape};

pub mod abs_val;
pub mod bnll;
pub mod clip;
pub mod dropout;
pub mod elementwise;
pub mod elu;
pub mod exp;
pub mod log;
pub mod power;
pub mod prelu;
pub mod relu;
pub mod selu;
pub mod selu_dropout;
pub mod sigmoid;
pub mod swish;
pub mod tanh;
pub mod threshold;

const GRAD_TESTS: &str = "gradient check, numeric tests (tests/layers_activation.rs)";

pub fn register(r: &mut Vec<LayerInfo>) {
    relu::register(r);
    prelu::register(r);
    elu::register(r);
    sigmoid::register(r);
    tanh::register(r);
    abs_val::register(r);
    bnll::register(r);
    power::register(r);
    exp::register(r);
    log::register(r);
    threshold::register(r);
    dropout::register(r);
    clip::register(r);
    clip::register_relu6(r);
    swish::register(r);
    selu::register(r);
    selu_dropout::register(r);
}

/// Shapes pass through unchanged (one bottom, one top).
pub fn same_shape(bottoms: &[Shape]) -> Result<SetupOut> {
    check_bottoms(bottoms, 1, 1)?;
    Ok(SetupOut { tops: vec![bottoms[0].clone()], params: vec![] })
}
