//! Helpers shared by the integration tests (all modules of tests/suite.rs):
//! fixture paths, the test device and parity comparisons, seeded inputs, nets
//! from prototxt text, skips for a missing prerequisite, and the lock around
//! libtorch's process-wide random generator. Layer helpers are in [`layer`],
//! the parity fixture loader in [`parity`].
pub mod export;
pub mod layer;
pub mod parity;

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::{RwLock, RwLockReadGuard, RwLockWriteGuard};

use caffe_tch::net::{Net, NetSource};
use caffe_tch::proto::caffe::{NetParameter, NetState, Phase};
use caffe_tch::proto::text::{parse_str, TextOptions};
use tch::{Device, Kind, Tensor};

// ------------------------------------------------------------------ paths

/// The repository (where Cargo.toml is).
pub fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// `tests/fixtures/...` inside the repo.
pub fn fixture(rel: &str) -> PathBuf {
    repo().join("tests/fixtures").join(rel)
}

/// A BVLC Caffe reference file copied into the repo (`tests/fixtures/caffe-ref/`).
pub fn caffe_ref(rel: &str) -> PathBuf {
    fixture("caffe-ref").join(rel)
}

/// The full shared reference folder, when this machine has it (not all tests need it).
pub fn shared_caffe_ref(rel: &str) -> Option<PathBuf> {
    let p = repo().join("../shared/caffe-ref").join(rel);
    p.exists().then_some(p)
}

/// Where Debian's `dataset-fashion-mnist` puts the IDX files (`make system-deps` installs it).
pub const FASHION_MNIST_DIR: &str = "/usr/share/datasets/fashion-mnist";

/// Debian's Fashion-MNIST folder, when the package is installed. Tests never
/// install it: `make system-deps` does, and a test without it skips ([`skip!`]).
/// Writes the decompressed contents of the gzip file `from` to `to` (the
/// IDX files as Caffe's converters and scripts read them).
pub fn gunzip(from: &Path, to: &Path) {
    let mut bytes = Vec::new();
    let file = std::fs::File::open(from).unwrap_or_else(|e| panic!("{}: {e}", from.display()));
    std::io::Read::read_to_end(&mut flate2::read::GzDecoder::new(file), &mut bytes).unwrap();
    std::fs::write(to, bytes).unwrap();
}

pub fn fashion_mnist() -> Option<PathBuf> {
    let dir = PathBuf::from(FASHION_MNIST_DIR);
    let ready = dir.join("train-labels-idx1-ubyte.gz").exists() && dir.join("t10k-images-idx3-ubyte.gz").exists();
    ready.then_some(dir)
}

// ------------------------------------------------------- missing prerequisites

/// Ends the test (`return`s from the function it is written in) because a
/// prerequisite is missing: `skip!("ldd is not available ({e})")`.
///
/// Outside CI the test passes, and the line `SKIPPED: <test>: <what is missing>`
/// goes straight to stderr, where `cargo test` shows it even for a passing
/// test; when `CAFFE_TCH_SKIP_LOG` names a file, the line is also appended there
/// (`make test` counts them at the end). Under CI (`CI=true`) the same line is a
/// panic: CI's `make test` installs every prerequisite, so a skip is a failure.
macro_rules! skip {
    ($($arg:tt)*) => {{
        $crate::common::skip_or_fail(module_path!(), &format!($($arg)*), $crate::common::under_ci());
        return;
    }};
}

/// Whether this is a CI run (`CI=true`, as CI services set it; `1` also counts).
pub fn under_ci() -> bool {
    std::env::var("CI").is_ok_and(|v| v.eq_ignore_ascii_case("true") || v == "1")
}

/// The test running on this thread: libtest names each test's thread after
/// it (`module::test`); otherwise the module the caller is in.
fn current_test(module: &str) -> String {
    match std::thread::current().name() {
        Some(name) if name != "main" => name.to_string(),
        _ => module.strip_prefix("suite::").unwrap_or(module).to_string(),
    }
}

/// [`skip!`]'s work: panics under CI, else prints (and logs) the SKIPPED line.
pub fn skip_or_fail(module: &str, missing: &str, ci: bool) {
    let line = format!("SKIPPED: {}: {missing}", current_test(module));
    if ci {
        panic!("{line} (CI is set: CI installs every prerequisite, so a skip fails)");
    }
    print_uncaptured(&line);
    if let Some(log) = std::env::var_os("CAFFE_TCH_SKIP_LOG").filter(|l| !l.is_empty()) {
        // One short append per line: O_APPEND keeps concurrent tests' lines whole.
        let appended = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log)
            .and_then(|mut f| f.write_all(format!("{line}\n").as_bytes()));
        if let Err(e) = appended {
            print_uncaptured(&format!("(could not append to CAFFE_TCH_SKIP_LOG={}: {e})", Path::new(&log).display()));
        }
    }
}

/// A line for the run's output from a passing test, `NOTE: ...` (never a failure).
pub fn note(line: &str) {
    print_uncaptured(&format!("NOTE: {line}"));
}

/// Writes a line to stderr itself: libtest captures only `print!`/`eprint!`
/// output, so this shows in `cargo test` whether or not the test passes.
fn print_uncaptured(line: &str) {
    let _ = writeln!(std::io::stderr().lock(), "{line}");
}

// -------------------------------------------------- libtorch's random generator

/// libtorch's random generator is one per process, and the tests run on
/// parallel threads of one process. Every test that draws from it in-process
/// (a Net or Solver with random fillers, a random layer, a seeded input, a
/// gradient check) takes one of these guards as its first statement, and keeps
/// it to the end:
///
/// - [`rng_exclusive`] when the test seeds the generator and depends on what it
///   then draws (the same weights or order twice, a gradient check reseeding a
///   random layer between passes, reproducible inputs near a tolerance);
/// - [`rng_shared`] when it draws but any values would do.
///
/// Helpers never take these (a thread holding the shared guard that asks for
/// the exclusive one would wait for itself). [`layer::gradcheck`] and
/// [`layer::randn`] also take the library's `gradcheck::rng_lock`, a plain
/// mutex held only for the seed-and-draw itself; it nests inside these guards.
static GLOBAL_RNG: RwLock<()> = RwLock::new(());

/// No other test that draws from libtorch's generator runs meanwhile.
pub fn rng_exclusive() -> RwLockWriteGuard<'static, ()> {
    GLOBAL_RNG.write().unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// Runs beside other drawing tests, never beside an exclusive one.
pub fn rng_shared() -> RwLockReadGuard<'static, ()> {
    GLOBAL_RNG.read().unwrap_or_else(|poisoned| poisoned.into_inner())
}

// ------------------------------------------------------------------ nets

/// A NetState for `phase`.
pub fn net_state(phase: Phase) -> NetState {
    NetState { phase: Some(phase as i32), ..Default::default() }
}

/// Builds a net on the CPU from prototxt text; `file` names it in errors.
pub fn net(text: &str, file: &str, phase: Phase) -> caffe_tch::Result<Net> {
    let param = parse_str::<NetParameter>(text, file, TextOptions::default())?.message;
    Net::new(&param, &net_state(phase), NetSource::new(file), Device::Cpu)
}

// ------------------------------------------------------------ comparisons

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
        assert!(
            caffe_tch::util::cuda::is_available(),
            "CAFFE_TCH_TEST_DEVICE asks for CUDA, but libtorch sees no CUDA device"
        );
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

/// A tensor's values as f32, flattened.
pub fn values_f32(t: &Tensor) -> Vec<f32> {
    Vec::<f32>::try_from(t.to_kind(Kind::Float).flatten(0, -1)).unwrap()
}

/// An error meant for the user: one line, naming each of `needles`.
pub fn assert_one_line_error(err: &str, needles: &[&str]) {
    eprintln!("expected error: {err}");
    assert!(!err.contains('\n'), "error spans several lines: {err}");
    for n in needles {
        assert!(err.contains(n), "error does not name '{n}': {err}");
    }
}

// ------------------------------------------------------------ seeded inputs

/// Seeded test inputs drawn from a generator of the test's own (splitmix64).
/// libtorch's generator is process-wide and the tests run on parallel threads:
/// a `manual_seed` followed by draws can interleave with another test's draws
/// (net fillers, random layers), and two nets fed "the same" seeded input then
/// see different data. These draws cannot.
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
