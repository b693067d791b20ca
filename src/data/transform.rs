//! Caffe's `DataTransformer`: out = (x − mean)·scale, with an optional square
//! crop (random in TRAIN, centred in TEST) and a random horizontal mirror
//! (in both phases, as Caffe does when `mirror: true`).
//!
//! The mean is a `mean_file` (a BlobProto the size of the uncropped image,
//! indexed at the crop offset) or `mean_value`s (one, or one per channel),
//! never both. Random draws come from the transformer's own generator, seeded
//! by the caller (from the solver's `random_seed`), in Caffe's order: mirror
//! first, then the crop's row, then its column.
use std::path::Path;

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use super::datum::{color_mode, Sample, Values};
use super::image::ColorMode;
use crate::proto::binary;
use crate::proto::caffe::{BlobProto, Phase, TransformationParameter};
use crate::{info, Error, Result};

/// A mean image from a `.binaryproto`.
#[derive(Debug, Clone)]
pub struct MeanImage {
    pub file: String,
    pub channels: usize,
    pub height: usize,
    pub width: usize,
    pub data: Vec<f32>,
}

impl MeanImage {
    /// Reads a mean file: a BlobProto of shape 1×C×H×W (Caffe's legacy fields or `shape`), or C×H×W.
    pub fn load(path: &Path) -> Result<MeanImage> {
        let file = path.display().to_string();
        let blob: BlobProto = binary::read_message(path).map_err(|e| Error::data(format!("mean_file {e}")))?;
        binary::check_blob(&blob, path, "mean blob").map_err(|e| Error::data(format!("mean_file {e}")))?;
        let shape = binary::blob_shape(&blob);
        let (c, h, w) = match shape.as_slice() {
            [_, c, h, w] | [c, h, w] => (*c, *h, *w),
            other => {
                return Err(Error::data(format!("mean_file '{file}': a mean blob is 1×C×H×W, got shape {other:?}")))
            }
        };
        if c <= 0 || h <= 0 || w <= 0 {
            return Err(Error::data(format!("mean_file '{file}': empty mean blob of shape {shape:?}")));
        }
        let (channels, height, width) = (c as usize, h as usize, w as usize);
        let mut data = binary::blob_data_f32(&blob);
        data.truncate(channels * height * width);
        Ok(MeanImage { file, channels, height, width, data })
    }
}

pub struct Transformer {
    phase: Phase,
    scale: f32,
    mirror: bool,
    crop_size: usize,
    mean: Option<MeanImage>,
    mean_values: Vec<f32>,
    color: ColorMode,
    rng: StdRng,
}

impl Transformer {
    /// Whether this parameter set draws random numbers in `phase` (Caffe seeds
    /// a generator only then, so only then should a caller draw a seed).
    pub fn needs_rand(p: &TransformationParameter, phase: Phase) -> bool {
        p.mirror() || (phase == Phase::Train && p.crop_size() > 0)
    }

    /// Builds the transformer, reading `mean_file` if given.
    pub fn new(p: &TransformationParameter, phase: Phase, seed: u64) -> Result<Transformer> {
        let mean = match &p.mean_file {
            Some(f) => {
                if !p.mean_value.is_empty() {
                    return Err(Error::data("cannot specify mean_file and mean_value at the same time"));
                }
                info!("data_transformer.cpp:25", "Loading mean file from: {f}");
                Some(MeanImage::load(Path::new(f))?)
            }
            None => None,
        };
        Ok(Transformer {
            phase,
            scale: p.scale(),
            mirror: p.mirror(),
            crop_size: p.crop_size() as usize,
            mean,
            mean_values: p.mean_value.clone(),
            color: color_mode(p.force_color(), p.force_gray())?,
            rng: StdRng::seed_from_u64(seed),
        })
    }

    /// How encoded records decode (`force_color` / `force_gray`).
    pub fn color_mode(&self) -> ColorMode {
        self.color
    }

    pub fn mean(&self) -> Option<&MeanImage> {
        self.mean.as_ref()
    }

    /// The C×H×W shape a `channels`×`height`×`width` input transforms to,
    /// after checking it against the crop and the mean.
    pub fn output_shape(&self, channels: usize, height: usize, width: usize) -> Result<[usize; 3]> {
        if channels == 0 {
            return Err(Error::data("the image has no channels"));
        }
        let crop = self.crop_size;
        if crop > 0 && (height < crop || width < crop) {
            return Err(Error::data(format!("crop_size {crop} is larger than the {height}×{width} image")));
        }
        if let Some(m) = &self.mean {
            if (m.channels, m.height, m.width) != (channels, height, width) {
                return Err(Error::data(format!(
                    "the image is {channels}×{height}×{width} but mean_file '{}' is {}×{}×{} (channels×height×width must match)",
                    m.file, m.channels, m.height, m.width
                )));
            }
        }
        let n = self.mean_values.len();
        if n > 1 && n != channels {
            return Err(Error::data(format!(
                "{n} mean_value(s) given for a {channels}-channel image (give 1, or one per channel)"
            )));
        }
        Ok(if crop > 0 { [channels, crop, crop] } else { [channels, height, width] })
    }

    /// A draw in [0, n), as Caffe's `Rand(n)`.
    fn rand(&mut self, n: usize) -> usize {
        (self.rng.gen::<u32>() as usize) % n
    }

    /// Transforms one sample into `out` (its C×H'×W' floats).
    pub fn transform(&mut self, s: &Sample, out: &mut [f32]) -> Result<()> {
        let [c_out, h_out, w_out] = self.output_shape(s.channels, s.height, s.width)?;
        if out.len() != c_out * h_out * w_out {
            return Err(Error::data(format!(
                "this {}×{}×{} image gives {c_out}×{h_out}×{w_out} values but the batch holds {} per item (images in one batch must share a size)",
                s.channels,
                s.height,
                s.width,
                out.len()
            )));
        }
        let do_mirror = self.mirror && self.rand(2) != 0;
        let (mut h_off, mut w_off) = (0, 0);
        if self.crop_size > 0 {
            if self.phase == Phase::Train {
                h_off = self.rand(s.height - self.crop_size + 1);
                w_off = self.rand(s.width - self.crop_size + 1);
            } else {
                h_off = (s.height - self.crop_size) / 2;
                w_off = (s.width - self.crop_size) / 2;
            }
        }
        let scale = self.scale;
        let (height, width) = (s.height, s.width);
        let mut row = vec![0f32; w_out];
        for c in 0..c_out {
            let channel_mean = match self.mean_values.len() {
                0 => None,
                1 => Some(self.mean_values[0]),
                _ => Some(self.mean_values[c]),
            };
            for h in 0..h_out {
                let src = (c * height + h_off + h) * width + w_off;
                // One row: convert, subtract the mean, scale, in tight loops.
                match &s.values {
                    Values::U8(v) => row.iter_mut().zip(&v[src..src + w_out]).for_each(|(r, &x)| *r = x as f32),
                    Values::F32(v) => row.copy_from_slice(&v[src..src + w_out]),
                }
                if let Some(m) = &self.mean {
                    row.iter_mut().zip(&m.data[src..src + w_out]).for_each(|(r, &m)| *r = (*r - m) * scale);
                } else if let Some(m) = channel_mean {
                    row.iter_mut().for_each(|r| *r = (*r - m) * scale);
                } else {
                    row.iter_mut().for_each(|r| *r *= scale);
                }
                let dst = &mut out[(c * h_out + h) * w_out..(c * h_out + h + 1) * w_out];
                if do_mirror {
                    dst.iter_mut().zip(row.iter().rev()).for_each(|(d, &r)| *d = r);
                } else {
                    dst.copy_from_slice(&row);
                }
            }
        }
        Ok(())
    }
}
