//! Vision layers: convolution, pooling, LRN, SPP, Im2col, Crop.
use super::registry::LayerInfo;

pub mod conv;
pub mod crop;
pub mod im2col;
pub mod lrn;
pub mod pooling;
pub mod spp;

pub fn register(r: &mut Vec<LayerInfo>) {
    conv::register(r);
    pooling::register(r);
    lrn::register(r);
    spp::register(r);
    im2col::register(r);
    crop::register(r);
}
