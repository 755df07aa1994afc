//! Data sets: every spec (`cifar10:DIR`, `svhn:DIR`, `folder:DIR`, `npy:...`, built-ins) resolves to one
//! in-memory [`Dataset`]; [`loader`] batches, shuffles and augments it off the training thread.
pub mod augment;
pub mod bars_stripes;
pub mod builtin;
pub mod cache;
pub mod cifar;
pub mod download;
pub mod folder;
pub mod loader;
pub mod npy;
pub mod spec;
pub mod svhn;
pub mod toy2d;

pub use spec::{load, DataSpec, LoadOptions};

use anyhow::bail;
use tch::{Kind, Tensor};

/// Which half of an official release.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Split {
    Train,
    Test,
}

/// Example values: 8-bit pixels (mapped to [-1, 1] as x/127.5 - 1, JEM's Normalize(.5, .5)) or floats
/// already in model space.
#[derive(Debug, Clone)]
pub enum Pixels {
    U8(Vec<u8>),
    F32(Vec<f32>),
}

/// A whole data set in memory, examples stored contiguously (NCHW for images, ND for points).
#[derive(Debug, Clone)]
pub struct Dataset {
    /// The spec it came from, for messages.
    pub name: String,
    pub pixels: Pixels,
    /// Shape of one example: [C, H, W] or [D].
    pub shape: Vec<usize>,
    /// One label per example, when the set is labelled.
    pub labels: Option<Vec<i64>>,
    /// Class names (label i is `classes[i]`); empty for unlabelled sets.
    pub classes: Vec<String>,
}

impl Dataset {
    /// Builds a data set, checking that sizes and labels agree.
    pub fn new(
        name: impl Into<String>,
        pixels: Pixels,
        shape: Vec<usize>,
        labels: Option<Vec<i64>>,
        classes: Vec<String>,
    ) -> crate::Result<Self> {
        let name = name.into();
        let numel: usize = shape.iter().product();
        let total = match &pixels {
            Pixels::U8(v) => v.len(),
            Pixels::F32(v) => v.len(),
        };
        if numel == 0 || total % numel != 0 {
            bail!("{name}: {total} values do not divide into examples of shape {shape:?}");
        }
        let n = total / numel;
        if let Some(labels) = &labels {
            if labels.len() != n {
                bail!("{name}: {} labels for {n} examples", labels.len());
            }
            if let Some(&bad) = labels.iter().find(|&&l| l < 0 || l as usize >= classes.len()) {
                bail!("{name}: label {bad} out of range 0..{}", classes.len());
            }
        }
        Ok(Dataset { name, pixels, shape, labels, classes })
    }

    pub fn len(&self) -> usize {
        let numel = self.example_numel();
        match &self.pixels {
            Pixels::U8(v) => v.len() / numel,
            Pixels::F32(v) => v.len() / numel,
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    pub fn example_numel(&self) -> usize {
        self.shape.iter().product()
    }

    pub fn num_classes(&self) -> usize {
        self.classes.len()
    }

    pub fn is_image(&self) -> bool {
        self.shape.len() == 3
    }

    /// Writes example `i` into `out` as floats in model space ([-1, 1] for images).
    pub fn write_example(&self, i: usize, out: &mut [f32]) {
        let n = self.example_numel();
        match &self.pixels {
            Pixels::U8(v) => {
                for (o, &p) in out.iter_mut().zip(&v[i * n..(i + 1) * n]) {
                    *o = p as f32 / 127.5 - 1.0;
                }
            }
            Pixels::F32(v) => out.copy_from_slice(&v[i * n..(i + 1) * n]),
        }
    }

    /// The examples at `indices` as a float tensor [B, ...shape] on the CPU, with their labels.
    pub fn batch(&self, indices: &[usize]) -> (Tensor, Option<Tensor>) {
        let n = self.example_numel();
        let mut buf = vec![0f32; indices.len() * n];
        for (k, &i) in indices.iter().enumerate() {
            self.write_example(i, &mut buf[k * n..(k + 1) * n]);
        }
        let mut dims = vec![indices.len() as i64];
        dims.extend(self.shape.iter().map(|&d| d as i64));
        let x = Tensor::from_slice(&buf).view(dims.as_slice());
        let y = self.labels.as_ref().map(|l| {
            let ys: Vec<i64> = indices.iter().map(|&i| l[i]).collect();
            Tensor::from_slice(&ys).to_kind(Kind::Int64)
        });
        (x, y)
    }

    /// A new data set holding the examples at `indices`, in that order.
    pub fn subset(&self, indices: &[usize]) -> Dataset {
        let n = self.example_numel();
        let pixels = match &self.pixels {
            Pixels::U8(v) => Pixels::U8(indices.iter().flat_map(|&i| v[i * n..(i + 1) * n].iter().copied()).collect()),
            Pixels::F32(v) => {
                Pixels::F32(indices.iter().flat_map(|&i| v[i * n..(i + 1) * n].iter().copied()).collect())
            }
        };
        Dataset {
            name: self.name.clone(),
            pixels,
            shape: self.shape.clone(),
            labels: self.labels.as_ref().map(|l| indices.iter().map(|&i| l[i]).collect()),
            classes: self.classes.clone(),
        }
    }

    /// Smallest and largest value in model space.
    pub fn value_range(&self) -> (f32, f32) {
        match &self.pixels {
            Pixels::U8(v) => {
                let lo = v.iter().copied().min().unwrap_or(0);
                let hi = v.iter().copied().max().unwrap_or(0);
                (lo as f32 / 127.5 - 1.0, hi as f32 / 127.5 - 1.0)
            }
            Pixels::F32(v) => v.iter().fold((f32::INFINITY, f32::NEG_INFINITY), |(a, b), &x| (a.min(x), b.max(x))),
        }
    }

    /// Half-width r of the box [-r, r] where fresh SGLD chains start and clamped samplers stay:
    /// 1 for images (model space); for points the data's largest |value| with a 10% margin, at
    /// least 1. The trainer's chains use it (`train::run_data`), and `ebm sample` recomputes it
    /// from a checkpoint's training data.
    pub fn chain_range(&self) -> f64 {
        if self.is_image() {
            1.0
        } else {
            let (lo, hi) = self.value_range();
            (lo.abs().max(hi.abs()) as f64 * 1.1).max(1.0)
        }
    }

    /// Number of examples of each class.
    pub fn class_counts(&self) -> Vec<usize> {
        let mut counts = vec![0; self.num_classes()];
        if let Some(labels) = &self.labels {
            for &l in labels {
                counts[l as usize] += 1;
            }
        }
        counts
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chain_range_is_the_trainers_rule() {
        let points = |v: Vec<f32>| Dataset::new("p", Pixels::F32(v), vec![2], None, Vec::new()).unwrap();
        assert!((points(vec![0.5, -3.0, 2.0, 1.0]).chain_range() - 3.3).abs() < 1e-6);
        assert_eq!(points(vec![0.1, -0.2]).chain_range(), 1.0);
        let images = Dataset::new("i", Pixels::U8(vec![0, 255, 7]), vec![3, 1, 1], None, Vec::new()).unwrap();
        assert_eq!(images.chain_range(), 1.0);
    }
}
