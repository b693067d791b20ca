//! The safe face of the c10d shims: a TCPStore rendezvous and a process
//! group, Gloo (`csrc/dist_shim.cpp`, linked in) for CPU tensors or NCCL
//! (`csrc/nccl_shim.cpp`, in the CUDA shim library opened at run time: [`super::nccl`]) for
//! CUDA tensors, and the collectives the solver needs. Both shims have the
//! same entry points, so one [`ProcessGroup`] drives either through a table of
//! them. Every call returns the shim's error text as an [`Error`]; nothing
//! unwinds across the boundary.
use std::ffi::{c_char, c_int, c_longlong, c_uchar, c_void, CStr, CString};
use std::time::Duration;

use tch::{Device, Tensor};

use crate::{Error, Result};

extern "C" {
    fn caffe_dist_gloo_new(
        host: *const c_char,
        port: c_int,
        rank: c_int,
        world: c_int,
        timeout_ms: c_longlong,
        iface: *const c_char,
        bind_host: *const c_char,
        out: *mut *mut c_void,
    ) -> *mut c_char;
    fn caffe_dist_free(group: *mut c_void);
    fn caffe_dist_string_free(s: *mut c_char);
    fn caffe_dist_allreduce_sum(group: *mut c_void, tensor: *mut c_void) -> *mut c_char;
    fn caffe_dist_broadcast(group: *mut c_void, tensor: *mut c_void, root: c_int) -> *mut c_char;
    fn caffe_dist_barrier(group: *mut c_void) -> *mut c_char;
    fn caffe_dist_store_set(group: *mut c_void, key: *const c_char, value: *const c_uchar, len: usize) -> *mut c_char;
    fn caffe_dist_store_get(
        group: *mut c_void,
        key: *const c_char,
        value: *mut *mut c_uchar,
        len: *mut usize,
    ) -> *mut c_char;
}

pub(super) type FreeFn = unsafe extern "C" fn(*mut c_void);
pub(super) type StringFreeFn = unsafe extern "C" fn(*mut c_char);
pub(super) type AllReduceFn = unsafe extern "C" fn(*mut c_void, *mut c_void) -> *mut c_char;
pub(super) type BroadcastFn = unsafe extern "C" fn(*mut c_void, *mut c_void, c_int) -> *mut c_char;
pub(super) type BarrierFn = unsafe extern "C" fn(*mut c_void) -> *mut c_char;
pub(super) type StoreSetFn = unsafe extern "C" fn(*mut c_void, *const c_char, *const c_uchar, usize) -> *mut c_char;
pub(super) type StoreGetFn =
    unsafe extern "C" fn(*mut c_void, *const c_char, *mut *mut c_uchar, *mut usize) -> *mut c_char;

/// The entry points a shim shares with the other (all but its constructor).
pub(super) struct ShimApi {
    pub(super) free: FreeFn,
    pub(super) string_free: StringFreeFn,
    pub(super) allreduce_sum: AllReduceFn,
    pub(super) broadcast: BroadcastFn,
    pub(super) barrier: BarrierFn,
    pub(super) store_set: StoreSetFn,
    pub(super) store_get: StoreGetFn,
}

static GLOO: ShimApi = ShimApi {
    free: caffe_dist_free,
    string_free: caffe_dist_string_free,
    allreduce_sum: caffe_dist_allreduce_sum,
    broadcast: caffe_dist_broadcast,
    barrier: caffe_dist_barrier,
    store_set: caffe_dist_store_set,
    store_get: caffe_dist_store_get,
};

/// The shim's error string (owned by us once returned), or `Ok` for NULL.
pub(super) fn check(api: &ShimApi, err: *mut c_char) -> std::result::Result<(), String> {
    if err.is_null() {
        return Ok(());
    }
    // SAFETY: a non-NULL return is a NUL-terminated string the shim malloc'd for us.
    let msg = unsafe { CStr::from_ptr(err) }.to_string_lossy().trim().replace('\n', " ");
    unsafe { (api.string_free)(err) };
    Err(msg)
}

fn c_string(what: &str, s: &str) -> Result<CString> {
    CString::new(s).map_err(|_| Error::invalid(format!("{what} contains a NUL byte: {s:?}")))
}

/// Where the group meets and how long anything may wait.
#[derive(Debug, Clone)]
pub struct GroupConfig {
    pub master_addr: String,
    pub master_port: u16,
    pub rank: usize,
    pub world: usize,
    pub timeout: Duration,
    /// GLOO_SOCKET_IFNAME: the network interface Gloo listens on.
    pub iface: Option<String>,
    /// The address Gloo listens on when no interface is named (loopback for
    /// a group on one machine); `None` is the machine's hostname.
    pub bind_host: Option<String>,
}

/// A joined process group (and the TCPStore it met through): Gloo on the
/// CPU, or NCCL on one CUDA device.
pub struct ProcessGroup {
    raw: *mut c_void,
    api: &'static ShimApi,
    device: Device,
    rank: usize,
    world: usize,
}

impl ProcessGroup {
    /// Joins over Gloo: rank 0 hosts the store and waits for the others (up
    /// to the timeout), then Gloo connects every pair of ranks.
    pub fn join(c: &GroupConfig) -> std::result::Result<ProcessGroup, String> {
        let host = CString::new(c.master_addr.as_str()).map_err(|_| "MASTER_ADDR contains a NUL byte".to_string())?;
        let iface = CString::new(c.iface.clone().unwrap_or_default()).map_err(|_| "bad GLOO_SOCKET_IFNAME")?;
        let bind = CString::new(c.bind_host.clone().unwrap_or_default()).map_err(|_| "bad bind address")?;
        let mut raw: *mut c_void = std::ptr::null_mut();
        let timeout_ms = c.timeout.as_millis().min(i64::MAX as u128) as c_longlong;
        // SAFETY: the strings outlive the call; `raw` receives an owned group or stays NULL.
        check(&GLOO, unsafe {
            caffe_dist_gloo_new(
                host.as_ptr(),
                c_int::from(c.master_port),
                c.rank as c_int,
                c.world as c_int,
                timeout_ms,
                iface.as_ptr(),
                bind.as_ptr(),
                &mut raw,
            )
        })?;
        if raw.is_null() {
            return Err("the process group was not created".into());
        }
        Ok(ProcessGroup { raw, api: &GLOO, device: Device::Cpu, rank: c.rank, world: c.world })
    }

    /// Joins over NCCL, this rank's tensors on CUDA device `device` (the
    /// NCCL shim is opened on first use).
    pub fn join_nccl(c: &GroupConfig, device: usize) -> std::result::Result<ProcessGroup, String> {
        let shim = super::nccl::shim().map_err(|e| e.to_string())?;
        let host = CString::new(c.master_addr.as_str()).map_err(|_| "MASTER_ADDR contains a NUL byte".to_string())?;
        let mut raw: *mut c_void = std::ptr::null_mut();
        let timeout_ms = c.timeout.as_millis().min(i64::MAX as u128) as c_longlong;
        // SAFETY: as in `join`; the function pointer came from the shim library, which stays loaded.
        check(&shim.api, unsafe {
            (shim.new_group)(
                host.as_ptr(),
                c_int::from(c.master_port),
                c.rank as c_int,
                c.world as c_int,
                timeout_ms,
                device as c_int,
                &mut raw,
            )
        })?;
        if raw.is_null() {
            return Err("the process group was not created".into());
        }
        Ok(ProcessGroup { raw, api: &shim.api, device: Device::Cuda(device), rank: c.rank, world: c.world })
    }

    /// Where this group's tensors live: the CPU for Gloo, a CUDA device for NCCL.
    pub fn device(&self) -> Device {
        self.device
    }

    pub fn rank(&self) -> usize {
        self.rank
    }
    pub fn world(&self) -> usize {
        self.world
    }

    /// Sums `t` (a contiguous tensor on the group's device) over all ranks, in place.
    pub fn all_reduce_sum(&self, t: &mut Tensor) -> std::result::Result<(), String> {
        self.check_tensor(t)?;
        // SAFETY: `t` is a live tensor for the whole call; the shim reads it as an at::Tensor.
        check(self.api, unsafe { (self.api.allreduce_sum)(self.raw, t.as_mut_ptr() as *mut c_void) })
    }

    /// Overwrites `t` (a contiguous tensor on the group's device) with rank `root`'s.
    pub fn broadcast(&self, t: &mut Tensor, root: usize) -> std::result::Result<(), String> {
        self.check_tensor(t)?;
        // SAFETY: as in all_reduce_sum.
        check(self.api, unsafe { (self.api.broadcast)(self.raw, t.as_mut_ptr() as *mut c_void, root as c_int) })
    }

    pub fn barrier(&self) -> std::result::Result<(), String> {
        // SAFETY: the group is live.
        check(self.api, unsafe { (self.api.barrier)(self.raw) })
    }

    /// Sets a key in the rendezvous store (seen by every rank).
    pub fn store_set(&self, key: &str, value: &[u8]) -> Result<()> {
        let k = c_string("a store key", key)?;
        // SAFETY: key and value outlive the call.
        check(self.api, unsafe { (self.api.store_set)(self.raw, k.as_ptr(), value.as_ptr(), value.len()) })
            .map_err(|e| Error::invalid(format!("the rendezvous store could not set '{key}': {e}")))
    }

    /// Reads a key of the rendezvous store, waiting for it up to the timeout.
    pub fn store_get(&self, key: &str) -> Result<Vec<u8>> {
        let k = c_string("a store key", key)?;
        let mut buf: *mut c_uchar = std::ptr::null_mut();
        let mut len = 0usize;
        // SAFETY: on success `buf` is a malloc'd buffer of `len` bytes that we copy and free.
        check(self.api, unsafe { (self.api.store_get)(self.raw, k.as_ptr(), &mut buf, &mut len) })
            .map_err(|e| Error::invalid(format!("the rendezvous store has no '{key}': {e}")))?;
        if buf.is_null() {
            return Ok(Vec::new());
        }
        let out = unsafe { std::slice::from_raw_parts(buf, len) }.to_vec();
        unsafe { libc::free(buf as *mut c_void) };
        Ok(out)
    }
}

impl ProcessGroup {
    fn check_tensor(&self, t: &Tensor) -> std::result::Result<(), String> {
        if t.device() != self.device || !t.is_contiguous() {
            return Err(format!(
                "this group's collectives take contiguous tensors on {:?} (got {:?})",
                self.device,
                t.device()
            ));
        }
        Ok(())
    }
}

impl Drop for ProcessGroup {
    fn drop(&mut self) {
        // SAFETY: `raw` came from this shim's constructor and is freed once.
        unsafe { (self.api.free)(self.raw) };
    }
}
