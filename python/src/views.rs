//! numpy views of a net's memory, kept in step as pycaffe's blobs are.
//!
//! A numpy array from `.data`/`.diff` views a CPU float tensor that a
//! `TensorHolder` keeps alive (the array's base). What that tensor is:
//! - an input blob's data: the Input layer's own tensor (on the CPU), so
//!   `blobs['data'].data[...] = x` writes the next forward's input, no copy;
//! - a param's data and diff on the CPU: the net's tensors themselves (the
//!   solver updates both in place; `Net::keep_param_diffs` keeps the diff's);
//! - anything else (activations, blob diffs, everything on a GPU): a host
//!   mirror. caffe-tch makes new activation tensors at every forward, so each
//!   op that changes the net copies into the mirrors whose arrays Python
//!   still holds (weak refs) and drops the others, and each op that reads
//!   them first copies what Python wrote back into the net.
//!
//! Every mirror is current between ops, so a later access reuses it.
use std::cell::RefCell;
use std::collections::HashMap;
use std::ptr::NonNull;
use std::rc::Rc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

use caffe_tch::net::Net;
use caffe_tch::solver::Solver;
use numpy::PyArrayDyn;
use pyo3::exceptions::PyKeyError;
use pyo3::prelude::*;
use pyo3::types::{PyWeakrefMethods, PyWeakrefReference};
use tch::{Device, Kind, Tensor};

use crate::errors::IntoPy;

/// Keeps a tensor's memory alive while numpy arrays view it.
#[pyclass(weakref, unsendable, module = "caffe._caffe")]
pub struct TensorHolder {
    t: Tensor,
    /// A weight's memory: numpy can write it unseen by libtorch.
    weight: bool,
}

/// Holders of weights alive now, and whether one was made since the last
/// [`before_net_reads`]: while either holds, Python may have written weights.
static LIVE_WEIGHT_HOLDERS: AtomicUsize = AtomicUsize::new(0);
static WEIGHT_HOLDER_MADE: AtomicBool = AtomicBool::new(false);

impl TensorHolder {
    /// `t` must be a contiguous CPU float tensor (what [`array_over`] views).
    pub fn new(t: Tensor) -> Self {
        TensorHolder { t, weight: false }
    }

    /// A holder of a weight's own memory (see [`before_net_reads`]).
    pub fn weight(t: Tensor) -> Self {
        LIVE_WEIGHT_HOLDERS.fetch_add(1, Ordering::Relaxed);
        WEIGHT_HOLDER_MADE.store(true, Ordering::Relaxed);
        TensorHolder { t, weight: true }
    }
}

impl Drop for TensorHolder {
    fn drop(&mut self) {
        if self.weight {
            LIVE_WEIGHT_HOLDERS.fetch_sub(1, Ordering::Relaxed);
        }
    }
}

/// Before an op that reads any net: if numpy arrays over weights exist, or
/// existed since the last op, Python may have written weights, which
/// libtorch's version counters do not see: the library is told, and layers
/// make again what they derived from weights.
pub fn before_net_reads() {
    let made = WEIGHT_HOLDER_MADE.swap(false, Ordering::Relaxed);
    if made || LIVE_WEIGHT_HOLDERS.load(Ordering::Relaxed) > 0 {
        caffe_tch::layers::weights_written_outside_libtorch();
    }
}

/// Who owns the net(s): a standalone `caffe.Net`, or a solver (net 0 is
/// its train net, 1.. its test nets).
pub enum Home {
    Net(Box<Net>),
    Solver(Box<Solver>),
}

pub struct Shared {
    pub home: Home,
    pub views: Vec<Views>,
}

pub type Handle = Rc<RefCell<Shared>>;

impl Shared {
    pub fn new(home: Home) -> Handle {
        let n = match &home {
            Home::Net(_) => 1,
            Home::Solver(s) => s.net_count(),
        };
        Rc::new(RefCell::new(Shared { home, views: (0..n).map(|_| Views::default()).collect() }))
    }

    pub fn net(&mut self, i: usize) -> PyResult<(&mut Net, &mut Views)> {
        let no_net = || PyKeyError::new_err(format!("no net {i}"));
        let views = self.views.get_mut(i).ok_or_else(no_net)?;
        let net = match &mut self.home {
            Home::Net(n) => n.as_mut(),
            Home::Solver(s) => s.net_at_mut(i).ok_or_else(no_net)?,
        };
        Ok((net, views))
    }
}

#[derive(Clone, PartialEq, Eq, Hash, Debug)]
pub enum Key {
    Data(String),
    Diff(String),
    Param { layer: usize, j: usize, diff: bool },
}

struct Mirror {
    host: Tensor,
    /// The holder the last array was made over; dead once Python dropped them all.
    holder: Py<PyWeakrefReference>,
    /// `host` is the net's own tensor: nothing to copy.
    direct: bool,
}

/// An input blob: the host tensor Python writes, and the tensor the Input
/// layer holds (the same one on the CPU).
struct InputBuf {
    host: Tensor,
    dev: Tensor,
}

#[derive(Default)]
pub struct Views {
    inputs: HashMap<String, InputBuf>,
    mirrors: HashMap<Key, Mirror>,
    /// The net's Python callbacks (`callbacks.rs`), once one is added.
    pub callbacks: Option<crate::callbacks::Lists>,
    /// The numpy arrays a MemoryData layer reads in place
    /// (`set_input_arrays`), held as long as it may read them.
    pub input_arrays: Vec<Py<PyAny>>,
}

/// What changed (pull) or is about to be read (push).
#[derive(Clone, Copy, Default)]
pub struct Kinds {
    pub data: bool,
    pub diff: bool,
    pub params: bool,
}

impl Kinds {
    pub const DATA: Kinds = Kinds { data: true, diff: false, params: false };
    pub const DIFF: Kinds = Kinds { data: false, diff: true, params: true };
    pub const PARAMS: Kinds = Kinds { data: false, diff: false, params: true };
    pub const ALL: Kinds = Kinds { data: true, diff: true, params: true };
    fn covers(&self, k: &Key) -> bool {
        match k {
            Key::Data(_) => self.data,
            Key::Diff(_) => self.diff,
            Key::Param { .. } => self.params,
        }
    }
}

fn host_copy(src: &Tensor) -> PyResult<Tensor> {
    tch::no_grad(|| src.f_detach()?.f_to_kind(Kind::Float)?.f_to_device(Device::Cpu)?.f_contiguous()?.f_detach_copy())
        .py()
}

fn can_view(t: &Tensor) -> bool {
    t.device() == Device::Cpu && t.kind() == Kind::Float && t.is_contiguous()
}

pub fn array_over<'py>(holder: &Bound<'py, TensorHolder>) -> PyResult<Bound<'py, PyArrayDyn<f32>>> {
    let b = holder.borrow();
    let shape: Vec<usize> = b.t.size().iter().map(|&d| d as usize).collect();
    if shape.len() > caffe_tch::net::MAX_BLOB_AXES {
        // numpy's own limit; the net refuses such blobs before they get here.
        return Err(pyo3::exceptions::PyValueError::new_err(format!(
            "a blob of {} axes has no numpy array (at most {})",
            shape.len(),
            caffe_tch::net::MAX_BLOB_AXES
        )));
    }
    let n: usize = shape.iter().product();
    // ndarray wants a non-null pointer even for an empty array.
    let ptr = if n == 0 { NonNull::<f32>::dangling().as_ptr() } else { b.t.data_ptr() as *mut f32 };
    // SAFETY: the tensor is a contiguous CPU float tensor of this shape (the
    // holder is made only for such), and the array's base keeps it alive.
    let view = unsafe { ndarray::ArrayViewD::from_shape_ptr(ndarray::IxDyn(&shape), ptr) };
    Ok(unsafe { PyArrayDyn::borrow_from_array(&view, holder.clone().into_any()) })
}

impl Views {
    fn is_input(net: &Net, name: &str) -> bool {
        net.input_blob_names().contains(&name)
    }

    /// The host tensor of an input blob, created (and given to the Input
    /// layer) on first use.
    fn input_host(&mut self, net: &mut Net, name: &str) -> PyResult<Tensor> {
        let shape = net.blob_shape(name).cloned().unwrap_or_default();
        if let Some(b) = self.inputs.get(name) {
            if b.host.size() == shape {
                return Ok(b.host.shallow_clone());
            }
        }
        let host = Tensor::f_zeros(shape.as_slice(), (Kind::Float, Device::Cpu)).py()?;
        // Keep what the net had (an earlier set_input) when the shape allows.
        if let Some(v) = net.blob(name) {
            if v.size() == shape {
                tch::no_grad(|| host.shallow_clone().f_copy_(v)).py()?;
            }
        }
        let dev =
            if net.device() == Device::Cpu { host.shallow_clone() } else { host.f_to_device(net.device()).py()? };
        net.set_input(name, &dev).py()?;
        self.inputs.insert(name.to_string(), InputBuf { host: host.shallow_clone(), dev });
        Ok(host)
    }

    /// The tensor in the net a key refers to (None when it has no value yet).
    fn source(net: &mut Net, key: &Key) -> PyResult<Option<Tensor>> {
        Ok(match key {
            Key::Data(n) => net.blob(n).map(|t| t.shallow_clone()),
            Key::Diff(n) => net.blob_diff(n).map(|t| t.shallow_clone()),
            Key::Param { layer, j, diff: false } => net.layer_param(*layer, *j),
            Key::Param { layer, j, diff: true } => {
                net.keep_param_diffs();
                net.layer_param_diff(*layer, *j)
            }
        })
    }

    /// A blob's shape as the net records it (its setup, or the last reshape).
    pub fn blob_shape(net: &Net, name: &str) -> PyResult<Vec<i64>> {
        net.blob_shape(name).cloned().ok_or_else(|| PyKeyError::new_err(format!("net has no blob named '{name}'")))
    }

    fn holder(key: &Key, t: Tensor, direct: bool) -> TensorHolder {
        match key {
            Key::Param { diff: false, .. } if direct => TensorHolder::weight(t),
            _ => TensorHolder::new(t),
        }
    }

    /// A numpy array viewing `key`'s memory (see the module's note).
    pub fn array<'py>(&mut self, py: Python<'py>, net: &mut Net, key: Key) -> PyResult<Bound<'py, PyArrayDyn<f32>>> {
        if let Some(m) = self.mirrors.get_mut(&key) {
            if let Some(h) = m.holder.bind(py).upgrade_as::<TensorHolder>()? {
                return array_over(&h);
            }
            let h = Bound::new(py, Self::holder(&key, m.host.shallow_clone(), m.direct))?;
            m.holder = PyWeakrefReference::new(h.as_any())?.unbind();
            return array_over(&h);
        }
        let (host, direct) = match &key {
            Key::Data(n) if Self::is_input(net, n) => (self.input_host(net, n)?, true),
            Key::Data(n) | Key::Diff(n) => {
                let shape = Self::blob_shape(net, n)?;
                match Self::source(net, &key)? {
                    Some(t) if t.size() == shape => (host_copy(&t)?, false),
                    _ => (Tensor::f_zeros(shape.as_slice(), (Kind::Float, Device::Cpu)).py()?, false),
                }
            }
            Key::Param { layer, j, .. } => {
                let t = Self::source(net, &key)?
                    .ok_or_else(|| PyKeyError::new_err(format!("layer {layer} has no blob {j}")))?;
                if can_view(&t) {
                    (t.detach(), true)
                } else {
                    (host_copy(&t)?, false)
                }
            }
        };
        let h = Bound::new(py, Self::holder(&key, host.shallow_clone(), direct))?;
        let holder = PyWeakrefReference::new(h.as_any())?.unbind();
        self.mirrors.insert(key, Mirror { host, holder, direct });
        array_over(&h)
    }

    /// After an op changed `kinds` in the net: copy into the mirrors Python
    /// still holds, drop the others (and views that no longer match the net).
    pub fn pull(&mut self, py: Python<'_>, net: &mut Net, kinds: Kinds) -> PyResult<()> {
        let keys: Vec<Key> = self.mirrors.keys().filter(|k| kinds.covers(k)).cloned().collect();
        for key in keys {
            let Some(m) = self.mirrors.get(&key) else { continue };
            let alive = m.holder.bind(py).upgrade().is_some();
            let keep = if !alive {
                false
            } else if let Key::Data(n) = &key {
                if m.direct {
                    // An input's view stays valid while the Input layer keeps its tensor.
                    self.inputs.get(n).is_some_and(|b| b.host.data_ptr() == m.host.data_ptr())
                } else {
                    Self::refresh(&m.host, Self::source(net, &key)?.as_ref())?
                }
            } else {
                let src = Self::source(net, &key)?;
                if m.direct {
                    src.is_some_and(|s| s.data_ptr() == m.host.data_ptr())
                } else {
                    Self::refresh(&m.host, src.as_ref())?
                }
            };
            if !keep {
                self.mirrors.remove(&key);
            }
        }
        Ok(())
    }

    /// Copies the net's value into a mirror; false when the shapes no longer match.
    fn refresh(host: &Tensor, src: Option<&Tensor>) -> PyResult<bool> {
        let Some(src) = src else { return Ok(true) };
        if src.size() != host.size() {
            return Ok(false);
        }
        tch::no_grad(|| host.shallow_clone().f_copy_(src)).py()?;
        Ok(true)
    }

    /// Before an op that reads the net: inputs and params Python wrote on the
    /// host go to the device (nothing to do on the CPU, where they are the
    /// net's own memory); with `blobs`, the activations Python wrote are put
    /// back into the net (for a forward that starts after their producers).
    pub fn push(&mut self, net: &mut Net, params: bool, blobs: &[String]) -> PyResult<()> {
        before_net_reads();
        for b in self.inputs.values() {
            if b.dev.data_ptr() != b.host.data_ptr() {
                tch::no_grad(|| b.dev.shallow_clone().f_copy_(&b.host)).py()?;
            }
        }
        for (key, m) in &self.mirrors {
            match key {
                Key::Param { .. } if params && !m.direct => {
                    if let Some(dst) = Self::source(net, key)? {
                        tch::no_grad(|| dst.shallow_clone().f_copy_(&m.host)).py()?;
                    }
                }
                Key::Data(n) if blobs.contains(n) && !m.direct && Self::written(net, n, &m.host)? => {
                    net.set_blob_value(n, &m.host).py()?
                }
                _ => {}
            }
        }
        Ok(())
    }

    /// Whether a blob's mirror no longer holds the net's value: Python wrote
    /// it. One it did not write stays the net's own value, which keeps the
    /// autograd graph that made it, so a backward after a layer-by-layer
    /// forward reaches the layers before each step, as Caffe's does.
    fn written(net: &Net, name: &str, host: &Tensor) -> PyResult<bool> {
        let Some(value) = net.blob(name) else { return Ok(true) };
        if value.size() != host.size() {
            return Ok(true);
        }
        let same = tch::no_grad(|| -> Result<bool, tch::TchError> {
            let on_device = host.f_to_device(value.device())?;
            value.f_equal(&on_device)
        })
        .py()?;
        Ok(!same)
    }

    /// The diffs Python wrote for the given blobs (backward's seeds).
    pub fn written_diffs(&self, blobs: &[String]) -> Vec<(String, Tensor)> {
        blobs
            .iter()
            .filter_map(|n| self.mirrors.get(&Key::Diff(n.clone())).map(|m| (n.clone(), m.host.shallow_clone())))
            .collect()
    }

    /// An input's buffer was replaced (reshape): forget the old one.
    pub fn forget_input(&mut self, name: &str) {
        self.inputs.remove(name);
        self.mirrors.remove(&Key::Data(name.to_string()));
        self.mirrors.remove(&Key::Diff(name.to_string()));
    }

    /// Weights were replaced by other tensors (share_with): views of the old ones go.
    pub fn forget_params(&mut self) {
        self.mirrors.retain(|k, _| !matches!(k, Key::Param { .. }));
    }
}
