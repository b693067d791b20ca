//! Images as Caffe (through OpenCV) sees them: 8-bit, channels-first, colour
//! channels in BGR order, decoded as OpenCV decodes them, resized bilinearly.
//!
//! Datasets made by Caffe store colour pixels as B, G, R planes (OpenCV's
//! order) and mean files follow it, so decoding here swaps RGB to BGR.
use std::io::Cursor;
use std::path::Path;

use super::pam;
use crate::util::limits;
use crate::{Error, Result};
use image::{DynamicImage, ImageDecoder, ImageEncoder, ImageFormat};

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
pub(super) fn gray_of(r: u8, g: u8, b: u8) -> u8 {
    ((r as u32 * 4899 + g as u32 * 9617 + b as u32 * 1868 + (1 << 13)) >> 14) as u8
}

/// OpenCV 4's `cvtColor` BGR→grey on 8-bit samples.
fn cvt_color_grey(r: u8, g: u8, b: u8) -> u8 {
    ((r as u32 * 9798 + g as u32 * 19235 + b as u32 * 3735 + (1 << 14)) >> 15) as u8
}

/// The formats decoded, as OpenCV's imread names them in its errors' stead.
const FORMATS: &str =
    "JPEG, JPEG 2000, PNG, BMP, PNM (PBM, PGM, PPM, PAM), TIFF, WebP, GIF, Sun raster and Radiance HDR";

/// Decodes an image as OpenCV's `imread`/`imdecode` does (Caffe's readers
/// call them): JPEG through libjpeg ([`super::jpeg`]), JPEG 2000 through
/// OpenJPEG ([`super::jpeg2000`]), GIF as OpenCV's own
/// decoder draws its first frame ([`super::gif`]), Sun raster and Radiance
/// HDR by OpenCV's own rules ([`super::sun_raster`], [`super::radiance`]),
/// the others through the
/// `image` crate's lossless decoders (WebP's lossy one too) with OpenCV's
/// conversions on top: 16-bit samples narrowed, colour turned grey and the
/// Exif orientation applied as OpenCV's decoder for the format does.
/// Anything else (or a corrupt file) is an error saying what the bytes look like.
pub fn decode(bytes: &[u8], mode: ColorMode) -> Result<Image> {
    // Formats the `image` crate does not read (or, for HDR, not by OpenCV's rules).
    if bytes.starts_with(&super::sun_raster::MAGIC) {
        return super::sun_raster::decode(bytes, mode);
    }
    if bytes.starts_with(super::radiance::MAGIC) || bytes.starts_with(super::radiance::MAGIC_ALT) {
        return super::radiance::decode(bytes, mode);
    }
    if bytes.starts_with(&super::jpeg2000::JP2_MAGIC) || bytes.starts_with(&super::jpeg2000::J2K_MAGIC) {
        return super::jpeg2000::decode(bytes, mode);
    }
    let format = image::guess_format(bytes).map_err(|_| {
        let head: String = bytes.iter().take(8).map(|b| format!("{b:02x}")).collect();
        Error::data(format!("not an image in a format read here ({FORMATS}): {} bytes, starting {head}", bytes.len()))
    })?;
    match format {
        ImageFormat::Jpeg => return super::jpeg::decode(bytes, mode),
        ImageFormat::Gif => return super::gif::decode(bytes, mode),
        ImageFormat::Png | ImageFormat::Bmp | ImageFormat::Pnm | ImageFormat::Tiff | ImageFormat::WebP => {}
        other => return Err(Error::data(format!("{other:?} images are not supported (only {FORMATS})"))),
    }
    let pam_header = if format == ImageFormat::Pnm { pam::header(bytes) } else { None };
    if let Some(decoded) = pam_header.as_ref().and_then(|h| pam::decode_with_alpha(h, bytes, mode)) {
        return decoded;
    }
    let corrupt = |e: image::ImageError| match e {
        // A valid file of a kind the decoder does not read.
        image::ImageError::Unsupported(_) => Error::data(format!("{format:?} image not read here: {e}")),
        _ => Error::data(format!("corrupt {format:?} image: {e}")),
    };
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
    let (img, orientation) = crate::util::contain::contain_panic(|| -> image::ImageResult<_> {
        let mut decoder = reader.into_decoder()?;
        // OpenCV ignores an Exif block it cannot read.
        let orientation = decoder.orientation().unwrap_or(image::metadata::Orientation::NoTransforms);
        Ok((DynamicImage::from_decoder(decoder)?, orientation))
    })
    .map_err(|panic| Error::data(format!("corrupt {format:?} image: the decoder failed ({panic})")))?
    .map_err(corrupt)?;
    let greying = match format {
        ImageFormat::Png => Greying::Libpng,
        ImageFormat::WebP => Greying::CvtColor,
        _ => Greying::OpenCv,
    };
    // OpenCV's TIFF decoder rounds 16-bit samples to 8 bits (the others keep
    // the high byte) and reads RGBA through libtiff's RGBA interface, which
    // premultiplies colour by an unassociated alpha.
    let (narrow, img): (fn(u16) -> u8, _) = if format == ImageFormat::Tiff {
        let unassociated = matches!(img, DynamicImage::ImageRgba8(_) | DynamicImage::ImageRgba16(_))
            && tiff_alpha_is_unassociated(bytes);
        (|v| ((u32::from(v) + 128) / 257) as u8, if unassociated { premultiplied(img) } else { img })
    } else {
        (|v| (v >> 8) as u8, img)
    };
    let mut decoded = from_dynamic(&img, mode, greying, narrow)?;
    if decoded.channels == 3 && pam_header.as_ref().is_some_and(pam::samples_read_as_bgr) {
        decoded.swap_red_and_blue();
    }
    // OpenCV 4 turns PNG and WebP files upright by their Exif orientation too
    // (its TIFF reader fails on a turned file; that one stays as stored).
    Ok(match format {
        ImageFormat::Png => match png_exif(bytes).and_then(exif_orientation) {
            Some(o) => decoded.oriented(o),
            None => decoded,
        },
        ImageFormat::WebP => decoded.oriented(orientation.to_exif()),
        _ => decoded,
    })
}

/// A PNG's eXIf chunk (Exif in TIFF form; a leading "Exif\0\0" is skipped),
/// which the `image` crate's PNG decoder does not read.
fn png_exif(bytes: &[u8]) -> Option<&[u8]> {
    let mut at = 8;
    while let Some(header) = bytes.get(at..at + 8) {
        let len = u32::from_be_bytes(header[..4].try_into().ok()?) as usize;
        let body = bytes.get(at + 8..(at + 8).checked_add(len)?)?;
        match &header[4..] {
            b"eXIf" => return Some(body.strip_prefix(b"Exif\0\0").unwrap_or(body)),
            b"IEND" => return None,
            _ => at = at.checked_add(12 + len)?,
        }
    }
    None
}

/// Whether a TIFF's extra sample is an unassociated alpha (ExtraSamples = 2).
fn tiff_alpha_is_unassociated(bytes: &[u8]) -> bool {
    crate::util::contain::contain_panic(|| {
        let Ok(mut decoder) = tiff::decoder::Decoder::new(Cursor::new(bytes)) else { return false };
        decoder.get_tag_u32_vec(tiff::tags::Tag::ExtraSamples).is_ok_and(|v| v.first() == Some(&2))
    })
    .unwrap_or(false)
}

/// Colour times alpha, rounded as libtiff's RGBA interface does (RGBA only;
/// 16-bit samples are narrowed first, as that interface does).
fn premultiplied(img: DynamicImage) -> DynamicImage {
    match img {
        // libtiff's RGBA interface narrows 16-bit samples to 8 bits, rounded,
        // before it premultiplies.
        DynamicImage::ImageRgba16(rgba) => {
            let narrow = image::RgbaImage::from_fn(rgba.width(), rgba.height(), |x, y| {
                image::Rgba(rgba.get_pixel(x, y).0.map(|v| ((u32::from(v) + 128) / 257) as u8))
            });
            premultiplied(DynamicImage::ImageRgba8(narrow))
        }
        DynamicImage::ImageRgba8(mut rgba) => {
            for p in rgba.pixels_mut() {
                let a = u32::from(p[3]);
                for c in 0..3 {
                    p[c] = ((u32::from(p[c]) * a + 127) / 255) as u8;
                }
            }
            DynamicImage::ImageRgba8(rgba)
        }
        other => other,
    }
}

/// How colour becomes grey in OpenCV's decoder for the format.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Greying {
    /// libpng's `png_set_rgb_to_gray(0.299, 0.587)`: weights truncated to 15
    /// bits (9797, 19234, 3737), the sum truncated on 8-bit samples and
    /// rounded on 16-bit ones (then their high byte kept).
    Libpng,
    /// OpenCV's `icvCvt_BGR2Gray` (its BMP, PNM and TIFF decoders): 14-bit
    /// weights, rounded.
    OpenCv,
    /// OpenCV 4's `cvtColor(BGR2GRAY)`, which its WebP decoder calls: 15-bit
    /// weights (9798, 19235, 3735), rounded (OpenCV 3 used the 14-bit ones).
    CvtColor,
}

fn from_dynamic(img: &DynamicImage, mode: ColorMode, greying: Greying, narrow: fn(u16) -> u8) -> Result<Image> {
    let (width, height) = (img.width() as usize, img.height() as usize);
    let has_color = img.color().has_color();
    let grey_out = match mode {
        ColorMode::Gray => true,
        ColorMode::Color => false,
        ColorMode::Native => !has_color,
    };
    // 16-bit samples are narrowed as the format's decoder in OpenCV does.
    let deep = matches!(
        img,
        DynamicImage::ImageLuma16(_)
            | DynamicImage::ImageLumaA16(_)
            | DynamicImage::ImageRgb16(_)
            | DynamicImage::ImageRgba16(_)
    );
    if matches!(img, DynamicImage::ImageRgb32F(_) | DynamicImage::ImageRgba32F(_)) {
        return Err(Error::data("floating-point images are not supported (8 or 16 bits per sample)".to_string()));
    }
    if !grey_out {
        let rgb =
            if deep { img.to_rgb16().into_raw().into_iter().map(narrow).collect() } else { img.to_rgb8().into_raw() };
        return Ok(Image::from_interleaved_rgb(&rgb, 3, height, width));
    }
    let data: Vec<u8> = match (has_color, deep) {
        (false, false) => img.to_luma8().into_raw(),
        (false, true) => img.to_luma16().into_raw().into_iter().map(narrow).collect(),
        (true, false) => {
            let grey = match greying {
                Greying::Libpng => {
                    |r: u8, g: u8, b: u8| ((r as u32 * 9797 + g as u32 * 19234 + b as u32 * 3737) >> 15) as u8
                }
                Greying::OpenCv => gray_of,
                Greying::CvtColor => cvt_color_grey,
            };
            img.to_rgb8().pixels().map(|p| grey(p[0], p[1], p[2])).collect()
        }
        (true, true) => {
            let grey = |r: u16, g: u16, b: u16| -> u8 {
                match greying {
                    Greying::Libpng => {
                        (((r as u32 * 9797 + g as u32 * 19234 + b as u32 * 3737 + (1 << 14)) >> 15) >> 8) as u8
                    }
                    Greying::OpenCv => gray_of(narrow(r), narrow(g), narrow(b)),
                    Greying::CvtColor => cvt_color_grey(narrow(r), narrow(g), narrow(b)),
                }
            };
            img.to_rgb16().pixels().map(|p| grey(p[0], p[1], p[2])).collect()
        }
    };
    Ok(Image { channels: 1, height, width, data })
}

/// The Exif orientation (1 to 8) in the first image directory of a TIFF-form
/// Exif block, as OpenCV reads it; None when absent or malformed.
pub fn exif_orientation(tiff: &[u8]) -> Option<u8> {
    let little = match tiff.get(..4)? {
        [b'I', b'I', 42, 0] => true,
        [b'M', b'M', 0, 42] => false,
        _ => return None,
    };
    let u16_at = |at: usize| -> Option<u16> {
        let b: [u8; 2] = tiff.get(at..at + 2)?.try_into().ok()?;
        Some(if little { u16::from_le_bytes(b) } else { u16::from_be_bytes(b) })
    };
    let u32_at = |at: usize| -> Option<u32> {
        let b: [u8; 4] = tiff.get(at..at + 4)?.try_into().ok()?;
        Some(if little { u32::from_le_bytes(b) } else { u32::from_be_bytes(b) })
    };
    let ifd = u32_at(4)? as usize;
    let entries = u16_at(ifd)? as usize;
    for k in 0..entries {
        let entry = ifd.checked_add(2 + 12 * k)?;
        // Tag 0x0112 (Orientation), type SHORT, one value.
        if u16_at(entry)? == 0x0112 && u16_at(entry + 2)? == 3 && u32_at(entry + 4)? == 1 {
            let v = u16_at(entry + 8)?;
            return (1..=8).contains(&v).then_some(v as u8);
        }
    }
    None
}

impl Image {
    /// From rows of interleaved RGB pixels (or one grey channel) to BGR planes.
    pub fn from_interleaved_rgb(pixels: &[u8], channels: usize, height: usize, width: usize) -> Image {
        if channels == 1 {
            return Image { channels, height, width, data: pixels.to_vec() };
        }
        let plane = height * width;
        let mut data = vec![0u8; 3 * plane];
        for (i, p) in pixels.chunks_exact(3).enumerate() {
            data[i] = p[2];
            data[plane + i] = p[1];
            data[2 * plane + i] = p[0];
        }
        Image { channels: 3, height, width, data }
    }

    /// From rows of interleaved RGB pixels of a decoder that is colour
    /// whatever is asked (OpenCV's GIF, HDR and JPEG 2000 readers): BGR
    /// planes, or `cvtColor`'s grey of them.
    pub(super) fn from_colour_decoder(rgb: &[u8], height: usize, width: usize, grey: bool) -> Image {
        if !grey {
            return Image::from_interleaved_rgb(rgb, 3, height, width);
        }
        let data = rgb.chunks_exact(3).map(|p| cvt_color_grey(p[0], p[1], p[2])).collect();
        Image { channels: 1, height, width, data }
    }

    /// Rows of interleaved RGB pixels (or the one grey channel), as encoders
    /// take them; an image of another channel count is an error.
    pub fn to_interleaved_rgb(&self) -> Result<Vec<u8>> {
        let plane = self.height * self.width;
        if self.data.len() != self.channels * plane {
            return Err(Error::data(format!("a {}×{} image with {} bytes", self.width, self.height, self.data.len())));
        }
        match self.channels {
            1 => Ok(self.data.clone()),
            3 => Ok((0..plane).flat_map(|i| [self.data[2 * plane + i], self.data[plane + i], self.data[i]]).collect()),
            c => Err(Error::data(format!("cannot encode a {c}-channel image (1 or 3 channels)"))),
        }
    }

    /// A colour image's first and last planes exchanged.
    fn swap_red_and_blue(&mut self) {
        let plane = self.height * self.width;
        if self.channels == 3 && self.data.len() == 3 * plane {
            let (blue, rest) = self.data.split_at_mut(plane);
            blue.swap_with_slice(&mut rest[plane..]);
        }
    }

    /// The image turned upright by its Exif orientation (1 to 8), as OpenCV's
    /// `ApplyExifOrientation` does (5 to 8 transpose, so height and width swap).
    pub fn oriented(self, orientation: u8) -> Image {
        if !(2..=8).contains(&orientation) {
            return self;
        }
        let (h, w) = (self.height, self.width);
        let (oh, ow) = if orientation >= 5 { (w, h) } else { (h, w) };
        // The source pixel of output pixel (oy, ox).
        let source = |oy: usize, ox: usize| -> (usize, usize) {
            match orientation {
                2 => (oy, w - 1 - ox),
                3 => (h - 1 - oy, w - 1 - ox),
                4 => (h - 1 - oy, ox),
                5 => (ox, oy),
                6 => (ow - 1 - ox, oy),
                7 => (ow - 1 - ox, oh - 1 - oy),
                _ => (ox, oh - 1 - oy),
            }
        };
        let mut data = Vec::with_capacity(self.data.len());
        for c in 0..self.channels {
            let plane = &self.data[c * h * w..(c + 1) * h * w];
            for oy in 0..oh {
                for ox in 0..ow {
                    let (sy, sx) = source(oy, ox);
                    data.push(plane[sy * w + sx]);
                }
            }
        }
        Image { channels: self.channels, height: oh, width: ow, data }
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

/// Bilinear resize, OpenCV's `resize` with INTER_LINEAR (Caffe's default),
/// bit for bit.
pub fn resize(img: &Image, new_height: usize, new_width: usize) -> Image {
    if img.height == new_height && img.width == new_width {
        return img.clone();
    }
    // OpenCV's scale is the reciprocal of dst/src, which can differ from
    // src/dst in the last bit, and so move a tap.
    let scale = |dst: usize, src: usize| 1.0 / (dst as f64 / src as f64);
    super::resize::linear(img, new_height, new_width, scale(new_height, img.height), scale(new_width, img.width))
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
    Ok(super::resize::linear(img, h as usize, w as usize, 1.0 / factor, 1.0 / factor))
}

/// Encodes as PNG or JPEG, from BGR planes, as Caffe's `convert_imageset
/// -encode_type` does through OpenCV's `imencode`: JPEG at OpenCV's default
/// quality 95 through libjpeg (byte for byte OpenCV's file), PNG losslessly
/// (its compressed bytes are the `png` crate's, the pixels OpenCV's).
pub fn encode(img: &Image, format: &str) -> Result<Vec<u8>> {
    match format.to_ascii_lowercase().as_str() {
        "jpg" | "jpeg" => return super::jpeg::encode(img, 95),
        "png" => {}
        other => return Err(Error::data(format!("unknown encode_type '{other}' (use png or jpg)"))),
    }
    let pixels = img.to_interleaved_rgb()?;
    let color = if img.channels == 1 { image::ExtendedColorType::L8 } else { image::ExtendedColorType::Rgb8 };
    let mut out = Vec::new();
    image::codecs::png::PngEncoder::new(&mut out)
        .write_image(&pixels, img.width as u32, img.height as u32, color)
        .map_err(|e| Error::data(format!("encoding png: {e}")))?;
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
