//! Presets: the configurations the notebooks and `eoslab claim` run, with the reasons for each
//! choice beside it.
use crate::branch::{BranchConfig, Design};
use crate::config::{DataConfig, DataSource, RunConfig, Standardize};
use crate::eos::EosConfig;
use crate::groups::{GroupConfig, InputOutlierMode};
use crate::hessian::LanczosConfig;
use crate::loss::LossKind;
use crate::model::Activation;
use crate::sharpness::SharpnessConfig;
use crate::train::Every;

/// The shipped digits, two classes, per-feature standardised.
pub fn digits_data() -> DataConfig {
    DataConfig {
        source: DataSource::Digits,
        classes: Some(vec![3, 8]),
        train_per_class: None,
        test_fraction: 0.2,
        standardize: Standardize::PerFeature,
        seed: 0,
        reduce: crate::data::Reduce::default(),
    }
}

/// One CPU-scale run on the shipped digits: MLP 64-256-256-2, tanh, init scale 0.2 (the
/// paper's), MSE, η = 0.1 (2/η = 20), λ_max every 20 steps, f32.
///
/// Why: with init scale 0.2 the initial sharpness (≈ 4) is far below 2/η, so progressive
/// sharpening is visible; η = 0.1 reaches 2/η after ≈ 270 steps. The burn-in of 150 steps skips
/// the early catapult that larger rates show in the first ≈ 80 steps.
pub fn digits_run() -> RunConfig {
    RunConfig {
        data: digits_data(),
        hidden: vec![256, 256],
        activation: Activation::Tanh,
        init_scale: 0.2,
        loss: LossKind::Mse,
        lr: 0.1,
        momentum: 0.0,
        steps: 1000,
        sharpness: sharpness_every(20),
        burn_in: 150,
        dtype: crate::config::Precision::F32,
        device: crate::config::DeviceSpec::Cpu,
        chunk: None,
    }
}

/// Claim `eos` on the shipped digits: η ∈ {0.1, 0.15}, five seeds, on the training set of the
/// branching claims (8 examples per class per group injected).
///
/// Why the groups: digits 3 vs 8 without them is separable within ≈ 200 steps, after which the
/// loss vanishes and λ_max decays before reaching 2/η (measured: peak 15.6 < 20 at η = 0.1);
/// the 16 label-flipped output-outliers keep the loss from vanishing, as in the paper's setup.
pub fn digits_eos() -> EosConfig {
    EosConfig {
        run: digits_run(),
        lrs: vec![0.1, 0.15],
        seeds: (0..5).collect(),
        groups: Some(GroupConfig::paper(8)),
    }
}

/// Claim `tradeoff` on the shipped digits: exit design (m = 0.1), MSE, five seeds.
pub fn digits_tradeoff() -> BranchConfig {
    BranchConfig {
        run: RunConfig {
            steps: 4000,
            ..digits_run()
        },
        groups: GroupConfig::paper(8),
        design: Design::Exit { m: 0.1 },
        horizon: 20.0,
        seeds: (0..5).collect(),
        measurement: crate::branch::Measurement::EveryStep,
        monitor: crate::monitor::MonitorConfig::default(),
        t2_checks: 0,
        after_t2: None,
        baseline_metrics: true,
    }
}

/// Claim `tradeoff-enter` on the shipped digits: the trade-off setup in the enter design, the
/// baseline at η_low = 0.05 (2/η_low = 40) forking where λ_max first reaches 2/η = 20.
///
/// Why 0.05 and not the exit design's stable rate m·η = 0.01: at 0.01 the baseline needs ≈ 10×
/// the steps to reach 20 and the stay branch would never reach its own threshold 200.
pub fn digits_enter() -> BranchConfig {
    BranchConfig {
        design: Design::enter(0.05),
        baseline_metrics: false,
        ..digits_tradeoff()
    }
}

/// Claim `alignment`: the trade-off setup with coherent input-outliers, and the matched control
/// with random-direction input-outliers (same source points, same displacement norm).
///
/// Both track the top 3 eigenpairs (not only v_max) to measure alignment with the top-k
/// eigenspace as well; the extra eigenpairs do not change the trajectories.
pub fn digits_alignment() -> (BranchConfig, BranchConfig) {
    let mut coherent = digits_tradeoff();
    coherent.run.sharpness.lanczos.k = 3;
    let mut random = coherent.clone();
    random.groups.input_outlier_mode = InputOutlierMode::RandomDirection { seed: 1 };
    (coherent, random)
}

/// Claim `saturation`: the same data, groups, model and seeds under cross-entropy (η = 0.3,
/// m = 0.5) and under MSE (the trade-off run: η = 0.1, m = 0.1).
///
/// Why η = 0.3 for CE: under cross-entropy λ_max peaks before 2/η = 20 at η = 0.1 (measured:
/// largest 10.8 within 4,000 steps) because the loss saturates; η = 0.3 (2/η ≈ 6.7) enters the
/// EoS at step ≈ 240. Why the horizon of 100 (≈ 330 EoS steps): the stable branch's λ_max never
/// reaches 2/(mη) under CE, so the window ends at the horizon, and gradient saturation needs
/// time to show (at a horizon of 20 the confident groups' ‖g‖ fell only to ≈ 0.45×).
pub fn digits_saturation() -> (BranchConfig, BranchConfig) {
    let mse = digits_tradeoff();
    let mut ce = mse.clone();
    ce.run.loss = LossKind::CrossEntropy;
    ce.run.lr = 0.3;
    ce.design = Design::Exit { m: 0.5 };
    ce.horizon = 100.0;
    (ce, mse)
}

/// The presets' λ_max schedule: the top eigenvalue to relative residual 1e-4 (at most 100
/// products), warm-started from the previous eigenvector, every `every` steps.
pub(crate) fn sharpness_every(every: usize) -> SharpnessConfig {
    SharpnessConfig {
        every: Every::new(every),
        lanczos: LanczosConfig {
            k: 1,
            tol: 1e-4,
            max_iter: 100,
            seed: 0,
        },
        subset: None,
        warm_start: true,
        track_above: None,
    }
}

/// A named preset: which configuration each claim runs.
#[derive(Clone, Debug, PartialEq)]
pub enum Preset {
    /// `cifar10-subset` (default): the shipped CIFAR-10 1 vs 9 subset
    /// ([`super::cifar_subset`]).
    CifarSubset,
    /// `digits`: the shipped UCI digits, the fast path for tests.
    Digits,
    /// `paper-cifar10`: the paper's full setup on CIFAR-10 from a directory ([`super::paper`]).
    Paper(std::path::PathBuf),
}

impl Preset {
    /// The preset called `name`; `paper-cifar10` needs the CIFAR-10 directory.
    pub fn named(name: &str, data_dir: Option<&std::path::Path>) -> crate::Result<Preset> {
        use super::{cifar_subset, paper};
        Ok(match name {
            cifar_subset::NAME => Preset::CifarSubset,
            "digits" => Preset::Digits,
            paper::NAME => Preset::Paper(
                data_dir
                    .ok_or_else(|| {
                        crate::Error::Config(format!("preset {name} needs a CIFAR-10 directory"))
                    })?
                    .to_path_buf(),
            ),
            _ => {
                return Err(crate::Error::Config(format!(
                    "unknown preset {name:?} (available: {}, digits, {})",
                    cifar_subset::NAME,
                    paper::NAME
                )));
            }
        })
    }
    /// Claim `eos`.
    pub fn eos(&self) -> EosConfig {
        match self {
            Preset::CifarSubset => super::cifar_subset::eos(),
            Preset::Digits => digits_eos(),
            Preset::Paper(d) => super::paper::eos(d),
        }
    }
    /// Claim `tradeoff`.
    pub fn tradeoff(&self) -> BranchConfig {
        match self {
            Preset::CifarSubset => super::cifar_subset::tradeoff(),
            Preset::Digits => digits_tradeoff(),
            Preset::Paper(d) => super::paper::tradeoff(d),
        }
    }
    /// Claim `tradeoff-enter`: the enter design matched to [`Preset::tradeoff`].
    pub fn enter(&self) -> BranchConfig {
        match self {
            Preset::CifarSubset => super::cifar_subset::enter(),
            Preset::Digits => digits_enter(),
            Preset::Paper(d) => super::paper::enter(d),
        }
    }
    /// Claim `alignment`: (coherent, random-direction control).
    pub fn alignment(&self) -> (BranchConfig, BranchConfig) {
        match self {
            Preset::CifarSubset => super::cifar_subset::alignment(),
            Preset::Digits => digits_alignment(),
            Preset::Paper(d) => super::paper::alignment(d),
        }
    }
    /// Claim `saturation`: (cross-entropy, MSE).
    pub fn saturation(&self) -> (BranchConfig, BranchConfig) {
        match self {
            Preset::CifarSubset => super::cifar_subset::saturation(),
            Preset::Digits => digits_saturation(),
            Preset::Paper(d) => super::paper::saturation(d),
        }
    }
    /// One baseline run and the groups of its training set.
    pub fn run_and_groups(&self) -> (RunConfig, GroupConfig) {
        match self {
            Preset::CifarSubset => (super::cifar_subset::run(), super::cifar_subset::groups()),
            Preset::Digits => (digits_run(), GroupConfig::paper(8)),
            Preset::Paper(d) => (
                super::paper::run(d),
                GroupConfig::paper(super::paper::GROUP_PER_CLASS),
            ),
        }
    }
}
