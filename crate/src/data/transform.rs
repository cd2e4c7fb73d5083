//! Transforms: class subsets with label remapping, scaling, standardisation, shuffles,
//! per-class subsampling and stratified splits. Every random choice comes from a seed.
use super::Dataset;
use crate::rng::Rng;
use crate::{Error, Result};

impl Dataset {
    /// Number of examples of each class, indexed by label.
    pub fn class_counts(&self) -> Vec<usize> {
        let mut counts = vec![0; self.n_classes];
        for &c in &self.y {
            counts[c as usize] += 1;
        }
        counts
    }

    /// Indices of the examples of each class, in dataset order.
    fn indices_per_class(&self) -> Vec<Vec<usize>> {
        let mut per = vec![Vec::new(); self.n_classes];
        for (i, &c) in self.y.iter().enumerate() {
            per[c as usize].push(i);
        }
        per
    }

    /// Keep the examples of `classes` (in dataset order), relabelled to their position in
    /// `classes`: `select_classes(&[3, 8])` maps 3 → 0 and 8 → 1. The name gains `[3,8]`.
    pub fn select_classes(&self, classes: &[u32]) -> Result<Dataset> {
        if classes.is_empty() {
            return Err(Error::Config(format!(
                "dataset {}: select_classes needs at least one class",
                self.name
            )));
        }
        // new_label[old] = position in `classes`, if kept.
        let mut new_label = vec![None; self.n_classes];
        let counts = self.class_counts();
        for (pos, &c) in classes.iter().enumerate() {
            let c = c as usize;
            if c >= self.n_classes {
                return Err(Error::Config(format!(
                    "dataset {}: class {c} does not exist (classes are 0..{})",
                    self.name, self.n_classes
                )));
            }
            if new_label[c].is_some() {
                return Err(Error::Config(format!(
                    "dataset {}: class {c} selected twice",
                    self.name
                )));
            }
            if counts[c] == 0 {
                return Err(Error::Config(format!(
                    "dataset {}: class {c} has no examples",
                    self.name
                )));
            }
            new_label[c] = Some(pos as u32);
        }
        let idx: Vec<usize> = (0..self.n())
            .filter(|&i| new_label[self.y[i] as usize].is_some())
            .collect();
        let mut out = self.select(&idx);
        for c in &mut out.y {
            *c = new_label[*c as usize].expect("only kept classes were selected");
        }
        out.n_classes = classes.len();
        let list: Vec<String> = classes.iter().map(|c| c.to_string()).collect();
        out.name = format!("{}[{}]", self.name, list.join(","));
        Ok(out)
    }

    /// Multiply every input value by `factor` (e.g. `1.0 / 255.0` or `1.0 / 16.0`).
    pub fn scale(&mut self, factor: f64) {
        for v in &mut self.x {
            *v *= factor;
        }
    }

    /// The examples in a random order determined by `seed`.
    pub fn shuffled(&self, seed: u64) -> Dataset {
        self.select(&Rng::stream(seed, "data.shuffled").permutation(self.n()))
    }

    /// `n_per_class` random examples of every class (chosen from `seed`), kept in dataset order.
    ///
    /// Errors if a class has fewer than `n_per_class` examples rather than silently unbalancing.
    pub fn subsample_per_class(&self, n_per_class: usize, seed: u64) -> Result<Dataset> {
        let mut rng = Rng::stream(seed, "data.subsample_per_class");
        let mut idx = Vec::with_capacity(n_per_class * self.n_classes);
        for (c, mut members) in self.indices_per_class().into_iter().enumerate() {
            if members.len() < n_per_class {
                return Err(Error::Config(format!(
                    "dataset {}: class {c} has {} examples, fewer than the {n_per_class} requested",
                    self.name,
                    members.len()
                )));
            }
            rng.shuffle(&mut members);
            idx.extend_from_slice(&members[..n_per_class]);
        }
        // Dataset order, so the result does not depend on the class loop order.
        idx.sort_unstable();
        Ok(self.select(&idx))
    }

    /// Stratified split into (train, test): each class sends `round(test_fraction * count)`
    /// random examples (chosen from `seed`) to test; both parts keep dataset order.
    pub fn split_per_class(&self, test_fraction: f64, seed: u64) -> Result<(Dataset, Dataset)> {
        if !(0.0..=1.0).contains(&test_fraction) {
            return Err(Error::Config(format!(
                "test_fraction {test_fraction} is not in [0, 1]"
            )));
        }
        let mut rng = Rng::stream(seed, "data.split_per_class");
        let (mut train, mut test) = (Vec::new(), Vec::new());
        for mut members in self.indices_per_class() {
            rng.shuffle(&mut members);
            let n_test = (test_fraction * members.len() as f64).round() as usize;
            test.extend_from_slice(&members[..n_test]);
            train.extend_from_slice(&members[n_test..]);
        }
        train.sort_unstable();
        test.sort_unstable();
        Ok((self.select(&train), self.select(&test)))
    }
}

/// An affine standardisation `x' = (x - mean) / std`, per feature or per image channel.
///
/// A zero `std` (a constant feature or channel; the digits' border pixels are always 0) is
/// applied as 1, so the feature becomes `x - mean` (0 on the fitted data) instead of NaN.
/// Standard deviations are population ones (divide by n), as in scikit-learn and torchvision.
#[derive(Clone, Debug, PartialEq)]
pub struct Standardizer {
    /// Mean per feature (length d), or per channel (length C).
    pub mean: Vec<f64>,
    /// Standard deviation per feature or per channel (0 means "constant": divided by 1).
    pub std: Vec<f64>,
    /// `Some([C, H, W])` for per-channel statistics over the CHW layout; `None` per feature.
    pub per_channel: Option<[usize; 3]>,
}

/// Mean and population std of `values`; a constant sequence gets its exact value and std 0
/// (summing n copies of v and dividing can miss v by an ulp, which would turn into noise).
fn moments(values: impl Iterator<Item = f64> + Clone) -> (f64, f64) {
    let (mut n, mut sum, mut lo, mut hi) = (0usize, 0.0, f64::INFINITY, f64::NEG_INFINITY);
    for v in values.clone() {
        n += 1;
        sum += v;
        lo = lo.min(v);
        hi = hi.max(v);
    }
    if n == 0 {
        return (0.0, 0.0);
    }
    if lo == hi {
        return (lo, 0.0);
    }
    let mean = sum / n as f64;
    let var = values.map(|v| (v - mean) * (v - mean)).sum::<f64>() / n as f64;
    (mean, var.sqrt())
}

impl Standardizer {
    /// Fit mean and std of every feature on `ds` (an empty dataset gives mean 0, std 0: identity).
    pub fn fit_per_feature(ds: &Dataset) -> Standardizer {
        let (mean, std) = (0..ds.d)
            .map(|j| moments((0..ds.n()).map(move |i| ds.x[i * ds.d + j])))
            .unzip();
        Standardizer {
            mean,
            std,
            per_channel: None,
        }
    }

    /// Fit mean and std of every image channel on `ds` (needs `ds.image_shape`).
    pub fn fit_per_channel(ds: &Dataset) -> Result<Standardizer> {
        let Some(shape @ [c, h, w]) = ds.image_shape else {
            return Err(Error::Config(format!(
                "dataset {}: per-channel standardisation needs an image shape (the data are not images)",
                ds.name
            )));
        };
        check_shape(ds, shape)?;
        let plane = h * w;
        let (mean, std) = (0..c)
            .map(|ch| {
                moments(
                    (0..ds.n())
                        .flat_map(move |i| ds.x[i * ds.d + ch * plane..][..plane].iter().copied()),
                )
            })
            .unzip();
        Ok(Standardizer {
            mean,
            std,
            per_channel: Some(shape),
        })
    }

    /// Fixed per-channel statistics, e.g. `(&CIFAR10_MEAN, &CIFAR10_STD, [3, 32, 32])`.
    pub fn fixed_per_channel(mean: &[f64], std: &[f64], shape: [usize; 3]) -> Result<Standardizer> {
        if mean.len() != shape[0] || std.len() != shape[0] {
            return Err(Error::Config(format!(
                "{} means and {} stds for {} channels",
                mean.len(),
                std.len(),
                shape[0]
            )));
        }
        if mean.iter().any(|m| !m.is_finite()) || std.iter().any(|s| !(s.is_finite() && *s >= 0.0))
        {
            return Err(Error::Config(format!(
                "invalid statistics: mean {mean:?}, std {std:?}"
            )));
        }
        Ok(Standardizer {
            mean: mean.to_vec(),
            std: std.to_vec(),
            per_channel: Some(shape),
        })
    }

    /// Standardise `ds` in place; errors if its layout does not match the fitted one.
    pub fn apply(&self, ds: &mut Dataset) -> Result<()> {
        let inv: Vec<f64> = self
            .std
            .iter()
            .map(|&s| if s == 0.0 { 1.0 } else { 1.0 / s })
            .collect();
        match self.per_channel {
            None => {
                if self.mean.len() != ds.d {
                    return Err(Error::Config(format!(
                        "dataset {}: standardizer fitted on {} features, dataset has {}",
                        ds.name,
                        self.mean.len(),
                        ds.d
                    )));
                }
                for row in ds.x.chunks_exact_mut(ds.d) {
                    for ((v, m), s) in row.iter_mut().zip(&self.mean).zip(&inv) {
                        *v = (*v - m) * s;
                    }
                }
            }
            Some(shape) => {
                check_shape(ds, shape)?;
                let plane = shape[1] * shape[2];
                for row in ds.x.chunks_exact_mut(ds.d) {
                    for ((chan, m), s) in row.chunks_exact_mut(plane).zip(&self.mean).zip(&inv) {
                        for v in chan {
                            *v = (*v - m) * s;
                        }
                    }
                }
            }
        }
        Ok(())
    }
}

/// `ds` holds images of `shape` (its own image shape, if set, must agree).
fn check_shape(ds: &Dataset, shape: [usize; 3]) -> Result<()> {
    if shape.iter().product::<usize>() != ds.d || ds.image_shape.is_some_and(|s| s != shape) {
        return Err(Error::Config(format!(
            "dataset {}: images of shape {shape:?} do not match its {} features (image shape {:?})",
            ds.name, ds.d, ds.image_shape
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::data::cifar::{CIFAR10_MEAN, CIFAR10_STD};
    use crate::data::digits;

    fn toy() -> Dataset {
        // Feature 0 is the example's index, so selections can be traced back.
        let y = vec![0, 1, 2, 3, 2, 1, 0, 2];
        let x: Vec<f64> = (0..y.len())
            .flat_map(|i| [i as f64, (i * i) as f64])
            .collect();
        let mut ds = Dataset::new("toy", x, y, 2, 4).unwrap();
        ds.group = vec![0, 0, 1, 0, 2, 0, 0, 0];
        ds
    }

    fn ids(ds: &Dataset) -> Vec<usize> {
        (0..ds.n()).map(|i| ds.row(i)[0] as usize).collect()
    }

    #[test]
    fn select_classes_remaps_in_dataset_order() {
        let s = toy().select_classes(&[2, 0]).unwrap();
        assert_eq!(ids(&s), vec![0, 2, 4, 6, 7]);
        assert_eq!(s.y, vec![1, 0, 0, 1, 0]);
        assert_eq!(s.group, vec![0, 1, 2, 0, 0]);
        assert_eq!((s.n_classes, s.name.as_str()), (2, "toy[2,0]"));
        let ds = toy();
        assert!(
            ds.select_classes(&[2, 2])
                .unwrap_err()
                .to_string()
                .contains("twice")
        );
        assert!(
            ds.select_classes(&[4])
                .unwrap_err()
                .to_string()
                .contains("does not exist")
        );
        assert!(ds.select_classes(&[]).is_err());
        let no3 = ds.select(&[0, 1, 2]);
        assert!(
            no3.select_classes(&[0, 3])
                .unwrap_err()
                .to_string()
                .contains("no examples")
        );
    }

    #[test]
    fn per_feature_standardisation_on_digits() {
        let mut ds = digits::load().unwrap();
        let st = Standardizer::fit_per_feature(&ds);
        assert!(st.std.contains(&0.0), "digits has constant pixels");
        st.apply(&mut ds).unwrap();
        assert!(ds.x.iter().all(|v| v.is_finite()));
        let again = Standardizer::fit_per_feature(&ds);
        for (j, (m, s)) in again.mean.iter().zip(&again.std).enumerate() {
            assert!(m.abs() < 1e-12, "feature {j}: mean {m}");
            let want = if st.std[j] == 0.0 { 0.0 } else { 1.0 };
            assert!((s - want).abs() < 1e-12, "feature {j}: std {s}");
        }
        // Wrong width is an error, not a panic.
        assert!(st.apply(&mut toy()).is_err());
    }

    #[test]
    fn per_channel_standardisation() {
        let mut rng = Rng::new(5);
        let n = 50;
        let x: Vec<f64> = (0..n * 3 * 4 * 4)
            .map(|k| {
                let ch = (k / 16) % 3;
                rng.normal() * (ch as f64 + 0.5) + 10.0 * ch as f64
            })
            .collect();
        let mut ds = Dataset::new("img", x, vec![0; n], 48, 1).unwrap();
        assert!(
            Standardizer::fit_per_channel(&ds).is_err(),
            "needs an image shape"
        );
        ds.image_shape = Some([3, 4, 4]);
        let raw = ds.clone();
        let st = Standardizer::fit_per_channel(&ds).unwrap();
        assert_eq!(st.mean.len(), 3);
        st.apply(&mut ds).unwrap();
        let again = Standardizer::fit_per_channel(&ds).unwrap();
        for c in 0..3 {
            assert!(
                again.mean[c].abs() < 1e-12 && (again.std[c] - 1.0).abs() < 1e-12,
                "{again:?}"
            );
        }
        // Fixed statistics: exactly (x - mean_c) / std_c on the CHW layout.
        let fixed =
            Standardizer::fixed_per_channel(&CIFAR10_MEAN, &CIFAR10_STD, [3, 4, 4]).unwrap();
        let mut f = raw.clone();
        fixed.apply(&mut f).unwrap();
        for k in [0, 17, 40, 48 * 7 + 33] {
            let c = (k % 48) / 16;
            assert_eq!(
                f.x[k],
                (raw.x[k] - CIFAR10_MEAN[c]) * (1.0 / CIFAR10_STD[c])
            );
        }
        assert!(Standardizer::fixed_per_channel(&[0.0; 2], &[1.0; 3], [3, 4, 4]).is_err());
        let wrong = Standardizer::fixed_per_channel(&[0.0; 3], &[1.0; 3], [3, 2, 2]).unwrap();
        assert!(wrong.apply(&mut f).is_err());
    }

    #[test]
    fn scale_multiplies() {
        let mut ds = toy();
        ds.scale(0.5);
        assert_eq!(ds.row(3), &[1.5, 4.5]);
    }

    #[test]
    fn shuffles_and_subsamples_are_deterministic_from_the_seed() {
        let ds = digits::load().unwrap();
        let a = ds.shuffled(1);
        assert_eq!(a.fingerprint(), ds.shuffled(1).fingerprint());
        assert_ne!(a.fingerprint(), ds.shuffled(2).fingerprint());
        assert_eq!(a.class_counts(), ds.class_counts());

        let s = ds.subsample_per_class(25, 3).unwrap();
        assert_eq!(s.class_counts(), vec![25; 10]);
        assert_eq!(
            s.fingerprint(),
            ds.subsample_per_class(25, 3).unwrap().fingerprint()
        );
        assert_ne!(
            s.fingerprint(),
            ds.subsample_per_class(25, 4).unwrap().fingerprint()
        );
        let e = ds.subsample_per_class(175, 3).unwrap_err().to_string();
        assert!(e.contains("class 8 has 174 examples"), "{e}");
    }

    #[test]
    fn stratified_split_counts_and_determinism() {
        let ds = toy();
        let (train, test) = ds.split_per_class(0.5, 9).unwrap();
        // Class counts 2, 2, 3, 1 → test gets round(half) = 1, 1, 2 (1.5 rounds up), 1.
        assert_eq!(test.class_counts(), vec![1, 1, 2, 1]);
        assert_eq!(train.class_counts(), vec![1, 1, 1, 0]);
        let mut all = [ids(&train), ids(&test)].concat();
        all.sort();
        assert_eq!(all, (0..8).collect::<Vec<_>>());
        assert!(
            ids(&test).windows(2).all(|w| w[0] < w[1]),
            "dataset order kept"
        );

        let digits = digits::load().unwrap();
        let (tr, te) = digits.split_per_class(0.2, 1).unwrap();
        for ((c, &n), (&a, &b)) in digits
            .class_counts()
            .iter()
            .enumerate()
            .zip(tr.class_counts().iter().zip(&te.class_counts()))
        {
            assert_eq!(b, (0.2 * n as f64).round() as usize, "class {c}");
            assert_eq!(a + b, n);
        }
        let (tr2, te2) = digits.split_per_class(0.2, 1).unwrap();
        assert_eq!(
            (tr.fingerprint(), te.fingerprint()),
            (tr2.fingerprint(), te2.fingerprint())
        );
        assert_ne!(
            te.fingerprint(),
            digits.split_per_class(0.2, 2).unwrap().1.fingerprint()
        );
        assert!(ds.split_per_class(1.5, 0).is_err());
        assert!(ds.split_per_class(f64::NAN, 0).is_err());
    }
}
