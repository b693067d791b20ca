//! The `caffe` command's tools, as library functions the CLI calls.
pub mod compute_image_mean;
pub mod convert_imageset;
pub mod convert_mnist_data;
pub mod data_step;
pub mod device_query;
pub mod extract_features;
pub mod forward;
pub mod gflags;
pub mod parse_log;
pub mod plot;
pub mod summarize;
pub mod time;
pub mod upgrade;

use tch::Device;

use crate::{Error, Result};

/// The device for Caffe's `-gpu` flag: none → CPU; one id → that CUDA device.
/// Several ids (or `all` with several devices) are not supported yet.
pub fn select_device(gpu: Option<&str>) -> Result<Device> {
    let Some(spec) = gpu.map(str::trim).filter(|s| !s.is_empty()) else { return Ok(Device::Cpu) };
    let count = tch::Cuda::device_count();
    if count == 0 {
        return Err(Error::msg(format!(
            "-gpu {spec}: no CUDA device is available (libtorch sees none); run without -gpu to use the CPU"
        )));
    }
    let ids: Vec<i64> = if spec == "all" {
        (0..count).collect()
    } else {
        spec.split(',')
            .map(|s| s.trim().parse::<i64>().map_err(|_| Error::msg(format!("-gpu: '{s}' is not a device id"))))
            .collect::<Result<_>>()?
    };
    if ids.len() > 1 {
        return Err(Error::msg(format!(
            "-gpu {spec}: training on several GPUs is not supported yet; give one device id"
        )));
    }
    let id = ids[0];
    if id < 0 || id >= count {
        return Err(Error::msg(format!("-gpu {id}: no such device ({count} CUDA device(s) found)")));
    }
    Ok(Device::Cuda(id as usize))
}

/// Caffe's `-phase` flag.
pub fn parse_phase(s: &str) -> Result<crate::proto::caffe::Phase> {
    match s.to_ascii_uppercase().as_str() {
        "TRAIN" => Ok(crate::proto::caffe::Phase::Train),
        "TEST" => Ok(crate::proto::caffe::Phase::Test),
        other => Err(Error::msg(format!("-phase must be TRAIN or TEST, got '{other}'"))),
    }
}

/// Caffe's `-stage a,b` flag.
pub fn parse_stages(s: Option<&str>) -> Vec<String> {
    s.map(|s| s.split(',').filter(|x| !x.is_empty()).map(String::from).collect()).unwrap_or_default()
}
