//! The `caffe` command's tools, as library functions the CLI calls.
pub mod build_tree;
pub mod compute_image_mean;
pub mod convert_annoset;
pub mod convert_cifar_data;
pub mod convert_imageset;
pub mod convert_mnist_data;
pub mod convert_mnist_siamese_data;
pub mod data_step;
pub mod device_query;
pub mod extract_features;
pub mod forward;
pub mod gflags;
pub mod parse_log;
pub mod plot;
pub mod summarize;
pub mod supported_layers;
pub mod time;
pub mod upgrade;

use tch::Device;

use crate::{Error, Result};

/// The device for Caffe's `-gpu` flag: the CPU unless one CUDA device is named.
pub fn select_device(gpu: Option<&str>) -> Result<Device> {
    Ok(crate::util::gpu_flag_device(gpu)?.unwrap_or(Device::Cpu))
}

/// Caffe's `-phase` flag.
pub fn parse_phase(s: &str) -> Result<crate::proto::caffe::Phase> {
    match s.to_ascii_uppercase().as_str() {
        "TRAIN" => Ok(crate::proto::caffe::Phase::Train),
        "TEST" => Ok(crate::proto::caffe::Phase::Test),
        other => Err(Error::invalid(format!("-phase must be TRAIN or TEST, got '{other}'"))),
    }
}

/// Caffe's `-stage a,b` flag.
pub fn parse_stages(s: Option<&str>) -> Vec<String> {
    s.map(crate::util::comma_list).unwrap_or_default()
}
