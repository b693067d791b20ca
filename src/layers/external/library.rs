//! Shared libraries of C++ layer types, for the `caffe` command
//! (`-layer_library libmy_layers.so`) and pycaffe
//! (`caffe.load_layer_library`), or for both through
//! `CAFFE_TCH_LAYER_LIBRARIES`: a fork's layer classes compiled against
//! `cpp/include/caffe/caffe.hpp` with `REGISTER_LAYER_CLASS` and linked
//! with `-lcaffe`, as a Caffe fork compiled them into its own libcaffe.
//!
//! A library's static initialisers register its types while it is being
//! opened, by calling `caffe_tch_register_layer_table`. libcaffe.so, which the
//! library pulls in for the header's helpers, has one, but it would register
//! the types in libcaffe.so's own copy of caffe-tch, not in the process that
//! builds the nets. So each front end that loads libraries (the engine
//! binary, pycaffe's extension) defines that symbol too, visible to the
//! dynamic linker ahead of libcaffe.so's, and it calls [`defer`]: the types
//! wait in a list and are registered once the open returns, so a clash is an
//! error naming the library, where a throw in a static initialiser would
//! end the process.
use std::collections::BTreeMap;
use std::ffi::{c_char, c_int, c_void, CStr, CString};
use std::path::{Path, PathBuf};
use std::sync::{Mutex, PoisonError};

use super::program::LayerTable;
use crate::{Error, Result};

/// The variable naming libraries to load, separated by ':' as a search path.
pub const ENV: &str = "CAFFE_TCH_LAYER_LIBRARIES";

/// Types registered while a library is being opened, in order.
static PENDING: Mutex<Vec<Pending>> = Mutex::new(Vec::new());

/// One open at a time; each library's canonical path and the types it gave.
static LOADED: Mutex<BTreeMap<PathBuf, Vec<String>>> = Mutex::new(BTreeMap::new());

enum Pending {
    Type(String, LayerTable),
    /// A registration this side could not read (a null name or table).
    Refused(String),
}

/// Takes a registration from the header's `REGISTER_LAYER_CLASS` during an
/// open by [`load`]; always 0, so the header does not throw.
///
/// # Safety
/// `ty` is null or a NUL-terminated string; `table` is null or points to
/// `size` bytes of functions that stay valid while the library stays loaded
/// (never closed).
pub unsafe fn defer(ty: *const c_char, table: *const LayerTable, size: usize) -> c_int {
    let entry = if ty.is_null() {
        Pending::Refused("REGISTER_LAYER_CLASS passed no type name".to_string())
    } else {
        // SAFETY: as the function's contract says.
        let name = unsafe { CStr::from_ptr(ty) }.to_string_lossy().into_owned();
        // SAFETY: as above; the table is copied (function pointers).
        match unsafe { LayerTable::read(&name, table, size) } {
            Ok(table) => Pending::Type(name, table),
            Err(e) => Pending::Refused(e.to_string()),
        }
    };
    PENDING.lock().unwrap_or_else(PoisonError::into_inner).push(entry);
    0
}

/// Defines `caffe_tch_register_layer_table` in a front end that loads layer
/// libraries (the engine binary, pycaffe's extension), calling [`defer`].
#[macro_export]
macro_rules! define_layer_library_registration {
    () => {
        /// A layer library's `REGISTER_LAYER_CLASS` lands here, not in
        /// libcaffe.so (`caffe_tch::layers::external::library` says why).
        ///
        /// # Safety
        /// As [`caffe_tch::layers::external::library::defer`].
        #[no_mangle]
        pub unsafe extern "C" fn caffe_tch_register_layer_table(
            ty: *const std::ffi::c_char,
            table: *const $crate::layers::external::program::LayerTable,
            size: usize,
        ) -> std::ffi::c_int {
            // SAFETY: the caller's contract is defer's.
            unsafe { $crate::layers::external::library::defer(ty, table, size) }
        }
    };
}

/// Loads the libraries `CAFFE_TCH_LAYER_LIBRARIES` names (none when unset).
pub fn load_from_env() -> Result<()> {
    let Some(list) = std::env::var_os(ENV) else { return Ok(()) };
    for path in std::env::split_paths(&list).filter(|p| !p.as_os_str().is_empty()) {
        load(&path).map_err(|e| Error::invalid(format!("{e} (from {ENV})")))?;
    }
    Ok(())
}

/// Opens the library at `path` and registers its layer types; returns them.
/// A library already loaded is not opened again.
pub fn load(path: &Path) -> Result<Vec<String>> {
    let mut loaded = LOADED.lock().unwrap_or_else(PoisonError::into_inner);
    let canonical = std::fs::canonicalize(path)
        .map_err(|e| Error::invalid(format!("cannot load layer library {}: {e}", path.display())))?;
    if let Some(types) = loaded.get(&canonical) {
        return Ok(types.clone());
    }
    let name = path.display();
    make_own_symbols_global();
    PENDING.lock().unwrap_or_else(PoisonError::into_inner).clear();
    let c_path = CString::new(canonical.as_os_str().as_encoded_bytes())
        .map_err(|_| Error::invalid(format!("{name}: a NUL byte in the path")))?;
    // SAFETY: a NUL-terminated path. The handle is never closed: the types'
    // function tables point into the library.
    let handle = unsafe { libc::dlopen(c_path.as_ptr(), libc::RTLD_NOW | libc::RTLD_LOCAL) };
    let pending = std::mem::take(&mut *PENDING.lock().unwrap_or_else(PoisonError::into_inner));
    if handle.is_null() {
        return Err(Error::invalid(format!("cannot load layer library {name}: {}", crate::util::cuda::dl_error())));
    }
    let mut types = Vec::new();
    for entry in pending {
        match entry {
            Pending::Type(ty, table) => {
                super::register_table(&ty, table).map_err(|e| Error::invalid(format!("layer library {name}: {e}")))?;
                types.push(ty);
            }
            Pending::Refused(why) => return Err(Error::invalid(format!("layer library {name}: {why}"))),
        }
    }
    if types.is_empty() {
        return Err(Error::invalid(format!(
            "layer library {name} registered no layer types (a library of layers registers each \
             with REGISTER_LAYER_CLASS, compiled against caffe-tch's cpp/include)"
        )));
    }
    loaded.insert(canonical, types.clone());
    Ok(types)
}

/// Puts this object's symbols (`caffe_tch_register_layer_table` among them) in the
/// dynamic linker's global scope, so a library opened next binds to them
/// before libcaffe.so's. The engine's executable is there already; pycaffe's
/// extension, which Python opens with RTLD_LOCAL, is promoted.
fn make_own_symbols_global() {
    let mut info = libc::Dl_info {
        dli_fname: std::ptr::null(),
        dli_fbase: std::ptr::null_mut(),
        dli_sname: std::ptr::null(),
        dli_saddr: std::ptr::null_mut(),
    };
    // SAFETY: dladdr reads the address of a function of this object and
    // fills `info`, whose file name lives as long as the object.
    let found = unsafe { libc::dladdr(make_own_symbols_global as *const c_void, &mut info) } != 0;
    if !found || info.dli_fname.is_null() {
        return;
    }
    // SAFETY: RTLD_NOLOAD only raises an object already loaded to global
    // scope (for the main executable's name it finds nothing, which is fine:
    // an executable's exported symbols are global already). The reference it
    // takes is kept, as the object stays loaded anyway.
    unsafe { libc::dlopen(info.dli_fname, libc::RTLD_NOW | libc::RTLD_NOLOAD | libc::RTLD_GLOBAL) };
}
