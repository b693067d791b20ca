//! Deconvolution (transposed convolution), N-D (1 to 3 spatial axes), with
//! Convolution's parameters. The layer is [`Conv`] in base_conv.rs, run as
//! libtorch's transposed convolution; this file holds Deconvolution's own
//! rules: its output size and its weight layout.
use super::base_conv::Conv;
use crate::layers::registry::{family_of, LayerInfo};

pub fn register(r: &mut Vec<LayerInfo>) {
    r.push(LayerInfo {
        type_name: "Deconvolution",
        family: family_of(file!()),
        params: "as Convolution (transposed)",
        tests: "gradient check, shape tests",
        create: |p| Ok(Box::new(Conv::new(p, true)?)),
    });
}

/// Caffe's DeconvolutionLayer::compute_output_shape along one spatial axis
/// (`extent` is the dilated kernel size).
pub(super) fn output_size(input: i64, extent: i64, stride: i64, pad: i64) -> i64 {
    stride * (input - 1) + extent - 2 * pad
}

/// Caffe's weight layout for deconvolution: [in, out/g, k...].
pub(super) fn weight_shape(channels: i64, num_output: i64, groups: i64) -> Vec<i64> {
    vec![channels, num_output / groups]
}
