//! The `eoslab` command line: the same library calls as the notebooks, for long or large runs.
use clap::{Parser, Subcommand};
use eoslab::Result;
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(Parser)]
#[command(
    name = "eoslab",
    version,
    about = "Edge-of-stability experiments: sharpness, branching, per-group effects"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Curvature of a checkpoint's training loss as JSON: spectral density (stochastic Lanczos
    /// quadrature), trace (Hutch++ or Hutchinson, with standard error) and the top eigenvalues
    /// of the Hessian H, its Gauss-Newton part G and the residual R = H - G.
    Spectrum {
        /// Checkpoint written by any eoslab run (`*.safetensors`).
        #[arg(long)]
        checkpoint: PathBuf,
        /// Training set exported by the run (`train.safetensors`: x, y, group).
        #[arg(long)]
        data: PathBuf,
        /// Matrices, comma-separated: hessian, gauss-newton, residual.
        #[arg(long, value_delimiter = ',', default_value = "hessian,gauss-newton")]
        curvature: Vec<eoslab::hessian::Curvature>,
        /// Top eigenvalues per matrix.
        #[arg(long, default_value_t = 5)]
        k: usize,
        /// Relative residual tolerance of the top eigenvalues (f32 products resolve little
        /// below 1e-5: for more, add --dtype f64).
        #[arg(long, default_value_t = 1e-4)]
        tol: f64,
        /// Maximum products per eigen-solve.
        #[arg(long, default_value_t = 500)]
        max_iter: usize,
        /// Trace estimator: hutch++ or hutchinson.
        #[arg(long, default_value = "hutch++")]
        trace: eoslab::hessian::TraceMethod,
        /// Products spent on the trace.
        #[arg(long, default_value_t = 90)]
        trace_products: usize,
        /// SLQ probes.
        #[arg(long, default_value_t = 4)]
        probes: usize,
        /// Lanczos steps per SLQ probe.
        #[arg(long, default_value_t = 60)]
        steps: usize,
        /// Density grid points.
        #[arg(long, default_value_t = 400)]
        grid: usize,
        /// Gaussian smoothing width, as a fraction of the spectral range.
        #[arg(long, default_value_t = 0.01)]
        sigma: f64,
        /// Seed of the random probes.
        #[arg(long, default_value_t = 0)]
        seed: u64,
        /// `cpu` or `cuda:N`.
        #[arg(long, default_value = "cpu")]
        device: String,
        /// `f32`, `f64`, or `checkpoint` (the dtype it was saved in).
        #[arg(long, default_value = "checkpoint")]
        dtype: String,
    },
    /// Curvature along one fork (notebook 05): train one seed to t*, fork, and at points before
    /// t*, at t* and after it on both branches compute the density, trace and top eigenvalues
    /// of H, G and R; writes config.json, spectra.json, spectra.{csv,parquet} and figures.
    Spectra {
        /// Configuration (`config.json` of an earlier `spectra` run); default: the
        /// cifar10-subset preset's (notebook 05).
        #[arg(long)]
        config: Option<PathBuf>,
        /// Override a field, e.g. `--set seed=3`, `--set branch.run.loss=ce` (repeatable).
        #[arg(long = "set", value_name = "PATH=VALUE")]
        set: Vec<String>,
        /// Output directory.
        #[arg(long)]
        out: PathBuf,
    },
    /// Top-k Hessian eigenvalues of a checkpoint on a training set, as JSON.
    Sharpness {
        /// Checkpoint written by any eoslab run (`*.safetensors`).
        #[arg(long)]
        checkpoint: PathBuf,
        /// Training set exported by the run (`train.safetensors`: x, y, group).
        #[arg(long)]
        data: PathBuf,
        /// Number of eigenvalues.
        #[arg(long, default_value_t = 1)]
        k: usize,
        /// Relative residual tolerance.
        #[arg(long, default_value_t = 1e-6)]
        tol: f64,
        /// Maximum Hessian-vector products.
        #[arg(long, default_value_t = 500)]
        max_iter: usize,
        /// `cpu` or `cuda:N`.
        #[arg(long, default_value = "cpu")]
        device: String,
        /// `f32`, `f64`, or `checkpoint` (the dtype it was saved in).
        #[arg(long, default_value = "checkpoint")]
        dtype: String,
    },
    /// Run a claim's experiment and print `CLAIM <name>: HOLDS|FAILS` with a JSON summary.
    ///
    /// With --out the run is resumable: rerunning the same command after an interruption
    /// continues from the last checkpoint and skips completed seeds; a different configuration
    /// in that directory is an error.
    Claim {
        #[command(flatten)]
        args: ClaimArgs,
        /// Output directory for the run record (and its checkpoints).
        #[arg(long)]
        out: Option<PathBuf>,
        /// Stop after this many gradient steps (exit status 3); rerun to resume.
        #[arg(long)]
        step_budget: Option<usize>,
        /// Seeds run side by side, one core each (default: EOSLAB_JOBS or 1); results do not
        /// depend on it.
        #[arg(long)]
        jobs: Option<usize>,
    },
    /// Write a sweep of a claim over seeds and settings: one task per (point, seed) with its
    /// exact options, and a Slurm batch script for a job array (`sweep.sbatch`). With
    /// --submit the unfinished tasks go to `sbatch`; with --local they run here, -j at a time.
    /// Both run `eoslab task`; `eoslab collect` gathers the verdicts.
    Sweep {
        #[command(flatten)]
        args: ClaimArgs,
        /// The sweep directory (rerunning with the same arguments reuses it).
        #[arg(long)]
        out: PathBuf,
        /// An axis besides the seeds: `PATH=V1,V2,…` with PATH any configuration field or
        /// m (design.m), lr (run.lr), loss (run.loss), per_class (groups.per_class); repeatable
        /// (the sweep is their product).
        #[arg(long = "axis", value_name = "PATH=VALUES")]
        axes: Vec<String>,
        /// Submit the unfinished tasks with sbatch.
        #[arg(long, conflicts_with = "local")]
        submit: bool,
        /// Run the unfinished tasks on this machine as separate processes.
        #[arg(long)]
        local: bool,
        /// With --local: tasks at once.
        #[arg(short = 'j', long = "jobs", default_value_t = 1)]
        jobs: usize,
        #[command(flatten)]
        slurm: eoslab::cli::sweep::SlurmOptions,
    },
    /// Run task INDEX of a sweep (what each Slurm array task and each --local process runs):
    /// a finished task is skipped, an interrupted one resumes from its last checkpoint.
    Task {
        /// The sweep directory.
        dir: PathBuf,
        /// The task's index (`$SLURM_ARRAY_TASK_ID`).
        index: usize,
    },
    /// Gather a sweep's finished tasks: print each point's verdicts and JSON (as `claim` prints
    /// them for the same configuration), report unfinished tasks with their log's last line,
    /// and write `collect/summary.{parquet,csv}` and the effects figures.
    Collect {
        /// The sweep directory.
        dir: PathBuf,
    },
    /// Run a configuration again: a run directory's `config.json` (eos or branching), with
    /// `--set` overrides; prints the verdict of its criterion (eos, or tradeoff /
    /// tradeoff-enter by the fork's design) and its JSON summary, as `claim` does.
    Run {
        /// The configuration (`config.json` of any eoslab run directory).
        config: PathBuf,
        /// Output directory (resumable, as for `claim`); without it nothing is written.
        #[arg(long)]
        out: Option<PathBuf>,
        /// Override a field, e.g. `--set run.lr=0.02` (repeatable; see `claim --set`).
        #[arg(long = "set", value_name = "PATH=VALUE")]
        set: Vec<String>,
        /// Stop after this many gradient steps (exit status 3); rerun to resume.
        #[arg(long)]
        step_budget: Option<usize>,
        /// Checkpoint every this many steps (with --out).
        #[arg(long, default_value_t = 512)]
        checkpoint_every: usize,
        /// Seeds run side by side, one core each (default: EOSLAB_JOBS or 1).
        #[arg(long)]
        jobs: Option<usize>,
    },
    /// Train a preset's baseline for some steps; print per-step losses, λ_max and timings as
    /// JSON (to measure costs, or compare devices and dtypes).
    Train {
        /// `cifar10-subset`, `digits` or `paper-cifar10`.
        #[arg(long, default_value = "cifar10-subset")]
        preset: String,
        /// Directory with CIFAR-10's binary batches (for paper-cifar10).
        #[arg(long)]
        data_dir: Option<PathBuf>,
        /// Gradient steps.
        #[arg(long, default_value_t = 64)]
        steps: usize,
        /// `cpu` or `cuda:N`.
        #[arg(long)]
        device: Option<String>,
        /// `f32` or `f64`.
        #[arg(long)]
        dtype: Option<String>,
        /// Step size (default: the preset's).
        #[arg(long)]
        lr: Option<f64>,
        /// `mse`, `mse-half` or `ce` (default: the preset's).
        #[arg(long)]
        loss: Option<String>,
        /// Init seed.
        #[arg(long, default_value_t = 0)]
        seed: u64,
        /// Measure λ_max every this many steps (default: the preset's).
        #[arg(long)]
        sharpness_every: Option<usize>,
        /// Also write the JSON to this file.
        #[arg(long)]
        json: Option<PathBuf>,
    },
    /// The regime map: how the decisive numbers of the alignment and saturation claims move
    /// with the group fraction, n/d and the output-outlier construction (the runs of notebook
    /// 04; resumable, see `claim`). Prints the table and writes it, the figures and every run
    /// under --out.
    Regime {
        /// Output directory (tables, figures, and the runs under `runs/`).
        #[arg(long)]
        out: PathBuf,
        /// Seeds (of all cells) run side by side, one core each (default: EOSLAB_JOBS or 1).
        #[arg(long)]
        jobs: Option<usize>,
    },
    /// Write a synthetic data set in CIFAR-10's binary format (for trying the paper preset
    /// without CIFAR-10).
    SyntheticCifar {
        /// Output directory.
        out: PathBuf,
        /// Training images per class (10 classes).
        #[arg(long, default_value_t = 5000)]
        train_per_class: usize,
        /// Test images per class.
        #[arg(long, default_value_t = 1000)]
        test_per_class: usize,
        /// Seed.
        #[arg(long, default_value_t = 0)]
        seed: u64,
    },
}

/// The options of a claim's run, shared by `claim` and `sweep`.
#[derive(clap::Args)]
struct ClaimArgs {
    /// Which claim: eos, tradeoff, alignment or saturation.
    name: String,
    /// For tradeoff: `exit` (fork at the edge of stability, cut the rate: claim
    /// tradeoff), `enter` (fork a stable run at a small rate, raise the rate beyond the
    /// state's threshold: claim tradeoff-enter) or `both` (the two, and claim
    /// tradeoff-consistent on them).
    #[arg(long, default_value = "exit")]
    design: String,
    /// `cifar10-subset` (the shipped CIFAR-10 1 vs 9 subset at CPU scale: what the
    /// notebooks run), `digits` (the shipped UCI digits: seconds, for tests) or
    /// `paper-cifar10` (all of CIFAR-10 1 vs 9, MLP 3072-512-512-2, η = 0.01: for a GPU;
    /// needs --data-dir).
    #[arg(long, default_value = "cifar10-subset")]
    preset: String,
    /// Directory with CIFAR-10's binary batches (data_batch_1.bin … test_batch.bin).
    #[arg(long)]
    data_dir: Option<PathBuf>,
    /// Number of seeds (default: the preset's).
    #[arg(long)]
    seeds: Option<usize>,
    /// Your data instead of the shipped digits: a CSV (label in the last column), a
    /// safetensors file (`x` [n, d], `y` [n]), or MNIST IDX files (their directory, or the
    /// `*-images-idx3-ubyte[.gz]` file with its labels file beside it).
    #[arg(long)]
    data: Option<PathBuf>,
    /// Classes to keep, e.g. `3,8` (relabelled 0..k in this order).
    #[arg(long, value_delimiter = ',')]
    classes: Option<Vec<u32>>,
    /// `cpu` or `cuda:N` (needs a build with `--features cuda`).
    #[arg(long)]
    device: Option<String>,
    /// `f32` or `f64` (default: the preset's, f32).
    #[arg(long)]
    dtype: Option<String>,
    /// Cap on baseline steps (branching claims) or run length (eos), instead of the preset's.
    #[arg(long)]
    steps: Option<usize>,
    /// Checkpoint every this many steps (with --out).
    #[arg(long, default_value_t = 512)]
    checkpoint_every: usize,
    /// Effective time each branch runs after the fork (branching claims), instead of the
    /// preset's (short runs, for tests).
    #[arg(long)]
    horizon: Option<f64>,
    /// Override any field of the experiment's configuration, e.g. `--set run.lr=0.02
    /// --set groups.per_class=10` (a JSON value, or a plain string); repeatable, applied
    /// after the other options. The run directory's `config.json` shows every field.
    #[arg(long = "set", value_name = "PATH=VALUE")]
    set: Vec<String>,
}

impl ClaimArgs {
    /// The claim's name and its options.
    fn options(self) -> (String, eoslab::cli::ClaimOptions) {
        let o = eoslab::cli::ClaimOptions {
            preset: Some(self.preset),
            data_dir: self.data_dir,
            seeds: self.seeds,
            data: eoslab::cli::DataChoice {
                path: self.data,
                classes: self.classes,
            },
            device: self.device,
            dtype: self.dtype,
            steps: self.steps,
            checkpoint_every: Some(self.checkpoint_every),
            horizon: self.horizon,
            design: Some(self.design),
            set: self.set,
            ..Default::default()
        };
        (self.name, o)
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e @ eoslab::Error::Interrupted(_)) => {
            eprintln!("{e}");
            ExitCode::from(3)
        }
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}

/// `--jobs` overrides `EOSLAB_JOBS` for this process (read by `eoslab::parallel::default_jobs`).
fn set_jobs(jobs: Option<usize>) {
    if let Some(j) = jobs {
        // SAFETY: called before any thread is started.
        unsafe { std::env::set_var("EOSLAB_JOBS", j.max(1).to_string()) };
    }
}

/// `eoslab sweep`: write the sweep, then submit it, run it here, or say how to.
fn sweep(
    name: &str,
    opts: &eoslab::cli::ClaimOptions,
    axes: Vec<eoslab::cli::sweep::Axis>,
    slurm: eoslab::cli::sweep::SlurmOptions,
    out: &std::path::Path,
    (submit, local, jobs): (bool, bool, usize),
) -> Result<()> {
    use eoslab::cli::sweep::Sweep;
    let exe = std::env::current_exe().map_err(|e| eoslab::Error::io("eoslab", e))?;
    let s = Sweep::plan(name, opts, axes, slurm)?;
    s.write(out, &exe)?;
    let todo = s.unfinished(out).len();
    eprintln!(
        "[sweep] {}: {} tasks ({todo} unfinished), script {}",
        out.display(),
        s.tasks.len(),
        out.join("sweep.sbatch").display()
    );
    if submit {
        match eoslab::cli::sweep::submit(out)? {
            Some(id) => eprintln!("[sweep] submitted job array {id}"),
            None => eprintln!(
                "[sweep] every task has finished: eoslab collect {}",
                out.display()
            ),
        }
    } else if local {
        eoslab::cli::sweep::run_local(out, &exe, jobs)?;
    } else {
        eprintln!("[sweep] submit with --submit, or run here with --local -j N");
    }
    Ok(())
}

/// `eoslab collect`: print every complete point's verdicts; an error if any task is unfinished.
fn collect(dir: &std::path::Path) -> Result<()> {
    let c = eoslab::cli::collect::collect(dir)?;
    let axes = c.points.first().is_some_and(|p| !p.point.is_empty());
    for p in &c.points {
        if axes {
            println!(
                "# point {}",
                eoslab::cli::sweep::point_sets(&p.point).join(" ")
            );
        }
        eoslab::cli::print_verdicts(&p.verdicts);
    }
    if c.incomplete.is_empty() {
        return Ok(());
    }
    for (i, status, last) in &c.incomplete {
        let what = match status {
            eoslab::cli::sweep::Status::Failed(e) => format!("failed: {e}"),
            _ => "not finished".into(),
        };
        eprintln!("[collect] task {i}: {what}; log: {last}");
    }
    Err(eoslab::Error::Config(format!(
        "{} task(s) unfinished in {}; finish them (rerun `eoslab sweep` with --submit or          --local: finished tasks are skipped), then collect again",
        c.incomplete.len(),
        dir.display()
    )))
}

fn run(cli: Cli) -> Result<()> {
    match cli.command {
        Command::Spectrum {
            checkpoint,
            data,
            curvature,
            k,
            tol,
            max_iter,
            trace,
            trace_products,
            probes,
            steps,
            grid,
            sigma,
            seed,
            device,
            dtype,
        } => {
            let mut o = eoslab::cli::SpectrumOptions::new(checkpoint, data);
            o.spectrum = eoslab::hessian::SpectrumConfig {
                curvatures: curvature,
                k,
                tol,
                max_iter,
                trace: eoslab::hessian::TraceConfig {
                    method: trace,
                    products: trace_products,
                    seed,
                },
                density: eoslab::hessian::DensityConfig {
                    probes,
                    steps,
                    grid,
                    sigma,
                    seed,
                    ..Default::default()
                },
            };
            (o.device, o.dtype) = (device, dtype);
            let report = eoslab::cli::spectrum(&o)?;
            println!("{}", serde_json::to_string_pretty(&report).expect("json"));
            Ok(())
        }
        Command::Spectra { config, set, out } => {
            let r = eoslab::cli::spectra(config.as_deref(), &set, &out)?;
            println!("{}", r.table()?);
            println!("written to {}", out.display());
            Ok(())
        }
        Command::Sharpness {
            checkpoint,
            data,
            k,
            tol,
            max_iter,
            device,
            dtype,
        } => {
            let report =
                eoslab::cli::sharpness(&checkpoint, &data, k, tol, max_iter, &device, &dtype)?;
            println!("{}", serde_json::to_string_pretty(&report).expect("json"));
            Ok(())
        }
        Command::Claim {
            args,
            out,
            step_budget,
            jobs,
        } => {
            set_jobs(jobs);
            let (name, opts) = args.options();
            eoslab::cli::claim_with(
                &name,
                &eoslab::cli::ClaimOptions {
                    out,
                    step_budget,
                    ..opts
                },
            )
        }
        Command::Sweep {
            args,
            out,
            axes,
            submit,
            local,
            jobs,
            slurm,
        } => {
            let (name, opts) = args.options();
            let axes = axes
                .iter()
                .map(|a| a.parse())
                .collect::<Result<Vec<eoslab::cli::sweep::Axis>>>()?;
            sweep(&name, &opts, axes, slurm, &out, (submit, local, jobs))
        }
        Command::Task { dir, index } => {
            eoslab::cli::print_verdicts(&eoslab::cli::sweep::run_task(&dir, index)?);
            Ok(())
        }
        Command::Collect { dir } => collect(&dir),
        Command::Run {
            config,
            out,
            set,
            step_budget,
            checkpoint_every,
            jobs,
        } => {
            set_jobs(jobs);
            let resume = eoslab::cli::ClaimOptions {
                step_budget,
                checkpoint_every: Some(checkpoint_every),
                ..Default::default()
            }
            .resume_options();
            let verdict = eoslab::cli::rerun(&config, &set, out.as_deref(), &resume)?;
            println!("{verdict}");
            println!(
                "{}",
                serde_json::to_string_pretty(&verdict.numbers).expect("json")
            );
            Ok(())
        }
        Command::Train {
            preset,
            data_dir,
            steps,
            device,
            dtype,
            lr,
            loss,
            seed,
            sharpness_every,
            json,
        } => {
            let report = eoslab::cli::train(&eoslab::cli::TrainOptions {
                preset: Some(preset),
                data_dir,
                device,
                dtype,
                steps,
                lr,
                loss,
                seed,
                sharpness_every,
            })?;
            let text = serde_json::to_string_pretty(&report).expect("json");
            if let Some(p) = json {
                eoslab::atomic::write_atomic(&p, text.as_bytes())?;
            }
            println!("{text}");
            Ok(())
        }
        Command::Regime { out, jobs } => {
            set_jobs(jobs);
            let report = eoslab::cli::regime(&out)?;
            let text = serde_json::to_string_pretty(&report).expect("json");
            eoslab::atomic::write_atomic(&out.join("regime.json"), text.as_bytes())?;
            println!("{text}");
            Ok(())
        }
        Command::SyntheticCifar {
            out,
            train_per_class,
            test_per_class,
            seed,
        } => {
            eoslab::cli::synthetic_cifar(&out, train_per_class, test_per_class, seed)?;
            eprintln!(
                "wrote {} (CIFAR-10 binary format, {train_per_class} training and {test_per_class} test images per class)",
                out.display()
            );
            Ok(())
        }
    }
}
