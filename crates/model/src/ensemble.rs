//! Several networks read each image and agree: the ensemble's scores are the mean of the
//! members' calibrated logits, so its probabilities are the normalised geometric mean of theirs.
//! Independent training runs make different mistakes, so the mean makes fewer of them.
//! Optionally each member also reads copies of the image moved by one pixel (test-time
//! augmentation), which the members saw in training as shift augmentation.

use crate::eval::{evaluate, fit_temperature};
use crate::file::ModelError;
use crate::model::{Classify, NeuralModel};
use digits_data::{Digits, PIXELS, SIDE};
use serde::{Deserialize, Serialize};

/// What the ensemble knows beyond its members' own metadata.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EnsembleMeta {
    /// Softmax temperature of the combined scores, fitted on the members' shared validation split.
    pub temperature: f32,
    pub validation_accuracy: Option<f32>,
    /// Mean cross-entropy on the validation split, a finer measure than its accuracy.
    #[serde(default)]
    pub validation_loss: Option<f32>,
    /// Measured on the MNIST test set; never used to choose anything.
    pub test_accuracy: Option<f32>,
    /// Also read every image moved one pixel left, right, up and down (five times the work).
    #[serde(default)]
    pub shifted_views: bool,
    #[serde(default)]
    pub lineage: crate::model::Lineage,
}

/// The one-pixel moves read besides the image itself when `shifted_views` is on.
pub(crate) const SHIFTS: [(isize, isize); 4] = [(-1, 0), (1, 0), (0, -1), (0, 1)];

/// `images` (n x 784) followed by each of them moved by each of `SHIFTS`, blank where the move
/// uncovers the border.
fn with_shifted_views(images: &[f32]) -> Vec<f32> {
    let mut out = Vec::with_capacity(images.len() * (1 + SHIFTS.len()));
    out.extend_from_slice(images);
    for (dx, dy) in SHIFTS {
        for image in images.chunks_exact(PIXELS) {
            for y in 0..SIDE as isize {
                for x in 0..SIDE as isize {
                    let (sx, sy) = (x - dx, y - dy);
                    let inside =
                        (0..SIDE as isize).contains(&sx) && (0..SIDE as isize).contains(&sy);
                    out.push(if inside {
                        image[sy as usize * SIDE + sx as usize]
                    } else {
                        0.0
                    });
                }
            }
        }
    }
    out
}

#[derive(Debug, Clone)]
pub struct EnsembleModel {
    pub meta: EnsembleMeta,
    pub members: Vec<NeuralModel>,
}

impl EnsembleModel {
    /// Uncalibrated (temperature 1) and unmeasured.
    pub fn new(members: Vec<NeuralModel>, shifted_views: bool) -> Self {
        EnsembleModel {
            meta: EnsembleMeta {
                temperature: 1.0,
                validation_accuracy: None,
                validation_loss: None,
                test_accuracy: None,
                shifted_views,
                lineage: Default::default(),
            },
            members,
        }
    }

    /// Combines trained networks that were validated on the same held-out images, calibrates
    /// the combination on `validation` (those images), and keeps the shifted views only when
    /// they lower the validation loss.
    pub fn combine(members: Vec<NeuralModel>, validation: &Digits) -> Result<Self, ModelError> {
        let refuse = |why: String| Err(ModelError::Ensemble(why));
        if members.len() < 2 {
            return refuse(format!(
                "it needs at least two networks, got {}",
                members.len()
            ));
        }
        let first = &members[0].meta;
        for (i, m) in members.iter().enumerate().skip(1) {
            let (a, b) = (first, &m.meta);
            if a.held_out != b.held_out {
                return refuse(format!(
                    "member {} held out other validation images than member 1 ({:?} vs {:?}); \
                     train every member with the same --split-seed, --validation and --limit",
                    i + 1,
                    b.held_out,
                    a.held_out
                ));
            }
            if a.dataset_sha256 != b.dataset_sha256 {
                return refuse(format!(
                    "member {} was trained on different data from member 1",
                    i + 1
                ));
            }
        }
        if validation.len() != first.held_out.images {
            return refuse(format!(
                "the validation set has {} images, the members held out {}",
                validation.len(),
                first.held_out.images
            ));
        }
        let calibrated = |shifted_views: bool| {
            let mut ensemble = EnsembleModel::new(members.clone(), shifted_views);
            ensemble.meta.temperature = fit_temperature(&mut ensemble, validation);
            let e = evaluate(&mut ensemble, validation);
            ensemble.meta.validation_accuracy = Some(e.accuracy);
            ensemble.meta.validation_loss = Some(e.loss);
            (e.loss, ensemble)
        };
        let (plain, shifted) = (calibrated(false), calibrated(true));
        Ok(if shifted.0 < plain.0 {
            shifted.1
        } else {
            plain.1
        })
    }

    pub fn parameter_count(&self) -> usize {
        self.members.iter().map(|m| m.net.parameter_count()).sum()
    }
}

impl Classify for EnsembleModel {
    /// The mean of the members' logits (over every view), each divided by its member's
    /// temperature. Softmax ignores a constant per row, so this equals averaging the members'
    /// log-probabilities.
    fn logits(&mut self, images: &[f32]) -> Vec<f32> {
        let n = images.len() / PIXELS;
        if n == 0 {
            return Vec::new();
        }
        let shifted;
        let views = if self.meta.shifted_views {
            shifted = with_shifted_views(images);
            &shifted[..]
        } else {
            images
        };
        let mut mean = vec![0f32; n * 10];
        let weight = 1.0 / (views.len() / images.len() * self.members.len()) as f32;
        for m in &mut self.members {
            let scale = weight / m.temperature();
            for view in m.logits(views).chunks_exact(n * 10) {
                mean.iter_mut().zip(view).for_each(|(s, v)| *s += v * scale);
            }
        }
        mean
    }

    fn temperature(&self) -> f32 {
        self.meta.temperature
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Architecture;
    use digits_data::PIXELS;

    fn network(seed: u64) -> NeuralModel {
        let a = Architecture::Mlp;
        NeuralModel::new(a, a.default_training(), seed)
    }

    fn digits(n: usize) -> Digits {
        Digits::new(
            (0..n * PIXELS).map(|i| (i * 37 % 251) as u8).collect(),
            (0..n).map(|i| (i % 10) as u8).collect(),
        )
    }

    #[test]
    fn scores_are_the_mean_of_the_members_calibrated_logits() {
        let (mut a, mut b) = (network(1), network(2));
        a.meta.temperature = 2.0;
        b.meta.temperature = 0.5;
        let x: Vec<f32> = (0..3 * PIXELS).map(|i| (i % 7) as f32 / 7.0).collect();
        let (la, lb) = (a.logits(&x), b.logits(&x));
        let mut e = EnsembleModel::new(vec![a, b], false);
        let l = e.logits(&x);
        assert_eq!(l.len(), 30);
        for i in 0..30 {
            let want = (la[i] / 2.0 + lb[i] / 0.5) / 2.0;
            assert!((l[i] - want).abs() < 1e-5, "{i}: {} vs {want}", l[i]);
        }
    }

    #[test]
    fn shifted_views_move_the_ink_one_pixel_and_are_averaged() {
        let mut image = vec![0f32; PIXELS];
        image[5 * SIDE + 7] = 1.0; // row 5, column 7
        image[27 * SIDE] = 0.5; // bottom-left corner: falls off when moved left or down
        let views = with_shifted_views(&image);
        assert_eq!(views.len(), 5 * PIXELS);
        let ink = |v: &[f32]| -> Vec<(usize, usize)> {
            (0..PIXELS)
                .filter(|&i| v[i] == 1.0)
                .map(|i| (i / SIDE, i % SIDE))
                .collect()
        };
        let moved: Vec<_> = views.chunks_exact(PIXELS).map(ink).collect();
        assert_eq!(moved, [[(5, 7)], [(5, 6)], [(5, 8)], [(4, 7)], [(6, 7)]]);
        let corner: Vec<f32> = views.chunks_exact(PIXELS).map(|v| v.iter().sum()).collect();
        assert_eq!(corner, [1.5, 1.0, 1.5, 1.5, 1.0]);

        let mut a = network(1);
        let x: Vec<f32> = (0..2 * PIXELS).map(|i| (i % 5) as f32 / 5.0).collect();
        let per_view = a.logits(&with_shifted_views(&x));
        let mut e = EnsembleModel::new(vec![a.clone(), a], true);
        let l = e.logits(&x);
        for i in 0..20 {
            let want: f32 = (0..5).map(|v| per_view[v * 20 + i]).sum::<f32>() / 5.0;
            assert!((l[i] - want).abs() < 1e-5, "{i}: {} vs {want}", l[i]);
        }
        assert!(e.logits(&[]).is_empty());
    }

    #[test]
    fn members_must_share_their_validation_split() {
        let validation = digits(digits_data::split::VALIDATION);
        let e = EnsembleModel::combine(vec![network(1)], &validation).unwrap_err();
        assert!(e.to_string().contains("at least two"), "{e}");

        let mut other = network(2);
        other.meta.held_out.seed = 9;
        let e = EnsembleModel::combine(vec![network(1), other], &validation).unwrap_err();
        assert!(e.to_string().contains("--split-seed"), "{e}");

        let e = EnsembleModel::combine(vec![network(1), network(2)], &digits(10)).unwrap_err();
        assert!(e.to_string().contains("10 images"), "{e}");

        let e = EnsembleModel::combine(vec![network(1), network(2)], &validation).unwrap();
        assert!(e.meta.temperature > 0.0 && e.meta.validation_loss.is_some());
    }
}
