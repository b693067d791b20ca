//! Helpers shared by the integration tests.
#![allow(dead_code)]
use std::path::{Path, PathBuf};

use tch::Tensor;

/// `tests/fixtures/...` inside the repo.
pub fn fixture(rel: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures").join(rel)
}

/// A BVLC Caffe reference file copied into the repo (`tests/fixtures/caffe-ref/`).
pub fn caffe_ref(rel: &str) -> PathBuf {
    fixture("caffe-ref").join(rel)
}

/// The full shared reference folder, when this machine has it (not all tests need it).
pub fn shared_caffe_ref(rel: &str) -> Option<PathBuf> {
    let p = Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/caffe-ref").join(rel);
    p.exists().then_some(p)
}

/// The device the parity tests run on: `CAFFE_TCH_TEST_DEVICE=cuda` (or
/// `cuda:N`) for the GPU check (scripts/gpu_check.sh); the CPU otherwise.
pub fn test_device() -> tch::Device {
    let device = match std::env::var("CAFFE_TCH_TEST_DEVICE").as_deref() {
        Ok("cuda") => tch::Device::Cuda(0),
        Ok(d) if d.starts_with("cuda:") => tch::Device::Cuda(d[5..].parse().expect("CAFFE_TCH_TEST_DEVICE=cuda:N")),
        Ok("cpu") | Err(_) => tch::Device::Cpu,
        Ok(other) => panic!("CAFFE_TCH_TEST_DEVICE must be cpu, cuda or cuda:N, got '{other}'"),
    };
    if device.is_cuda() {
        assert!(tch::Cuda::is_available(), "CAFFE_TCH_TEST_DEVICE asks for CUDA, but libtorch sees no CUDA device");
    }
    device
}

/// Caffe's parity tolerance on the test device: 1e-4 on the CPU, 1e-3 on CUDA
/// (cuDNN picks its own algorithms, TF32 is off).
pub fn parity_tolerance() -> f64 {
    if test_device().is_cuda() {
        1e-3
    } else {
        1e-4
    }
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
    assert!(d <= rel * (1.0 + m), "{what}: max |Δ| = {d:.3e} > {rel:.0e}·(1 + {m:.3e})");
}

/// Seeded test inputs drawn from a generator of the test's own (splitmix64).
/// libtorch's generator is process-wide and the tests of one binary run on
/// parallel threads: a `manual_seed` followed by draws can interleave with
/// another test's draws (net fillers, random layers), and two nets fed "the
/// same" seeded input then see different data. These draws cannot.
pub struct SeededInputs(u64);

impl SeededInputs {
    pub fn new(seed: u64) -> Self {
        SeededInputs(seed)
    }

    fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in [0, 1), 53 bits.
    fn next_f64(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }

    fn count(shape: &[i64]) -> usize {
        shape.iter().product::<i64>() as usize
    }

    /// f32 values uniform in [0, 1).
    pub fn uniform(&mut self, shape: &[i64]) -> Tensor {
        let v: Vec<f32> = (0..Self::count(shape)).map(|_| self.next_f64() as f32).collect();
        Tensor::from_slice(&v).reshape(shape)
    }

    /// f32 values from N(0, 1) (Box–Muller).
    pub fn normal(&mut self, shape: &[i64]) -> Tensor {
        let v: Vec<f32> = (0..Self::count(shape))
            .map(|_| {
                let u1 = 1.0 - self.next_f64(); // (0, 1]: ln stays finite
                let u2 = self.next_f64();
                ((-2.0 * u1.ln()).sqrt() * (std::f64::consts::TAU * u2).cos()) as f32
            })
            .collect();
        Tensor::from_slice(&v).reshape(shape)
    }

    /// f32 class labels in 0..classes.
    pub fn labels(&mut self, shape: &[i64], classes: u64) -> Tensor {
        let v: Vec<f32> = (0..Self::count(shape)).map(|_| (self.next_u64() % classes) as f32).collect();
        Tensor::from_slice(&v).reshape(shape)
    }
}
