//! Layers: one file per family, and one registry mapping Caffe's type strings
//! to constructors.
//!
//! A layer never owns its learnable blobs: `setup` declares them (shape and
//! filler) and the [`crate::net::Net`] creates, shares and loads them, then hands
//! them to `forward`. Backward is libtorch autograd over what `forward` computed,
//! so a layer only writes its forward pass with differentiable tensor ops.
//! Layers must work in whatever floating kind their bottoms have (f32 in nets,
//! f64 in the gradient checker): never hard-code `Kind::Float` for values.
use tch::{Device, Tensor};

use crate::proto::caffe::{FillerParameter, LayerParameter, Phase};

pub mod registry;
pub use registry::{create_layer, known_types, LayerInfo, REGISTRY};

pub mod activation;
pub mod common;
pub mod data;
pub mod dropin;
pub mod filler;
pub mod gradcheck;
pub mod hdf5;
pub mod input;
pub mod layout;
pub mod loss;
pub mod normalization;
pub mod recurrent;
pub mod vision;
pub mod window_data;

/// A blob shape, Caffe-style: any number of axes.
pub type Shape = Vec<i64>;

/// A layer error before the net adds the file, line and layer name.
#[derive(Debug, Clone)]
pub struct LayerError(pub String);

impl From<String> for LayerError {
    fn from(s: String) -> Self {
        LayerError(s)
    }
}

impl From<&str> for LayerError {
    fn from(s: &str) -> Self {
        LayerError(s.to_string())
    }
}

pub type LayerResult<T> = std::result::Result<T, LayerError>;

/// Shorthand: `bail!("...")` returns a LayerError.
#[macro_export]
macro_rules! layer_bail {
    ($($arg:tt)*) => { return Err($crate::layers::LayerError(format!($($arg)*))) };
}

impl From<tch::TchError> for LayerError {
    fn from(e: tch::TchError) -> Self {
        LayerError(format!("libtorch: {e}"))
    }
}

/// The message, so callers (and the tests) format a layer error with `{e}` or
/// `e.to_string()` rather than reading the field.
impl std::fmt::Display for LayerError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// A learnable (or state) blob a layer asks the net for.
#[derive(Debug, Clone)]
pub struct ParamDecl {
    pub shape: Shape,
    pub filler: FillerParameter,
}

impl ParamDecl {
    pub fn new(shape: Shape, filler: FillerParameter) -> Self {
        ParamDecl { shape, filler }
    }
    /// A blob filled with a constant (e.g. BatchNorm statistics start at 0).
    pub fn constant(shape: Shape, value: f32) -> Self {
        ParamDecl {
            shape,
            filler: FillerParameter { r#type: Some("constant".into()), value: Some(value), ..Default::default() },
        }
    }
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
    fn setup(&mut self, bottoms: &[Shape]) -> LayerResult<SetupOut>;

    /// Computes the tops from the bottoms and the layer's blobs (weights first,
    /// then bias, in Caffe's order). Shapes may differ from setup's (a new batch size).
    fn forward(&mut self, ctx: &Ctx, bottoms: &[Tensor], params: &[Tensor]) -> LayerResult<Vec<Tensor>>;

    /// Layers whose parameters are running statistics, not gradient-trained
    /// (BatchNorm), return false; their blobs never get gradients.
    fn params_learnable(&self) -> bool {
        true
    }

    /// Sets a net input (Input, MemoryData): only input layers accept it.
    fn set_input(&mut self, _top: usize, _value: Tensor) -> LayerResult<()> {
        Err(LayerError("this layer takes no external input".into()))
    }

    /// Top shapes may change between batches only for data-dependent layers;
    /// by default the first setup's shapes stand.
    fn is_loss_layer(&self) -> bool {
        false
    }
}

/// Requires exactly `n` bottoms (or a range), with Caffe's wording.
pub fn check_bottoms(bottoms: &[Shape], min: usize, max: usize) -> LayerResult<()> {
    let n = bottoms.len();
    if n < min || n > max {
        if min == max {
            layer_bail!("takes {min} bottom blob(s), got {n}");
        }
        layer_bail!("takes {min} to {max} bottom blobs, got {n}");
    }
    Ok(())
}

/// Caffe's `CanonicalAxisIndex`: a negative axis counts from the end.
pub fn canonical_axis(axis: i32, num_axes: usize) -> LayerResult<usize> {
    let n = num_axes as i64;
    let a = axis as i64;
    if a < -n || a >= n.max(1) {
        layer_bail!("axis {axis} out of range for a {num_axes}-D blob");
    }
    Ok(if a < 0 { (a + n) as usize } else { a as usize })
}

/// Product of dims in `shape[from..to]`.
pub fn count(shape: &[i64], from: usize, to: usize) -> i64 {
    shape[from.min(shape.len())..to.min(shape.len())].iter().product()
}

/// `LayerParameter` accessors every family uses.
pub fn layer_name(p: &LayerParameter) -> &str {
    p.name()
}
