//! `caffe time`: Caffe's benchmark report (per-layer forward/backward ms and the
//! averages), in Caffe's wording so existing log scrapers keep working. The
//! averages time the real training step (forward, then one autograd backward);
//! the per-layer lines come from a second, layer-by-layer pass.
use std::path::Path;
use std::time::Instant;

use tch::Device;

use crate::net::graph::GraphRunner;
use crate::net::timing::synchronize;
use crate::net::Net;
use crate::proto::caffe::{NetState, Phase};
use crate::proto::text::TextOptions;
use crate::{info, warn, Result};

pub struct TimeOptions {
    pub iterations: i64,
    pub phase: Phase,
    pub level: i32,
    pub stages: Vec<String>,
    pub device: Device,
    pub weights: Vec<std::path::PathBuf>,
    /// Time the forward-backward as a CUDA graph's replay (`net::graph`).
    pub cuda_graph: bool,
}

/// The averages `caffe time` reports, in ms.
pub struct TimeReport {
    pub layers: Vec<(String, f64, f64)>,
    pub forward_ms: f64,
    pub backward_ms: f64,
    pub forward_backward_ms: f64,
    pub total_ms: f64,
}

pub fn run(model: &Path, text: TextOptions, o: &TimeOptions) -> Result<TimeReport> {
    let state = NetState { phase: Some(o.phase as i32), level: Some(o.level), stage: o.stages.clone() };
    let mut net = Net::from_file(model, &state, text, o.device)?;
    for w in &o.weights {
        net.load_weights(w)?;
    }
    // Deploy nets have no loss; Caffe still times every layer's backward.
    net.use_outputs_as_loss(true);
    // The timed forwards' blobs are not read; the per-layer pass folds nothing.
    net.read_outputs_only();
    let iterations = o.iterations.max(1);
    info!("caffe.cpp:351", "Performing Forward");
    let loss = net.forward()?;
    info!("caffe.cpp:356", "Initial loss: {}", crate::util::format_g(loss, 6));
    info!("caffe.cpp:357", "Performing Backward");
    // Cleared before each backward as the solver's step does, so the step's
    // memory is the training step's (autograd's gradients become the diffs).
    net.clear_param_diffs()?;
    net.backward()?;
    // In the TEST phase "Forward" is what `caffe test` and `caffe forward` run:
    // no autograd graph. The training step (Forward-Backward) is timed apart.
    let inference_forward = o.phase == Phase::Test;
    if inference_forward {
        // As the training step's first run above: the inference forward's
        // one-time work (packing the convolutions' weights) stays out of the
        // average, as it does in a `caffe test` of many iterations.
        net.forward_inference()?;
    }
    // The graph warms up and records on passes of its own, before the benchmark.
    let mut graph = None;
    if o.cuda_graph {
        match GraphRunner::new(&net) {
            Ok(mut runner) => {
                while !runner.is_replaying() {
                    net.clear_param_diffs()?;
                    net.forward_backward_graphed(&mut runner)?;
                    if runner.fell_back() {
                        break;
                    }
                }
                graph = runner.is_replaying().then_some(runner);
            }
            Err(e) => warn!("caffe.cpp:1", "{e}; timing the eager pass"),
        }
    }
    info!("caffe.cpp:365", "*** Benchmark begins ***");
    info!("caffe.cpp:366", "Testing for {iterations} iterations.");
    let names: Vec<String> = net.layer_names().iter().map(|s| s.to_string()).collect();
    let (mut fwd_total, mut bwd_total) = (0.0, 0.0);
    let total = Instant::now();
    let mut step_total = 0.0;
    for it in 1..=iterations {
        let start = Instant::now();
        let (f, fb) = if let Some(runner) = graph.as_mut() {
            // One replay holds both passes: the forward's share is not timed apart.
            net.clear_param_diffs()?;
            net.forward_backward_graphed(runner)?;
            synchronize(o.device);
            (0.0, start.elapsed().as_secs_f64() * 1e3)
        } else {
            net.forward()?;
            synchronize(o.device);
            let f = start.elapsed().as_secs_f64() * 1e3;
            net.clear_param_diffs()?;
            net.backward()?;
            synchronize(o.device);
            (f, start.elapsed().as_secs_f64() * 1e3)
        };
        step_total += fb;
        bwd_total += fb - f;
        fwd_total += if inference_forward {
            // The training step's graph dies with the step, not in the
            // inference forward that `caffe test` runs without one.
            net.release_graph();
            let start = Instant::now();
            net.forward_inference()?;
            synchronize(o.device);
            start.elapsed().as_secs_f64() * 1e3
        } else {
            f
        };
        info!("caffe.cpp:394", "Iteration: {it} forward-backward time: {} ms.", fb.round());
    }
    let total_ms = total.elapsed().as_secs_f64() * 1e3;
    // The per-layer breakdown needs each layer's backward on its own: a
    // layer-by-layer backward pass, which costs more than the fused one above.
    let mut fwd = vec![0.0; names.len()];
    let mut bwd = vec![0.0; names.len()];
    for _ in 0..iterations {
        net.clear_param_diffs()?;
        let t = net.forward_backward_timed()?;
        for i in 0..names.len() {
            fwd[i] += t.forward_ms[i];
            bwd[i] += t.backward_ms[i];
        }
    }
    let n = iterations as f64;
    info!("caffe.cpp:397", "Average time per layer: ");
    // Caffe pads layer names to 10 columns (longer names overflow).
    let width = 10;
    let mut layers = Vec::new();
    for i in 0..names.len() {
        let (f, b) = (fwd[i] / n, bwd[i] / n);
        info!("caffe.cpp:400", "{:>width$}\tforward: {} ms.", names[i], crate::util::format_g(f, 6));
        info!("caffe.cpp:403", "{:>width$}\tbackward: {} ms.", names[i], crate::util::format_g(b, 6));
        layers.push((names[i].clone(), f, b));
    }
    // A replay holds forward and backward in one launch: their shares come
    // from the layer-by-layer pass (the inference forward's in TEST).
    if graph.is_some() {
        if !inference_forward {
            fwd_total = fwd.iter().sum();
        }
        bwd_total = bwd.iter().sum();
    }
    let report = TimeReport {
        layers,
        forward_ms: fwd_total / n,
        backward_ms: bwd_total / n,
        forward_backward_ms: step_total / n,
        total_ms,
    };
    info!("caffe.cpp:408", "Average Forward pass: {} ms.", crate::util::format_g(report.forward_ms, 6));
    info!("caffe.cpp:410", "Average Backward pass: {} ms.", crate::util::format_g(report.backward_ms, 6));
    // Caffe's figure is the loop's wall time, which in TEST also holds the
    // inference forwards.
    let fb_ms = if inference_forward { report.forward_backward_ms } else { total_ms / n };
    info!("caffe.cpp:412", "Average Forward-Backward: {} ms.", crate::util::format_g(fb_ms, 6));
    info!(
        "caffe.cpp:413",
        "(per-layer times come from a separate layer-by-layer pass; the averages above are the fused training step)"
    );
    if graph.is_some() {
        info!(
            "caffe.cpp:413",
            "(Forward-Backward is a CUDA graph's replay; Forward and Backward are the layer-by-layer pass's, without it)"
        );
    }
    if inference_forward {
        info!("caffe.cpp:413", "(phase TEST: Forward is timed without autograd, as caffe test runs it; Backward and Forward-Backward are the training step)");
    }
    info!("caffe.cpp:414", "Total Time: {} ms.", total_ms.round());
    info!("caffe.cpp:415", "*** Benchmark ends ***");
    Ok(report)
}
