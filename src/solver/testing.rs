//! Test passes: the test nets share the train net's weights (the same memory,
//! from the first test pass on, as Caffe's ShareTrainedLayersWith), run `test_iter`
//! batches, and log each output's mean as Caffe's `Test net output` lines.

use std::collections::BTreeMap;

use super::*;

impl Solver {
    /// Tests every test net (Caffe's TestAll).
    pub fn test_all(&mut self) -> Result<()> {
        for i in 0..self.test_nets.len() {
            if self.requested_early_exit {
                break;
            }
            self.test(i)?;
        }
        Ok(())
    }

    /// Runs test net `i` for its `test_iter` batches with the train net's
    /// current weights, and logs the mean of each output.
    pub fn test(&mut self, i: usize) -> Result<()> {
        match self.param.eval_type() {
            "classification" => {}
            "detection" => return self.test_detection(i),
            other => {
                return Err(Error::invalid(format!(
                    "Unknown evaluation type: '{other}' (eval_type is \"classification\" or \"detection\")"
                )))
            }
        }
        info!("solver.cpp:347", "Iteration {}, Testing net (#{i})", self.iter);
        self.test_nets[i].share_weights_with(&self.net)?;
        let test_iter = self.param.test_iter.get(i).copied().unwrap_or(0) as i64;
        let compute_loss = self.param.test_compute_loss();
        let mut scores: Vec<f32> = Vec::new();
        let mut score_names: Vec<(String, f32)> = Vec::new();
        let mut loss = 0.0f32;
        for k in 0..test_iter {
            // Serve requests until none is left (a Stop ends the test).
            loop {
                match self.requested_action() {
                    SolverAction::None => break,
                    SolverAction::Snapshot => {
                        self.snapshot()?;
                    }
                    SolverAction::Stop => {
                        self.requested_early_exit = true;
                        break;
                    }
                }
            }
            if self.requested_early_exit {
                break;
            }
            self.test_nets[i].set_iteration(self.iter);
            self.feed(NetRole::Test(i))?;
            let iter_loss = self.test_nets[i].forward_inference()? as f32;
            if compute_loss {
                loss += iter_loss;
            }
            let net = &self.test_nets[i];
            let mut idx = 0;
            for name in net.output_blob_names() {
                for v in blob_values(net.blob(name))? {
                    if k == 0 {
                        scores.push(v);
                        score_names.push((name.to_string(), net.blob_loss_weight(name)));
                    } else if let Some(s) = scores.get_mut(idx) {
                        *s += v;
                    }
                    idx += 1;
                }
            }
        }
        if self.requested_early_exit {
            info!("solver.cpp:375", "Test interrupted.");
            return Ok(());
        }
        if compute_loss {
            loss /= test_iter as f32;
            info!("solver.cpp:381", "Test loss: {}", g(loss));
        }
        let mut means = Vec::new();
        for (j, (score, (name, weight))) in scores.iter().zip(&score_names).enumerate() {
            let mean = score / test_iter as f32;
            info!("solver.cpp:414", "    Test net output #{j}: {name} = {}{}", g(mean), loss_note(*weight, mean));
            means.push((name.clone(), mean));
        }
        self.test_scores[i] = means;
        Ok(())
    }
}

/// Per test net output: per label, (score, flag) pairs of the detections.
type PerLabel<T> = BTreeMap<usize, BTreeMap<i64, T>>;

impl Solver {
    /// The SSD fork's detection test (`eval_type: "detection"`): each output
    /// holds DetectionEvaluate's rows; over `test_iter` batches they give
    /// each class's average precision (`ap_version`), and the output's value
    /// is their mean over the classes with ground truth.
    fn test_detection(&mut self, i: usize) -> Result<()> {
        info!("solver.cpp:433", "Iteration {}, Testing net (#{i})", self.iter);
        self.test_nets[i].share_weights_with(&self.net)?;
        let test_iter = self.param.test_iter.get(i).copied().unwrap_or(0) as i64;
        let compute_loss = self.param.test_compute_loss();
        let mut true_pos: PerLabel<Vec<(f32, i32)>> = BTreeMap::new();
        let mut false_pos: PerLabel<Vec<(f32, i32)>> = BTreeMap::new();
        let mut num_pos: PerLabel<i64> = BTreeMap::new();
        let mut loss = 0.0f32;
        for _ in 0..test_iter {
            loop {
                match self.requested_action() {
                    SolverAction::None => break,
                    SolverAction::Snapshot => {
                        self.snapshot()?;
                    }
                    SolverAction::Stop => {
                        self.requested_early_exit = true;
                        break;
                    }
                }
            }
            if self.requested_early_exit {
                break;
            }
            self.test_nets[i].set_iteration(self.iter);
            self.feed(NetRole::Test(i))?;
            let iter_loss = self.test_nets[i].forward_inference()? as f32;
            if compute_loss {
                loss += iter_loss;
            }
            let net = &self.test_nets[i];
            for (j, name) in net.output_blob_names().iter().enumerate() {
                let blob = net.blob(name);
                let shape = blob.map(|b| b.size()).unwrap_or_default();
                if shape.last() != Some(&5) {
                    return Err(Error::invalid(format!(
                        "eval_type \"detection\": test net output '{name}' must hold DetectionEvaluate's rows of 5 \
                         values, got shape {shape:?}"
                    )));
                }
                for row in blob_values(blob)?.chunks_exact(5) {
                    let (item, label) = (row[0] as i32, row[1] as i64);
                    if item == -1 {
                        *num_pos.entry(j).or_default().entry(label).or_default() += row[2] as i64;
                        continue;
                    }
                    let (tp, fp) = (row[3] as i32, row[4] as i32);
                    if tp == 0 && fp == 0 {
                        // Matched to a difficult box that is not evaluated.
                        continue;
                    }
                    true_pos.entry(j).or_default().entry(label).or_default().push((row[2], tp));
                    false_pos.entry(j).or_default().entry(label).or_default().push((row[2], fp));
                }
            }
        }
        if self.requested_early_exit {
            info!("solver.cpp:375", "Test interrupted.");
            return Ok(());
        }
        if compute_loss {
            loss /= test_iter as f32;
            info!("solver.cpp:381", "Test loss: {}", g(loss));
        }
        let version = self.param.ap_version().to_string();
        let names: Vec<String> = self.test_nets[i].output_blob_names().iter().map(|s| s.to_string()).collect();
        let mut means = Vec::new();
        let empty = BTreeMap::new();
        for (j, name) in names.iter().enumerate() {
            let Some(positives) = num_pos.get(&j) else { continue };
            let (tps, fps) = (true_pos.get(&j).unwrap_or(&empty), false_pos.get(&j).unwrap_or(&empty));
            let mut sum = 0f32;
            for (&label, &count) in positives {
                let (Some(tp), Some(fp)) = (tps.get(&label), fps.get(&label)) else {
                    warn!("solver.cpp:520", "Missing true_pos for label: {label}");
                    continue;
                };
                let ap = crate::layers::detection::detection_evaluate::average_precision(tp, fp, count, &version)?;
                if self.param.show_per_class_result() {
                    info!("solver.cpp:534", "class{label}: {}", g(ap));
                }
                sum += ap;
            }
            let map = sum / positives.len() as f32;
            info!("solver.cpp:540", "    Test net output #{j}: {name} = {}", g(map));
            means.push((name.clone(), map));
        }
        self.test_scores[i] = means;
        Ok(())
    }
}

/// ` (* w = w·v loss)` for loss outputs, as Caffe prints it.
pub(super) fn loss_note(weight: f32, value: f32) -> String {
    if weight != 0.0 {
        format!(" (* {} = {} loss)", g(weight), g(weight * value))
    } else {
        String::new()
    }
}
