//! `caffe::BlobProto` mean files (`ReadProtoFromBinaryFile`).
use std::ffi::{c_char, c_int};
use std::path::Path;

use caffe_tch::proto::binary;
use caffe_tch::proto::caffe::BlobProto;

use crate::{guarded, text, write_shape};

/// A BlobProto file (a mean file) read: its shape and values, which
/// `caffe_tch_blob_proto_free` releases; null on error.
pub struct BlobProtoHandle {
    shape: Vec<i64>,
    data: Vec<f32>,
}

/// # Safety
/// Pointers as `include/caffe/caffe.hpp` passes them: what this library
/// returned and has not freed, NUL-terminated strings, arrays of the length given.
#[no_mangle]
pub unsafe extern "C" fn caffe_tch_blob_proto_read(file: *const c_char) -> *mut BlobProtoHandle {
    guarded(std::ptr::null_mut(), || {
        let file = text(file, "ReadProtoFromBinaryFile")?;
        let path = Path::new(&file);
        let blob: BlobProto = binary::read_message(path)?;
        binary::check_blob(&blob, path, "blob")?;
        let h = BlobProtoHandle { shape: binary::blob_shape(&blob), data: binary::blob_data_f32(&blob) };
        Ok(Box::into_raw(Box::new(h)))
    })
}

/// The shape of a read BlobProto into `dims` (at most `max`); its axes.
/// # Safety
/// Pointers as `include/caffe/caffe.hpp` passes them: what this library
/// returned and has not freed, NUL-terminated strings, arrays of the length given.
#[no_mangle]
pub unsafe extern "C" fn caffe_tch_blob_proto_shape(h: *const BlobProtoHandle, dims: *mut i64, max: c_int) -> c_int {
    // SAFETY: a pointer caffe_tch_blob_proto_read returned, not yet freed.
    let Some(h) = (unsafe { h.as_ref() }) else { return -1 };
    // SAFETY: the header passes room for `max` values.
    unsafe { write_shape(&h.shape, dims, max) }
}

/// The values of a read BlobProto (as many as its shape counts).
/// # Safety
/// Pointers as `include/caffe/caffe.hpp` passes them: what this library
/// returned and has not freed, NUL-terminated strings, arrays of the length given.
#[no_mangle]
pub unsafe extern "C" fn caffe_tch_blob_proto_data(h: *const BlobProtoHandle) -> *const f32 {
    // SAFETY: as above.
    unsafe { h.as_ref() }.map_or(std::ptr::null(), |h| h.data.as_ptr())
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
