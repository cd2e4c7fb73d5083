//! Verdicts: a claim's pre-registered checks, their measured numbers, and HOLDS / FAILS.
use crate::{Error, Result};
use serde::{Deserialize, Serialize};

/// One check of a criterion.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Check {
    /// What is checked, with the measured numbers.
    pub what: String,
    /// Whether it passed.
    pub pass: bool,
}

/// The outcome of a claim.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Verdict {
    /// Claim name (`eos`, `tradeoff`, `alignment`, `saturation`).
    pub claim: String,
    /// Every check.
    pub checks: Vec<Check>,
    /// Measured context that is not part of the criterion (printed as `[info]`).
    pub notes: Vec<String>,
    /// The numbers behind the checks, for machines.
    pub numbers: serde_json::Value,
}

impl Verdict {
    /// An empty verdict for `claim`.
    pub fn new(claim: &str) -> Self {
        Verdict {
            claim: claim.into(),
            checks: Vec::new(),
            notes: Vec::new(),
            numbers: serde_json::Value::Null,
        }
    }
    /// Record a check.
    pub fn check(&mut self, pass: bool, what: impl Into<String>) {
        self.checks.push(Check {
            what: what.into(),
            pass,
        });
    }
    /// Record context that does not decide the claim.
    pub fn note(&mut self, what: impl Into<String>) {
        self.notes.push(what.into());
    }
    /// True when every check passed (and there is at least one).
    pub fn holds(&self) -> bool {
        !self.checks.is_empty() && self.checks.iter().all(|c| c.pass)
    }
    /// The claim line: `CLAIM <name>: HOLDS` or `CLAIM <name>: FAILS`.
    pub fn line(&self) -> String {
        format!(
            "CLAIM {}: {}",
            self.claim,
            if self.holds() { "HOLDS" } else { "FAILS" }
        )
    }
    /// Error (with every check and its numbers) unless the claim holds: the last cell of each
    /// notebook calls this, so a claim that stops reproducing fails the notebook.
    pub fn assert(&self) -> Result<()> {
        if self.holds() {
            Ok(())
        } else {
            Err(Error::Numerics(format!("{self}")))
        }
    }
}

impl Verdict {
    /// Every check and note, one per line, without the claim line: for reporting a variant
    /// of an experiment beside the claim without printing a second verdict.
    pub fn details(&self) -> String {
        let mut out = String::new();
        for c in &self.checks {
            out.push_str(&format!(
                "  [{}] {}\n",
                if c.pass { "pass" } else { "FAIL" },
                c.what
            ));
        }
        for n in &self.notes {
            out.push_str(&format!("  [info] {n}\n"));
        }
        out
    }
}

impl std::fmt::Display for Verdict {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}{}", self.details(), self.line())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn verdict_lines() {
        let mut v = Verdict::new("eos");
        assert!(!v.holds());
        v.check(true, "a");
        assert_eq!(v.line(), "CLAIM eos: HOLDS");
        v.check(false, "b = 3");
        assert_eq!(v.line(), "CLAIM eos: FAILS");
        let e = v.assert().unwrap_err().to_string();
        assert!(e.contains("b = 3") && e.contains("FAILS"));
    }
}
