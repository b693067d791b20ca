//! `caffe device_query`: what libtorch this binary runs on and which devices it sees.

/// The libtorch version this binary was built against (from build.rs).
pub const LIBTORCH_VERSION: &str = match option_env!("CAFFE_TCH_LIBTORCH_VERSION") {
    Some(v) => v,
    None => "unknown",
};

/// One report line per fact, in the order `caffe device_query` prints them.
pub fn report() -> Vec<String> {
    let library = crate::util::cuda::load();
    let cuda = crate::util::cuda::is_available();
    let count = crate::util::cuda::device_count();
    let mut lines = vec![
        format!("caffe-tch {}", env!("CARGO_PKG_VERSION")),
        format!("libtorch version: {LIBTORCH_VERSION}"),
        format!("CPU threads: {}", tch::get_num_threads()),
        match &library {
            Ok(path) => format!("CUDA library: {} (loaded)", path.display()),
            Err(e) => format!("CUDA library: not loaded ({e})"),
        },
        format!("CUDA available: {}", if cuda { "yes" } else { "no" }),
        format!("cuDNN available: {}", if tch::Cuda::cudnn_is_available() { "yes" } else { "no" }),
        format!("CUDA devices: {count}"),
    ];
    if count == 0 {
        if library.is_ok() {
            // The backend is there; say what it reports without a device.
            if let Err(why) = crate::util::cuda::probe() {
                lines.push(format!("CUDA backend: registered; no device ({why})"));
            }
        }
        lines.push("No CUDA device found: caffe-tch will run on the CPU.".to_string());
    }
    for i in 0..count {
        lines.push(format!("Device id: {i} (cuda:{i})"));
    }
    lines
}
