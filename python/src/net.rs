//! `_caffe.Net`: a caffe-tch `Net` (standalone, or one of a solver's nets)
//! with pycaffe's operations. Names and indices come from the Python side.
use std::path::Path;

use caffe_tch::net::Net;
use caffe_tch::proto::caffe::{NetState, Phase};
use caffe_tch::proto::text::TextOptions;
use numpy::{PyArrayDyn, PyArrayMethods, PyReadonlyArrayDyn, PyUntypedArrayMethods};
use pyo3::exceptions::{PyIndexError, PyValueError};
use pyo3::prelude::*;
use tch::{Kind, Tensor};

use crate::errors::{nogil, IntoPy};
use crate::layer::PyLayer;
use crate::solver::PySolver;
use crate::views::{Handle, Home, Key, Kinds, Shared, Views};

/// A layer's bottoms, tops and number of blobs.
type Wiring = (Vec<String>, Vec<String>, usize);

#[pyclass(unsendable, subclass, name = "Net", module = "caffe._caffe")]
pub struct PyNet {
    pub(crate) h: Handle,
    pub(crate) index: usize,
}

fn phase_of(v: i64) -> PyResult<Phase> {
    match v {
        0 => Ok(Phase::Train),
        1 => Ok(Phase::Test),
        _ => Err(PyValueError::new_err(format!("phase must be caffe.TRAIN (0) or caffe.TEST (1), got {v}"))),
    }
}

/// A tensor over a C-contiguous float32 numpy array's memory, no copy. The
/// caller keeps the array alive for as long as the tensor is used.
fn tensor_over(what: &str, a: &Bound<'_, PyAny>) -> PyResult<Tensor> {
    let array: PyReadonlyArrayDyn<'_, f32> = a
        .extract()
        .map_err(|_| PyValueError::new_err(format!("set_input_arrays: {what} must be a float32 numpy array")))?;
    if !array.is_c_contiguous() {
        return Err(PyValueError::new_err(format!("set_input_arrays: {what} must be C contiguous")));
    }
    let shape: Vec<i64> = array.shape().iter().map(|&d| d as i64).collect();
    let element = std::mem::size_of::<f32>() as isize;
    let strides: Vec<i64> = array.strides().iter().map(|&s| (s / element) as i64).collect();
    // SAFETY: numpy's shape and strides (in elements) address exactly the
    // array's float32 elements from its first; its owner keeps it alive
    // (PyNet::set_input_arrays holds it beside the net).
    unsafe { Tensor::f_from_blob(array.data() as *const u8, &shape, &strides, Kind::Float, tch::Device::Cpu) }.py()
}

impl PyNet {
    fn with<R>(&self, f: impl FnOnce(&mut Net, &mut Views) -> PyResult<R>) -> PyResult<R> {
        let mut s = self.h.try_borrow_mut().map_err(|_| PyValueError::new_err("net is busy (re-entrant call)"))?;
        let (net, views) = s.net(self.index)?;
        f(net, views)
    }

    /// Whether a forward records autograd's graph: only when a backward can
    /// follow (a loss, or force_backward), as Caffe's layers only need
    /// backward then; deploy nets run inference-only.
    fn wants_grad(net: &Net) -> bool {
        net.has_loss() || net.force_backward()
    }
}

#[pymethods]
impl PyNet {
    #[new]
    #[pyo3(signature = (model=None, phase=None, weights=None, level=0, stages=None, solver=None, index=0))]
    fn new(
        model: Option<String>,
        phase: Option<i64>,
        weights: Option<String>,
        level: i32,
        stages: Option<Vec<String>>,
        solver: Option<PyRef<'_, PySolver>>,
        index: usize,
    ) -> PyResult<Self> {
        if let Some(s) = solver {
            let n = s.h.borrow().views.len();
            if index >= n {
                return Err(PyIndexError::new_err(format!("the solver has {n} nets")));
            }
            return Ok(PyNet { h: s.h.clone(), index });
        }
        let model = model.ok_or_else(|| PyValueError::new_err("Net needs a model file"))?;
        let phase =
            phase_of(phase.ok_or_else(|| PyValueError::new_err("Net needs a phase (caffe.TRAIN or caffe.TEST)"))?)?;
        let state = NetState { phase: Some(phase as i32), level: Some(level), stage: stages.unwrap_or_default() };
        let mut net = Net::from_file(Path::new(&model), &state, TextOptions::default(), crate::mode::device()).py()?;
        if let Some(w) = weights {
            net.load_weights(Path::new(&w)).py()?;
        }
        Ok(PyNet { h: Shared::new(Home::Net(Box::new(net))), index: 0 })
    }

    #[getter]
    fn _name(&self) -> PyResult<String> {
        self.with(|n, _| Ok(n.name.clone()))
    }
    #[getter]
    fn _phase(&self) -> PyResult<i64> {
        self.with(|n, _| Ok(if n.phase == Phase::Train { 0 } else { 1 }))
    }
    fn _blob_names(&self) -> PyResult<Vec<String>> {
        self.with(|n, _| Ok(n.blob_names().iter().map(|s| s.to_string()).collect()))
    }
    fn _layer_names(&self) -> PyResult<Vec<String>> {
        self.with(|n, _| Ok(n.layer_names().iter().map(|s| s.to_string()).collect()))
    }
    fn _layer_types(&self) -> PyResult<Vec<String>> {
        self.with(|n, _| Ok(n.layer_types().iter().map(|s| s.to_string()).collect()))
    }
    fn _inputs(&self) -> PyResult<Vec<String>> {
        self.with(|n, _| Ok(n.input_blob_names().iter().map(|s| s.to_string()).collect()))
    }
    fn _outputs(&self) -> PyResult<Vec<String>> {
        self.with(|n, _| Ok(n.output_blob_names().iter().map(|s| s.to_string()).collect()))
    }
    /// Per layer: (bottom names, top names, number of blobs).
    fn _layer_wiring(&self) -> PyResult<Vec<Wiring>> {
        self.with(|n, _| {
            Ok(n.layer_params()
                .iter()
                .enumerate()
                .map(|(i, p)| (p.bottom.clone(), p.top.clone(), n.layer_param_count(i)))
                .collect())
        })
    }
    /// Layer `i`'s Python object when it is a Python layer (pycaffe's
    /// `net.layers[i]` is the object itself), its blobs viewing the net's weights.
    fn _python_layer(&self, py: Python<'_>, i: usize) -> PyResult<Option<PyObject>> {
        self.with(|n, _| {
            let Some(layer) = n.layer(i).and_then(|l| l.as_any()).and_then(|a| a.downcast_ref::<PyLayer>()) else {
                return Ok(None);
            };
            let params: Vec<Tensor> = (0..n.layer_param_count(i)).filter_map(|j| n.layer_param(i, j)).collect();
            layer.object(py, &params).py().map(Some)
        })
    }
    fn _loss_weight(&self, name: &str) -> PyResult<f32> {
        self.with(|n, _| Ok(n.blob_loss_weight(name)))
    }
    fn _blob_shape(&self, name: &str) -> PyResult<Vec<i64>> {
        self.with(|n, _| Views::blob_shape(n, name))
    }
    fn _param_shape(&self, layer: usize, j: usize) -> PyResult<Vec<i64>> {
        self.with(|n, _| {
            n.layer_param(layer, j)
                .map(|t| t.size())
                .ok_or_else(|| PyIndexError::new_err(format!("layer {layer} has no blob {j}")))
        })
    }
    fn _blob_array<'py>(&self, py: Python<'py>, name: String, diff: bool) -> PyResult<Bound<'py, PyArrayDyn<f32>>> {
        self.with(|n, v| v.array(py, n, if diff { Key::Diff(name) } else { Key::Data(name) }))
    }
    fn _param_array<'py>(
        &self,
        py: Python<'py>,
        layer: usize,
        j: usize,
        diff: bool,
    ) -> PyResult<Bound<'py, PyArrayDyn<f32>>> {
        self.with(|n, v| v.array(py, n, Key::Param { layer, j, diff }))
    }

    /// pycaffe's `Blob.reshape` on an input blob (others: an error).
    fn _reshape_input(&self, name: &str, shape: Vec<i64>) -> PyResult<()> {
        self.with(|n, v| {
            n.reshape_input(name, &shape).py()?;
            v.forget_input(name);
            Ok(())
        })
    }

    /// Caffe's Net::Reshape.
    fn reshape(&self, py: Python<'_>) -> PyResult<()> {
        self.with(|n, v| {
            n.reshape().py()?;
            v.pull(py, n, Kinds::DATA)
        })
    }

    /// Runs layers `start..=end`; returns the loss.
    fn _forward(&self, py: Python<'_>, start: usize, end: usize) -> PyResult<f64> {
        self.with(|n, v| {
            let layers = n.layer_params().len();
            if start > end || end >= layers {
                return Err(PyIndexError::new_err(format!(
                    "forward from layer {start} to {end}: bad range (the net has layers 0..{layers}; start must not \
                     come after end)"
                )));
            }
            forward_range(py, n, v, start, end)
        })
    }

    /// Backward from layer `start` down to `end`; the seeds are the diffs
    /// Python wrote for the tops no later layer in the range reads (zero for
    /// those it did not write: as in Caffe, every layer in the range runs its
    /// backward, even with nothing reaching it, for a Python layer may write
    /// its blobs' diffs regardless).
    fn _backward(&self, py: Python<'_>, start: usize, end: usize) -> PyResult<()> {
        self.with(|n, v| {
            let params = n.layer_params();
            if start >= params.len() || end > start {
                return Err(PyIndexError::new_err(format!("backward from layer {start} to {end}: bad range")));
            }
            let seeds = n.backward_seeds(start, end);
            // Caffe's backward reads the blobs as they are; autograd needs the
            // forward that made them. With none recorded for the range (no
            // forward since the net was built or reshaped), that forward runs
            // first, on the blobs' current values. Its layers without bottoms
            // (data layers) do not run: their tops stand as they are (zeros
            // before any forward, as Caffe's blobs), and no batch is read.
            if Self::wants_grad(n) && !n.backward_recorded(end, start) {
                let first = (end..=start).find(|&i| !params[i].bottom.is_empty());
                if let Some(first) = first {
                    forward_range(py, n, v, first, start)?;
                }
            }
            let mut diffs = v.written_diffs(&seeds);
            for s in &seeds {
                if !diffs.iter().any(|(name, _)| name == s) {
                    if let Some(value) = n.blob_first_value(s) {
                        let zeros = value.f_zeros_like().py()?;
                        diffs.push((s.clone(), zeros));
                    }
                }
            }
            v.push(n, true, &[])?;
            nogil(py, || n.backward_from_to(start, end, &diffs)).py()?;
            v.pull(py, n, Kinds::DIFF)
        })
    }

    /// pycaffe's net callbacks: `event` 0 before_forward, 1 after_forward,
    /// 2 before_backward, 3 after_backward; `f(layer_index)`.
    fn _add_callback(&self, py: Python<'_>, event: usize, f: PyObject) -> PyResult<()> {
        self.with(|n, v| crate::callbacks::add(py, n, &mut v.callbacks, event, f))
    }

    fn clear_param_diffs(&self, py: Python<'_>) -> PyResult<()> {
        self.with(|n, v| {
            n.clear_param_diffs().py()?;
            v.pull(py, n, Kinds::PARAMS)
        })
    }

    /// Loads weights by layer name (a .caffemodel, .caffemodel.h5 or .safetensors).
    fn copy_from(&self, py: Python<'_>, path: &str) -> PyResult<()> {
        self.with(|n, v| {
            v.push(n, true, &[])?;
            n.load_weights(Path::new(path)).py()?;
            v.pull(py, n, Kinds::PARAMS)
        })
    }

    fn load_hdf5(&self, py: Python<'_>, path: &str) -> PyResult<()> {
        self.with(|n, v| {
            v.push(n, true, &[])?;
            let trained = caffe_tch::net::weights::hdf5::read_model(n, Path::new(path)).py()?;
            n.copy_trained_layers_from(&trained, path).py()?;
            v.pull(py, n, Kinds::PARAMS)
        })
    }

    fn save(&self, path: &str) -> PyResult<()> {
        self.with(|n, v| {
            v.push(n, true, &[])?;
            let proto = n.to_proto(false).py()?;
            caffe_tch::proto::binary::write_message(Path::new(path), &proto).py()
        })
    }

    fn save_hdf5(&self, path: &str) -> PyResult<()> {
        self.with(|n, v| {
            v.push(n, true, &[])?;
            caffe_tch::net::weights::hdf5::write_model(n, Path::new(path), false).py()
        })
    }

    /// Makes this net use `other`'s weights (the same memory), by layer name.
    fn share_with(&self, other: PyRef<'_, PyNet>) -> PyResult<()> {
        if std::rc::Rc::ptr_eq(&self.h, &other.h) && self.index == other.index {
            return Ok(());
        }
        // Two nets of one solver live in one RefCell: borrow it once and split.
        if std::rc::Rc::ptr_eq(&self.h, &other.h) {
            let mut s = self.h.borrow_mut();
            let (dst, src) = (self.index, other.index);
            let Home::Solver(solver) = &mut s.home else { return Ok(()) };
            let (train, tests) = solver.nets_mut();
            let result = match (dst, src) {
                (0, j) => train.share_weights_with(&tests[j - 1]),
                (i, 0) => tests[i - 1].share_weights_with(train),
                (i, j) if i < j => {
                    let (lo, hi) = tests.split_at_mut(j - 1);
                    lo[i - 1].share_weights_with(&hi[0])
                }
                (i, j) => {
                    let (lo, hi) = tests.split_at_mut(i - 1);
                    hi[0].share_weights_with(&lo[j - 1])
                }
            };
            result.py()?;
            s.views[dst].forget_params();
            return Ok(());
        }
        let mut theirs = other.h.borrow_mut();
        let (src, _) = theirs.net(other.index)?;
        self.with(|n, v| {
            n.share_weights_with(src).py()?;
            v.forget_params();
            Ok(())
        })
    }

    /// Feeds the net's MemoryData layer: data N×C×H×W, labels N values, both
    /// C-contiguous float32 arrays that the layer reads in place, as Caffe's
    /// does (a write to them shows in the next batches read).
    fn set_input_arrays(&self, py: Python<'_>, data: &Bound<'_, PyAny>, labels: &Bound<'_, PyAny>) -> PyResult<()> {
        let d = tensor_over("data", data)?;
        let l = tensor_over("labels", labels)?;
        if d.dim() != 4 {
            return Err(PyValueError::new_err(format!(
                "set_input_arrays: data must be 4-D (N, C, H, W), got {:?}",
                d.size()
            )));
        }
        let n_labels = l.numel() as i64;
        if n_labels != d.size()[0] {
            return Err(PyValueError::new_err(format!(
                "set_input_arrays: {} labels for {} images",
                n_labels,
                d.size()[0]
            )));
        }
        let l = l.f_reshape([n_labels]).py()?;
        self.with(|n, v| {
            // Held before the layer can read them; the previous pair only
            // once the layer no longer does.
            let arrays = [data.clone().unbind(), labels.clone().unbind()];
            v.input_arrays.extend(arrays.iter().map(|a| a.clone_ref(py)));
            n.set_input_arrays(&d, &l).py()?;
            v.input_arrays = arrays.into();
            v.pull(py, n, Kinds::DATA)
        })
    }
}

/// Runs layers `start..=end` of `n` on what Python wrote into its blobs,
/// recording autograd's graph where the net can backward; returns the loss.
fn forward_range(py: Python<'_>, n: &mut Net, v: &mut Views, start: usize, end: usize) -> PyResult<f64> {
    n.reshape_layers(start, end + 1).py()?;
    // A forward that starts mid-net reads what Python wrote into the blobs
    // it does not make, and into those it reads before making them (an
    // in-place layer's blob, when the range starts at that layer).
    let before: Vec<String> = if start > 0 {
        let params = n.layer_params();
        let mut made: Vec<&String> = Vec::new();
        let mut read_first: Vec<&String> = Vec::new();
        for p in &params[start..=end.min(params.len() - 1)] {
            read_first.extend(p.bottom.iter().filter(|b| !made.contains(b)));
            made.extend(&p.top);
        }
        n.blob_names()
            .iter()
            .filter(|b| !made.iter().any(|m| m == b) || read_first.iter().any(|r| r == b))
            .map(|b| b.to_string())
            .collect()
    } else {
        Vec::new()
    };
    v.push(n, true, &before)?;
    let grad = PyNet::wants_grad(n);
    n.record_blob_diffs(grad);
    let loss = nogil(py, || n.forward_from_to(start, end, grad)).py()?;
    v.pull(py, n, Kinds::DATA)?;
    Ok(loss)
}
