//! JPEG 2000 (`.jp2` files and bare `.j2k` codestreams) as OpenCV 4's
//! reader gives it to Caffe: decoded by OpenJPEG, the library OpenCV uses
//! (`csrc/jpeg2000.c` over the system's libopenjp2), then OpenCV's rules.
//!
//! Those rules: 1 to 4 unsigned components, none below 8 bits at the
//! highest precision, none subsampled or offset; each sample shifted right by
//! the highest precision less 8 and kept in 8 bits. By the colour space the
//! file declares: sRGB (or none) is R, G, B (+ alpha), read as BGR, and
//! turned grey by `cvtColor`; a colour read of fewer than 3 components fails.
//! Grey is its first component, repeated for colour. sYCC is Y, U, V, which
//! `cvtColor`'s YUV→BGR makes colour, and whose Y is the grey read. Other
//! colour spaces (CMYK, e-YCC) fail. Read as stored (encoded Datums), more
//! than one component is colour.
use super::image::{ColorMode, Image};
use crate::util::limits;
use crate::{Error, Result};

/// The JP2 signature box, and the start of a bare codestream (SOC, SIZ).
pub const JP2_MAGIC: [u8; 12] = [0, 0, 0, 0x0c, b'j', b'P', b' ', b' ', 13, 10, 0x87, 10];
pub const J2K_MAGIC: [u8; 4] = [0xff, 0x4f, 0xff, 0x51];

#[repr(C)]
struct Opaque {
    _private: [u8; 0],
}

#[repr(C)]
#[derive(Default)]
struct Info {
    x0: u32,
    y0: u32,
    x1: u32,
    y1: u32,
    components: u32,
    color_space: i32,
}

#[repr(C)]
struct Component {
    dx: u32,
    dy: u32,
    w: u32,
    h: u32,
    x0: u32,
    y0: u32,
    prec: u32,
    sgnd: u32,
    alpha: u32,
    data: *const i32,
}

extern "C" {
    fn caffe_j2k_read_header(
        data: *const u8,
        length: usize,
        codestream: i32,
        info: *mut Info,
        ok: *mut i32,
    ) -> *mut Opaque;
    fn caffe_j2k_decode(j: *mut Opaque, info: *mut Info) -> i32;
    fn caffe_j2k_component(j: *const Opaque, i: u32, out: *mut Component) -> i32;
    fn caffe_j2k_message(j: *const Opaque) -> *const std::os::raw::c_char;
    fn caffe_j2k_close(j: *mut Opaque);
}

/// OpenJPEG's colour spaces (`OPJ_CLRSPC_*`).
const UNKNOWN: i32 = -1;
const UNSPECIFIED: i32 = 0;
const SRGB: i32 = 1;
const GRAY: i32 = 2;
const SYCC: i32 = 3;

fn corrupt(what: impl std::fmt::Display) -> Error {
    Error::data(format!("corrupt JPEG 2000 image: {what}"))
}

fn unsupported(what: impl std::fmt::Display) -> Error {
    Error::data(format!("JPEG 2000 image not read (OpenCV refuses it too): {what}"))
}

/// The decoder, closed when dropped.
struct Decoder(*mut Opaque);

impl Drop for Decoder {
    fn drop(&mut self) {
        // SAFETY: the pointer came from caffe_j2k_read_header and is closed once.
        unsafe { caffe_j2k_close(self.0) }
    }
}

impl Decoder {
    fn message(&self) -> String {
        // SAFETY: the decoder is live; the message is a NUL-terminated buffer inside it.
        unsafe { std::ffi::CStr::from_ptr(caffe_j2k_message(self.0)) }.to_string_lossy().into_owned()
    }

    fn component(&self, i: u32) -> Option<Component> {
        let mut c =
            Component { dx: 0, dy: 0, w: 0, h: 0, x0: 0, y0: 0, prec: 0, sgnd: 0, alpha: 0, data: std::ptr::null() };
        // SAFETY: the decoder is live and `c` is a valid out-pointer.
        (unsafe { caffe_j2k_component(self.0, i, &mut c) } != 0).then_some(c)
    }
}

/// YUV→BGR as OpenCV's 8-bit `cvtColor` computes it (14-bit weights 1.140,
/// −0.581, −0.395, 2.032, rounded), as (r, g, b).
fn yuv_to_rgb(y: u8, u: u8, v: u8) -> [u8; 3] {
    let descale = |x: i32| (x + (1 << 13)) >> 14;
    let (y, u, v) = (i32::from(y), i32::from(u) - 128, i32::from(v) - 128);
    let clamp = |x: i32| x.clamp(0, 255) as u8;
    [clamp(y + descale(v * 18678)), clamp(y + descale(u * -6472 + v * -9519)), clamp(y + descale(u * 33292))]
}

pub fn decode(bytes: &[u8], mode: ColorMode) -> Result<Image> {
    let codestream = bytes.starts_with(&J2K_MAGIC);
    let mut info = Info::default();
    let mut ok = 0;
    // SAFETY: `bytes` outlives the decoder (dropped at the end of this call);
    // info and ok are valid out-pointers.
    let raw = unsafe { caffe_j2k_read_header(bytes.as_ptr(), bytes.len(), i32::from(codestream), &mut info, &mut ok) };
    if raw.is_null() {
        return Err(Error::data("JPEG 2000: out of memory starting the decoder".to_string()));
    }
    let decoder = Decoder(raw);
    if ok == 0 {
        return Err(corrupt(decoder.message()));
    }
    let width = info.x1.saturating_sub(info.x0) as usize;
    let height = info.y1.saturating_sub(info.y0) as usize;
    let header_components = info.components;
    if !(1..=4).contains(&header_components) {
        return Err(unsupported(format!("{header_components} components (1 to 4 are read)")));
    }
    let mut max_prec = 0;
    let mut alpha = false;
    for i in 0..header_components {
        let c = decoder.component(i).ok_or_else(|| corrupt(format!("component {i} is missing")))?;
        if c.sgnd != 0 {
            return Err(unsupported(format!("component {i} is signed")));
        }
        if alpha && c.alpha != 0 {
            return Err(unsupported(format!("component {i} is a second alpha channel")));
        }
        alpha |= c.alpha != 0;
        max_prec = max_prec.max(c.prec);
    }
    if max_prec < 8 {
        return Err(unsupported(format!("{max_prec}-bit samples (8 bits or more are read)")));
    }
    let channels = match mode {
        ColorMode::Gray => 1,
        ColorMode::Color => 3,
        ColorMode::Native => {
            if header_components > 1 {
                3
            } else {
                1
            }
        }
    };
    // OpenJPEG holds each component as 32-bit samples.
    limits::checked_count(
        &[i64::from(header_components), height as i64, width as i64],
        4,
        &format!("a {width}×{height} JPEG 2000 image"),
    )
    .map_err(|e| Error::data(e.to_string()))?;
    // SAFETY: the decoder is live and its header was read; info is a valid out-pointer.
    if unsafe { caffe_j2k_decode(decoder.0, &mut info) } == 0 {
        return Err(corrupt(decoder.message()));
    }
    let shift = max_prec.saturating_sub(8).min(31);
    let pixels = width * height;
    let mut planes: Vec<&[i32]> = Vec::new();
    for i in 0..info.components {
        let c = decoder.component(i).ok_or_else(|| corrupt(format!("component {i} is missing")))?;
        if c.dx != 1 || c.dy != 1 || c.x0 != 0 || c.y0 != 0 || c.w as usize != width || c.h as usize != height {
            return Err(unsupported(format!(
                "component {i} is {}×{} at {},{} with subsampling {}×{} in a {width}×{height} image",
                c.w, c.h, c.x0, c.y0, c.dx, c.dy
            )));
        }
        if c.data.is_null() {
            return Err(corrupt(format!("component {i} has no data")));
        }
        // SAFETY: OpenJPEG allocated w·h samples for this component, which
        // lives as long as the decoder (dropped after the planes' last use).
        planes.push(unsafe { std::slice::from_raw_parts(c.data, pixels) });
    }
    let sample = |plane: &[i32], i: usize| (plane[i] >> shift) as u8;
    let n = planes.len();
    let first = |repeat: usize| -> Vec<u8> {
        (0..pixels).flat_map(|i| std::iter::repeat_n(sample(planes[0], i), repeat)).collect()
    };
    Ok(match info.color_space {
        UNKNOWN | UNSPECIFIED | SRGB => {
            if channels == 1 && n <= 2 {
                Image { channels: 1, height, width, data: first(1) }
            } else if n >= 3 {
                let rgb: Vec<u8> = (0..pixels)
                    .flat_map(|i| [sample(planes[0], i), sample(planes[1], i), sample(planes[2], i)])
                    .collect();
                Image::from_colour_decoder(&rgb, height, width, channels == 1)
            } else {
                return Err(unsupported(format!("a colour read of {n} components in the sRGB colour space")));
            }
        }
        GRAY => Image::from_interleaved_rgb(&first(channels), channels, height, width),
        SYCC => {
            if channels == 1 {
                Image { channels: 1, height, width, data: first(1) }
            } else if n >= 3 {
                let rgb: Vec<u8> = (0..pixels)
                    .flat_map(|i| yuv_to_rgb(sample(planes[0], i), sample(planes[1], i), sample(planes[2], i)))
                    .collect();
                Image::from_interleaved_rgb(&rgb, 3, height, width)
            } else {
                return Err(unsupported(format!("a colour read of {n} components in the sYCC colour space")));
            }
        }
        other => return Err(unsupported(format!("colour space {other} (sRGB, grey and sYCC are read)"))),
    })
}
