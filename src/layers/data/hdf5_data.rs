//! Caffe's `HDF5Data` layer: batches from the datasets of a list of .h5 files.
//!
//! HDF5Data holds one whole file in memory at a time, like Caffe: rows are
//! read across file boundaries, wrap around at the end of the list, and with
//! `shuffle` both the file order (per pass) and the rows (per file) are
//! permuted by a generator seeded from libtorch's, so `random_seed` fixes it.
//! In a data-parallel run the ranks split the rows as Caffe's Skip does
//! (offsets r, r + N, ...), shuffling with the seed they share.
use crate::error::Context;
use crate::Result;
use std::path::{Path, PathBuf};

use rand::rngs::StdRng;
use rand::seq::SliceRandom;
use rand::SeedableRng;
use tch::Tensor;

use super::{check_tops, draw_seed, shape_text};
use crate::bail;
use crate::data::hdf5 as h5;
use crate::info;
use crate::layers::registry::{family_of, LayerInfo};
use crate::layers::{Ctx, Layer, SetupOut, Shape};
use crate::proto::caffe::{LayerParameter, Phase};

pub fn register(r: &mut Vec<LayerInfo>) {
    r.push(LayerInfo {
        type_name: "HDF5Data",
        family: family_of(file!()),
        params: "hdf5_data_param.source (list of .h5 files), batch_size, shuffle; one dataset per top (float, double or integer)",
        tests: "tests/hdf5.rs",
        create: |p| Ok(Box::new(Hdf5DataLayer::new(p))),
    });
}

/// One file's datasets, one per top, rows along the first axis.
struct FileData {
    /// Per top: the item shape (all axes but the first) and the values.
    blobs: Vec<(Shape, Vec<f32>)>,
    rows: usize,
}

/// Caffe's `HDF5Data` layer.
pub struct Hdf5DataLayer {
    param: LayerParameter,
    files: Vec<PathBuf>,
    file_order: Vec<usize>,
    current_file: usize,
    current: Option<FileData>,
    row_order: Vec<usize>,
    current_row: usize,
    batch_size: usize,
    shuffle: bool,
    rng: StdRng,
    /// Item shapes fixed at setup from the first file.
    item_shapes: Vec<Shape>,
    /// Rows this layer keeps in a data-parallel run: those at offsets rank,
    /// rank + world, ... of the one sequence every rank orders alike (Caffe's Skip).
    world: usize,
}

impl Hdf5DataLayer {
    fn new(p: &LayerParameter) -> Self {
        Hdf5DataLayer {
            param: p.clone(),
            files: vec![],
            file_order: vec![],
            current_file: 0,
            current: None,
            row_order: vec![],
            current_row: 0,
            batch_size: 0,
            shuffle: false,
            rng: StdRng::seed_from_u64(0),
            item_shapes: vec![],
            world: 1,
        }
    }

    /// Reads the list file: whitespace-separated paths, like Caffe's `>>`.
    fn read_list(source: &Path) -> Result<Vec<PathBuf>> {
        let text = match std::fs::read_to_string(source) {
            Ok(t) => t,
            Err(e) => bail!("Failed to open source file: {} ({e})", source.display()),
        };
        Ok(text.split_whitespace().map(PathBuf::from).collect())
    }

    /// Loads one file's datasets (Caffe's LoadHDF5FileData).
    fn load_file(&mut self, index: usize) -> Result<()> {
        let path = self.files[index].clone();
        let fail = |msg: String| -> crate::Error {
            crate::Error::Invalid(format!("HDF5Data {}: file {}: {msg}", self.param.name(), path.display()))
        };
        let datasets = h5::read_data_file(&path, &self.param.top)
            .with_context(|| format!("HDF5Data {}: file {}", self.param.name(), path.display()))?;
        let mut blobs = Vec::with_capacity(self.param.top.len());
        let mut rows = None;
        for (top, (shape, values)) in self.param.top.iter().zip(datasets) {
            let Some(&n) = shape.first() else {
                return Err(fail(format!("dataset '{top}' is a scalar; it needs at least one axis (the rows)")));
            };
            match rows {
                None => rows = Some(n as usize),
                Some(r) if r != n as usize => {
                    return Err(fail(format!(
                        "dataset '{top}' has {n} rows but '{}' has {r}; every top needs the same number of rows",
                        self.param.top[0]
                    )))
                }
                _ => {}
            }
            blobs.push((shape[1..].to_vec(), values));
        }
        let rows = rows.unwrap_or(0);
        if rows == 0 {
            return Err(fail("the datasets hold no rows".into()));
        }
        if !self.item_shapes.is_empty() {
            for ((item, _), (want, top)) in blobs.iter().zip(self.item_shapes.iter().zip(&self.param.top)) {
                if item != want {
                    return Err(fail(format!(
                        "dataset '{top}' has items of shape ({}) but the first file's are ({})",
                        shape_text(item),
                        shape_text(want)
                    )));
                }
            }
        }
        self.row_order = (0..rows).collect();
        if self.shuffle {
            self.row_order.shuffle(&mut self.rng);
        }
        self.current = Some(FileData { blobs, rows });
        Ok(())
    }

    /// Caffe's Next(): one row on; at a file's end, the next file (reshuffling
    /// the file order at the end of the list) and the rows reshuffled.
    fn advance(&mut self) -> Result<()> {
        self.current_row += 1;
        let rows = self.current.as_ref().map_or(0, |f| f.rows);
        if self.current_row == rows {
            if self.files.len() > 1 {
                self.current_file += 1;
                if self.current_file == self.files.len() {
                    self.current_file = 0;
                    if self.shuffle {
                        self.file_order.shuffle(&mut self.rng);
                    }
                }
                self.load_file(self.file_order[self.current_file])?;
            }
            self.current_row = 0;
            if self.shuffle {
                self.row_order.shuffle(&mut self.rng);
            }
        }
        Ok(())
    }
}

impl Layer for Hdf5DataLayer {
    fn setup(&mut self, bottoms: &[Shape]) -> Result<SetupOut> {
        if !bottoms.is_empty() {
            bail!("HDF5Data takes no bottom blobs, got {}", bottoms.len());
        }
        check_tops(&self.param, 1, usize::MAX)?;
        let hp = self.param.hdf5_data_param.clone().unwrap_or_default();
        let source = match &hp.source {
            Some(s) if !s.is_empty() => PathBuf::from(s),
            _ => bail!("hdf5_data_param.source is required"),
        };
        self.batch_size = hp.batch_size() as usize;
        if self.batch_size == 0 {
            bail!("hdf5_data_param.batch_size must be positive");
        }
        self.shuffle = hp.shuffle();
        self.files = Self::read_list(&source)?;
        info!("hdf5_data_layer.cpp:94", "Number of HDF5 files: {}", self.files.len());
        if self.files.is_empty() {
            bail!("Must have at least 1 HDF5 filename listed in {}", source.display());
        }
        // Data-parallel: the ranks split the rows when they order them alike
        // (no shuffle, or the seed they share).
        let train = self.param.phase() == Phase::Train;
        let (rank, world) = if train { crate::data::train_shard() } else { (0, 1) };
        let shared = if train { crate::data::shared_seed() } else { None };
        let split = world > 1 && (!self.shuffle || shared.is_some());
        if !split {
            super::warn_if_unsharded(&self.param);
        }
        let (rank, world) = if split { (rank, world) } else { (0, 1) };
        self.world = world;
        let seed = match shared {
            _ if !self.shuffle => 0,
            Some(s) => s,
            None => draw_seed()?,
        };
        self.rng = StdRng::seed_from_u64(seed);
        self.file_order = (0..self.files.len()).collect();
        if self.shuffle {
            self.file_order.shuffle(&mut self.rng);
        }
        self.current_file = 0;
        self.item_shapes.clear();
        self.load_file(self.file_order[0])?;
        self.current_row = 0;
        if world > 1 {
            info!("hdf5_data_layer.cpp:1", "Rank {rank} of {world} reads every {world}th row from offset {rank}");
            for _ in 0..rank {
                self.advance()?;
            }
        }
        let current = self.current.as_ref().map(|f| &f.blobs[..]).unwrap_or(&[]);
        self.item_shapes = current.iter().map(|(item, _)| item.clone()).collect();
        let tops = self
            .item_shapes
            .iter()
            .map(|item| {
                let mut s = vec![self.batch_size as i64];
                s.extend_from_slice(item);
                s
            })
            .collect();
        Ok(SetupOut { tops, params: vec![] })
    }

    fn forward(&mut self, ctx: &Ctx, _bottoms: &[Tensor], _params: &[Tensor]) -> Result<Vec<Tensor>> {
        let item_sizes: Vec<usize> = self.item_shapes.iter().map(|s| s.iter().product::<i64>() as usize).collect();
        let mut out: Vec<Vec<f32>> = item_sizes.iter().map(|&n| Vec::with_capacity(n * self.batch_size)).collect();
        for _ in 0..self.batch_size {
            let Some(file) = self.current.as_ref() else { bail!("forward before setup") };
            let row = self.row_order[self.current_row];
            for (j, (_, values)) in file.blobs.iter().enumerate() {
                let n = item_sizes[j];
                out[j].extend_from_slice(&values[row * n..(row + 1) * n]);
            }
            for _ in 0..self.world {
                self.advance()?;
            }
        }
        let mut tops = Vec::with_capacity(out.len());
        for (values, item) in out.iter().zip(&self.item_shapes) {
            let mut shape = vec![self.batch_size as i64];
            shape.extend_from_slice(item);
            tops.push(Tensor::f_from_slice(values)?.f_view(shape.as_slice())?.f_to_device(ctx.device)?);
        }
        Ok(tops)
    }
}
