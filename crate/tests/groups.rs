//! Group construction: sizes, disjointness, displacement geometry, determinism, k classes.
use eoslab::data::{Dataset, ORDINARY};
use eoslab::groups::{self, GroupConfig, GroupKind, InputOutlierMode};
use eoslab::rng::Rng;

/// Two (or more) Gaussian blobs in `d` dims, `per` points each.
fn blobs(k: usize, per: usize, d: usize, seed: u64) -> Dataset {
    let mut rng = Rng::new(seed);
    let mut x = Vec::new();
    let mut y = Vec::new();
    for c in 0..k {
        for _ in 0..per {
            for j in 0..d {
                x.push(rng.normal() + if j == c { 3.0 } else { 0.0 });
            }
            y.push(c as u32);
        }
    }
    Dataset::new("blobs", x, y, d, k).unwrap()
}

fn centroid(ds: &Dataset, class: u32, skip: &[usize]) -> Vec<f64> {
    let idx: Vec<usize> = (0..ds.n())
        .filter(|i| ds.y[*i] == class && !skip.contains(i))
        .collect();
    let mut c = vec![0.0; ds.d];
    for &i in &idx {
        c.iter_mut().zip(ds.row(i)).for_each(|(a, b)| *a += b);
    }
    c.iter_mut().for_each(|a| *a /= idx.len() as f64);
    c
}

#[test]
fn sizes_disjointness_and_labels() {
    let ds = blobs(2, 200, 5, 1);
    let gr = groups::build(&ds, &GroupConfig::paper(10)).unwrap();
    let t = &gr.train;
    assert_eq!(t.n(), ds.n(), "injection keeps n");
    for kind in [
        GroupKind::Inlier,
        GroupKind::Boundary,
        GroupKind::OutputOutlier,
        GroupKind::InputOutlier,
    ] {
        let m = groups::members(t, kind);
        assert_eq!(m.len(), 20, "{kind:?}");
        // 10 per *source* class: output-outliers are flipped, so count by the source label.
        let from0 = m.iter().filter(|&&i| ds.y[i] == 0).count();
        assert_eq!(from0, 10, "{kind:?}");
    }
    // Each example is in at most one group (ids are single-valued), and the counts add up.
    assert_eq!(t.group.iter().filter(|&&g| g != ORDINARY).count(), 80);
    for i in groups::members(t, GroupKind::OutputOutlier) {
        assert_ne!(t.y[i], ds.y[i], "label flipped");
        assert_eq!(t.row(i), ds.row(i), "inputs unchanged");
    }
    for i in groups::members(t, GroupKind::Inlier)
        .into_iter()
        .chain(groups::members(t, GroupKind::Boundary))
    {
        assert_eq!(
            (t.y[i], t.row(i)),
            (ds.y[i], ds.row(i)),
            "real points unchanged"
        );
    }
    // Inliers are nearer their centroid than output-outliers (next-most-central).
    let c0 = centroid(&ds, 0, &[]);
    let d = |i: usize| {
        ds.row(i)
            .iter()
            .zip(&c0)
            .map(|(a, b)| (a - b) * (a - b))
            .sum::<f64>()
    };
    let inl: Vec<f64> = groups::members(t, GroupKind::Inlier)
        .into_iter()
        .filter(|&i| ds.y[i] == 0)
        .map(d)
        .collect();
    let oo: Vec<f64> = groups::members(t, GroupKind::OutputOutlier)
        .into_iter()
        .filter(|&i| ds.y[i] == 0)
        .map(d)
        .collect();
    assert!(
        inl.iter().cloned().fold(0.0, f64::max) <= oo.iter().cloned().fold(f64::INFINITY, f64::min)
    );
}

#[test]
fn boundary_points_are_ambiguous() {
    let ds = blobs(2, 200, 3, 2);
    let frac = groups::same_class_fraction(&ds, 32).unwrap();
    let gr = groups::build(&ds, &GroupConfig::paper(10)).unwrap();
    let b: Vec<f64> = groups::members(&gr.train, GroupKind::Boundary)
        .iter()
        .map(|&i| (frac[i] - 0.5).abs())
        .collect();
    let avg_all = frac.iter().map(|f| (f - 0.5).abs()).sum::<f64>() / frac.len() as f64;
    let avg_b = b.iter().sum::<f64>() / b.len() as f64;
    assert!(
        avg_b < avg_all / 2.0,
        "boundary |frac-0.5| {avg_b} vs all {avg_all}"
    );
}

#[test]
fn displacement_norm_direction_and_orthogonality() {
    let ds = blobs(2, 150, 6, 3);
    let coherent = groups::build(&ds, &GroupConfig::paper(8)).unwrap();
    let modified: Vec<usize> = (0..ds.n())
        .filter(|&i| matches!(coherent.train.group[i], 3 | 4))
        .collect();
    let (c0, c1) = (centroid(&ds, 0, &modified), centroid(&ds, 1, &modified));
    let diff: Vec<f64> = c1.iter().zip(&c0).map(|(a, b)| a - b).collect();
    let dn = diff.iter().map(|v| v * v).sum::<f64>().sqrt();
    for i in groups::members(&coherent.train, GroupKind::InputOutlier) {
        let shift: Vec<f64> = coherent
            .train
            .row(i)
            .iter()
            .zip(ds.row(i))
            .map(|(a, b)| a - b)
            .collect();
        // Class 0 moves by −3(c1 − c0), class 1 by +3(c1 − c0).
        let sign = if ds.y[i] == 0 { -3.0 } else { 3.0 };
        for (s, d) in shift.iter().zip(&diff) {
            assert!((s - sign * d).abs() < 1e-10);
        }
        assert_eq!(coherent.train.y[i], ds.y[i], "labels unchanged");
    }
    let mut cfg = GroupConfig::paper(8);
    cfg.input_outlier_mode = InputOutlierMode::RandomDirection { seed: 11 };
    let random = groups::build(&ds, &cfg).unwrap();
    let m = groups::members(&random.train, GroupKind::InputOutlierRandom);
    assert_eq!(
        m,
        groups::members(&coherent.train, GroupKind::InputOutlier),
        "matched source points"
    );
    for &i in &m {
        let shift: Vec<f64> = random
            .train
            .row(i)
            .iter()
            .zip(ds.row(i))
            .map(|(a, b)| a - b)
            .collect();
        let sn = shift.iter().map(|v| v * v).sum::<f64>().sqrt();
        assert!(
            (sn - 3.0 * dn).abs() < 1e-9 * dn,
            "norm {sn} vs {}",
            3.0 * dn
        );
        let cos = shift.iter().zip(&diff).map(|(a, b)| a * b).sum::<f64>() / (sn * dn);
        assert!(cos.abs() < 1e-10, "not orthogonal: cos {cos}");
    }
    // Own seed: another seed gives other directions; the same seed the same ones.
    let again = groups::build(&ds, &cfg).unwrap();
    assert_eq!(again.train.x, random.train.x);
    cfg.input_outlier_mode = InputOutlierMode::RandomDirection { seed: 12 };
    assert_ne!(groups::build(&ds, &cfg).unwrap().train.x, random.train.x);
}

#[test]
fn tracking_only_mode_holds_groups_out() {
    let ds = blobs(2, 120, 4, 4);
    let mut cfg = GroupConfig::paper(5);
    cfg.inject = false;
    let gr = groups::build(&ds, &cfg).unwrap();
    assert_eq!(gr.train.n() + gr.held_out.n(), ds.n());
    assert_eq!(gr.held_out.n(), 40);
    assert!(gr.train.group.iter().all(|&g| g == ORDINARY));
    assert_eq!(gr.source.len(), ds.n());
}

#[test]
fn k_classes_use_nearest_other_class() {
    let ds = blobs(3, 100, 4, 5);
    let gr = groups::build(&ds, &GroupConfig::paper(5)).unwrap();
    for i in groups::members(&gr.train, GroupKind::OutputOutlier) {
        assert_ne!(gr.train.y[i], ds.y[i]);
        assert!(gr.train.y[i] < 3);
    }
    let mut too_many = GroupConfig::paper(30);
    too_many.per_class = 30;
    let err = groups::build(&ds, &too_many).unwrap_err().to_string();
    assert!(err.contains("need"), "{err}");
}

#[test]
fn duplicated_output_outliers_keep_their_sources() {
    use eoslab::groups::OutputOutlierMode;
    let ds = blobs(2, 200, 5, 1);
    let mut cfg = GroupConfig::paper(10);
    let removed = groups::build(&ds, &cfg).unwrap();
    cfg.output_outlier_mode = OutputOutlierMode::Duplicated;
    let dup = groups::build(&ds, &cfg).unwrap();
    let t = &dup.train;
    // 10 flipped copies per class are added: n grows by 20, every group keeps 20 members.
    assert_eq!(t.n(), ds.n() + 20);
    assert_eq!(dup.source.len(), t.n());
    for kind in [
        GroupKind::Inlier,
        GroupKind::Boundary,
        GroupKind::InputOutlier,
    ] {
        assert_eq!(groups::members(t, kind).len(), 20, "{kind:?}");
    }
    let oo = groups::members(t, GroupKind::OutputOutlier);
    assert_eq!(
        oo,
        (ds.n()..ds.n() + 20).collect::<Vec<_>>(),
        "copies at the end"
    );
    // The same source points as the removed mode's output-outliers.
    let mut src: Vec<usize> = oo.iter().map(|&i| dup.source[i]).collect();
    src.sort_unstable();
    assert_eq!(
        src,
        groups::members(&removed.train, GroupKind::OutputOutlier)
    );
    for &i in &oo {
        let s = dup.source[i];
        // The copy: same input, the other label. The source: still in the training set,
        // ordinary, with its true label.
        assert_eq!(t.row(i), ds.row(s));
        assert_ne!(t.y[i], ds.y[s]);
        assert_eq!(
            (t.y[s], t.group[s], t.row(s)),
            (ds.y[s], ORDINARY, ds.row(s))
        );
    }
    // The other groups are chosen from the same ranking in both modes.
    assert_eq!(
        groups::members(t, GroupKind::Inlier),
        groups::members(&removed.train, GroupKind::Inlier)
    );
    // Tracking-only: the copies are held out, the sources train.
    cfg.inject = false;
    let held = groups::build(&ds, &cfg).unwrap();
    assert_eq!(held.train.n(), ds.n() - 60);
    assert_eq!(held.held_out.n(), 80);
}
