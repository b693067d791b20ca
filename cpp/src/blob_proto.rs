//! `caffe::BlobProto`: mean files and other blobs read
//! (`ReadProtoFromBinaryFile`) and written (`WriteProtoToBinaryFile`); the
//! header keeps the fields and this module reads and writes them as the
//! library's BlobProto.
use std::ffi::{c_char, c_int};
use std::path::Path;

use caffe_tch::proto::binary;
use caffe_tch::proto::caffe::{BlobProto, BlobShape};

use crate::{guarded, raw_values, text, write_shape};

/// The header's has-bits: num, channels, height, width, shape.
const HAS_LEGACY: [u32; 4] = [1, 2, 4, 8];
const HAS_SHAPE: u32 = 16;

/// A BlobProto file read: the message's shape fields, and its values as floats (from
/// `data`, `double_data` or NVIDIA Caffe's `raw_data`), which
/// `caffe_tch_blob_proto_free` releases.
pub struct BlobProtoHandle {
    proto: BlobProto,
    data: Vec<f32>,
    diff: Vec<f32>,
}

/// # Safety
/// Pointers as `include/caffe/caffe.hpp` passes them: what this library
/// returned and has not freed, NUL-terminated strings, arrays of the length given.
#[no_mangle]
pub unsafe extern "C" fn caffe_tch_blob_proto_read(file: *const c_char) -> *mut BlobProtoHandle {
    guarded(std::ptr::null_mut(), || {
        let file = text(file, "ReadProtoFromBinaryFile")?;
        let path = Path::new(&file);
        let mut blob: BlobProto = binary::read_message(path)?;
        binary::check_blob(&blob, path, "blob")?;
        let data = binary::blob_data_f32(&blob);
        let diff = if blob.double_diff.is_empty() {
            std::mem::take(&mut blob.diff)
        } else {
            blob.double_diff.iter().map(|&d| d as f32).collect()
        };
        // The message keeps its shape fields; its values are `data` and `diff` now.
        let proto =
            BlobProto { data: Vec::new(), double_data: Vec::new(), double_diff: Vec::new(), raw_data: None, ..blob };
        Ok(Box::into_raw(Box::new(BlobProtoHandle { proto, data, diff })))
    })
}

/// A read BlobProto's legacy num/channels/height/width into `legacy` (4
/// values) and its `shape` into `dims` (at most `max`; `axes` gets how many);
/// the has-bits of those fields, or -1.
/// # Safety
/// Pointers as `include/caffe/caffe.hpp` passes them: what this library
/// returned and has not freed, `legacy` with room for 4 values, `dims` for `max`.
#[no_mangle]
pub unsafe extern "C" fn caffe_tch_blob_proto_fields(
    h: *const BlobProtoHandle,
    legacy: *mut i32,
    dims: *mut i64,
    max: c_int,
    axes: *mut c_int,
) -> c_int {
    // SAFETY: a pointer caffe_tch_blob_proto_read returned, not yet freed.
    let Some(h) = (unsafe { h.as_ref() }) else { return -1 };
    let p = &h.proto;
    let mut has = 0;
    for (k, v) in [p.num, p.channels, p.height, p.width].into_iter().enumerate() {
        // SAFETY: room for 4 values.
        unsafe { *legacy.add(k) = v.unwrap_or(0) };
        if v.is_some() {
            has |= HAS_LEGACY[k];
        }
    }
    let shape = p.shape.as_ref().map_or(&[][..], |s| s.dim.as_slice());
    // SAFETY: room for `max` values; `axes` is writable.
    unsafe { *axes = write_shape(shape, dims, max) };
    if p.shape.is_some() {
        has |= HAS_SHAPE;
    }
    has as c_int
}

/// The values (`diff` 0) or diffs (1) of a read BlobProto; `len` gets how many.
/// # Safety
/// Pointers as `include/caffe/caffe.hpp` passes them: what this library
/// returned and has not freed, `len` writable.
#[no_mangle]
pub unsafe extern "C" fn caffe_tch_blob_proto_values(
    h: *const BlobProtoHandle,
    diff: c_int,
    len: *mut usize,
) -> *const f32 {
    // SAFETY: as above.
    let Some(h) = (unsafe { h.as_ref() }) else { return std::ptr::null() };
    let v = if diff != 0 { &h.diff } else { &h.data };
    // SAFETY: `len` is writable.
    unsafe { *len = v.len() };
    v.as_ptr()
}

/// # Safety
/// Pointers as `include/caffe/caffe.hpp` passes them: what this library
/// returned and has not freed, NUL-terminated strings, arrays of the length given.
#[no_mangle]
pub unsafe extern "C" fn caffe_tch_blob_proto_free(h: *mut BlobProtoHandle) {
    if !h.is_null() {
        // SAFETY: made by Box::into_raw in caffe_tch_blob_proto_read, freed once.
        drop(unsafe { Box::from_raw(h) });
    }
}

/// Writes a BlobProto with the fields the header holds (legacy fields and
/// `shape` by their has-bits, `data` and `diff` as given) to `file`, whole
/// or not at all. 0 on success.
/// # Safety
/// `file` is NUL-terminated; `legacy` holds 4 values, `dims` `axes`, `data`
/// `n_data` and `diff` `n_diff` (each null when its count is 0).
#[no_mangle]
pub unsafe extern "C" fn caffe_tch_blob_proto_write(
    file: *const c_char,
    has: u32,
    legacy: *const i32,
    dims: *const i64,
    axes: c_int,
    data: *const f32,
    n_data: usize,
    diff: *const f32,
    n_diff: usize,
) -> c_int {
    guarded(-1, || {
        let file = text(file, "WriteProtoToBinaryFile")?;
        // SAFETY: `legacy` holds 4 values.
        let field = |k: usize| (has & HAS_LEGACY[k] != 0).then(|| unsafe { *legacy.add(k) });
        let shape = (has & HAS_SHAPE != 0).then(|| {
            // SAFETY: `dims` holds `axes` values.
            BlobShape { dim: unsafe { raw_values(dims, axes.max(0) as usize) }.to_vec() }
        });
        let blob = BlobProto {
            shape,
            // SAFETY: the header's vectors of `n_data` and `n_diff` floats.
            data: unsafe { raw_values(data, n_data) }.to_vec(),
            diff: unsafe { raw_values(diff, n_diff) }.to_vec(),
            num: field(0),
            channels: field(1),
            height: field(2),
            width: field(3),
            ..Default::default()
        };
        binary::write_message(Path::new(&file), &blob)?;
        Ok(0)
    })
}
