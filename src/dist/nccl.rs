//! The NCCL shim (`csrc/nccl_shim.cpp`), opened on demand. build.rs builds it
//! as `libcaffe_tch_nccl.so` beside the binary, linked against
//! libtorch_cuda; the binary does not link it, so a CPU run (and `caffe
//! --version`) never maps the CUDA libraries. It is opened after
//! libtorch's CUDA library ([`crate::util::cuda::load`]), the one way in to
//! CUDA, and stays open for the life of the process.
use std::ffi::{c_char, c_int, c_longlong, c_void, CStr, CString};
use std::path::PathBuf;
use std::sync::OnceLock;

use super::group::{AllReduceFn, BarrierFn, BroadcastFn, FreeFn, ShimApi, StoreGetFn, StoreSetFn, StringFreeFn};
use crate::{Error, Result};

/// The library's file name (build.rs writes it under this name).
pub const LIBRARY: &str = "libcaffe_tch_nccl.so";

/// Where build.rs wrote the library; empty when it could not build it.
const BUILT_AT: Option<&str> = option_env!("CAFFE_TCH_NCCL_SHIM");

type NewGroupFn =
    unsafe extern "C" fn(*const c_char, c_int, c_int, c_int, c_longlong, c_int, *mut *mut c_void) -> *mut c_char;

/// The opened shim: its constructor and the entry points it shares with Gloo's.
pub(super) struct NcclShim {
    pub(super) new_group: NewGroupFn,
    pub(super) api: ShimApi,
}

static SHIM: OnceLock<std::result::Result<NcclShim, String>> = OnceLock::new();

/// Whether this build has NCCL support (build.rs found the CUDA headers).
pub fn built() -> bool {
    BUILT_AT.is_some_and(|p| !p.is_empty())
}

/// Where the library is looked for: beside this executable (an installed
/// copy, or target/release), then where the build wrote it.
fn candidates() -> Vec<PathBuf> {
    let mut v = Vec::new();
    if let Some(dir) = std::env::current_exe().ok().and_then(|e| e.parent().map(PathBuf::from)) {
        v.push(dir.join(LIBRARY));
    }
    if let Some(p) = BUILT_AT.filter(|p| !p.is_empty()) {
        v.push(PathBuf::from(p));
    }
    v
}

fn dl_error() -> String {
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

fn open() -> std::result::Result<NcclShim, String> {
    if !built() {
        return Err("NCCL support was not built (build.rs found no CUDA headers: run `make cuda-headers`, \
                    then rebuild); the CPU (-ranks N, Gloo) still trains data-parallel"
            .into());
    }
    crate::util::cuda::load().map_err(|e| e.to_string())?;
    let mut errors = Vec::new();
    for path in candidates() {
        if !path.exists() {
            errors.push(format!("{}: no such file", path.display()));
            continue;
        }
        let Ok(c) = CString::new(path.as_os_str().as_encoded_bytes()) else { continue };
        // SAFETY: dlopen with a valid C string; the handle is kept for the
        // process's life (never dlclosed: its groups may still be alive).
        let handle = unsafe { libc::dlopen(c.as_ptr(), libc::RTLD_NOW | libc::RTLD_LOCAL) };
        if handle.is_null() {
            errors.push(format!("{}: {}", path.display(), dl_error()));
            continue;
        }
        let sym = |name: &str| -> std::result::Result<*mut c_void, String> {
            let n = CString::new(name).map_err(|_| format!("bad symbol name {name}"))?;
            // SAFETY: dlsym on a live handle with a valid C string.
            let p = unsafe { libc::dlsym(handle, n.as_ptr()) };
            if p.is_null() {
                Err(format!("{}: no symbol {name}", path.display()))
            } else {
                Ok(p)
            }
        };
        // SAFETY: each symbol is the extern "C" function of csrc/nccl_shim.cpp
        // with exactly the signature of the pointer type it becomes.
        let shim = unsafe {
            NcclShim {
                new_group: std::mem::transmute::<*mut c_void, NewGroupFn>(sym("caffe_nccl_new")?),
                api: ShimApi {
                    free: std::mem::transmute::<*mut c_void, FreeFn>(sym("caffe_nccl_free")?),
                    string_free: std::mem::transmute::<*mut c_void, StringFreeFn>(sym("caffe_nccl_string_free")?),
                    allreduce_sum: std::mem::transmute::<*mut c_void, AllReduceFn>(sym("caffe_nccl_allreduce_sum")?),
                    broadcast: std::mem::transmute::<*mut c_void, BroadcastFn>(sym("caffe_nccl_broadcast")?),
                    barrier: std::mem::transmute::<*mut c_void, BarrierFn>(sym("caffe_nccl_barrier")?),
                    store_set: std::mem::transmute::<*mut c_void, StoreSetFn>(sym("caffe_nccl_store_set")?),
                    store_get: std::mem::transmute::<*mut c_void, StoreGetFn>(sym("caffe_nccl_store_get")?),
                },
            }
        };
        return Ok(shim);
    }
    Err(format!("cannot open the NCCL library {LIBRARY}: {}", errors.join("; ")))
}

/// The NCCL shim, opened once; or why it cannot be used.
pub(super) fn shim() -> Result<&'static NcclShim> {
    SHIM.get_or_init(open).as_ref().map_err(|why| Error::unsupported(why.clone()))
}

/// Checks that NCCL can be used (built, found, loadable), for a launcher to
/// say so before it starts any rank.
pub fn available() -> Result<()> {
    shim().map(|_| ())
}
