//! Datasets in and out: Caffe's key-value databases (LMDB, LevelDB), `Datum`
//! records (raw or PNG/JPEG-encoded), images on disk, and Caffe's
//! `DataTransformer` (mean, scale, crop, mirror).
//!
//! The data layers (src/layers/data/) read through these on their prefetch
//! threads; the dataset tools (src/tools/convert_*.rs, compute_image_mean.rs)
//! write through them.
pub mod datum;
pub mod db;
pub mod hdf5;
pub mod image;
pub mod transform;

pub use db::{open_cursor, Backend, Cursor, DbWriter, RecordReader};
pub use transform::Transformer;
