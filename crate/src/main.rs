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
    Claim {
        /// Which claim.
        name: String,
        /// Number of seeds (default: the preset's).
        #[arg(long)]
        seeds: Option<usize>,
        /// Output directory for the run record.
        #[arg(long)]
        out: Option<PathBuf>,
        /// Your data instead of the shipped digits: a CSV (label in the last column) or a
        /// safetensors file (`x` [n, d], `y` [n]).
        #[arg(long)]
        data: Option<PathBuf>,
        /// Classes to keep, e.g. `3,8` (relabelled 0..k in this order).
        #[arg(long, value_delimiter = ',')]
        classes: Option<Vec<u32>>,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}

fn run(cli: Cli) -> Result<()> {
    match cli.command {
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
            name,
            seeds,
            out,
            data,
            classes,
        } => eoslab::cli::claim(
            &name,
            seeds,
            out.as_deref(),
            &eoslab::cli::DataChoice {
                path: data,
                classes,
            },
        ),
    }
}
