//! The eoslab side of `make bench` (driven by `bench/run.py`, which alternates it with the
//! PyTorch reference `bench/reference.py` doing the identical work). Not a test.
//!
//! ```text
//! bench prepare DIR           write the benchmark problems to DIR (both sides load them)
//! bench serve DIR               answer timing requests, one JSON object per line on stdin:
//!                               {"case": "paper-f32", "prim": "gd_step"} -> {"seconds": .., "info": {..}}
//! ```
//!
//! A problem (`DIR/<size>.safetensors` + `DIR/<size>.json`) holds the training set (`x` f64,
//! `y`, `group`), the initial parameters under PyTorch state-dict names (`net.0.weight`, f64), a
//! random unit direction `v0.<name>` and the settings; each side casts to the case's dtype.
//! Primitives (eoslab's library calls, exactly what a run does):
//! - `gd_step`: one full-batch GD step (loss, gradient, its norm, update) from θ0;
//! - `graph`: forward + first backward with the graph kept (what every HVP differentiates);
//! - `hvp`: one Hessian-vector product on an existing graph;
//! - `eig`: λ_max from the start vector v0 to residual ‖Hv − λv‖ ≤ tol·|λ| (graph included);
//! - `groups`: one round of group metrics: graph, then for the training set and each group its
//!   loss, ‖g‖, cos²(g, v_max), gᵀHg (the training set's value and gradient from the graph);
//! - `run`: `run_steps` GD steps (request or problem setting) from θ0 with eoslab's `Monitor` every `every` steps (warm-started
//!   λ_max to tol, and per group loss, accuracy, ‖g‖, cos², gᵀHg);
//! - `trace`: graph, then Hutch++ on H with the request's `products` (a third each for the
//!   sketch, its exact trace and Hutchinson on the rest);
//! - `density`: graph, then stochastic Lanczos quadrature on H: `probes` Rademacher probes of
//!   `steps` Lanczos steps each, full reorthogonalisation in f64;
//! - `ggn_eig`: graph, then the top `k` eigenvalues of the Gauss-Newton matrix G from a cold
//!   start to residual ≤ tol·|λ|.
use candle_core::{DType, Device, Tensor};
use eoslab::data::Dataset;
use eoslab::experiment::{RunConfig, cifar_subset, presets};
use eoslab::groups::{self, GroupConfig};
use eoslab::hessian::{
    Curvature, DensityConfig, HessianOp, LanczosConfig, TraceConfig, TraceMethod,
};
use eoslab::loss::LossKind;
use eoslab::model::{Activation, InitSpec, Model, ModelSpec, flatten};
use eoslab::monitor::Monitor;
use eoslab::objective::{Derivatives, Objective};
use eoslab::rng::Rng;
use eoslab::sharpness::{SharpnessConfig, eos_entry};
use eoslab::train::{Every, GdState, GradientDescent, dot, sq_norm};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use std::collections::HashMap;
use std::io::{BufRead, Write};
use std::path::{Path, PathBuf};
use std::time::Instant;

type Res<T> = std::result::Result<T, Box<dyn std::error::Error>>;

/// Settings of one benchmark problem (`<size>.json`, read by both sides).
#[derive(Clone, Debug, Serialize, Deserialize)]
struct Meta {
    size: String,
    widths: Vec<usize>,
    activation: String,
    loss: String,
    lr: f64,
    n: usize,
    /// Group ids present (besides 0 = ordinary), in order.
    groups: Vec<u8>,
    /// Lanczos / eigsh residual tolerance and iteration cap.
    tol: f64,
    max_iter: usize,
    /// `run`: steps and measurement period.
    run_steps: usize,
    run_every: usize,
    /// Parameter names in PyTorch `nn.Sequential` order.
    params: Vec<String>,
}

fn main() -> Res<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args.first().map(String::as_str) {
        Some("prepare") if args.len() == 2 => prepare(Path::new(&args[1])),
        Some("serve") if args.len() == 2 => serve(Path::new(&args[1])),
        _ => Err("usage: bench prepare DIR | bench serve DIR".into()),
    }
}

// ----------------------------------------------------------------------------------------------
// prepare

/// Synthetic CIFAR-shaped two-class data: class means μ_c ~ N(0, 0.3²) per pixel, x = μ_y + N(0, 1).
fn synthetic_cifar(n: usize, seed: u64) -> Res<Dataset> {
    let d = 3 * 32 * 32;
    let mut rng = Rng::stream(seed, "bench-data");
    let means: Vec<Vec<f64>> = (0..2)
        .map(|_| rng.normals(d).into_iter().map(|z| 0.3 * z).collect())
        .collect();
    let y: Vec<u32> = (0..n).map(|i| (i % 2) as u32).collect();
    let noise = rng.normals(n * d);
    let x: Vec<f64> = noise
        .chunks(d)
        .zip(&y)
        .flat_map(|(row, &c)| row.iter().zip(&means[c as usize]).map(|(z, m)| z + m))
        .collect::<Vec<_>>();
    let mut ds = Dataset::new("synthetic-cifar", x, y, d, 2)?;
    ds.image_shape = Some([3, 32, 32]);
    // Five groups of 50 (25 per class) at random, ids 1..=5; the output-outliers' labels flipped.
    let perm = rng.permutation(n);
    let (mut per_class, mut next) = ([0usize; 2], vec![1u8; 2]);
    for i in perm {
        let c = ds.y[i] as usize;
        if next[c] > 5 {
            continue;
        }
        ds.group[i] = next[c];
        if next[c] == 3 {
            ds.y[i] = 1 - ds.y[i];
        }
        per_class[c] += 1;
        if per_class[c] == 25 {
            per_class[c] = 0;
            next[c] += 1;
        }
        if next.iter().all(|&g| g > 5) {
            break;
        }
    }
    Ok(ds)
}

/// The digits notebook preset's training set (digits 3 vs 8, 8 per class per group injected).
fn digits_train() -> Res<Dataset> {
    let (train, _) = presets::digits_data().load()?;
    Ok(groups::build(&train, &GroupConfig::paper(8))?.train)
}

fn write_problem(dir: &Path, ds: &Dataset, meta: &Meta, seed: u64) -> Res<()> {
    let act: Activation = meta.activation.parse()?;
    let spec = ModelSpec::mlp(&meta.widths, act);
    let model = Model::new(
        &spec,
        InitSpec { scale: 0.2, seed },
        &Device::Cpu,
        DType::F64,
    )?;
    let mut tensors: HashMap<String, Tensor> = model.state_dict().into_iter().collect();
    // A random unit direction (λ_max start vector, HVP direction), per parameter.
    let mut rng = Rng::stream(seed, "bench-v0");
    let raw: Vec<Tensor> = model
        .params()
        .iter()
        .map(|(_, v)| Tensor::from_vec(rng.normals(v.elem_count()), v.shape(), &Device::Cpu))
        .collect::<candle_core::Result<_>>()?;
    let norm = sq_norm(&raw)?.sqrt();
    for ((name, _), t) in model.params().iter().zip(raw) {
        tensors.insert(format!("v0.{name}"), (t / norm)?);
    }
    let stem = dir.join(&meta.size);
    candle_core::safetensors::save(&tensors, stem.with_extension("params.safetensors"))?;
    eoslab::data::tensors::export(ds, &stem.with_extension("safetensors"), &[])?;
    std::fs::write(
        stem.with_extension("json"),
        serde_json::to_string_pretty(meta)?,
    )?;
    Ok(())
}

fn group_ids(ds: &Dataset) -> Vec<u8> {
    let mut ids: Vec<u8> = ds.group.iter().copied().filter(|&g| g != 0).collect();
    ids.sort_unstable();
    ids.dedup();
    ids
}

fn sequential_names(widths: &[usize]) -> Vec<String> {
    (0..widths.len() - 1)
        .flat_map(|l| {
            [
                format!("net.{}.weight", 2 * l),
                format!("net.{}.bias", 2 * l),
            ]
        })
        .collect()
}

/// A notebook preset's network on its training set: input, hidden and output widths.
fn preset_widths(ds: &Dataset, cfg: &RunConfig) -> Vec<usize> {
    let mut widths = vec![ds.d];
    widths.extend(&cfg.hidden);
    widths.push(ds.n_classes);
    widths
}

/// The settings of a notebook preset's problem; `run_steps` steps for the `run` primitive.
fn preset_meta(size: &str, ds: &Dataset, cfg: &RunConfig, run_steps: usize) -> Meta {
    let widths = preset_widths(ds, cfg);
    Meta {
        size: size.into(),
        params: sequential_names(&widths),
        widths,
        activation: format!("{:?}", cfg.activation).to_lowercase(),
        loss: cfg.loss.to_string(),
        lr: cfg.lr,
        n: ds.n(),
        groups: group_ids(ds),
        tol: cfg.sharpness.lanczos.tol,
        max_iter: cfg.sharpness.lanczos.max_iter,
        run_steps,
        run_every: cfg.sharpness.every.k,
    }
}

fn prepare(dir: &Path) -> Res<()> {
    std::fs::create_dir_all(dir)?;
    // Paper scale: MLP 3072-512-512-2 ReLU, n = 10,000, η = 0.01; t* is far away, so the run is
    // a fixed number of steps with a full measurement every `run_every` steps.
    let ds = synthetic_cifar(10_000, 0)?;
    let widths = vec![3072, 512, 512, 2];
    let meta = Meta {
        size: "paper".into(),
        params: sequential_names(&widths),
        widths,
        activation: "relu".into(),
        loss: "mse".into(),
        lr: 0.01,
        n: ds.n(),
        groups: group_ids(&ds),
        tol: 1e-3,
        max_iter: 300,
        run_steps: 21,
        run_every: 10,
    };
    write_problem(dir, &ds, &meta, 0)?;
    eprintln!("prepared {}: n = {}", meta.size, meta.n);

    // The CIFAR-10 subset preset of the notebooks: 256-256-256-2 ReLU on 16 × 16 grey images.
    let ds = {
        let (train, _) = cifar_subset::data().load()?;
        groups::build(&train, &cifar_subset::groups())?.train
    };
    let cfg = cifar_subset::run();
    let meta = preset_meta("cifar", &ds, &cfg, 2 * cfg.sharpness.every.k + 1);
    write_problem(dir, &ds, &meta, 0)?;
    eprintln!("prepared {}: n = {}", meta.size, meta.n);

    // The notebook preset: digits 64-256-256-2 tanh, η = 0.1, λ_max every 20 steps to 1e-4;
    // the run goes to the measurement at which λ_max first reaches 2/η after the burn-in (t*).
    let ds = digits_train()?;
    let cfg = presets::digits_run();
    let t_star = {
        let spec = ModelSpec::mlp(&preset_widths(&ds, &cfg), cfg.activation);
        let model = Model::new(
            &spec,
            InitSpec {
                scale: cfg.init_scale,
                seed: 0,
            },
            &Device::Cpu,
            DType::F32,
        )?;
        let obj = Objective::from_dataset(&ds, &Device::Cpu, DType::F32, cfg.loss, None)?;
        let mut gd = GradientDescent::new(model, obj, cfg.lr, 0.0)?;
        let mut tracker = eoslab::sharpness::SharpnessTracker::new(cfg.sharpness.clone());
        let mut t = None;
        while gd.state.step < cfg.steps && t.is_none() {
            gd.run(cfg.sharpness.every.k, &mut [&mut tracker])?;
            t = eos_entry(&tracker.records, cfg.burn_in).map(|e| e.step);
        }
        t.ok_or("digits preset: no t* within its steps")?
    };
    let meta = preset_meta("digits", &ds, &cfg, t_star + 1);
    write_problem(dir, &ds, &meta, 0)?;
    eprintln!(
        "prepared {}: n = {}, run of {} steps (t* first measured at step {t_star})",
        meta.size, meta.n, meta.run_steps
    );
    Ok(())
}

// ----------------------------------------------------------------------------------------------
// serve

struct Case {
    meta: Meta,
    ds: Dataset,
    gd: GradientDescent,
    theta0: Vec<Tensor>,
    /// v0, parameter-shaped (sorted-name order), and flat.
    v0: Vec<Tensor>,
    v0_flat: Tensor,
    groups: Vec<Objective>,
}

impl Case {
    fn load(dir: &Path, size: &str, dtype: DType, how: Derivatives) -> Res<Case> {
        let stem = dir.join(size);
        let meta: Meta =
            serde_json::from_str(&std::fs::read_to_string(stem.with_extension("json"))?)?;
        let ds = eoslab::data::tensors::load(&stem.with_extension("safetensors"))?;
        let params = candle_core::safetensors::load(
            stem.with_extension("params.safetensors"),
            &Device::Cpu,
        )?;
        let spec = ModelSpec::mlp(&meta.widths, meta.activation.parse()?);
        let model = Model::new(
            &spec,
            InitSpec {
                scale: 0.2,
                seed: 0,
            },
            &Device::Cpu,
            dtype,
        )?;
        let get = |k: &str| -> Res<Tensor> {
            Ok(params
                .get(k)
                .ok_or_else(|| format!("{k} missing"))?
                .to_dtype(dtype)?)
        };
        let theta0: Vec<Tensor> = model
            .params()
            .iter()
            .map(|(n, _)| get(n))
            .collect::<Res<_>>()?;
        model.set_tensors(&theta0)?;
        let v0: Vec<Tensor> = model
            .params()
            .iter()
            .map(|(n, _)| get(&format!("v0.{n}")))
            .collect::<Res<_>>()?;
        let v0_flat = flatten(&v0)?;
        let loss: LossKind = meta.loss.parse()?;
        let obj =
            Objective::from_dataset(&ds, &Device::Cpu, dtype, loss, None)?.with_derivatives(how);
        let groups = meta
            .groups
            .iter()
            .map(|&g| {
                let idx: Vec<usize> = (0..ds.n()).filter(|&i| ds.group[i] == g).collect();
                obj.subset(&idx)
            })
            .collect::<eoslab::Result<_>>()?;
        let gd = GradientDescent::new(model, obj, meta.lr, 0.0)?;
        Ok(Case {
            meta,
            ds,
            gd,
            theta0,
            v0,
            v0_flat,
            groups,
        })
    }

    fn reset(&mut self) -> Res<()> {
        self.gd.model.set_tensors(&self.theta0)?;
        self.gd.state = GdState::new(self.meta.lr, 0.0);
        self.gd.history.clear();
        Ok(())
    }

    fn lanczos(&self) -> LanczosConfig {
        LanczosConfig {
            k: 1,
            tol: self.meta.tol,
            max_iter: self.meta.max_iter,
            seed: 0,
        }
    }

    /// Time one primitive; returns seconds and facts to cross-check against the reference.
    fn time(&mut self, prim: &str, req: &Value) -> Res<(f64, Value)> {
        self.reset()?;
        let model = &self.gd.model;
        let obj = &self.gd.objective;
        Ok(match prim {
            "gd_step" => {
                let t = Instant::now();
                let rec = self.gd.step(&mut [])?;
                let s = t.elapsed().as_secs_f64();
                (s, json!({"loss": rec.loss, "grad_norm": rec.grad_norm}))
            }
            "gemm_calls" => {
                // Calibration: the matrix products of one GD step and one HVP, as recorded.
                let (rec, step) = eoslab::kernels::record_gemms(|| self.gd.step(&mut []));
                rec?;
                let op = HessianOp::new(&self.gd.model, &self.gd.objective)?;
                let (hv, hvp) = eoslab::kernels::record_gemms(|| op.apply(&self.v0));
                hv?;
                (0.0, json!({"step": step, "hvp": hvp}))
            }
            "gemm" => {
                // Calibration, not a primitive: the first layer's product x W1ᵀ alone.
                let (x, w) = (obj.x(), model.params()[1].1.as_tensor());
                let t = Instant::now();
                let z = x.matmul(&w.t()?)?;
                let s = t.elapsed().as_secs_f64();
                (
                    s,
                    json!({"sum": z.sum_all()?.to_dtype(DType::F64)?.to_scalar::<f64>()?}),
                )
            }
            "gemm_shapes" => {
                // Calibration: the five large products of a GD step (paper size), each alone.
                let (x, w1) = (obj.x(), model.params()[1].1.as_tensor());
                let w2 = model.params()[3].1.as_tensor();
                let h = x.matmul(&w1.t()?)?; // [n, 512], stands in for h1 and δ
                let mut info = serde_json::Map::new();
                let total = Instant::now();
                let shapes: [(&str, &Tensor, bool, &Tensor, bool); 5] = [
                    ("x·W1ᵀ", x, false, w1, true),
                    ("δ1ᵀ·x", &h, true, x, false),
                    ("h1·W2ᵀ", &h, false, w2, true),
                    ("δ2ᵀ·h1", &h, true, &h, false),
                    ("δ2·W2", &h, false, w2, false),
                ];
                for (name, a, ta, b, tb) in shapes {
                    let (a, b) = (
                        if ta { a.t()? } else { a.clone() },
                        if tb { b.t()? } else { b.clone() },
                    );
                    let t = Instant::now();
                    let _c = a.matmul(&b)?;
                    info.insert(name.into(), json!(t.elapsed().as_secs_f64()));
                }
                (total.elapsed().as_secs_f64(), Value::Object(info))
            }
            "tanh" => {
                // Calibration: tanh of the first layer's pre-activations (n × width values).
                let z = obj.x().matmul(&model.params()[1].1.as_tensor().t()?)?;
                let t = Instant::now();
                let h = Activation::Tanh.apply(&z)?;
                let s = t.elapsed().as_secs_f64();
                (
                    s,
                    json!({"sum": h.sum_all()?.to_dtype(DType::F64)?.to_scalar::<f64>()?}),
                )
            }
            "graph" => {
                let t = Instant::now();
                let op = HessianOp::new(model, obj)?;
                let s = t.elapsed().as_secs_f64();
                (s, json!({"loss": op.value()}))
            }
            "hvp" => {
                let op = HessianOp::new(model, obj)?;
                let t = Instant::now();
                let hv = op.apply(&self.v0)?;
                let s = t.elapsed().as_secs_f64();
                (s, json!({"vHv": dot(&self.v0, &hv)?}))
            }
            "eig" => {
                let t = Instant::now();
                let op = HessianOp::new(model, obj)?;
                let e = op.top_eigen(&self.lanczos(), Some(std::slice::from_ref(&self.v0_flat)))?;
                let s = t.elapsed().as_secs_f64();
                let (lam, y) = (e.values[0], &e.vectors[0]);
                let r = (op.apply_flat(y)? - (y * lam)?)?;
                let res = flat_norm(&r)? / lam.abs();
                (
                    s,
                    json!({"lambda": lam, "matvecs": e.iterations, "residual": res, "converged": e.converged}),
                )
            }
            "groups" => {
                let t = Instant::now();
                let rows = group_round(model, obj, &self.groups, &self.v0_flat)?;
                let s = t.elapsed().as_secs_f64();
                (s, json!({"rows": rows}))
            }
            "run" => {
                let steps = req["run_steps"]
                    .as_u64()
                    .map_or(self.meta.run_steps, |s| s as usize);
                let every = req["run_every"]
                    .as_u64()
                    .map_or(self.meta.run_every, |s| s as usize);
                let cfg = SharpnessConfig {
                    every: Every::new(every),
                    lanczos: self.lanczos(),
                    subset: None,
                    warm_start: true,
                    track_above: None,
                };
                let t = Instant::now();
                let mut monitor =
                    Monitor::new(cfg, &self.gd.objective, &self.ds, None, "bench", 0)?;
                self.gd.run(steps, &mut [&mut monitor])?;
                let s = t.elapsed().as_secs_f64();
                let recs = &monitor.tracker.records;
                (
                    s,
                    json!({
                        "final_loss": self.gd.history.last().map(|r| r.loss),
                        "lambdas": recs.iter().map(|r| r.lambda_max()).collect::<Vec<_>>(),
                        "matvecs": recs.iter().map(|r| r.iterations).collect::<Vec<_>>(),
                    }),
                )
            }
            "trace" => {
                let cfg = TraceConfig {
                    method: TraceMethod::HutchPlusPlus,
                    products: req_usize(req, "products")?,
                    seed: 0,
                };
                let t = Instant::now();
                let op = HessianOp::new(model, obj)?;
                let tr = op.trace(&cfg)?;
                let s = t.elapsed().as_secs_f64();
                (
                    s,
                    json!({"trace": tr.estimate, "std_error": tr.std_error, "products": tr.products}),
                )
            }
            "density" => {
                let cfg = DensityConfig {
                    probes: req_usize(req, "probes")?,
                    steps: req_usize(req, "steps")?,
                    ..DensityConfig::default()
                };
                let t = Instant::now();
                let op = HessianOp::new(model, obj)?;
                let d = op.density(&cfg)?;
                let s = t.elapsed().as_secs_f64();
                let top = d.probes.iter().map(|q| q.nodes[0]).fold(f64::MIN, f64::max);
                (s, json!({"top_node": top, "products": d.products}))
            }
            "ggn_eig" => {
                let cfg = LanczosConfig {
                    k: req_usize(req, "k")?,
                    ..self.lanczos()
                };
                let t = Instant::now();
                let op = HessianOp::new(model, obj)?.part(Curvature::GaussNewton);
                let e = op.top_eigen(&cfg, None)?;
                let s = t.elapsed().as_secs_f64();
                (
                    s,
                    json!({"eigenvalues": e.values, "matvecs": e.iterations, "converged": e.converged}),
                )
            }
            _ => return Err(format!("unknown primitive {prim:?}").into()),
        })
    }
}

/// A positive integer setting of the request.
fn req_usize(req: &Value, key: &str) -> Res<usize> {
    Ok(req[key]
        .as_u64()
        .ok_or_else(|| format!("request without {key:?}"))? as usize)
}

fn flat_norm(t: &Tensor) -> Res<f64> {
    Ok(t.sqr()?
        .sum_all()?
        .to_dtype(DType::F64)?
        .to_scalar::<f64>()?
        .sqrt())
}

/// One round of group metrics (what `Monitor` computes per group, minus λ_max): for the training
/// set and each group, loss, ‖g‖, cos²(g, v), gᵀHg with H the training loss's Hessian.
fn group_round(
    model: &Model,
    obj: &Objective,
    groups: &[Objective],
    v: &Tensor,
) -> Res<Vec<[f64; 4]>> {
    let op = HessianOp::new(model, obj)?;
    let mut rows = Vec::new();
    let train = (op.value(), op.gradient()?);
    let per_group = groups.iter().map(|g| g.value_and_grad(model));
    for lg in std::iter::once(Ok(train)).chain(per_group) {
        let (l, g): (f64, Vec<Tensor>) = lg.map_err(|e: eoslab::Error| e)?;
        let g2 = sq_norm(&g)?;
        let p = (flatten(&g)? * v)?
            .sum_all()?
            .to_dtype(DType::F64)?
            .to_scalar::<f64>()?;
        let ghg = dot(&g, &op.apply(&g)?)?;
        rows.push([l, g2.sqrt(), p * p / g2, ghg]);
    }
    Ok(rows)
}

fn serve(dir: &Path) -> Res<()> {
    let dir: PathBuf = dir.to_path_buf();
    let mut cases: HashMap<String, Case> = HashMap::new();
    let stdin = std::io::stdin();
    let mut out = std::io::stdout().lock();
    for line in stdin.lock().lines() {
        let line = line?;
        if line.trim().is_empty() {
            continue;
        }
        let reply = (|| -> Res<Value> {
            let req: Value = serde_json::from_str(&line)?;
            let case = req["case"].as_str().ok_or("no case")?.to_string();
            let prim = req["prim"].as_str().ok_or("no prim")?;
            // "derivatives": "autodiff" times candle's autodiff path (the default is eoslab's).
            let how = match req["derivatives"].as_str() {
                None | Some("auto") => Derivatives::Auto,
                Some("autodiff") => Derivatives::Autodiff,
                Some(o) => return Err(format!("derivatives {o:?}").into()),
            };
            let key = format!("{case}/{how:?}");
            if !cases.contains_key(&key) {
                let (size, dt) = case.split_once('-').ok_or("case is SIZE-DTYPE")?;
                let dtype = match dt {
                    "f32" => DType::F32,
                    "f64" => DType::F64,
                    _ => return Err(format!("dtype {dt}").into()),
                };
                cases.insert(key.clone(), Case::load(&dir, size, dtype, how)?);
            }
            let c = cases.get_mut(&key).expect("inserted");
            let (seconds, info) = c.time(prim, &req)?;
            Ok(json!({
                "seconds": seconds,
                "info": info,
                "library": eoslab::kernels::gemm_library(),
            }))
        })()
        .unwrap_or_else(|e| json!({"error": e.to_string()}));
        writeln!(out, "{reply}")?;
        out.flush()?;
    }
    Ok(())
}
