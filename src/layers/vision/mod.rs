//! Vision layers, one file per type: Convolution, Deconvolution, Pooling,
//! LRN, SPP, Im2col, Crop, and the forks' Interp (DeepLab v2) and Upsample
//! (YOLOv3's nearest, SegNet's unpooling). base_conv.rs holds what Convolution and
//! Deconvolution share (and Im2col's geometry), inference_weights.rs the
//! packed weights an inference convolution keeps between forwards.
use super::registry::LayerInfo;

pub mod base_conv;
pub mod convolution;
pub mod crop;
pub mod deconvolution;
pub mod im2col;
pub mod inference_weights;
pub mod interp;
pub mod lrn;
pub mod pooling;
pub mod spp;
pub mod upsample;

pub fn register(r: &mut Vec<LayerInfo>) {
    convolution::register(r);
    deconvolution::register(r);
    pooling::register(r);
    lrn::register(r);
    spp::register(r);
    im2col::register(r);
    crop::register(r);
    interp::register(r);
    upsample::register(r);
}
