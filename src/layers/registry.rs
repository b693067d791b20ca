//! The layer registry: Caffe's type string → constructor, plus what
//! `SUPPORTED-LAYERS.md` says about each type. Each type's file contributes its
//! entry through its `register` function, which its family's `register` calls;
//! `register_all` lists the families.
use crate::{Error, Result};
use std::sync::LazyLock;

use super::Layer;
use crate::proto::caffe::LayerParameter;

pub type Constructor = fn(&LayerParameter) -> Result<Box<dyn Layer>>;

/// One registered layer type.
#[derive(Clone)]
pub struct LayerInfo {
    /// Caffe's type string, e.g. "Convolution".
    pub type_name: &'static str,
    /// The file that implements it, under `src/layers/` (from `file!()`), e.g.
    /// `vision/convolution.rs`.
    pub family: &'static str,
    /// Parameters honoured, as the docs list them.
    pub params: &'static str,
    /// The tests that check it (golden parity, gradient check, ...).
    pub tests: &'static str,
    pub create: Constructor,
}

/// A layer's file under `src/layers/`, from the `file!()` of its registration.
pub fn family_of(source_file: &'static str) -> &'static str {
    let unix = source_file.trim_start_matches("./");
    unix.split_once("src/layers/").map_or(unix, |(_, rest)| rest)
}

fn register_all() -> Vec<LayerInfo> {
    let mut r = Vec::new();
    super::neuron::register(&mut r);
    super::loss::register(&mut r);
    super::vision::register(&mut r);
    super::common::register(&mut r);
    super::recurrent::register(&mut r);
    super::data::register(&mut r);
    super::dropin::register(&mut r);
    super::detection::register(&mut r);
    r.sort_by(|a, b| a.type_name.cmp(b.type_name));
    r
}

pub static REGISTRY: LazyLock<Vec<LayerInfo>> = LazyLock::new(register_all);

/// The registered type names, sorted.
pub fn known_types() -> Vec<&'static str> {
    REGISTRY.iter().map(|i| i.type_name).collect()
}

/// Creates the layer for `param.type`; the error lists the known types.
/// Python layers are not in the registry: a front end with an interpreter
/// builds them (`layers::python`); nor are the types a program registers at
/// run time (`layers::external`).
pub fn create_layer(param: &LayerParameter) -> Result<Box<dyn Layer>> {
    let ty = param.r#type();
    if ty == super::python::TYPE {
        return super::python::create(param);
    }
    if let Some(info) = REGISTRY.iter().find(|i| i.type_name == ty) {
        return (info.create)(param);
    }
    // The program's own types (`layers::external`), registered at run time.
    if let Some(create) = super::external::constructor(ty) {
        return create(param);
    }
    let external = super::external::types();
    let added = if external.is_empty() {
        "; a fork's C++ layers load with -layer_library or CAFFE_TCH_LAYER_LIBRARIES".to_string()
    } else {
        format!("; registered by this program: {}", external.join(", "))
    };
    Err(Error::Invalid(format!("Unknown layer type: {ty} (known types: {}{added})", known_types().join(", "))))
}
