//! DeepLab v2's `ImageSegData` (deeplab-public-ver2): images and their label
//! images named in a list file, transformed together (random rescale,
//! padding, crop and mirror apply to both), prefetched. Tops: data (N × C ×
//! H × W), label (N × 1 × H × W, the label image's values) and data_dim (N ×
//! 1 × 1 × 2, each image's height and width within the batch).
use std::path::Path;

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use tch::Tensor;

use super::image_list::{ListOrder, ListParams};
use super::prefetch::{next_tops, Batch, BatchSource, Prefetcher};
use super::{check_tops, draw_seed, shape_text};
use crate::data::image::{self, Image};
use crate::layers::registry::{family_of, LayerInfo};
use crate::layers::{Ctx, Layer, SetupOut, Shape};
use crate::proto::caffe::image_data_parameter::LabelType;
use crate::proto::caffe::{LayerParameter, Phase};
use crate::{bail, info, Error, Result};

pub fn register(r: &mut Vec<LayerInfo>) {
    r.push(LayerInfo {
        type_name: "ImageSegData",
        family: family_of(file!()),
        params: "image_data_param.source, root_folder, batch_size, new_height, new_width, is_color, shuffle, \
                 rand_skip, label_type (NONE, IMAGE, PIXEL), ignore_label; transform_param.mirror, crop_size or \
                 crop_height + crop_width, mean_value, scale, scale_factors (DeepLab v2's fork); tops: data, label, \
                 data_dim",
        tests: "tests/data.rs: image_seg_data_* (pixels and labels through rescale, padding, crop and mirror, \
                data_dim, the label types, errors)",
        create: |p| Ok(Box::new(ImageSegDataLayer::new(p)?)),
    });
}

/// DeepLab's TransformImgAndSeg settings.
struct SegTransform {
    /// Crop (height, width); None keeps the whole image.
    crop: Option<(usize, usize)>,
    mirror: bool,
    scale: f32,
    mean: Vec<f32>,
    scale_factors: Vec<f32>,
    ignore_label: i32,
    train: bool,
}

/// Nearest-neighbour resize with OpenCV's INTER_NEAREST geometry (source
/// pixel floor(d · src / dst)), for label images.
fn resize_nearest(img: &Image, height: usize, width: usize) -> Image {
    let pick = |dst: usize, src: usize| -> Vec<usize> {
        let ratio = src as f64 / dst as f64;
        (0..dst).map(|d| ((d as f64 * ratio).floor() as usize).min(src - 1)).collect()
    };
    let (ys, xs) = (pick(height, img.height), pick(width, img.width));
    let mut data = Vec::with_capacity(img.channels * height * width);
    for c in 0..img.channels {
        for &y in &ys {
            let row = &img.data[(c * img.height + y) * img.width..(c * img.height + y + 1) * img.width];
            data.extend(xs.iter().map(|&x| row[x]));
        }
    }
    Image { channels: img.channels, height, width, data }
}

impl SegTransform {
    /// The item's (channels, height, width) for an image of this size.
    fn output_shape(&self, channels: usize, height: usize, width: usize) -> [usize; 3] {
        match self.crop {
            Some((h, w)) => [channels, h, w],
            None => [channels, height, width],
        }
    }

    /// Transforms an image and its label image (same size) into `data` and
    /// `label`, in the fork's order of random draws: mirror, scale, crop.
    fn apply(&self, rng: &mut StdRng, img: &Image, seg: &Image, data: &mut [f32], label: &mut [f32]) -> Result<()> {
        if (img.height, img.width) != (seg.height, seg.width) {
            bail!(
                "the label image is {}×{}, the image {}×{}: they must have the same size",
                seg.width,
                seg.height,
                img.width,
                img.height
            );
        }
        let do_mirror = self.mirror && rng.gen::<u32>() % 2 == 1;
        let (mut img, mut seg) = (img.clone(), seg.clone());
        if !self.scale_factors.is_empty() {
            let factor = self.scale_factors[(rng.gen::<u32>() as usize) % self.scale_factors.len()];
            if factor != 1.0 {
                // The fork scales its int sizes in float and truncates.
                let h = (img.height as f32 * factor) as usize;
                let w = (img.width as f32 * factor) as usize;
                if h == 0 || w == 0 {
                    bail!("scale factor {factor} leaves a {}×{} image without pixels", img.width, img.height);
                }
                let what = format!("a {}×{} image scaled by {factor}", img.width, img.height);
                crate::util::limits::checked_count(&[img.channels as i64, h as i64, w as i64], 4, &what)?;
                img = image::resize(&img, h, w);
                seg = resize_nearest(&seg, h, w);
            }
        }
        let [channels, out_h, out_w] = self.output_shape(img.channels, img.height, img.width);
        if data.len() != channels * out_h * out_w || label.len() != out_h * out_w {
            bail!(
                "this {}×{}×{} image gives {channels}×{out_h}×{out_w} values but the batch holds {} per item (without \
                 a crop, images in one batch must share a size)",
                img.channels,
                img.height,
                img.width,
                data.len()
            );
        }
        // Pad the bottom and right up to the crop: the image with the mean
        // (0 once subtracted), the label with ignore_label.
        let (padded_h, padded_w) = (img.height.max(out_h), img.width.max(out_w));
        let (h_off, w_off) = match self.crop {
            Some((ch, cw)) if self.train => {
                ((rng.gen::<u32>() as usize) % (padded_h - ch + 1), (rng.gen::<u32>() as usize) % (padded_w - cw + 1))
            }
            Some((ch, cw)) => ((padded_h - ch) / 2, (padded_w - cw) / 2),
            None => (0, 0),
        };
        for y in 0..out_h {
            let sy = y + h_off;
            for x in 0..out_w {
                let sx = x + w_off;
                let tx = if do_mirror { out_w - 1 - x } else { x };
                let inside = sy < img.height && sx < img.width;
                for c in 0..channels {
                    let mean = self.mean.get(c).or(self.mean.first()).copied().unwrap_or(0.0);
                    let pixel = if inside { img.data[(c * img.height + sy) * img.width + sx] as f32 } else { mean };
                    data[(c * out_h + y) * out_w + tx] = (pixel - mean) * self.scale;
                }
                label[y * out_w + tx] =
                    if inside { seg.data[sy * seg.width + sx] as f32 } else { self.ignore_label as f32 };
            }
        }
        Ok(())
    }
}

struct SegListSource {
    list: String,
    root: String,
    /// Its rng also draws the transform's random choices, as the fork's does.
    order: ListOrder<(String, String)>,
    new_size: (usize, usize),
    is_color: bool,
    label_type: LabelType,
    transform: SegTransform,
    batch_size: usize,
}

impl SegListSource {
    /// The current image and its label image.
    fn current(&self) -> Result<(Image, Image)> {
        let (file, second) = self.order.current();
        let (nh, nw) = self.new_size;
        let at = |what: &str, e: Error| {
            Error::data(format!("source '{}' (line {}): could not load {what}: {e}", self.list, self.order.pos + 1))
        };
        let path = format!("{}{}", self.root, file);
        let img = image::read_file(Path::new(&path), nh, nw, self.is_color).map_err(|e| at(&format!("'{file}'"), e))?;
        let filled = |v: i32| Image {
            channels: 1,
            height: img.height,
            width: img.width,
            data: vec![v.clamp(0, 255) as u8; img.height * img.width],
        };
        let seg = match self.label_type {
            LabelType::Pixel => {
                let path = format!("{}{}", self.root, second);
                // The fork reads the label image resized as the image is (bilinear).
                image::read_file(Path::new(&path), nh, nw, false).map_err(|e| at(&format!("label '{second}'"), e))?
            }
            LabelType::Image => filled(crate::data::image::atoi(second)),
            LabelType::None => filled(self.transform.ignore_label),
        };
        Ok((img, seg))
    }
}

impl BatchSource for SegListSource {
    fn batch_shape(&mut self) -> Result<Shape> {
        let (img, _) = self.current()?;
        let [c, h, w] = self.transform.output_shape(img.channels, img.height, img.width);
        let shape = vec![self.batch_size as i64, c as i64, h as i64, w as i64];
        crate::util::limits::checked_count(&shape, 4, &format!("layer data of source '{}'", self.list))?;
        Ok(shape)
    }

    fn load_batch(&mut self) -> Result<Batch> {
        let mut shape: Option<[usize; 3]> = None;
        let (mut data, mut labels, mut dims) = (Vec::new(), Vec::new(), Vec::with_capacity(2 * self.batch_size));
        for i in 0..self.batch_size {
            let (img, seg) = self.current()?;
            let [c, h, w] = *shape.get_or_insert_with(|| {
                let s = self.transform.output_shape(img.channels, img.height, img.width);
                data = vec![0.0; self.batch_size * s.iter().product::<usize>()];
                labels = vec![0.0; self.batch_size * s[1] * s[2]];
                s
            });
            let item = c * h * w;
            // Fields apart: the transform draws from the order's rng.
            let (list, file) = (&self.list, &self.order.entries[self.order.pos].0);
            self.transform
                .apply(
                    &mut self.order.rng,
                    &img,
                    &seg,
                    &mut data[i * item..(i + 1) * item],
                    &mut labels[i * h * w..(i + 1) * h * w],
                )
                .map_err(|e| Error::data(format!("source '{list}': '{file}': {e}")))?;
            // The size it was read at, within the batch's.
            dims.extend([img.height.min(h) as f32, img.width.min(w) as f32]);
            self.order.step();
        }
        let Some([c, h, w]) = shape else { return Err(Error::data("batch_size is 0")) };
        let n = self.batch_size as i64;
        Ok(Batch {
            shape: [n, c as i64, h as i64, w as i64],
            data,
            label: Some(labels),
            label_shape: Some(vec![n, 1, h as i64, w as i64]),
            extra: Some((dims, vec![n, 1, 1, 2])),
        })
    }
}

/// DeepLab v2's `ImageSegData` layer.
pub struct ImageSegDataLayer {
    param: LayerParameter,
    prefetch: Option<Prefetcher>,
}

impl ImageSegDataLayer {
    fn new(p: &LayerParameter) -> Result<Self> {
        Ok(ImageSegDataLayer { param: p.clone(), prefetch: None })
    }
}

impl Layer for ImageSegDataLayer {
    fn setup(&mut self, bottoms: &[Shape]) -> Result<SetupOut> {
        if !bottoms.is_empty() {
            bail!("ImageSegData takes no bottom blobs, got {}", bottoms.len());
        }
        check_tops(&self.param, 3, 3)?;
        let ip = self.param.image_data_param.clone().unwrap_or_default();
        let tp = self.param.transform_param.clone().unwrap_or_default();
        let ListParams { list, batch_size, new_size } = ListParams::read(&ip)?;
        if tp.mean_file.is_some() {
            bail!("ImageSegData does not support mean_file (give mean_value)");
        }
        let crop = match (tp.crop_size(), tp.crop_height(), tp.crop_width()) {
            (0, 0, 0) => None,
            (s, 0, 0) => Some((s as usize, s as usize)),
            (0, h, w) if h > 0 && w > 0 => Some((h as usize, w as usize)),
            _ => bail!("give either crop_size or both crop_height and crop_width"),
        };
        if let Some(f) = tp.scale_factors.iter().find(|f| !(f.is_finite() && **f > 0.0)) {
            bail!("transform_param.scale_factors must be positive, got {f}");
        }
        if crop.is_none() && tp.scale_factors.iter().any(|&f| f != 1.0) {
            bail!("transform_param.scale_factors need a crop (crop_size, or crop_height and crop_width): the batch's size is fixed");
        }
        info!("image_seg_data_layer.cpp:44", "Opening file {list}");
        let text = std::fs::read_to_string(&list).map_err(|e| Error::data(format!("image list '{list}': {e}")))?;
        let label_type = ip.label_type();
        // The first word is the image; the second the label (image), unless NONE.
        let mut lines: Vec<(String, String)> = Vec::new();
        for (k, line) in text.lines().enumerate() {
            let mut words = line.split_whitespace();
            let Some(first) = words.next() else { continue };
            let second = words.next().unwrap_or("");
            if label_type != LabelType::None && second.is_empty() {
                bail!("source '{list}' line {}: '{line}' names no label (label_type {label_type:?})", k + 1);
            }
            lines.push((first.to_string(), second.to_string()));
        }
        super::warn_if_unsharded(&self.param);
        let phase = self.param.phase();
        let rng = StdRng::seed_from_u64(draw_seed()?);
        let (order, skipped) = ListOrder::start(lines, ip.shuffle(), ip.rand_skip(), rng, &list)?;
        if ip.shuffle() {
            info!("image_seg_data_layer.cpp:61", "Shuffling data");
        }
        info!("image_seg_data_layer.cpp:66", "A total of {} images.", order.entries.len());
        if let Some(skip) = skipped {
            info!("image_seg_data_layer.cpp:72", "Skipping first {skip} data points.");
        }
        let transform = SegTransform {
            crop,
            mirror: tp.mirror(),
            scale: tp.scale(),
            mean: tp.mean_value.clone(),
            scale_factors: tp.scale_factors.clone(),
            ignore_label: ip.ignore_label(),
            train: phase == Phase::Train,
        };
        let source = SegListSource {
            list,
            root: ip.root_folder().to_string(),
            order,
            new_size,
            is_color: ip.is_color(),
            label_type,
            transform,
            batch_size,
        };
        self.prefetch = None;
        let (prefetch, shape) = Prefetcher::start(self.param.name(), 4, move || Ok(source))?;
        let label_shape = vec![shape[0], 1, shape[2], shape[3]];
        info!("image_seg_data_layer.cpp:134", "output data size: {}", shape_text(&shape));
        info!("image_seg_data_layer.cpp:138", "output label size: {}", shape_text(&label_shape));
        info!("image_seg_data_layer.cpp:142", "output data_dim size: {},1,1,2", batch_size);
        self.prefetch = Some(prefetch);
        Ok(SetupOut { tops: vec![shape, label_shape, vec![batch_size as i64, 1, 1, 2]], params: vec![] })
    }

    fn forward(&mut self, ctx: &Ctx, _bottoms: &[Tensor], _params: &[Tensor]) -> Result<Vec<Tensor>> {
        next_tops(&mut self.prefetch, ctx.device)
    }
}
