//! `caffe::NetParameter`: a net definition or a trained net's weights as one
//! message, as programs read, write and build nets from them
//! (`ReadNetParamsFromTextFileOrDie`, `Net::ToProto` with
//! `WriteProtoToBinaryFile`, `Net(const NetParameter&)`,
//! `CopyTrainedLayersFrom(const NetParameter&)`).
use std::ffi::{c_char, c_int, CString};
use std::path::Path;

use caffe_tch::net::{Net, NetSource};
use caffe_tch::proto::caffe::NetParameter;
use caffe_tch::proto::{binary, text, upgrade};
use caffe_tch::{Error, Result};

use crate::message::{field_size, field_text, merge_text};
use crate::net::{with_net, NetHandle, Nets, Shared};
use crate::{guarded, text as c_text};

/// A `NetParameter`: the message, where it came from (its file and layers'
/// lines, for messages), and the last value handed out as a C string.
#[derive(Clone, Default)]
pub struct NetParamHandle {
    param: NetParameter,
    source: NetSource,
    value: CString,
}

fn param<'a>(p: *mut NetParamHandle) -> Result<&'a mut NetParamHandle> {
    // SAFETY: the header passes a pointer this library returned, until it
    // calls `caffe_tch_net_param_free`.
    unsafe { p.as_mut() }.ok_or_else(|| Error::invalid("null NetParameter"))
}

fn boxed(param: NetParameter, source: NetSource) -> *mut NetParamHandle {
    Box::into_raw(Box::new(NetParamHandle { param, source, value: CString::default() }))
}

/// An empty `NetParameter`.
#[no_mangle]
pub extern "C" fn caffe_tch_net_param_new() -> *mut NetParamHandle {
    Box::into_raw(Box::default())
}

/// `ReadNetParamsFromTextFileOrDie` (`binary` 0) or
/// `ReadNetParamsFromBinaryFileOrDie` / `ReadProtoFromBinaryFile` (1): the
/// file read and upgraded from Caffe's legacy formats, as Caffe's readers
/// do. Null on error.
/// # Safety
/// Pointers as `include/caffe/caffe.hpp` passes them: what this library
/// returned and has not freed, NUL-terminated strings.
#[no_mangle]
pub unsafe extern "C" fn caffe_tch_net_param_read(file: *const c_char, binary_file: c_int) -> *mut NetParamHandle {
    guarded(std::ptr::null_mut(), || {
        let file = c_text(file, "ReadNetParams")?;
        let path = Path::new(&file);
        let (mut param, source) = if binary_file != 0 {
            (binary::read_message::<NetParameter>(path)?, NetSource::new(&file))
        } else {
            let parsed = text::read_file_nonempty::<NetParameter>(path, Default::default())?;
            let source = NetSource::from_parsed(&file, &parsed.message, &parsed.source_map);
            (parsed.message, source)
        };
        upgrade::upgrade_net(&mut param, &file)?;
        Ok(boxed(param, source))
    })
}

/// A copy of `p`.
/// # Safety
/// As [`caffe_tch_net_param_read`].
#[no_mangle]
pub unsafe extern "C" fn caffe_tch_net_param_clone(p: *mut NetParamHandle) -> *mut NetParamHandle {
    guarded(std::ptr::null_mut(), || Ok(Box::into_raw(Box::new(param(p)?.clone()))))
}

/// # Safety
/// As [`caffe_tch_net_param_read`].
#[no_mangle]
pub unsafe extern "C" fn caffe_tch_net_param_free(p: *mut NetParamHandle) {
    if !p.is_null() {
        // SAFETY: made by Box::into_raw here, freed once.
        drop(unsafe { Box::from_raw(p) });
    }
}

/// `WriteProtoToBinaryFile(param, file)`: the message as a binary file
/// (a `.caffemodel` for a net's ToProto), written whole or not at all. 0 on success.
/// # Safety
/// As [`caffe_tch_net_param_read`].
#[no_mangle]
pub unsafe extern "C" fn caffe_tch_net_param_write(p: *mut NetParamHandle, file: *const c_char) -> c_int {
    guarded(-1, || {
        let file = c_text(file, "WriteProtoToBinaryFile")?;
        binary::write_message(Path::new(&file), &param(p)?.param)?;
        Ok(0)
    })
}

/// Merges prototxt text into `p` (the header's setters:
/// `mutable_state()->set_phase(TEST)` is `state { phase: TEST }`). 0 on success.
/// # Safety
/// As [`caffe_tch_net_param_read`].
#[no_mangle]
pub unsafe extern "C" fn caffe_tch_net_param_merge(p: *mut NetParamHandle, prototxt: *const c_char) -> c_int {
    guarded(-1, || {
        let prototxt = c_text(prototxt, "NetParameter")?;
        merge_text(&mut param(p)?.param, &prototxt)?;
        Ok(0)
    })
}

/// Field `name` as text (the net's `name`); null on error. Valid until the
/// next call on `p`.
/// # Safety
/// As [`caffe_tch_net_param_read`].
#[no_mangle]
pub unsafe extern "C" fn caffe_tch_net_param_get(p: *mut NetParamHandle, name: *const c_char) -> *const c_char {
    guarded(std::ptr::null(), || {
        let p = param(p)?;
        let name = c_text(name, "NetParameter field")?;
        let shown = field_text(&p.param, &name, -1)?;
        p.value = CString::new(shown.replace('\0', " ")).unwrap_or_default();
        Ok(p.value.as_ptr())
    })
}

/// How many values repeated field `name` holds (`layer_size()`); -1 on error.
/// # Safety
/// As [`caffe_tch_net_param_read`].
#[no_mangle]
pub unsafe extern "C" fn caffe_tch_net_param_size(p: *mut NetParamHandle, name: *const c_char) -> c_int {
    guarded(-1, || {
        let name = c_text(name, "NetParameter field")?;
        Ok(field_size(&param(p)?.param, &name)? as c_int)
    })
}

/// `new Net<float>(param)`: the net the message defines, in the phase,
/// level and stages of its `state`. Null on error.
/// # Safety
/// As [`caffe_tch_net_param_read`].
#[no_mangle]
pub unsafe extern "C" fn caffe_tch_net_new_from_param(p: *mut NetParamHandle) -> *mut NetHandle {
    guarded(std::ptr::null_mut(), || {
        let p = param(p)?;
        let state = p.param.state.clone().unwrap_or_default();
        caffe_tch::util::allocator::install_caching_cpu_allocator();
        let net = Net::new(&p.param, &state, p.source.clone(), crate::device())?;
        Ok(Box::into_raw(Box::new(NetHandle::of(Shared::new(Nets::One(Box::new(net))), 0))))
    })
}

/// `Net::ToProto(&param, write_diff)`: the net's definition and weights
/// (and their diffs with `write_diff`), as a snapshot writes them. Null on error.
/// # Safety
/// As [`caffe_tch_net_param_read`].
#[no_mangle]
pub unsafe extern "C" fn caffe_tch_net_to_proto(h: *mut NetHandle, write_diff: c_int) -> *mut NetParamHandle {
    guarded(std::ptr::null_mut(), || {
        let (param, file) = with_net(h, |net| Ok((net.to_proto(write_diff != 0)?, net.source().file.clone())))?;
        Ok(boxed(param, NetSource::new(file)))
    })
}

/// `CopyTrainedLayersFrom(param)`: weights by layer name from a message
/// (a `.caffemodel` read with `ReadNetParamsFromBinaryFileOrDie`). 0 on success.
/// # Safety
/// As [`caffe_tch_net_param_read`].
#[no_mangle]
pub unsafe extern "C" fn caffe_tch_net_copy_trained_layers_from_param(
    h: *mut NetHandle,
    p: *mut NetParamHandle,
) -> c_int {
    guarded(-1, || {
        let p = param(p)?;
        with_net(h, |net| net.copy_trained_layers_from(&p.param, &p.source.file))?;
        Ok(0)
    })
}

/// The definition as a read-only message handle (`NetParameter::layer(i)`
/// reads its layers through it).
/// # Safety
/// As [`caffe_tch_net_param_read`].
#[no_mangle]
pub unsafe extern "C" fn caffe_tch_net_param_message(
    p: *mut NetParamHandle,
) -> *mut crate::message_view::MessageHandle {
    guarded(std::ptr::null_mut(), || crate::message_view::handle_of(&param(p)?.param))
}
