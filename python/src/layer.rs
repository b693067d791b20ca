//! Python layers: a caffe-tch `Layer` that runs a `caffe.Layer` subclass
//! (`python_param { module layer param_str }`). Importing `caffe` registers
//! [`create`] with the library, so nets built from Python scripts, and from
//! the `caffe` command line run by Python (`caffe._cli`), can have them.
//!
//! Values cross as float32 numpy arrays on the layer's blobs
//! (`caffe/layer.py`): bottoms are copied in before `forward`, tops copied out
//! after it; in backward the tops' gradients go in and the bottoms' and blobs'
//! come out. The layer's learnable blobs are views of the net's own tensors
//! on the CPU (in place, as pycaffe's), host copies on a GPU. The net runs the
//! backward in stages around the layer (`src/net/staged.rs`).
use caffe_tch::layers::detection::py_proposal;
use caffe_tch::layers::{Ctx, Gradients, Layer, ParamDecl, SetupOut, Shape};
use caffe_tch::proto::caffe::LayerParameter;
use caffe_tch::{Error, Result};
use numpy::{PyArrayDyn, PyArrayMethods, PyUntypedArrayMethods};
use prost::Message;
use pyo3::exceptions::PyModuleNotFoundError;
use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyList, PyTuple};
use tch::{Device, Kind, Tensor};

use crate::views::{array_over, TensorHolder};

/// The registered constructor (`caffe_tch::layers::python::set_factory`).
/// py-faster-rcnn's proposal layer runs natively when its module is not there.
pub fn create(param: &LayerParameter) -> Result<Box<dyn Layer>> {
    Python::with_gil(|py| {
        if py_proposal::is_py_proposal(param) {
            if let Err(e) = py.import(py_proposal::MODULE) {
                if module_itself_missing(py, &e, py_proposal::MODULE) {
                    let why = format!("{}; {}", e.value(py), pythonpath());
                    return caffe_tch::layers::python::native_stand_in(param, &why);
                }
                // There, but it does not import (py-faster-rcnn's lib needs
                // its compiled modules): its error, and the way out.
                let class = caffe_tch::layers::python::class_of(param);
                let err = py_error(py, &class, "import", e);
                return Err(Error::invalid(format!(
                    "{err} (py-faster-rcnn's module is on the path but does not import; without its lib on the \
                     path caffe-tch runs its native Proposal layer in its place)"
                )));
            }
        }
        PyLayer::new(py, param).map(|l| Box::new(l) as Box<dyn Layer>)
    })
}

/// Where layer modules were looked for, for messages.
fn pythonpath() -> String {
    match std::env::var("PYTHONPATH") {
        Ok(p) if !p.is_empty() => format!("PYTHONPATH={p}"),
        _ => "PYTHONPATH is not set".to_string(),
    }
}

/// True when `module` itself (or a package above it) is missing, rather than
/// something it imports: that one is the module's own error.
fn module_itself_missing(py: Python<'_>, e: &PyErr, module: &str) -> bool {
    let missing: Option<String> = e
        .is_instance_of::<PyModuleNotFoundError>(py)
        .then(|| e.value(py).getattr("name").ok()?.extract().ok())
        .flatten();
    missing.is_some_and(|m| module == m || module.starts_with(&format!("{m}.")))
}

pub struct PyLayer {
    /// `module.Class`, for messages.
    class: String,
    obj: Py<PyAny>,
    bottoms: Py<PyList>,
    tops: Py<PyList>,
    /// The bottoms that are also tops (computed in place): their diff holds
    /// the top's gradient when backward starts.
    in_place: Vec<usize>,
    set_up: bool,
    /// The data pointer each learnable blob's array views (0: a host copy).
    bound: Vec<usize>,
}

impl PyLayer {
    fn new(py: Python<'_>, param: &LayerParameter) -> Result<Self> {
        let pp = param.python_param.clone().unwrap_or_default();
        let class = format!("{}.{}", pp.module(), pp.layer());
        if pp.module().is_empty() || pp.layer().is_empty() {
            return Err(Error::invalid(format!(
                "a Python layer needs python_param {{ module: ... layer: ... }}, got '{class}'"
            )));
        }
        let module = py.import(pp.module()).map_err(|e| {
            if module_itself_missing(py, &e, pp.module()) {
                stash_error(py, e.clone_ref(py));
                Error::invalid(format!(
                    "Python layer {class}: module '{}' not found ({}); layer modules are found on PYTHONPATH, as in Caffe ({})",
                    pp.module(),
                    e.value(py),
                    pythonpath()
                ))
            } else {
                py_error(py, &class, "import", e)
            }
        })?;
        let cls = module.getattr(pp.layer()).map_err(|e| {
            let file = module.getattr("__file__").map(|f| f.to_string()).unwrap_or_default();
            stash_error(py, e);
            Error::invalid(format!("Python layer {class}: module '{}' ({file}) has no '{}'", pp.module(), pp.layer()))
        })?;
        let call = |what: &str, r| checked(py, &class, what, r);
        let layer_param = call(
            "LayerParameter",
            py.import("caffe.proto.caffe_pb2")
                .and_then(|m| m.getattr("LayerParameter"))
                .and_then(|c| c.call_method1("FromString", (PyBytes::new(py, &param.encode_to_vec()),))),
        )?;
        let obj = call("__init__", cls.call1((layer_param,)))?;
        obj.setattr("param_str", pp.param_str()).map_err(|e| py_error(py, &class, "param_str", e))?;
        obj.setattr("phase", param.phase() as i32).map_err(|e| py_error(py, &class, "phase", e))?;
        let blob_class = call("LayerBlob", py.import("caffe.layer").and_then(|m| m.getattr("LayerBlob")))?;
        let new_blob = || blob_class.call0().map_err(|e| py_error(py, &class, "LayerBlob", e));
        let bottom_blobs = param.bottom.iter().map(|_| new_blob()).collect::<Result<Vec<_>>>()?;
        // A top named like a bottom is that bottom (in place), one blob as in Caffe.
        let mut in_place = Vec::new();
        let mut top_blobs = Vec::with_capacity(param.top.len());
        for t in &param.top {
            match param.bottom.iter().position(|b| b == t) {
                Some(k) => {
                    in_place.push(k);
                    top_blobs.push(bottom_blobs[k].clone());
                }
                None => top_blobs.push(new_blob()?),
            }
        }
        let list = |items: Vec<Bound<'_, PyAny>>| -> Result<Py<PyList>> {
            Ok(PyList::new(py, items).map_err(|e| py_error(py, &class, "LayerBlob", e))?.unbind())
        };
        let (bottoms, tops) = (list(bottom_blobs)?, list(top_blobs)?);
        Ok(PyLayer { class, obj: obj.unbind(), bottoms, tops, in_place, set_up: false, bound: Vec::new() })
    }

    fn err(&self, py: Python<'_>, what: &str, e: PyErr) -> Error {
        py_error(py, &self.class, what, e)
    }

    /// Calls the layer's method `name` with the given arguments.
    fn call<'py>(&self, py: Python<'py>, name: &str, args: impl pyo3::call::PyCallArgs<'py>) -> Result<()> {
        self.obj.bind(py).call_method1(name, args).map(|_| ()).map_err(|e| self.err(py, name, e))
    }

    fn io<'py>(&self, py: Python<'py>) -> (Bound<'py, PyList>, Bound<'py, PyList>) {
        (self.bottoms.bind(py).clone(), self.tops.bind(py).clone())
    }

    /// The layer's learnable blobs (`self.blobs`).
    fn learnable<'py>(&self, py: Python<'py>) -> Result<Vec<Bound<'py, PyAny>>> {
        let blobs = self.obj.bind(py).getattr("blobs").map_err(|e| self.err(py, "blobs", e))?;
        let list = blobs.try_iter().and_then(|it| it.collect::<PyResult<Vec<_>>>());
        list.map_err(|e| self.err(py, "blobs", e))
    }

    /// Points the learnable blobs' arrays at the net's tensors: views on the
    /// CPU (rebound when the net replaced a tensor), fresh host copies otherwise.
    pub fn bind_params(&self, py: Python<'_>, params: &[Tensor], bound: &mut Vec<usize>) -> Result<()> {
        let blobs = self.learnable(py)?;
        bound.resize(params.len(), usize::MAX);
        for ((p, blob), was) in params.iter().zip(&blobs).zip(bound.iter_mut()) {
            if viewable(p) {
                let ptr = p.data_ptr() as usize;
                if *was != ptr {
                    let holder =
                        Bound::new(py, TensorHolder::weight(p.detach())).map_err(|e| self.err(py, "blobs", e))?;
                    let view = array_over(&holder).map_err(|e| self.err(py, "blobs", e))?;
                    blob.setattr("_data", view).map_err(|e| self.err(py, "blobs", e))?;
                    *was = ptr;
                }
            } else {
                put(py, blob, "_data", p, true).map_err(|e| self.err(py, "blobs", e))?;
                *was = 0;
            }
        }
        Ok(())
    }

    /// What the layer wrote into host copies of its learnable blobs goes back to the net.
    fn write_back_params(&self, py: Python<'_>, params: &[Tensor]) -> Result<()> {
        if self.bound.iter().any(|&ptr| ptr != 0) {
            // The layer's code may have written the weights its arrays view.
            caffe_tch::layers::weights_written_outside_libtorch();
        }
        let blobs = self.learnable(py)?;
        for ((p, blob), &ptr) in params.iter().zip(&blobs).zip(&self.bound) {
            if ptr == 0 {
                let host = take(py, blob, "_data").map_err(|e| self.err(py, "blobs", e))?;
                if host.size() == p.size() {
                    tch::no_grad(|| p.shallow_clone().f_copy_(&host))?;
                }
            }
        }
        Ok(())
    }

    /// The Python object, with its learnable blobs viewing the net's tensors.
    pub fn object(&self, py: Python<'_>, params: &[Tensor]) -> Result<Py<PyAny>> {
        let mut bound = self.bound.clone();
        self.bind_params(py, params, &mut bound)?;
        Ok(self.obj.clone_ref(py))
    }
}

/// A Python call's result, its exception as the layer's error.
fn checked<'py>(py: Python<'py>, class: &str, what: &str, r: PyResult<Bound<'py, PyAny>>) -> Result<Bound<'py, PyAny>> {
    r.map_err(|e| py_error(py, class, what, e))
}

/// A contiguous CPU float tensor, whose memory numpy can view.
fn viewable(t: &Tensor) -> bool {
    t.device() == Device::Cpu && t.kind() == Kind::Float && t.is_contiguous()
}

/// Copies `t` into `blob.<attr>`: into the array already there when it has
/// the shape (a reference the layer kept sees the new values, as in Caffe),
/// else into a new one (always, when `fresh`).
fn put(py: Python<'_>, blob: &Bound<'_, PyAny>, attr: &str, t: &Tensor, fresh: bool) -> PyResult<()> {
    let host = tch::no_grad(|| t.f_detach()?.f_to_device(Device::Cpu)?.f_to_kind(Kind::Float)?.f_contiguous())
        .map_err(crate::errors::torch)?;
    let shape: Vec<usize> = host.size().iter().map(|&d| d as usize).collect();
    let copy = |arr: &Bound<'_, PyArrayDyn<f32>>| -> PyResult<bool> {
        let Ok(mut rw) = arr.try_readwrite() else { return Ok(false) };
        let slice = rw.as_slice_mut()?;
        let n = slice.len();
        host.f_copy_data(slice, n).map_err(crate::errors::torch)?;
        Ok(true)
    };
    if !fresh {
        let existing = blob.getattr(attr).ok().and_then(|a| a.downcast_into::<PyArrayDyn<f32>>().ok());
        if let Some(a) = existing.filter(|a| a.shape() == shape.as_slice() && a.is_c_contiguous()) {
            if copy(&a)? {
                return Ok(());
            }
        }
    }
    let arr = PyArrayDyn::<f32>::zeros(py, shape.as_slice(), false);
    blob.setattr(attr, &arr)?;
    copy(&arr).map(|_| ())
}

/// `blob.<attr>` as a float tensor (a copy).
fn take(py: Python<'_>, blob: &Bound<'_, PyAny>, attr: &str) -> PyResult<Tensor> {
    let value = blob.getattr(attr)?;
    let arr = match value.downcast::<PyArrayDyn<f32>>() {
        Ok(a) if a.is_c_contiguous() => a.clone(),
        _ => {
            let np = py.import("numpy")?;
            let kw = pyo3::types::PyDict::new(py);
            kw.set_item("dtype", "float32")?;
            np.call_method("ascontiguousarray", (value,), Some(&kw))?.downcast_into::<PyArrayDyn<f32>>()?
        }
    };
    let shape: Vec<i64> = arr.shape().iter().map(|&d| d as i64).collect();
    let ro = arr.try_readonly()?;
    let t = Tensor::f_from_slice(ro.as_slice()?).map_err(crate::errors::torch)?;
    t.f_reshape(shape.as_slice()).map_err(crate::errors::torch)
}

fn blob_shape(blob: &Bound<'_, PyAny>) -> PyResult<Shape> {
    blob.getattr("shape")?.extract::<Vec<i64>>()
}

impl Layer for PyLayer {
    fn setup(&mut self, bottoms: &[Shape]) -> Result<SetupOut> {
        Python::with_gil(|py| {
            let (bottom, top) = self.io(py);
            for (blob, shape) in bottom.iter().zip(bottoms) {
                blob.call_method1("reshape", PyTuple::new(py, shape).map_err(|e| self.err(py, "setup", e))?)
                    .map_err(|e| self.err(py, "setup", e))?;
            }
            // Caffe's LayerSetUp runs once; later calls (a new input shape) only reshape.
            let first = !self.set_up;
            if first {
                self.call(py, "setup", (&bottom, &top))?;
            }
            self.set_up = true;
            self.call(py, "reshape", (&bottom, &top))?;
            let tops = top
                .iter()
                .map(|b| blob_shape(&b))
                .collect::<PyResult<Vec<_>>>()
                .map_err(|e| self.err(py, "reshape", e))?;
            let mut params = Vec::new();
            for blob in self.learnable(py)? {
                let shape = blob_shape(&blob).map_err(|e| self.err(py, "setup", e))?;
                params.push(if first {
                    let values = take(py, &blob, "_data").map_err(|e| self.err(py, "setup", e))?;
                    let values: Vec<f32> = Vec::<f32>::try_from(values.f_view([-1])?)?;
                    ParamDecl::with_values(shape, values)
                } else {
                    ParamDecl::constant(shape, 0.0)
                });
            }
            Ok(SetupOut { tops, params })
        })
    }

    fn forward(&mut self, ctx: &Ctx, bottoms: &[Tensor], params: &[Tensor]) -> Result<Vec<Tensor>> {
        Python::with_gil(|py| {
            let mut bound = std::mem::take(&mut self.bound);
            let bind = self.bind_params(py, params, &mut bound);
            self.bound = bound;
            bind?;
            let (bottom, top) = self.io(py);
            for (blob, t) in bottom.iter().zip(bottoms) {
                put(py, &blob, "_data", t, false).map_err(|e| self.err(py, "forward", e))?;
            }
            self.call(py, "reshape", (&bottom, &top))?;
            self.call(py, "forward", (&bottom, &top))?;
            self.write_back_params(py, params)?;
            let mut out = Vec::with_capacity(top.len());
            for blob in top.iter() {
                let t = take(py, &blob, "_data").map_err(|e| self.err(py, "forward", e))?;
                out.push(t.f_to_device(ctx.device)?);
            }
            Ok(out)
        })
    }

    fn own_backward(&self) -> bool {
        true
    }

    fn backward(&mut self, ctx: &Ctx, top_diffs: &[Tensor], propagate_down: &[bool]) -> Result<Gradients> {
        Python::with_gil(|py| {
            let (bottom, top) = self.io(py);
            let zero = |blob: &Bound<'_, PyAny>| blob.call_method0("_zero_diff").map(|_| ());
            for (blob, d) in top.iter().zip(top_diffs) {
                put(py, &blob, "_diff", d, false).map_err(|e| self.err(py, "backward", e))?;
            }
            for (k, blob) in bottom.iter().enumerate() {
                if !self.in_place.contains(&k) {
                    zero(&blob).map_err(|e| self.err(py, "backward", e))?;
                }
            }
            let learnable = self.learnable(py)?;
            for blob in &learnable {
                zero(blob).map_err(|e| self.err(py, "backward", e))?;
            }
            let flags = PyList::new(py, propagate_down).map_err(|e| self.err(py, "backward", e))?;
            self.call(py, "backward", (&top, flags, &bottom))?;
            if self.bound.iter().any(|&ptr| ptr != 0) {
                caffe_tch::layers::weights_written_outside_libtorch();
            }
            let mut grads = Gradients::default();
            for (k, blob) in bottom.iter().enumerate() {
                grads.bottoms.push(if propagate_down.get(k).copied().unwrap_or(false) {
                    let g = take(py, &blob, "_diff").map_err(|e| self.err(py, "backward", e))?;
                    Some(g.f_to_device(ctx.device)?)
                } else {
                    None
                });
            }
            for blob in &learnable {
                let g = take(py, blob, "_diff").map_err(|e| self.err(py, "backward", e))?;
                grads.params.push(Some(g.f_to_device(ctx.device)?));
            }
            Ok(grads)
        })
    }

    fn as_any(&self) -> Option<&dyn std::any::Any> {
        Some(self)
    }
}

/// A Python exception raised by a layer's code, as one error line: the
/// layer's class, the method, the exception and its traceback.
fn py_error(py: Python<'_>, class: &str, method: &str, e: PyErr) -> Error {
    let described = py
        .import("caffe.layer")
        .and_then(|m| m.call_method1("_describe_error", (e.value(py), e.traceback(py))))
        .and_then(|s| s.extract::<String>())
        .unwrap_or_else(|_| e.to_string());
    stash_error(py, e);
    Error::invalid(format!("Python layer {class}: {method} raised {described}"))
}

/// Keeps the exception, so that a script gets it back as the cause of the
/// error the net raises (`errors::to_py`).
fn stash_error(py: Python<'_>, e: PyErr) {
    crate::errors::stash_cause(py, e);
}
