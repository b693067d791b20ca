//! Images as Caffe (through OpenCV) sees them: 8-bit, channels-first, colour
//! channels in BGR order, decoded from PNG or JPEG, resized bilinearly.
//!
//! Datasets made by Caffe store colour pixels as B, G, R planes (OpenCV's
//! order) and mean files follow it, so decoding here swaps RGB to BGR.
use std::io::Cursor;
use std::path::Path;

use crate::util::limits;
use crate::{Error, Result};
use image::{DynamicImage, ImageEncoder, ImageFormat};

/// How to decode: as stored (OpenCV's IMREAD_ANYCOLOR: grey stays one channel,
/// colour becomes three, alpha is dropped), forced to 3-channel colour, or
/// forced to grey.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ColorMode {
    Native,
    Color,
    Gray,
}

/// An 8-bit image, channels-first (C×H×W), colour as BGR planes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Image {
    pub channels: usize,
    pub height: usize,
    pub width: usize,
    pub data: Vec<u8>,
}

/// OpenCV's fixed-point RGB→grey weights (0.299, 0.587, 0.114 in 14 bits).
fn gray_of(r: u8, g: u8, b: u8) -> u8 {
    ((r as u32 * 4899 + g as u32 * 9617 + b as u32 * 1868 + (1 << 13)) >> 14) as u8
}

/// Decodes PNG or JPEG bytes. Anything else (or a corrupt file) is an error
/// saying what the bytes look like.
pub fn decode(bytes: &[u8], mode: ColorMode) -> Result<Image> {
    let format = image::guess_format(bytes).map_err(|_| {
        let head: String = bytes.iter().take(8).map(|b| format!("{b:02x}")).collect();
        Error::data(format!("not a PNG or JPEG image ({} bytes, starting {head})", bytes.len()))
    })?;
    if !matches!(format, ImageFormat::Png | ImageFormat::Jpeg) {
        return Err(Error::data(format!("{format:?} images are not supported (only PNG and JPEG)")));
    }
    let corrupt = |e: image::ImageError| Error::data(format!("corrupt {format:?} image: {e}"));
    // The header's size is checked before the pixels are allocated: a few
    // hostile bytes can claim 100000×100000 pixels.
    let (width, height) = crate::util::contain::contain_panic(|| {
        image::ImageReader::with_format(Cursor::new(bytes), format).into_dimensions()
    })
    .map_err(|panic| Error::data(format!("corrupt {format:?} image: the decoder failed ({panic})")))?
    .map_err(corrupt)?;
    limits::checked_count(
        &[3, i64::from(height), i64::from(width)],
        4,
        &format!("a {width}×{height} {format:?} image"),
    )
    .map_err(|e| Error::data(e.to_string()))?;
    let mut reader = image::ImageReader::with_format(Cursor::new(bytes), format);
    let mut decoder_limits = image::Limits::default();
    decoder_limits.max_alloc = Some(limits::max_memory());
    reader.limits(decoder_limits);
    let img = crate::util::contain::contain_panic(|| reader.decode())
        .map_err(|panic| Error::data(format!("corrupt {format:?} image: the decoder failed ({panic})")))?
        .map_err(corrupt)?;
    Ok(from_dynamic(&img, mode))
}

fn from_dynamic(img: &DynamicImage, mode: ColorMode) -> Image {
    let (width, height) = (img.width() as usize, img.height() as usize);
    let plane = width * height;
    let is_gray = !img.color().has_color();
    match (mode, is_gray) {
        (ColorMode::Gray, true) | (ColorMode::Native, true) => {
            Image { channels: 1, height, width, data: img.to_luma8().into_raw() }
        }
        (ColorMode::Gray, false) => {
            let rgb = img.to_rgb8();
            let data = rgb.pixels().map(|p| gray_of(p[0], p[1], p[2])).collect();
            Image { channels: 1, height, width, data }
        }
        (ColorMode::Color, _) | (ColorMode::Native, false) => {
            let rgb = img.to_rgb8();
            let mut data = vec![0u8; 3 * plane];
            for (i, p) in rgb.pixels().enumerate() {
                data[i] = p[2];
                data[plane + i] = p[1];
                data[2 * plane + i] = p[0];
            }
            Image { channels: 3, height, width, data }
        }
    }
}

/// Reads an image file like Caffe's `ReadImageToCVMat`: colour or grey, then
/// resized to `new_height`×`new_width` when both are positive.
pub fn read_file(path: &Path, new_height: usize, new_width: usize, is_color: bool) -> Result<Image> {
    let bytes =
        std::fs::read(path).map_err(|e| Error::data(format!("could not open or find file {}: {e}", path.display())))?;
    let img = decode(&bytes, if is_color { ColorMode::Color } else { ColorMode::Gray })
        .map_err(|e| Error::data(format!("{}: {e}", path.display())))?;
    if new_height == 0 || new_width == 0 {
        return Ok(img);
    }
    let shape = [img.channels as i64, new_height as i64, new_width as i64];
    limits::checked_count(&shape, 4, &format!("{} resized to {new_width}×{new_height}", path.display()))
        .map_err(|e| Error::data(e.to_string()))?;
    Ok(resize(&img, new_height, new_width))
}

/// Bilinear resize with OpenCV's INTER_LINEAR geometry (pixel centres aligned,
/// edges clamped). OpenCV interpolates in 11-bit fixed point, so a pixel may
/// differ from Caffe's by one level.
pub fn resize(img: &Image, new_height: usize, new_width: usize) -> Image {
    if img.height == new_height && img.width == new_width {
        return img.clone();
    }
    let ratio = |dst: usize, src: usize| src as f64 / dst as f64;
    resize_mapped(img, new_height, new_width, ratio(new_height, img.height), ratio(new_width, img.width))
}

/// Bilinear resize by a factor on both axes, as OpenCV's resize with fx = fy
/// = `factor` and no target size: the size rounded to the nearest pixel, and
/// source positions from the factor itself rather than the rounded sizes.
pub fn resize_by(img: &Image, factor: f64) -> Result<Image> {
    let side = |n: usize| (n as f64 * factor).round_ties_even();
    let (h, w) = (side(img.height), side(img.width));
    if !(factor.is_finite() && factor > 0.0 && h >= 1.0 && w >= 1.0) {
        return Err(Error::data(format!("resizing a {}×{} image by {factor} leaves no pixel", img.width, img.height)));
    }
    let shape = [img.channels as i64, h as i64, w as i64];
    limits::checked_count(&shape, 4, &format!("an image resized to {w}×{h}"))
        .map_err(|e| Error::data(e.to_string()))?;
    Ok(resize_mapped(img, h as usize, w as usize, 1.0 / factor, 1.0 / factor))
}

/// Bilinear resize where destination pixel d samples source position
/// (d + 0.5)·scale − 0.5 on each axis.
fn resize_mapped(img: &Image, new_height: usize, new_width: usize, scale_y: f64, scale_x: f64) -> Image {
    let axis = |dst: usize, src: usize, scale: f64| -> Vec<(usize, usize, f32)> {
        (0..dst)
            .map(|d| {
                let pos = ((d as f64 + 0.5) * scale - 0.5).max(0.0);
                let i0 = (pos.floor() as usize).min(src - 1);
                let i1 = (i0 + 1).min(src - 1);
                let frac = if i0 == src - 1 { 0.0 } else { (pos - i0 as f64) as f32 };
                (i0, i1, frac)
            })
            .collect()
    };
    let ys = axis(new_height, img.height, scale_y);
    let xs = axis(new_width, img.width, scale_x);
    let mut data = Vec::with_capacity(img.channels * new_height * new_width);
    for c in 0..img.channels {
        let plane = &img.data[c * img.height * img.width..(c + 1) * img.height * img.width];
        for &(y0, y1, fy) in &ys {
            for &(x0, x1, fx) in &xs {
                let p = |y: usize, x: usize| plane[y * img.width + x] as f32;
                let top = p(y0, x0) * (1.0 - fx) + p(y0, x1) * fx;
                let bottom = p(y1, x0) * (1.0 - fx) + p(y1, x1) * fx;
                let v = top * (1.0 - fy) + bottom * fy;
                data.push(v.round().clamp(0.0, 255.0) as u8);
            }
        }
    }
    Image { channels: img.channels, height: new_height, width: new_width, data }
}

/// Encodes as PNG or JPEG (quality 95, OpenCV's default), from BGR planes.
pub fn encode(img: &Image, format: &str) -> Result<Vec<u8>> {
    let plane = img.height * img.width;
    let (color, pixels) = match img.channels {
        1 => (image::ExtendedColorType::L8, img.data.clone()),
        3 => {
            let mut rgb = Vec::with_capacity(3 * plane);
            for i in 0..plane {
                rgb.extend_from_slice(&[img.data[2 * plane + i], img.data[plane + i], img.data[i]]);
            }
            (image::ExtendedColorType::Rgb8, rgb)
        }
        c => return Err(Error::data(format!("cannot encode a {c}-channel image (1 or 3 channels)"))),
    };
    let mut out = Vec::new();
    let (w, h) = (img.width as u32, img.height as u32);
    match format.to_ascii_lowercase().as_str() {
        "png" => image::codecs::png::PngEncoder::new(&mut out).write_image(&pixels, w, h, color),
        "jpg" | "jpeg" => {
            image::codecs::jpeg::JpegEncoder::new_with_quality(&mut out, 95).write_image(&pixels, w, h, color)
        }
        other => return Err(Error::data(format!("unknown encode_type '{other}' (use png or jpg)"))),
    }
    .map_err(|e| Error::data(format!("encoding {format}: {e}")))?;
    Ok(out)
}

/// Whether a file name's extension names `encoding` (jpg and jpeg are one).
pub fn extension_matches(file: &str, encoding: &str) -> bool {
    let ext = match file.rsplit_once('.') {
        Some((_, e)) => e.to_ascii_lowercase(),
        None => return false,
    };
    let norm = |s: &str| if s == "jpeg" { "jpg".to_string() } else { s.to_string() };
    norm(&ext) == norm(&encoding.to_ascii_lowercase())
}
/// Reads Caffe's list-file format: `path label` per line (the label after the last space).
pub fn read_image_list(list: &Path) -> Result<Vec<(String, i32)>> {
    let text =
        std::fs::read_to_string(list).map_err(|e| Error::data(format!("image list '{}': {e}", list.display())))?;
    let mut lines = Vec::new();
    for raw in text.lines() {
        let line = raw.trim_end_matches('\r');
        if line.trim().is_empty() {
            continue;
        }
        match line.rfind(' ') {
            Some(pos) => lines.push((line[..pos].to_string(), atoi(&line[pos + 1..]))),
            None => lines.push((line.to_string(), 0)),
        }
    }
    Ok(lines)
}

/// C's `atoi`: optional spaces and sign, then digits up to the first non-digit.
pub(crate) fn atoi(s: &str) -> i32 {
    let s = s.trim_start();
    let (neg, digits) = match s.as_bytes().first() {
        Some(b'-') => (true, &s[1..]),
        Some(b'+') => (false, &s[1..]),
        _ => (false, s),
    };
    let mut v: i64 = 0;
    for b in digits.bytes().take_while(|b| b.is_ascii_digit()) {
        v = (v * 10 + (b - b'0') as i64).min(i32::MAX as i64 + 1);
    }
    let v = if neg { -v } else { v };
    v.clamp(i32::MIN as i64, i32::MAX as i64) as i32
}
