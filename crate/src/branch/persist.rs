//! A completed seed of a branching claim as a table (bit-exact: floats stored as binary, NaN
//! included), so that a rerun skips it: `seed-<s>/result.safetensors` in the run directory.
use super::SeedBranches;
use crate::resume::{Persist, Resume, TableReader, TableWriter, get_log, put_log};
use crate::{Error, Result};
use std::collections::BTreeMap;

impl Persist for SeedBranches {
    fn put(&self, w: &mut TableWriter) -> Result<()> {
        w.meta("seed", self.seed.to_string());
        w.meta("fork_step", self.fork_step.to_string());
        w.f64(
            "scalars",
            &[
                self.t_star,
                self.t_star2.unwrap_or(f64::NAN),
                self.t_star2.is_some() as u8 as f64,
                self.window.0,
                self.window.1,
                self.dt,
            ],
            vec![6],
        );
        let groups: Vec<&String> = self.window_delta.keys().collect();
        w.meta(
            "window_groups",
            serde_json::to_string(&groups).expect("json"),
        );
        w.f64(
            "window_delta",
            &self.window_delta.values().copied().collect::<Vec<_>>(),
            vec![groups.len()],
        );
        let dgroups: Vec<&String> = self.delta.keys().collect();
        w.meta(
            "delta_groups",
            serde_json::to_string(&dgroups).expect("json"),
        );
        for (i, d) in self.delta.values().enumerate() {
            let flat: Vec<f64> = d.iter().flat_map(|&(t, v)| [t, v]).collect();
            w.f64(&format!("delta.{i}"), &flat, vec![d.len(), 2]);
        }
        put_log(w, "log.", &self.log);
        Ok(())
    }

    fn get(t: &TableReader) -> Result<Self> {
        let bad = |m: &str| Error::data(t.path(), m.to_string());
        let seed: u64 = t.meta("seed")?.parse().map_err(|_| bad("bad seed"))?;
        let fork_step: usize = t
            .meta("fork_step")?
            .parse()
            .map_err(|_| bad("bad fork_step"))?;
        let sc = t.f64("scalars")?;
        if sc.len() != 6 {
            return Err(bad("scalars: expected 6 values"));
        }
        let names = |key: &str| -> Result<Vec<String>> {
            serde_json::from_str(t.meta(key)?).map_err(|e| bad(&e.to_string()))
        };
        let wg = names("window_groups")?;
        let wd = t.f64("window_delta")?;
        if wd.len() != wg.len() {
            return Err(bad("window_delta length"));
        }
        let mut delta = BTreeMap::new();
        for (i, g) in names("delta_groups")?.into_iter().enumerate() {
            let flat = t.f64(&format!("delta.{i}"))?;
            delta.insert(g, flat.chunks_exact(2).map(|c| (c[0], c[1])).collect());
        }
        Ok(SeedBranches {
            seed,
            fork_step,
            t_star: sc[0],
            t_star2: (sc[2] == 1.0).then_some(sc[1]),
            window: (sc[3], sc[4]),
            dt: sc[5],
            log: get_log(t, "log.")?,
            delta,
            window_delta: wg.into_iter().zip(wd).collect(),
        })
    }
}

/// Seed `seed`'s completed result in run directory `r`, if it has one (an error if the file
/// holds another seed).
pub fn load_seed(r: &Resume, seed: u64) -> Result<Option<SeedBranches>> {
    let path = r.seed_result_path(seed);
    let Some(s) = crate::resume::load::<SeedBranches>(&path)? else {
        return Ok(None);
    };
    if s.seed != seed {
        return Err(Error::data(
            &path,
            format!("holds seed {}, expected {seed}", s.seed),
        ));
    }
    eprintln!(
        "[resume] seed {seed}: already complete in {}",
        path.display()
    );
    Ok(Some(s))
}
