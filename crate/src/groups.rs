//! The paper's data groups, built in input space on the (standardised, flattened) training set:
//! inliers, boundary points, output-outliers (label flipped), input-outliers (displaced along the
//! class-mean difference, or in a random orthogonal direction as a control), injected into the
//! training set with n unchanged, or held out for tracking only.
use crate::data::{Dataset, ORDINARY};
use crate::rng::Rng;
use crate::{Error, Result};
use candle_core::{DType, Device, Tensor};
use serde::{Deserialize, Serialize};

/// The kinds of group (their ids are stored per example in `Dataset::group`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum GroupKind {
    /// Real points nearest their own class centroid.
    Inlier = 1,
    /// Real points whose k-NN neighbourhood is most ambiguous.
    Boundary = 2,
    /// Central real points with the label flipped to the nearest other class.
    OutputOutlier = 3,
    /// Central real points displaced away from the nearest other class along c_own − c_other.
    InputOutlier = 4,
    /// Control: same displacement norm, random direction orthogonal to c_own − c_other.
    InputOutlierRandom = 5,
}

impl GroupKind {
    /// All kinds, in id order.
    pub const ALL: [GroupKind; 5] = [
        GroupKind::Inlier,
        GroupKind::Boundary,
        GroupKind::OutputOutlier,
        GroupKind::InputOutlier,
        GroupKind::InputOutlierRandom,
    ];
    /// Id stored in `Dataset::group`.
    pub fn id(self) -> u8 {
        self as u8
    }
    /// The kind with this id (`None` for ordinary examples).
    pub fn from_id(id: u8) -> Option<GroupKind> {
        GroupKind::ALL.into_iter().find(|k| k.id() == id)
    }
    /// Short name used in tables and legends.
    pub fn name(self) -> &'static str {
        match self {
            GroupKind::Inlier => "inlier",
            GroupKind::Boundary => "boundary",
            GroupKind::OutputOutlier => "output-outlier",
            GroupKind::InputOutlier => "input-outlier",
            GroupKind::InputOutlierRandom => "input-outlier-random",
        }
    }
}

/// Name of a group id, `ordinary` for 0.
pub fn group_name(id: u8) -> &'static str {
    GroupKind::from_id(id)
        .map(|k| k.name())
        .unwrap_or("ordinary")
}

/// How input-outliers are displaced.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum InputOutlierMode {
    /// x' = x + s (c_own − c_other): coherent with the class-mean difference.
    Coherent,
    /// Same norm, random Gaussian direction orthogonal to c_own − c_other (its own seed).
    RandomDirection {
        /// Seed of the random directions.
        seed: u64,
    },
}

/// How output-outliers (label-flipped points) enter the training set. The authors' code has
/// both: their earlier main runs keep the sources, their later code removes them.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum OutputOutlierMode {
    /// The source points are relabelled in place (removed with their true label, the flipped
    /// copies added back): n unchanged, and a flipped point can be memorised.
    #[default]
    Removed,
    /// Flipped copies are added while the sources stay with their true label: n grows by the
    /// group's size, and a flip can never be fitted (its input also appears with the other
    /// label), so its gradient cannot vanish.
    Duplicated,
}

/// Group construction parameters (paper defaults in [`GroupConfig::paper`]).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct GroupConfig {
    /// Examples per class in each group (paper: 25).
    pub per_class: usize,
    /// Neighbours for the boundary score (paper: 32).
    pub knn: usize,
    /// Displacement multiple s in x ± s (c1 − c0) (paper: 3).
    pub displacement: f64,
    /// Coherent or random-direction input-outliers.
    pub input_outlier_mode: InputOutlierMode,
    /// Output-outliers relabelled in place or added as flipped duplicates.
    #[serde(default)]
    pub output_outlier_mode: OutputOutlierMode,
    /// Which groups to build.
    pub kinds: Vec<GroupKind>,
    /// Inject into the training set (true) or hold the groups out, tracked only (false).
    pub inject: bool,
}

impl GroupConfig {
    /// The paper's setup with `per_class` examples per class per group.
    pub fn paper(per_class: usize) -> Self {
        GroupConfig {
            per_class,
            knn: 32,
            displacement: 3.0,
            input_outlier_mode: InputOutlierMode::Coherent,
            output_outlier_mode: OutputOutlierMode::Removed,
            kinds: vec![
                GroupKind::Inlier,
                GroupKind::Boundary,
                GroupKind::OutputOutlier,
                GroupKind::InputOutlier,
            ],
            inject: true,
        }
    }

    /// The configuration as pretty JSON (for notebooks and run directories).
    pub fn to_json(&self) -> String {
        serde_json::to_string_pretty(self).expect("group config serialises")
    }
}

/// The training set with groups, and (in tracking mode) the held-out group examples.
#[derive(Clone, Debug)]
pub struct Grouped {
    /// Training set; injected group members carry their group id.
    pub train: Dataset,
    /// Held-out group examples (tracking-only mode), with group ids; empty when injected.
    pub held_out: Dataset,
    /// For each example of `train` (then `held_out`), the index of its source row in the input
    /// (a duplicated output-outlier points at the real example it copies).
    pub source: Vec<usize>,
}

fn centroids(ds: &Dataset, skip: &[bool]) -> Vec<Vec<f64>> {
    let mut c = vec![vec![0.0; ds.d]; ds.n_classes];
    let mut n = vec![0usize; ds.n_classes];
    for (i, _) in skip.iter().enumerate().filter(|(_, s)| !**s) {
        let k = ds.y[i] as usize;
        n[k] += 1;
        for (a, b) in c[k].iter_mut().zip(ds.row(i)) {
            *a += b;
        }
    }
    for (ck, nk) in c.iter_mut().zip(n) {
        ck.iter_mut().for_each(|v| *v /= nk.max(1) as f64);
    }
    c
}

fn dist2(a: &[f64], b: &[f64]) -> f64 {
    a.iter().zip(b).map(|(x, y)| (x - y) * (x - y)).sum()
}

/// For each class, the nearest other class by centroid distance.
fn nearest_other(c: &[Vec<f64>]) -> Vec<usize> {
    (0..c.len())
        .map(|k| {
            (0..c.len())
                .filter(|&j| j != k)
                .min_by(|&a, &b| dist2(&c[k], &c[a]).total_cmp(&dist2(&c[k], &c[b])))
                .unwrap_or(k)
        })
        .collect()
}

/// Fraction of same-class points among each point's `k` nearest neighbours (L2-normalised
/// inputs; the point itself excluded). Computed with blocked matrix products.
pub fn same_class_fraction(ds: &Dataset, k: usize) -> Result<Vec<f64>> {
    let n = ds.n();
    if k == 0 || k >= n {
        return Err(Error::Config(format!(
            "k-NN with k = {k} needs 0 < k < n = {n}"
        )));
    }
    let mut xn = ds.x.clone();
    for r in xn.chunks_mut(ds.d) {
        let norm = r.iter().map(|v| v * v).sum::<f64>().sqrt().max(1e-12);
        r.iter_mut().for_each(|v| *v /= norm);
    }
    // On unit vectors, squared distance = 2 − 2 cos: nearest = largest cosine.
    let x = Tensor::from_vec(xn, (n, ds.d), &Device::Cpu)?;
    let mut out = Vec::with_capacity(n);
    let block = 256;
    for s in (0..n).step_by(block) {
        let len = block.min(n - s);
        let sims: Vec<Vec<f64>> = x
            .narrow(0, s, len)?
            .matmul(&x.t()?)?
            .to_dtype(DType::F64)?
            .to_vec2()?;
        for (r, row) in sims.iter().enumerate() {
            let i = s + r;
            let mut idx: Vec<usize> = (0..n).filter(|&j| j != i).collect();
            idx.select_nth_unstable_by(k - 1, |&a, &b| row[b].total_cmp(&row[a]).then(a.cmp(&b)));
            let same = idx[..k].iter().filter(|&&j| ds.y[j] == ds.y[i]).count();
            out.push(same as f64 / k as f64);
        }
    }
    Ok(out)
}

/// Build the groups on `ds` (already standardised) and inject or hold them out.
pub fn build(ds: &Dataset, cfg: &GroupConfig) -> Result<Grouped> {
    if ds.n_classes < 2 {
        return Err(Error::Config("groups need at least two classes".into()));
    }
    if ds.group.iter().any(|&g| g != ORDINARY) {
        return Err(Error::Config("dataset already has groups".into()));
    }
    let g = cfg.per_class;
    let has = |k: GroupKind| cfg.kinds.contains(&k);
    if has(GroupKind::InputOutlier) && has(GroupKind::InputOutlierRandom) {
        return Err(Error::Config(
            "choose one input-outlier mode per run (coherent or random-direction), as matched setups".into(),
        ));
    }
    let central_kinds: Vec<GroupKind> = [
        GroupKind::Inlier,
        GroupKind::OutputOutlier,
        GroupKind::InputOutlier,
        GroupKind::InputOutlierRandom,
    ]
    .into_iter()
    .filter(|&k| has(k))
    .collect();
    let needed = g * (central_kinds.len() + has(GroupKind::Boundary) as usize);
    let counts = ds.class_counts();
    if let Some((c, &have)) = counts.iter().enumerate().find(|&(_, &c)| c < needed) {
        return Err(Error::Config(format!(
            "class {c} has {have} examples; the groups need {needed} per class"
        )));
    }
    let mut kind_of: Vec<Option<GroupKind>> = vec![None; ds.n()];
    let all_c = centroids(ds, &vec![false; ds.n()]);
    // Centrality ranking per class: distance to own centroid, ascending (ties by index).
    for (class, centre) in all_c.iter().enumerate() {
        let mut idx: Vec<usize> = (0..ds.n()).filter(|&i| ds.y[i] as usize == class).collect();
        idx.sort_by(|&a, &b| {
            dist2(ds.row(a), centre)
                .total_cmp(&dist2(ds.row(b), centre))
                .then(a.cmp(&b))
        });
        for (slot, kind) in central_kinds.iter().enumerate() {
            for &i in &idx[slot * g..(slot + 1) * g] {
                kind_of[i] = Some(*kind);
            }
        }
    }
    if has(GroupKind::Boundary) {
        let frac = same_class_fraction(ds, cfg.knn)?;
        for class in 0..ds.n_classes {
            let mut idx: Vec<usize> = (0..ds.n())
                .filter(|&i| ds.y[i] as usize == class && kind_of[i].is_none())
                .collect();
            idx.sort_by(|&a, &b| {
                (frac[a] - 0.5)
                    .abs()
                    .total_cmp(&(frac[b] - 0.5).abs())
                    .then(a.cmp(&b))
            });
            for &i in &idx[..g] {
                kind_of[i] = Some(GroupKind::Boundary);
            }
        }
    }
    let duplicate = cfg.output_outlier_mode == OutputOutlierMode::Duplicated;
    // Centroids without the points about to be modified (duplicated sources stay as they are).
    let modified: Vec<bool> = kind_of
        .iter()
        .map(|k| match k {
            Some(GroupKind::OutputOutlier) => !duplicate,
            Some(GroupKind::InputOutlier | GroupKind::InputOutlierRandom) => true,
            _ => false,
        })
        .collect();
    let c = centroids(ds, &modified);
    let other = nearest_other(&c);
    let mut out = ds.clone();
    let mut rows: Vec<usize> = (0..ds.n()).collect();
    if duplicate {
        // The flipped copies go at the end; their sources become ordinary examples again.
        let sources: Vec<usize> = (0..ds.n())
            .filter(|&i| kind_of[i] == Some(GroupKind::OutputOutlier))
            .collect();
        out = out.select(
            &rows
                .iter()
                .copied()
                .chain(sources.iter().copied())
                .collect::<Vec<_>>(),
        );
        for &i in &sources {
            kind_of[i] = None;
        }
        kind_of.extend(sources.iter().map(|_| Some(GroupKind::OutputOutlier)));
        rows.extend(&sources);
    }
    let mut rng = match cfg.input_outlier_mode {
        InputOutlierMode::RandomDirection { seed } => Rng::stream(seed, "input-outlier-direction"),
        InputOutlierMode::Coherent => Rng::new(0),
    };
    for (i, kind) in kind_of.iter().enumerate() {
        let Some(kind) = *kind else { continue };
        out.group[i] = kind.id();
        let own = out.y[i] as usize;
        let diff: Vec<f64> = c[own]
            .iter()
            .zip(&c[other[own]])
            .map(|(a, b)| a - b)
            .collect();
        match kind {
            GroupKind::OutputOutlier => out.y[i] = other[own] as u32,
            GroupKind::InputOutlier | GroupKind::InputOutlierRandom => {
                let dir = match (kind, cfg.input_outlier_mode) {
                    (GroupKind::InputOutlier, InputOutlierMode::Coherent) => diff.clone(),
                    _ => random_orthogonal(&diff, &mut rng),
                };
                let dn = dir.iter().map(|v| v * v).sum::<f64>().sqrt().max(1e-300);
                let scale = cfg.displacement * diff.iter().map(|v| v * v).sum::<f64>().sqrt() / dn;
                for (x, d) in out.x[i * ds.d..(i + 1) * ds.d].iter_mut().zip(&dir) {
                    *x += scale * d;
                }
            }
            _ => {}
        }
    }
    if cfg.input_outlier_mode != InputOutlierMode::Coherent && has(GroupKind::InputOutlier) {
        // Random-direction points carry the control's id so tables never confuse the two.
        for gid in out
            .group
            .iter_mut()
            .filter(|g| **g == GroupKind::InputOutlier.id())
        {
            *gid = GroupKind::InputOutlierRandom.id();
        }
    }
    if cfg.inject {
        return Ok(Grouped {
            held_out: out.select(&[]),
            train: out,
            source: rows,
        });
    }
    let keep: Vec<usize> = (0..out.n()).filter(|&i| out.group[i] == ORDINARY).collect();
    let held: Vec<usize> = (0..out.n()).filter(|&i| out.group[i] != ORDINARY).collect();
    let source = keep.iter().chain(&held).map(|&i| rows[i]).collect();
    Ok(Grouped {
        train: out.select(&keep),
        held_out: out.select(&held),
        source,
    })
}

/// A random unit Gaussian direction orthogonal to `v`.
fn random_orthogonal(v: &[f64], rng: &mut Rng) -> Vec<f64> {
    let mut r = rng.normals(v.len());
    let vv: f64 = v.iter().map(|a| a * a).sum();
    if vv > 0.0 {
        let proj = r.iter().zip(v).map(|(a, b)| a * b).sum::<f64>() / vv;
        r.iter_mut().zip(v).for_each(|(a, b)| *a -= proj * b);
    }
    let n = r.iter().map(|a| a * a).sum::<f64>().sqrt();
    r.iter_mut().for_each(|a| *a /= n);
    r
}

/// Indices of the examples with group id `kind` in `ds`.
pub fn members(ds: &Dataset, kind: GroupKind) -> Vec<usize> {
    (0..ds.n()).filter(|&i| ds.group[i] == kind.id()).collect()
}
