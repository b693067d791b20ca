//! Layer types a program adds at run time, as a Caffe fork adds its own
//! layers to Caffe's registry: the C++ interface's `REGISTER_LAYER_CLASS`
//! registers each type here, and every net built in that process then
//! creates it like a built-in type (`registry::create_layer`). C++ layer
//! classes arrive as a function table ([`program::LayerTable`], made by the
//! header), from the program itself or from a shared library the `caffe`
//! command or pycaffe loads ([`library`]).
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, PoisonError};

use super::Layer;
use crate::proto::caffe::LayerParameter;
use crate::{Error, Result};

pub mod library;
pub mod program;

/// Builds one layer of a registered type from its parameter.
pub type ExternalConstructor = Arc<dyn Fn(&LayerParameter) -> Result<Box<dyn Layer>> + Send + Sync>;

static EXTERNAL: Mutex<BTreeMap<String, ExternalConstructor>> = Mutex::new(BTreeMap::new());

/// Each registering program's or library's generator seeding, once.
static SEEDERS: Mutex<Vec<unsafe extern "C" fn(u64)>> = Mutex::new(Vec::new());

/// Adds `type_name`. As in Caffe, a type can be registered once, and not
/// over a built-in one (nor over `Python`).
pub fn register(type_name: &str, create: ExternalConstructor) -> Result<()> {
    if type_name.is_empty() {
        return Err(Error::invalid("a layer type needs a name"));
    }
    if type_name == super::python::TYPE || super::registry::REGISTRY.iter().any(|i| i.type_name == type_name) {
        return Err(Error::invalid(format!(
            "Layer type {type_name} already registered (it is one of caffe-tch's own types)"
        )));
    }
    let mut types = EXTERNAL.lock().unwrap_or_else(PoisonError::into_inner);
    if types.contains_key(type_name) {
        return Err(Error::invalid(format!("Layer type {type_name} already registered")));
    }
    types.insert(type_name.to_string(), create);
    Ok(())
}

/// The constructor registered for `type_name`, if any.
pub fn constructor(type_name: &str) -> Option<ExternalConstructor> {
    EXTERNAL.lock().unwrap_or_else(PoisonError::into_inner).get(type_name).cloned()
}

/// The registered types, sorted.
pub fn types() -> Vec<String> {
    EXTERNAL.lock().unwrap_or_else(PoisonError::into_inner).keys().cloned().collect()
}

/// Seeds the Caffe generators of the C++ code whose layer types are
/// registered ([`super::set_random_seed`] calls it).
pub(super) fn seed_generators(seed: u64) {
    for seed_fn in SEEDERS.lock().unwrap_or_else(PoisonError::into_inner).iter() {
        // SAFETY: the header's function, in code that stays loaded.
        unsafe { seed_fn(seed) };
    }
}

/// Adds `type_name`, whose layers are C++ objects reached through `table`.
pub fn register_table(type_name: &str, table: program::LayerTable) -> Result<()> {
    let create = Arc::new(move |param: &LayerParameter| {
        program::ProgramLayer::new(table, param).map(|l| Box::new(l) as Box<dyn Layer>)
    });
    register(type_name, create)?;
    let mut seeders = SEEDERS.lock().unwrap_or_else(PoisonError::into_inner);
    if !seeders.iter().any(|&f| std::ptr::fn_addr_eq(f, table.seed)) {
        seeders.push(table.seed);
    }
    Ok(())
}
