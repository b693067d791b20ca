//! Convolution, N-D (1 to 3 spatial axes). The layer is [`Conv`] in
//! base_conv.rs, shared with Deconvolution; this file holds Convolution's own
//! rules: its output size and its weight layout, and the forks' depthwise
//! convolution types, which are Convolution with one group per channel.
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
    // Forks' depthwise convolutions, common in MobileNet models.
    r.push(LayerInfo {
        type_name: "DepthwiseConvolution",
        family: family_of(file!()),
        params: "as Convolution (yonghenglh6/DepthwiseConvolution's faster kernel for group = channels; the same \
                 arithmetic)",
        tests: "layers_vision: depthwise_convolutions_* (equal to Convolution with group = channels); export cases",
        create: |p| Ok(Box::new(Conv::new(p, false)?)),
    });
    r.push(LayerInfo {
        type_name: "ConvolutionDepthwise",
        family: family_of(file!()),
        params: "convolution_param's kernel, stride, pad, dilation, bias_term, fillers; num_output and group are the \
                 input's channels whatever they say (the MobileNet-YOLO/ncnn forks' layer)",
        tests: "layers_vision: depthwise_convolutions_* (equal to Convolution with group = channels); export cases",
        create: |p| Ok(Box::new(Conv::depthwise(p))),
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
