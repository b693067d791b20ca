//! Leaf helpers that every layer of the crate may use, and that use nothing
//! of the crate but its error type: C's `%g`, tensor values for writers,
//! atomic file writes, comma lists, Caffe's `-gpu` flag, and CUDA on demand.
pub mod allocator;
pub mod contain;
pub mod cuda;
pub mod cuda_graph;
pub mod grad_edge;
pub mod limits;
pub mod npy;
pub mod python;
pub mod shim;
use std::path::{Path, PathBuf};

use tch::{Device, Kind, Tensor};

use crate::{Error, Result};

/// C's `printf("%.*g", precision, v)`: what Caffe's logs and protobuf's text
/// printer show (`2.39789`, `1e-05`, `1.234e-05`).
pub fn format_g(v: f64, precision: usize) -> String {
    let p = precision.max(1);
    let mut out = String::new();
    if v.is_sign_negative() {
        out.push('-');
    }
    let a = v.abs();
    if !a.is_finite() {
        out.push_str(if a.is_nan() { "nan" } else { "inf" });
        return out;
    }
    // C takes the exponent of the value rounded to `p` significant digits.
    let sci = format!("{:.*e}", p - 1, a);
    let (mant, exp) = sci.split_once('e').unwrap_or((sci.as_str(), "0"));
    let exp: i32 = exp.parse().unwrap_or(0);
    if exp < -4 || exp >= p as i32 {
        out.push_str(strip_zeros(mant));
        out.push('e');
        out.push(if exp < 0 { '-' } else { '+' });
        out.push_str(&format!("{:02}", exp.unsigned_abs()));
    } else {
        let fixed = format!("{:.*}", (p as i32 - 1 - exp) as usize, a);
        out.push_str(strip_zeros(&fixed));
    }
    out
}

/// Drops trailing zeros after a decimal point, and the point itself if nothing follows it.
fn strip_zeros(s: &str) -> &str {
    if !s.contains('.') {
        return s;
    }
    s.trim_end_matches('0').trim_end_matches('.')
}

/// A tensor's values as f32 in Caffe's (row-major, NCHW) order, on the CPU:
/// what every writer of blobs (snapshots, HDF5, logs) needs.
pub fn tensor_values(t: &Tensor) -> Result<Vec<f32>> {
    let flat = t.f_detach()?.f_to_device(Device::Cpu)?.f_to_kind(Kind::Float)?.f_contiguous()?.f_view([-1])?;
    Ok(Vec::<f32>::try_from(&flat)?)
}

/// Writes `bytes` to `path` atomically (see [`write_atomic_with`]).
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    write_atomic_with(path, |tmp| std::fs::write(tmp, bytes).map_err(|e| Error::io(path, e)))
}

/// Every file caffe-tch writes goes through here: `write` fills a temporary
/// sibling of `path` (same folder, so the rename is atomic), which is then
/// fsynced, renamed over `path`, and the folder fsynced, so a crash or a full
/// disk leaves either the old file or the new one, never half of one. On any
/// error the temporary file is removed and the error names `path`.
pub fn write_atomic_with(path: &Path, write: impl FnOnce(&Path) -> Result<()>) -> Result<()> {
    let tmp = temp_sibling(path);
    let result = write(&tmp).and_then(|()| {
        let synced = std::fs::File::open(&tmp).and_then(|f| f.sync_all());
        synced.and_then(|()| std::fs::rename(&tmp, path)).map_err(|e| Error::io(path, e))
    });
    if let Err(e) = result {
        // The temporary file may not exist (the writer failed before creating
        // it); the original error is the one to report either way.
        std::fs::remove_file(&tmp).ok();
        return Err(e);
    }
    sync_folder_of(path)
}

/// fsyncs the folder holding `path`, so a rename into it survives a crash.
pub fn sync_folder_of(path: &Path) -> Result<()> {
    let folder = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    std::fs::File::open(folder).and_then(|f| f.sync_all()).map_err(|e| Error::io(folder, e))
}

/// `dir/.name.tmp.<pid>`: hidden, in the same folder so the rename is atomic.
pub fn temp_sibling(path: &Path) -> PathBuf {
    let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    path.with_file_name(format!(".{name}.tmp.{}", std::process::id()))
}

/// A comma-separated flag value (`-stage a,b`, `-weights x,y`): the items,
/// trimmed, empty ones dropped.
pub fn comma_list(s: &str) -> Vec<String> {
    s.split(',').map(str::trim).filter(|s| !s.is_empty()).map(String::from).collect()
}

/// Caffe's `-gpu` flag as CUDA device ids: absent or empty means the CPU
/// (`None`: the caller may still follow a solver's `solver_mode`), `all`
/// every device, `0,1` those. CUDA must load and every id must exist.
pub fn gpu_flag_ids(flag: Option<&str>) -> Result<Option<Vec<i64>>> {
    let Some(flag) = flag.map(str::trim).filter(|s| !s.is_empty()) else { return Ok(None) };
    cuda::load().map_err(|e| Error::usage(format!("-gpu {flag}: {e}; run without -gpu to use the CPU")))?;
    let count = tch::Cuda::device_count();
    if count == 0 {
        return Err(Error::usage(format!(
            "-gpu {flag}: no CUDA device is available (libtorch sees none); run without -gpu to use the CPU"
        )));
    }
    let ids: Vec<i64> = if flag == "all" {
        (0..count).collect()
    } else {
        flag.split(',')
            .map(|s| {
                s.trim()
                    .parse::<i64>()
                    .map_err(|_| Error::usage(format!("-gpu {flag}: expected device ids like 0 or 0,1, or all")))
            })
            .collect::<Result<_>>()?
    };
    if let Some(id) = ids.iter().find(|&&id| id < 0 || id >= count) {
        return Err(Error::usage(format!("-gpu {id}: no such device ({count} CUDA device(s) found)")));
    }
    Ok(Some(ids))
}

/// The `-gpu` flag of a command that runs on one device: one id, or `all`
/// with one device. Several are for `caffe train`, one process per device.
pub fn gpu_flag_device(flag: Option<&str>) -> Result<Option<Device>> {
    let Some(ids) = gpu_flag_ids(flag)? else { return Ok(None) };
    if ids.len() > 1 {
        return Err(Error::usage(format!(
            "-gpu {}: this command runs on one device; pick one, e.g. -gpu {} (only `caffe train` uses several)",
            flag.unwrap_or_default().trim(),
            ids[0]
        )));
    }
    Ok(Some(Device::Cuda(ids[0] as usize)))
}
