//! JPEG as OpenCV's `imread`/`imdecode` decode it and `imencode` writes it,
//! through the system's libjpeg (`csrc/jpeg.c`). Decoding: libjpeg's IDCT,
//! chroma upsampling and colour conversion, the luma plane itself for a grey
//! read, OpenCV's own CMYK conversion, and the Exif orientation applied
//! (OpenCV 3.1 and later turn the image upright; older ones did not).
//! Encoding: libjpeg's defaults at a quality, byte for byte OpenCV's file.
use std::ffi::{c_char, c_int, CStr};

use super::image::{exif_orientation, ColorMode, Image};
use crate::util::limits;
use crate::{Error, Result};

extern "C" {
    fn caffe_tch_jpeg_header(
        data: *const u8,
        len: usize,
        width: *mut c_int,
        height: *mut c_int,
        components: *mut c_int,
        exif: *mut u8,
        exif_cap: usize,
        exif_len: *mut usize,
        err: *mut c_char,
        err_len: usize,
    ) -> c_int;
    fn caffe_tch_jpeg_decode(
        data: *const u8,
        len: usize,
        grey: c_int,
        out: *mut u8,
        out_len: usize,
        err: *mut c_char,
        err_len: usize,
    ) -> c_int;
    fn caffe_tch_jpeg_encode(
        pixels: *const u8,
        width: c_int,
        height: c_int,
        channels: c_int,
        quality: c_int,
        out: *mut *mut u8,
        out_len: *mut std::ffi::c_ulong,
        err: *mut c_char,
        err_len: usize,
    ) -> c_int;
    fn caffe_tch_jpeg_free(bytes: *mut u8);
}

/// Bytes of the Exif block kept for its orientation tag, which sits in the
/// first directory near the start.
const EXIF_PREFIX: usize = 4096;

fn message(buf: &[c_char]) -> String {
    // SAFETY: the shim writes a NUL-terminated string into buf (snprintf), and
    // buf starts zeroed, so a NUL is always found within it.
    let text = unsafe { CStr::from_ptr(buf.as_ptr()) }.to_string_lossy().trim().to_string();
    if text.is_empty() {
        "libjpeg failed".into()
    } else {
        text
    }
}

pub fn decode(bytes: &[u8], mode: ColorMode) -> Result<Image> {
    let corrupt = |why: String| Error::data(format!("corrupt Jpeg image: {why}"));
    let mut err = [0 as c_char; 256];
    let (mut width, mut height, mut components) = (0 as c_int, 0 as c_int, 0 as c_int);
    let mut exif = vec![0u8; EXIF_PREFIX];
    let mut exif_len = 0usize;
    // SAFETY: every pointer is valid for the length passed with it; the shim
    // reads `bytes` only and writes the outputs, err and at most EXIF_PREFIX
    // bytes of exif; libjpeg's fatal errors longjmp within the C function.
    let rc = unsafe {
        caffe_tch_jpeg_header(
            bytes.as_ptr(),
            bytes.len(),
            &mut width,
            &mut height,
            &mut components,
            exif.as_mut_ptr(),
            exif.len(),
            &mut exif_len,
            err.as_mut_ptr(),
            err.len(),
        )
    };
    if rc != 0 {
        return Err(corrupt(message(&err)));
    }
    exif.truncate(exif_len.min(EXIF_PREFIX));
    // The header's size is checked before the pixels are allocated: a few
    // hostile bytes can claim 65535×65535 pixels.
    limits::checked_count(&[3, i64::from(height), i64::from(width)], 4, &format!("a {width}×{height} Jpeg image"))
        .map_err(|e| Error::data(e.to_string()))?;
    let grey = match mode {
        ColorMode::Gray => true,
        ColorMode::Color => false,
        // OpenCV's ANYCOLOR: a one-component file stays grey.
        ColorMode::Native => components == 1,
    };
    let (w, h) = (width as usize, height as usize);
    let channels = if grey { 1 } else { 3 };
    let mut pixels = vec![0u8; w * h * channels];
    // SAFETY: as above; `pixels` holds exactly the w·h·channels bytes the shim
    // checks against the decoder's output size before writing a row.
    let rc = unsafe {
        caffe_tch_jpeg_decode(
            bytes.as_ptr(),
            bytes.len(),
            c_int::from(grey),
            pixels.as_mut_ptr(),
            pixels.len(),
            err.as_mut_ptr(),
            err.len(),
        )
    };
    if rc != 0 {
        return Err(corrupt(message(&err)));
    }
    let image = Image::from_interleaved_rgb(&pixels, channels, h, w);
    Ok(match exif_orientation(&exif) {
        Some(orientation) => image.oriented(orientation),
        None => image,
    })
}

/// Encodes a 1- or 3-channel image (BGR planes) as OpenCV's
/// `imencode(".jpg", img, {IMWRITE_JPEG_QUALITY, quality})` does.
pub fn encode(img: &Image, quality: i32) -> Result<Vec<u8>> {
    let (h, w) = (img.height, img.width);
    let pixels = img.to_interleaved_rgb()?;
    // libjpeg's limit on either side.
    let side = |n: usize| c_int::try_from(n).ok().filter(|&v| (1..=65_500).contains(&v));
    let (Some(width), Some(height)) = (side(w), side(h)) else {
        return Err(Error::data(format!("cannot encode a {w}×{h} image as JPEG (1 to 65500 pixels a side)")));
    };
    let mut err = [0 as c_char; 256];
    let mut out: *mut u8 = std::ptr::null_mut();
    let mut out_len: std::ffi::c_ulong = 0;
    // SAFETY: `pixels` holds height rows of width·channels bytes; the shim
    // writes a malloc'd buffer and its length to out/out_len (freed below),
    // and a NUL-terminated message into err.
    let rc = unsafe {
        caffe_tch_jpeg_encode(
            pixels.as_ptr(),
            width,
            height,
            img.channels as c_int,
            quality,
            &mut out,
            &mut out_len,
            err.as_mut_ptr(),
            err.len(),
        )
    };
    if rc != 0 || out.is_null() {
        return Err(Error::data(format!("encoding JPEG: {}", message(&err))));
    }
    // SAFETY: on success out points at out_len bytes libjpeg wrote; they are
    // copied before the buffer is freed, once.
    let bytes = unsafe { std::slice::from_raw_parts(out, out_len as usize) }.to_vec();
    // SAFETY: out came from the shim's malloc and is not used after this.
    unsafe { caffe_tch_jpeg_free(out) };
    Ok(bytes)
}
