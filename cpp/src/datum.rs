//! `caffe::Datum`, a DB record: the header keeps its fields, and this module
//! serializes and parses them as the library's Datum (`SerializeToString`,
//! `ParseFromString`), decodes encoded images (`DecodeDatumNative`,
//! `DecodeDatum`) and reads image files into records (`ReadImageToDatum`,
//! `ReadFileToDatum`), each as caffe-tch's own tools do.
use std::ffi::{c_char, c_int};
use std::path::Path;

use caffe_tch::data::datum;
use caffe_tch::data::image::{self, ColorMode};
use caffe_tch::proto::caffe::Datum;
use caffe_tch::{Error, Result};

use crate::{guarded, raw_values, text};

/// Which optional fields are set (protobuf's has-bits), as the header's `has_` masks.
const HAS_CHANNELS: u32 = 1;
const HAS_HEIGHT: u32 = 2;
const HAS_WIDTH: u32 = 4;
const HAS_DATA: u32 = 8;
const HAS_LABEL: u32 = 16;
const HAS_ENCODED: u32 = 32;

/// A Datum's fields as the header holds them; the pointers are the header's
/// (or, filled by `caffe_tch_datum_fields`, a handle's) and live for the call.
#[repr(C)]
pub struct DatumFields {
    has: u32,
    channels: i32,
    height: i32,
    width: i32,
    label: i32,
    encoded: c_int,
    data: *const u8,
    data_len: usize,
    float_data: *const f32,
    float_len: usize,
}

/// A Datum this library made (parsed, decoded or read from a file), which
/// the header copies out of with `caffe_tch_datum_fields` and then frees.
pub struct DatumHandle(Datum);

/// # Safety
/// `f.data` and `f.float_data` point to `data_len` and `float_len` values (or are null with length 0).
unsafe fn to_datum(f: &DatumFields) -> Datum {
    let has = |bit: u32| f.has & bit != 0;
    // SAFETY: the header passes its data string's and float_data vector's pointers and lengths.
    let (data, floats) = unsafe { (raw_values(f.data, f.data_len), raw_values(f.float_data, f.float_len)) };
    Datum {
        channels: has(HAS_CHANNELS).then_some(f.channels),
        height: has(HAS_HEIGHT).then_some(f.height),
        width: has(HAS_WIDTH).then_some(f.width),
        data: has(HAS_DATA).then(|| data.to_vec()),
        label: has(HAS_LABEL).then_some(f.label),
        float_data: floats.to_vec(),
        encoded: has(HAS_ENCODED).then_some(f.encoded != 0),
    }
}

fn handle(d: Datum) -> *mut DatumHandle {
    Box::into_raw(Box::new(DatumHandle(d)))
}

/// The serialized record (protobuf's wire format, as Caffe's writes it) into
/// `out` when `cap` holds it; its length, or -1 on error.
/// # Safety
/// `f` is the header's fields; `out` has room for `cap` bytes (or is null with cap 0).
#[no_mangle]
pub unsafe extern "C" fn caffe_tch_datum_serialize(f: *const DatumFields, out: *mut u8, cap: usize) -> isize {
    guarded(-1, || {
        // SAFETY: the header passes its own fields.
        let f = unsafe { f.as_ref() }.ok_or_else(|| Error::invalid("Datum::SerializeToString: null datum"))?;
        // SAFETY: as the function's contract says.
        let bytes = datum::to_bytes(&unsafe { to_datum(f) });
        if bytes.len() <= cap && !out.is_null() {
            // SAFETY: `out` has room for `cap` >= bytes.len() bytes.
            unsafe { std::ptr::copy_nonoverlapping(bytes.as_ptr(), out, bytes.len()) };
        }
        Ok(bytes.len() as isize)
    })
}

/// A record's bytes parsed as a Datum; null (and the error) when they are not one.
/// # Safety
/// `bytes` points to `len` bytes.
#[no_mangle]
pub unsafe extern "C" fn caffe_tch_datum_parse(bytes: *const u8, len: usize) -> *mut DatumHandle {
    guarded(std::ptr::null_mut(), || {
        // SAFETY: `bytes` points to `len` bytes.
        Ok(handle(datum::parse(unsafe { raw_values(bytes, len) })?))
    })
}

/// A handle's fields, pointing into the handle (valid until it is freed).
/// # Safety
/// `h` came from this module and is not freed; `out` is writable.
#[no_mangle]
pub unsafe extern "C" fn caffe_tch_datum_fields(h: *const DatumHandle, out: *mut DatumFields) -> c_int {
    // SAFETY: as the function's contract says.
    let (Some(DatumHandle(d)), Some(out)) = (unsafe { h.as_ref() }, unsafe { out.as_mut() }) else { return -1 };
    let mut has = 0;
    for (set, bit) in [
        (d.channels.is_some(), HAS_CHANNELS),
        (d.height.is_some(), HAS_HEIGHT),
        (d.width.is_some(), HAS_WIDTH),
        (d.data.is_some(), HAS_DATA),
        (d.label.is_some(), HAS_LABEL),
        (d.encoded.is_some(), HAS_ENCODED),
    ] {
        if set {
            has |= bit;
        }
    }
    let data = d.data.as_deref().unwrap_or(&[]);
    *out = DatumFields {
        has,
        channels: d.channels(),
        height: d.height(),
        width: d.width(),
        label: d.label(),
        encoded: d.encoded() as c_int,
        data: data.as_ptr(),
        data_len: data.len(),
        float_data: d.float_data.as_ptr(),
        float_len: d.float_data.len(),
    };
    0
}

/// # Safety
/// `h` came from this module and is freed once.
#[no_mangle]
pub unsafe extern "C" fn caffe_tch_datum_free(h: *mut DatumHandle) {
    if !h.is_null() {
        // SAFETY: made by Box::into_raw here, freed once.
        drop(unsafe { Box::from_raw(h) });
    }
}

/// An encoded record's image decoded to raw pixels (channels, height, width
/// and BGR or gray bytes, `encoded: false`; no label): `color` 1 for three
/// channels, 0 for gray, -1 as stored (DecodeDatumNative). Null on error.
/// # Safety
/// `bytes` points to `len` bytes.
#[no_mangle]
pub unsafe extern "C" fn caffe_tch_datum_decode_image(bytes: *const u8, len: usize, color: c_int) -> *mut DatumHandle {
    guarded(std::ptr::null_mut(), || {
        // SAFETY: `bytes` points to `len` bytes.
        let b = unsafe { raw_values(bytes, len) };
        let mode = match color {
            c if c < 0 => ColorMode::Native,
            0 => ColorMode::Gray,
            _ => ColorMode::Color,
        };
        let img = image::decode(b, mode).map_err(|e| Error::data(format!("encoded Datum does not decode: {e}")))?;
        let mut d = datum::from_image(&img, 0);
        d.label = None;
        Ok(handle(d))
    })
}

fn read(path: *const c_char, what: &str, f: impl FnOnce(&Path) -> Result<Datum>) -> *mut DatumHandle {
    guarded(std::ptr::null_mut(), || {
        let file = text(path, what)?;
        Ok(handle(f(Path::new(&file))?))
    })
}

/// ReadImageToDatum: the image file as a record (see `datum::read_image`); null on error.
/// # Safety
/// `path` and `encoding` are NUL-terminated strings.
#[no_mangle]
pub unsafe extern "C" fn caffe_tch_datum_read_image(
    path: *const c_char,
    label: c_int,
    height: c_int,
    width: c_int,
    is_color: c_int,
    encoding: *const c_char,
) -> *mut DatumHandle {
    read(path, "ReadImageToDatum", |p| {
        let encoding = text(encoding, "ReadImageToDatum")?;
        datum::read_image(p, label, height.max(0) as usize, width.max(0) as usize, is_color != 0, &encoding)
    })
}

/// ReadFileToDatum: a file's bytes as an encoded record; null on error.
/// # Safety
/// `path` is a NUL-terminated string.
#[no_mangle]
pub unsafe extern "C" fn caffe_tch_datum_read_file(path: *const c_char, label: c_int) -> *mut DatumHandle {
    read(path, "ReadFileToDatum", |p| {
        let bytes = std::fs::read(p).map_err(|e| Error::io(p, e))?;
        Ok(datum::encoded(bytes, label))
    })
}
