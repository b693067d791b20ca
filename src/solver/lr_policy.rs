//! Learning-rate policies (Caffe's `SGDSolver::GetLearningRate`) and the
//! momentum schedule of the cyclical policies.
//!
//! With `base` = base_lr, `it` = the iteration, `s` = stepsize:
//!
//! | policy | rate |
//! |---|---|
//! | `fixed` | base |
//! | `step` | base · gamma^⌊it/s⌋ (current_step = ⌊it/s⌋) |
//! | `exp` | base · gamma^it |
//! | `inv` | base · (1 + gamma·it)^(−power) |
//! | `multistep` | base · gamma^current_step; current_step advances by one when it ≥ stepvalue[current_step] |
//! | `poly` | base · (1 − it/max_iter)^power |
//! | `sigmoid` | base / (1 + e^(−gamma·(it − s))) |
//! | `triangular` | base + (max_lr − base)·max(0, 1 − x) |
//! | `triangular2` | base + (max_lr − base)·max(0, 1 − x) / 2^(cycle−1) |
//! | `1cycle` | it < s: base + (max_lr − base)·it/s; s ≤ it < 2s: max_lr·(2 − it/s); it ≥ 2s: base/1000 |
//!
//! where cycle = ⌊1 + it/(2s)⌋ and x = |it/s − 2·cycle + 1| (Smith, "Cyclical
//! Learning Rates for Training Neural Networks", 2017). The cyclical policies come
//! from the paper author's Caffe fork, which takes `max_lr` and `stepsize`; its
//! `1cycle` is not in the published source we could read, so the formula above was
//! reconstructed from the fork's published training logs (lr falls from max_lr to
//! 0 over the second step, then stays at base_lr/1000).
//!
//! Momentum schedule (cyclical policies only, when `cyclical_momentum` is set):
//! m = start − (start − peak)·max(0, 1 − x_m) / 2^(cycle_m−1), with x_m and cycle_m
//! as above over period p: the momentum starts at `start`, reaches `peak` at p (where
//! the lr peaks), returns to `start` at 2p and then makes half-height cycles, as the
//! fork's logs show. `cyclical_momentum` is read two ways:
//! * `[low, p]` with p ≥ 1, as the fork's solver files write it: start = `momentum`, peak = low;
//! * `[a, b]` with both < 1: start = a, peak = b, p = stepsize;
//! * `[low]`: start = `momentum`, peak = low, p = stepsize.
use crate::proto::caffe::SolverParameter;
use crate::{info, Error, Result};

/// The momentum cycle of the cyclical policies.
#[derive(Debug, Clone, PartialEq)]
pub struct MomentumCycle {
    pub start: f32,
    pub peak: f32,
    pub period: i64,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Policy {
    Fixed,
    Step { stepsize: i64, gamma: f32 },
    Exp { gamma: f32 },
    Inv { gamma: f32, power: f32 },
    MultiStep { stepvalues: Vec<i64>, gamma: f32 },
    Poly { power: f32, max_iter: i64 },
    Sigmoid { gamma: f32, stepsize: i64 },
    Triangular { max_lr: f32, stepsize: i64 },
    Triangular2 { max_lr: f32, stepsize: i64 },
    OneCycle { max_lr: f32, stepsize: i64 },
}

/// A validated policy: the solver asks it for the rate (and momentum) each iteration.
#[derive(Debug, Clone, PartialEq)]
pub struct LrPolicy {
    pub name: String,
    pub base_lr: f32,
    pub policy: Policy,
    pub momentum_cycle: Option<MomentumCycle>,
}

pub const KNOWN_POLICIES: &[&str] =
    &["fixed", "step", "exp", "inv", "multistep", "poly", "sigmoid", "triangular", "triangular2", "1cycle"];

impl LrPolicy {
    /// Reads and checks the policy's parameters; the error says what is missing or wrong.
    pub fn from_param(p: &SolverParameter) -> Result<LrPolicy> {
        let name = p.lr_policy().to_string();
        let gamma = || -> Result<f32> {
            match p.gamma {
                None => Err(Error::invalid(format!("lr_policy \"{name}\" needs gamma"))),
                Some(g) if g < 0.0 => {
                    Err(Error::invalid(format!("gamma must be ≥ 0 for lr_policy \"{name}\", got {g}")))
                }
                Some(g) => Ok(g),
            }
        };
        let stepsize = || -> Result<i64> {
            match p.stepsize {
                Some(s) if s > 0 => Ok(s as i64),
                Some(s) => Err(Error::invalid(format!("stepsize must be > 0 for lr_policy \"{name}\", got {s}"))),
                None => Err(Error::invalid(format!("lr_policy \"{name}\" needs stepsize"))),
            }
        };
        let power = || p.power.ok_or_else(|| Error::invalid(format!("lr_policy \"{name}\" needs power")));
        let max_lr = || {
            p.max_lr.ok_or_else(|| Error::invalid(format!("lr_policy \"{name}\" needs max_lr (the peak of the cycle)")))
        };
        let policy = match name.as_str() {
            "fixed" => Policy::Fixed,
            "step" => Policy::Step { stepsize: stepsize()?, gamma: gamma()? },
            "exp" => Policy::Exp { gamma: gamma()? },
            "inv" => Policy::Inv { gamma: gamma()?, power: power()? },
            "multistep" => {
                let stepvalues: Vec<i64> = p.stepvalue.iter().map(|&v| v as i64).collect();
                if stepvalues.windows(2).any(|w| w[1] < w[0]) {
                    return Err(Error::invalid(format!("stepvalue must be increasing, got {stepvalues:?}")));
                }
                Policy::MultiStep { stepvalues, gamma: gamma()? }
            }
            "poly" => {
                if p.max_iter() <= 0 {
                    return Err(Error::invalid(format!("lr_policy \"poly\" needs max_iter > 0, got {}", p.max_iter())));
                }
                Policy::Poly { power: power()?, max_iter: p.max_iter() as i64 }
            }
            "sigmoid" => Policy::Sigmoid { gamma: gamma()?, stepsize: stepsize()? },
            "triangular" => Policy::Triangular { max_lr: max_lr()?, stepsize: stepsize()? },
            "triangular2" => Policy::Triangular2 { max_lr: max_lr()?, stepsize: stepsize()? },
            "1cycle" => Policy::OneCycle { max_lr: max_lr()?, stepsize: stepsize()? },
            "" => return Err(Error::invalid(format!("lr_policy is not set (one of: {})", KNOWN_POLICIES.join(", ")))),
            other => {
                return Err(Error::invalid(format!(
                    "Unknown learning rate policy: {other} (known: {})",
                    KNOWN_POLICIES.join(", ")
                )))
            }
        };
        let cyclical =
            matches!(policy, Policy::Triangular { .. } | Policy::Triangular2 { .. } | Policy::OneCycle { .. });
        let momentum_cycle = match (&p.cyclical_momentum[..], cyclical) {
            ([], _) => None,
            (_, false) => {
                return Err(Error::invalid(format!(
                    "cyclical_momentum is only used by the cyclical lr policies, not \"{name}\""
                )))
            }
            (cm, true) => {
                let stepsize = stepsize()?;
                Some(match *cm {
                    [low] => MomentumCycle { start: p.momentum(), peak: low, period: stepsize },
                    [low, period] if period >= 1.0 => {
                        MomentumCycle { start: p.momentum(), peak: low, period: period.round() as i64 }
                    }
                    [a, b] => MomentumCycle { start: a, peak: b, period: stepsize },
                    _ => {
                        return Err(Error::invalid(format!(
                            "cyclical_momentum takes 1 or 2 values (low momentum, then its period or the second momentum), got {}",
                            cm.len()
                        )))
                    }
                })
            }
        };
        Ok(LrPolicy { name, base_lr: p.base_lr(), policy, momentum_cycle })
    }

    /// The rate at `iter` (Caffe's GetLearningRate). `step` and `multistep` move
    /// `current_step`, which the solverstate saves.
    pub fn rate(&self, iter: i64, current_step: &mut i32) -> f32 {
        let base = self.base_lr as f64;
        let it = iter as f64;
        let rate = match &self.policy {
            Policy::Fixed => base,
            Policy::Step { stepsize, gamma } => {
                *current_step = (iter / stepsize) as i32;
                base * (*gamma as f64).powi(*current_step)
            }
            Policy::Exp { gamma } => base * (*gamma as f64).powf(it),
            // Caffe evaluates 1 + gamma·iter in float before the power.
            Policy::Inv { gamma, power } => base * ((1.0f32 + gamma * iter as f32) as f64).powf(-(*power as f64)),
            Policy::MultiStep { stepvalues, gamma } => {
                let cs = *current_step as usize;
                if cs < stepvalues.len() && iter >= stepvalues[cs] {
                    *current_step += 1;
                    info!("sgd_solver.cpp:58", "MultiStep Status: Iteration {iter}, step = {current_step}");
                }
                base * (*gamma as f64).powi(*current_step)
            }
            Policy::Poly { power, max_iter } => base * (1.0 - it / *max_iter as f64).powf(*power as f64),
            Policy::Sigmoid { gamma, stepsize } => base / (1.0 + (-(*gamma as f64) * (it - *stepsize as f64)).exp()),
            Policy::Triangular { max_lr, stepsize } => {
                let (_, x) = cycle_position(iter, *stepsize);
                base + (*max_lr as f64 - base) * (1.0 - x).max(0.0)
            }
            Policy::Triangular2 { max_lr, stepsize } => {
                let (cycle, x) = cycle_position(iter, *stepsize);
                base + (*max_lr as f64 - base) * (1.0 - x).max(0.0) / 2f64.powf(cycle - 1.0)
            }
            Policy::OneCycle { max_lr, stepsize } => {
                let s = *stepsize as f64;
                if iter < *stepsize {
                    base + (*max_lr as f64 - base) * it / s
                } else if iter < 2 * stepsize {
                    *max_lr as f64 * (2.0 - it / s)
                } else {
                    base * 1e-3
                }
            }
        };
        rate as f32
    }

    /// The momentum at `iter`: scheduled when a momentum cycle is set, else `momentum`.
    pub fn momentum(&self, iter: i64, momentum: f32) -> f32 {
        match &self.momentum_cycle {
            None => momentum,
            Some(c) => {
                let (cycle, x) = cycle_position(iter, c.period);
                let dip = (c.start as f64 - c.peak as f64) * (1.0 - x).max(0.0) / 2f64.powf(cycle - 1.0);
                (c.start as f64 - dip) as f32
            }
        }
    }
}

/// (cycle, x) of the triangular wave: cycle = ⌊1 + it/(2s)⌋, x = |it/s − 2·cycle + 1|.
fn cycle_position(iter: i64, stepsize: i64) -> (f64, f64) {
    let cycle = (1 + iter / (2 * stepsize)) as f64;
    let x = (iter as f64 / stepsize as f64 - 2.0 * cycle + 1.0).abs();
    (cycle, x)
}
