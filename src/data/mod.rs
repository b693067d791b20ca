//! Datasets in and out: Caffe's key-value databases (LMDB, LevelDB), `Datum`
//! records (raw or encoded images), images on disk, and Caffe's
//! `DataTransformer` (mean, scale, crop, mirror).
//!
//! The data layers (src/layers/data/) read through these on their prefetch
//! threads; the dataset tools (src/tools/convert_*.rs, compute_image_mean.rs)
//! write through them.
pub mod datum;
pub mod db;
pub mod gif;
pub mod hdf5;
pub mod image;
pub mod jpeg;
pub mod jpeg2000;
pub mod pam;
pub mod radiance;
pub mod resize;
pub mod sun_raster;
pub mod transform;

use std::cell::Cell;

thread_local! {
    /// This thread's share of the TRAIN data in a data-parallel run, as
    /// Caffe's `Caffe::solver_rank()` / `solver_count()` (also per thread
    /// there): set by the train command before it builds the nets on the
    /// same thread. (0, 1) means all of it.
    static TRAIN_SHARD: Cell<(usize, usize)> = const { Cell::new((0, 1)) };
}

/// Makes TRAIN-phase data layers built from now on, on this thread, keep the records of `rank` of `world`.
pub fn set_train_shard(rank: usize, world: usize) {
    TRAIN_SHARD.with(|s| s.set((rank, world.max(1))));
}

/// (rank, world) of the TRAIN data this thread's data layers read.
pub fn train_shard() -> (usize, usize) {
    TRAIN_SHARD.with(Cell::get)
}

thread_local! {
    /// A seed every rank of a data-parallel run shares (the solver's
    /// `random_seed` before the rank is added), so that layers which shuffle
    /// their records shuffle them alike on every rank and can split them.
    static SHARED_SEED: Cell<Option<u64>> = const { Cell::new(None) };
}

/// Sets the seed the ranks share (`None`: they have none in common).
pub fn set_shared_seed(seed: Option<u64>) {
    SHARED_SEED.with(|s| s.set(seed));
}

/// The seed every rank shares, when the run has one.
pub fn shared_seed() -> Option<u64> {
    SHARED_SEED.with(Cell::get)
}

pub use db::{open_cursor, Backend, Cursor, DbWriter, RecordReader};
pub use transform::Transformer;
