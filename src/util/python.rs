//! Which Python the library starts (the exporters' `-verify`, and the `caffe`
//! binary for nets with Python layers).
use std::path::{Path, PathBuf};

/// `$CAFFE_TCH_PYTHON`; else the Python of the virtualenv whose PyTorch
/// provides the libtorch this process runs on (the project's `.venv`, where
/// `make` installs `caffe` and the exporters' runtimes); else `python3` on the PATH.
pub fn interpreter() -> PathBuf {
    if let Some(p) = std::env::var_os("CAFFE_TCH_PYTHON").filter(|p| !p.is_empty()) {
        return PathBuf::from(p);
    }
    venv_of_libtorch().unwrap_or_else(|| PathBuf::from("python3"))
}

/// `<prefix>/bin/python3` for a libtorch loaded from
/// `<prefix>/lib/pythonX.Y/site-packages/torch/lib/`.
fn venv_of_libtorch() -> Option<PathBuf> {
    let maps = std::fs::read_to_string("/proc/self/maps").ok()?;
    let lib = maps.lines().filter_map(|l| l.split_whitespace().nth(5)).find(|p| p.ends_with("/libtorch_cpu.so"))?;
    let site_packages = Path::new(lib).parent()?.parent()?.parent()?;
    let prefix = site_packages.parent()?.parent()?.parent()?;
    ["python3", "python"].iter().map(|n| prefix.join("bin").join(n)).find(|p| p.exists())
}
