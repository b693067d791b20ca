//! The iteration (Caffe's Solver::Step): clear the diffs and test when due,
//! forward and backward `iter_size` times (through the CUDA graph with
//! `-cuda_graph`), the gradients averaged over the ranks, the display, then
//! the update, the snapshot and the requests (signals).
use super::*;

/// What a run of [`Solver::step`] carries from one iteration to the next.
pub struct StepRun {
    start_iter: i64,
    stop_iter: i64,
    timer: Instant,
    iterations_last: i64,
    /// A stop asked for during a test pass (rank 0 alone runs it), carried to
    /// the next all-reduce so that every rank stops together.
    pending_stop: bool,
    /// The request every rank agreed on in this iteration's all-reduce.
    agreed: Option<SolverAction>,
    display: bool,
    stopped: bool,
}

impl Solver {
    /// Runs `iters` iterations (Caffe's Step). Each iteration is three
    /// pieces, which pycaffe also calls one at a time to run the callbacks of
    /// `solver.add_callback` between them, where Caffe calls its own:
    /// [`Solver::step_next`] (then `on_start`), [`Solver::step_gradients`]
    /// (then `on_gradients_ready`) and [`Solver::step_update`].
    pub fn step(&mut self, iters: i64) -> Result<()> {
        let mut run = self.step_begin(iters);
        while self.step_next(&mut run)? {
            self.step_gradients(&mut run)?;
            self.step_update(&mut run)?;
        }
        self.step_end();
        Ok(())
    }

    /// Starts a run of `iters` iterations (see [`Solver::step`]).
    pub fn step_begin(&mut self, iters: i64) -> StepRun {
        // CAFFE_TCH_CUDA_GRAPH=1 asks every solver, pycaffe's included, for `-cuda_graph`.
        if !self.graph_env_seen {
            self.graph_env_seen = true;
            if self.graph.is_none() && std::env::var("CAFFE_TCH_CUDA_GRAPH").is_ok_and(|v| v == "1") {
                self.use_cuda_graph();
            }
        }
        self.losses.clear();
        self.smoothed_loss = 0.0;
        self.progress.start(self.iter);
        StepRun {
            start_iter: self.iter,
            stop_iter: self.iter + iters,
            timer: Instant::now(),
            iterations_last: self.iter,
            pending_stop: false,
            agreed: None,
            display: false,
            stopped: false,
        }
    }

    /// Opens the next iteration: clears the diffs and runs the test pass when
    /// one is due. False when the run is over (or a stop was asked for).
    pub fn step_next(&mut self, run: &mut StepRun) -> Result<bool> {
        if run.stopped || self.iter >= run.stop_iter {
            return Ok(false);
        }
        self.net.clear_param_diffs()?;
        crate::util::allocator::mark_iteration();
        let test_interval = self.param.test_interval() as i64;
        if test_interval > 0 && self.iter % test_interval == 0 && (self.iter > 0 || self.param.test_initialization()) {
            if self.is_root() {
                self.test_all()?;
            }
            if self.requested_early_exit {
                if self.dist.is_none() {
                    run.stopped = true;
                    return Ok(false);
                }
                self.requested_early_exit = false;
                run.pending_stop = true;
            }
        }
        Ok(true)
    }

    /// The iteration's forward and backward passes (`iter_size` of them), the
    /// gradients averaged over the ranks, the loss displayed. A loss that is
    /// not finite stops training here, with a snapshot.
    pub fn step_gradients(&mut self, run: &mut StepRun) -> Result<()> {
        let display_every = self.param.display() as i64;
        let iter_size = self.param.iter_size();
        run.display = display_every > 0 && self.iter % display_every == 0;
        let mut loss = 0.0f32;
        for _ in 0..iter_size {
            self.net.set_iteration(self.iter);
            self.feed(NetRole::Train)?;
            loss += match self.graph.as_mut() {
                Some(runner) => self.net.forward_backward_graphed(runner)? as f32,
                None => {
                    let l = self.net.forward()? as f32;
                    self.net.backward()?;
                    l
                }
            };
        }
        loss /= iter_size as f32;
        // Data-parallel: the request is read before the all-reduce, which
        // carries every rank's, so that all act on the same iteration.
        run.agreed = None;
        if let Some(dist) = self.dist.clone() {
            let request = if run.pending_stop { SolverAction::Stop } else { self.requested_action() };
            let (mean_loss, action) = self.reduce_gradients(&dist, loss, request)?;
            loss = mean_loss;
            run.agreed = Some(action);
        }
        self.update_smoothed_loss(loss, run.start_iter, self.param.average_loss() as usize);
        self.loss_log.push((self.iter, loss));
        if run.display {
            let lapse = run.timer.elapsed().as_secs_f32();
            let per_s = (self.iter - run.iterations_last) as f32 / if lapse > 0.0 { lapse } else { 1.0 };
            info!(
                "solver.cpp:239",
                "Iteration {} ({} iter/s, {}s/{} iters), loss = {}",
                self.iter,
                g(per_s),
                g(lapse),
                display_every,
                g(self.smoothed_loss)
            );
            run.timer = Instant::now();
            run.iterations_last = self.iter;
            self.log_outputs()?;
        }
        if !loss.is_finite() {
            return Err(self.stop_on_nonfinite(loss));
        }
        Ok(())
    }

    /// Closes the iteration: the update, the iteration count, a snapshot when
    /// due or asked for, and a stop when asked for.
    pub fn step_update(&mut self, run: &mut StepRun) -> Result<()> {
        self.apply_update(run.display)?;
        self.iter += 1;
        self.progress.update(self.iter, self.param.max_iter() as i64, self.smoothed_loss, self.rate);
        let request = match run.agreed.take() {
            Some(a) => a,
            None => self.requested_action(),
        };
        let snapshot = self.param.snapshot() as i64;
        if (snapshot > 0 && self.iter % snapshot == 0) || request == SolverAction::Snapshot {
            self.snapshot_on_root()?;
        }
        if request == SolverAction::Stop {
            self.requested_early_exit = true;
            run.stopped = true;
        }
        Ok(())
    }

    /// Ends a run of iterations (the progress line, when one is shown).
    pub fn step_end(&mut self) {
        self.progress.finish();
    }

    /// Averages the gradients over the ranks, in place, with this rank's loss
    /// and request in the same all-reduce; returns the mean loss and the
    /// request every rank now acts on (a stop wins over a snapshot).
    pub(super) fn reduce_gradients(
        &mut self,
        dist: &Dist,
        loss: f32,
        request: SolverAction,
    ) -> Result<(f32, SolverAction)> {
        let stop = (request == SolverAction::Stop) as i32 as f32;
        let snap = (request == SolverAction::Snapshot) as i32 as f32;
        let mut tensors: Vec<Tensor> =
            self.net.learnable_params_mut().iter_mut().map(|p| p.diff_mut().shallow_clone()).collect();
        tensors.push(Tensor::from_slice(&[loss, stop, snap]).f_to_device(self.device)?);
        dist.all_reduce_mean(&mut tensors, &format!("all-reduce of the gradients at iteration {}", self.iter))?;
        let extra = blob_values(tensors.last())?;
        let (mean_loss, any_stop, any_snap) = (extra[0], extra[1] > 0.0, extra[2] > 0.0);
        let action = if any_stop {
            SolverAction::Stop
        } else if any_snap {
            SolverAction::Snapshot
        } else {
            SolverAction::None
        };
        Ok((mean_loss, action))
    }

    /// Snapshots, on rank 0 only in a data-parallel run.
    pub(super) fn snapshot_on_root(&mut self) -> Result<()> {
        if self.is_root() {
            self.snapshot()?;
        }
        Ok(())
    }

    /// Writes a snapshot of the current weights, then fails naming the iteration.
    pub(super) fn stop_on_nonfinite(&mut self, loss: f32) -> Error {
        self.progress.finish();
        let written = if !self.is_root() {
            "rank 0 writes the snapshot".to_string()
        } else {
            match self.snapshot() {
                Ok(files) => format!("the weights before this iteration are in {}", files.model.display()),
                Err(e) => format!("the snapshot could not be written either: {e}"),
            }
        };
        self.error(format!(
            "Iteration {}: the loss is {} (not finite); training stopped ({written}). Lower base_lr, or set clip_gradients",
            self.iter,
            if loss.is_nan() { "NaN".to_string() } else { g(loss) }
        ))
    }

    /// The train net's outputs, as Caffe's display prints them (data-parallel:
    /// their means over the ranks).
    pub(super) fn log_outputs(&self) -> Result<()> {
        let mut outputs: Vec<(&str, f32)> = Vec::new();
        let mut values: Vec<f32> = Vec::new();
        for name in self.net.output_blob_names() {
            let weight = self.net.blob_loss_weight(name);
            for v in blob_values(self.net.blob(name))? {
                outputs.push((name, weight));
                values.push(v);
            }
        }
        if let Some(d) = &self.dist {
            values = d.mean_values(&values, "mean of the train net's outputs")?;
        }
        for (index, ((name, weight), v)) in outputs.into_iter().zip(values).enumerate() {
            info!("solver.cpp:258", "    Train net output #{index}: {name} = {}{}", g(v), loss_note(weight, v));
        }
        Ok(())
    }

    pub(super) fn update_smoothed_loss(&mut self, loss: f32, start_iter: i64, average_loss: usize) {
        if self.losses.len() < average_loss {
            self.losses.push(loss);
            let size = self.losses.len() as f32;
            self.smoothed_loss = (self.smoothed_loss * (size - 1.0) + loss) / size;
        } else {
            let idx = ((self.iter - start_iter) as usize) % average_loss;
            self.smoothed_loss += (loss - self.losses[idx]) / average_loss as f32;
            self.losses[idx] = loss;
        }
    }
}
