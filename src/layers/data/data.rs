//! Caffe's `Data` layer: Datum records from an LMDB or LevelDB, prefetched.
use crate::{Error, Result};
use std::path::PathBuf;

use tch::Tensor;

use super::prefetch::{next_tops, Batch, BatchBuilder, BatchSource, Prefetcher};
use super::{check_tops, draw_seed, shape_text};
use crate::data::datum::{self, Sample};
use crate::data::db::{key_display, Backend, RecordReader};
use crate::data::image::ColorMode;
use crate::data::transform::Transformer;
use crate::layers::registry::{family_of, LayerInfo};
use crate::layers::{Ctx, Layer, SetupOut, Shape};
use crate::proto::caffe::{LayerParameter, Phase};
use crate::{bail, info};

pub fn register(r: &mut Vec<LayerInfo>) {
    r.push(LayerInfo {
        type_name: "Data",
        family: family_of(file!()),
        params: "data_param.source, batch_size, backend (LEVELDB default, LMDB), rand_skip, prefetch; transform_param.scale, mean_file, mean_value, crop_size, mirror, force_color, force_gray",
        tests: "tests/data.rs (LeNet first batch equals Caffe's, errors, wrap-around)",
        create: |p| Ok(Box::new(DataLayer::new(p)?)),
    });
}

/// Reads Datum records from a DB, in key order, endlessly.
struct DbSource {
    reader: RecordReader,
    transformer: Transformer,
    color: ColorMode,
    batch_size: usize,
    labels: bool,
}

/// "source 'x' (lmdb): record 'k'": where a record error happened.
fn record_at(reader: &RecordReader) -> String {
    format!("source '{}' ({}): record '{}'", reader.source(), reader.backend().name(), key_display(reader.key()))
}

impl DbSource {
    fn current(&self) -> Result<Sample> {
        datum::parse_and_decode(self.reader.value(), self.color)
            .map_err(|e| Error::data(format!("{}: {e}", record_at(&self.reader))))
    }
}

impl BatchSource for DbSource {
    fn batch_shape(&mut self) -> Result<Shape> {
        let s = self.current()?;
        let [c, h, w] = self
            .transformer
            .output_shape(s.channels, s.height, s.width)
            .map_err(|e| Error::data(format!("{}: {e}", record_at(&self.reader))))?;
        Ok(vec![self.batch_size as i64, c as i64, h as i64, w as i64])
    }

    fn load_batch(&mut self) -> Result<Batch> {
        let mut builder: Option<BatchBuilder> = None;
        for i in 0..self.batch_size {
            let s = self.current()?;
            let b = match &mut builder {
                Some(b) => b,
                None => {
                    // Each batch takes its size from its first record, as Caffe does.
                    let shape = self
                        .transformer
                        .output_shape(s.channels, s.height, s.width)
                        .map_err(|e| Error::data(format!("{}: {e}", record_at(&self.reader))))?;
                    builder.insert(BatchBuilder::new(self.batch_size, shape))
                }
            };
            self.transformer
                .transform(&s, b.item(i))
                .map_err(|e| Error::data(format!("{}: {e}", record_at(&self.reader))))?;
            b.labels.push(s.label);
            self.reader.advance()?;
        }
        match builder {
            Some(b) => b.finish(self.labels),
            None => Err(Error::data("batch_size is 0")),
        }
    }
}

/// Caffe's `Data` layer.
pub struct DataLayer {
    param: LayerParameter,
    prefetch: Option<Prefetcher>,
}

impl DataLayer {
    fn new(p: &LayerParameter) -> Result<Self> {
        Ok(DataLayer { param: p.clone(), prefetch: None })
    }
}

impl Layer for DataLayer {
    fn setup(&mut self, bottoms: &[Shape]) -> Result<SetupOut> {
        if !bottoms.is_empty() {
            bail!("Data takes no bottom blobs, got {}", bottoms.len());
        }
        let n_tops = check_tops(&self.param, 1, 2)?;
        let dp = self.param.data_param.clone().unwrap_or_default();
        let source = match &dp.source {
            Some(s) if !s.is_empty() => PathBuf::from(s),
            _ => bail!("data_param.source is required"),
        };
        let batch_size = dp.batch_size() as usize;
        if batch_size == 0 {
            bail!("data_param.batch_size must be positive");
        }
        let phase = self.param.phase();
        let tp = self.param.transform_param.clone().unwrap_or_default();
        let seed = if Transformer::needs_rand(&tp, phase) { draw_seed()? } else { 0 };
        let transformer = Transformer::new(&tp, phase, seed)?;
        let color = transformer.color_mode();
        let skip = match dp.rand_skip() {
            0 => 0,
            n => {
                let k = draw_seed()? % n as u64;
                info!("data_layer.cpp:54", "Skipping first {k} data points.");
                k
            }
        };
        let backend = Backend::from_proto(dp.backend());
        // Each rank of a data-parallel run reads its share of the TRAIN
        // records; a TEST net (run by rank 0 alone) reads them all, as in Caffe.
        let (rank, world) = if phase == Phase::Train { crate::data::train_shard() } else { (0, 1) };
        self.prefetch = None;
        let (prefetch, shape) = Prefetcher::start(self.param.name(), dp.prefetch() as usize, move || {
            let mut reader = RecordReader::open(&source, backend)?;
            reader.skip(skip)?;
            if world > 1 {
                reader.shard(rank, world)?;
            }
            Ok(DbSource { reader, transformer, color, batch_size, labels: n_tops == 2 })
        })?;
        info!("data_layer.cpp:45", "output data size: {}", shape_text(&shape));
        self.prefetch = Some(prefetch);
        let mut tops = vec![shape];
        if n_tops == 2 {
            tops.push(vec![batch_size as i64]);
        }
        Ok(SetupOut { tops, params: vec![] })
    }

    fn forward(&mut self, ctx: &Ctx, _bottoms: &[Tensor], _params: &[Tensor]) -> Result<Vec<Tensor>> {
        next_tops(&mut self.prefetch, ctx.device)
    }
}
