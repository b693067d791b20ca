//! The paper's layers (Smith, Hand & Doster, "Gradual DropIn of Layers to Train
//! Very Deep Neural Networks", CVPR 2016), one file each (drop_in.rs, resize.rs):
//!
//! * DropIn mixes a skip path `bottom[0]` = y(ℓ̂) with a new layer's output
//!   `bottom[1]` = y(ℓ), unit by unit: top = r·y(ℓ) + (1−r)·y(ℓ̂).
//!   - Gradual mode (`dropin_length` d > 0): at iteration τ,
//!     p = clamp((τ − dropin_start)/d, 0, 1), q = 1 − p; within each sample the
//!     C·H·W units in index order λ take y(ℓ̂) when λ < q·n, else y(ℓ).
//!   - Regularizing mode (d = 0): in TRAIN each unit takes y(ℓ̂) with probability
//!     q = `dropin_ratio`, redrawn every pass; in TEST top = q·y(ℓ̂) + (1−q)·y(ℓ).
//! * Resize changes a blob's height, width and channel count so DropIn can join
//!   layers of different sizes.
use super::registry::LayerInfo;

pub mod drop_in;
pub mod resize;

pub fn register(r: &mut Vec<LayerInfo>) {
    drop_in::register(r);
    resize::register(r);
}
