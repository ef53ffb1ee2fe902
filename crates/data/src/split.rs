//! The in-memory dataset and its seeded train/validation split.

use crate::{DataError, Result, PIXELS};
use digits_rng::Rng;

/// Images (`len x 784` bytes, row-major, 0 = background) with their labels.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Digits {
    pub images: Vec<u8>,
    pub labels: Vec<u8>,
}

impl Digits {
    pub fn new(images: Vec<u8>, labels: Vec<u8>) -> Self {
        assert_eq!(
            images.len(),
            labels.len() * PIXELS,
            "images and labels disagree"
        );
        Digits { images, labels }
    }

    pub fn len(&self) -> usize {
        self.labels.len()
    }

    pub fn is_empty(&self) -> bool {
        self.labels.is_empty()
    }

    pub fn image(&self, i: usize) -> &[u8] {
        &self.images[i * PIXELS..(i + 1) * PIXELS]
    }

    /// The images at `indices`, in that order.
    pub fn select(&self, indices: &[usize]) -> Digits {
        let mut images = Vec::with_capacity(indices.len() * PIXELS);
        for &i in indices {
            images.extend_from_slice(self.image(i));
        }
        Digits::new(images, indices.iter().map(|&i| self.labels[i]).collect())
    }

    /// Appends another set's images and labels.
    pub fn extend(&mut self, other: &Digits) {
        self.images.extend_from_slice(&other.images);
        self.labels.extend_from_slice(&other.labels);
    }

    /// The first `n` images (all of them when `n` is larger).
    pub fn take(&self, n: usize) -> Digits {
        let n = n.min(self.len());
        Digits::new(
            self.images[..n * PIXELS].to_vec(),
            self.labels[..n].to_vec(),
        )
    }
}

/// Scales bytes to [0, 1]: the input normalisation every model in this workspace uses.
pub fn normalize_into(pixels: &[u8], out: &mut [f32]) {
    for (o, &p) in out.iter_mut().zip(pixels) {
        *o = crate::normalize_into_pixel(p);
    }
}

/// Training and validation images drawn from the MNIST training set.
#[derive(Debug, Clone)]
pub struct Split {
    pub train: Digits,
    pub validation: Digits,
}

/// The default held-out split: `VALIDATION` training images chosen with `SEED`. The shipped
/// models were trained with it, so its images are the ones they never saw in training.
pub const VALIDATION: usize = 5000;
pub const SEED: u64 = 1;

/// Images in the full MNIST training set.
pub const TRAINING_IMAGES: usize = 60_000;

/// Which training images a model held out for validation: `images` of the first `pool`
/// training images, chosen by a shuffle seeded with `seed`. Model files record it, so models
/// that are combined can be checked to have held out the same images.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct HeldOut {
    pub seed: u64,
    pub images: usize,
    pub pool: usize,
}

impl Default for HeldOut {
    /// The split every shipped model was trained with.
    fn default() -> Self {
        HeldOut {
            seed: SEED,
            images: VALIDATION,
            pool: TRAINING_IMAGES,
        }
    }
}

impl HeldOut {
    /// Splits the MNIST training set the way this records.
    pub fn apply(&self, train: &Digits) -> Result<Split> {
        split(&train.take(self.pool), self.images, self.seed)
    }
}

/// Holds out `validation` images chosen by a seeded shuffle; the same seed gives the same split.
pub fn split(all: &Digits, validation: usize, seed: u64) -> Result<Split> {
    if validation >= all.len() {
        return Err(DataError::Invalid(format!(
            "validation split of {validation} images leaves nothing to train on ({} images)",
            all.len()
        )));
    }
    let mut order: Vec<usize> = (0..all.len()).collect();
    Rng::derive(seed, &[0x5911]).shuffle(&mut order);
    let (val, train) = order.split_at(validation);
    let mut train = train.to_vec();
    train.sort_unstable();
    let mut val = val.to_vec();
    val.sort_unstable();
    Ok(Split {
        train: all.select(&train),
        validation: all.select(&val),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn toy(n: usize) -> Digits {
        Digits::new(
            (0..n * PIXELS).map(|i| (i / PIXELS) as u8).collect(),
            (0..n).map(|i| (i % 10) as u8).collect(),
        )
    }

    #[test]
    fn split_is_seeded_disjoint_and_complete() {
        let d = toy(50);
        let a = split(&d, 10, 1).unwrap();
        let b = split(&d, 10, 1).unwrap();
        let c = split(&d, 10, 2).unwrap();
        assert_eq!(a.validation, b.validation);
        assert_ne!(a.validation, c.validation);
        assert_eq!(a.train.len(), 40);
        let mut ids: Vec<u8> = a
            .train
            .images
            .iter()
            .step_by(PIXELS)
            .chain(a.validation.images.iter().step_by(PIXELS))
            .copied()
            .collect();
        ids.sort();
        assert_eq!(ids, (0..50).collect::<Vec<u8>>());
        // Labels travel with their images.
        for i in 0..a.train.len() {
            assert_eq!(a.train.labels[i], a.train.image(i)[0] % 10);
        }
    }

    #[test]
    fn split_too_large_is_an_error() {
        assert!(split(&toy(5), 5, 0)
            .unwrap_err()
            .to_string()
            .contains("nothing to train"));
    }

    #[test]
    fn normalization_maps_to_unit_range() {
        let mut out = [0f32; 3];
        normalize_into(&[0, 255, 51], &mut out);
        assert_eq!(out[..2], [0.0, 1.0]);
        assert!((out[2] - 0.2).abs() < 1e-6);
    }
}
