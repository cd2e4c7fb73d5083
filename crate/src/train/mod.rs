//! Full-batch gradient descent as a stepping process that observers hook into.
//!
//! Each step evaluates the loss and gradient at θ_t, shows the state to every observer (which may
//! measure sharpness or group metrics), then moves to θ_{t+1}. The loop around the steps, with
//! checkpoints and scheduled measurements at the step boundaries, is [`crate::resume::drive`].
mod observer;

pub use crate::ops::{dot, sq_norm};
pub use observer::{Every, Observer, Progress};

use crate::model::Model;
use crate::objective::{Examples, Objective};
use crate::{Error, Result};
use candle_core::Tensor;
use serde::{Deserialize, Serialize};

/// Optimiser state that, with the parameters, fully determines the rest of a run.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct GdState {
    /// Steps taken so far.
    pub step: usize,
    /// Effective time Σ η over the steps taken.
    pub t_eff: f64,
    /// Current step size η.
    pub lr: f64,
    /// Heavy-ball momentum β (0 = plain gradient descent).
    pub momentum: f64,
}

impl GdState {
    /// Fresh state with step size `lr` and momentum `momentum`.
    pub fn new(lr: f64, momentum: f64) -> Self {
        GdState {
            step: 0,
            t_eff: 0.0,
            lr,
            momentum,
        }
    }
    /// The stability threshold 2(1 + β)/η.
    pub fn threshold(&self) -> f64 {
        stability_threshold(self.lr, self.momentum)
    }
}

/// The stability threshold 2(1 + β)/η of gradient descent with step size η = `lr` and heavy-ball
/// momentum β: the sharpness above which the update is unstable along the top eigenvector. The
/// one place this formula lives.
pub fn stability_threshold(lr: f64, momentum: f64) -> f64 {
    2.0 * (1.0 + momentum) / lr
}

/// One logged step: the loss at θ_t before the update.
#[derive(Clone, Copy, Debug, Serialize, Deserialize, PartialEq)]
pub struct StepRecord {
    /// Step index t.
    pub step: usize,
    /// Effective time before the update.
    pub t_eff: f64,
    /// Step size used for the update from θ_t.
    pub lr: f64,
    /// Training loss at θ_t.
    pub loss: f64,
    /// Gradient norm at θ_t.
    pub grad_norm: f64,
}

/// What an observer sees at step t (parameters θ_t, before the update).
pub struct StepView<'a> {
    /// The model at θ_t.
    pub model: &'a Model,
    /// The training objective.
    pub objective: &'a Objective,
    /// Optimiser state at θ_t.
    pub state: &'a GdState,
    /// Loss and gradient norm at θ_t.
    pub record: StepRecord,
    /// Gradient at θ_t (sorted-name order).
    pub grad: &'a [Tensor],
    /// Momentum buffer at θ_t, if momentum is used.
    pub velocity: Option<&'a [Tensor]>,
    /// Per-example losses and correctness at θ_t, from the same pass as the gradient.
    pub examples: &'a Examples,
}

/// Full-batch gradient descent (optionally with heavy-ball momentum) on one objective.
pub struct GradientDescent {
    /// The model being trained.
    pub model: Model,
    /// The training objective.
    pub objective: Objective,
    /// Step counter, effective time, step size, momentum.
    pub state: GdState,
    /// Momentum buffer (`None` until the first momentum step, or without momentum).
    pub velocity: Option<Vec<Tensor>>,
    /// Every step taken by this process, kept even when a run stops with an error.
    pub history: Vec<StepRecord>,
}

impl GradientDescent {
    /// A process at step 0.
    pub fn new(model: Model, objective: Objective, lr: f64, momentum: f64) -> Result<Self> {
        if !(lr.is_finite() && lr > 0.0) {
            return Err(Error::Config(format!(
                "step size must be positive, got {lr}"
            )));
        }
        if !(0.0..1.0).contains(&momentum) {
            return Err(Error::Config(format!(
                "momentum must be in [0, 1), got {momentum}"
            )));
        }
        Ok(GradientDescent {
            model,
            objective,
            state: GdState::new(lr, momentum),
            velocity: None,
            history: Vec::new(),
        })
    }

    /// Change the step size from the next update on (a fork's learning-rate cut or raise).
    pub fn set_lr(&mut self, lr: f64) -> Result<()> {
        if !(lr.is_finite() && lr > 0.0) {
            return Err(Error::Config(format!(
                "step size must be positive, got {lr}"
            )));
        }
        self.state.lr = lr;
        Ok(())
    }

    /// One step: evaluate at θ_t, show observers, update to θ_{t+1}.
    pub fn step(&mut self, observers: &mut [&mut dyn Observer]) -> Result<StepRecord> {
        let (loss, grad, examples) = self.objective.value_grad_examples(&self.model)?;
        let grad_norm = sq_norm(&grad)?.sqrt();
        let record = StepRecord {
            step: self.state.step,
            t_eff: self.state.t_eff,
            lr: self.state.lr,
            loss,
            grad_norm,
        };
        if !loss.is_finite() || !grad_norm.is_finite() {
            return Err(Error::Diverged {
                step: self.state.step,
                loss,
            });
        }
        self.history.push(record);
        {
            let view = StepView {
                model: &self.model,
                objective: &self.objective,
                state: &self.state,
                record,
                grad: &grad,
                velocity: self.velocity.as_deref(),
                examples: &examples,
            };
            for o in observers.iter_mut() {
                o.observe(&view)?;
            }
        }
        let lr = self.state.lr;
        let direction = if self.state.momentum > 0.0 {
            let beta = self.state.momentum;
            let v = match self.velocity.take() {
                None => grad,
                Some(v) => v
                    .iter()
                    .zip(&grad)
                    .map(|(v, g)| (v * beta)? + g)
                    .collect::<candle_core::Result<Vec<_>>>()?,
            };
            self.velocity = Some(v.clone());
            v
        } else {
            grad
        };
        for ((_, var), d) in self.model.params().iter().zip(&direction) {
            var.set(&crate::kernels::axpy(&var.as_tensor().detach(), -lr, d)?)?;
        }
        self.state.step += 1;
        self.state.t_eff += lr;
        Ok(record)
    }

    /// Take `steps` steps, showing each θ_t to the observers.
    pub fn run(&mut self, steps: usize, observers: &mut [&mut dyn Observer]) -> Result<()> {
        for _ in 0..steps {
            self.step(observers)?;
        }
        Ok(())
    }

    /// Run until the step counter reaches `step` (no-op if already there).
    pub fn run_until(&mut self, step: usize, observers: &mut [&mut dyn Observer]) -> Result<()> {
        while self.state.step < step {
            self.step(observers)?;
        }
        Ok(())
    }

    /// An independent copy of this process (parameters, momentum, counters): a fork.
    pub fn fork(&self) -> Result<GradientDescent> {
        Ok(GradientDescent {
            model: self.model.duplicate()?,
            objective: self.objective.clone(),
            state: self.state.clone(),
            velocity: match &self.velocity {
                None => None,
                Some(v) => Some(
                    v.iter()
                        .map(|t| t.copy())
                        .collect::<candle_core::Result<_>>()?,
                ),
            },
            history: self.history.clone(),
        })
    }
}
