//! `Datum`, Caffe's record: a C×H×W image as raw uint8 bytes, as floats
//! (`float_data`), or as an encoded image file (`encoded: true`), plus an
//! integer label.
use std::path::Path;

use prost::Message;

use super::image::{self, ColorMode, Image};
use crate::proto::caffe::Datum;
use crate::util::limits;
use crate::{Error, Result};

/// The pixel values of a sample, as stored.
#[derive(Debug, Clone, PartialEq)]
pub enum Values {
    U8(Vec<u8>),
    F32(Vec<f32>),
}

/// A decoded record: C×H×W values and the label as a float (what a data layer's
/// label top holds).
#[derive(Debug, Clone, PartialEq)]
pub struct Sample {
    pub channels: usize,
    pub height: usize,
    pub width: usize,
    pub values: Values,
    pub label: f32,
}

impl Sample {
    pub fn count(&self) -> usize {
        self.channels * self.height * self.width
    }

    /// The value at flat C×H×W index `i`, as a float.
    #[inline]
    pub fn at(&self, i: usize) -> f32 {
        match &self.values {
            Values::U8(v) => v[i] as f32,
            Values::F32(v) => v[i],
        }
    }

    pub fn from_image(img: Image, label: f32) -> Sample {
        Sample { channels: img.channels, height: img.height, width: img.width, values: Values::U8(img.data), label }
    }
}

/// Parses a record's bytes as a Datum. The error says what is wrong, without
/// the source or key (the caller adds them).
pub fn parse(bytes: &[u8]) -> Result<Datum> {
    Datum::decode(bytes).map_err(|e| {
        Error::data(format!("not a valid Datum (truncated or corrupt record, {} bytes): {e}", bytes.len()))
    })
}

/// Caffe's colour choice for encoded records: `force_color` / `force_gray`, else as stored.
pub fn color_mode(force_color: bool, force_gray: bool) -> Result<ColorMode> {
    match (force_color, force_gray) {
        (true, true) => Err(Error::data("cannot set both force_color and force_gray")),
        (true, false) => Ok(ColorMode::Color),
        (false, true) => Ok(ColorMode::Gray),
        (false, false) => Ok(ColorMode::Native),
    }
}

/// Decodes a Datum's pixels: encoded bytes through the image decoder, raw bytes
/// or floats checked against channels×height×width.
pub fn decode(datum: Datum, mode: ColorMode) -> Result<Sample> {
    let label = datum.label() as f32;
    if datum.encoded() {
        let bytes = datum.data.unwrap_or_default();
        let img =
            image::decode(&bytes, mode).map_err(|e| Error::data(format!("encoded Datum does not decode: {e}")))?;
        return Ok(Sample::from_image(img, label));
    }
    let (c, h, w) = (datum.channels(), datum.height(), datum.width());
    if c <= 0 || h <= 0 || w <= 0 {
        return Err(Error::data(format!("Datum has shape {c}×{h}×{w}; channels, height and width must be positive")));
    }
    // The declared size is checked before anything relies on it: c·h·w of
    // three i32s can overflow, and a record can claim more than memory holds.
    let need = limits::checked_count(&[c.into(), h.into(), w.into()], 4, &format!("a {c}×{h}×{w} Datum"))
        .map_err(|e| Error::data(e.to_string()))? as usize;
    let (c, h, w) = (c as usize, h as usize, w as usize);
    let data = datum.data.unwrap_or_default();
    let values = if !data.is_empty() {
        if data.len() != need {
            return Err(Error::data(format!(
                "Datum holds {} data bytes but {c}×{h}×{w} needs {need} (truncated record?)",
                data.len()
            )));
        }
        Values::U8(data)
    } else {
        if datum.float_data.len() != need {
            return Err(Error::data(format!(
                "Datum holds {} float_data values but {c}×{h}×{w} needs {need} (truncated record?)",
                datum.float_data.len()
            )));
        }
        Values::F32(datum.float_data)
    };
    Ok(Sample { channels: c, height: h, width: w, values, label })
}

/// Parses and decodes in one step.
pub fn parse_and_decode(bytes: &[u8], mode: ColorMode) -> Result<Sample> {
    decode(parse(bytes)?, mode)
}

/// A raw-pixel Datum as Caffe's `CVMatToDatum` writes it (shape, `encoded: false`, data) plus the label.
pub fn from_image(img: &Image, label: i32) -> Datum {
    Datum {
        channels: Some(img.channels as i32),
        height: Some(img.height as i32),
        width: Some(img.width as i32),
        data: Some(img.data.clone()),
        label: Some(label),
        float_data: vec![],
        encoded: Some(false),
    }
}

/// An encoded Datum as Caffe writes it: just the file bytes, the label and `encoded: true`.
pub fn encoded(bytes: Vec<u8>, label: i32) -> Datum {
    Datum { data: Some(bytes), label: Some(label), encoded: Some(true), ..Default::default() }
}

/// Caffe's ReadImageToDatum: the image at `path` (resized to `height`×`width`
/// unless either is 0; BGR, or one gray channel without `is_color`) as raw
/// pixels, or with an `encoding` (png, jpg) encoded: the file's own bytes when
/// it is already that format at the asked size and colour, else the image
/// encoded anew.
pub fn read_image(
    path: &Path,
    label: i32,
    height: usize,
    width: usize,
    is_color: bool,
    encoding: &str,
) -> Result<Datum> {
    let img = image::read_file(path, height, width, is_color)?;
    image_record(&img, path, label, (height, width, is_color), encoding)
}

/// The record [`read_image`] makes of `img`, read from `path` with
/// `(height, width, is_color)`: an error here is the encoding's, not the file's.
pub fn image_record(img: &Image, path: &Path, label: i32, read: (usize, usize, bool), encoding: &str) -> Result<Datum> {
    let (height, width, is_color) = read;
    if encoding.is_empty() {
        return Ok(from_image(img, label));
    }
    let name = path.to_string_lossy();
    if (img.channels == 3) == is_color && height == 0 && width == 0 && image::extension_matches(&name, encoding) {
        let bytes = std::fs::read(path).map_err(|e| Error::io(path, e))?;
        return Ok(self::encoded(bytes, label));
    }
    let bytes = image::encode(img, encoding).map_err(|e| Error::invalid(format!("{name}: {e}")))?;
    Ok(self::encoded(bytes, label))
}

/// The serialized bytes of a Datum (what a DB stores).
pub fn to_bytes(d: &Datum) -> Vec<u8> {
    d.encode_to_vec()
}
