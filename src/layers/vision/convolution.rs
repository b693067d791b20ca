//! Convolution, N-D (1 to 3 spatial axes). The layer is [`Conv`] in
//! base_conv.rs, shared with Deconvolution; this file holds Convolution's own
//! rules: its output size and its weight layout.
use super::base_conv::Conv;
use crate::layers::registry::{family_of, LayerInfo};

pub fn register(r: &mut Vec<LayerInfo>) {
    r.push(LayerInfo {
        type_name: "Convolution",
        family: family_of(file!()),
        params: "num_output, kernel_size|kernel_h/w, stride|stride_h/w, pad|pad_h/w, dilation, group, bias_term, weight_filler, bias_filler, axis",
        tests: "parity (lenet, cifar10, resnet_small), gradient check",
        create: |p| Ok(Box::new(Conv::new(p, false)?)),
    });
}

/// Caffe's ConvolutionLayer::compute_output_shape along one spatial axis
/// (`extent` is the dilated kernel size).
pub(super) fn output_size(input: i64, extent: i64, stride: i64, pad: i64) -> i64 {
    (input + 2 * pad - extent) / stride + 1
}

/// Caffe's weight layout for convolution: [out, in/g, k...].
pub(super) fn weight_shape(channels: i64, num_output: i64, groups: i64) -> Vec<i64> {
    vec![num_output, channels / groups]
}
