//! `caffe_cpu_gemm` and `caffe_cpu_gemv` (`include/caffe/util/math_functions.hpp`):
//! the program's row-major arrays viewed as tensors in place, multiplied by
//! libtorch's GEMM, the result written into the program's output array.
use std::ffi::c_void;

use caffe_tch::{Error, Result};
use tch::{Device, Kind, Tensor};

use crate::guarded;

/// op(X), `rows` x `cols`, of the program's row-major array at `data`, in
/// place: X itself, or X stored `cols` x `rows` and transposed.
///
/// # Safety
/// `data` holds `rows * cols` values of `kind` and outlives the tensor.
unsafe fn matrix(data: *const c_void, rows: i64, cols: i64, kind: Kind, transposed: bool) -> Result<Tensor> {
    let (stored_rows, stored_cols) = if transposed { (cols, rows) } else { (rows, cols) };
    let t = unsafe {
        Tensor::f_from_blob(data as *const u8, &[stored_rows, stored_cols], &[stored_cols, 1], kind, Device::Cpu)
    }?;
    Ok(if transposed { t.f_transpose(0, 1)? } else { t })
}

fn kind_of(double_precision: i32) -> Kind {
    if double_precision != 0 {
        Kind::Double
    } else {
        Kind::Float
    }
}

/// Sizes at or above 0, and arrays that hold values not null (an empty one may be).
fn check_arguments(sizes: &[(&str, i32)], arrays: &[(*const c_void, i64)]) -> Result<()> {
    for (name, v) in sizes {
        if *v < 0 {
            return Err(Error::invalid(format!("math_functions: {name} is {v}, below 0")));
        }
    }
    if arrays.iter().any(|&(p, len)| p.is_null() && len > 0) {
        return Err(Error::invalid("math_functions: an array is a null pointer"));
    }
    Ok(())
}

/// `out = beta * out` (BLAS's product with nothing to sum); `beta == 0`
/// writes zeros without reading `out`.
fn scale_only(out: &mut Tensor, beta: f64) -> Result<()> {
    if beta == 0.0 {
        let _alias = out.f_zero_()?;
    } else if beta != 1.0 {
        let _alias = out.f_mul_scalar_(beta)?;
    }
    Ok(())
}

/// `out = alpha * product + beta * out`, where `beta == 0` does not read `out`
/// (BLAS's rule: what it held, NaN included, does not show).
fn accumulate(out: &mut Tensor, product: &Tensor, alpha: f64, beta: f64) -> Result<()> {
    let scaled = if alpha == 1.0 { product.shallow_clone() } else { product.f_mul_scalar(alpha)? };
    if beta == 0.0 {
        out.f_copy_(&scaled)?;
    } else {
        // The in-place ops return an alias of `out`, not needed here.
        if beta != 1.0 {
            let _alias = out.f_mul_scalar_(beta)?;
        }
        let _alias = out.f_add_(&scaled)?;
    }
    Ok(())
}

/// C = alpha * op(A) * op(B) + beta * C.
///
/// # Safety
/// As `include/caffe/util/math_functions.hpp` passes them: `a` holds M x K
/// values (K x M when transposed), `b` K x N (N x K), `c` M x N, each of the
/// precision `double_precision` names.
#[no_mangle]
pub unsafe extern "C" fn caffe_tch_gemm(
    double_precision: i32,
    trans_a: i32,
    trans_b: i32,
    m: i32,
    n: i32,
    k: i32,
    alpha: f64,
    a: *const c_void,
    b: *const c_void,
    beta: f64,
    c: *mut c_void,
) -> i32 {
    guarded(-1, || {
        let (mi, ni, ki) = (i64::from(m), i64::from(n), i64::from(k));
        check_arguments(&[("M", m), ("N", n), ("K", k)], &[(a, mi * ki), (b, ki * ni), (c as *const c_void, mi * ni)])?;
        if mi * ni == 0 {
            return Ok(0);
        }
        let kind = kind_of(double_precision);
        let _no_grad = tch::no_grad_guard();
        // SAFETY: the caller's arrays, of the sizes the header documents.
        let mut out = unsafe { matrix(c, mi, ni, kind, false) }?;
        if ki == 0 {
            scale_only(&mut out, beta)?;
            return Ok(0);
        }
        let a = unsafe { matrix(a, mi, ki, kind, trans_a != 0) }?;
        let b = unsafe { matrix(b, ki, ni, kind, trans_b != 0) }?;
        accumulate(&mut out, &a.f_mm(&b)?, alpha, beta)?;
        Ok(0)
    })
}

/// y = alpha * op(A) * x + beta * y, A M x N.
///
/// # Safety
/// As `include/caffe/util/math_functions.hpp` passes them: `a` holds M x N
/// values, `x` N values (M when transposed), `y` M (N), of the precision
/// `double_precision` names.
#[no_mangle]
pub unsafe extern "C" fn caffe_tch_gemv(
    double_precision: i32,
    trans_a: i32,
    m: i32,
    n: i32,
    alpha: f64,
    a: *const c_void,
    x: *const c_void,
    beta: f64,
    y: *mut c_void,
) -> i32 {
    guarded(-1, || {
        let (mi, ni) = (i64::from(m), i64::from(n));
        let (x_len, y_len) = if trans_a != 0 { (mi, ni) } else { (ni, mi) };
        check_arguments(&[("M", m), ("N", n)], &[(a, mi * ni), (x, x_len), (y as *const c_void, y_len)])?;
        if y_len == 0 {
            return Ok(0);
        }
        let kind = kind_of(double_precision);
        let _no_grad = tch::no_grad_guard();
        // SAFETY: the caller's arrays, of the sizes the header documents.
        let mut out = unsafe { matrix(y, y_len, 1, kind, false) }?;
        if x_len == 0 {
            scale_only(&mut out, beta)?;
            return Ok(0);
        }
        let a = unsafe { matrix(a, y_len, x_len, kind, trans_a != 0) }?;
        let x = unsafe { matrix(x, x_len, 1, kind, false) }?;
        accumulate(&mut out, &a.f_mm(&x)?, alpha, beta)?;
        Ok(0)
    })
}
