//! CUDA graphs (libtorch's `at::cuda::CUDAGraph`, through the CUDA shim's
//! `csrc/cuda_graph.cpp`): work recorded once on a side stream and replayed
//! as one launch, for steps whose time is the launching of many small
//! kernels. The caller keeps every tensor the recorded work reads or writes
//! alive and at the same address, and fills the inputs in place before each
//! replay; see `net::graph`.
use std::ffi::{c_char, c_int, c_void, CStr};
use std::sync::OnceLock;

use tch::Device;

use crate::util::cuda;
use crate::{Error, Result};

type NewFn = unsafe extern "C" fn(c_int, *mut *mut c_void) -> *mut c_char;
type CallFn = unsafe extern "C" fn(*mut c_void) -> *mut c_char;
type FreeFn = unsafe extern "C" fn(*mut c_void);
type StringFreeFn = unsafe extern "C" fn(*mut c_char);

struct Api {
    new: NewFn,
    enter: CallFn,
    leave: CallFn,
    capture_begin: CallFn,
    capture_end: CallFn,
    abort: CallFn,
    replay: CallFn,
    free: FreeFn,
    string_free: StringFreeFn,
}

static API: OnceLock<std::result::Result<Api, String>> = OnceLock::new();

fn open() -> std::result::Result<Api, String> {
    let lib = cuda::shim().map_err(|e| e.to_string())?;
    let sym = |name: &str| lib.symbol(name).map_err(|e| e.to_string());
    // SAFETY: each symbol is the extern "C" function of csrc/cuda_graph.cpp
    // with exactly the signature of the pointer type it becomes.
    unsafe {
        Ok(Api {
            new: std::mem::transmute::<*mut c_void, NewFn>(sym("caffe_graph_new")?),
            enter: std::mem::transmute::<*mut c_void, CallFn>(sym("caffe_graph_enter")?),
            leave: std::mem::transmute::<*mut c_void, CallFn>(sym("caffe_graph_leave")?),
            capture_begin: std::mem::transmute::<*mut c_void, CallFn>(sym("caffe_graph_capture_begin")?),
            capture_end: std::mem::transmute::<*mut c_void, CallFn>(sym("caffe_graph_capture_end")?),
            abort: std::mem::transmute::<*mut c_void, CallFn>(sym("caffe_graph_abort")?),
            replay: std::mem::transmute::<*mut c_void, CallFn>(sym("caffe_graph_replay")?),
            free: std::mem::transmute::<*mut c_void, FreeFn>(sym("caffe_graph_free")?),
            string_free: std::mem::transmute::<*mut c_void, StringFreeFn>(sym("caffe_graph_string_free")?),
        })
    }
}

fn api() -> Result<&'static Api> {
    API.get_or_init(open).as_ref().map_err(|why| Error::unsupported(format!("CUDA graphs: {why}")))
}

/// One CUDA graph on one device, with its side stream and memory pool.
pub struct CudaGraph {
    handle: *mut c_void,
    api: &'static Api,
    device: usize,
}

impl CudaGraph {
    /// A graph for `device` (a CUDA device; the CPU has no graphs).
    pub fn new(device: Device) -> Result<CudaGraph> {
        let Device::Cuda(index) = device else {
            return Err(Error::unsupported("CUDA graphs need a CUDA device (-gpu N); this run is on the CPU"));
        };
        let api = api()?;
        let mut handle = std::ptr::null_mut();
        // SAFETY: the shim writes the new handle or returns an error string.
        let err = unsafe { (api.new)(index as c_int, &mut handle) };
        check(api, err, "creating a CUDA graph")?;
        Ok(CudaGraph { handle, api, device: index })
    }

    pub fn device(&self) -> usize {
        self.device
    }

    /// Runs `f` with this thread's device work on the graph's side stream;
    /// the stream before is current again afterwards, whatever `f` returned.
    pub fn on_side_stream<T>(&mut self, f: impl FnOnce(&mut Self) -> Result<T>) -> Result<T> {
        self.call(self.api.enter, "entering the graph's side stream")?;
        let out = f(self);
        let left = self.call(self.api.leave, "leaving the graph's side stream");
        let out = out?;
        left?;
        Ok(out)
    }

    /// Records the device work `f` queues (inside [`CudaGraph::on_side_stream`])
    /// instead of running it. When `f` fails (an operation a graph cannot
    /// hold, such as reading a value on the host, which tch reports by a
    /// panic where its call cannot fail otherwise) the capture is ended and
    /// the error returned; the graph then cannot replay, and what `f` left
    /// half-done is the caller's to redo.
    pub fn capture<T>(&mut self, f: impl FnOnce() -> Result<T>) -> Result<T> {
        self.call(self.api.capture_begin, "starting a CUDA graph capture")?;
        let out = match crate::util::contain::contain_panic(f) {
            Ok(out) => out,
            Err(panic) => Err(Error::unsupported(panic)),
        };
        match out {
            Ok(v) => {
                self.call(self.api.capture_end, "ending a CUDA graph capture")?;
                Ok(v)
            }
            Err(e) => {
                self.call(self.api.abort, "ending a failed CUDA graph capture")?;
                Err(e)
            }
        }
    }

    /// Runs the recorded work on the current stream.
    pub fn replay(&mut self) -> Result<()> {
        self.call(self.api.replay, "replaying a CUDA graph")
    }

    fn call(&mut self, f: CallFn, what: &str) -> Result<()> {
        // SAFETY: a live handle from caffe_graph_new.
        let err = unsafe { f(self.handle) };
        check(self.api, err, what)
    }
}

fn check(api: &Api, err: *mut c_char, what: &str) -> Result<()> {
    if err.is_null() {
        return Ok(());
    }
    // SAFETY: a malloc'd NUL-terminated string from the shim, freed by it once read.
    let msg = unsafe {
        let m = CStr::from_ptr(err).to_string_lossy().into_owned();
        (api.string_free)(err);
        m
    };
    Err(Error::unsupported(format!("{what}: {}", msg.lines().next().unwrap_or("").trim())))
}

impl Drop for CudaGraph {
    fn drop(&mut self) {
        // SAFETY: a live handle, freed once.
        unsafe { (self.api.free)(self.handle) }
    }
}
