//! Radiance HDR files (`.hdr`, `.pic`; RGBE pixels) as OpenCV's decoder
//! reads them into an 8-bit image, which is what Caffe's `imread` asks for.
//!
//! OpenCV's rules, followed here: the file starts with `#?RGBE` or
//! `#?RADIANCE`; header lines are read as `fgets` does into a 128-byte
//! buffer (so at most 127 bytes at a time); a line that is exactly
//! `FORMAT=32-bit_rle_rgbe` must be among them, a lone newline ends them,
//! and the next line gives the size as `-Y <height> +X <width>` (other
//! orientations are not read). Scanlines of 8 to 32767 pixels may be
//! run-length encoded, channel by channel; a scanline that does not start
//! as one is, from that pixel on, the rest of the image as flat 4-byte pixels.
//!
//! A pixel `(r, g, b, e)` is `c·2^(e−136)` per channel (0 where `e` is 0),
//! then scaled by 255 in float and rounded to the nearest even integer, as
//! OpenCV's `convertTo` does: below 0 is 0, above 255 is 255, and a value
//! whose product reaches 2^31 is 0 (the x86 conversion's out-of-range
//! result, which OpenCV then saturates). Grey is `cvtColor`'s of that BGR.
use super::image::{ColorMode, Image};
use crate::util::limits;
use crate::{Error, Result};

pub const MAGIC: &[u8] = b"#?RGBE";
pub const MAGIC_ALT: &[u8] = b"#?RADIANCE";
/// `fgets` into OpenCV's 128-byte buffer reads at most this many bytes.
const LINE_BYTES: usize = 127;

fn corrupt(what: impl std::fmt::Display) -> Error {
    Error::data(format!("corrupt Radiance HDR image: {what}"))
}

struct Reader<'a> {
    bytes: &'a [u8],
    at: usize,
}

impl<'a> Reader<'a> {
    /// One `fgets`: through the next newline or 127 bytes; `None` at the end.
    fn line(&mut self) -> Option<&'a [u8]> {
        let rest = self.bytes.get(self.at..).filter(|r| !r.is_empty())?;
        let n = rest.iter().take(LINE_BYTES).position(|&b| b == b'\n').map_or(rest.len().min(LINE_BYTES), |i| i + 1);
        self.at += n;
        Some(&rest[..n])
    }

    fn take(&mut self, n: usize) -> Result<&'a [u8]> {
        let chunk = self.bytes.get(self.at..self.at + n).ok_or_else(|| corrupt("the pixels are cut short"))?;
        self.at += n;
        Ok(chunk)
    }
}

/// `sscanf(line, "-Y %d +X %d")`: both numbers, or `None`.
fn parse_size(line: &[u8]) -> Option<(i64, i64)> {
    let text = std::str::from_utf8(line).ok()?;
    let rest = text.strip_prefix("-Y")?;
    let (height, rest) = leading_int(rest)?;
    let rest = rest.trim_start().strip_prefix("+X")?;
    let (width, _) = leading_int(rest)?;
    Some((height, width))
}

/// `%d`: white space, an optional sign, digits.
fn leading_int(s: &str) -> Option<(i64, &str)> {
    let s = s.trim_start();
    let sign_len = usize::from(s.starts_with(['+', '-']));
    let digits = s[sign_len..].bytes().take_while(u8::is_ascii_digit).count();
    if digits == 0 {
        return None;
    }
    let end = sign_len + digits;
    // Beyond 32 bits the size is refused anyway; saturate rather than fail here.
    let value = s[..end].parse::<i64>().unwrap_or(if s.starts_with('-') { i64::MIN } else { i64::MAX });
    Some((value, &s[end..]))
}

/// One channel of an RGBE pixel as OpenCV's 8-bit conversion gives it.
fn channel(mantissa: u8, exponent: u8) -> u8 {
    if exponent == 0 {
        return 0;
    }
    // Exact in double, and representable in float (down to 2^-135).
    let value = (f64::from(mantissa) * 2f64.powi(i32::from(exponent) - 136)) as f32;
    let scaled = value * 255.0;
    if scaled >= 2_147_483_648.0 {
        return 0;
    }
    scaled.round_ties_even().clamp(0.0, 255.0) as u8
}

pub fn decode(bytes: &[u8], mode: ColorMode) -> Result<Image> {
    let mut reader = Reader { bytes, at: 0 };
    reader.line().ok_or_else(|| corrupt("the file is empty"))?;
    let mut has_format = false;
    loop {
        let line = reader.line().ok_or_else(|| corrupt("the header has no blank line ending it"))?;
        match line {
            b"\n" => break,
            b"FORMAT=32-bit_rle_rgbe\n" => has_format = true,
            _ => {}
        }
    }
    if !has_format {
        return Err(corrupt("the header has no FORMAT=32-bit_rle_rgbe line"));
    }
    let size_line = reader.line().ok_or_else(|| corrupt("the header ends before the image size"))?;
    let (height, width) = parse_size(size_line).ok_or_else(|| {
        corrupt(format!(
            "the image size '{}' is not '-Y <height> +X <width>'",
            String::from_utf8_lossy(size_line).trim_end()
        ))
    })?;
    if height <= 0 || width <= 0 || height > i64::from(i32::MAX) || width > i64::from(i32::MAX) {
        return Err(corrupt(format!("the image is {width}×{height}")));
    }
    limits::checked_count(&[4, height, width], 1, &format!("a {width}×{height} Radiance HDR image"))
        .map_err(|e| Error::data(e.to_string()))?;
    let (height, width) = (height as usize, width as usize);
    // RGBE quadruples, row by row.
    let mut rgbe: Vec<u8> = Vec::with_capacity(4 * width * height);
    if !(8..=0x7fff).contains(&width) {
        rgbe.extend_from_slice(reader.take(4 * width * height)?);
    } else {
        let mut scanline = vec![0u8; 4 * width];
        for row in 0..height {
            let start = reader.take(4)?;
            if start[0] != 2 || start[1] != 2 || start[2] & 0x80 != 0 {
                rgbe.extend_from_slice(start);
                // The rest of the image, flat.
                rgbe.extend_from_slice(reader.take(4 * (width * (height - row) - 1))?);
                break;
            }
            let declared = usize::from(start[2]) << 8 | usize::from(start[3]);
            if declared != width {
                return Err(corrupt(format!("scanline {row} is {declared} pixels wide, the image {width}")));
            }
            for plane in scanline.chunks_exact_mut(width) {
                let mut filled = 0;
                while filled < width {
                    let head = reader.take(2)?;
                    let (count, run) =
                        if head[0] > 128 { (usize::from(head[0] - 128), true) } else { (usize::from(head[0]), false) };
                    if count == 0 || count > width - filled {
                        return Err(corrupt(format!("bad run-length data in scanline {row}")));
                    }
                    if run {
                        plane[filled..filled + count].fill(head[1]);
                    } else {
                        plane[filled] = head[1];
                        plane[filled + 1..filled + count].copy_from_slice(reader.take(count - 1)?);
                    }
                    filled += count;
                }
            }
            for x in 0..width {
                rgbe.extend_from_slice(&[
                    scanline[x],
                    scanline[width + x],
                    scanline[2 * width + x],
                    scanline[3 * width + x],
                ]);
            }
        }
    }
    let rgb: Vec<u8> =
        rgbe.chunks_exact(4).flat_map(|p| [channel(p[0], p[3]), channel(p[1], p[3]), channel(p[2], p[3])]).collect();
    Ok(Image::from_colour_decoder(&rgb, height, width, mode == ColorMode::Gray))
}
