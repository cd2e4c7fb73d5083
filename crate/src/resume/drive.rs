//! The one stepping loop every training process runs (the eos runs, the baseline, both
//! branches): restore the last checkpoint, then at each step boundary save a checkpoint when
//! due, let the process's [`Plan`] measure and decide whether to stop, and take the step with
//! the plan and the other observers looking at it.
//!
//! Why the checkpoint and the plan act at the step boundary and not inside the step as
//! observers: a checkpoint must hold the state *before* the step (so a resumed process repeats
//! exactly the computation the interrupted one would have done), and the last measurement of a
//! process (at its final step) has no step after it.
use super::{ProcessCheckpoints, Stateful};
use crate::Result;
use crate::train::{GradientDescent, Observer, StepView};

/// What a process does after its plan has looked at a step boundary.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Flow {
    /// Take the step.
    Continue,
    /// The process is done: no more steps.
    Stop,
}

/// What one training process measures and when it stops; the driver does the rest.
pub trait Plan {
    /// The measurement state saved with each checkpoint and restored with it.
    fn parts(&mut self) -> Vec<&mut dyn Stateful>;
    /// At the boundary before the process's `i`-th step since it began (its checkpoint, if
    /// due, already saved): measure what is scheduled and say whether to go on.
    fn at(&mut self, gd: &GradientDescent, i: usize) -> Result<Flow>;
    /// Look at every step as it is taken (the group losses of each step, say).
    fn observe(&mut self, _view: &StepView) -> Result<()> {
        Ok(())
    }
}

/// The plan as an observer of the step.
struct Watching<'a, P: ?Sized>(&'a mut P);

impl<P: Plan + ?Sized> Observer for Watching<'_, P> {
    fn observe(&mut self, view: &StepView) -> Result<()> {
        self.0.observe(view)
    }
}

/// Run `gd` under `plan` until the plan stops it: restored from `checkpoints`' latest
/// checkpoint first and checkpointed periodically when given; `observers` (progress, the step
/// budget) see every step after the plan.
pub fn drive<P: Plan + ?Sized>(
    gd: &mut GradientDescent,
    plan: &mut P,
    mut checkpoints: Option<ProcessCheckpoints>,
    observers: &mut [&mut dyn Observer],
) -> Result<()> {
    // Steps count from where the process began (a branch begins at the fork), not from a
    // restored checkpoint.
    let start = gd.state.step;
    if let Some(ck) = checkpoints.as_mut() {
        ck.restore(gd, &mut plan.parts())?;
    }
    loop {
        let i = gd.state.step - start;
        if let Some(ck) = &checkpoints {
            ck.save_if_due(i, gd, &plan.parts())?;
        }
        if plan.at(gd, i)? == Flow::Stop {
            return Ok(());
        }
        let mut watching = Watching(&mut *plan);
        let mut all: Vec<&mut dyn Observer> = vec![&mut watching];
        all.extend(observers.iter_mut().map(|o| &mut **o as &mut dyn Observer));
        gd.step(&mut all)?;
    }
}
