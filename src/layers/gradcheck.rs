//! A finite-difference gradient checker, like Caffe's GradientChecker: the
//! layer runs in f64, the objective is a fixed random projection of its tops,
//! and autograd's gradient for every bottom and blob element (or a sample of
//! them) is compared with central differences. Random layers are reseeded
//! before every pass so each evaluation sees the same mask.
use tch::{Device, Kind, Tensor};

use super::{create_layer, filler, Ctx, Shape};
use crate::proto::caffe::{LayerParameter, Phase};
use crate::{Error, Result};

/// libtorch's generator is process-wide. A check reseeds it before every pass;
/// another thread drawing random numbers in between would change a random
/// layer's mask. Checks hold this lock, and tests that draw random numbers in
/// the same process as a random-layer check should hold it too ([`rng_lock`]).
static RNG_LOCK: std::sync::Mutex<()> = std::sync::Mutex::new(());

/// Holds the process-wide random-number lock (poisoning is ignored).
pub fn rng_lock() -> std::sync::MutexGuard<'static, ()> {
    RNG_LOCK.lock().unwrap_or_else(|e| e.into_inner())
}

#[derive(Debug, Clone)]
pub struct GradCheck {
    pub phase: Phase,
    pub iteration: i64,
    /// Finite-difference step.
    pub step: f64,
    /// Allowed |numeric − analytic| / max(1, |numeric|, |analytic|).
    pub tolerance: f64,
    /// Check at most this many elements per tensor (evenly spread).
    pub max_elements: i64,
    /// Bottoms that get no gradient check (labels).
    pub skip_bottoms: Vec<usize>,
    pub seed: i64,
}

impl Default for GradCheck {
    fn default() -> Self {
        GradCheck {
            phase: Phase::Train,
            iteration: i64::MAX,
            step: 1e-4,
            tolerance: 1e-4,
            max_elements: 200,
            skip_bottoms: vec![],
            seed: 1701,
        }
    }
}

/// What a checked gradient is taken with respect to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Input {
    Bottom(usize),
    Blob(usize),
}

impl std::fmt::Display for Input {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Input::Bottom(i) => write!(f, "bottom[{i}]"),
            Input::Blob(j) => write!(f, "blob[{j}]"),
        }
    }
}

/// The result: the worst mismatch found, and how many elements were checked.
#[derive(Debug, Clone)]
pub struct GradReport {
    pub checked: usize,
    pub worst: f64,
    pub worst_at: String,
}

impl GradCheck {
    /// Checks `lp` on the given bottoms (their values are used as given, in f64).
    pub fn run(&self, lp: &LayerParameter, bottoms: &[Tensor]) -> Result<GradReport> {
        let _rng = rng_lock();
        let mut layer = create_layer(lp)?;
        let shapes: Vec<Shape> = bottoms.iter().map(|b| b.size()).collect();
        let setup = layer.setup(&shapes)?;
        tch::manual_seed(self.seed);
        let mut params = Vec::new();
        for d in &setup.params {
            let mut t = filler::fill(&d.filler, &d.shape, Device::Cpu)?.to_kind(Kind::Double);
            // Constant fillers (zero biases) would hide bugs: perturb them.
            if d.filler.r#type() == "constant" {
                t += Tensor::randn(d.shape.as_slice(), (Kind::Double, Device::Cpu)) * 0.1;
            }
            params.push(t);
        }
        let bottoms: Vec<Tensor> = bottoms.iter().map(|b| b.to_kind(Kind::Double).detach()).collect();
        let ctx = Ctx { phase: self.phase, iteration: self.iteration, device: Device::Cpu };

        // The objective's projection weights, one per top, drawn once up front.
        tch::manual_seed(self.seed + 1);
        let first_tops = tch::no_grad(|| layer.forward(&ctx, &bottoms, &params))?;
        tch::manual_seed(self.seed + 2);
        let weights: Vec<Option<Tensor>> = first_tops
            .iter()
            .map(|t| {
                (t.kind() == Kind::Double).then(|| Tensor::rand(t.size().as_slice(), (Kind::Double, Device::Cpu)) - 0.5)
            })
            .collect();
        // Random layers are reseeded before each pass so every pass sees the same mask.
        let objective = |bottoms: &[Tensor], params: &[Tensor], layer: &mut Box<dyn super::Layer>| -> Result<Tensor> {
            tch::manual_seed(self.seed + 1);
            let tops = layer.forward(&ctx, bottoms, params)?;
            let mut total = Tensor::zeros([], (Kind::Double, Device::Cpu));
            for (t, w) in tops.iter().zip(&weights) {
                if let Some(w) = w {
                    total += (t * w).sum(Kind::Double);
                }
            }
            Ok(total)
        };

        // Analytic gradients.
        let mut inputs: Vec<(Input, Tensor)> = Vec::new();
        let bt: Vec<Tensor> = bottoms
            .iter()
            .enumerate()
            .map(|(i, b)| {
                if self.skip_bottoms.contains(&i) {
                    b.shallow_clone()
                } else {
                    let t = b.detach().set_requires_grad(true);
                    inputs.push((Input::Bottom(i), t.shallow_clone()));
                    t
                }
            })
            .collect();
        let pt: Vec<Tensor> = params
            .iter()
            .enumerate()
            .map(|(j, p)| {
                if layer.param_learnable(j) {
                    let t = p.detach().set_requires_grad(true);
                    inputs.push((Input::Blob(j), t.shallow_clone()));
                    t
                } else {
                    p.shallow_clone()
                }
            })
            .collect();
        let obj = objective(&bt, &pt, &mut layer)?;
        let input_tensors: Vec<Tensor> = inputs.iter().map(|(_, t)| t.shallow_clone()).collect();
        let grads = if obj.requires_grad() {
            Tensor::f_run_backward(&[&obj], &input_tensors, false, false)?
        } else {
            input_tensors.iter().map(|t| t.zeros_like()).collect()
        };

        let mut report = GradReport { checked: 0, worst: 0.0, worst_at: String::new() };
        for (k, (input, base)) in inputs.iter().enumerate() {
            let analytic = if grads[k].defined() { grads[k].shallow_clone() } else { base.zeros_like() };
            let n = base.numel() as i64;
            let stride = (n / self.max_elements).max(1);
            let mut e = 0;
            while e < n {
                let eval = |delta: f64, layer: &mut Box<dyn super::Layer>| -> Result<f64> {
                    let perturb = |t: &Tensor| {
                        let c = t.detach().copy();
                        let flat = c.view(-1);
                        let v = flat.double_value(&[e]);
                        let _ = flat.get(e).fill_(v + delta);
                        c
                    };
                    let b2: Vec<Tensor> = bottoms
                        .iter()
                        .enumerate()
                        .map(|(i, b)| if *input == Input::Bottom(i) { perturb(b) } else { b.shallow_clone() })
                        .collect();
                    let p2: Vec<Tensor> = params
                        .iter()
                        .enumerate()
                        .map(|(j, p)| if *input == Input::Blob(j) { perturb(p) } else { p.shallow_clone() })
                        .collect();
                    Ok(tch::no_grad(|| objective(&b2, &p2, layer))?.double_value(&[]))
                };
                let plus = eval(self.step, &mut layer)?;
                let minus = eval(-self.step, &mut layer)?;
                let numeric = (plus - minus) / (2.0 * self.step);
                let a = analytic.reshape(-1).double_value(&[e]);
                let scale = 1f64.max(numeric.abs()).max(a.abs());
                let err = (numeric - a).abs() / scale;
                if err > report.worst {
                    report.worst = err;
                    report.worst_at = format!("{input} element {e}: analytic {a}, numeric {numeric}");
                }
                report.checked += 1;
                e += stride;
            }
        }
        if report.worst > self.tolerance {
            return Err(Error::invalid(format!(
                "gradient mismatch {:.3e} > {:.1e} at {}",
                report.worst, self.tolerance, report.worst_at
            )));
        }
        Ok(report)
    }
}
