//! Observers: code that runs at chosen steps of a gradient-descent process.
use super::StepView;
use crate::Result;

/// Something that looks at the process at each step (before the update).
pub trait Observer {
    /// Called at every step with θ_t; decide internally whether to act.
    fn observe(&mut self, view: &StepView) -> Result<()>;
}

/// A measurement schedule: every `k` steps, plus every `dense_k` steps inside `dense` windows.
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Every {
    /// Base period in steps.
    pub k: usize,
    /// Step ranges `[start, end)` measured more densely.
    pub dense: Vec<(usize, usize)>,
    /// Period inside the dense windows.
    pub dense_k: usize,
}

impl Every {
    /// Every `k` steps.
    pub fn new(k: usize) -> Self {
        Every {
            k: k.max(1),
            dense: Vec::new(),
            dense_k: 1,
        }
    }
    /// Also every `dense_k` steps in `[start, end)`.
    pub fn dense(mut self, start: usize, end: usize, dense_k: usize) -> Self {
        self.dense.push((start, end));
        self.dense_k = dense_k.max(1);
        self
    }
    /// Whether step `t` is measured.
    pub fn hits(&self, t: usize) -> bool {
        t.is_multiple_of(self.k)
            || self
                .dense
                .iter()
                .any(|&(s, e)| t >= s && t < e && (t - s).is_multiple_of(self.dense_k))
    }
}

/// Prints a progress line to stderr every `every` steps (loss, step size, gradient norm).
pub struct Progress {
    /// Label printed at the start of each line.
    pub label: String,
    /// Period in steps.
    pub every: usize,
    start: std::time::Instant,
}

impl Progress {
    /// A progress printer.
    pub fn new(label: impl Into<String>, every: usize) -> Self {
        Progress {
            label: label.into(),
            every: every.max(1),
            start: std::time::Instant::now(),
        }
    }
}

impl Observer for Progress {
    fn observe(&mut self, v: &StepView) -> Result<()> {
        if v.record.step.is_multiple_of(self.every) {
            eprintln!(
                "[{}] step {:>6}  t_eff {:>9.3}  loss {:.6}  |g| {:.3e}  ({:.1}s)",
                self.label,
                v.record.step,
                v.record.t_eff,
                v.record.loss,
                v.record.grad_norm,
                self.start.elapsed().as_secs_f64()
            );
        }
        Ok(())
    }
}
