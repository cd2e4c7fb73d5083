//! Small statistics every layer uses: quantiles, window means of a curve, pair means of
//! two-step measurements, linear interpolation. Plain functions of `f64` slices; NaN marks
//! "no value" (empty sample, empty window, outside the range), never a panic.

/// Median of a sample (NaN for an empty one).
pub fn median(v: &[f64]) -> f64 {
    quantile(v, 0.5)
}

/// Linear-interpolated quantile `q` in [0, 1] (NaN for an empty sample; NaNs are dropped).
pub fn quantile(v: &[f64], q: f64) -> f64 {
    let mut s: Vec<f64> = v.iter().copied().filter(|x| !x.is_nan()).collect();
    if s.is_empty() {
        return f64::NAN;
    }
    s.sort_by(|a, b| a.total_cmp(b));
    let pos = q.clamp(0.0, 1.0) * (s.len() - 1) as f64;
    let (lo, hi) = (pos.floor() as usize, pos.ceil() as usize);
    s[lo] + (s[hi] - s[lo]) * (pos - lo as f64)
}

/// Mean of the points of `curve` whose t lies in `window` (inclusive; NaN if none).
pub fn window_mean(curve: &[(f64, f64)], window: (f64, f64)) -> f64 {
    let inside: Vec<f64> = curve
        .iter()
        .filter(|p| p.0 >= window.0 - 1e-9 && p.0 <= window.1 + 1e-9 && p.1.is_finite())
        .map(|p| p.1)
        .collect();
    if inside.is_empty() {
        f64::NAN
    } else {
        inside.iter().sum::<f64>() / inside.len() as f64
    }
}

/// The time average over `window` of a piecewise-constant curve of cells of width `dt`
/// (`curve` holds each cell's centre and value): each cell weighs by its overlap with the
/// window, so a window ending inside a cell counts that cell's part (NaN if no overlap).
pub fn cell_window_mean(curve: &[(f64, f64)], dt: f64, window: (f64, f64)) -> f64 {
    let (mut sum, mut weight) = (0.0, 0.0);
    for &(c, v) in curve {
        let overlap = ((c + 0.5 * dt).min(window.1) - (c - 0.5 * dt).max(window.0)).max(0.0);
        if overlap > 1e-12 * dt && v.is_finite() {
            sum += overlap * v;
            weight += overlap;
        }
    }
    if weight > 0.0 { sum / weight } else { f64::NAN }
}

/// `(t, value)` of each measured pair of consecutive steps, with the pair's mean value at the
/// first step's t (a lone measurement is its own pair).
pub fn pair_means(rows: &[(usize, f64, f64)]) -> Vec<(f64, f64)> {
    let mut out: Vec<(f64, f64)> = Vec::new();
    let mut i = 0;
    while i < rows.len() {
        if i + 1 < rows.len() && rows[i + 1].0 == rows[i].0 + 1 {
            out.push((rows[i].1, 0.5 * (rows[i].2 + rows[i + 1].2)));
            i += 2;
        } else {
            out.push((rows[i].1, rows[i].2));
            i += 1;
        }
    }
    out
}

/// Linear interpolation of `(x, y)` (sorted by x) at `x`; NaN outside the range.
pub fn interpolate(series: &[(f64, f64)], x: f64) -> f64 {
    let eps = 1e-9 * x.abs().max(1.0);
    match series.iter().position(|p| p.0 >= x - eps) {
        None => f64::NAN,
        Some(0) => {
            if (series[0].0 - x).abs() <= eps {
                series[0].1
            } else {
                f64::NAN
            }
        }
        Some(i) => {
            let (a, b) = (series[i - 1], series[i]);
            if (b.0 - x).abs() <= eps {
                b.1
            } else {
                a.1 + (b.1 - a.1) * (x - a.0) / (b.0 - a.0)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quantiles() {
        assert_eq!(median(&[3.0, 1.0, 2.0]), 2.0);
        assert_eq!(median(&[4.0, 1.0, 2.0, 3.0]), 2.5);
        assert_eq!(quantile(&[0.0, 10.0], 0.25), 2.5);
        assert!(median(&[]).is_nan());
    }
}
