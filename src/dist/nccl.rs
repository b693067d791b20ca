//! NCCL's half of the CUDA shim (`csrc/nccl_shim.cpp`, in
//! `libcaffe_tch_cuda.so`, opened on demand by [`crate::util::cuda::shim`]):
//! the binary does not link it, so a CPU run (and `caffe --version`) never
//! maps the CUDA libraries.
use std::ffi::{c_char, c_int, c_longlong, c_void};
use std::sync::OnceLock;

use super::group::{AllReduceFn, BarrierFn, BroadcastFn, FreeFn, ShimApi, StoreGetFn, StoreSetFn, StringFreeFn};
use crate::util::cuda;
use crate::{Error, Result};

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
    cuda::shim_built()
}

fn open() -> std::result::Result<NcclShim, String> {
    if !built() {
        return Err("NCCL support was not built (build.rs found no CUDA headers: run `make cuda-headers`, \
                    then rebuild); the CPU (-ranks N, Gloo) still trains data-parallel"
            .into());
    }
    let lib = cuda::shim().map_err(|e| e.to_string())?;
    let sym = |name: &str| lib.symbol(name).map_err(|e| e.to_string());
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
    Ok(shim)
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
