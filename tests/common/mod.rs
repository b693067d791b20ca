//! Helpers shared by the integration tests.
#![allow(dead_code)]
use std::path::{Path, PathBuf};

use tch::Tensor;

/// `tests/fixtures/...` inside the repo.
pub fn fixture(rel: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(rel)
}

/// A BVLC Caffe reference file copied into the repo (`tests/fixtures/caffe-ref/`).
pub fn caffe_ref(rel: &str) -> PathBuf {
    fixture("caffe-ref").join(rel)
}

/// The full shared reference folder, when this machine has it (not all tests need it).
pub fn shared_caffe_ref(rel: &str) -> Option<PathBuf> {
    let p = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../shared/caffe-ref")
        .join(rel);
    p.exists().then_some(p)
}

pub fn read_npy(path: &Path) -> Tensor {
    Tensor::read_npy(path).unwrap_or_else(|e| panic!("reading {}: {e}", path.display()))
}

/// max |a − b|, and max |b|.
pub fn max_abs_diff(a: &Tensor, b: &Tensor) -> (f64, f64) {
    let a = a.to_kind(tch::Kind::Double).to_device(tch::Device::Cpu);
    let b = b.to_kind(tch::Kind::Double).to_device(tch::Device::Cpu);
    assert_eq!(a.size(), b.size(), "shape mismatch");
    let d = (&a - &b).abs().max().double_value(&[]);
    let m = b.abs().max().double_value(&[]);
    (d, m)
}

/// Asserts Caffe's parity tolerance: max |Δ| ≤ rel·(1 + max|ref|).
pub fn assert_close(what: &str, ours: &Tensor, reference: &Tensor, rel: f64) {
    let ours = if ours.size().is_empty() && reference.size().is_empty() {
        ours.shallow_clone()
    } else {
        ours.reshape(reference.size().as_slice())
    };
    let (d, m) = max_abs_diff(&ours, reference);
    assert!(
        d <= rel * (1.0 + m),
        "{what}: max |Δ| = {d:.3e} > {rel:.0e}·(1 + {m:.3e})"
    );
}
