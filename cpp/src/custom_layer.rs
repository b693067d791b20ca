//! A program's own layer types: a class derived from `caffe::Layer<float>`
//! and registered with `REGISTER_LAYER_CLASS` (Caffe's way for a fork's
//! layers). The header registers each type with [`caffe_tch_register_layer_table`]
//! and a table of functions that reach the program's object; the library's
//! `layers::external` then builds its layers in every net.
use std::ffi::{c_char, c_int};

use caffe_tch::layers::external::program::LayerTable;

use crate::{guarded, text};

/// Registers layer type `ty`, whose objects `table` (`size` bytes) reaches;
/// 0 on success.
///
/// # Safety
/// `ty` is a NUL-terminated string; `table` points to `size` bytes of
/// functions that stay valid for the life of the program (the header's
/// inline functions).
#[no_mangle]
pub unsafe extern "C" fn caffe_tch_register_layer_table(
    ty: *const c_char,
    table: *const LayerTable,
    size: usize,
) -> c_int {
    guarded(-1, || {
        let ty = text(ty, "REGISTER_LAYER_CLASS")?;
        // SAFETY: the header passes its static table and its size.
        let table = unsafe { LayerTable::read(&ty, table, size) }?;
        caffe_tch::layers::external::register_table(&ty, table)?;
        Ok(0)
    })
}
