//! CUDA, loaded when asked for. The binary links only libtorch's CPU half;
//! `libtorch_cuda.so` (and the CUDA libraries it pulls in, most of a
//! process's memory when mapped) is opened at the first CUDA request: `-gpu`,
//! `solver_mode: GPU`, `device_query`. libtorch's CUDA backend registers its
//! hooks from the library's static initialisers, so opening it is all it takes,
//! provided nothing asked libtorch about CUDA before (its hooks are looked up
//! once): every CUDA question in caffe-tch goes through this module.
use std::ffi::{c_void, CStr, CString};
use std::path::PathBuf;
use std::sync::OnceLock;

use crate::{Error, Result};

/// The folder of the libtorch this binary was linked against (build.rs).
const LIBTORCH_LIB: Option<&str> = option_env!("CAFFE_TCH_LIBTORCH_LIB");

const LIBRARY: &str = "libtorch_cuda.so";

static LOADED: OnceLock<std::result::Result<PathBuf, String>> = OnceLock::new();

/// Where `libtorch_cuda.so` is looked for: beside the libtorch this process
/// has mapped (a wheel's `torch/lib`, wherever pip put it), beside the one the
/// binary was linked against, then the dynamic linker's own search
/// (LD_LIBRARY_PATH, the caller's rpath).
fn candidates() -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = Vec::new();
    if let Some(dir) = mapped_libtorch_dir() {
        v.push(dir.join(LIBRARY));
    }
    if let Some(d) = LIBTORCH_LIB {
        let p = PathBuf::from(d).join(LIBRARY);
        if !v.contains(&p) {
            v.push(p);
        }
    }
    v.push(PathBuf::from(LIBRARY));
    v
}

/// The folder of the `libtorch_cpu.so` mapped into this process.
fn mapped_libtorch_dir() -> Option<PathBuf> {
    let maps = std::fs::read_to_string("/proc/self/maps").ok()?;
    maps.lines()
        .filter_map(|l| l.split_whitespace().nth(5))
        .find(|p| p.ends_with("/libtorch_cpu.so"))
        .and_then(|p| std::path::Path::new(p).parent().map(PathBuf::from))
}

fn open() -> std::result::Result<PathBuf, String> {
    let mut errors = Vec::new();
    for path in candidates() {
        if path.is_absolute() && !path.exists() {
            errors.push(format!("{}: no such file", path.display()));
            continue;
        }
        let Ok(c) = CString::new(path.as_os_str().as_encoded_bytes()) else { continue };
        // SAFETY: dlopen with a valid C string; the handle is kept for the
        // process's life (never dlclosed: libtorch registers global state).
        let handle = unsafe { libc::dlopen(c.as_ptr(), libc::RTLD_NOW | libc::RTLD_GLOBAL) };
        if !handle.is_null() {
            return Ok(path);
        }
        errors.push(dl_error());
    }
    Err(errors.join("; "))
}

/// Opens libtorch's CUDA library once; returns its path, or why it could not
/// be opened (a CPU-only libtorch, a missing or broken CUDA library).
pub fn load() -> Result<PathBuf> {
    LOADED
        .get_or_init(open)
        .clone()
        .map_err(|why| Error::unsupported(format!("cannot load libtorch's CUDA library {LIBRARY}: {why}")))
}

/// The library's path if it was opened, or why not; None if nobody asked for CUDA.
pub fn status() -> Option<std::result::Result<PathBuf, String>> {
    LOADED.get().cloned()
}

/// The number of CUDA devices (0 when the CUDA library cannot be loaded).
pub fn device_count() -> i64 {
    if load().is_err() {
        return 0;
    }
    tch::Cuda::device_count()
}

/// Whether this machine has an NVIDIA driver (its device nodes or its /proc
/// entry): a cheap look before loading the CUDA libraries to count devices.
pub fn driver_present() -> bool {
    ["/dev/nvidiactl", "/proc/driver/nvidia/version", "/dev/dxg"].iter().any(|p| std::path::Path::new(p).exists())
}

/// Whether CUDA can be used.
pub fn is_available() -> bool {
    load().is_ok() && tch::Cuda::is_available()
}

/// Whether libtorch's CUDA backend is registered: asking for a CUDA tensor
/// then fails for want of a device or driver, not for want of the backend.
/// Returns the backend's own answer (Ok when a device exists).
pub fn probe() -> std::result::Result<(), String> {
    load().map_err(|e| e.to_string())?;
    match tch::Tensor::f_zeros([1], (tch::Kind::Float, tch::Device::Cuda(0))) {
        Ok(_) => Ok(()),
        Err(e) => Err(e.to_string().lines().next().unwrap_or("").to_string()),
    }
}

/// The dynamic linker's last error on this thread.
pub(crate) fn dl_error() -> String {
    // SAFETY: dlerror returns a thread-local C string or null.
    unsafe {
        let e = libc::dlerror();
        if e.is_null() {
            "unknown error".to_string()
        } else {
            CStr::from_ptr(e).to_string_lossy().into_owned()
        }
    }
}

/// The CUDA shim's file name (build.rs writes it under this name): NCCL
/// (`csrc/nccl_shim.cpp`) and CUDA graphs (`csrc/cuda_graph.cpp`).
pub const SHIM_LIBRARY: &str = "libcaffe_tch_cuda.so";

/// Where build.rs wrote the shim; empty when it could not build it.
const SHIM_BUILT_AT: Option<&str> = option_env!("CAFFE_TCH_CUDA_SHIM");

/// The opened CUDA shim: a dlopen handle, kept for the process's life.
pub struct Shim {
    handle: usize,
    path: PathBuf,
}

static SHIM: OnceLock<std::result::Result<Shim, String>> = OnceLock::new();

/// Whether this build has the CUDA shim (build.rs found the CUDA headers).
pub fn shim_built() -> bool {
    SHIM_BUILT_AT.is_some_and(|p| !p.is_empty())
}

impl Shim {
    /// The address of one of the shim's `extern "C"` functions.
    pub fn symbol(&self, name: &str) -> Result<*mut c_void> {
        let n = CString::new(name).map_err(|_| Error::invalid(format!("bad symbol name {name}")))?;
        // SAFETY: dlsym on a live handle with a valid C string.
        let p = unsafe { libc::dlsym(self.handle as *mut c_void, n.as_ptr()) };
        if p.is_null() {
            return Err(Error::unsupported(format!("{}: no symbol {name}", self.path.display())));
        }
        Ok(p)
    }
}

fn open_shim() -> std::result::Result<Shim, String> {
    if !shim_built() {
        return Err("the CUDA shim (NCCL, CUDA graphs) was not built (build.rs found no CUDA headers: run \
                    `make cuda-headers`, then rebuild)"
            .into());
    }
    load().map_err(|e| e.to_string())?;
    let mut candidates = Vec::new();
    if let Some(dir) = std::env::current_exe().ok().and_then(|e| e.parent().map(PathBuf::from)) {
        candidates.push(dir.join(SHIM_LIBRARY));
    }
    if let Some(p) = SHIM_BUILT_AT.filter(|p| !p.is_empty()) {
        candidates.push(PathBuf::from(p));
    }
    let mut errors = Vec::new();
    for path in candidates {
        if !path.exists() {
            errors.push(format!("{}: no such file", path.display()));
            continue;
        }
        let Ok(c) = CString::new(path.as_os_str().as_encoded_bytes()) else { continue };
        // SAFETY: dlopen with a valid C string; never dlclosed (its groups
        // and graphs may be alive until the process ends).
        let handle = unsafe { libc::dlopen(c.as_ptr(), libc::RTLD_NOW | libc::RTLD_LOCAL) };
        if handle.is_null() {
            errors.push(format!("{}: {}", path.display(), dl_error()));
            continue;
        }
        return Ok(Shim { handle: handle as usize, path });
    }
    Err(format!("cannot open the CUDA shim {SHIM_LIBRARY}: {}", errors.join("; ")))
}

/// The CUDA shim, opened once (after libtorch's CUDA library); or why it
/// cannot be used.
pub fn shim() -> Result<&'static Shim> {
    SHIM.get_or_init(open_shim).as_ref().map_err(|why| Error::unsupported(why.clone()))
}
