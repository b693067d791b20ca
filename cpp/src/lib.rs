//! libcaffe.so: the C functions behind `include/caffe/caffe.hpp`, the part
//! of BVLC Caffe's C++ interface that deployment programs use (a `Net<float>`
//! built from a prototxt, its weights copied from a `.caffemodel`, its input
//! blobs written through `mutable_cpu_data()`, `Forward()`, its output blobs
//! read through `cpu_data()`; `BlobProto` mean files; `Caffe::set_mode`), so a
//! program such as Caffe's `examples/cpp_classification` compiles against
//! the header and links `-lcaffe` unchanged. The nets are caffe-tch's
//! ([`caffe_tch::net::Net`]); this crate only adapts the calls.
//!
//! Memory, as the header documents it: an input blob's data is the tensor
//! the Input layer reads (a write through `mutable_cpu_data()` is the next
//! forward's input, as in Caffe), and a layer's blob is the net's own weight
//! tensor on a CPU net (writes reach the next forward); any other blob's data is a host copy made
//! when the program first asks for it, which keeps its address and gets each
//! forward's values until the blob changes shape.
//! Errors: each function returns a status or a null pointer, and
//! `caffe_tch_last_error` gives the one-line message (the header throws it
//! as `std::runtime_error`). A panic never crosses into C++.
use std::cell::RefCell;
use std::collections::HashMap;
use std::ffi::{c_char, c_int, CStr, CString};
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::Path;
use std::sync::Mutex;

use caffe_tch::net::Net;
use caffe_tch::proto::binary;
use caffe_tch::proto::caffe::{BlobProto, NetState, Phase};
use caffe_tch::{Error, Result};
use tch::{Device, Kind, Tensor};

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
fn guarded<T>(fail: T, f: impl FnOnce() -> Result<T>) -> T {
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
unsafe fn write_shape(shape: &[i64], dims: *mut i64, max: c_int) -> c_int {
    for (k, &d) in shape.iter().take(max.max(0) as usize).enumerate() {
        unsafe { *dims.add(k) = d };
    }
    shape.len() as c_int
}

fn text(s: *const c_char, what: &str) -> Result<String> {
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
/// and Dropout draw from.
#[no_mangle]
pub extern "C" fn caffe_tch_set_random_seed(seed: u64) {
    tch::manual_seed(seed as i64);
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

/// One net and what the header has asked of it.
pub struct NetHandle {
    net: Net,
    /// Input blobs' host tensors, which the Input layers read.
    inputs: HashMap<String, Tensor>,
    /// Other blobs' host copies, made on request and kept at the same
    /// address: each forward writes the new values into them (a program may
    /// keep the pointer, as Caffe's blobs keep their memory); one whose
    /// blob changed shape is dropped.
    copies: HashMap<String, Tensor>,
    /// Names handed out as C strings.
    names: HashMap<String, CString>,
    /// Whether the program holds pointers into the layers' blobs (weights),
    /// which it may write unseen by libtorch.
    weights_exposed: bool,
}

impl NetHandle {
    fn is_input(&self, name: &str) -> bool {
        self.net.input_blob_names().contains(&name)
    }

    /// The host tensor of input `name`, made (and given to its Input layer)
    /// at its current shape when there is none.
    fn input(&mut self, name: &str) -> Result<Tensor> {
        if let Some(t) = self.inputs.get(name) {
            return Ok(t.shallow_clone());
        }
        let shape =
            self.net.blob_shape(name).ok_or_else(|| Error::invalid(format!("net has no blob named '{name}'")))?.clone();
        let host = Tensor::f_zeros(shape.as_slice(), (Kind::Float, Device::Cpu))?;
        self.net.set_input(name, &host)?;
        self.inputs.insert(name.to_string(), host.shallow_clone());
        Ok(host)
    }

    /// Before a forward: inputs written on the host reach a net on a GPU.
    fn push_inputs(&mut self) -> Result<()> {
        if self.net.device() == Device::Cpu {
            return Ok(());
        }
        for (name, host) in &self.inputs {
            self.net.set_input(name, host)?;
        }
        Ok(())
    }

    /// The host copies brought up to date with the net's blobs, in place;
    /// those whose blob has another shape now are dropped (their next
    /// request makes them anew, as Caffe reallocates a blob that grows).
    fn refresh_copies(&mut self) -> Result<()> {
        let net = &self.net;
        self.copies.retain(|name, host| net.blob_shape(name).is_some_and(|s| *s == host.size()));
        for (name, host) in &mut self.copies {
            match self.net.blob(name) {
                Some(v) if v.size() == host.size() => {
                    host.f_copy_(v)?;
                }
                _ => {}
            }
        }
        Ok(())
    }

    fn name_ptr(&mut self, name: &str) -> *const c_char {
        self.names.entry(name.to_string()).or_insert_with(|| CString::new(name).unwrap_or_default()).as_ptr()
    }
}

fn handle<'a>(h: *mut NetHandle) -> Result<&'a mut NetHandle> {
    // SAFETY: the header passes the pointer `caffe_tch_net_new` returned,
    // until it calls `caffe_tch_net_free`; one thread at a time, as Caffe's
    // Net is used.
    unsafe { h.as_mut() }.ok_or_else(|| Error::invalid("null net"))
}

/// `new Net<float>(param_file, phase, level, stages)`: stages is an array of
/// `n_stages` strings. Null on error.
/// # Safety
/// Pointers as `include/caffe/caffe.hpp` passes them: what this library
/// returned and has not freed, NUL-terminated strings, arrays of the length given.
#[no_mangle]
pub unsafe extern "C" fn caffe_tch_net_new(
    param_file: *const c_char,
    phase: c_int,
    level: c_int,
    stages: *const *const c_char,
    n_stages: c_int,
) -> *mut NetHandle {
    guarded(std::ptr::null_mut(), || {
        let file = text(param_file, "Net")?;
        let phase = if phase == 0 { Phase::Train } else { Phase::Test };
        let mut state = NetState { phase: Some(phase as i32), level: Some(level), ..Default::default() };
        for i in 0..n_stages.max(0) as usize {
            // SAFETY: `stages` holds `n_stages` C strings (the header's vector).
            let s = unsafe { *stages.add(i) };
            state.stage.push(text(s, "Net stage")?);
        }
        let (gpu, id) = *MODE.lock().unwrap_or_else(|p| p.into_inner());
        let device = if gpu { Device::Cuda(id) } else { Device::Cpu };
        caffe_tch::util::allocator::install_caching_cpu_allocator();
        let net = Net::from_file(Path::new(&file), &state, Default::default(), device)?;
        let h = NetHandle {
            net,
            inputs: HashMap::new(),
            copies: HashMap::new(),
            names: HashMap::new(),
            weights_exposed: false,
        };
        Ok(Box::into_raw(Box::new(h)))
    })
}

/// # Safety
/// Pointers as `include/caffe/caffe.hpp` passes them: what this library
/// returned and has not freed, NUL-terminated strings, arrays of the length given.
#[no_mangle]
pub unsafe extern "C" fn caffe_tch_net_free(h: *mut NetHandle) {
    if !h.is_null() {
        // SAFETY: made by Box::into_raw in caffe_tch_net_new, freed once.
        drop(unsafe { Box::from_raw(h) });
    }
}

/// `CopyTrainedLayersFrom(file)` (.caffemodel, or the other weight files
/// caffe-tch reads); 0 on success.
/// # Safety
/// Pointers as `include/caffe/caffe.hpp` passes them: what this library
/// returned and has not freed, NUL-terminated strings, arrays of the length given.
#[no_mangle]
pub unsafe extern "C" fn caffe_tch_net_copy_trained_layers_from(h: *mut NetHandle, file: *const c_char) -> c_int {
    guarded(-1, || {
        let h = handle(h)?;
        let file = text(file, "CopyTrainedLayersFrom")?;
        h.net.load_weights(Path::new(&file))?;
        Ok(0)
    })
}

/// The names of the net's inputs (`which` 0), outputs (1), blobs (2) or
/// layers (3), or the layers' types (4), in the net's order.
fn names_of(net: &Net, which: c_int) -> Vec<&str> {
    match which {
        0 => net.input_blob_names(),
        1 => net.output_blob_names(),
        2 => net.blob_names(),
        3 => net.layer_names(),
        _ => net.layer_types(),
    }
}

/// How many names of kind `which` ([`names_of`]).
/// # Safety
/// Pointers as `include/caffe/caffe.hpp` passes them: what this library
/// returned and has not freed, NUL-terminated strings, arrays of the length given.
#[no_mangle]
pub unsafe extern "C" fn caffe_tch_net_count(h: *mut NetHandle, which: c_int) -> c_int {
    guarded(-1, || Ok(names_of(&handle(h)?.net, which).len() as c_int))
}

/// The `i`-th name of kind `which` ([`names_of`]); null past the end. Valid
/// while the net lives.
/// # Safety
/// Pointers as `include/caffe/caffe.hpp` passes them: what this library
/// returned and has not freed, NUL-terminated strings, arrays of the length given.
#[no_mangle]
pub unsafe extern "C" fn caffe_tch_net_name(h: *mut NetHandle, which: c_int, i: c_int) -> *const c_char {
    guarded(std::ptr::null(), || {
        let h = handle(h)?;
        let name = names_of(&h.net, which)
            .get(i.max(0) as usize)
            .map(|s| s.to_string())
            .ok_or_else(|| Error::invalid(format!("no name {i} of kind {which}")))?;
        Ok(h.name_ptr(&name))
    })
}

/// The shape of blob `name` into `dims` (at most `max`); its number of axes,
/// or -1 on error (no such blob).
/// # Safety
/// Pointers as `include/caffe/caffe.hpp` passes them: what this library
/// returned and has not freed, NUL-terminated strings, arrays of the length given.
#[no_mangle]
pub unsafe extern "C" fn caffe_tch_net_blob_shape(
    h: *mut NetHandle,
    name: *const c_char,
    dims: *mut i64,
    max: c_int,
) -> c_int {
    guarded(-1, || {
        let h = handle(h)?;
        let name = text(name, "blob")?;
        let shape = h.net.blob_shape(&name).ok_or_else(|| Error::invalid(format!("net has no blob named '{name}'")))?;
        // SAFETY: the header passes room for `max` values.
        Ok(unsafe { write_shape(shape, dims, max) })
    })
}

/// `Blob::Reshape` of an input blob (the net's other blobs take their shapes
/// from it at `Net::Reshape` or `Forward`); 0 on success.
/// # Safety
/// Pointers as `include/caffe/caffe.hpp` passes them: what this library
/// returned and has not freed, NUL-terminated strings, arrays of the length given.
#[no_mangle]
pub unsafe extern "C" fn caffe_tch_net_reshape_input(
    h: *mut NetHandle,
    name: *const c_char,
    dims: *const i64,
    n: c_int,
) -> c_int {
    guarded(-1, || {
        let h = handle(h)?;
        let name = text(name, "Reshape")?;
        if !h.is_input(&name) {
            return Err(Error::invalid(format!(
                "Blob::Reshape: '{name}' is not an input of the net; its shape follows the layers (Net::Reshape)"
            )));
        }
        // SAFETY: the header passes `n` values.
        let shape: Vec<i64> = (0..n.max(0) as usize).map(|k| unsafe { *dims.add(k) }).collect();
        if h.net.blob_shape(&name).is_some_and(|s| *s == shape) {
            return Ok(0);
        }
        h.net.reshape_input(&name, &shape)?;
        h.inputs.remove(&name);
        Ok(0)
    })
}

/// `Net::Reshape()`: every blob's shape from the inputs'; 0 on success.
/// # Safety
/// Pointers as `include/caffe/caffe.hpp` passes them: what this library
/// returned and has not freed, NUL-terminated strings, arrays of the length given.
#[no_mangle]
pub unsafe extern "C" fn caffe_tch_net_reshape(h: *mut NetHandle) -> c_int {
    guarded(-1, || {
        let h = handle(h)?;
        h.net.reshape()?;
        h.refresh_copies()?;
        Ok(0)
    })
}

/// The host memory of blob `name` (its shape's count of floats): for an
/// input, what the next forward reads; for another blob, a copy of its value
/// (zeros before a forward made it) that later forwards update in place.
/// Valid until the blob changes shape; null on error.
/// # Safety
/// Pointers as `include/caffe/caffe.hpp` passes them: what this library
/// returned and has not freed, NUL-terminated strings, arrays of the length given.
#[no_mangle]
pub unsafe extern "C" fn caffe_tch_net_blob_data(h: *mut NetHandle, name: *const c_char) -> *mut f32 {
    guarded(std::ptr::null_mut(), || {
        let h = handle(h)?;
        let name = text(name, "blob")?;
        let t = if h.is_input(&name) {
            h.input(&name)?
        } else if let Some(t) = h.copies.get(&name) {
            t.shallow_clone()
        } else {
            let shape = h
                .net
                .blob_shape(&name)
                .ok_or_else(|| Error::invalid(format!("net has no blob named '{name}'")))?
                .clone();
            let copy = match h.net.blob(&name) {
                Some(v) if v.size() == shape => v
                    .f_to_device(Device::Cpu)
                    .and_then(|v| v.f_to_kind(Kind::Float))
                    .and_then(|v| v.f_detach_copy())
                    .and_then(|v| v.f_contiguous()),
                _ => Tensor::f_zeros(shape.as_slice(), (Kind::Float, Device::Cpu)),
            }?;
            h.copies.insert(name.clone(), copy.shallow_clone());
            copy
        };
        Ok(t.data_ptr() as *mut f32)
    })
}

/// `Forward(&loss)`: the net's forward with no backward after it; the loss
/// (0 for a net without one) into `loss` when not null. 0 on success.
/// # Safety
/// Pointers as `include/caffe/caffe.hpp` passes them: what this library
/// returned and has not freed, NUL-terminated strings, arrays of the length given.
#[no_mangle]
pub unsafe extern "C" fn caffe_tch_net_forward(h: *mut NetHandle, loss: *mut f32) -> c_int {
    guarded(-1, || {
        let h = handle(h)?;
        h.push_inputs()?;
        if h.weights_exposed {
            // What layers derive from weights (packed convolutions) is made
            // again: the program may have written them through its pointers.
            caffe_tch::layers::weights_written_outside_libtorch();
        }
        // As Caffe's Forward, each layer takes its bottoms' current shapes.
        h.net.reshape()?;
        let value = h.net.forward_inference()?;
        h.refresh_copies()?;
        if !loss.is_null() {
            // SAFETY: the header passes a float or null.
            unsafe { *loss = value as f32 };
        }
        Ok(0)
    })
}

/// The `layer`-th layer's name and blobs (weights, bias, statistics).
fn layer_blobs(h: &NetHandle, layer: c_int) -> Result<(&str, Vec<&Tensor>)> {
    let names = h.net.layer_names();
    let name = *names.get(layer.max(0) as usize).ok_or_else(|| Error::invalid(format!("no layer {layer}")))?;
    Ok((name, h.net.layer_blobs(name).unwrap_or_default()))
}

/// Blob `j` of layer `layer`, as a tensor.
fn layer_blob(h: &NetHandle, layer: c_int, j: c_int) -> Result<Tensor> {
    let (name, blobs) = layer_blobs(h, layer)?;
    let t = blobs
        .get(j.max(0) as usize)
        .ok_or_else(|| Error::invalid(format!("layer '{name}' has {} blobs, not a blob {j}", blobs.len())))?;
    Ok(t.shallow_clone())
}

/// How many blobs layer `layer` has.
/// # Safety
/// Pointers as `include/caffe/caffe.hpp` passes them: what this library
/// returned and has not freed, NUL-terminated strings, arrays of the length given.
#[no_mangle]
pub unsafe extern "C" fn caffe_tch_net_layer_blob_count(h: *mut NetHandle, layer: c_int) -> c_int {
    guarded(-1, || Ok(layer_blobs(handle(h)?, layer)?.1.len() as c_int))
}

/// The shape of blob `j` of layer `layer` into `dims` (at most `max`); its
/// number of axes, or -1 on error.
/// # Safety
/// Pointers as `include/caffe/caffe.hpp` passes them: what this library
/// returned and has not freed, NUL-terminated strings, arrays of the length given.
#[no_mangle]
pub unsafe extern "C" fn caffe_tch_net_layer_blob_shape(
    h: *mut NetHandle,
    layer: c_int,
    j: c_int,
    dims: *mut i64,
    max: c_int,
) -> c_int {
    guarded(-1, || {
        let shape = layer_blob(handle(h)?, layer, j)?.size();
        // SAFETY: the header passes room for `max` values.
        Ok(unsafe { write_shape(&shape, dims, max) })
    })
}

/// The memory of blob `j` of layer `layer` itself (a CPU net's weights are
/// contiguous floats): what the program writes there is the layer's blob,
/// as in Caffe. Null on error (a net on a GPU).
/// # Safety
/// Pointers as `include/caffe/caffe.hpp` passes them: what this library
/// returned and has not freed, NUL-terminated strings, arrays of the length given.
#[no_mangle]
pub unsafe extern "C" fn caffe_tch_net_layer_blob_data(h: *mut NetHandle, layer: c_int, j: c_int) -> *mut f32 {
    guarded(std::ptr::null_mut(), || {
        let h = handle(h)?;
        let t = layer_blob(h, layer, j)?;
        if t.device() != Device::Cpu || t.kind() != Kind::Float || !t.is_contiguous() {
            return Err(Error::unsupported(format!(
                "a layer blob's memory is read on the CPU, and this one is {:?} {:?} (Caffe::set_mode(Caffe::CPU))",
                t.device(),
                t.kind()
            )));
        }
        h.weights_exposed = true;
        Ok(t.data_ptr() as *mut f32)
    })
}

/// A BlobProto file (a mean file) read: its shape and values, which
/// `caffe_tch_blob_proto_free` releases; null on error.
pub struct BlobProtoHandle {
    shape: Vec<i64>,
    data: Vec<f32>,
}

/// # Safety
/// Pointers as `include/caffe/caffe.hpp` passes them: what this library
/// returned and has not freed, NUL-terminated strings, arrays of the length given.
#[no_mangle]
pub unsafe extern "C" fn caffe_tch_blob_proto_read(file: *const c_char) -> *mut BlobProtoHandle {
    guarded(std::ptr::null_mut(), || {
        let file = text(file, "ReadProtoFromBinaryFile")?;
        let path = Path::new(&file);
        let blob: BlobProto = binary::read_message(path)?;
        binary::check_blob(&blob, path, "blob")?;
        let h = BlobProtoHandle { shape: binary::blob_shape(&blob), data: binary::blob_data_f32(&blob) };
        Ok(Box::into_raw(Box::new(h)))
    })
}

/// The shape of a read BlobProto into `dims` (at most `max`); its axes.
/// # Safety
/// Pointers as `include/caffe/caffe.hpp` passes them: what this library
/// returned and has not freed, NUL-terminated strings, arrays of the length given.
#[no_mangle]
pub unsafe extern "C" fn caffe_tch_blob_proto_shape(h: *const BlobProtoHandle, dims: *mut i64, max: c_int) -> c_int {
    // SAFETY: a pointer caffe_tch_blob_proto_read returned, not yet freed.
    let Some(h) = (unsafe { h.as_ref() }) else { return -1 };
    // SAFETY: the header passes room for `max` values.
    unsafe { write_shape(&h.shape, dims, max) }
}

/// The values of a read BlobProto (as many as its shape counts).
/// # Safety
/// Pointers as `include/caffe/caffe.hpp` passes them: what this library
/// returned and has not freed, NUL-terminated strings, arrays of the length given.
#[no_mangle]
pub unsafe extern "C" fn caffe_tch_blob_proto_data(h: *const BlobProtoHandle) -> *const f32 {
    // SAFETY: as above.
    unsafe { h.as_ref() }.map_or(std::ptr::null(), |h| h.data.as_ptr())
}

/// # Safety
/// Pointers as `include/caffe/caffe.hpp` passes them: what this library
/// returned and has not freed, NUL-terminated strings, arrays of the length given.
#[no_mangle]
pub unsafe extern "C" fn caffe_tch_blob_proto_free(h: *mut BlobProtoHandle) {
    if !h.is_null() {
        // SAFETY: made by Box::into_raw in caffe_tch_blob_proto_read, freed once.
        drop(unsafe { Box::from_raw(h) });
    }
}
