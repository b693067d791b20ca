//! Data layers, one file per type: Data (LMDB/LevelDB of Datum), ImageData (a
//! list of image files), MemoryData (arrays fed by the caller), DummyData
//! (fillers), HDF5Data and HDF5Output (.h5 files), WindowData (R-CNN windows),
//! ImageSegData (DeepLab's images with label images), MatWrite (DeepLab's
//! MATLAB files),
//! AnnotatedData (the SSD fork's images with boxes, augmented as its training
//! does: augment.rs) and Input (blobs set by the caller).
//!
//! Data and ImageData read, decode and transform on a background thread into
//! a bounded queue of `DataParameter.prefetch` batches (Caffe's
//! BasePrefetchingDataLayer), so the training thread only moves finished
//! batches to the device. Random choices (crop, mirror, rand_skip, shuffle)
//! use generators seeded from libtorch's global generator when the layer is
//! set up, which the solver seeds with its `random_seed`.
//!
//! The prefetching machinery is in prefetch.rs; WindowData reuses it too. This
//! file holds the small helpers the data layers share.
use crate::Result;
use tch::{Device, Kind, Tensor};

use super::registry::LayerInfo;
use crate::bail;
use crate::proto::caffe::LayerParameter;

pub mod annotated_data;
pub mod augment;
#[allow(clippy::module_inception)] // Caffe's `Data` type is `data::data`, as every type has its own file
pub mod data;
pub mod dummy_data;
pub mod hdf5_data;
pub mod hdf5_output;
pub mod image_data;
mod image_list;
pub mod image_seg_data;
pub mod input;
pub mod mat_write;
pub mod memory_data;
pub mod prefetch;
pub mod window_data;

pub fn register(r: &mut Vec<LayerInfo>) {
    input::register(r);
    data::register(r);
    annotated_data::register(r);
    image_data::register(r);
    image_seg_data::register(r);
    memory_data::register(r);
    dummy_data::register(r);
    hdf5_data::register(r);
    hdf5_output::register(r);
    mat_write::register(r);
    window_data::register(r);
}

/// A seed for a layer's own generator, drawn from libtorch's global one so the
/// solver's `random_seed` fixes it.
/// The data layers that do not split their records across the ranks of a
/// data-parallel run say that every rank reads all of them.
pub(super) fn warn_if_unsharded(lp: &LayerParameter) {
    let (rank, world) = crate::data::train_shard();
    if world > 1 && rank == 0 && lp.phase() == crate::proto::caffe::Phase::Train {
        crate::warn!(
            "data_layer.cpp:1",
            "layer '{}' ({}) does not split its records across the {world} ranks: every rank reads all of them, \
             in the same order unless it shuffles (Data splits them, and ImageData and HDF5Data when every rank \
             orders them alike: no shuffle or rand_skip, or a solver random_seed)",
            lp.name(),
            lp.r#type()
        );
    }
}

pub(super) fn draw_seed() -> Result<u64> {
    // A failure is reported: a fixed fallback seed would silently make every
    // run's shuffling and augmentation identical.
    let t = Tensor::f_randint(i64::MAX, [1], (Kind::Int64, Device::Cpu))?;
    Ok(t.f_int64_value(&[0])? as u64)
}

pub(super) fn check_tops(lp: &LayerParameter, min: usize, max: usize) -> Result<usize> {
    let n = lp.top.len();
    if n < min || n > max {
        if min == max {
            bail!("{} takes {min} top blob(s), got {n}", lp.r#type());
        }
        bail!("{} takes {min} to {max} top blobs, got {n}", lp.r#type());
    }
    Ok(n)
}

pub(super) fn shape_text(s: &[i64]) -> String {
    s.iter().map(|d| d.to_string()).collect::<Vec<_>>().join(",")
}
