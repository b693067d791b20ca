//! `caffe::Layer<float>`'s calls: a layer's blobs (weights, bias,
//! statistics) and their diffs, which are the net's own memory on a CPU net,
//! and its wiring (bottoms, tops, which bottoms its backward reaches). A
//! layer's own Forward and Backward are its net's over that one layer
//! (`caffe_tch_net_forward`, `caffe_tch_net_backward`).
use std::ffi::{c_char, c_int};

use caffe_tch::net::Net;
use caffe_tch::{Error, Result};
use tch::{Device, Kind, Tensor};

use crate::net::{with, NetHandle};
use crate::{guarded, raw_values, write_shape};

/// The `layer`-th layer's name and blob count.
fn layer_of(net: &Net, layer: c_int) -> Result<(usize, String)> {
    let i = layer.max(0) as usize;
    let name =
        net.layer_names().get(i).map(|s| s.to_string()).ok_or_else(|| Error::invalid(format!("no layer {layer}")))?;
    Ok((i, name))
}

/// Blob `j` of layer `layer`, as a tensor.
fn layer_blob(net: &Net, layer: c_int, j: c_int) -> Result<Tensor> {
    let (i, name) = layer_of(net, layer)?;
    let count = net.layer_param_count(i);
    net.layer_param(i, j.max(0) as usize)
        .ok_or_else(|| Error::invalid(format!("layer '{name}' has {count} blobs, not a blob {j}")))
}

/// How many blobs layer `layer` has.
/// # Safety
/// Pointers as `include/caffe/caffe.hpp` passes them: what this library
/// returned and has not freed, NUL-terminated strings, arrays of the length given.
#[no_mangle]
pub unsafe extern "C" fn caffe_tch_net_layer_blob_count(h: *mut NetHandle, layer: c_int) -> c_int {
    guarded(-1, || with(h, |net, _| Ok(net.layer_param_count(layer_of(net, layer)?.0) as c_int)))
}

/// The shape of blob `j` of layer `layer` into `dims` (at most `max`); its
/// number of axes, or -1 on error.
/// # Safety
/// Pointers as `include/caffe/caffe.hpp` passes them: what this library
/// returned and has not freed, NUL-terminated strings, arrays of the length given.
#[no_mangle]
pub unsafe extern "C" fn caffe_tch_net_layer_blob_shape(
    h: *mut NetHandle,
    layer: c_int,
    j: c_int,
    dims: *mut i64,
    max: c_int,
) -> c_int {
    guarded(-1, || {
        let shape = with(h, |net, _| Ok(layer_blob(net, layer, j)?.size()))?;
        // SAFETY: the header passes room for `max` values.
        Ok(unsafe { write_shape(&shape, dims, max) })
    })
}

/// The memory of blob `j` of layer `layer` itself, its data (`diff` 0) or
/// its diff (1): a CPU net's weights and their diffs are contiguous floats,
/// and what the program writes there is the layer's blob, as in Caffe. Null
/// on error (a net on a GPU).
/// # Safety
/// Pointers as `include/caffe/caffe.hpp` passes them: what this library
/// returned and has not freed, NUL-terminated strings, arrays of the length given.
#[no_mangle]
pub unsafe extern "C" fn caffe_tch_net_layer_blob_data(
    h: *mut NetHandle,
    layer: c_int,
    j: c_int,
    diff: c_int,
) -> *mut f32 {
    guarded(std::ptr::null_mut(), || {
        with(h, |net, view| {
            let mut t = layer_blob(net, layer, j)?;
            if diff != 0 {
                // One diff tensor per blob from now on, updated in place, so
                // the pointer stays the blob's diff across passes and steps.
                net.keep_param_diffs();
                t = net.layer_param_diff(layer.max(0) as usize, j.max(0) as usize).unwrap_or(t);
            }
            if t.device() != Device::Cpu || t.kind() != Kind::Float || !t.is_contiguous() {
                return Err(Error::unsupported(format!(
                    "a layer blob's memory is read on the CPU, and this one is {:?} {:?} (Caffe::set_mode(Caffe::CPU))",
                    t.device(),
                    t.kind()
                )));
            }
            if diff == 0 {
                view.expose_weights();
            }
            Ok(t.data_ptr() as *mut f32)
        })
    })
}

/// The names layer `layer` reads (`tops` 0) or writes (1), in order.
fn links(net: &Net, layer: c_int, tops: c_int) -> Result<Vec<String>> {
    let (i, _) = layer_of(net, layer)?;
    let p = net.layer_params()[i];
    Ok(if tops != 0 { p.top.clone() } else { p.bottom.clone() })
}

/// How many bottoms (`tops` 0) or tops (1) layer `layer` has; -1 on error.
/// # Safety
/// Pointers as `include/caffe/caffe.hpp` passes them: what this library
/// returned and has not freed, NUL-terminated strings, arrays of the length given.
#[no_mangle]
pub unsafe extern "C" fn caffe_tch_net_layer_link_count(h: *mut NetHandle, layer: c_int, tops: c_int) -> c_int {
    guarded(-1, || with(h, |net, _| Ok(links(net, layer, tops)?.len() as c_int)))
}

/// The `k`-th bottom (`tops` 0) or top (1) of layer `layer` (a blob name);
/// null on error. Valid while the net lives.
/// # Safety
/// Pointers as `include/caffe/caffe.hpp` passes them: what this library
/// returned and has not freed, NUL-terminated strings, arrays of the length given.
#[no_mangle]
pub unsafe extern "C" fn caffe_tch_net_layer_link(
    h: *mut NetHandle,
    layer: c_int,
    tops: c_int,
    k: c_int,
) -> *const c_char {
    guarded(std::ptr::null(), || {
        with(h, |net, view| {
            let names = links(net, layer, tops)?;
            let name =
                names.get(k.max(0) as usize).ok_or_else(|| Error::invalid(format!("layer {layer} has no blob {k}")))?;
            Ok(view.name_ptr(name))
        })
    })
}

/// Whether layer `layer`'s backward reaches its `k`-th bottom (Caffe's
/// `bottom_need_backward`): 1 or 0; -1 on error.
/// # Safety
/// Pointers as `include/caffe/caffe.hpp` passes them: what this library
/// returned and has not freed, NUL-terminated strings, arrays of the length given.
#[no_mangle]
pub unsafe extern "C" fn caffe_tch_net_layer_propagates(h: *mut NetHandle, layer: c_int, k: c_int) -> c_int {
    guarded(-1, || {
        with(h, |net, _| {
            let (i, name) = layer_of(net, layer)?;
            let flags = net.bottom_propagates(i).unwrap_or_default();
            let flag = flags
                .get(k.max(0) as usize)
                .ok_or_else(|| Error::invalid(format!("layer '{name}' has no bottom {k}")))?;
            Ok(*flag as c_int)
        })
    })
}

/// `MemoryDataLayer::Reset(data, labels, n)` on layer `layer`: `n` items of
/// its channels × height × width and `n` labels (read in place, as Caffe
/// does; `n` a multiple of its batch size); its forwards serve them batch by
/// batch. 0 on success.
/// # Safety
/// As [`caffe_tch_net_layer_blob_count`]; `data` and `labels` hold `n` items'
/// values and stay alive and in place until the next Reset or the net's end.
#[no_mangle]
pub unsafe extern "C" fn caffe_tch_net_memory_data_reset(
    h: *mut NetHandle,
    layer: c_int,
    data: *const f32,
    labels: *const f32,
    n: c_int,
) -> c_int {
    guarded(-1, || {
        with(h, |net, _| {
            let (i, name) = layer_of(net, layer)?;
            if data.is_null() || labels.is_null() || n <= 0 {
                return Err(Error::invalid(format!("MemoryDataLayer '{name}': Reset needs data, labels and n > 0")));
            }
            let mp = net.layer_params()[i].memory_data_param.unwrap_or_default();
            let dims = [n as i64, mp.channels() as i64, mp.height() as i64, mp.width() as i64];
            let count = dims.iter().product::<i64>().max(0) as usize;
            if count == 0 {
                return Err(Error::invalid(format!("MemoryDataLayer '{name}': its items hold no values ({dims:?})")));
            }
            // Read in place, as Caffe's layer keeps the pointers: a value the
            // program writes into the arrays later is the next batches'.
            let strides = [dims[1] * dims[2] * dims[3], dims[2] * dims[3], dims[3], 1];
            // SAFETY: `data` holds the n items' values and `labels` n labels,
            // and the program keeps both alive and in place until the next
            // Reset or the net's end (Caffe's contract for Reset's arrays).
            let (d, l) = unsafe {
                (
                    Tensor::f_from_blob(data as *const u8, &dims, &strides, Kind::Float, Device::Cpu)?,
                    Tensor::f_from_blob(labels as *const u8, &[n as i64], &[1], Kind::Float, Device::Cpu)?,
                )
            };
            net.set_layer_input_arrays(i, &d, &l)?;
            Ok(0)
        })
    })
}

/// `MemoryDataLayer::AddDatumVector`: `n` serialized Datums (`records[k]`
/// of `lens[k]` bytes) through the layer's transform_param; 0 on success.
/// # Safety
/// As [`caffe_tch_net_layer_blob_count`]; `records` and `lens` hold `n` entries.
#[no_mangle]
pub unsafe extern "C" fn caffe_tch_net_memory_data_add_datums(
    h: *mut NetHandle,
    layer: c_int,
    records: *const *const u8,
    lens: *const usize,
    n: c_int,
) -> c_int {
    guarded(-1, || {
        with(h, |net, _| {
            let (i, _) = layer_of(net, layer)?;
            let n = n.max(0) as usize;
            // SAFETY: as the function's contract says.
            let (pointers, sizes) = unsafe { (raw_values(records, n), raw_values(lens, n)) };
            // SAFETY: each record holds its length's bytes for the call.
            let slices: Vec<&[u8]> =
                pointers.iter().zip(sizes).map(|(&p, &len)| unsafe { raw_values(p, len) }).collect();
            net.add_datum_vector(i, &slices)?;
            Ok(0)
        })
    })
}

/// `MemoryDataLayer::set_batch_size(n)` on layer `layer`; 0 on success.
/// # Safety
/// As [`caffe_tch_net_layer_blob_count`].
#[no_mangle]
pub unsafe extern "C" fn caffe_tch_net_memory_data_set_batch_size(h: *mut NetHandle, layer: c_int, n: c_int) -> c_int {
    guarded(-1, || {
        with(h, |net, _| {
            let (i, name) = layer_of(net, layer)?;
            if n <= 0 {
                return Err(Error::invalid(format!(
                    "MemoryDataLayer '{name}': set_batch_size({n}) needs a positive size"
                )));
            }
            net.set_memory_data_batch_size(i, n as usize)?;
            Ok(0)
        })
    })
}
