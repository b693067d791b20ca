//! A one-line progress display for terminals: iteration, loss, lr, speed and
//! time left (or, for the dataset tools, items done, rate and time left). It redraws in place on stderr and clears itself before every log
//! line (through `log::BEFORE_LINE`), so logs stay exactly Caffe's. Off when
//! stderr is not a terminal (files and pipes get the log only).
use std::collections::VecDeque;
use std::io::{IsTerminal, Write};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::log;

const REDRAW_EVERY: Duration = Duration::from_millis(200);
/// The speed is measured over the last few seconds, so a test pass or a slow
/// start does not skew the time left for long.
const SPEED_WINDOW: usize = 25;

pub struct Progress {
    enabled: bool,
    visible: Arc<AtomicBool>,
    samples: VecDeque<(Instant, i64)>,
    last_draw: Option<Instant>,
}

impl Progress {
    /// On when stderr is a terminal.
    pub fn for_stderr() -> Progress {
        Progress::new(std::io::stderr().is_terminal())
    }

    pub fn new(enabled: bool) -> Progress {
        Progress { enabled, visible: Arc::new(AtomicBool::new(false)), samples: VecDeque::new(), last_draw: None }
    }

    /// Starts timing a run from `iter` and hooks the log so lines clear the display.
    pub fn start(&mut self, iter: i64) {
        self.samples.clear();
        self.samples.push_back((Instant::now(), iter));
        self.last_draw = None;
        if !self.enabled {
            return;
        }
        let visible = Arc::clone(&self.visible);
        if let Ok(mut hook) = log::BEFORE_LINE.lock() {
            *hook = Some(Box::new(move || {
                if visible.swap(false, Ordering::SeqCst) {
                    let mut err = std::io::stderr().lock();
                    let _ = err.write_all(b"\r\x1b[2K");
                    let _ = err.flush();
                }
            }));
        }
    }

    /// Redraws the line (at most every 200 ms).
    pub fn update(&mut self, iter: i64, max_iter: i64, loss: f32, lr: f32) {
        let Some(speed) = self.sample(iter) else {
            return;
        };
        let line = format!(
            "iter {iter}/{max_iter}  loss {}  lr {}  {speed:.1} iter/s  ETA {}",
            crate::util::format_g(loss as f64, 4),
            crate::util::format_g(lr as f64, 4),
            eta(max_iter - iter, speed),
        );
        self.draw(&line);
    }

    /// Redraws a counting line for a long job (the dataset tools):
    /// `what done/total  rate/s  ETA`, or `what done  rate/s` when the total is unknown.
    pub fn update_count(&mut self, what: &str, done: i64, total: Option<i64>) {
        let Some(speed) = self.sample(done) else {
            return;
        };
        let line = match total {
            Some(total) => {
                let pct = if total > 0 { 100.0 * done as f64 / total as f64 } else { 100.0 };
                format!("{what} {done}/{total} ({pct:.0}%)  {speed:.0}/s  ETA {}", eta(total - done, speed))
            }
            None => format!("{what} {done}  {speed:.0}/s"),
        };
        self.draw(&line);
    }

    /// Records `at` and returns the recent speed, or None when off or drawn less than 200 ms ago.
    fn sample(&mut self, at: i64) -> Option<f64> {
        if !self.enabled || self.last_draw.is_some_and(|t| t.elapsed() < REDRAW_EVERY) {
            return None;
        }
        let now = Instant::now();
        self.last_draw = Some(now);
        self.samples.push_back((now, at));
        while self.samples.len() > SPEED_WINDOW {
            self.samples.pop_front();
        }
        let (t0, i0) = self.samples.front().copied().unwrap_or((now, at));
        let elapsed = now.duration_since(t0).as_secs_f64();
        Some(if elapsed > 0.0 { (at - i0) as f64 / elapsed } else { 0.0 })
    }

    /// Terminal writes of the progress line are best effort everywhere in this
    /// file: a line that cannot be drawn must not stop training.
    fn draw(&self, line: &str) {
        let mut err = std::io::stderr().lock();
        let _ = write!(err, "\r\x1b[2K{line}");
        let _ = err.flush();
        self.visible.store(true, Ordering::SeqCst);
    }

    /// Clears the line and unhooks the log.
    pub fn finish(&mut self) {
        if !self.enabled {
            return;
        }
        if self.visible.swap(false, Ordering::SeqCst) {
            let mut err = std::io::stderr().lock();
            let _ = err.write_all(b"\r\x1b[2K");
            let _ = err.flush();
        }
        if let Ok(mut hook) = log::BEFORE_LINE.lock() {
            *hook = None;
        }
    }
}

impl Drop for Progress {
    fn drop(&mut self) {
        self.finish();
    }
}

/// The time left for `remaining` steps at `speed` per second, or `?`.
fn eta(remaining: i64, speed: f64) -> String {
    if speed > 0.0 {
        format_duration(remaining.max(0) as f64 / speed)
    } else {
        "?".into()
    }
}

/// `1h02m`, `3m05s`, `42s`.
pub fn format_duration(secs: f64) -> String {
    let s = secs.round() as u64;
    match (s / 3600, (s % 3600) / 60, s % 60) {
        (0, 0, sec) => format!("{sec}s"),
        (0, m, sec) => format!("{m}m{sec:02}s"),
        (h, m, _) => format!("{h}h{m:02}m"),
    }
}
