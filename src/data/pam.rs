//! PAM (`P7`) files where OpenCV's reader departs from the `image` crate's:
//! it copies a 3-sample pixel as B, G, R in a colour read, whatever the
//! TUPLTYPE says (its own writer stores BGR under no TUPLTYPE), while a grey
//! read weighs the samples as R, G, B; and it reads grey+alpha and RGBA
//! files (TUPLTYPE `GRAYSCALE_ALPHA`, `RGB_ALPHA`), which the `image` crate
//! does not: colour from the first one or three samples, grey as the first
//! sample alone. 16-bit samples keep their high byte.
use super::image::{ColorMode, Image};
use crate::util::limits;
use crate::{Error, Result};

/// The header fields OpenCV's reader uses.
pub struct Header {
    pub width: usize,
    pub height: usize,
    pub depth: usize,
    pub max_value: u32,
    pub tuple_type: Option<String>,
    /// Where the samples start.
    pub data_at: usize,
}

/// The header of a PAM file, or `None` for another format or a header that
/// does not parse (the `image` crate's decoder then says what is wrong).
pub fn header(bytes: &[u8]) -> Option<Header> {
    if !bytes.starts_with(b"P7\n") && !bytes.starts_with(b"P7\r") {
        return None;
    }
    let end = bytes.windows(7).position(|w| &w[..6] == b"ENDHDR" && (w[6] == b'\n' || w[6] == b'\r'))?;
    let text = std::str::from_utf8(&bytes[3..end]).ok()?;
    let (mut width, mut height, mut depth, mut max_value, mut tuple_type) = (None, None, None, None, None);
    for line in text.lines().map(str::trim).filter(|l| !l.is_empty() && !l.starts_with('#')) {
        let (key, value) = line.split_once(char::is_whitespace).unwrap_or((line, ""));
        let value = value.trim();
        match key {
            "WIDTH" => width = value.parse::<usize>().ok(),
            "HEIGHT" => height = value.parse::<usize>().ok(),
            "DEPTH" => depth = value.parse::<usize>().ok(),
            "MAXVAL" => max_value = value.parse::<u32>().ok(),
            "TUPLTYPE" => tuple_type = Some(value.to_string()),
            _ => return None,
        }
    }
    Some(Header { width: width?, height: height?, depth: depth?, max_value: max_value?, tuple_type, data_at: end + 7 })
}

/// Whether a colour read takes each pixel's three samples as B, G, R.
pub fn samples_read_as_bgr(h: &Header) -> bool {
    h.depth == 3
}

/// A grey+alpha or RGBA file, as OpenCV reads it; `None` for other PAM files.
pub fn decode_with_alpha(h: &Header, bytes: &[u8], mode: ColorMode) -> Option<Result<Image>> {
    let kind = h.tuple_type.as_deref();
    let colour = match (h.depth, kind) {
        (2, Some("GRAYSCALE_ALPHA")) => false,
        (4, Some("RGB_ALPHA")) => true,
        (2 | 4, _) => {
            return Some(Err(Error::data(format!(
                "PAM image not read: {} samples a pixel need TUPLTYPE {} (OpenCV refuses it without)",
                h.depth,
                if h.depth == 2 { "GRAYSCALE_ALPHA" } else { "RGB_ALPHA" }
            ))))
        }
        _ => return None,
    };
    Some(read_with_alpha(h, bytes, mode, colour))
}

fn read_with_alpha(h: &Header, bytes: &[u8], mode: ColorMode, colour: bool) -> Result<Image> {
    let corrupt = |what: String| Error::data(format!("corrupt PAM image: {what}"));
    if h.width == 0 || h.height == 0 || h.max_value == 0 || h.max_value > 65535 {
        return Err(corrupt(format!("{}×{} with MAXVAL {}", h.width, h.height, h.max_value)));
    }
    let sample_bytes: usize = if h.max_value > 255 { 2 } else { 1 };
    limits::checked_count(
        &[h.depth as i64, h.height as i64, h.width as i64],
        sample_bytes as u64,
        &format!("a {}×{} PAM image", h.width, h.height),
    )
    .map_err(|e| Error::data(e.to_string()))?;
    let count = h.width * h.height * h.depth;
    let data = bytes
        .get(h.data_at..h.data_at + count * sample_bytes)
        .ok_or_else(|| corrupt(format!("{count} samples need {} bytes after the header", count * sample_bytes)))?;
    // The high byte of a big-endian 16-bit sample, as OpenCV narrows it.
    let samples: Vec<u8> = data.chunks_exact(sample_bytes).map(|s| s[0]).collect();
    let pixels = samples.chunks_exact(h.depth);
    let (width, height) = (h.width, h.height);
    Ok(match mode {
        ColorMode::Gray => Image { channels: 1, height, width, data: pixels.map(|p| p[0]).collect() },
        ColorMode::Color | ColorMode::Native => {
            let rgb: Vec<u8> = pixels.flat_map(|p| if colour { [p[0], p[1], p[2]] } else { [p[0]; 3] }).collect();
            Image::from_interleaved_rgb(&rgb, 3, height, width)
        }
    })
}
