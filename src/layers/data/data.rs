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
use crate::proto::caffe::{LayerParameter, Phase, TransformationParameter};
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
    plan: Option<ReadPlan>,
    prefetch: Option<Prefetcher>,
}

/// What the prefetch thread needs to (re)start reading: fixed at setup, so a
/// restart at another batch reads as the first start would have.
#[derive(Clone)]
struct ReadPlan {
    source: PathBuf,
    backend: Backend,
    transform: TransformationParameter,
    phase: Phase,
    transform_seed: u64,
    /// rand_skip's draw, in records from the first.
    skip: u64,
    /// This process's share of the records: offset % world == rank.
    rank: usize,
    world: usize,
    batch_size: usize,
    labels: bool,
    depth: usize,
}

impl DataLayer {
    fn new(p: &LayerParameter) -> Result<Self> {
        Ok(DataLayer { param: p.clone(), plan: None, prefetch: None })
    }

    /// Starts the prefetch thread with `batches` batches already read.
    fn start(&mut self, batches: u64) -> Result<Shape> {
        let Some(plan) = self.plan.clone() else { bail!("the data layer was not set up") };
        self.prefetch = None;
        let transformer = Transformer::new(&plan.transform, plan.phase, plan.transform_seed)?;
        let color = transformer.color_mode();
        let (prefetch, shape) = Prefetcher::start(self.param.name(), plan.depth, move || {
            let mut reader = RecordReader::open(&plan.source, plan.backend)?;
            reader.skip(plan.skip)?;
            if plan.world > 1 {
                reader.shard(plan.rank, plan.world)?;
            }
            reader.skip(batches.saturating_mul(plan.batch_size as u64))?;
            Ok(DbSource { reader, transformer, color, batch_size: plan.batch_size, labels: plan.labels })
        })?;
        self.prefetch = Some(prefetch);
        Ok(shape)
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
        let transform = self.param.transform_param.clone().unwrap_or_default();
        let transform_seed = if Transformer::needs_rand(&transform, phase) { draw_seed()? } else { 0 };
        let skip = match dp.rand_skip() {
            0 => 0,
            n => {
                let k = draw_seed()? % n as u64;
                info!("data_layer.cpp:54", "Skipping first {k} data points.");
                k
            }
        };
        // Each rank of a data-parallel run reads its share of the TRAIN
        // records; a TEST net (run by rank 0 alone) reads them all, as in Caffe.
        let (rank, world) = if phase == Phase::Train { crate::data::train_shard() } else { (0, 1) };
        self.plan = Some(ReadPlan {
            source,
            backend: Backend::from_proto(dp.backend()),
            transform,
            phase,
            transform_seed,
            skip,
            rank,
            world,
            batch_size,
            labels: n_tops == 2,
            depth: dp.prefetch() as usize,
        });
        let shape = self.start(0)?;
        info!("data_layer.cpp:45", "output data size: {}", shape_text(&shape));
        let mut tops = vec![shape];
        if n_tops == 2 {
            tops.push(vec![batch_size as i64]);
        }
        Ok(SetupOut { tops, params: vec![] })
    }

    /// Reads on from where `batches` batches since setup would have left this
    /// rank: its share of the records, from the start, skipped by that many
    /// batches, so a resumed run reads what an uninterrupted run of its own
    /// size and batch reads from there.
    fn skip_to_batch(&mut self, batches: u64) -> Result<()> {
        let Some(plan) = &self.plan else { bail!("the data layer was not set up") };
        if plan.phase != Phase::Train {
            return Ok(());
        }
        let share = if plan.world > 1 { format!(" of this rank's share (1 in {})", plan.world) } else { String::new() };
        info!(
            "data_layer.cpp:1",
            "{}: resuming after {batches} batches of {}{share}",
            self.param.name(),
            plan.batch_size
        );
        self.start(batches).map(|_| ())
    }

    fn forward(&mut self, ctx: &Ctx, _bottoms: &[Tensor], _params: &[Tensor]) -> Result<Vec<Tensor>> {
        next_tops(&mut self.prefetch, ctx.device)
    }
}
