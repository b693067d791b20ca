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

use std::sync::atomic::{AtomicUsize, Ordering};

/// This process's share of the TRAIN data in a data-parallel run, as Caffe's
/// `Caffe::solver_rank()` / `solver_count()`: process-wide, set once by the
/// train command before it builds the nets. (0, 1) means all of it.
static SHARD_RANK: AtomicUsize = AtomicUsize::new(0);
static SHARD_WORLD: AtomicUsize = AtomicUsize::new(1);

/// Makes TRAIN-phase data layers built from now on keep the records of `rank` of `world`.
pub fn set_train_shard(rank: usize, world: usize) {
    SHARD_RANK.store(rank, Ordering::SeqCst);
    SHARD_WORLD.store(world.max(1), Ordering::SeqCst);
}

/// (rank, world) of the TRAIN data this process reads.
pub fn train_shard() -> (usize, usize) {
    (SHARD_RANK.load(Ordering::SeqCst), SHARD_WORLD.load(Ordering::SeqCst))
}

pub use db::{open_cursor, Backend, Cursor, DbWriter, RecordReader};
pub use transform::Transformer;
