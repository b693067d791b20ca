//! Layers: a folder per family, as Caffe groups them (neuron, loss, vision,
//! common, recurrent, data, dropin, and the SSD fork's detection), and in it one file per Caffe type, named
//! after the type in snake_case (`vision/deconvolution.rs`,
//! `common/inner_product.rs`), like Caffe's `src/caffe/layers/<type>_layer.cpp`.
//! Code that several types of a family share is in the family's `mod.rs` or a
//! helper file it names. One registry maps Caffe's type strings to
//! constructors; each family's `register` calls its files' registrations.
//! Here at the top: the `Layer` trait, the registry, fillers, the gradient
//! checker and the memory-layout helpers.
//!
//! A layer never owns its learnable blobs: `setup` declares them (shape and
//! filler) and the [`crate::net::Net`] creates, shares and loads them, then hands
//! them to `forward`. Backward is libtorch autograd over what `forward` computed,
//! so a layer only writes its forward pass with differentiable tensor ops.
//! Layers must work in whatever floating kind their bottoms have (f32 in nets,
//! f64 in the gradient checker): never hard-code `Kind::Float` for values.
use crate::{bail, Error, Result};
use tch::{Device, Tensor};

use crate::proto::caffe::{FillerParameter, Phase};

pub mod python;
pub mod registry;
pub use registry::{create_layer, known_types, LayerInfo, REGISTRY};

pub mod capture;
pub mod common;
pub mod data;
pub mod detection;
pub mod dropin;
pub mod external;
pub mod filler;
pub mod fold;
pub mod gradcheck;
pub mod layout;
pub mod loss;
pub mod neuron;
pub mod onednn;
pub mod recurrent;
pub mod vision;

/// Counts the times code outside libtorch may have written weights in place
/// (numpy through pycaffe's views of them). libtorch's version counters miss
/// such writes, so what a layer derives from a weight and keeps (a
/// convolution's packed copy, `vision::inference_weights`) is made again
/// whenever this moves.
static WEIGHTS_WRITTEN_OUTSIDE_LIBTORCH: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

/// Called by a front end after code it runs may have written weights through
/// their memory (before each pycaffe op while arrays over weights exist, after
/// a Python layer with blobs ran).
pub fn weights_written_outside_libtorch() {
    WEIGHTS_WRITTEN_OUTSIDE_LIBTORCH.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
}

/// How many times [`weights_written_outside_libtorch`] was called.
pub fn outside_weight_writes() -> u64 {
    WEIGHTS_WRITTEN_OUTSIDE_LIBTORCH.load(std::sync::atomic::Ordering::Relaxed)
}

/// Caffe's `set_random_seed`: seeds libtorch's generator, which the layers'
/// fillers and random layers draw from, and the Caffe generators of the C++
/// code whose layer types are registered (`external`). The solver's
/// `random_seed`, pycaffe's `caffe.set_random_seed` and the C++ interface's
/// `Caffe::set_random_seed` all come here.
pub fn set_random_seed(seed: i64) {
    tch::manual_seed(seed);
    external::seed_generators(seed as u64);
}

/// A blob shape, Caffe-style: any number of axes.
pub type Shape = Vec<i64>;

/// The most axes a blob may have, as Caffe's `kMaxBlobAxes` (and numpy's own
/// limit, which pycaffe's arrays meet).
pub const MAX_BLOB_AXES: usize = 32;

/// A learnable (or state) blob a layer asks the net for.
#[derive(Debug, Clone)]
pub struct ParamDecl {
    pub shape: Shape,
    pub filler: FillerParameter,
    /// Values the layer chose itself (a Python layer fills its blobs in
    /// `setup`), in row-major order; they replace the filler's.
    pub values: Option<Vec<f32>>,
}

impl ParamDecl {
    pub fn new(shape: Shape, filler: FillerParameter) -> Self {
        ParamDecl { shape, filler, values: None }
    }
    /// A blob filled with a constant (e.g. BatchNorm statistics start at 0).
    pub fn constant(shape: Shape, value: f32) -> Self {
        ParamDecl::new(
            shape,
            FillerParameter { r#type: Some("constant".into()), value: Some(value), ..Default::default() },
        )
    }
    /// A blob with the given values (`shape`'s count of them).
    pub fn with_values(shape: Shape, values: Vec<f32>) -> Self {
        ParamDecl { values: Some(values), ..ParamDecl::constant(shape, 0.0) }
    }
}

/// What a layer with its own backward ([`Layer::own_backward`]) returns: the
/// gradient for each bottom and each of its blobs (None: none, or not asked for).
#[derive(Debug, Default)]
pub struct Gradients {
    pub bottoms: Vec<Option<Tensor>>,
    pub params: Vec<Option<Tensor>>,
}

/// What `setup` tells the net: the top shapes and the blobs to create.
#[derive(Debug, Clone, Default)]
pub struct SetupOut {
    pub tops: Vec<Shape>,
    pub params: Vec<ParamDecl>,
}

/// What a layer sees while running.
#[derive(Debug, Clone, Copy)]
pub struct Ctx {
    pub phase: Phase,
    /// The solver iteration (DropIn's τ); `i64::MAX` means "fully grown".
    pub iteration: i64,
    pub device: Device,
}

impl Ctx {
    pub fn train(&self) -> bool {
        self.phase == Phase::Train
    }
}

pub trait Layer: Send {
    /// Checks the bottom shapes, and returns the top shapes and the blobs this
    /// layer needs. Called once when the net is built.
    fn setup(&mut self, bottoms: &[Shape]) -> Result<SetupOut>;

    /// Computes the tops from the bottoms and the layer's blobs (weights first,
    /// then bias, in Caffe's order). Shapes may differ from setup's (a new batch size).
    fn forward(&mut self, ctx: &Ctx, bottoms: &[Tensor], params: &[Tensor]) -> Result<Vec<Tensor>>;

    /// Whether blob `index` is trained by gradient: running statistics
    /// (BatchNorm's blobs, the forks' BN means and variances) are not, and
    /// never get gradients or a learning rate.
    fn param_learnable(&self, _index: usize) -> bool {
        true
    }

    /// Sets a net input (Input, MemoryData): only input layers accept it.
    fn set_input(&mut self, _top: usize, _value: Tensor) -> Result<()> {
        Err(Error::invalid("this layer takes no external input"))
    }

    /// Changes a MemoryData layer's batch size (Caffe's `set_batch_size`)
    /// and returns its new top shapes; other layers have none to change.
    fn set_batch_size(&mut self, _batch: usize) -> Result<Vec<Shape>> {
        Err(Error::invalid("only a MemoryData layer has a batch size to set"))
    }

    /// An element-wise layer whose top is its bottom in the prototxt may
    /// overwrite the bottom, as Caffe's in-place layers do, saving a blob's
    /// memory. The net calls this (instead of `forward`) only when the old
    /// value is needed by nothing: not by its producer's backward, not by a
    /// reader of blob diffs, not by the per-layer timing. `None`: not supported.
    fn forward_in_place(&mut self, _ctx: &Ctx, _bottom: &mut Tensor) -> Option<Result<()>> {
        None
    }

    /// Data layers that read a sequence move to where they would be after
    /// `batches` forward passes since setup (a solver resumed from a snapshot
    /// reads on from there); the others ignore it.
    fn skip_to_batch(&mut self, _batches: u64) -> Result<()> {
        Ok(())
    }

    /// Loss layers get loss_weight 1 on their first top by default, and an
    /// anonymous top when the prototxt names none (as in Caffe).
    fn is_loss_layer(&self) -> bool {
        false
    }

    /// True for a layer whose backward is its own code rather than autograd
    /// over its forward (a Python layer). The net makes its tops new leaves of
    /// the graph, and in backward hands it the gradients that reached them,
    /// then carries on from the gradients it returns ([`Layer::backward`]).
    fn own_backward(&self) -> bool {
        false
    }

    /// For [`Layer::own_backward`] layers: the gradients of the bottoms (those
    /// `propagate_down` asks for) and blobs of the last forward, given its tops'.
    fn backward(&mut self, _ctx: &Ctx, _top_diffs: &[Tensor], _propagate_down: &[bool]) -> Result<Gradients> {
        Err(Error::invalid("this layer's backward is autograd's over its forward"))
    }

    /// In an inference forward, this layer running in place on a
    /// convolution's top right after it, as what the convolution may fold in
    /// ([`fold`]); `None` where it cannot be (the default).
    fn inference_epilogue(&self, _ctx: &Ctx, _params: &[Tensor]) -> Option<fold::Epilogue> {
        None
    }

    /// A forward that also computes `epilogues`, the in-place layers after
    /// this one, whose top is this layer's only top; `None` where this layer
    /// cannot (the default), and the net runs them one by one.
    fn forward_with_epilogues(
        &mut self,
        _ctx: &Ctx,
        _bottoms: &[Tensor],
        _params: &[Tensor],
        _epilogues: &[fold::Epilogue],
    ) -> Option<Result<Vec<Tensor>>> {
        None
    }

    /// A forward that autograd records and that also computes `epilogues`,
    /// the in-place layers after this one (as for an inference forward), in
    /// fewer passes; `None` where this layer cannot (the default). Only
    /// BatchNorm does: with a Scale after it, one libtorch batch norm with
    /// that scale and bias as its affine part.
    fn forward_with_training_epilogues(
        &mut self,
        _ctx: &Ctx,
        _bottoms: &[Tensor],
        _params: &[Tensor],
        _epilogues: &[fold::Epilogue],
    ) -> Option<Result<Vec<Tensor>>> {
        None
    }

    /// The layer as `Any`, for front ends that own a layer type of their own
    /// (the Python module reaches its Python layer objects through it).
    fn as_any(&self) -> Option<&dyn std::any::Any> {
        None
    }
}

/// Requires exactly `n` bottoms (or a range), with Caffe's wording.
pub fn check_bottoms(bottoms: &[Shape], min: usize, max: usize) -> Result<()> {
    let n = bottoms.len();
    if n < min || n > max {
        if min == max {
            bail!("takes {min} bottom blob(s), got {n}");
        }
        bail!("takes {min} to {max} bottom blobs, got {n}");
    }
    Ok(())
}

/// Caffe's legacy num/channels/height/width of a blob: missing axes read as
/// 1; a blob of more than 4 axes has no such view.
pub fn legacy_dims(shape: &[i64]) -> Result<[i64; 4]> {
    if shape.len() > 4 {
        bail!("this layer reads its bottoms as N×C×H×W, but a bottom has {} axes ({shape:?})", shape.len());
    }
    let mut d = [1i64; 4];
    d[..shape.len()].copy_from_slice(shape);
    Ok(d)
}

/// Caffe's `CanonicalAxisIndex`: a negative axis counts from the end, and the
/// result always indexes the shape (a 0-axis blob has no axis at all).
pub fn canonical_axis(axis: i32, num_axes: usize) -> Result<usize> {
    let n = num_axes as i64;
    let a = axis as i64;
    if a < -n || a >= n {
        bail!("axis {axis} out of range for a {num_axes}-D blob");
    }
    Ok(if a < 0 { (a + n) as usize } else { a as usize })
}

/// Product of dims in `shape[from..to]`.
pub fn count(shape: &[i64], from: usize, to: usize) -> i64 {
    shape[from.min(shape.len())..to.min(shape.len())].iter().product()
}
