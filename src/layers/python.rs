//! Caffe's `Python` layer type: a class written in Python (`python_param {
//! module layer param_str }`). The library has no interpreter; a front end
//! that has one (the `caffe` Python module, `import caffe`) registers the
//! constructor here. Without it, building such a layer is an error that says
//! how to run the net. The `caffe` binary re-runs itself under Python for nets
//! that have Python layers (`crate::cli`), so it never links libpython.
use std::sync::OnceLock;

use super::detection::py_proposal;
use super::registry::Constructor;
use super::Layer;
use crate::proto::caffe::{LayerParameter, NetParameter, Phase};
use crate::{Error, Result};

/// Caffe's type string for Python layers.
pub const TYPE: &str = "Python";

static FACTORY: OnceLock<Constructor> = OnceLock::new();

/// Registers the constructor of Python layers (once per process; a second
/// call keeps the first).
pub fn set_factory(create: Constructor) {
    // A second front end in the same process would register the same function.
    if FACTORY.set(create).is_err() {
        crate::warn!(crate::here!("python.rs"), "a Python layer factory was already registered; keeping the first");
    }
}

/// Whether this process can build Python layers.
pub fn has_factory() -> bool {
    FACTORY.get().is_some()
}

/// `module.Class` of a Python layer, as messages name it.
pub fn class_of(param: &LayerParameter) -> String {
    let p = param.python_param.clone().unwrap_or_default();
    format!("{}.{}", p.module(), p.layer())
}

/// Builds a Python layer through the registered factory. Without one,
/// py-faster-rcnn's proposal layer runs as the native Proposal layer.
pub fn create(param: &LayerParameter) -> Result<Box<dyn Layer>> {
    match FACTORY.get() {
        Some(create) => create(param),
        None if py_proposal::is_py_proposal(param) => native_stand_in(param, "this process has no Python to import it"),
        None => Err(Error::unsupported(format!(
            "layer {} ({}) is a Python layer, and this process has no Python: run the net from \
             `import caffe`, or with the `caffe` binary, which runs itself under Python for such nets \
             ($CAFFE_TCH_PYTHON, or the Python of the venv that holds its libtorch)",
            param.name(),
            class_of(param)
        ))),
    }
}

/// The native layer that computes what a Python layer whose module cannot be
/// imported would (only py-faster-rcnn's proposal layer has one), with a
/// warning that says why and with what values.
pub fn native_stand_in(param: &LayerParameter, why: &str) -> Result<Box<dyn Layer>> {
    let phase = param.phase.and_then(|p| Phase::try_from(p).ok()).unwrap_or(Phase::Test);
    let native = py_proposal::native_param(param, phase)?;
    crate::warn!(
        crate::here!("python.rs"),
        "layer '{}' is py-faster-rcnn's {} ({why}): running caffe-tch's native Proposal layer with \
         py-faster-rcnn's {} settings ({})",
        param.name(),
        class_of(param),
        phase.as_str_name(),
        py_proposal::describe(&native)
    );
    super::registry::create_layer(&native)
}

/// The net's Python layers, as (layer name, `module.Class`).
pub fn python_layers(net: &NetParameter) -> Vec<(String, String)> {
    net.layer.iter().filter(|l| l.r#type() == TYPE).map(|l| (l.name().to_string(), class_of(l))).collect()
}
