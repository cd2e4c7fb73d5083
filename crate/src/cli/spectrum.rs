//! `eoslab spectrum`: the curvature of a checkpoint's training loss in one report: spectral
//! density (SLQ), trace (Hutch++) and the top eigenvalues of the Hessian, of its Gauss-Newton
//! part G and of the residual R = H − G, all on one gradient graph. `eoslab spectra`: the same
//! along one fork (notebook 05).
use super::Point;
use crate::experiment::spectra::{self, SpectraConfig, SpectraResult};
use crate::hessian::{HessianOp, SpectrumConfig};
use crate::{Error, Result};
use std::path::{Path, PathBuf};

/// Options of `eoslab spectrum`.
#[derive(Clone, Debug)]
pub struct SpectrumOptions {
    /// Checkpoint written by any eoslab run.
    pub checkpoint: PathBuf,
    /// Training set (`train.safetensors`: x, y, group).
    pub data: PathBuf,
    /// What to compute.
    pub spectrum: SpectrumConfig,
    /// `cpu` or `cuda:N`.
    pub device: String,
    /// `f32`, `f64` or `checkpoint`.
    pub dtype: String,
}

impl SpectrumOptions {
    /// Defaults for `checkpoint` and `data` ([`SpectrumConfig::default`]), CPU, in the
    /// checkpoint's dtype.
    pub fn new(checkpoint: PathBuf, data: PathBuf) -> Self {
        SpectrumOptions {
            checkpoint,
            data,
            spectrum: SpectrumConfig::default(),
            device: "cpu".into(),
            dtype: "checkpoint".into(),
        }
    }
}

/// Density, trace and top eigenvalues of each requested curvature matrix, as JSON: one entry
/// per matrix under `curvature`, named `hessian`, `gauss-newton` or `residual`.
pub fn spectrum(o: &SpectrumOptions) -> Result<serde_json::Value> {
    let point = Point::load(&o.checkpoint, &o.data, &o.device, &o.dtype)?;
    let op = HessianOp::new(&point.model, &point.objective)?;
    let mut parts = serde_json::Map::new();
    for p in crate::hessian::spectrum(&op, &o.spectrum)? {
        let name = p.curvature.name().to_string();
        let mut v = serde_json::to_value(&p).map_err(|e| crate::Error::Numerics(e.to_string()))?;
        if let Some(m) = v.as_object_mut() {
            m.remove("curvature");
        }
        parts.insert(name, v);
    }
    let ck = &point.ck;
    Ok(serde_json::json!({
        "checkpoint": o.checkpoint.display().to_string(),
        "data": o.data.display().to_string(),
        "step": ck.meta.state.step,
        "lr": ck.meta.state.lr,
        "threshold": ck.meta.state.threshold(),
        "loss": op.value(),
        "dim": op.dim(),
        "products": op.products(),
        "dataset_fingerprint": point.fingerprint,
        "fingerprint_matches_checkpoint": point.fingerprint == ck.meta.dataset_fingerprint,
        "settings": o.spectrum,
        "curvature": parts,
    }))
}

/// `eoslab spectra`: run the spectra experiment of `config` (a `config.json` written by an
/// earlier run; default: the `cifar10-subset` preset) with the `sets` overrides, and write it
/// under `out` (errors name the configuration file).
pub fn spectra(config: Option<&Path>, sets: &[String], out: &Path) -> Result<SpectraResult> {
    let cfg = match config {
        None => crate::experiment::cifar_subset::spectra(),
        Some(path) => {
            let bytes = std::fs::read(path).map_err(|e| Error::io(path, e))?;
            serde_json::from_slice(&bytes)
                .map_err(|e| Error::data(path, format!("not a spectra configuration: {e}")))?
        }
    };
    let named = |e: Error| match config {
        Some(path) => Error::data(path, e.to_string()),
        None => e,
    };
    let cfg: SpectraConfig = crate::overrides::apply(&cfg, sets).map_err(named)?;
    cfg.validate().map_err(named)?;
    let result = spectra::run(&cfg)?;
    result.write(out)?;
    Ok(result)
}
