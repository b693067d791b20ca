//! Sun raster files (`.ras`, `.sr`) as OpenCV's decoder reads them: a
//! 32-byte big-endian header (magic, width, height, depth, length, type,
//! colour-map type, colour-map length), an optional colour map of up to
//! `2^depth` entries stored as all reds, then all greens, then all blues,
//! and rows padded to an even number of bytes.
//!
//! What OpenCV accepts, and so what is read here: depths 1 and 8 (indices
//! into the colour map, or into a grey ramp when there is none), 24 (B, G, R)
//! and 32 (X, B, G, R); the old and standard types only (OpenCV's check for
//! the run-length and RGB types compares the wrong field, so it refuses
//! those files); a colour map only for depths up to 8. An image whose colour
//! map is all greys, or that has none, is one channel as stored.
//!
//! One difference, on purpose: read as grey, a file without a colour map
//! (depth 1 or 8; what `cv2.imwrite` writes for a grey image) comes out black
//! from OpenCV, whose grey path only fills its lookup table from a colour
//! map. Here it gives its pixels (the grey ramp), as OpenCV's colour path
//! does.
use super::image::{gray_of, ColorMode, Image};
use crate::util::limits;
use crate::{Error, Result};

pub const MAGIC: [u8; 4] = [0x59, 0xA6, 0x6A, 0x95];
const HEADER_BYTES: usize = 32;
const TYPE_OLD: u32 = 0;
const TYPE_STANDARD: u32 = 1;
const MAP_NONE: u32 = 0;
const MAP_EQUAL_RGB: u32 = 1;

fn corrupt(what: impl std::fmt::Display) -> Error {
    Error::data(format!("corrupt Sun raster image: {what}"))
}

pub fn decode(bytes: &[u8], mode: ColorMode) -> Result<Image> {
    let word = |i: usize| -> Result<u32> {
        bytes
            .get(4 * i..4 * i + 4)
            .map(|b| u32::from_be_bytes([b[0], b[1], b[2], b[3]]))
            .ok_or_else(|| corrupt(format!("the header is cut short at {} bytes", bytes.len())))
    };
    let (width, height, depth) = (word(1)?, word(2)?, word(3)?);
    let (kind, map_type, map_length) = (word(5)?, word(6)?, word(7)?);
    // OpenCV reads the sizes as signed 32-bit numbers.
    if width == 0 || height == 0 || width > i32::MAX as u32 || height > i32::MAX as u32 {
        return Err(corrupt(format!("the image is {width}×{height}")));
    }
    if ![1, 8, 24, 32].contains(&depth) {
        return Err(corrupt(format!("depth {depth} (1, 8, 24 or 32 bits are read)")));
    }
    if kind != TYPE_OLD && kind != TYPE_STANDARD {
        return Err(Error::data(format!(
            "Sun raster type {kind} is not read (only the old and standard types, 0 and 1, as OpenCV reads them)"
        )));
    }
    let entries = if depth <= 8 { 1usize << depth } else { 0 };
    let map_ok = (map_type == MAP_NONE && map_length == 0)
        || (map_type == MAP_EQUAL_RGB && map_length > 0 && map_length as usize <= 3 * entries);
    if !map_ok {
        return Err(corrupt(format!("a colour map of type {map_type} and {map_length} bytes for depth {depth}")));
    }
    let (width, height) = (width as usize, height as usize);
    limits::checked_count(&[3, height as i64, width as i64], 1, &format!("a {width}×{height} Sun raster image"))
        .map_err(|e| Error::data(e.to_string()))?;
    let map_end = HEADER_BYTES + map_length as usize;
    let map = bytes.get(HEADER_BYTES..map_end).ok_or_else(|| corrupt("the colour map is cut short"))?;
    // Palette entries as (r, g, b); without a map, OpenCV's grey ramp.
    let palette: Vec<[u8; 3]> = if map.is_empty() {
        (0..entries).map(|i| (i * 255 / (entries.max(2) - 1)) as u8).map(|v| [v, v, v]).collect()
    } else {
        let n = map.len() / 3;
        (0..entries).map(|i| if i < n { [map[i], map[i + n], map[i + 2 * n]] } else { [0, 0, 0] }).collect()
    };
    let indexed = depth <= 8;
    let colour_source = !indexed || palette.iter().any(|p| p[0] != p[1] || p[0] != p[2]);
    let grey_out = match mode {
        ColorMode::Gray => true,
        ColorMode::Color => false,
        ColorMode::Native => !colour_source,
    };
    let row_bytes = (width * depth as usize).div_ceil(8);
    let pitch = (row_bytes + 1) & !1;
    let rows = bytes.get(map_end..).unwrap_or_default();
    if rows.len() / pitch < height {
        return Err(corrupt(format!(
            "{height} rows of {pitch} bytes need {} bytes after the header, the file has {}",
            height * pitch,
            rows.len()
        )));
    }
    // Each pixel as (r, g, b).
    let pixel = |row: &[u8], x: usize| -> [u8; 3] {
        match depth {
            1 => palette[usize::from((row[x / 8] >> (7 - x % 8)) & 1)],
            8 => palette[usize::from(row[x])],
            24 => [row[3 * x + 2], row[3 * x + 1], row[3 * x]],
            _ => [row[4 * x + 3], row[4 * x + 2], row[4 * x + 1]],
        }
    };
    let channels = if grey_out { 1 } else { 3 };
    let mut out = Vec::with_capacity(channels * width * height);
    for row in rows.chunks_exact(pitch).take(height) {
        for x in 0..width {
            let [r, g, b] = pixel(row, x);
            if grey_out {
                // OpenCV's 14-bit weights (`icvCvt_BGR2Gray`), as for colour maps.
                out.push(gray_of(r, g, b));
            } else {
                out.extend_from_slice(&[r, g, b]);
            }
        }
    }
    Ok(Image::from_interleaved_rgb(&out, channels, height, width))
}
