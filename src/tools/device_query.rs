//! `caffe device_query`: what libtorch this binary runs on and which devices it sees.

/// The libtorch version this binary was built against (from build.rs).
pub const LIBTORCH_VERSION: &str = match option_env!("CAFFE_TCH_LIBTORCH_VERSION") {
    Some(v) => v,
    None => "unknown",
};

/// One report line per fact, in the order `caffe device_query` prints them.
pub fn report() -> Vec<String> {
    let cuda = tch::Cuda::is_available();
    let count = tch::Cuda::device_count();
    let mut lines = vec![
        format!("caffe-tch {}", env!("CARGO_PKG_VERSION")),
        format!("libtorch version: {LIBTORCH_VERSION}"),
        format!("CPU threads: {}", tch::get_num_threads()),
        format!("CUDA available: {}", if cuda { "yes" } else { "no" }),
        format!("cuDNN available: {}", if tch::Cuda::cudnn_is_available() { "yes" } else { "no" }),
        format!("CUDA devices: {count}"),
    ];
    if count == 0 {
        lines.push("No CUDA device found: caffe-tch will run on the CPU.".to_string());
    }
    for i in 0..count {
        lines.push(format!("Device id: {i} (cuda:{i})"));
    }
    lines
}
