//! Leaf helpers that every layer of the crate may use, and that use nothing
//! of the crate but its error type: C's `%g`, tensor values for writers,
//! atomic file writes, comma lists, and Caffe's `-gpu` flag.
pub mod cuda;
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

/// Writes `bytes` to `path` through a temporary sibling file and a rename:
/// a reader never sees half a file, and a failed write leaves none.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    let tmp = temp_sibling(path);
    let result = (|| -> std::io::Result<()> {
        let mut f = std::fs::File::create(&tmp)?;
        std::io::Write::write_all(&mut f, bytes)?;
        f.sync_all()?;
        std::fs::rename(&tmp, path)
    })();
    if let Err(e) = result {
        // The write failed; the temporary file may not even exist, so there
        // is nothing to report if removing it fails too.
        std::fs::remove_file(&tmp).ok();
        return Err(Error::io(path, e));
    }
    Ok(())
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

/// Caffe's `-gpu` flag: absent or empty means the CPU (`None`: the caller may
/// still follow a solver's `solver_mode`); one id or `all` with one device
/// means that CUDA device. Several devices are not supported yet.
pub fn gpu_flag_device(flag: Option<&str>) -> Result<Option<Device>> {
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
    if ids.len() > 1 {
        return Err(Error::usage(format!(
            "-gpu {flag}: training on several GPUs is not supported yet; pick one device, e.g. -gpu {}",
            ids[0]
        )));
    }
    let id = ids[0];
    if id < 0 || id >= count {
        return Err(Error::usage(format!("-gpu {id}: no such device ({count} CUDA device(s) found)")));
    }
    Ok(Some(Device::Cuda(id as usize)))
}
