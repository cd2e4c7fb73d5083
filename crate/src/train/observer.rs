//! Observers: code that runs at chosen steps of a gradient-descent process.
use super::StepView;
use crate::Result;

/// Something that looks at the process at each step (before the update).
pub trait Observer {
    /// Called at every step with θ_t; decide internally whether to act.
    fn observe(&mut self, view: &StepView) -> Result<()>;
}

/// A measurement schedule: every `k` steps, plus every `dense_k` steps inside `dense` windows;
/// with `pairs`, each scheduled step `t` is measured together with `t + 1`.
///
/// Why pairs: at the edge of stability gradient descent oscillates with period 2 along the top
/// eigenvector, so a quantity sampled at steps of one parity only is biased by the
/// oscillation; the mean over two consecutive steps is not.
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Every {
    /// Base period in steps.
    pub k: usize,
    /// Step ranges `[start, end)` measured more densely.
    pub dense: Vec<(usize, usize)>,
    /// Period inside the dense windows.
    pub dense_k: usize,
    /// Also measure the step after each scheduled one.
    #[serde(default)]
    pub pairs: bool,
}

impl Every {
    /// Every `k` steps.
    pub fn new(k: usize) -> Self {
        Every {
            k: k.max(1),
            dense: Vec::new(),
            dense_k: 1,
            pairs: false,
        }
    }
    /// Every `k` steps, each with the step after it.
    pub fn pairs(k: usize) -> Self {
        Every {
            pairs: true,
            ..Every::new(k)
        }
    }
    /// Also every `dense_k` steps in `[start, end)`.
    pub fn dense(mut self, start: usize, end: usize, dense_k: usize) -> Self {
        self.dense.push((start, end));
        self.dense_k = dense_k.max(1);
        self
    }
    /// Whether step `t` is a scheduled step (the first of a pair).
    pub fn scheduled(&self, t: usize) -> bool {
        t.is_multiple_of(self.k)
            || self
                .dense
                .iter()
                .any(|&(s, e)| t >= s && t < e && (t - s).is_multiple_of(self.dense_k))
    }
    /// Whether step `t` is measured: scheduled, or (with pairs) right after a scheduled step.
    pub fn hits(&self, t: usize) -> bool {
        self.scheduled(t) || (self.pairs && t > 0 && self.scheduled(t - 1))
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn schedules_with_pairs_and_dense_windows() {
        let hits = |e: &Every| (0..12).filter(|&t| e.hits(t)).collect::<Vec<_>>();
        assert_eq!(hits(&Every::new(4)), vec![0, 4, 8]);
        assert_eq!(hits(&Every::pairs(4)), vec![0, 1, 4, 5, 8, 9]);
        assert_eq!(hits(&Every::new(5).dense(6, 9, 1)), vec![0, 5, 6, 7, 8, 10]);
        assert!(Every::pairs(4).scheduled(8) && !Every::pairs(4).scheduled(9));
    }
}
