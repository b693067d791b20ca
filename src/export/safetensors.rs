//! `-format safetensors`: the weights alone, PyTorch-style or Caffe-style names.
use std::path::Path;

use super::{Plan, TensorNames};
use crate::{Error, Result};

pub fn export(_plan: &Plan, _out: &Path, _names: TensorNames) -> Result<()> {
    Err(Error::unsupported("-format safetensors is not written yet"))
}
