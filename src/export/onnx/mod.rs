//! `-format onnx`.
use super::Plan;
use crate::{Error, Result};

pub fn check_opset(opset: i64) -> Result<()> {
    if opset < 13 {
        return Err(Error::usage(format!("-opset {opset}: caffe export writes ONNX opset 13 and above")));
    }
    Ok(())
}

pub fn export(_plan: &Plan, _opset: i64, _all: bool) -> Result<Vec<u8>> {
    Err(Error::unsupported("todo"))
}
