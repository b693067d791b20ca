//! `-format pytorch`: a readable `model.py` (a `torch.nn.Module` that mirrors
//! the prototxt layer by layer) and `weights.safetensors`.
use std::path::Path;

use super::Plan;
use crate::{Error, Result};

/// Whether a layer type can be written into `model.py`.
pub fn supports(_layer_type: &str) -> bool {
    false
}

pub fn export(_plan: &Plan, _out: &Path) -> Result<()> {
    Err(Error::unsupported("-format pytorch is not written yet"))
}
