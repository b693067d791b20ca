//! Vision layers: convolution, pooling, LRN, SPP, Im2col, Crop.
use super::registry::LayerInfo;

pub mod conv;
pub mod pooling;

pub fn register(r: &mut Vec<LayerInfo>) {
    conv::register(r);
    pooling::register(r);
}
