//! The fork itself: two exact copies of the baseline's state, each at its branch's rate, and
//! for the enter design the check that the state is where the design needs it.
//!
//! Enter design: the baseline runs at the small rate η_low; its fork point is the first
//! measured step (after the burn-in) with λ_max ≥ 2/η_high, so the state is beyond the larger
//! rate's threshold. It must also still be *clearly* stable at η_low, λ_max ≤ (1 − margin)·2/η_low,
//! or the stay branch would itself be at the edge of stability and the comparison would not be
//! EoS against stable. The parameters that move the fork point are η_high (the configuration's
//! `run.lr`), η_low, the burn-in and the measurement cadence; the margin only decides whether
//! the point found is accepted. With momentum β every threshold is 2(1 + β)/η.
use super::Design;
use crate::train::GradientDescent;
use crate::{Error, Result};

/// The thresholds of an enter fork.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct EnterThresholds {
    /// 2(1 + β)/η_high: the fork's λ_max must be at least this.
    pub high: f64,
    /// 2(1 + β)/η_low: the stay branch's own threshold (t** is when it reaches it).
    pub low: f64,
    /// The margin: the fork's λ_max must be at most (1 − margin)·2(1 + β)/η_low.
    pub margin: f64,
}

impl EnterThresholds {
    /// The thresholds for rates `low` < `high`, `margin` and momentum β.
    pub fn new(low: f64, high: f64, margin: f64, momentum: f64) -> EnterThresholds {
        EnterThresholds {
            high: crate::train::stability_threshold(high, momentum),
            low: crate::train::stability_threshold(low, momentum),
            margin,
        }
    }
    /// The largest λ_max accepted at the fork: (1 − margin)·2/η_low.
    pub fn limit(&self) -> f64 {
        (1.0 - self.margin) * self.low
    }
    fn numbers(&self) -> String {
        format!(
            "2/η_high = {:.4}, 2/η_low = {:.4}, margin {} (so at most {:.4})",
            self.high,
            self.low,
            self.margin,
            self.limit()
        )
    }
}

/// Check that enter-design rates admit a fork state at all: margin in [0, 1) and
/// (1 − margin)·2/η_low above 2/η_high.
pub fn check_enter_rates(low: f64, high: f64, margin: f64, momentum: f64) -> Result<()> {
    if !(0.0..1.0).contains(&margin) {
        return Err(Error::Config(format!(
            "enter design: margin must be in [0, 1), got {margin}"
        )));
    }
    let t = EnterThresholds::new(low, high, margin, momentum);
    if t.limit() <= t.high {
        return Err(Error::Config(format!(
            "enter design: no state can be beyond 2/η_high and clearly stable at η_low \
             (η_low = {low}, η_high = {high}: {}); lower η_low or the margin",
            t.numbers()
        )));
    }
    Ok(())
}

/// The pre-fork check of the enter design: `lambda` (λ_max of the state to fork) must be
/// beyond the larger rate's threshold, λ ≥ 2/η_high, and clearly on the stable side of the
/// small rate's, λ ≤ (1 − margin)·2/η_low. The error names every number.
pub fn check_enter(lambda: f64, thresholds: EnterThresholds) -> Result<()> {
    let t = thresholds;
    let problem = if lambda.is_nan() {
        Some("is not a number")
    } else if lambda < t.high {
        Some("is below 2/η_high: the state is stable at η_high too, nothing enters the EoS")
    } else if lambda > t.limit() {
        Some("is not clearly below 2/η_low: the stay branch would not be stable")
    } else {
        None
    };
    match problem {
        None => Ok(()),
        Some(why) => Err(Error::Config(format!(
            "enter fork: λ_max = {lambda:.4} {why} ({})",
            t.numbers()
        ))),
    }
}

/// Fork `parent` into `(EoS branch, stable branch)`: both exact copies of its state, the first
/// at `eos_lr`, the second at the design's stable rate (m·η for exit; η_low for enter, where
/// `lambda`, the state's λ_max, must pass [`check_enter`] and the parent must run at η_low, so
/// that the stay branch is the parent's own continuation).
pub fn fork_branches(
    parent: &GradientDescent,
    design: &Design,
    eos_lr: f64,
    lambda: f64,
) -> Result<(GradientDescent, GradientDescent)> {
    let stable_lr = match *design {
        Design::Exit { m } => m * eos_lr,
        Design::Enter { low, margin } => {
            if parent.state.lr != low {
                return Err(Error::Config(format!(
                    "enter fork: the parent runs at η = {}, not at η_low = {low}",
                    parent.state.lr
                )));
            }
            let t = EnterThresholds::new(low, eos_lr, margin, parent.state.momentum);
            check_enter(lambda, t).map_err(|e| match e {
                Error::Config(m) => Error::Config(format!("step {}: {m}", parent.state.step)),
                e => e,
            })?;
            low
        }
    };
    let mut eos = parent.fork()?;
    eos.set_lr(eos_lr)?;
    let mut stable = parent.fork()?;
    stable.set_lr(stable_lr)?;
    Ok((eos, stable))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn thresholds_and_rate_checks() {
        let t = EnterThresholds::new(0.025, 0.05, 0.1, 0.0);
        assert_eq!((t.high, t.low), (40.0, 80.0));
        assert!((t.limit() - 72.0).abs() < 1e-12);
        assert!(check_enter_rates(0.025, 0.05, 0.1, 0.0).is_ok());
        // 0.9 · 2/0.045 = 40 = 2/0.05: no room.
        let e = check_enter_rates(0.045, 0.05, 0.1, 0.0).unwrap_err();
        assert!(e.to_string().contains("2/η_high = 40"), "{e}");
        assert!(check_enter_rates(0.025, 0.05, 1.0, 0.0).is_err());
        assert!(check_enter_rates(0.025, 0.05, -0.1, 0.0).is_err());
    }

    #[test]
    fn the_check_names_the_side_and_the_numbers() {
        let t = EnterThresholds::new(0.025, 0.05, 0.1, 0.0);
        assert!(check_enter(45.3, t).is_ok());
        let below = check_enter(39.0, t).unwrap_err().to_string();
        assert!(below.contains("λ_max = 39.0000") && below.contains("below 2/η_high"));
        let above = check_enter(75.0, t).unwrap_err().to_string();
        assert!(above.contains("not clearly below 2/η_low"), "{above}");
        for n in ["2/η_high = 40.0000", "2/η_low = 80.0000", "margin 0.1"] {
            assert!(above.contains(n), "{n} missing: {above}");
        }
        assert!(check_enter(f64::NAN, t).is_err());
    }
}
