//! The SSD fork's image augmentation for detection (its DataTransformer,
//! sampler and im_transforms): photometric distortion, zoom-out expansion,
//! random crops that keep the boxes they must, resizing with its modes, and
//! the boxes carried through every step. Images are 8-bit C×H×W BGR planes
//! ([`Image`]); boxes are normalized to the image they belong to.
//!
//! Where the fork saves an encoded record's image as a JPEG between steps,
//! the layer (annotated_data.rs) does too.
use rand::rngs::StdRng;
use rand::Rng;

use crate::data::image::Image;
use crate::data::resize::{self, saturate};
use crate::layers::detection::bbox::BBox;
use crate::proto::caffe::emit_constraint::EmitType;
use crate::proto::caffe::ssd_resize_parameter::{InterpMode, PadMode, ResizeMode};
use crate::proto::caffe::{
    BatchSampler, DistortionParameter, EmitConstraint, ExpansionParameter, SampleConstraint, SsdResizeParameter,
};
use crate::{Error, Result};

/// A ground-truth box: its class, instance and difficulty travel with it.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Object {
    pub label: i32,
    pub instance: i32,
    pub bbox: BBox,
    pub difficult: bool,
}

/// An image and its boxes, normalized to it.
#[derive(Clone, Debug)]
pub struct Annotated {
    pub image: Image,
    pub objects: Vec<Object>,
}

/// A uniform draw in [a, b] (Caffe's caffe_rng_uniform; a == b gives a).
pub fn uniform(rng: &mut StdRng, a: f32, b: f32) -> f32 {
    if b <= a {
        return a;
    }
    a + (b - a) * rng.gen::<f32>()
}

// ---------------------------------------------------------------- boxes

fn clip(b: &BBox) -> BBox {
    let c = |v: f32| v.clamp(0.0, 1.0);
    BBox::new(c(b.xmin), c(b.ymin), c(b.xmax), c(b.ymax))
}

/// The fork's ProjectBBox: `b` in the coordinates of `src`, clipped; None
/// where it falls outside or has no area left.
fn project(src: &BBox, b: &BBox) -> Option<BBox> {
    if b.xmin >= src.xmax || b.xmax <= src.xmin || b.ymin >= src.ymax || b.ymax <= src.ymin {
        return None;
    }
    let (w, h) = (src.xmax - src.xmin, src.ymax - src.ymin);
    let p = clip(&BBox::new(
        (b.xmin - src.xmin) / w,
        (b.ymin - src.ymin) / h,
        (b.xmax - src.xmin) / w,
        (b.ymax - src.ymin) / h,
    ));
    (p.size > 0.0).then_some(p)
}

/// Whether a crop keeps a box (the fork's MeetEmitConstraint).
fn emits(crop: &BBox, b: &BBox, c: &EmitConstraint) -> bool {
    match c.emit_type() {
        EmitType::Center => {
            let (x, y) = ((b.xmin + b.xmax) / 2.0, (b.ymin + b.ymax) / 2.0);
            x >= crop.xmin && x <= crop.xmax && y >= crop.ymin && y <= crop.ymax
        }
        EmitType::MinOverlap => b.coverage_by(crop) > c.emit_overlap(),
    }
}

/// The boxes of an image seen through `window` (a crop or an expansion, in
/// the image's normalized coordinates): those the emit constraint keeps and
/// that still have area, in the window's coordinates.
fn reframe(objects: &[Object], window: &BBox, emit: Option<&EmitConstraint>) -> Vec<Object> {
    objects
        .iter()
        .filter(|o| emit.is_none_or(|c| emits(window, &o.bbox, c)))
        .filter_map(|o| project(window, &o.bbox).map(|bbox| Object { bbox, ..*o }))
        .collect()
}

// ---------------------------------------------------------------- distortion

/// OpenCV's 8-bit BGR→HSV (H in [0, 180)), in its 12-bit fixed point.
pub fn bgr_to_hsv(b: u8, g: u8, r: u8) -> [u8; 3] {
    const SHIFT: i32 = 12;
    let (b, g, r) = (b as i32, g as i32, r as i32);
    let v = b.max(g).max(r);
    let diff = v - b.min(g).min(r);
    let sdiv = if v == 0 { 0 } else { ((255 << SHIFT) as f64 / v as f64).round() as i32 };
    let hdiv = if diff == 0 { 0 } else { ((180 << SHIFT) as f64 / (6.0 * diff as f64)).round() as i32 };
    let s = (diff * sdiv + (1 << (SHIFT - 1))) >> SHIFT;
    let h = if v == r {
        g - b
    } else if v == g {
        b - r + 2 * diff
    } else {
        r - g + 4 * diff
    };
    let mut h = (h * hdiv + (1 << (SHIFT - 1))) >> SHIFT;
    if h < 0 {
        h += 180;
    }
    [h as u8, s as u8, v as u8]
}

/// OpenCV's 8-bit HSV→BGR (H in [0, 180), wrapping once past either end).
pub fn hsv_to_bgr(h: u8, s: u8, v: u8) -> [u8; 3] {
    let (s, v) = (s as f32 * (1.0 / 255.0), v as f32 * (1.0 / 255.0));
    let (b, g, r) = if s == 0.0 {
        (v, v, v)
    } else {
        let mut h = h as f32 * (6.0 / 180.0);
        if h < 0.0 {
            h += 6.0;
        } else if h >= 6.0 {
            h -= 6.0;
        }
        let mut sector = h.floor() as usize;
        h -= sector as f32;
        if sector >= 6 {
            sector = 0;
            h = 0.0;
        }
        let tab = [v, v * (1.0 - s), v * (1.0 - s * h), v * (1.0 - s * (1.0 - h))];
        const SECTORS: [[usize; 3]; 6] = [[1, 3, 0], [1, 0, 2], [3, 0, 1], [0, 2, 1], [0, 1, 3], [2, 1, 0]];
        let [bi, gi, ri] = SECTORS[sector];
        (tab[bi], tab[gi], tab[ri])
    };
    [saturate(b * 255.0), saturate(g * 255.0), saturate(r * 255.0)]
}

/// Applies `f` to each pixel's HSV triple of a 3-channel image.
fn in_hsv(img: &mut Image, f: impl Fn(&mut [u8; 3])) -> Result<()> {
    if img.channels != 3 {
        return Err(Error::data(format!(
            "distort_param's saturation and hue need a 3-channel colour image, got {} channels",
            img.channels
        )));
    }
    let n = img.height * img.width;
    for i in 0..n {
        let mut hsv = bgr_to_hsv(img.data[i], img.data[n + i], img.data[2 * n + i]);
        f(&mut hsv);
        let [b, g, r] = hsv_to_bgr(hsv[0], hsv[1], hsv[2]);
        (img.data[i], img.data[n + i], img.data[2 * n + i]) = (b, g, r);
    }
    Ok(())
}

/// v·alpha + beta on every value (OpenCV's convertTo).
fn affine(img: &mut Image, alpha: f32, beta: f32) {
    for v in img.data.iter_mut() {
        *v = saturate(*v as f32 * alpha + beta);
    }
}

/// The fork's ApplyDistort: brightness, contrast, saturation, hue (contrast
/// last instead of second, at even odds) and a channel shuffle, each with
/// its probability.
pub fn distort(img: &mut Image, p: &DistortionParameter, rng: &mut StdRng) -> Result<()> {
    let contrast_first = uniform(rng, 0.0, 1.0) > 0.5;
    let brightness = |img: &mut Image, rng: &mut StdRng| {
        if uniform(rng, 0.0, 1.0) < p.brightness_prob() {
            let delta = uniform(rng, -p.brightness_delta(), p.brightness_delta());
            if delta.abs() > 0.0 {
                affine(img, 1.0, delta);
            }
        }
    };
    let contrast = |img: &mut Image, rng: &mut StdRng| {
        if uniform(rng, 0.0, 1.0) < p.contrast_prob() {
            let delta = uniform(rng, p.contrast_lower(), p.contrast_upper());
            if (delta - 1.0).abs() > 1e-3 {
                affine(img, delta, 0.0);
            }
        }
    };
    let saturation = |img: &mut Image, rng: &mut StdRng| -> Result<()> {
        if uniform(rng, 0.0, 1.0) < p.saturation_prob() {
            let delta = uniform(rng, p.saturation_lower(), p.saturation_upper());
            in_hsv(img, |hsv| hsv[1] = saturate(hsv[1] as f32 * delta))?;
        }
        Ok(())
    };
    let hue = |img: &mut Image, rng: &mut StdRng| -> Result<()> {
        if uniform(rng, 0.0, 1.0) < p.hue_prob() {
            let delta = uniform(rng, -p.hue_delta(), p.hue_delta());
            if delta.abs() > 0.0 {
                in_hsv(img, |hsv| hsv[0] = saturate(hsv[0] as f32 + delta))?;
            }
        }
        Ok(())
    };
    brightness(img, rng);
    if contrast_first {
        contrast(img, rng);
    }
    saturation(img, rng)?;
    hue(img, rng)?;
    if !contrast_first {
        contrast(img, rng);
    }
    if uniform(rng, 0.0, 1.0) < p.random_order_prob() {
        if img.channels != 3 {
            return Err(Error::data(format!(
                "distort_param's random_order_prob needs a 3-channel image, got {}",
                img.channels
            )));
        }
        let mut order = [0usize, 1, 2];
        for i in (1..3).rev() {
            order.swap(i, rng.gen_range(0..=i));
        }
        let n = img.height * img.width;
        let planes: Vec<Vec<u8>> = order.iter().map(|&c| img.data[c * n..(c + 1) * n].to_vec()).collect();
        img.data = planes.concat();
    }
    Ok(())
}

/// Checks a distortion's ranges as the fork does when it draws from them.
pub fn check_distortion(p: &DistortionParameter) -> Result<()> {
    let bad = |what: &str| Err(Error::data(format!("distort_param: {what}")));
    if p.brightness_delta() < 0.0 {
        return bad("brightness_delta must be non-negative.");
    }
    if p.hue_delta() < 0.0 {
        return bad("hue_delta must be non-negative.");
    }
    if p.contrast_upper() < p.contrast_lower() || p.contrast_lower() < 0.0 {
        return bad("contrast_lower must be non-negative and at most contrast_upper.");
    }
    if p.saturation_upper() < p.saturation_lower() || p.saturation_lower() < 0.0 {
        return bad("saturation_lower must be non-negative and at most saturation_upper.");
    }
    Ok(())
}

// ---------------------------------------------------------------- expansion

/// The fork's ExpandImage: with probability `prob`, the image placed at a
/// random whole-pixel offset in a canvas `ratio` ∈ [1, max_expand_ratio]
/// times its size, filled with `fill` (the mean values, or 0); None when the
/// draw leaves the image as it is.
pub fn expand(a: &Annotated, p: &ExpansionParameter, fill: &[f32], rng: &mut StdRng) -> Result<Option<Annotated>> {
    if uniform(rng, 0.0, 1.0) > p.prob() || (p.max_expand_ratio() - 1.0).abs() < 1e-2 {
        return Ok(None);
    }
    let ratio = uniform(rng, 1.0, p.max_expand_ratio());
    let img = &a.image;
    let (h0, w0, c) = (img.height, img.width, img.channels);
    let height = (h0 as f32 * ratio) as usize;
    let width = (w0 as f32 * ratio) as usize;
    checked_size(c, height, width, "an expanded image")?;
    let h_off = uniform(rng, 0.0, (height - h0) as f32).floor();
    let w_off = uniform(rng, 0.0, (width - w0) as f32).floor();
    let window = BBox::new(
        -w_off / w0 as f32,
        -h_off / h0 as f32,
        (width as f32 - w_off) / w0 as f32,
        (height as f32 - h_off) / h0 as f32,
    );
    let (h_off, w_off) = (h_off as usize, w_off as usize);
    let mut data = Vec::with_capacity(c * height * width);
    for ch in 0..c {
        let value = fill.get(ch).or(fill.first()).map_or(0, |&v| saturate(v));
        let start = data.len();
        data.resize(start + height * width, value);
        for y in 0..h0 {
            let src = &img.data[(ch * h0 + y) * w0..(ch * h0 + y + 1) * w0];
            let dst = start + (y + h_off) * width + w_off;
            data[dst..dst + w0].copy_from_slice(src);
        }
    }
    Ok(Some(Annotated {
        image: Image { channels: c, height, width, data },
        objects: reframe(&a.objects, &window, None),
    }))
}

/// Fails where an image of this size would not fit the memory limit.
fn checked_size(channels: usize, height: usize, width: usize, what: &str) -> Result<()> {
    crate::util::limits::checked_count(&[channels as i64, height as i64, width as i64], 1, what)?;
    Ok(())
}

// ---------------------------------------------------------------- batch sampling

/// The fork's SatisfySampleConstraint, its bookkeeping included: true once
/// some box passes every bound given, or passes the overlap bounds before
/// failing a coverage one.
fn satisfies(sample: &BBox, objects: &[Object], c: &SampleConstraint) -> bool {
    let jaccard = c.min_jaccard_overlap.is_some() || c.max_jaccard_overlap.is_some();
    let sample_cov = c.min_sample_coverage.is_some() || c.max_sample_coverage.is_some();
    let object_cov = c.min_object_coverage.is_some() || c.max_object_coverage.is_some();
    if !jaccard && !sample_cov && !object_cov {
        return true;
    }
    let outside = |v: f32, min: Option<f32>, max: Option<f32>| min.is_some_and(|m| v < m) || max.is_some_and(|m| v > m);
    let mut found = false;
    for o in objects {
        if jaccard {
            if outside(sample.jaccard(&o.bbox), c.min_jaccard_overlap, c.max_jaccard_overlap) {
                continue;
            }
            found = true;
        }
        if sample_cov {
            if outside(sample.coverage_by(&o.bbox), c.min_sample_coverage, c.max_sample_coverage) {
                continue;
            }
            found = true;
        }
        if object_cov {
            if outside(o.bbox.coverage_by(sample), c.min_object_coverage, c.max_object_coverage) {
                continue;
            }
            found = true;
        }
        if found {
            return true;
        }
    }
    found
}

/// Checks a batch sampler's ranges (the fork's CHECKs in SampleBBox).
pub fn check_sampler(s: &BatchSampler, index: usize) -> Result<()> {
    let p = s.sampler.unwrap_or_default();
    let ok = p.max_scale() >= p.min_scale()
        && p.min_scale() > 0.0
        && p.max_scale() <= 1.0
        && p.max_aspect_ratio() >= p.min_aspect_ratio()
        && p.min_aspect_ratio() > 0.0
        && p.max_aspect_ratio() < f32::MAX;
    if !ok {
        return Err(Error::data(format!(
            "batch_sampler {index}: need 0 < min_scale ≤ max_scale ≤ 1 and 0 < min_aspect_ratio ≤ max_aspect_ratio, \
             got scale [{}, {}], aspect ratio [{}, {}]",
            p.min_scale(),
            p.max_scale(),
            p.min_aspect_ratio(),
            p.max_aspect_ratio()
        )));
    }
    Ok(())
}

/// The fork's GenerateBatchSamples: each sampler (that uses the original
/// image) tries max_trials random crops and keeps up to max_sample of those
/// that satisfy its constraint.
pub fn batch_samples(objects: &[Object], samplers: &[BatchSampler], rng: &mut StdRng) -> Vec<BBox> {
    let mut out = Vec::new();
    for s in samplers.iter().filter(|s| s.use_original_image()) {
        let p = s.sampler.unwrap_or_default();
        let constraint = s.sample_constraint.unwrap_or_default();
        let mut found = 0u32;
        for _ in 0..s.max_trials() {
            if s.max_sample.is_some_and(|m| found >= m) {
                break;
            }
            let scale = uniform(rng, p.min_scale(), p.max_scale());
            let aspect =
                uniform(rng, p.min_aspect_ratio(), p.max_aspect_ratio()).max(scale.powi(2)).min(1.0 / scale.powi(2));
            let (w, h) = (scale * aspect.sqrt(), scale / aspect.sqrt());
            let x = uniform(rng, 0.0, 1.0 - w);
            let y = uniform(rng, 0.0, 1.0 - h);
            let sample = BBox::new(x, y, x + w, y + h);
            if satisfies(&sample, objects, &constraint) {
                found += 1;
                out.push(sample);
            }
        }
    }
    out
}

/// The fork's CropImage: the pixels under `window` (clipped to the image,
/// whole pixels), and the boxes the emit constraint keeps, in its frame.
pub fn crop(a: &Annotated, window: &BBox, emit: Option<&EmitConstraint>) -> Annotated {
    let window = clip(window);
    let img = &a.image;
    let (h0, w0) = (img.height as f32, img.width as f32);
    let (x0, y0) = ((window.xmin * w0) as usize, (window.ymin * h0) as usize);
    let width = ((window.xmax * w0 - window.xmin * w0) as usize).min(img.width - x0);
    let height = ((window.ymax * h0 - window.ymin * h0) as usize).min(img.height - y0);
    let mut data = Vec::with_capacity(img.channels * height * width);
    for c in 0..img.channels {
        for y in y0..y0 + height {
            let row = (c * img.height + y) * img.width;
            data.extend_from_slice(&img.data[row + x0..row + x0 + width]);
        }
    }
    // The boxes are reframed to the pixels cut (the fork uses the unrounded
    // window, up to a pixel off).
    let cut = BBox::new(x0 as f32 / w0, y0 as f32 / h0, (x0 + width) as f32 / w0, (y0 + height) as f32 / h0);
    Annotated { image: Image { channels: img.channels, height, width, data }, objects: reframe(&a.objects, &cut, emit) }
}

// ---------------------------------------------------------------- resizing

/// The size a resize gives (the fork's InferNewSize), as (height, width).
pub fn resized_size(p: &SsdResizeParameter, height: usize, width: usize) -> (usize, usize) {
    let (mut h, mut w) = (p.height() as usize, p.width() as usize);
    if p.resize_mode() == ResizeMode::FitSmallSize {
        let orig = width as f32 / height as f32;
        let aspect = w as f32 / h as f32;
        if orig < aspect {
            h = (w as f32 / orig) as usize;
        } else {
            w = (orig * h as f32) as usize;
        }
    }
    (h, w)
}

/// Checks a resize parameter before any image meets it.
pub fn check_resize(p: &SsdResizeParameter, channels: Option<usize>) -> Result<()> {
    if p.height() == 0 || p.width() == 0 {
        return Err(Error::data(format!(
            "transform_param.resize_param needs a positive height and width, got {}×{}",
            p.height(),
            p.width()
        )));
    }
    if let Some(c) = channels {
        if !(p.pad_value.len() <= 1 || p.pad_value.len() == c) {
            return Err(Error::data(format!(
                "Specify either 1 pad_value or as many as channels: {c} (got {})",
                p.pad_value.len()
            )));
        }
    }
    Ok(())
}

/// Pads an image: `top`, `bottom`, `left`, `right` pixels, as the pad mode says.
fn pad(img: &Image, [top, bottom, left, right]: [usize; 4], mode: PadMode, values: &[f32]) -> Image {
    let (h, w) = (img.height + top + bottom, img.width + left + right);
    let source = |i: i64, n: usize| -> Option<usize> {
        let n = n as i64;
        if (0..n).contains(&i) {
            return Some(i as usize);
        }
        match mode {
            PadMode::Constant => None,
            PadMode::RepeatNearest => Some(i.clamp(0, n - 1) as usize),
            // Reflected about the edge pixel (OpenCV's BORDER_REFLECT_101).
            PadMode::Mirrored => {
                if n == 1 {
                    return Some(0);
                }
                let period = 2 * (n - 1);
                let m = i.rem_euclid(period);
                Some(if m < n { m } else { period - m } as usize)
            }
        }
    };
    let mut data = Vec::with_capacity(img.channels * h * w);
    for c in 0..img.channels {
        let fill = values.get(c).or(values.first()).map_or(0, |&v| saturate(v));
        for y in 0..h {
            let sy = source(y as i64 - top as i64, img.height);
            for x in 0..w {
                let sx = source(x as i64 - left as i64, img.width);
                data.push(match (sy, sx) {
                    (Some(sy), Some(sx)) => img.data[(c * img.height + sy) * img.width + sx],
                    _ => fill,
                });
            }
        }
    }
    Image { channels: img.channels, height: h, width: w, data }
}

/// The fork's ApplyResize: WARP to height × width; FIT_LARGE_SIZE_AND_PAD
/// (aspect kept, padded to the size); FIT_SMALL_SIZE (aspect kept, the
/// smaller side to its size). The interpolation is drawn among interp_mode.
pub fn resize(img: &Image, p: &SsdResizeParameter, rng: &mut StdRng) -> Result<Image> {
    let mode = match p.interp_mode.len() {
        0 => InterpMode::Linear,
        n => {
            let k = ((uniform(rng, 0.0, 1.0) * n as f32) as usize).min(n - 1);
            InterpMode::try_from(p.interp_mode[k]).unwrap_or(InterpMode::Linear)
        }
    };
    let (nh, nw) = (p.height() as usize, p.width() as usize);
    let orig = img.width as f32 / img.height as f32;
    let aspect = nw as f32 / nh as f32;
    Ok(match p.resize_mode() {
        ResizeMode::Warp => {
            checked_size(img.channels, nh, nw, "a resized image")?;
            resize::with_mode(img, nh, nw, mode)
        }
        ResizeMode::FitSmallSize => {
            let (h, w) = if orig < aspect {
                ((nw as f32 / orig).floor() as usize, nw)
            } else {
                (nh, (orig * nh as f32).floor() as usize)
            };
            checked_size(img.channels, h, w, "a resized image")?;
            resize::with_mode(img, h.max(1), w.max(1), mode)
        }
        ResizeMode::FitLargeSizeAndPad => {
            checked_size(img.channels, nh, nw, "a resized image")?;
            if orig > aspect {
                let h = ((nw as f32 / orig).floor() as usize).clamp(1, nh);
                let r = resize::with_mode(img, h, nw, mode);
                let top = (nh - h) / 2;
                pad(&r, [top, nh - h - top, 0, 0], p.pad_mode(), &p.pad_value)
            } else {
                let w = ((orig * nh as f32).floor() as usize).clamp(1, nw);
                let r = resize::with_mode(img, nh, w, mode);
                let left = (nw - w) / 2;
                pad(&r, [0, 0, left, nw - w - left], p.pad_mode(), &p.pad_value)
            }
        }
    })
}

/// A box after the resize (the fork's UpdateBBoxByResizePolicy), for an
/// image of `width` × `height` before it.
pub fn resize_box(p: &SsdResizeParameter, width: usize, height: usize, b: &BBox) -> BBox {
    let (mut nh, mut nw) = (p.height() as f32, p.width() as f32);
    let (ow, oh) = (width as f32, height as f32);
    let orig = ow / oh;
    let aspect = nw / nh;
    let (mut x0, mut y0, mut x1, mut y1) = (b.xmin * ow, b.ymin * oh, b.xmax * ow, b.ymax * oh);
    let warp_x = |x0: f32, x1: f32, nw: f32| ((x0 * nw / ow).max(0.0), nw.min(x1 * nw / ow));
    let warp_y = |y0: f32, y1: f32, nh: f32| ((y0 * nh / oh).max(0.0), nh.min(y1 * nh / oh));
    match p.resize_mode() {
        ResizeMode::Warp => {
            (x0, x1) = warp_x(x0, x1, nw);
            (y0, y1) = warp_y(y0, y1, nh);
        }
        ResizeMode::FitLargeSizeAndPad => {
            if orig > aspect {
                let padding = (nh - nw / orig) / 2.0;
                (x0, x1) = warp_x(x0, x1, nw);
                y0 = padding + (y0 * (nh - 2.0 * padding) / oh).max(0.0);
                y1 = padding + nh.min(y1 * (nh - 2.0 * padding) / oh);
            } else {
                let padding = (nw - orig * nh) / 2.0;
                x0 = padding + (x0 * (nw - 2.0 * padding) / ow).max(0.0);
                x1 = padding + nw.min(x1 * (nw - 2.0 * padding) / ow);
                (y0, y1) = warp_y(y0, y1, nh);
            }
        }
        ResizeMode::FitSmallSize => {
            if orig < aspect {
                nh = nw / orig;
            } else {
                nw = orig * nh;
            }
            (x0, x1) = warp_x(x0, x1, nw);
            (y0, y1) = warp_y(y0, y1, nh);
        }
    }
    BBox::new(x0 / nw, y0 / nh, x1 / nw, y1 / nh)
}

/// The last step's boxes (the fork's TransformAnnotation with a resize):
/// resized, kept by the emit constraint, seen through the final crop, and
/// mirrored.
pub fn final_boxes(
    objects: &[Object],
    resize: Option<(&SsdResizeParameter, usize, usize)>,
    crop: &BBox,
    emit: Option<&EmitConstraint>,
    mirror: bool,
) -> Vec<Object> {
    objects
        .iter()
        .filter_map(|o| {
            let b = match resize {
                Some((p, w, h)) => resize_box(p, w, h, &o.bbox),
                None => o.bbox,
            };
            if emit.is_some_and(|c| !emits(crop, &b, c)) {
                return None;
            }
            let mut b = project(crop, &b)?;
            if mirror {
                b = BBox::new(1.0 - b.xmax, b.ymin, 1.0 - b.xmin, b.ymax);
            }
            Some(Object { bbox: b, ..*o })
        })
        .collect()
}
