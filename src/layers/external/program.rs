//! A layer type from C++ code: a class derived from `caffe::Layer<float>`
//! and registered with `REGISTER_LAYER_CLASS` through the C++ header
//! (`cpp/include/caffe/caffe.hpp`), which hands over a [`LayerTable`] of
//! functions reaching the program's objects. This is the one place the
//! library calls such code: a [`ProgramLayer`] is a net's layer of that type.
//!
//! Values cross as in Caffe: the layer's bottom, top and learnable blobs are
//! the program's own `Blob<float>` objects (host memory). Before its forward
//! the bottoms are copied in and the net's weights copied into its blobs; the
//! tops are copied out after. Its backward is its own `Backward_cpu` (the net
//! runs it in the staged backward, as Python layers'): the tops' gradients
//! go into the top diffs, the bottom and weight diffs (zeroed first, as
//! Caffe's net clears weight diffs before each pass) come back out.
use std::ffi::{c_char, c_int, c_void, CStr, CString};

use prost::Message;
use tch::{Device, Kind, Tensor};

use crate::layers::{Ctx, Gradients, Layer, ParamDecl, SetupOut, Shape};
use crate::proto::caffe::LayerParameter;
use crate::{Error, Result};

/// Which of a layer's blobs `blob_memory` and `shape` address.
const BOTTOM: c_int = 0;
const TOP: c_int = 1;
const PARAM: c_int = 2;

/// The header's functions for one registered type (`internal::CustomLayerTable`).
/// Each returns 0 (or a non-null pointer, or a rank) on success; on failure
/// the message is `error()`'s, the program's exception.
#[repr(C)]
#[derive(Clone, Copy)]
pub struct LayerTable {
    /// A new layer object: the type, the LayerParameter's encoding, and its
    /// bottom then top names (a top named like a bottom is that bottom).
    create: unsafe extern "C" fn(
        ty: *const c_char,
        message: *const u8,
        len: usize,
        names: *const *const c_char,
        n_bottom: c_int,
        n_top: c_int,
    ) -> *mut c_void,
    destroy: unsafe extern "C" fn(obj: *mut c_void),
    /// Reshapes bottom `k` (the program's blob) to `rank` dims.
    set_bottom_shape: unsafe extern "C" fn(obj: *mut c_void, k: c_int, dims: *const i64, rank: c_int) -> c_int,
    /// `SetUp` (LayerSetUp, then Reshape) when `first`, else `Reshape`.
    setup: unsafe extern "C" fn(obj: *mut c_void, first: c_int) -> c_int,
    /// How many bottoms (0), tops (1), learnable blobs (2) the object has.
    count: unsafe extern "C" fn(obj: *mut c_void, which: c_int) -> c_int,
    /// The shape of blob `index` of kind `which` into `dims`; its rank.
    shape: unsafe extern "C" fn(obj: *mut c_void, which: c_int, index: c_int, dims: *mut i64, max: c_int) -> c_int,
    /// The data (or diff) of blob `index` of kind `which`.
    blob_memory: unsafe extern "C" fn(obj: *mut c_void, which: c_int, index: c_int, diff: c_int) -> *mut f32,
    /// `Reshape` then `Forward_cpu`.
    forward: unsafe extern "C" fn(obj: *mut c_void) -> c_int,
    /// `Backward_cpu` with a flag per bottom.
    backward: unsafe extern "C" fn(obj: *mut c_void, propagate_down: *const c_int, n: c_int) -> c_int,
    /// The last failure's message on this thread.
    error: unsafe extern "C" fn() -> *const c_char,
    /// Whether the object is a `LossLayer` (its top weighted 1 by default).
    is_loss: unsafe extern "C" fn(obj: *mut c_void) -> c_int,
    /// Seeds the Caffe generator (`caffe_rng()`) of the code that registered
    /// the type: its fillers' and `caffe_rng_*`'s draws.
    pub(super) seed: unsafe extern "C" fn(seed: u64),
}

impl LayerTable {
    /// The table at `table`, which the header says holds `size` bytes: code
    /// compiled against another version of the header is refused.
    ///
    /// # Safety
    /// `table` is null or points to `size` readable bytes.
    pub unsafe fn read(ty: &str, table: *const LayerTable, size: usize) -> Result<LayerTable> {
        if table.is_null() {
            return Err(Error::invalid(format!("REGISTER_LAYER_CLASS({ty}) passed no function table")));
        }
        if size != std::mem::size_of::<LayerTable>() {
            return Err(Error::invalid(format!(
                "REGISTER_LAYER_CLASS({ty}) was compiled against another version of caffe-tch's \
                 caffe/caffe.hpp (its layer table is {size} bytes, this one's {}): rebuild it against this one",
                std::mem::size_of::<LayerTable>()
            )));
        }
        // SAFETY: as the function's contract says; the size matches.
        Ok(unsafe { *table })
    }
}

/// One layer of a program's type in a net.
pub struct ProgramLayer {
    table: LayerTable,
    obj: *mut c_void,
    /// For each top, the bottom it is (computed in place), if any.
    in_place: Vec<Option<usize>>,
    set_up: bool,
}

// SAFETY: the object is used from one thread at a time, the net's; the
// program's class is as thread-safe as Caffe required of it (nets are not
// shared across threads).
unsafe impl Send for ProgramLayer {}

impl Drop for ProgramLayer {
    fn drop(&mut self) {
        // SAFETY: `obj` came from `create` and is destroyed once.
        unsafe { (self.table.destroy)(self.obj) };
    }
}

impl ProgramLayer {
    /// A layer of the type `table` reaches, made by its creator from `param`.
    pub fn new(table: LayerTable, param: &LayerParameter) -> Result<Self> {
        let layer = Self::create(table, param)?;
        if param.top.is_empty() && layer.is_loss_layer() {
            // Caffe gives a loss declared without a top an anonymous one
            // (the net names it); the object is made again with it.
            let mut named = param.clone();
            named.top.push("(automatic)".to_string());
            return Self::create(table, &named);
        }
        Ok(layer)
    }

    fn create(table: LayerTable, param: &LayerParameter) -> Result<Self> {
        let cstr = |s: &str| CString::new(s).map_err(|_| Error::invalid(format!("a NUL byte in the name '{s}'")));
        let ty = cstr(param.r#type())?;
        let message = param.encode_to_vec();
        let names: Vec<CString> = param.bottom.iter().chain(&param.top).map(|n| cstr(n)).collect::<Result<_>>()?;
        let pointers: Vec<*const c_char> = names.iter().map(|n| n.as_ptr()).collect();
        // SAFETY: NUL-terminated strings, an array of bottoms + tops of them,
        // and the encoded message, all live for the call.
        let obj = unsafe {
            (table.create)(
                ty.as_ptr(),
                message.as_ptr(),
                message.len(),
                pointers.as_ptr(),
                param.bottom.len() as c_int,
                param.top.len() as c_int,
            )
        };
        if obj.is_null() {
            return Err(Error::invalid(format!("its creator threw: {}", error_of(&table))));
        }
        let in_place = param.top.iter().map(|t| param.bottom.iter().position(|b| b == t)).collect();
        Ok(ProgramLayer { table, obj, in_place, set_up: false })
    }

    /// A call's status as a Result, with the program's message (the net
    /// names the layer).
    fn check(&self, call: &str, status: c_int) -> Result<()> {
        if status == 0 {
            Ok(())
        } else {
            Err(Error::invalid(format!("{call} threw: {}", error_of(&self.table))))
        }
    }

    fn count(&self, which: c_int) -> usize {
        // SAFETY: a live object.
        unsafe { (self.table.count)(self.obj, which) }.max(0) as usize
    }

    fn shape(&self, which: c_int, index: usize) -> Result<Shape> {
        let mut dims = [0i64; crate::layers::MAX_BLOB_AXES];
        // SAFETY: a live object; `dims` holds MAX_BLOB_AXES values.
        let rank =
            unsafe { (self.table.shape)(self.obj, which, index as c_int, dims.as_mut_ptr(), dims.len() as c_int) };
        if rank < 0 || rank as usize > dims.len() {
            return Err(Error::invalid(format!(
                "{} has no shape ({})",
                blob_name(which, index),
                error_of(&self.table)
            )));
        }
        Ok(dims[..rank as usize].to_vec())
    }

    /// The blob's shape, and its data (or diff) as a slice of its count.
    fn memory(&mut self, which: c_int, index: usize, diff: bool) -> Result<(Shape, &mut [f32])> {
        let shape = self.shape(which, index)?;
        let n = shape.iter().product::<i64>().max(0) as usize;
        // SAFETY: a live object; the header returns the blob's own vector's memory.
        let p = unsafe { (self.table.blob_memory)(self.obj, which, index as c_int, diff as c_int) };
        if p.is_null() {
            return Err(Error::invalid(format!(
                "{} has no memory ({})",
                blob_name(which, index),
                error_of(&self.table)
            )));
        }
        // SAFETY: the blob holds `n` floats, which only this borrow of the layer reaches until it ends.
        Ok((shape, unsafe { std::slice::from_raw_parts_mut(p, n) }))
    }

    fn set_bottom_shape(&self, k: usize, shape: &[i64]) -> Result<()> {
        // SAFETY: a live object; `shape` has `len` values.
        let status =
            unsafe { (self.table.set_bottom_shape)(self.obj, k as c_int, shape.as_ptr(), shape.len() as c_int) };
        self.check("Reshape of a bottom", status)
    }

    /// Copies `t` into blob `index` of kind `which` (its data or diff), reshaping a bottom to it.
    fn put(&mut self, which: c_int, index: usize, t: &Tensor, diff: bool) -> Result<()> {
        if which == BOTTOM && !diff {
            self.set_bottom_shape(index, &t.size())?;
        }
        let host = tch::no_grad(|| t.f_detach()?.f_to_device(Device::Cpu)?.f_to_kind(Kind::Float)?.f_contiguous())?;
        let (_, dst) = self.memory(which, index, diff)?;
        if dst.len() != host.numel() {
            return Err(Error::invalid(format!(
                "{} holds {} values, the net's {}",
                blob_name(which, index),
                dst.len(),
                host.numel()
            )));
        }
        let n = dst.len();
        host.f_copy_data(dst, n)?;
        Ok(())
    }

    /// Blob `index` of kind `which` (data or diff) as a tensor on `device`.
    fn take(&mut self, which: c_int, index: usize, diff: bool, device: Device) -> Result<Tensor> {
        let (shape, values) = self.memory(which, index, diff)?;
        Ok(Tensor::f_from_slice(values)?.f_reshape(shape.as_slice())?.f_to_device(device)?)
    }

    fn zero(&mut self, which: c_int, index: usize) -> Result<()> {
        self.memory(which, index, true)?.1.fill(0.0);
        Ok(())
    }
}

/// "bottom 0", "top 1", "blob 2" (a learnable one), for messages.
fn blob_name(which: c_int, index: usize) -> String {
    let kind = match which {
        BOTTOM => "bottom",
        TOP => "top",
        _ => "blob",
    };
    format!("{kind} {index}")
}

fn error_of(table: &LayerTable) -> String {
    // SAFETY: the header's function returns a NUL-terminated thread-local string.
    let p = unsafe { (table.error)() };
    if p.is_null() {
        return "an unknown error".to_string();
    }
    // SAFETY: as above.
    unsafe { CStr::from_ptr(p) }.to_string_lossy().into_owned()
}

impl Layer for ProgramLayer {
    fn setup(&mut self, bottoms: &[Shape]) -> Result<SetupOut> {
        if bottoms.len() != self.count(BOTTOM) {
            return Err(Error::invalid(format!("{} bottoms, the layer has {}", bottoms.len(), self.count(BOTTOM))));
        }
        for (k, shape) in bottoms.iter().enumerate() {
            self.set_bottom_shape(k, shape)?;
        }
        // Caffe's LayerSetUp runs once; a later set-up (new input shapes) only reshapes.
        let first = !self.set_up;
        // SAFETY: a live object.
        let status = unsafe { (self.table.setup)(self.obj, first as c_int) };
        self.check(if first { "SetUp" } else { "Reshape" }, status)?;
        self.set_up = true;
        let tops = (0..self.count(TOP)).map(|k| self.shape(TOP, k)).collect::<Result<Vec<_>>>()?;
        let mut params = Vec::new();
        for j in 0..self.count(PARAM) {
            params.push(if first {
                let (shape, values) = self.memory(PARAM, j, false)?;
                ParamDecl::with_values(shape, values.to_vec())
            } else {
                ParamDecl::constant(self.shape(PARAM, j)?, 0.0)
            });
        }
        Ok(SetupOut { tops, params })
    }

    fn forward(&mut self, ctx: &Ctx, bottoms: &[Tensor], params: &[Tensor]) -> Result<Vec<Tensor>> {
        for (k, b) in bottoms.iter().enumerate() {
            self.put(BOTTOM, k, b, false)?;
        }
        for (j, p) in params.iter().enumerate() {
            self.put(PARAM, j, p, false)?;
        }
        // SAFETY: a live object.
        let status = unsafe { (self.table.forward)(self.obj) };
        self.check("Forward_cpu", status)?;
        (0..self.count(TOP)).map(|k| self.take(TOP, k, false, ctx.device)).collect()
    }

    fn own_backward(&self) -> bool {
        true
    }

    fn is_loss_layer(&self) -> bool {
        // SAFETY: a live object.
        unsafe { (self.table.is_loss)(self.obj) != 0 }
    }

    fn backward(&mut self, ctx: &Ctx, top_diffs: &[Tensor], propagate_down: &[bool]) -> Result<Gradients> {
        for (k, d) in top_diffs.iter().enumerate() {
            self.put(TOP, k, d, true)?;
        }
        // A bottom computed in place holds its top's gradient; the others, and
        // the weight diffs (which Caffe's layers add to), start from zero.
        for k in 0..self.count(BOTTOM) {
            if !self.in_place.contains(&Some(k)) {
                self.zero(BOTTOM, k)?;
            }
        }
        for j in 0..self.count(PARAM) {
            self.zero(PARAM, j)?;
        }
        let flags: Vec<c_int> = propagate_down.iter().map(|&p| p as c_int).collect();
        // SAFETY: a live object; `flags` has `len` values.
        let status = unsafe { (self.table.backward)(self.obj, flags.as_ptr(), flags.len() as c_int) };
        self.check("Backward_cpu", status)?;
        let mut grads = Gradients::default();
        for k in 0..self.count(BOTTOM) {
            let wanted = propagate_down.get(k).copied().unwrap_or(false);
            grads.bottoms.push(if wanted { Some(self.take(BOTTOM, k, true, ctx.device)?) } else { None });
        }
        for j in 0..self.count(PARAM) {
            grads.params.push(Some(self.take(PARAM, j, true, ctx.device)?));
        }
        Ok(grads)
    }
}
