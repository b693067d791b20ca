//! Caffe's `caffe/util/math_functions.hpp` (CPU half) from a C++ program
//! (`tests/fixtures/cpp/math_api.cpp`): the matrix products in every
//! transpose, in float and double, against a plain loop in double; the
//! element-wise functions' values; Caffe's generator (seed 5489 gives the
//! Mersenne Twister's reference values, as Caffe's boost::mt19937 does); the
//! random draws' ranges and moments; `caffe/util/im2col.hpp`'s im2col_cpu
//! (with a GEMM, the direct convolution) and col2im_cpu (its adjoint);
//! one-line errors for bad arguments.
use std::collections::HashMap;
use std::process::Command;

use crate::cpp_api::compile;

/// The program's "name value ..." lines.
fn results() -> Option<HashMap<String, Vec<String>>> {
    let dir = tempfile::tempdir().unwrap();
    let program = compile("math_api", dir.path())?;
    let out = Command::new(&program).output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(out.status.success(), "math_api: {}\n{stdout}", String::from_utf8_lossy(&out.stderr));
    Some(
        stdout
            .lines()
            .filter_map(|l| l.split_once(' '))
            .map(|(k, v)| (k.to_string(), v.split(' ').map(str::to_string).collect()))
            .collect(),
    )
}

fn numbers(r: &HashMap<String, Vec<String>>, name: &str) -> Vec<f64> {
    let v = r.get(name).unwrap_or_else(|| panic!("math_api printed no '{name}'"));
    v.iter().map(|s| s.parse().unwrap_or_else(|_| panic!("{name}: {s} is not a number"))).collect()
}

fn text(r: &HashMap<String, Vec<String>>, name: &str) -> String {
    r.get(name).unwrap_or_else(|| panic!("math_api printed no '{name}'")).join(" ")
}

#[test]
fn a_cpp_program_gets_caffes_math_functions() {
    let Some(r) = results() else { return };
    for (precision, bound) in [("float", 1e-5), ("double", 1e-12)] {
        for case in
            ["gemm_NN", "gemm_NT", "gemm_TN", "gemm_TT", "gemm_beta0_nan", "gemm_k0", "gemm_large", "gemv_N", "gemv_T"]
        {
            let name = case.replacen('_', &format!("_{precision}_"), 1);
            let err = numbers(&r, &name)[0];
            // NaN fails too: beta 0 must not read the NaNs C held.
            assert!(err <= bound, "{name}: largest difference from the loop {err}");
        }
    }
    let exact: &[(&str, &[f64])] = &[
        ("axpy", &[3.0, 4.0, 5.0]),
        ("axpby", &[5.0, 7.0]),
        ("copy", &[1.0, 2.0, 3.0]),
        ("set", &[0.25, 0.25, 0.25]),
        ("add_scalar", &[1.25, 1.25, 1.25]),
        ("scal", &[5.0, 5.0, 5.0]),
        ("cpu_scale", &[-2.0, -4.0, -6.0]),
        ("sqr", &[1.0, 4.0, 9.0]),
        ("sqrt", &[2.0, 3.0, 4.0]),
        ("add", &[5.0, 11.0, 19.0]),
        ("sub", &[-3.0, -7.0, -13.0]),
        ("mul", &[4.0, 18.0, 48.0]),
        ("powx", &[1.0, 8.0, 27.0]),
        ("abs", &[2.0, 0.0, 0.0, 3.0]),
        ("fabs", &[2.0, 0.0, 0.0, 3.0]),
        ("sign", &[-1.0, 0.0, 0.0, 1.0]),
        // -0 has its sign bit set.
        ("sgnbit", &[1.0, 1.0, 0.0, 0.0]),
        ("dot", &[70.0]),
        ("strided_dot", &[31.0]),
        ("asum", &[5.0]),
        ("nextafter", &[1.0]),
        ("memset", &[0.0, 0.0]),
        ("log", &[0.0, 1.0, 2.0]),
    ];
    for (name, want) in exact {
        assert_eq!(numbers(&r, name), *want, "{name}");
    }
    let div = numbers(&r, "div");
    assert_eq!(div[..2], [4.0, 4.5]);
    assert_eq!(div[2] as f32, 16.0f32 / 3.0);
    let exp = numbers(&r, "exp");
    assert!((exp[1] - std::f64::consts::E).abs() < 1e-8 && (exp[2] - 7.38905609893065).abs() < 1e-7, "{exp:?}");
    // The Mersenne Twister's first value for seed 5489 and its 10000th (the
    // C++ standard's check), which Caffe's boost::mt19937 gives too.
    assert_eq!(numbers(&r, "rng_rand"), [3499211612.0, 4123659995.0]);
    let uniform = numbers(&r, "uniform");
    assert!(uniform[0] >= 2.0 && uniform[1] <= 3.0, "uniform's range: {uniform:?}");
    assert!((uniform[2] - 2.5).abs() < 0.005, "uniform's mean: {uniform:?}");
    assert_eq!(numbers(&r, "reseeded_same"), [1.0], "set_random_seed makes the draws repeat");
    let gaussian = numbers(&r, "gaussian");
    assert!((gaussian[0] - 1.0).abs() < 0.03 && (gaussian[1] - 2.0).abs() < 0.03, "gaussian: {gaussian:?}");
    let bernoulli = numbers(&r, "bernoulli");
    assert!((bernoulli[0] - 0.3).abs() < 0.005 && bernoulli[1] == 1.0 && bernoulli[2] == 1.0, "{bernoulli:?}");
    // im2col + GEMM is the convolution; col2im is its adjoint. Fields: out_h,
    // out_w, the largest difference from the direct loop, the adjoint's.
    for (name, out_h, out_w) in [("im2col_plain", 3.0, 3.0), ("im2col_padded", 4.0, 8.0), ("im2col_dilated", 3.0, 2.0)]
    {
        let v = numbers(&r, name);
        assert_eq!(v[..2], [out_h, out_w], "{name}: {v:?}");
        assert!(v[2] < 1e-12 && v[3] < 1e-12, "{name}: {v:?}");
    }
    assert_eq!(numbers(&r, "im2col_none"), [-1.0], "no columns written");
    for (name, message) in [
        ("error_im2col", "im2col: bad geometry (a negative size or pad, or a kernel, stride or dilation below 1)"),
        ("error_uniform", "caffe_rng_uniform: the range's a is above its b"),
        ("error_gaussian", "caffe_rng_gaussian: sigma is not above 0"),
        ("error_bernoulli", "caffe_rng_bernoulli: p is outside [0, 1]"),
        ("error_gemm_size", "math_functions: M is -1, below 0"),
        ("error_transpose", "math_functions: a transpose flag is CblasNoTrans, CblasTrans or CblasConjTrans, not 5"),
    ] {
        assert_eq!(text(&r, name), message, "{name}");
    }
}
