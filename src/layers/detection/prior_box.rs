//! PriorBox (SSD fork): the default boxes of one feature map.
use tch::Tensor;

use crate::bail;
use crate::layers::legacy_dims;
use crate::layers::registry::{family_of, LayerInfo};
use crate::layers::{check_bottoms, Ctx, Layer, SetupOut, Shape};
use crate::proto::caffe::PriorBoxParameter;
use crate::Result;

pub fn register(r: &mut Vec<LayerInfo>) {
    r.push(LayerInfo {
        type_name: "PriorBox",
        family: family_of(file!()),
        params: "prior_box_param.min_size (read as whole pixels, as the fork does), max_size, aspect_ratio, flip, \
                 clip, variance, img_size/img_h/img_w, step/step_h/step_w, offset; no backward (SSD fork)",
        tests: "layers_detection: prior_box_* (boxes computed by hand, variances, errors); python/tests/test_ssd_opencv.py",
        create: |p| Ok(Box::new(PriorBox::new(p.prior_box_param.clone().unwrap_or_default())?)),
    });
}

/// More aspect ratios than any detector uses (SSD's use up to 6), so that a
/// hostile file cannot make the quadratic de-duplication run for hours.
const MAX_ASPECT_RATIOS: usize = 1024;

/// Greater than 0 (false for NaN).
fn positive(v: f32) -> bool {
    v > 0.0
}

/// For each position of bottom[0]'s H×W map, in row-major order, and each
/// min_size: the square box of that size, then (with max_size) the square of
/// sqrt(min·max), then one box of min_size's area per aspect ratio other
/// than 1, as
/// [xmin, ymin, xmax, ymax] fractions of the image (bottom[1]'s H×W, or
/// img_size). The top is 1×2×(H·W·priors·4): the boxes, then each
/// coordinate's variance.
pub struct PriorBox {
    min_sizes: Vec<f32>,
    max_sizes: Vec<f32>,
    aspect_ratios: Vec<f32>,
    clip: bool,
    variance: Vec<f32>,
    /// (height, width); (0, 0) takes bottom[1]'s.
    img: (u32, u32),
    /// (height, width); (0, 0) divides the image by the map.
    step: (f32, f32),
    offset: f32,
}

/// The top a PriorBox with these parameters computes for bottoms of these
/// shapes (it depends on nothing else): what the exporters write as a constant.
pub fn prior_values(p: &PriorBoxParameter, bottoms: &[Shape]) -> Result<Vec<f32>> {
    let layer = PriorBox::new(p.clone())?;
    let (map, img) = layer.sizes(bottoms)?;
    Ok(layer.values(map, img))
}

impl PriorBox {
    pub fn new(p: PriorBoxParameter) -> Result<Self> {
        if p.min_size.is_empty() {
            bail!("prior_box_param must provide min_size");
        }
        if let Some(m) = p.min_size.iter().find(|&&m| !positive(m)) {
            bail!("prior_box_param.min_size must be positive, got {m}");
        }
        // The fork drops repeated ratios by comparing each with all before it.
        if p.aspect_ratio.len() > MAX_ASPECT_RATIOS {
            bail!(
                "prior_box_param has {} aspect_ratio values; at most {MAX_ASPECT_RATIOS} are read",
                p.aspect_ratio.len()
            );
        }
        let mut aspect_ratios = vec![1.0f32];
        for &ar in &p.aspect_ratio {
            if !(positive(ar) && ar.is_finite()) {
                bail!("prior_box_param.aspect_ratio must be positive, got {ar}");
            }
            if aspect_ratios.iter().any(|&a| (ar - a).abs() < 1e-6) {
                continue;
            }
            aspect_ratios.push(ar);
            if p.flip() {
                aspect_ratios.push((1.0 / ar as f64) as f32);
            }
        }
        if !p.max_size.is_empty() {
            if p.max_size.len() != p.min_size.len() {
                bail!(
                    "prior_box_param has {} max_size values for {} min_size values; give one per min_size, or none",
                    p.max_size.len(),
                    p.min_size.len()
                );
            }
            for (mx, mn) in p.max_size.iter().zip(&p.min_size) {
                if mx.partial_cmp(mn) != Some(std::cmp::Ordering::Greater) {
                    bail!("prior_box_param.max_size must be greater than min_size, got {mx} for min_size {mn}");
                }
            }
        }
        let variance = match p.variance.len() {
            0 => vec![0.1],
            1 | 4 => p.variance.clone(),
            n => bail!("prior_box_param.variance takes 1 or 4 values, got {n}"),
        };
        if let Some(v) = variance.iter().find(|&&v| !positive(v)) {
            bail!("prior_box_param.variance must be positive, got {v}");
        }
        let img = if p.img_h.is_some() || p.img_w.is_some() {
            if p.img_size.is_some() {
                bail!("prior_box_param: give img_size or img_h/img_w, not both");
            }
            if p.img_h() == 0 || p.img_w() == 0 {
                bail!("prior_box_param.img_h and img_w must both be larger than 0");
            }
            (p.img_h(), p.img_w())
        } else if let Some(s) = p.img_size {
            if s == 0 {
                bail!("prior_box_param.img_size must be larger than 0");
            }
            (s, s)
        } else {
            (0, 0)
        };
        let step = if p.step_h.is_some() || p.step_w.is_some() {
            if p.step.is_some() {
                bail!("prior_box_param: give step or step_h/step_w, not both");
            }
            if !(positive(p.step_h()) && positive(p.step_w())) {
                bail!("prior_box_param.step_h and step_w must both be larger than 0");
            }
            (p.step_h(), p.step_w())
        } else if let Some(s) = p.step {
            if !positive(s) {
                bail!("prior_box_param.step must be larger than 0, got {s}");
            }
            (s, s)
        } else {
            (0.0, 0.0)
        };
        Ok(PriorBox {
            min_sizes: p.min_size.clone(),
            max_sizes: p.max_size.clone(),
            aspect_ratios,
            clip: p.clip(),
            variance,
            img,
            step,
            offset: p.offset(),
        })
    }

    /// Boxes per map position.
    pub fn num_priors(&self) -> usize {
        self.min_sizes.len() * self.aspect_ratios.len() + self.max_sizes.len()
    }

    /// The map's (height, width) and the image's, checked.
    pub fn sizes(&self, bottoms: &[Shape]) -> Result<((i64, i64), (i64, i64))> {
        let [_, _, h, w] = legacy_dims(&bottoms[0])?;
        if h < 1 || w < 1 {
            bail!("bottom[0] has an empty {h}×{w} map");
        }
        let img = match self.fixed_image() {
            Some((ih, iw)) => (ih as i64, iw as i64),
            None => {
                let Some(image) = bottoms.get(1) else {
                    bail!("PriorBox takes the image size from bottom[1], or from prior_box_param.img_size/img_h/img_w");
                };
                let [_, _, ih, iw] = legacy_dims(image)?;
                (ih, iw)
            }
        };
        Ok(((h, w), img))
    }

    /// Each prior's (width, height) in pixels, in the order of a position's
    /// boxes.
    pub fn box_sizes(&self) -> Vec<(f32, f32)> {
        let mut sizes = Vec::with_capacity(self.num_priors());
        for (s, &min_size) in self.min_sizes.iter().enumerate() {
            // The fork reads each size as a whole number of pixels.
            let min_px = min_size as i64 as f64;
            sizes.push((min_px as f32, min_px as f32));
            if let Some(&max_size) = self.max_sizes.get(s) {
                let side = (min_px * max_size as i64 as f64).sqrt() as f32;
                sizes.push((side, side));
            }
            for &ar in &self.aspect_ratios {
                if (ar - 1.0).abs() < 1e-6 {
                    continue;
                }
                let root = (ar as f64).sqrt();
                sizes.push(((min_px * root) as f32, (min_px / root) as f32));
            }
        }
        sizes
    }

    /// The image's (height, width) when the parameters fix it (else bottom[1]'s).
    pub fn fixed_image(&self) -> Option<(u32, u32)> {
        (self.img.0 != 0).then_some(self.img)
    }

    /// The distance between box centres, (height, width), when the
    /// parameters fix it (else the image's size over the map's).
    pub fn fixed_step(&self) -> Option<(f32, f32)> {
        (self.step.0 != 0.0 && self.step.1 != 0.0).then_some(self.step)
    }

    /// The distance between box centres, (height, width), in pixels.
    pub fn step(&self, (layer_h, layer_w): (i64, i64), (img_h, img_w): (i64, i64)) -> (f32, f32) {
        self.fixed_step().unwrap_or((img_h as f32 / layer_h as f32, img_w as f32 / layer_w as f32))
    }

    /// The top's values: boxes then variances, as the fork computes them
    /// (centres in f32, corners in f64 rounded to f32).
    fn values(&self, (layer_h, layer_w): (i64, i64), (img_h, img_w): (i64, i64)) -> Vec<f32> {
        let (step_h, step_w) = self.step((layer_h, layer_w), (img_h, img_w));
        let sizes = self.box_sizes();
        let dim = (layer_h * layer_w) as usize * sizes.len() * 4;
        let mut top = Vec::with_capacity(2 * dim);
        let (iw, ih) = (img_w as f64, img_h as f64);
        for h in 0..layer_h {
            for w in 0..layer_w {
                let cx = ((w as f32 + self.offset) * step_w) as f64;
                let cy = ((h as f32 + self.offset) * step_h) as f64;
                for &(bw, bh) in &sizes {
                    let (bw, bh) = (bw as f64, bh as f64);
                    top.push(((cx - bw / 2.0) / iw) as f32);
                    top.push(((cy - bh / 2.0) / ih) as f32);
                    top.push(((cx + bw / 2.0) / iw) as f32);
                    top.push(((cy + bh / 2.0) / ih) as f32);
                }
            }
        }
        if self.clip {
            for v in top.iter_mut() {
                *v = v.clamp(0.0, 1.0);
            }
        }
        if self.variance.len() == 1 {
            top.resize(2 * dim, self.variance[0]);
        } else {
            for _ in 0..dim / 4 {
                top.extend_from_slice(&self.variance);
            }
        }
        top
    }

    pub fn clip(&self) -> bool {
        self.clip
    }
    pub fn variance(&self) -> &[f32] {
        &self.variance
    }
    pub fn offset(&self) -> f32 {
        self.offset
    }
}

impl Layer for PriorBox {
    fn setup(&mut self, bottoms: &[Shape]) -> Result<SetupOut> {
        check_bottoms(bottoms, 1, 2)?;
        let ((h, w), _) = self.sizes(bottoms)?;
        let count = h.checked_mul(w).and_then(|hw| hw.checked_mul(self.num_priors() as i64 * 4));
        let Some(count) = count else { bail!("a {h}×{w} map with {} priors is too many boxes", self.num_priors()) };
        Ok(SetupOut { tops: vec![vec![1, 2, count]], params: vec![] })
    }

    fn forward(&mut self, _ctx: &Ctx, bottoms: &[Tensor], _params: &[Tensor]) -> Result<Vec<Tensor>> {
        let shapes: Vec<Shape> = bottoms.iter().map(|b| b.size()).collect();
        let (map, img) = self.sizes(&shapes)?;
        let values = self.values(map, img);
        let n = values.len() as i64 / 2;
        let x = &bottoms[0];
        let top = Tensor::f_from_slice(&values)?.f_reshape([1, 2, n])?.f_to_kind(x.kind())?.f_to_device(x.device())?;
        Ok(vec![top])
    }
}
