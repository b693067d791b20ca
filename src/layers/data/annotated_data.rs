//! AnnotatedData (SSD fork): images with their boxes (AnnotatedDatum records
//! in an LMDB or LevelDB, as the fork's create_annoset.py writes them),
//! augmented as SSD trains (augment.rs), prefetched. The label top holds a
//! row [image, label, instance, xmin, ymin, xmax, ymax, difficult] per box
//! of the batch, as MultiBoxLoss reads it.
use std::path::{Path, PathBuf};

use prost::Message;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use tch::Tensor;

use super::augment::{self, Annotated, Object};
use super::prefetch::{next_tops, Batch, BatchSource, Prefetcher};
use super::{check_tops, draw_seed, shape_text};
use crate::data::datum::{self, color_mode, Values};
use crate::data::db::{key_display, Backend, RecordReader};
use crate::data::image::{self, ColorMode, Image};
use crate::data::transform::MeanImage;
use crate::layers::detection::bbox::BBox;
use crate::layers::registry::{family_of, LayerInfo};
use crate::layers::{Ctx, Layer, SetupOut, Shape};
use crate::proto::caffe::ssd_resize_parameter::ResizeMode;
use crate::proto::caffe::{AnnotatedDatum, BatchSampler, LayerParameter, Phase, TransformationParameter};
use crate::{bail, info, Error, Result};

pub fn register(r: &mut Vec<LayerInfo>) {
    r.push(LayerInfo {
        type_name: "AnnotatedData",
        family: family_of(file!()),
        params: "data_param.source, batch_size, backend, rand_skip, prefetch; annotated_data_param.batch_sampler \
                 (sampler, sample_constraint, max_sample, max_trials), anno_type; transform_param: scale, \
                 mean_value, mean_file, mirror, crop_size|crop_h/crop_w, force_color, force_gray, resize_param \
                 (WARP, FIT_SMALL_SIZE, FIT_LARGE_SIZE_AND_PAD; pad_mode, pad_value; interp_mode LINEAR, \
                 NEAREST, AREA, CUBIC, LANCZOS4), distort_param, expand_param, emit_constraint (noise_param and \
                 resize_param's height_scale/width_scale are refused) (SSD fork)",
        tests: "tests/annotated_data.rs (boxes through crops, expansion, mirror and resizes; distortion against \
                OpenCV's formulas; an encoded record's JPEG saves between steps; errors); tests/forks.rs (ssd_tiny \
                trains)",
        create: |p| Ok(Box::new(AnnotatedDataLayer { param: p.clone(), plan: None, prefetch: None })),
    });
}

/// What the prefetch thread needs to (re)start reading.
#[derive(Clone)]
struct ReadPlan {
    source: PathBuf,
    backend: Backend,
    transform: TransformationParameter,
    samplers: Vec<BatchSampler>,
    phase: Phase,
    seed: u64,
    skip: u64,
    rank: usize,
    world: usize,
    batch_size: usize,
    /// None: no label top; Some(false): the Datum's label per image; Some(true): boxes.
    labels: Option<bool>,
    depth: usize,
}

/// "source 'x' (lmdb): record 'k'".
fn record_at(reader: &RecordReader) -> String {
    format!("source '{}' ({}): record '{}'", reader.source(), reader.backend().name(), key_display(reader.key()))
}

/// One AnnotatedDatum read: its image and boxes, the Datum's label, whether
/// it names an annotation type, and whether its image is an encoded file.
struct Record {
    annotated: Annotated,
    label: f32,
    has_type: bool,
    encoded: bool,
}

/// Reads one AnnotatedDatum: its image (8-bit) and its boxes in order of
/// group, then annotation; the Datum's label.
fn parse_record(bytes: &[u8], color: ColorMode) -> Result<Record> {
    let record = AnnotatedDatum::decode(bytes).map_err(|e| {
        Error::data(format!("not a valid AnnotatedDatum (truncated or corrupt record, {} bytes): {e}", bytes.len()))
    })?;
    let has_type = record.r#type.is_some();
    let Some(d) = record.datum else { bail!("the AnnotatedDatum holds no datum (image)") };
    let encoded = d.encoded();
    let sample = datum::decode(d, color)?;
    let Values::U8(data) = sample.values else {
        bail!("AnnotatedData needs 8-bit images (the record holds float_data)");
    };
    let image = Image { channels: sample.channels, height: sample.height, width: sample.width, data };
    let mut objects = Vec::new();
    for g in &record.annotation_group {
        for a in &g.annotation {
            let b = a.bbox.unwrap_or_default();
            let corners = [b.xmin(), b.ymin(), b.xmax(), b.ymax()];
            if corners.iter().any(|v| !v.is_finite()) {
                bail!("box {corners:?} of label {} is not four finite numbers", g.group_label());
            }
            objects.push(Object {
                label: g.group_label(),
                instance: a.instance_id(),
                bbox: BBox::from_slice(&corners),
                difficult: b.difficult(),
            });
        }
    }
    Ok(Record { annotated: Annotated { image, objects }, label: sample.label, has_type, encoded })
}

/// Reads AnnotatedDatum records in key order, endlessly.
struct AnnotatedSource {
    reader: RecordReader,
    plan: ReadPlan,
    rng: StdRng,
    color: ColorMode,
    mean: Option<MeanImage>,
    /// C×H×W of every image in a batch (from the first record).
    item: Option<[usize; 3]>,
}

impl AnnotatedSource {
    fn crop_hw(&self) -> (usize, usize) {
        let t = &self.plan.transform;
        match t.crop_size() {
            0 => (t.crop_h() as usize, t.crop_w() as usize),
            c => (c as usize, c as usize),
        }
    }

    /// The fork's InferBlobShape for an image.
    fn item_shape(&self, img: &Image) -> Result<[usize; 3]> {
        let (mut h, mut w) = (img.height, img.width);
        if let Some(r) = &self.plan.transform.resize_param {
            (h, w) = augment::resized_size(r, h, w);
        }
        let (ch, cw) = self.crop_hw();
        if h < ch || w < cw {
            bail!("the crop ({ch}×{cw}) is larger than the {h}×{w} image");
        }
        Ok([img.channels, if ch > 0 { ch } else { h }, if cw > 0 { cw } else { w }])
    }

    /// One record through the whole augmentation; its pixels into `out`,
    /// its boxes returned. For an encoded record the fork saves the image as a
    /// JPEG after each step that changed it (distortion, expansion, the sampled
    /// crop) and decodes it again for the next: so does this, with OpenCV's
    /// encoder and decoder (`data::jpeg`), so the pixels carry the same loss.
    fn transform(&mut self, a: Annotated, encoded: bool, out: &mut Vec<f32>) -> Result<Vec<Object>> {
        let t = self.plan.transform.clone();
        let mut a = a;
        let color = self.color;
        let resave = |img: &mut Image| -> Result<()> {
            if encoded {
                *img = image::decode(&image::encode(img, "jpg")?, color)?;
            }
            Ok(())
        };
        if let Some(p) = &t.distort_param {
            augment::distort(&mut a.image, p, &mut self.rng)?;
            resave(&mut a.image)?;
        }
        if let Some(p) = &t.expand_param {
            if let Some(expanded) = augment::expand(&a, p, &t.mean_value, &mut self.rng)? {
                a = expanded;
                resave(&mut a.image)?;
            }
        }
        if !self.plan.samplers.is_empty() {
            let samples = augment::batch_samples(&a.objects, &self.plan.samplers, &mut self.rng);
            if !samples.is_empty() {
                let pick = (self.rng.gen::<u32>() as usize) % samples.len();
                a = augment::crop(&a, &samples[pick], t.emit_constraint.as_ref());
                if a.image.height > 0 && a.image.width > 0 {
                    resave(&mut a.image)?;
                }
            }
        }
        if a.image.height == 0 || a.image.width == 0 {
            bail!("a crop left no pixel of the {} image", shape_text(&[a.image.channels as i64, 0, 0]));
        }
        let mirror = t.mirror() && self.rng.gen::<u32>() % 2 == 1;
        let (h0, w0) = (a.image.height, a.image.width);
        let img = match &t.resize_param {
            Some(r) => augment::resize(&a.image, r, &mut self.rng)?,
            None => a.image,
        };
        let [c, h, w] = self.item_shape(&img)?;
        let Some(item) = self.item else { bail!("the batch shape is not known") };
        if [c, h, w] != item {
            bail!(
                "this image gives a {c}×{h}×{w} item but the batch's first gave {}×{}×{} (images in one batch must \
                 share a size: give transform_param a resize_param or a crop)",
                item[0],
                item[1],
                item[2]
            );
        }
        let (ch, cw) = self.crop_hw();
        let (mut h_off, mut w_off) = (0, 0);
        if ch > 0 && cw > 0 {
            if self.plan.phase == Phase::Train {
                h_off = (self.rng.gen::<u32>() as usize) % (img.height - ch + 1);
                w_off = (self.rng.gen::<u32>() as usize) % (img.width - cw + 1);
            } else {
                h_off = (img.height - ch) / 2;
                w_off = (img.width - cw) / 2;
            }
        }
        let window = BBox::new(
            w_off as f32 / img.width as f32,
            h_off as f32 / img.height as f32,
            (w_off + w) as f32 / img.width as f32,
            (h_off + h) as f32 / img.height as f32,
        );
        if let Some(m) = &self.mean {
            if (m.channels, m.height, m.width) != (c, img.height, img.width) {
                bail!(
                    "the image is {c}×{}×{} after resizing but mean_file '{}' is {}×{}×{}",
                    img.height,
                    img.width,
                    m.file,
                    m.channels,
                    m.height,
                    m.width
                );
            }
        }
        let means = &t.mean_value;
        if means.len() > 1 && means.len() != c {
            bail!("Specify either 1 mean_value or as many as channels: {c} (got {})", means.len());
        }
        let scale = t.scale();
        for ch_i in 0..c {
            for y in 0..h {
                let src = (ch_i * img.height + h_off + y) * img.width + w_off;
                let start = out.len();
                for x in 0..w {
                    let px = img.data[src + x] as f32;
                    let v = match (&self.mean, means.len()) {
                        (Some(m), _) => px - m.data[src + x],
                        (None, 0) => px,
                        (None, 1) => px - means[0],
                        (None, _) => px - means[ch_i],
                    };
                    out.push(v * scale);
                }
                if mirror {
                    out[start..].reverse();
                }
            }
        }
        let resize = t.resize_param.as_ref().map(|r| (r, w0, h0));
        Ok(augment::final_boxes(&a.objects, resize, &window, t.emit_constraint.as_ref(), mirror))
    }

    fn current(&self) -> Result<Record> {
        parse_record(self.reader.value(), self.color)
            .map_err(|e| Error::data(format!("{}: {e}", record_at(&self.reader))))
    }
}

impl BatchSource for AnnotatedSource {
    fn batch_shape(&mut self) -> Result<Shape> {
        let a = self.current()?.annotated;
        let item = self.item_shape(&a.image).map_err(|e| Error::data(format!("{}: {e}", record_at(&self.reader))))?;
        self.item = Some(item);
        Ok(vec![self.plan.batch_size as i64, item[0] as i64, item[1] as i64, item[2] as i64])
    }

    fn load_batch(&mut self) -> Result<Batch> {
        let n = self.plan.batch_size;
        let mut data = Vec::new();
        let mut labels = Vec::new();
        let mut rows: Vec<f32> = Vec::new();
        for i in 0..n {
            let Record { annotated: a, label, encoded, .. } = self.current()?;
            if self.item.is_none()
                || self
                    .plan
                    .transform
                    .resize_param
                    .as_ref()
                    .is_some_and(|r| r.resize_mode() == ResizeMode::FitSmallSize)
            {
                self.item = Some(self.item_shape(&a.image)?);
            }
            let objects = self
                .transform(a, encoded, &mut data)
                .map_err(|e| Error::data(format!("{}: {e}", record_at(&self.reader))))?;
            labels.push(label);
            for o in objects {
                let b = o.bbox;
                rows.extend([
                    i as f32,
                    o.label as f32,
                    o.instance as f32,
                    b.xmin,
                    b.ymin,
                    b.xmax,
                    b.ymax,
                    o.difficult as u8 as f32,
                ]);
            }
            self.reader.advance()?;
        }
        let Some([c, h, w]) = self.item else { bail!("batch_size is 0") };
        let shape = [n as i64, c as i64, h as i64, w as i64];
        Ok(match self.plan.labels {
            None => Batch { shape, data, label: None, label_shape: None, extra: None },
            Some(false) => Batch { shape, data, label: Some(labels), label_shape: None, extra: None },
            Some(true) => {
                if rows.is_empty() {
                    rows = vec![-1.0; 8];
                }
                let count = (rows.len() / 8) as i64;
                Batch { shape, data, label: Some(rows), label_shape: Some(vec![1, 1, count, 8]), extra: None }
            }
        })
    }
}

/// The SSD fork's `AnnotatedData` layer.
pub struct AnnotatedDataLayer {
    param: LayerParameter,
    plan: Option<ReadPlan>,
    prefetch: Option<Prefetcher>,
}

/// Refuses what is not done, and checks the ranges the fork checks when it draws.
fn check_transform(t: &TransformationParameter, batch_size: usize) -> Result<()> {
    if let Some(n) = &t.noise_param {
        if n.prob() > 0.0 {
            bail!("transform_param.noise_param (OpenCV's noise effects) is not supported; give it prob 0 or remove it");
        }
    }
    if let Some(r) = &t.resize_param {
        augment::check_resize(r, None)?;
        if r.height_scale() > 0 || r.width_scale() > 0 {
            bail!("resize_param's height_scale and width_scale are not supported");
        }
        if r.resize_mode() == ResizeMode::FitSmallSize && batch_size != 1 {
            bail!("Only support batch size of 1 for FIT_SMALL_SIZE (batch_size is {batch_size})");
        }
    }
    if let Some(d) = &t.distort_param {
        augment::check_distortion(d)?;
    }
    if t.expand_param.is_some() && t.mean_file.is_some() {
        bail!("expand_param fills the canvas with mean_value; with mean_file it is not supported");
    }
    if t.expand_param.as_ref().is_some_and(|e| !(e.max_expand_ratio() >= 1.0 && e.max_expand_ratio().is_finite())) {
        bail!("expand_param.max_expand_ratio must be a finite number of at least 1");
    }
    if t.mean_file.is_some() && !t.mean_value.is_empty() {
        bail!("cannot specify mean_file and mean_value at the same time");
    }
    Ok(())
}

impl AnnotatedDataLayer {
    fn start(&mut self, batches: u64) -> Result<Shape> {
        let Some(plan) = self.plan.clone() else { bail!("the data layer was not set up") };
        self.prefetch = None;
        let color = color_mode(plan.transform.force_color(), plan.transform.force_gray())?;
        let mean = match &plan.transform.mean_file {
            Some(f) => Some(MeanImage::load(Path::new(f))?),
            None => None,
        };
        let (prefetch, shape) = Prefetcher::start(self.param.name(), plan.depth, move || {
            let mut reader = RecordReader::open(&plan.source, plan.backend)?;
            reader.skip(plan.skip)?;
            if plan.world > 1 {
                reader.shard(plan.rank, plan.world)?;
            }
            reader.skip(batches.saturating_mul(plan.batch_size as u64))?;
            let rng = StdRng::seed_from_u64(plan.seed.wrapping_add(batches));
            Ok(AnnotatedSource { reader, plan, rng, color, mean, item: None })
        })?;
        self.prefetch = Some(prefetch);
        Ok(shape)
    }
}

impl Layer for AnnotatedDataLayer {
    fn setup(&mut self, bottoms: &[Shape]) -> Result<SetupOut> {
        if !bottoms.is_empty() {
            bail!("AnnotatedData takes no bottom blobs, got {}", bottoms.len());
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
        check_transform(&transform, batch_size)?;
        let ap = self.param.annotated_data_param.clone().unwrap_or_default();
        for (i, s) in ap.batch_sampler.iter().enumerate() {
            augment::check_sampler(s, i)?;
        }
        let seed = draw_seed()?;
        let skip = match dp.rand_skip() {
            0 => 0,
            n => {
                let k = draw_seed()? % n as u64;
                info!("annotated_data_layer.cpp:1", "Skipping first {k} data points.");
                k
            }
        };
        let backend = Backend::from_proto(dp.backend());
        // Whether the records carry boxes: the first record's type, or the parameter's.
        let labels = if n_tops == 2 {
            let mut reader = RecordReader::open(&source, backend)?;
            reader.skip(skip)?;
            let record = parse_record(reader.value(), ColorMode::Native)
                .map_err(|e| Error::data(format!("{}: {e}", record_at(&reader))))?;
            Some(record.has_type || ap.anno_type.is_some())
        } else {
            None
        };
        let (rank, world) = if phase == Phase::Train { crate::data::train_shard() } else { (0, 1) };
        self.plan = Some(ReadPlan {
            source,
            backend,
            transform,
            samplers: ap.batch_sampler.clone(),
            phase,
            seed,
            skip,
            rank,
            world,
            batch_size,
            labels,
            depth: dp.prefetch() as usize,
        });
        let shape = self.start(0)?;
        info!("annotated_data_layer.cpp:1", "output data size: {}", shape_text(&shape));
        let mut tops = vec![shape];
        match labels {
            Some(true) => tops.push(vec![1, 1, 1, 8]),
            Some(false) => tops.push(vec![batch_size as i64]),
            None => {}
        }
        Ok(SetupOut { tops, params: vec![] })
    }

    fn skip_to_batch(&mut self, batches: u64) -> Result<()> {
        let Some(plan) = &self.plan else { bail!("the data layer was not set up") };
        if plan.phase != Phase::Train {
            return Ok(());
        }
        self.start(batches).map(|_| ())
    }

    fn forward(&mut self, ctx: &Ctx, _bottoms: &[Tensor], _params: &[Tensor]) -> Result<Vec<Tensor>> {
        next_tops(&mut self.prefetch, ctx.device)
    }
}
