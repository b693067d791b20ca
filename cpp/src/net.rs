//! `caffe::Net<float>` and its blobs. A C++ `Net` holds a [`NetHandle`]: one
//! net of a [`Shared`] set, which is either a net of the program's own or a
//! solver's nets (its training net, then its test nets), as `Solver::net()`
//! and `test_nets()` hand them out. Each net has a [`View`]: what the header
//! has been given of it (input tensors, host copies of other blobs, names).
use std::cell::RefCell;
use std::collections::{HashMap, HashSet};
use std::ffi::{c_char, c_int, CString};
use std::path::Path;
use std::rc::Rc;

use caffe_tch::net::Net;
use caffe_tch::proto::caffe::{NetState, Phase};
use caffe_tch::solver::Solver;
use caffe_tch::{Error, Result};
use tch::{Device, Kind, Tensor};

use crate::{guarded, text, write_shape};

/// Where a set's nets live.
pub(crate) enum Nets {
    /// A `new Net<float>(...)` of the program's.
    One(Box<Net>),
    /// A solver's: net 0 trains, nets 1.. are its test nets.
    Solver(Box<Solver>),
}

/// The nets and a view of each; the C++ Net objects over them (and the
/// solver, if any) share it, so a `shared_ptr<Net>` from `solver->net()`
/// keeps the solver's nets alive, as in Caffe.
pub(crate) struct Shared {
    pub(crate) nets: Nets,
    views: Vec<View>,
}

pub(crate) type SharedRef = Rc<RefCell<Shared>>;

impl Shared {
    pub(crate) fn new(nets: Nets) -> SharedRef {
        let n = match &nets {
            Nets::One(_) => 1,
            Nets::Solver(s) => s.net_count(),
        };
        Rc::new(RefCell::new(Shared { nets, views: (0..n).map(|_| View::default()).collect() }))
    }

    pub(crate) fn net_count(&self) -> usize {
        self.views.len()
    }

    fn parts(&mut self, i: usize) -> Result<(&mut Net, &mut View)> {
        let n = self.views.len();
        let no_net = || Error::invalid(format!("no net {i} of {n}"));
        let view = self.views.get_mut(i).ok_or_else(no_net)?;
        let net = match &mut self.nets {
            Nets::One(net) => net.as_mut(),
            Nets::Solver(s) => s.net_at_mut(i).ok_or_else(no_net)?,
        };
        Ok((net, view))
    }

    /// Before the solver runs its nets: weights the program may have written
    /// through its pointers are what it trains.
    pub(crate) fn before_solver(&mut self) {
        if self.views.iter().any(|v| v.weights_exposed) {
            caffe_tch::layers::weights_written_outside_libtorch();
        }
    }

    /// After the solver ran its nets: every host copy gets their values.
    pub(crate) fn after_solver(&mut self) -> Result<()> {
        for i in 0..self.views.len() {
            let (net, view) = self.parts(i)?;
            view.refresh(net, true, true)?;
        }
        Ok(())
    }
}

/// A host copy of a blob's data or diff.
#[derive(Clone, PartialEq, Eq, Hash)]
enum Key {
    Data(String),
    Diff(String),
}

impl Key {
    fn name(&self) -> &str {
        match self {
            Key::Data(n) | Key::Diff(n) => n,
        }
    }

    /// What the net holds for it now (None: no value or diff yet).
    fn source<'a>(&self, net: &'a Net) -> Option<&'a Tensor> {
        match self {
            Key::Data(n) => net.blob(n),
            Key::Diff(n) => net.blob_diff(n),
        }
    }
}

/// What the header has been given of one net.
#[derive(Default)]
pub(crate) struct View {
    /// Input blobs' host tensors, which the Input layers read.
    inputs: HashMap<String, Tensor>,
    /// Other blobs' data and every blob's diff as host copies, made on
    /// request and kept at the same address: each pass writes its values into
    /// them (a program may keep the pointer, as Caffe's blobs keep their
    /// memory); one whose blob changed shape is dropped.
    copies: HashMap<Key, Tensor>,
    /// Blobs whose data the program asked to write (`mutable_cpu_data`)
    /// since the last forward: a forward that reads one before making it
    /// (`ForwardFrom` past its layer) reads the program's values, as in Caffe.
    written: HashSet<String>,
    /// Names handed out as C strings.
    names: HashMap<String, CString>,
    /// Whether the program holds pointers into the layers' blobs (weights),
    /// which it may write unseen by libtorch.
    weights_exposed: bool,
}

impl View {
    /// The host tensor of input `name`, made (and given to its Input layer)
    /// at its current shape when there is none.
    fn input(&mut self, net: &mut Net, name: &str) -> Result<Tensor> {
        if let Some(t) = self.inputs.get(name) {
            return Ok(t.shallow_clone());
        }
        let shape = net.blob_shape(name).ok_or_else(|| no_blob(name))?.clone();
        let host = Tensor::f_zeros(shape.as_slice(), (Kind::Float, Device::Cpu))?;
        net.set_input(name, &host)?;
        self.inputs.insert(name.to_string(), host.shallow_clone());
        Ok(host)
    }

    /// The host copy for `key`, made from the net's value (zeros where it has
    /// none yet) when there is none.
    fn copy(&mut self, net: &Net, key: Key) -> Result<Tensor> {
        if let Some(t) = self.copies.get(&key) {
            return Ok(t.shallow_clone());
        }
        let shape = net.blob_shape(key.name()).ok_or_else(|| no_blob(key.name()))?.clone();
        let copy = match key.source(net) {
            Some(v) if v.size() == shape => v
                .f_to_device(Device::Cpu)
                .and_then(|v| v.f_to_kind(Kind::Float))
                .and_then(|v| v.f_detach_copy())
                .and_then(|v| v.f_contiguous()),
            _ => Tensor::f_zeros(shape.as_slice(), (Kind::Float, Device::Cpu)),
        }?;
        self.copies.insert(key, copy.shallow_clone());
        Ok(copy)
    }

    /// Before a pass: inputs written on the host reach a net on a GPU, and
    /// what layers derive from weights is made again if the program may have
    /// written them through its pointers.
    fn before_pass(&mut self, net: &mut Net) -> Result<()> {
        if self.weights_exposed {
            caffe_tch::layers::weights_written_outside_libtorch();
        }
        if net.device() == Device::Cpu {
            return Ok(());
        }
        for (name, host) in &self.inputs {
            net.set_input(name, host)?;
        }
        Ok(())
    }

    /// The host copies of data (`data`) and diffs (`diffs`) brought up to date
    /// with the net, in place; those whose blob has another shape now are
    /// dropped (their next request makes them anew, as Caffe reallocates a
    /// blob that grows). A diff the net has none of keeps its values.
    fn refresh(&mut self, net: &Net, data: bool, diffs: bool) -> Result<()> {
        self.copies.retain(|key, host| net.blob_shape(key.name()).is_some_and(|s| *s == host.size()));
        for (key, host) in &mut self.copies {
            let wanted = if matches!(key, Key::Data(_)) { data } else { diffs };
            match key.source(net) {
                Some(v) if wanted && v.size() == host.size() => {
                    tch::no_grad(|| host.f_copy_(v))?;
                }
                _ => {}
            }
        }
        if data {
            self.written.clear();
        }
        Ok(())
    }

    /// Before a forward over layers `start..=end`: the blobs it reads before
    /// making them that the program wrote get the program's values.
    fn push_written(&self, net: &mut Net, start: usize, end: usize) -> Result<()> {
        if self.written.is_empty() {
            return Ok(());
        }
        let read_first: Vec<String> = {
            let params = net.layer_params();
            let mut made: Vec<&String> = Vec::new();
            let mut read_first: Vec<String> = Vec::new();
            for p in params.get(start..=end).unwrap_or_default() {
                read_first.extend(p.bottom.iter().filter(|b| !made.contains(b)).cloned());
                made.extend(&p.top);
            }
            read_first
        };
        for name in read_first.iter().filter(|n| self.written.contains(*n)) {
            if let Some(host) = self.copies.get(&Key::Data(name.clone())) {
                net.set_blob_value(name, host)?;
            }
        }
        Ok(())
    }

    /// The program now holds a pointer into the layers' weights.
    pub(crate) fn expose_weights(&mut self) {
        self.weights_exposed = true;
    }

    pub(crate) fn name_ptr(&mut self, name: &str) -> *const c_char {
        self.names.entry(name.to_string()).or_insert_with(|| CString::new(name).unwrap_or_default()).as_ptr()
    }
}

fn no_blob(name: &str) -> Error {
    Error::invalid(format!("net has no blob named '{name}'"))
}

/// Whether a backward can run: the net has a loss or force_backward.
fn can_backward(net: &Net) -> bool {
    net.has_loss() || net.force_backward()
}

/// Whether `Forward` records what a backward needs: where one is expected
/// (a TRAIN net with a loss, or force_backward). A TEST net (an evaluation
/// loop, a deploy net) runs inference-only, its fused path; a Backward after
/// it runs the forward again, recorded, on the same blobs.
fn forward_records(net: &Net) -> bool {
    net.force_backward() || (net.phase == Phase::Train && net.has_loss())
}

/// Forward over layers `start..=end` (Caffe's ForwardFromTo), recording
/// autograd's graph when `grad`: each layer takes its bottoms' current
/// shapes; the loss of those layers.
fn forward_range(net: &mut Net, view: &mut View, start: usize, end: usize, grad: bool) -> Result<f64> {
    let layers = net.layer_names().len();
    if start > end || end >= layers {
        return Err(Error::invalid(format!("Net::ForwardFromTo({start}, {end}): the net has layers 0..{layers}")));
    }
    view.before_pass(net)?;
    let loss = if start == 0 && end + 1 == layers && !grad {
        net.reshape()?;
        net.forward_inference()?
    } else {
        net.reshape_layers(start, end + 1)?;
        view.push_written(net, start, end)?;
        net.record_blob_diffs(grad);
        net.forward_from_to(start, end, grad)?
    };
    view.refresh(net, true, false)?;
    Ok(loss)
}

/// Backward from layer `start` down to `end` (Caffe's BackwardFromTo): the
/// loss layers in the range seed it, and each top no later layer in the
/// range reads is seeded with its diff as it stands (as the program wrote it
/// or a backward above left it; zeros if neither), as Caffe's backward reads
/// the diffs in its blobs.
fn backward_range(net: &mut Net, view: &mut View, start: usize, end: usize) -> Result<()> {
    let layers = net.layer_names().len();
    if start >= layers || end > start {
        return Err(Error::invalid(format!("Net::BackwardFromTo({start}, {end}): the net has layers 0..{layers}")));
    }
    if !can_backward(net) {
        return Err(Error::invalid(
            "Net::Backward: this net has no loss and no force_backward, so nothing backpropagates \
             (add force_backward: true to the prototxt)",
        ));
    }
    let seeds = net.backward_seeds(start, end);
    let params = net.layer_params();
    let first_computing = (end..=start).find(|&i| !params[i].bottom.is_empty());
    // Caffe's backward reads the blobs as they are; autograd needs the
    // forwards that made them (one pass, or layer by layer): run here if
    // any layer's last forward recorded none.
    if !net.backward_recorded(end, start) {
        if let Some(first) = first_computing {
            forward_range(net, view, first, start, true)?;
        }
    }
    let mut diffs: Vec<(String, Tensor)> = Vec::new();
    for s in &seeds {
        let diff = match (view.copies.get(&Key::Diff(s.clone())), net.blob_diff(s)) {
            (Some(host), _) => host.shallow_clone(),
            (None, Some(d)) => d.shallow_clone(),
            (None, None) => match net.blob_first_value(s) {
                Some(v) => v.f_zeros_like()?,
                None => continue,
            },
        };
        diffs.push((s.clone(), diff));
    }
    view.before_pass(net)?;
    net.backward_from_to(start, end, &diffs)?;
    view.refresh(net, false, true)
}

/// One net of a set, as a C++ `Net<float>` holds it.
pub struct NetHandle {
    shared: SharedRef,
    index: usize,
}

impl NetHandle {
    pub(crate) fn of(shared: SharedRef, index: usize) -> Self {
        NetHandle { shared, index }
    }
}

/// Runs `f` on the net `h` points at and its view.
pub(crate) fn with<T>(h: *mut NetHandle, f: impl FnOnce(&mut Net, &mut View) -> Result<T>) -> Result<T> {
    // SAFETY: the header passes the pointer `caffe_tch_net_new` or
    // `caffe_tch_solver_net` returned, until it calls `caffe_tch_net_free`.
    let h = unsafe { h.as_ref() }.ok_or_else(|| Error::invalid("null net"))?;
    let mut shared =
        h.shared.try_borrow_mut().map_err(|_| Error::invalid("the net is busy (a call from inside a call)"))?;
    let (net, view) = shared.parts(h.index)?;
    f(net, view)
}

/// Runs `f` on the net `h` points at.
pub(crate) fn with_net<T>(h: *mut NetHandle, f: impl FnOnce(&mut Net) -> Result<T>) -> Result<T> {
    with(h, |net, _| f(net))
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
        caffe_tch::util::allocator::install_caching_cpu_allocator();
        let net = Net::from_file(Path::new(&file), &state, Default::default(), crate::device())?;
        let h = NetHandle::of(Shared::new(Nets::One(Box::new(net))), 0);
        Ok(Box::into_raw(Box::new(h)))
    })
}

/// Lets go of a C++ Net's hold on its net (a solver's nets live on with the solver).
/// # Safety
/// Pointers as `include/caffe/caffe.hpp` passes them: what this library
/// returned and has not freed, NUL-terminated strings, arrays of the length given.
#[no_mangle]
pub unsafe extern "C" fn caffe_tch_net_free(h: *mut NetHandle) {
    if !h.is_null() {
        // SAFETY: made by Box::into_raw here or in caffe_tch_solver_net, freed once.
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
        let file = text(file, "CopyTrainedLayersFrom")?;
        with(h, |net, _| net.load_weights(Path::new(&file)))?;
        Ok(0)
    })
}

/// The names of the net's inputs (`which` 0), outputs (1), blobs (2) or
/// layers (3), the layers' types (4), or the net's own name (5), in the
/// net's order.
fn names_of(net: &Net, which: c_int) -> Vec<&str> {
    match which {
        0 => net.input_blob_names(),
        1 => net.output_blob_names(),
        2 => net.blob_names(),
        3 => net.layer_names(),
        4 => net.layer_types(),
        _ => vec![net.name.as_str()],
    }
}

/// How many names of kind `which` ([`names_of`]).
/// # Safety
/// Pointers as `include/caffe/caffe.hpp` passes them: what this library
/// returned and has not freed, NUL-terminated strings, arrays of the length given.
#[no_mangle]
pub unsafe extern "C" fn caffe_tch_net_count(h: *mut NetHandle, which: c_int) -> c_int {
    guarded(-1, || with(h, |net, _| Ok(names_of(net, which).len() as c_int)))
}

/// The `i`-th name of kind `which` ([`names_of`]); null past the end. Valid
/// while the net lives.
/// # Safety
/// Pointers as `include/caffe/caffe.hpp` passes them: what this library
/// returned and has not freed, NUL-terminated strings, arrays of the length given.
#[no_mangle]
pub unsafe extern "C" fn caffe_tch_net_name(h: *mut NetHandle, which: c_int, i: c_int) -> *const c_char {
    guarded(std::ptr::null(), || {
        with(h, |net, view| {
            let name = names_of(net, which)
                .get(i.max(0) as usize)
                .map(|s| s.to_string())
                .ok_or_else(|| Error::invalid(format!("no name {i} of kind {which}")))?;
            Ok(view.name_ptr(&name))
        })
    })
}

/// The net's phase: 0 TRAIN, 1 TEST.
/// # Safety
/// Pointers as `include/caffe/caffe.hpp` passes them: what this library
/// returned and has not freed, NUL-terminated strings, arrays of the length given.
#[no_mangle]
pub unsafe extern "C" fn caffe_tch_net_phase(h: *mut NetHandle) -> c_int {
    guarded(-1, || with(h, |net, _| Ok(if net.phase == Phase::Train { 0 } else { 1 })))
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
        let name = text(name, "blob")?;
        with(h, |net, _| {
            let shape = net.blob_shape(&name).ok_or_else(|| no_blob(&name))?;
            // SAFETY: the header passes room for `max` values.
            Ok(unsafe { write_shape(shape, dims, max) })
        })
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
        let name = text(name, "Reshape")?;
        // SAFETY: the header passes `n` values.
        let shape: Vec<i64> = (0..n.max(0) as usize).map(|k| unsafe { *dims.add(k) }).collect();
        with(h, |net, view| {
            if !net.input_blob_names().contains(&name.as_str()) {
                return Err(Error::invalid(format!(
                    "Blob::Reshape: '{name}' is not an input of the net; its shape follows the layers (Net::Reshape)"
                )));
            }
            if net.blob_shape(&name).is_some_and(|s| *s == shape) {
                return Ok(0);
            }
            net.reshape_input(&name, &shape)?;
            view.inputs.remove(&name);
            view.copies.remove(&Key::Diff(name.clone()));
            Ok(0)
        })
    })
}

/// `Net::Reshape()`: every blob's shape from the inputs'; 0 on success.
/// # Safety
/// Pointers as `include/caffe/caffe.hpp` passes them: what this library
/// returned and has not freed, NUL-terminated strings, arrays of the length given.
#[no_mangle]
pub unsafe extern "C" fn caffe_tch_net_reshape(h: *mut NetHandle) -> c_int {
    guarded(-1, || {
        with(h, |net, view| {
            net.reshape()?;
            view.refresh(net, true, false)?;
            Ok(0)
        })
    })
}

/// The host memory of blob `name`'s data (`diff` 0) or diff (1), its shape's
/// count of floats: an input's data is what the next forward reads; any
/// other is a copy of the net's values (zeros before a pass made them) that
/// later passes update in place. `write` says the program asked to write it
/// (`mutable_cpu_data`). Valid until the blob changes shape; null on error.
/// # Safety
/// Pointers as `include/caffe/caffe.hpp` passes them: what this library
/// returned and has not freed, NUL-terminated strings, arrays of the length given.
#[no_mangle]
pub unsafe extern "C" fn caffe_tch_net_blob_data(
    h: *mut NetHandle,
    name: *const c_char,
    diff: c_int,
    write: c_int,
) -> *mut f32 {
    guarded(std::ptr::null_mut(), || {
        let name = text(name, "blob")?;
        with(h, |net, view| {
            let t = if diff != 0 {
                view.copy(net, Key::Diff(name.clone()))?
            } else if net.input_blob_names().contains(&name.as_str()) {
                view.input(net, &name)?
            } else {
                let t = view.copy(net, Key::Data(name.clone()))?;
                if write != 0 {
                    view.written.insert(name.clone());
                }
                t
            };
            Ok(t.data_ptr() as *mut f32)
        })
    })
}

/// `Forward(&loss)` (`start` 0, `end` -1: every layer) or `ForwardFromTo(start,
/// end)`, recorded for a backward where one is expected ([`forward_records`]). The loss into `loss` when not null.
/// 0 on success.
/// # Safety
/// Pointers as `include/caffe/caffe.hpp` passes them: what this library
/// returned and has not freed, NUL-terminated strings, arrays of the length given.
#[no_mangle]
pub unsafe extern "C" fn caffe_tch_net_forward(h: *mut NetHandle, start: c_int, end: c_int, loss: *mut f32) -> c_int {
    guarded(-1, || {
        let value = with(h, |net, view| {
            let last = net.layer_names().len() as c_int - 1;
            let end = if end < 0 { last } else { end };
            let grad = forward_records(net);
            forward_range(net, view, start.max(0) as usize, end.max(0) as usize, grad)
        })?;
        if !loss.is_null() {
            // SAFETY: the header passes a float or null.
            unsafe { *loss = value as f32 };
        }
        Ok(0)
    })
}

/// `Backward()` (`start` -1: from the last layer) or `BackwardFromTo(start,
/// end)`: param diffs accumulate, blob diffs are the new ones. 0 on success.
/// # Safety
/// Pointers as `include/caffe/caffe.hpp` passes them: what this library
/// returned and has not freed, NUL-terminated strings, arrays of the length given.
#[no_mangle]
pub unsafe extern "C" fn caffe_tch_net_backward(h: *mut NetHandle, start: c_int, end: c_int) -> c_int {
    guarded(-1, || {
        with(h, |net, view| {
            let last = net.layer_names().len() as c_int - 1;
            let start = if start < 0 { last } else { start };
            backward_range(net, view, start.max(0) as usize, end.max(0) as usize)
        })?;
        Ok(0)
    })
}

/// `Update()`: every learnable blob's data minus its diff, as Caffe's
/// Net::Update (a program's own update rule scales the diffs first). 0 on success.
/// # Safety
/// Pointers as `include/caffe/caffe.hpp` passes them: what this library
/// returned and has not freed, NUL-terminated strings, arrays of the length given.
#[no_mangle]
pub unsafe extern "C" fn caffe_tch_net_update(h: *mut NetHandle) -> c_int {
    guarded(-1, || {
        with(h, |net, view| {
            view.before_pass(net)?;
            for p in net.learnable_params_mut() {
                let diff = p.diff();
                tch::no_grad(|| p.data.f_sub_(&diff).map(drop))?;
            }
            // What layers derive from weights (packed convolutions) is made again.
            caffe_tch::layers::weights_written_outside_libtorch();
            view.refresh(net, true, true)
        })?;
        Ok(0)
    })
}

/// `ClearParamDiffs()`: every learnable blob's diff to zero. 0 on success.
/// # Safety
/// Pointers as `include/caffe/caffe.hpp` passes them: what this library
/// returned and has not freed, NUL-terminated strings, arrays of the length given.
#[no_mangle]
pub unsafe extern "C" fn caffe_tch_net_clear_param_diffs(h: *mut NetHandle) -> c_int {
    guarded(-1, || {
        with(h, |net, _| net.clear_param_diffs())?;
        Ok(0)
    })
}

/// The loss weight of blob `name` (0 for a blob that is no loss) into
/// `weight`. 0 on success.
/// # Safety
/// Pointers as `include/caffe/caffe.hpp` passes them: what this library
/// returned and has not freed, NUL-terminated strings, arrays of the length given.
#[no_mangle]
pub unsafe extern "C" fn caffe_tch_net_blob_loss_weight(
    h: *mut NetHandle,
    name: *const c_char,
    weight: *mut f32,
) -> c_int {
    guarded(-1, || {
        let name = text(name, "blob")?;
        let w = with(h, |net, _| {
            net.blob_shape(&name).ok_or_else(|| no_blob(&name))?;
            Ok(net.blob_loss_weight(&name))
        })?;
        if !weight.is_null() {
            // SAFETY: the header passes a float or null.
            unsafe { *weight = w };
        }
        Ok(0)
    })
}
