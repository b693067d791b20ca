//! GIF as OpenCV's own GIF decoder reads it (OpenCV 4.11 and later; earlier
//! builds refuse GIF files): the first frame, drawn on a canvas of the
//! logical screen's size that starts as the global palette's background
//! colour, so pixels outside the frame and transparent pixels show that
//! colour (black without a global palette). A pixel's index is looked up in
//! the frame's local palette if it is within it, else in the global one.
//! Colour is the canvas's BGR (three channels even for a grey palette, as
//! OpenCV's decoder is a 3-channel one), grey is `cvtColor`'s of it.
//!
//! LZW decoding and de-interlacing are the `gif` crate's; for a well-formed
//! file they are the format's, so the indices are OpenCV's. A file OpenCV
//! would fail on (a frame outside the screen, an index past both palettes, a
//! background index past the global palette, data ending early) is an error.
use std::io::Cursor;
use std::num::NonZeroU64;

use super::image::{ColorMode, Image};
use crate::util::limits;
use crate::{Error, Result};

/// Offset of the logical screen's background colour index in the file:
/// after the signature (6 bytes), the screen's width and height (2 each) and
/// its flags (1).
const BACKGROUND_INDEX_OFFSET: usize = 11;

fn corrupt(what: impl std::fmt::Display) -> Error {
    Error::data(format!("corrupt GIF image: {what}"))
}

pub fn decode(bytes: &[u8], mode: ColorMode) -> Result<Image> {
    let mut options = ::gif::DecodeOptions::new();
    options.set_color_output(::gif::ColorOutput::Indexed);
    // Frames may lie outside the screen here; that check is OpenCV's, below.
    options.check_frame_consistency(false);
    options.set_memory_limit(match NonZeroU64::new(limits::max_memory()) {
        Some(n) => ::gif::MemoryLimit::Bytes(n),
        None => ::gif::MemoryLimit::Unlimited,
    });
    let mut decoder = options.read_info(Cursor::new(bytes)).map_err(corrupt)?;
    let (width, height) = (usize::from(decoder.width()), usize::from(decoder.height()));
    if width == 0 || height == 0 {
        return Err(corrupt(format!("the screen is {width}×{height}")));
    }
    // The canvas is made before the pixels are decoded: a few hostile bytes
    // can claim a 65535×65535 screen.
    limits::checked_count(&[4, height as i64, width as i64], 1, &format!("a {width}×{height} GIF image"))
        .map_err(|e| Error::data(e.to_string()))?;
    let global: Vec<u8> = decoder.global_palette().map(<[u8]>::to_vec).unwrap_or_default();
    let mut background = [0u8; 3];
    if !global.is_empty() {
        let index = usize::from(bytes.get(BACKGROUND_INDEX_OFFSET).copied().unwrap_or(0));
        background =
            global.get(3 * index..3 * index + 3).and_then(|c| <[u8; 3]>::try_from(c).ok()).ok_or_else(|| {
                corrupt(format!(
                    "the background colour {index} is past the {} colours of the palette",
                    global.len() / 3
                ))
            })?;
    }
    let frame = decoder.read_next_frame().map_err(corrupt)?.ok_or_else(|| corrupt("it holds no image"))?;
    let (left, top) = (usize::from(frame.left), usize::from(frame.top));
    let (frame_width, frame_height) = (usize::from(frame.width), usize::from(frame.height));
    if frame_width == 0 || frame_height == 0 || left + frame_width > width || top + frame_height > height {
        return Err(corrupt(format!(
            "its first frame ({frame_width}×{frame_height} at {left},{top}) is not within the {width}×{height} screen"
        )));
    }
    let local: &[u8] = frame.palette.as_deref().unwrap_or_default();
    let mut rgb: Vec<u8> = background.iter().copied().cycle().take(3 * width * height).collect();
    for (row, indices) in frame.buffer.chunks_exact(frame_width).take(frame_height).enumerate() {
        for (col, &index) in indices.iter().enumerate() {
            if frame.transparent == Some(index) {
                continue;
            }
            let at = 3 * usize::from(index);
            let colour = local.get(at..at + 3).or_else(|| global.get(at..at + 3)).ok_or_else(|| {
                corrupt(format!(
                    "colour index {index} is past its palettes ({} and {} colours)",
                    local.len() / 3,
                    global.len() / 3
                ))
            })?;
            let pixel = 3 * ((top + row) * width + left + col);
            rgb[pixel..pixel + 3].copy_from_slice(colour);
        }
    }
    Ok(Image::from_colour_decoder(&rgb, height, width, mode == ColorMode::Gray))
}
