//! libcaffe.so: the C functions behind `include/caffe/caffe.hpp`, BVLC
//! Caffe's C++ interface: a `Net<float>` built from a prototxt, its weights
//! copied from a `.caffemodel`, its blobs' data and diffs, `Forward` and
//! `Backward` (whole or by layer range), `BlobProto` mean files,
//! `Caffe::set_mode`, `SolverParameter` with the `Solver<float>` that
//! trains it (`Step`, `Solve`, `Snapshot`, `Restore`, its nets),
//! `caffe::db` with `Datum` for programs that write or read datasets, and
//! `caffe_cpu_gemm`/`caffe_cpu_gemv`, and the program's own layer types
//! (`REGISTER_LAYER_CLASS`). A program
//! such as Caffe's `examples/cpp_classification` compiles against the header
//! and links `-lcaffe` unchanged. The nets and solvers are caffe-tch's
//! ([`caffe_tch::net::Net`], [`caffe_tch::solver::Solver`]); this crate only
//! adapts the calls (`net.rs`, `layer.rs`, `net_param.rs`, `solver.rs`, `blob_proto.rs`,
//! `datum.rs`, `db.rs`, `math.rs`: `math_functions.hpp`'s matrix products;
//! `custom_layer.rs`: the program's layer types; `message_view.rs`: the
//! messages' read accessors;
//! `message.rs`: the messages' setters and getters).
//!
//! Memory, as the header documents it: an input blob's data is the tensor
//! the Input layer reads (a write through `mutable_cpu_data()` is the next
//! forward's input, as in Caffe), and a layer's blob and its diff are the
//! net's own tensors on a CPU net (writes reach the next pass); any other
//! blob's data or diff is a host copy made when the program first asks for
//! it, which keeps its address and gets each pass's values until the blob
//! changes shape.
//! Errors: each function returns a status or a null pointer, and
//! `caffe_tch_last_error` gives the one-line message (the header throws it
//! as `std::runtime_error`). A panic never crosses into C++.
use std::cell::RefCell;
use std::ffi::{c_char, c_int, CStr, CString};
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::Mutex;

use caffe_tch::{Error, Result};
use tch::Device;

mod blob_proto;
mod custom_layer;
mod datum;
mod db;
mod layer;
mod math;
mod message;
mod message_view;
mod net;
mod net_param;
mod solver;

thread_local! {
    static LAST_ERROR: RefCell<CString> = RefCell::new(CString::default());
}

/// `Caffe::set_mode` and `Caffe::SetDevice`: the device later nets are built on.
static MODE: Mutex<(bool, usize)> = Mutex::new((false, 0));

fn set_error(msg: &str) {
    let text = CString::new(msg.replace('\0', " ")).unwrap_or_default();
    LAST_ERROR.with(|e| *e.borrow_mut() = text);
}

/// Runs `f`, turning its error (or a panic) into the last error and `fail`.
pub(crate) fn guarded<T>(fail: T, f: impl FnOnce() -> Result<T>) -> T {
    match catch_unwind(AssertUnwindSafe(f)) {
        Ok(Ok(v)) => v,
        Ok(Err(e)) => {
            set_error(&e.to_string());
            fail
        }
        Err(panic) => {
            let what = panic
                .downcast_ref::<String>()
                .cloned()
                .or_else(|| panic.downcast_ref::<&str>().map(|s| s.to_string()))
                .unwrap_or_else(|| "unknown panic".into());
            set_error(&format!("internal error: {what}"));
            fail
        }
    }
}

/// Writes `shape` into `dims` (at most `max` values); the number of axes.
///
/// # Safety
/// `dims` has room for `max` values.
pub(crate) unsafe fn write_shape(shape: &[i64], dims: *mut i64, max: c_int) -> c_int {
    for (k, &d) in shape.iter().take(max.max(0) as usize).enumerate() {
        unsafe { *dims.add(k) = d };
    }
    shape.len() as c_int
}

/// `len` values at `p`, as the header passes a string's or vector's memory
/// (none when `p` is null or `len` is 0).
///
/// # Safety
/// `p` points to `len` values that outlive the returned slice.
pub(crate) unsafe fn raw_values<'a, T>(p: *const T, len: usize) -> &'a [T] {
    if len == 0 || p.is_null() {
        &[]
    } else {
        // SAFETY: as the function's contract says.
        unsafe { std::slice::from_raw_parts(p, len) }
    }
}

pub(crate) fn text(s: *const c_char, what: &str) -> Result<String> {
    if s.is_null() {
        return Err(Error::invalid(format!("{what}: null string")));
    }
    // SAFETY: the header passes `std::string::c_str()`, NUL-terminated and
    // live for the call.
    Ok(unsafe { CStr::from_ptr(s) }.to_string_lossy().into_owned())
}

/// The message of the last failed call on this thread ("" if none).
#[no_mangle]
pub extern "C" fn caffe_tch_last_error() -> *const c_char {
    LAST_ERROR.with(|e| e.borrow().as_ptr())
}

/// `Caffe::set_mode(CPU)` (0) or `(GPU)` (1); 0 on success.
#[no_mangle]
pub extern "C" fn caffe_tch_set_mode(gpu: c_int) -> c_int {
    guarded(-1, || {
        let mut m = MODE.lock().unwrap_or_else(|p| p.into_inner());
        if gpu != 0 && caffe_tch::util::cuda::device_count() == 0 {
            return Err(Error::invalid(
                "Caffe::set_mode(Caffe::GPU): no CUDA device (caffe device_query says why); \
                 use Caffe::set_mode(Caffe::CPU)",
            ));
        }
        m.0 = gpu != 0;
        Ok(0)
    })
}

/// `Caffe::set_random_seed(seed)`: libtorch's generator, which the fillers
/// and Dropout draw from, and the program's layer types' Caffe generators.
#[no_mangle]
pub extern "C" fn caffe_tch_set_random_seed(seed: u64) {
    caffe_tch::layers::set_random_seed(seed as i64);
}

/// `Caffe::DeviceQuery()`: what `caffe device_query` reports (libtorch,
/// the CUDA library and devices), one fact a line; valid until the next call
/// on this thread.
#[no_mangle]
pub extern "C" fn caffe_tch_device_query() -> *const c_char {
    thread_local! {
        static REPORT: RefCell<CString> = RefCell::new(CString::default());
    }
    let report = guarded(String::new(), || Ok(caffe_tch::tools::device_query::report().join("\n")));
    REPORT.with(|r| {
        *r.borrow_mut() = CString::new(report.replace('\0', " ")).unwrap_or_default();
        r.borrow().as_ptr()
    })
}

/// The device `Caffe::set_mode` and `Caffe::SetDevice` chose.
pub(crate) fn device() -> Device {
    let (gpu, id) = *MODE.lock().unwrap_or_else(|p| p.into_inner());
    if gpu {
        Device::Cuda(id)
    } else {
        Device::Cpu
    }
}

/// `Caffe::SetDevice(id)`; 0 on success.
#[no_mangle]
pub extern "C" fn caffe_tch_set_device(id: c_int) -> c_int {
    guarded(-1, || {
        if id < 0 {
            return Err(Error::invalid(format!("Caffe::SetDevice: negative device id {id}")));
        }
        MODE.lock().unwrap_or_else(|p| p.into_inner()).1 = id as usize;
        Ok(0)
    })
}
