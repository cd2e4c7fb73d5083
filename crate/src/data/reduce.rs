//! Input-size reduction for images: average pooling and channel averaging.
//!
//! The paper trains on n = 10,000 CIFAR-10 images of d = 3,072 inputs (n ≈ 3.3 d). A smaller
//! set of the same images at full size has n < d and is fitted almost at once, so the
//! CPU-scale experiments bring n/d back near the paper's by shrinking d. Both reductions are
//! linear (averages), so they commute with the per-channel standardisation that precedes them.
use super::Dataset;
use crate::{Error, Result};
use serde::{Deserialize, Serialize};

/// How image inputs are shrunk after standardisation (`Reduce::default()` keeps them).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Reduce {
    /// Average-pool non-overlapping `pool` × `pool` blocks of each channel (1 = no pooling).
    pub pool: usize,
    /// Average the channels into one (grey scale).
    pub grayscale: bool,
}

impl Default for Reduce {
    fn default() -> Self {
        Reduce {
            pool: 1,
            grayscale: false,
        }
    }
}

impl Reduce {
    /// Whether this reduction changes anything.
    pub fn is_identity(&self) -> bool {
        self.pool <= 1 && !self.grayscale
    }

    /// The image shape `[C, H, W]` after reducing images of `shape`.
    pub fn output_shape(&self, shape: [usize; 3]) -> [usize; 3] {
        let k = self.pool.max(1);
        let c = if self.grayscale { 1 } else { shape[0] };
        [c, shape[1] / k, shape[2] / k]
    }
}

impl Dataset {
    /// The images reduced by `r`: each output pixel is the mean of its `pool` × `pool` block
    /// (and, in grey scale, of the channels). Errors if the inputs are not images or the
    /// block size does not divide the height and width.
    pub fn reduced(&self, r: Reduce) -> Result<Dataset> {
        if r.is_identity() {
            return Ok(self.clone());
        }
        let Some(shape @ [c, h, w]) = self.image_shape else {
            return Err(Error::Config(format!(
                "dataset {}: pooling and grey scale need images (no image shape)",
                self.name
            )));
        };
        let k = r.pool.max(1);
        if !h.is_multiple_of(k) || !w.is_multiple_of(k) {
            return Err(Error::Config(format!(
                "dataset {}: pool {k} does not divide its {h}x{w} images",
                self.name
            )));
        }
        let out @ [oc, oh, ow] = r.output_shape(shape);
        let od = oc * oh * ow;
        // Every output pixel averages `k * k * (c / oc)` input values.
        let inv = 1.0 / (k * k * (c / oc)) as f64;
        let mut x = vec![0.0; self.n() * od];
        for (row, dst) in self.x.chunks_exact(self.d).zip(x.chunks_exact_mut(od)) {
            for ch in 0..c {
                let o = if r.grayscale { 0 } else { ch };
                for i in 0..h {
                    for j in 0..w {
                        dst[o * oh * ow + (i / k) * ow + j / k] += row[ch * h * w + i * w + j];
                    }
                }
            }
            dst.iter_mut().for_each(|v| *v *= inv);
        }
        let mut name = format!("{}/pool{k}", self.name);
        if r.grayscale {
            name.push_str("-gray");
        }
        Ok(Dataset {
            name,
            x,
            y: self.y.clone(),
            group: self.group.clone(),
            d: od,
            n_classes: self.n_classes,
            image_shape: Some(out),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn image(c: usize, h: usize, w: usize) -> Dataset {
        // Value = 100·channel + 10·row + column, two images (the second negated).
        let one: Vec<f64> = (0..c * h * w)
            .map(|k| (100 * (k / (h * w)) + 10 * ((k % (h * w)) / w) + k % w) as f64)
            .collect();
        let x = [one.clone(), one.iter().map(|v| -v).collect()].concat();
        let mut ds = Dataset::new("img", x, vec![0, 1], c * h * w, 2).unwrap();
        ds.image_shape = Some([c, h, w]);
        ds
    }

    #[test]
    fn pooling_and_grayscale_average_blocks() {
        let ds = image(3, 4, 4);
        let p = ds
            .reduced(Reduce {
                pool: 2,
                grayscale: false,
            })
            .unwrap();
        assert_eq!((p.d, p.image_shape), (12, Some([3, 2, 2])));
        // Channel 1, block (1, 0): rows 2..4, cols 0..2 → 100 + mean(20, 21, 30, 31) = 125.5.
        assert_eq!(p.row(0)[4 + 2], 125.5);
        assert_eq!(p.row(1)[4 + 2], -125.5);
        let g = ds
            .reduced(Reduce {
                pool: 2,
                grayscale: true,
            })
            .unwrap();
        assert_eq!((g.d, g.image_shape), (4, Some([1, 2, 2])));
        // Mean over channels 0, 100, 200 of block (0, 1): 100 + mean(2, 3, 12, 13) = 107.5.
        assert_eq!(g.row(0)[1], 107.5);
        let gray_only = ds
            .reduced(Reduce {
                pool: 1,
                grayscale: true,
            })
            .unwrap();
        assert_eq!((gray_only.d, gray_only.row(0)[5]), (16, 111.0));
        assert_eq!(ds.reduced(Reduce::default()).unwrap().x, ds.x);
    }

    #[test]
    fn reduction_errors_name_the_problem() {
        let ds = image(1, 6, 6);
        let e = ds
            .reduced(Reduce {
                pool: 4,
                grayscale: false,
            })
            .unwrap_err()
            .to_string();
        assert!(e.contains("pool 4 does not divide its 6x6"), "{e}");
        let mut flat = ds.clone();
        flat.image_shape = None;
        let e = flat
            .reduced(Reduce {
                pool: 2,
                grayscale: false,
            })
            .unwrap_err()
            .to_string();
        assert!(e.contains("need images"), "{e}");
    }
}
