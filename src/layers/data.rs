//! Data layers: Data (LMDB/LevelDB of Datum), ImageData (a list of image
//! files), MemoryData (arrays fed by the caller) and DummyData (fillers).
//!
//! Data and ImageData read, decode and transform on a background thread into
//! a bounded queue of `DataParameter.prefetch` batches (Caffe's
//! BasePrefetchingDataLayer), so the training thread only moves finished
//! batches to the device. Random choices (crop, mirror, rand_skip, shuffle)
//! use generators seeded from libtorch's global generator when the layer is
//! set up, which the solver seeds with its `random_seed`.
//!
//! HDF5Data/HDF5Output live in hdf5.rs; WindowData (window_data.rs) reuses the
//! prefetching machinery below.
use crate::{Error, Result};
use std::path::{Path, PathBuf};
use std::sync::mpsc::{sync_channel, Receiver};
use std::thread::JoinHandle;

use rand::rngs::StdRng;
use rand::seq::SliceRandom;
use rand::SeedableRng;
use tch::{Device, Kind, Tensor};

use super::{filler, Ctx, Layer, SetupOut, Shape};
use crate::data::datum::{self, Sample};
use crate::data::db::{key_display, Backend, RecordReader};
use crate::data::image::{self, ColorMode};
use crate::data::transform::Transformer;
use crate::layers::registry::{family_of, LayerInfo};
use crate::proto::caffe::{FillerParameter, LayerParameter, TransformationParameter};
use crate::{bail, info};

pub fn register(r: &mut Vec<LayerInfo>) {
    r.push(LayerInfo {
        type_name: "Data",
        family: family_of(file!()),
        params: "data_param.source, batch_size, backend (LEVELDB default, LMDB), rand_skip, prefetch; transform_param.scale, mean_file, mean_value, crop_size, mirror, force_color, force_gray",
        tests: "tests/data.rs (LeNet first batch equals Caffe's, errors, wrap-around)",
        create: |p| Ok(Box::new(DataLayer::new(p)?)),
    });
    r.push(LayerInfo {
        type_name: "ImageData",
        family: family_of(file!()),
        params: "image_data_param.source, root_folder, batch_size, new_height, new_width, is_color, shuffle, rand_skip; transform_param",
        tests: "tests/data.rs",
        create: |p| Ok(Box::new(ImageDataLayer::new(p)?)),
    });
    r.push(LayerInfo {
        type_name: "MemoryData",
        family: family_of(file!()),
        params:
            "memory_data_param.batch_size, channels, height, width (fed by Net::set_input_arrays / Layer::set_input)",
        tests: "tests/data.rs",
        create: |p| Ok(Box::new(MemoryDataLayer::new(p)?)),
    });
    r.push(LayerInfo {
        type_name: "DummyData",
        family: family_of(file!()),
        params: "dummy_data_param.shape or num/channels/height/width, data_filler (one, or one per top)",
        tests: "tests/data.rs",
        create: |p| Ok(Box::new(DummyDataLayer::new(p)?)),
    });
}

/// A seed for a layer's own generator, drawn from libtorch's global one so the
/// solver's `random_seed` fixes it.
pub(super) fn draw_seed() -> u64 {
    match Tensor::f_randint(i64::MAX, [1], (Kind::Int64, Device::Cpu)) {
        Ok(t) => t.int64_value(&[0]) as u64,
        Err(_) => 0x5eed,
    }
}

// ------------------------------------------------------------------ prefetching

/// One batch as the prefetch thread hands it over (CPU tensors).
/// A batch as plain memory. Tensors are made on the training thread: a libtorch
/// copy on the prefetch thread would start a second OpenMP team that fights the
/// training thread's for the cores (measured: LeNet steps 1.6× slower).
pub(super) struct Batch {
    pub(super) shape: [i64; 4],
    pub(super) data: Vec<f32>,
    pub(super) label: Option<Vec<f32>>,
}

/// What a prefetch thread reads from.
pub(super) trait BatchSource {
    /// The top shape of a batch (from the first record), without consuming it.
    fn batch_shape(&mut self) -> Result<Shape>;
    fn load_batch(&mut self) -> Result<Batch>;
}

/// A background thread filling a bounded queue of batches.
pub(super) struct Prefetcher {
    rx: Option<Receiver<Result<Batch>>>,
    worker: Option<JoinHandle<()>>,
    failure: Option<String>,
}

impl Prefetcher {
    /// Starts the thread; `make` opens the source there (DB handles stay on
    /// the thread that uses them). Returns once the first batch's shape is known.
    pub(super) fn start<S, F>(name: &str, depth: usize, make: F) -> Result<(Prefetcher, Shape)>
    where
        S: BatchSource,
        F: FnOnce() -> Result<S> + Send + 'static,
    {
        let (ready_tx, ready_rx) = sync_channel::<Result<Shape>>(1);
        let (tx, rx) = sync_channel::<Result<Batch>>(depth.max(1));
        let worker = std::thread::Builder::new()
            .name(format!("prefetch {name}"))
            .spawn(move || {
                let mut source = match make() {
                    Ok(s) => s,
                    Err(e) => {
                        let _ = ready_tx.send(Err(e));
                        return;
                    }
                };
                match source.batch_shape() {
                    Ok(shape) => {
                        if ready_tx.send(Ok(shape)).is_err() {
                            return;
                        }
                    }
                    Err(e) => {
                        let _ = ready_tx.send(Err(e));
                        return;
                    }
                }
                drop(ready_tx);
                loop {
                    let batch = source.load_batch();
                    let failed = batch.is_err();
                    // A closed queue means the layer is gone: stop.
                    if tx.send(batch).is_err() || failed {
                        return;
                    }
                }
            })
            .map_err(|e| Error::data(format!("cannot start the prefetch thread: {e}")))?;
        let shape = match ready_rx.recv() {
            Ok(r) => r,
            Err(_) => Err(Error::data("the prefetch thread stopped before reading the first record")),
        };
        let mut p = Prefetcher { rx: Some(rx), worker: Some(worker), failure: None };
        match shape {
            Ok(s) => Ok((p, s)),
            Err(e) => {
                p.stop();
                Err(e)
            }
        }
    }

    pub(super) fn next(&mut self) -> Result<Batch> {
        if let Some(f) = &self.failure {
            return Err(Error::data(f.clone()));
        }
        let Some(rx) = &self.rx else { return Err(Error::data("the data layer was not set up")) };
        match rx.recv() {
            Ok(Ok(b)) => Ok(b),
            Ok(Err(e)) => {
                self.failure = Some(e.to_string());
                Err(e)
            }
            Err(_) => Err(Error::data("the prefetch thread stopped")),
        }
    }

    fn stop(&mut self) {
        // Closing the queue wakes a thread blocked on a full queue; it then exits.
        self.rx = None;
        if let Some(w) = self.worker.take() {
            let _ = w.join();
        }
    }
}

impl Drop for Prefetcher {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Fills a batch buffer item by item; the first item fixes the item size.
struct BatchBuilder {
    batch_size: usize,
    item_shape: [usize; 3],
    data: Vec<f32>,
    labels: Vec<f32>,
}

impl BatchBuilder {
    fn new(batch_size: usize, item_shape: [usize; 3]) -> BatchBuilder {
        let n = item_shape.iter().product::<usize>();
        BatchBuilder { batch_size, item_shape, data: vec![0.0; batch_size * n], labels: Vec::with_capacity(batch_size) }
    }
    fn item(&mut self, i: usize) -> &mut [f32] {
        let n = self.item_shape.iter().product::<usize>();
        &mut self.data[i * n..(i + 1) * n]
    }
    fn finish(self, with_labels: bool) -> Result<Batch> {
        let [c, h, w] = self.item_shape;
        let shape = [self.batch_size as i64, c as i64, h as i64, w as i64];
        Ok(Batch { shape, data: self.data, label: with_labels.then_some(self.labels) })
    }
}

pub(super) fn batch_tops(batch: Batch, device: Device) -> Result<Vec<Tensor>> {
    let data = Tensor::f_from_slice(&batch.data)?.f_view(batch.shape)?;
    let mut tops = vec![to_net_device(data, device)?];
    if let Some(l) = batch.label {
        tops.push(to_net_device(Tensor::f_from_slice(&l)?, device)?);
    }
    Ok(tops)
}

/// The next prefetched batch as tops on `device` (the forward of every
/// prefetching data layer).
pub(super) fn next_tops(prefetch: &mut Option<Prefetcher>, device: Device) -> Result<Vec<Tensor>> {
    let Some(p) = prefetch.as_mut() else { bail!("forward before setup") };
    batch_tops(p.next()?, device)
}

/// Moves a host batch to the net's device. For CUDA the batch goes through
/// pinned (page-locked) memory so the copy is a fast, asynchronous DMA.
fn to_net_device(t: Tensor, device: Device) -> Result<Tensor> {
    match device {
        Device::Cpu => Ok(t),
        Device::Cuda(_) => {
            // `_pin_memory`, not `pin_memory`: tch always passes a device, and
            // libtorch's `pin_memory(device)` logs a deprecation warning on every
            // call (two lines per batch in the training log). The batch is a fresh
            // host tensor, so the is-it-pinned-already check would be wasted anyway.
            let pinned = t.f_internal_pin_memory(device)?;
            Ok(pinned.f_to_device_(device, pinned.kind(), true, false)?)
        }
        other => Ok(t.f_to_device(other)?),
    }
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

// ------------------------------------------------------------------------ Data

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
        let seed = if Transformer::needs_rand(&tp, phase) { draw_seed() } else { 0 };
        let transformer = Transformer::new(&tp, phase, seed)?;
        let color = transformer.color_mode();
        let skip = match dp.rand_skip() {
            0 => 0,
            n => {
                let k = draw_seed() % n as u64;
                info!("data_layer.cpp:54", "Skipping first {k} data points.");
                k
            }
        };
        let backend = Backend::from_proto(dp.backend());
        self.prefetch = None;
        let (prefetch, shape) = Prefetcher::start(self.param.name(), dp.prefetch() as usize, move || {
            let mut reader = RecordReader::open(&source, backend)?;
            reader.skip(skip)?;
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

// ------------------------------------------------------------------- ImageData

struct ImageListSource {
    list: String,
    root: String,
    lines: Vec<(String, i32)>,
    pos: usize,
    shuffle: bool,
    rng: StdRng,
    new_height: usize,
    new_width: usize,
    is_color: bool,
    transformer: Transformer,
    batch_size: usize,
}

impl ImageListSource {
    fn current(&self) -> Result<Sample> {
        let (file, label) = &self.lines[self.pos];
        let path = format!("{}{}", self.root, file);
        let img = image::read_file(Path::new(&path), self.new_height, self.new_width, self.is_color).map_err(|e| {
            Error::data(format!("source '{}' (line {}): could not load '{file}': {e}", self.list, self.pos + 1))
        })?;
        Ok(Sample::from_image(img, *label as f32))
    }

    fn advance(&mut self) {
        self.pos += 1;
        if self.pos >= self.lines.len() {
            self.pos = 0;
            if self.shuffle {
                self.lines.shuffle(&mut self.rng);
            }
        }
    }

    fn shape_of(&self, s: &Sample) -> Result<[usize; 3]> {
        self.transformer
            .output_shape(s.channels, s.height, s.width)
            .map_err(|e| Error::data(format!("source '{}': '{}': {e}", self.list, self.lines[self.pos].0)))
    }
}

impl BatchSource for ImageListSource {
    fn batch_shape(&mut self) -> Result<Shape> {
        let s = self.current()?;
        let [c, h, w] = self.shape_of(&s)?;
        Ok(vec![self.batch_size as i64, c as i64, h as i64, w as i64])
    }

    fn load_batch(&mut self) -> Result<Batch> {
        let mut builder: Option<BatchBuilder> = None;
        for i in 0..self.batch_size {
            let s = self.current()?;
            let b = match &mut builder {
                Some(b) => b,
                None => builder.insert(BatchBuilder::new(self.batch_size, self.shape_of(&s)?)),
            };
            let (list, file) = (&self.list, &self.lines[self.pos].0);
            self.transformer
                .transform(&s, b.item(i))
                .map_err(|e| Error::data(format!("source '{list}': '{file}': {e}")))?;
            b.labels.push(s.label);
            self.advance();
        }
        match builder {
            Some(b) => b.finish(true),
            None => Err(Error::data("batch_size is 0")),
        }
    }
}

/// Caffe's `ImageData` layer: images named in a list file, with labels.
pub struct ImageDataLayer {
    param: LayerParameter,
    prefetch: Option<Prefetcher>,
}

impl ImageDataLayer {
    fn new(p: &LayerParameter) -> Result<Self> {
        Ok(ImageDataLayer { param: p.clone(), prefetch: None })
    }
}

impl Layer for ImageDataLayer {
    fn setup(&mut self, bottoms: &[Shape]) -> Result<SetupOut> {
        if !bottoms.is_empty() {
            bail!("ImageData takes no bottom blobs, got {}", bottoms.len());
        }
        check_tops(&self.param, 2, 2)?;
        let ip = self.param.image_data_param.clone().unwrap_or_default();
        let (new_height, new_width) = (ip.new_height() as usize, ip.new_width() as usize);
        if (new_height == 0) != (new_width == 0) {
            bail!("new_height and new_width must be set together");
        }
        let list = match &ip.source {
            Some(s) if !s.is_empty() => s.clone(),
            _ => bail!("image_data_param.source is required"),
        };
        let batch_size = ip.batch_size() as usize;
        if batch_size == 0 {
            bail!("image_data_param.batch_size must be positive");
        }
        info!("image_data_layer.cpp:38", "Opening file {list}");
        let mut lines = crate::data::image::read_image_list(Path::new(&list))?;
        if lines.is_empty() {
            bail!("source '{list}': the image list is empty");
        }
        let phase = self.param.phase();
        let mut rng = StdRng::seed_from_u64(if ip.shuffle() { draw_seed() } else { 0 });
        if ip.shuffle() {
            info!("image_data_layer.cpp:51", "Shuffling data");
            lines.shuffle(&mut rng);
        }
        info!("image_data_layer.cpp:56", "A total of {} images.", lines.len());
        let mut pos = 0;
        if ip.rand_skip() > 0 {
            let skip = (draw_seed() % ip.rand_skip() as u64) as usize;
            info!("image_data_layer.cpp:62", "Skipping first {skip} data points.");
            if skip >= lines.len() {
                bail!("source '{list}': not enough images ({}) to skip {skip}", lines.len());
            }
            pos = skip;
        }
        let tp: TransformationParameter = self.param.transform_param.clone().unwrap_or_default();
        let seed = if Transformer::needs_rand(&tp, phase) { draw_seed() } else { 0 };
        let transformer = Transformer::new(&tp, phase, seed)?;
        let source = ImageListSource {
            list,
            root: ip.root_folder().to_string(),
            lines,
            pos,
            shuffle: ip.shuffle(),
            rng,
            new_height,
            new_width,
            is_color: ip.is_color(),
            transformer,
            batch_size,
        };
        self.prefetch = None;
        let (prefetch, shape) = Prefetcher::start(self.param.name(), 4, move || Ok(source))?;
        info!("image_data_layer.cpp:85", "output data size: {}", shape_text(&shape));
        self.prefetch = Some(prefetch);
        Ok(SetupOut { tops: vec![shape, vec![batch_size as i64]], params: vec![] })
    }

    fn forward(&mut self, ctx: &Ctx, _bottoms: &[Tensor], _params: &[Tensor]) -> Result<Vec<Tensor>> {
        next_tops(&mut self.prefetch, ctx.device)
    }
}

// ------------------------------------------------------------------ MemoryData

/// Caffe's `MemoryData` layer: serves batches from arrays the caller sets
/// (data N×C×H×W and labels N, N a multiple of batch_size), cycling through them.
pub struct MemoryDataLayer {
    batch_size: i64,
    item: [i64; 3],
    data: Option<Tensor>,
    labels: Option<Tensor>,
    pos: i64,
}

impl MemoryDataLayer {
    fn new(p: &LayerParameter) -> Result<Self> {
        let mp = p.memory_data_param.unwrap_or_default();
        let dims = [mp.batch_size() as i64, mp.channels() as i64, mp.height() as i64, mp.width() as i64];
        if dims.iter().any(|&d| d <= 0) {
            bail!(
                "memory_data_param batch_size, channels, height and width must all be given and positive, got {dims:?}"
            );
        }
        Ok(MemoryDataLayer { batch_size: dims[0], item: [dims[1], dims[2], dims[3]], data: None, labels: None, pos: 0 })
    }
}

impl Layer for MemoryDataLayer {
    fn setup(&mut self, bottoms: &[Shape]) -> Result<SetupOut> {
        if !bottoms.is_empty() {
            bail!("MemoryData takes no bottom blobs, got {}", bottoms.len());
        }
        let [c, h, w] = self.item;
        Ok(SetupOut { tops: vec![vec![self.batch_size, c, h, w], vec![self.batch_size]], params: vec![] })
    }

    fn forward(&mut self, ctx: &Ctx, _bottoms: &[Tensor], _params: &[Tensor]) -> Result<Vec<Tensor>> {
        let (Some(data), Some(labels)) = (&self.data, &self.labels) else {
            bail!("MemoryData needs its data and labels set before forward (Net::set_input_arrays)");
        };
        let n = data.size()[0];
        if labels.size()[0] != n {
            bail!("MemoryData has {n} data items but {} labels", labels.size()[0]);
        }
        let d = data.f_narrow(0, self.pos, self.batch_size)?.f_to_device(ctx.device)?;
        let l = labels.f_narrow(0, self.pos, self.batch_size)?.f_to_device(ctx.device)?;
        self.pos = (self.pos + self.batch_size) % n;
        Ok(vec![d, l])
    }

    /// Top 0: data (N×C×H×W); top 1: labels (N values). N must be a multiple of batch_size.
    fn set_input(&mut self, top: usize, value: Tensor) -> Result<()> {
        let size = value.size();
        let n = size.first().copied().unwrap_or(0);
        if n == 0 || n % self.batch_size != 0 {
            bail!("MemoryData input has {n} items; it must be a positive multiple of batch_size {}", self.batch_size);
        }
        let value = value.f_to_kind(Kind::Float)?.detach();
        match top {
            0 => {
                let [c, h, w] = self.item;
                if size.len() != 4 || size[1..] != [c, h, w] {
                    bail!("MemoryData data must be N×{c}×{h}×{w}, got {size:?}");
                }
                self.data = Some(value);
            }
            1 => {
                let count: i64 = size.iter().product();
                if count != n {
                    bail!("MemoryData labels must hold one value per item, got shape {size:?}");
                }
                self.labels = Some(value.f_reshape([n])?);
            }
            _ => bail!("MemoryData has 2 tops (data, label), not top {top}"),
        }
        // New arrays restart from their first item, as Caffe's Reset does.
        self.pos = 0;
        Ok(())
    }
}

// ------------------------------------------------------------------- DummyData

/// Caffe's `DummyData` layer: tops filled by fillers; constant tops are filled
/// once, the others again on every forward.
pub struct DummyDataLayer {
    param: LayerParameter,
    shapes: Vec<Shape>,
    fillers: Vec<FillerParameter>,
    cached: Vec<Option<Tensor>>,
}

impl DummyDataLayer {
    fn new(p: &LayerParameter) -> Result<Self> {
        Ok(DummyDataLayer { param: p.clone(), shapes: vec![], fillers: vec![], cached: vec![] })
    }
}

impl Layer for DummyDataLayer {
    fn setup(&mut self, bottoms: &[Shape]) -> Result<SetupOut> {
        if !bottoms.is_empty() {
            bail!("DummyData takes no bottom blobs, got {}", bottoms.len());
        }
        let n = self.param.top.len();
        if n == 0 {
            bail!("DummyData needs at least one top");
        }
        let dp = self.param.dummy_data_param.clone().unwrap_or_default();
        let one_or_each = |what: &str, len: usize| -> Result<()> {
            if len != 1 && len != n {
                bail!("dummy_data_param.{what} must be given once or once per top ({n}), got {len}");
            }
            Ok(())
        };
        self.fillers = match dp.data_filler.len() {
            0 => vec![filler::constant(0.0); n],
            1 => vec![dp.data_filler[0].clone(); n],
            k if k == n => dp.data_filler.clone(),
            k => bail!("dummy_data_param.data_filler must be given 0, 1 or {n} (one per top) times, got {k}"),
        };
        let legacy = !dp.num.is_empty() || !dp.channels.is_empty() || !dp.height.is_empty() || !dp.width.is_empty();
        let pick = |v: &[u32], i: usize| -> i64 {
            if v.len() == 1 {
                v[0] as i64
            } else {
                v[i] as i64
            }
        };
        self.shapes = if legacy {
            if !dp.shape.is_empty() {
                bail!("dummy_data_param gives both shape and the legacy num/channels/height/width");
            }
            one_or_each("num", dp.num.len())?;
            one_or_each("channels", dp.channels.len())?;
            one_or_each("height", dp.height.len())?;
            one_or_each("width", dp.width.len())?;
            (0..n)
                .map(|i| vec![pick(&dp.num, i), pick(&dp.channels, i), pick(&dp.height, i), pick(&dp.width, i)])
                .collect()
        } else {
            one_or_each("shape", dp.shape.len())?;
            (0..n).map(|i| dp.shape[if dp.shape.len() == 1 { 0 } else { i }].dim.clone()).collect()
        };
        if let Some(s) = self.shapes.iter().find(|s| s.iter().any(|&d| d < 0)) {
            bail!("DummyData shape {s:?} has a negative dimension");
        }
        self.cached = (0..n).map(|_| None).collect();
        Ok(SetupOut { tops: self.shapes.clone(), params: vec![] })
    }

    fn forward(&mut self, ctx: &Ctx, _bottoms: &[Tensor], _params: &[Tensor]) -> Result<Vec<Tensor>> {
        let mut tops = Vec::with_capacity(self.shapes.len());
        for i in 0..self.shapes.len() {
            if let Some(t) = &self.cached[i] {
                if t.device() == ctx.device {
                    tops.push(t.shallow_clone());
                    continue;
                }
            }
            let t = filler::fill(&self.fillers[i], &self.shapes[i], ctx.device)?;
            if self.fillers[i].r#type() == "constant" {
                self.cached[i] = Some(t.shallow_clone());
            }
            tops.push(t);
        }
        Ok(tops)
    }
}
