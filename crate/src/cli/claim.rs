//! `eoslab claim`: a claim's experiments run from its preset through the [`Claim`] interface,
//! in resumable run directories under `--out`; the verdicts and their JSON printed.
use crate::experiment::Verdict;
use crate::experiment::claims::{self, Claim};
use crate::experiment::options::{ClaimOptions, DataChoice};
use crate::experiment::presets::Preset;
use crate::{Error, Result};
use std::path::Path;

/// Run claim `name` with its preset (shipped data unless `data` says otherwise); print the
/// claim line and a JSON summary. `out` receives the run directories (metrics, checkpoints,
/// figures).
pub fn claim(
    name: &str,
    seeds: Option<usize>,
    out: Option<&Path>,
    data: &DataChoice,
) -> Result<()> {
    claim_with(name, &ClaimOptions::on(seeds, out, data))
}

/// [`claim`] with every option of `eoslab claim`.
pub fn claim_with(name: &str, opts: &ClaimOptions) -> Result<()> {
    print_verdicts(&run_claims_with(name, opts)?);
    Ok(())
}

/// Print verdicts as `eoslab claim` does: each claim line with its checks, then its numbers
/// as pretty JSON.
pub fn print_verdicts(verdicts: &[Verdict]) {
    for verdict in verdicts {
        println!("{verdict}");
        println!(
            "{}",
            serde_json::to_string_pretty(&verdict.numbers).expect("json")
        );
    }
}

/// Run claim `name` (its preset, on `data`) and return its verdict.
pub fn run_claim(
    name: &str,
    seeds: Option<usize>,
    out: Option<&Path>,
    data: &DataChoice,
) -> Result<Verdict> {
    run_claim_with(name, &ClaimOptions::on(seeds, out, data))
}

/// Run claim `name` with `opts` and return its verdict (an error for `--design both`, which
/// gives three: see [`run_claims_with`]).
pub fn run_claim_with(name: &str, opts: &ClaimOptions) -> Result<Verdict> {
    let mut v = run_claims_with(name, opts)?;
    if v.len() != 1 {
        return Err(Error::Config(format!(
            "claim {name} gives {} verdicts here: use run_claims_with",
            v.len()
        )));
    }
    Ok(v.remove(0))
}

/// The claim `name` with `opts`' design, and its preset; every option checked before any work.
pub fn resolve(name: &str, opts: &ClaimOptions) -> Result<(Box<dyn Claim>, Preset)> {
    let claim = claims::named(name, opts.design()?)?;
    let preset = opts.preset()?;
    // One spelling of the data directory, so that a rerun from elsewhere resumes the same run.
    let paper_dir = opts
        .data_dir
        .as_ref()
        .map(|d| std::fs::canonicalize(d).unwrap_or_else(|_| d.clone()));
    Ok((claim, Preset::named(preset, paper_dir.as_deref())?))
}

/// Run claim `name` with `opts` and return its verdicts (one, or three for `tradeoff
/// --design both`). With an output directory the run is resumable: rerunning the same command
/// continues an interrupted run (and a different configuration in that directory is an
/// error). Each experiment has its own directory under it: `tradeoff` (exit design),
/// `tradeoff-enter`, `coherent` and `random`, `ce` and `mse`; `eos` writes into it directly.
pub fn run_claims_with(name: &str, opts: &ClaimOptions) -> Result<Vec<Verdict>> {
    let (claim, preset) = resolve(name, opts)?;
    claim.run(&preset, opts)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn designs_are_checked_before_any_work() {
        let with = |design: &str| ClaimOptions {
            design: Some(design.into()),
            preset: Some("digits".into()),
            ..ClaimOptions::default()
        };
        let e = run_claims_with("tradeoff", &with("sideways"))
            .unwrap_err()
            .to_string();
        assert!(e.contains("exit, enter, both"), "{e}");
        let e = run_claims_with("alignment", &with("enter"))
            .unwrap_err()
            .to_string();
        assert!(e.contains("--design applies to claim tradeoff"), "{e}");
        assert_eq!(with("both").design().unwrap(), "both");
        assert_eq!(ClaimOptions::default().design().unwrap(), "exit");
    }
}
