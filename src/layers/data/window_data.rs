//! Caffe's `WindowData` layer (R-CNN fine-tuning): batches of windows cut out
//! of images listed in a window file, each warped to crop_size×crop_size.
//!
//! Window file, whitespace-separated as Caffe reads it with `>>`, repeated per image:
//! `# image_index`, the image path (after `root_folder`), channels, height,
//! width, num_windows, then num_windows lines `class_index overlap x1 y1 x2 y2`
//! (inclusive pixel corners). A window with overlap ≥ fg_threshold is
//! foreground (its class must be > 0); one with overlap < bg_threshold is
//! background (label 0); the others are dropped.
//!
//! Each batch holds batch_size − ⌊batch_size·fg_fraction⌋ background windows
//! then ⌊batch_size·fg_fraction⌋ foreground ones, each drawn uniformly (with
//! replacement) from its list. A window is grown by context_pad (so that after
//! warping exactly context_pad pixels of context surround it; "square" mode
//! first makes it square), clipped to the image, resized bilinearly, mirrored
//! at random when `transform_param.mirror`, and placed where the unclipped
//! region would have fallen; the area outside the image stays 0 (not −mean).
//! Values are (pixel − mean)·scale, with the mean from `transform_param`
//! (mean_file indexed at its centre crop, or mean_value) and scale from
//! `window_data_param.scale`: Caffe reads that one here, and ignores
//! `transform_param.scale`.
//!
//! Images are always read as 3-channel BGR. `cache_images` keeps each file's
//! bytes in memory (read at setup) and decodes them per window, as Caffe does.
//! Sampling, decoding and warping run on the prefetch thread into plain
//! memory (see `Batch` in prefetch.rs).
use crate::{Error, Result};
use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use tch::Tensor;

use super::prefetch::{next_tops, Batch, BatchSource, Prefetcher};
use super::{check_tops, draw_seed, shape_text};
use crate::data::image::{self, ColorMode, Image};
use crate::data::transform::MeanImage;
use crate::layers::registry::{family_of, LayerInfo};
use crate::layers::{Ctx, Layer, SetupOut, Shape};
use crate::proto::caffe::LayerParameter;
use crate::{bail, info, warn};

pub fn register(r: &mut Vec<LayerInfo>) {
    r.push(LayerInfo {
        type_name: "WindowData",
        family: family_of(file!()),
        params: "window_data_param.source, root_folder, batch_size, fg_threshold, bg_threshold, fg_fraction, context_pad, crop_mode (warp, square), cache_images, scale; transform_param.crop_size (required), mirror, mean_file, mean_value",
        tests: "tests/window_data.rs (fg/bg counts and labels, warp geometry against a direct resize, context_pad placement, mean and scale, errors)",
        create: |p| Ok(Box::new(WindowDataLayer::new(p)?)),
    });
}

/// One image of the window file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WindowImage {
    /// The path as read (root_folder prepended).
    pub path: String,
    /// Channels, height, width as the file declares them (informational, as in Caffe).
    pub declared: [usize; 3],
}

/// One window: inclusive corners in image pixels.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Window {
    pub image: usize,
    pub label: i32,
    pub overlap: f32,
    pub x1: i32,
    pub y1: i32,
    pub x2: i32,
    pub y2: i32,
}

/// A parsed window file, windows split into foreground and background.
#[derive(Debug, Clone, Default)]
pub struct WindowFile {
    pub images: Vec<WindowImage>,
    pub fg: Vec<Window>,
    pub bg: Vec<Window>,
    /// Windows kept per class (0 = background), Caffe's label histogram.
    pub class_counts: BTreeMap<i32, usize>,
}

/// Reads a window file (see the module comment).
pub fn read_window_file(source: &str, root_folder: &str, fg_threshold: f32, bg_threshold: f32) -> Result<WindowFile> {
    let text = std::fs::read_to_string(source)
        .map_err(|e| Error::data(format!("window file '{source}': cannot read it: {e}")))?;
    // Caffe reads tokens with `>>`, so line breaks carry no meaning; keep line numbers for errors.
    let tokens: Vec<(usize, &str)> =
        text.lines().enumerate().flat_map(|(i, l)| l.split_whitespace().map(move |t| (i + 1, t))).collect();
    let mut pos = 0;
    let next_at = |pos: &mut usize, what: &str| -> Result<(usize, &str)> {
        let t = tokens
            .get(*pos)
            .copied()
            .ok_or_else(|| Error::data(format!("window file '{source}': ends where {what} was expected")))?;
        *pos += 1;
        Ok(t)
    };
    fn num<T: std::str::FromStr>(source: &str, (line, tok): (usize, &str), what: &str) -> Result<T> {
        tok.parse()
            .map_err(|_| Error::data(format!("window file '{source}' line {line}: expected {what}, found '{tok}'")))
    }
    let mut wf = WindowFile::default();
    wf.class_counts.insert(0, 0);
    let n_tokens = tokens.len();
    if n_tokens == 0 {
        return Err(Error::data(format!("window file '{source}' is empty")));
    }
    while pos < n_tokens {
        let (line, hash) = next_at(&mut pos, "'#'")?;
        if hash != "#" {
            return Err(Error::data(format!(
                "window file '{source}' line {line}: expected '# image_index', found '{hash}'"
            )));
        }
        let index: usize = num(source, next_at(&mut pos, "an image index")?, "an image index")?;
        // Caffe looks windows' images up by this number in file order, so it must count from 0.
        if index != wf.images.len() {
            return Err(Error::data(format!(
                "window file '{source}' line {line}: image index {index} out of sequence (expected {}; images are numbered 0, 1, 2, ... in file order)",
                wf.images.len()
            )));
        }
        let (_, path) = next_at(&mut pos, "an image path")?;
        let mut declared = [0usize; 3];
        for (d, what) in declared.iter_mut().zip(["channels", "height", "width"]) {
            *d = num(source, next_at(&mut pos, what)?, what)?;
        }
        if declared[0] != 3 {
            return Err(Error::data(format!(
                "window file '{source}' line {line}: image '{path}' declares {} channels; WindowData reads images as 3-channel colour",
                declared[0]
            )));
        }
        wf.images.push(WindowImage { path: format!("{root_folder}{path}"), declared });
        let num_windows: usize = num(source, next_at(&mut pos, "num_windows")?, "the number of windows")?;
        for _ in 0..num_windows {
            let t = next_at(&mut pos, "a window (class_index overlap x1 y1 x2 y2)")?;
            let wline = t.0;
            let label: i32 = num(source, t, "a class index")?;
            let overlap: f32 = num(source, next_at(&mut pos, "an overlap")?, "an overlap")?;
            let mut c = [0i32; 4];
            for (v, what) in c.iter_mut().zip(["x1", "y1", "x2", "y2"]) {
                *v = num(source, next_at(&mut pos, what)?, what)?;
            }
            let w = Window { image: index, label, overlap, x1: c[0], y1: c[1], x2: c[2], y2: c[3] };
            if overlap >= fg_threshold {
                if label <= 0 {
                    return Err(Error::data(format!(
                        "window file '{source}' line {wline}: a foreground window (overlap {overlap} ≥ fg_threshold {fg_threshold}) has class {label}; foreground classes must be > 0"
                    )));
                }
                wf.fg.push(w);
                *wf.class_counts.entry(label).or_insert(0) += 1;
            } else if overlap < bg_threshold {
                wf.bg.push(Window { label: 0, overlap: 0.0, ..w });
                *wf.class_counts.entry(0).or_insert(0) += 1;
            }
        }
        if index % 100 == 0 {
            info!(
                "window_data_layer.cpp:142",
                "num: {index} {}{path} {} {} {} windows to process: {num_windows}",
                root_folder,
                declared[0],
                declared[1],
                declared[2]
            );
        }
    }
    Ok(wf)
}

/// Where a window lands in the crop_size×crop_size output: the clipped source
/// region (inclusive corners), the size it is resized to, and its offset.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WarpPlan {
    pub x1: usize,
    pub y1: usize,
    pub x2: usize,
    pub y2: usize,
    pub out_height: usize,
    pub out_width: usize,
    pub pad_h: usize,
    pub pad_w: usize,
}

/// Caffe's window geometry. Arithmetic is in f32, with C's `round` (half away
/// from zero), so it picks the same pixels as Caffe's float net does.
pub fn plan_window(
    w: &Window,
    image_height: usize,
    image_width: usize,
    crop_size: usize,
    context_pad: usize,
    square: bool,
    mirror: bool,
) -> Result<WarpPlan> {
    let (rows, cols) = (image_height as i64, image_width as i64);
    let (mut x1, mut y1, mut x2, mut y2) = (w.x1 as i64, w.y1 as i64, w.x2 as i64, w.y2 as i64);
    let crop = crop_size as i64;
    let (mut out_h, mut out_w, mut pad_h, mut pad_w) = (crop, crop, 0i64, 0i64);
    if context_pad > 0 || square {
        let context_scale = crop_size as f32 / (crop_size as f32 - 2.0 * context_pad as f32);
        let mut half_height = ((y2 - y1 + 1) as f64 / 2.0) as f32;
        let mut half_width = ((x2 - x1 + 1) as f64 / 2.0) as f32;
        let center_x = x1 as f32 + half_width;
        let center_y = y1 as f32 + half_height;
        if square {
            let half = half_height.max(half_width);
            half_height = half;
            half_width = half;
        }
        x1 = (center_x - half_width * context_scale).round() as i64;
        x2 = (center_x + half_width * context_scale).round() as i64;
        y1 = (center_y - half_height * context_scale).round() as i64;
        y2 = (center_y + half_height * context_scale).round() as i64;
        let (unclipped_h, unclipped_w) = (y2 - y1 + 1, x2 - x1 + 1);
        let pad_x1 = (-x1).max(0);
        let pad_y1 = (-y1).max(0);
        let pad_x2 = (x2 - cols + 1).max(0);
        let pad_y2 = (y2 - rows + 1).max(0);
        x1 += pad_x1;
        x2 -= pad_x2;
        y1 += pad_y1;
        y2 -= pad_y2;
        if x2 < x1 || y2 < y1 || unclipped_h <= 0 || unclipped_w <= 0 {
            return Err(Error::data(format!(
                "window ({}, {}, {}, {}) lies outside the {image_width}×{image_height} image",
                w.x1, w.y1, w.x2, w.y2
            )));
        }
        let scale_x = crop_size as f32 / unclipped_w as f32;
        let scale_y = crop_size as f32 / unclipped_h as f32;
        let scaled = |v: i64, s: f32| (v as f32 * s).round() as i64;
        out_w = scaled(x2 - x1 + 1, scale_x);
        out_h = scaled(y2 - y1 + 1, scale_y);
        pad_h = scaled(pad_y1, scale_y);
        // A mirrored window mirrors its padding too.
        pad_w = if mirror { scaled(pad_x2, scale_x) } else { scaled(pad_x1, scale_x) };
        // Rounding may push the region past the crop: shrink it.
        out_h = out_h.min(crop - pad_h);
        out_w = out_w.min(crop - pad_w);
        if out_h <= 0 || out_w <= 0 {
            return Err(Error::data(format!(
                "window ({}, {}, {}, {}) keeps no pixels of the {image_width}×{image_height} image once warped to {crop_size}×{crop_size}",
                w.x1, w.y1, w.x2, w.y2
            )));
        }
    } else if x1 < 0 || y1 < 0 || x2 >= cols || y2 >= rows || x2 < x1 || y2 < y1 {
        return Err(Error::data(format!(
            "window ({}, {}, {}, {}) is not inside the {image_width}×{image_height} image (corners are inclusive, 0-based)",
            w.x1, w.y1, w.x2, w.y2
        )));
    }
    Ok(WarpPlan {
        x1: x1 as usize,
        y1: y1 as usize,
        x2: x2 as usize,
        y2: y2 as usize,
        out_height: out_h as usize,
        out_width: out_w as usize,
        pad_h: pad_h as usize,
        pad_w: pad_w as usize,
    })
}

/// The region `x1..=x2` × `y1..=y2` of an image (bounds already checked).
pub fn crop_region(img: &Image, x1: usize, y1: usize, x2: usize, y2: usize) -> Image {
    let (h, w) = (y2 - y1 + 1, x2 - x1 + 1);
    let mut data = Vec::with_capacity(img.channels * h * w);
    for c in 0..img.channels {
        for y in y1..=y2 {
            let row = (c * img.height + y) * img.width;
            data.extend_from_slice(&img.data[row + x1..row + x2 + 1]);
        }
    }
    Image { channels: img.channels, height: h, width: w, data }
}

/// How a window's pixels become values: (pixel − mean)·scale.
enum Mean {
    None,
    /// A mean image indexed at its centre crop (Caffe's offset uses the width for both axes).
    File {
        image: MeanImage,
        offset: usize,
    },
    /// One value per channel.
    Values(Vec<f32>),
}

struct WindowSource {
    source: String,
    file: Arc<WindowFile>,
    /// Encoded bytes per image when cache_images.
    cache: Option<Vec<Vec<u8>>>,
    batch_size: usize,
    num_fg: usize,
    crop_size: usize,
    context_pad: usize,
    square: bool,
    mirror: bool,
    scale: f32,
    mean: Mean,
    rng: StdRng,
}

impl WindowSource {
    fn load_image(&self, index: usize) -> Result<Image> {
        let path = &self.file.images[index].path;
        let where_ = || format!("window file '{}': image {index} '{path}'", self.source);
        match &self.cache {
            Some(bytes) => {
                image::decode(&bytes[index], ColorMode::Color).map_err(|e| Error::data(format!("{}: {e}", where_())))
            }
            None => {
                let bytes = std::fs::read(path)
                    .map_err(|e| Error::data(format!("{}: could not open or find the file: {e}", where_())))?;
                image::decode(&bytes, ColorMode::Color).map_err(|e| Error::data(format!("{}: {e}", where_())))
            }
        }
    }

    /// Warps one window into `out` (3×crop×crop, zeroed).
    fn fill(&mut self, w: &Window, do_mirror: bool, out: &mut [f32]) -> Result<()> {
        let img = self.load_image(w.image)?;
        let plan = plan_window(w, img.height, img.width, self.crop_size, self.context_pad, self.square, do_mirror)
            .map_err(|e| {
                Error::data(format!(
                    "window file '{}': image {} '{}': {e}",
                    self.source, w.image, self.file.images[w.image].path
                ))
            })?;
        let region = crop_region(&img, plan.x1, plan.y1, plan.x2, plan.y2);
        let warped = image::resize(&region, plan.out_height, plan.out_width);
        let crop = self.crop_size;
        let (oh, ow) = (plan.out_height, plan.out_width);
        for c in 0..warped.channels {
            for h in 0..oh {
                let src_row = &warped.data[(c * oh + h) * ow..(c * oh + h + 1) * ow];
                let y = h + plan.pad_h;
                for wi in 0..ow {
                    let pixel = if do_mirror { src_row[ow - 1 - wi] } else { src_row[wi] } as f32;
                    let x = wi + plan.pad_w;
                    let mean = match &self.mean {
                        Mean::None => 0.0,
                        Mean::File { image, offset } => {
                            image.data[(c * image.height + y + offset) * image.width + x + offset]
                        }
                        Mean::Values(v) => v[c],
                    };
                    out[(c * crop + y) * crop + x] = (pixel - mean) * self.scale;
                }
            }
        }
        Ok(())
    }
}

impl BatchSource for WindowSource {
    fn batch_shape(&mut self) -> Result<Shape> {
        let c = 3;
        Ok(vec![self.batch_size as i64, c, self.crop_size as i64, self.crop_size as i64])
    }

    fn load_batch(&mut self) -> Result<Batch> {
        let item = 3 * self.crop_size * self.crop_size;
        let mut data = vec![0f32; self.batch_size * item];
        let mut labels = Vec::with_capacity(self.batch_size);
        let file = Arc::clone(&self.file);
        // Background windows first, then foreground, as Caffe fills a batch.
        for i in 0..self.batch_size {
            let list = if i < self.batch_size - self.num_fg { &file.bg } else { &file.fg };
            let w = list[(self.rng.gen::<u32>() as usize) % list.len()];
            let do_mirror = self.mirror && self.rng.gen::<u32>() % 2 == 1;
            self.fill(&w, do_mirror, &mut data[i * item..(i + 1) * item])?;
            labels.push(w.label as f32);
        }
        Ok(Batch {
            shape: [self.batch_size as i64, 3, self.crop_size as i64, self.crop_size as i64],
            data,
            label: Some(labels),
            label_shape: None,
            extra: None,
        })
    }
}

/// Caffe's `WindowData` layer.
pub struct WindowDataLayer {
    param: LayerParameter,
    prefetch: Option<Prefetcher>,
}

impl WindowDataLayer {
    fn new(p: &LayerParameter) -> Result<Self> {
        Ok(WindowDataLayer { param: p.clone(), prefetch: None })
    }
}

impl Layer for WindowDataLayer {
    fn setup(&mut self, bottoms: &[Shape]) -> Result<SetupOut> {
        super::warn_if_unsharded(&self.param);
        if !bottoms.is_empty() {
            bail!("WindowData takes no bottom blobs, got {}", bottoms.len());
        }
        check_tops(&self.param, 2, 2)?;
        let wp = self.param.window_data_param.clone().unwrap_or_default();
        let tp = self.param.transform_param.clone().unwrap_or_default();
        let source = match &wp.source {
            Some(s) if !s.is_empty() => s.clone(),
            _ => bail!("window_data_param.source (the window file) is required"),
        };
        let batch_size = wp.batch_size() as usize;
        if batch_size == 0 {
            bail!("window_data_param.batch_size must be positive");
        }
        let crop_size = tp.crop_size() as usize;
        if crop_size == 0 {
            if wp.crop_size() > 0 {
                bail!(
                    "transform_param.crop_size must be positive (window_data_param.crop_size is deprecated: move it to transform_param)"
                );
            }
            bail!("transform_param.crop_size must be positive (the size windows are warped to)");
        }
        let context_pad = wp.context_pad() as usize;
        if 2 * context_pad >= crop_size {
            bail!("context_pad {context_pad} leaves no room in crop_size {crop_size} (need 2·context_pad < crop_size)");
        }
        let square = match wp.crop_mode() {
            "warp" => false,
            "square" => true,
            other => bail!("window_data_param.crop_mode '{other}' is not 'warp' or 'square'"),
        };
        let fg_fraction = wp.fg_fraction();
        if !(0.0..=1.0).contains(&fg_fraction) {
            bail!("window_data_param.fg_fraction {fg_fraction} is not in [0, 1]");
        }
        let (fg_threshold, bg_threshold) = (wp.fg_threshold(), wp.bg_threshold());
        info!(
            "window_data_layer.cpp:58",
            "Window data layer: foreground (object) overlap threshold: {fg_threshold}, background (non-object) overlap threshold: {bg_threshold}, foreground sampling fraction: {fg_fraction}, cache_images: {}, root_folder: {}",
            wp.cache_images() as i32,
            wp.root_folder()
        );
        let root = wp.root_folder().to_string();
        let file = read_window_file(&source, &root, fg_threshold, bg_threshold)?;
        info!("window_data_layer.cpp:153", "Number of images: {}", file.images.len());
        for (class, n) in &file.class_counts {
            info!("window_data_layer.cpp:157", "class {class} has {n} samples");
        }
        info!("window_data_layer.cpp:161", "Amount of context padding: {context_pad}");
        info!("window_data_layer.cpp:164", "Crop mode: {}", wp.crop_mode());

        let num_fg = (batch_size as f32 * fg_fraction) as usize;
        if num_fg > 0 && file.fg.is_empty() {
            bail!(
                "window file '{source}': no foreground windows (overlap ≥ {fg_threshold}) to fill {num_fg} per batch"
            );
        }
        if batch_size > num_fg && file.bg.is_empty() {
            bail!(
                "window file '{source}': no background windows (overlap < {bg_threshold}) to fill {} per batch",
                batch_size - num_fg
            );
        }
        // Fail at setup, not on the prefetch thread, when an image is missing.
        let mut cache = wp.cache_images().then(Vec::new);
        for (i, im) in file.images.iter().enumerate() {
            match &mut cache {
                Some(c) => c.push(std::fs::read(&im.path).map_err(|e| {
                    Error::Invalid(format!(
                        "window file '{source}': image {i} '{}': could not open or find the file: {e}",
                        im.path
                    ))
                })?),
                None => {
                    if !Path::new(&im.path).is_file() {
                        bail!("window file '{source}': image {i} '{}': could not open or find the file", im.path);
                    }
                }
            }
        }

        // Caffe reads these from transform_param only (the upgrade moves them for V1 nets).
        if wp.mean_file.is_some() || wp.mirror.is_some() {
            warn!(
                "window_data_layer.cpp:190",
                "window_data_param.mean_file and mirror are deprecated and ignored (as in Caffe); set them in transform_param"
            );
        }
        if tp.scale.is_some() && tp.scale() != 1.0 {
            warn!(
                "window_data_layer.cpp:190",
                "transform_param.scale {} is ignored by WindowData (as in Caffe); set window_data_param.scale",
                tp.scale()
            );
        }
        let mean = match &tp.mean_file {
            Some(f) => {
                if !tp.mean_value.is_empty() {
                    bail!("cannot specify mean_file and mean_value at the same time");
                }
                info!("window_data_layer.cpp:205", "Loading mean file from: {f}");
                let image = MeanImage::load(Path::new(f))?;
                let offset = image.width.saturating_sub(crop_size) / 2;
                if image.channels != 3 || image.width < crop_size || offset + crop_size > image.height {
                    bail!(
                        "mean_file '{f}' is {}×{}×{}; WindowData needs 3 channels and room for a centred {crop_size}×{crop_size} crop",
                        image.channels,
                        image.height,
                        image.width
                    );
                }
                Mean::File { image, offset }
            }
            None => match tp.mean_value.len() {
                0 => Mean::None,
                1 => Mean::Values(vec![tp.mean_value[0]; 3]),
                3 => Mean::Values(tp.mean_value.clone()),
                n => bail!("{n} mean_value(s) given for 3-channel windows (give 1, or 3)"),
            },
        };

        let src = WindowSource {
            source,
            file: Arc::new(file),
            cache,
            batch_size,
            num_fg,
            crop_size,
            context_pad,
            square,
            mirror: tp.mirror(),
            scale: wp.scale(),
            mean,
            rng: StdRng::seed_from_u64(draw_seed()?),
        };
        self.prefetch = None;
        let (prefetch, shape) = Prefetcher::start(self.param.name(), 4, move || Ok(src))?;
        info!("window_data_layer.cpp:175", "output data size: {}", shape_text(&shape));
        self.prefetch = Some(prefetch);
        Ok(SetupOut { tops: vec![shape, vec![batch_size as i64]], params: vec![] })
    }

    fn forward(&mut self, ctx: &Ctx, _bottoms: &[Tensor], _params: &[Tensor]) -> Result<Vec<Tensor>> {
        next_tops(&mut self.prefetch, ctx.device)
    }
}
