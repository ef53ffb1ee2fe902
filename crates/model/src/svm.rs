//! The SVM digit classifier: deskewed pixels, projected by PCA, into a one-vs-one RBF SVM
//! (`digits-svm`), with a softmax temperature fitted on the validation split like the networks.

use crate::eval::fit_temperature;
use crate::model::Classify;
use digits_data::{Digits, PIXELS};
pub use digits_svm::{PairStats, SvmConfig, SvmError};
use digits_svm::{Pca, Svm};
use rayon::prelude::*;
use serde::{Deserialize, Serialize};

/// Pairwise machines of the ten-digit one-vs-one SVM.
pub const MACHINES: usize = 45;

/// How the SVM is built; stored in its model file.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct SvmSettings {
    pub svm: SvmConfig,
    /// Principal components kept.
    pub components: usize,
    /// Whether digits are deskewed before projection.
    pub deskew: bool,
    /// Seed of the PCA's random start.
    pub seed: u64,
}

impl Default for SvmSettings {
    /// Chosen on the validation split (see BENCHMARKS.md), never on the test set.
    fn default() -> Self {
        SvmSettings {
            svm: SvmConfig {
                c: 10.0,
                gamma: 0.035,
                tolerance: 1e-3,
                cache_mb: 1024,
            },
            components: 50,
            deskew: true,
            seed: 1,
        }
    }
}

/// Everything stored next to the SVM's numbers.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SvmMeta {
    pub settings: SvmSettings,
    pub training_images: usize,
    /// Wall-clock seconds of the whole fit: deskew, PCA and the 45 machines.
    pub training_seconds: f32,
    pub support_vectors: usize,
    pub validation_accuracy: Option<f32>,
    /// Measured on the MNIST test set after training; never used to choose anything.
    pub test_accuracy: Option<f32>,
    pub temperature: f32,
    pub pairs: Vec<PairStats>,
    pub dataset_sha256: Vec<String>,
    #[serde(default)]
    pub lineage: crate::model::Lineage,
}

#[derive(Debug, Clone)]
pub struct SvmModel {
    pub meta: SvmMeta,
    pub pca: Pca,
    pub svm: Svm,
}

impl SvmModel {
    /// Trains on `train`, then fits the confidence temperature on `validation` (if not empty).
    /// `done` hears of each of the 45 pairwise machines as it finishes.
    pub fn train(
        train: &Digits,
        validation: &Digits,
        settings: SvmSettings,
        done: &(dyn Fn(&PairStats) + Sync),
    ) -> Result<SvmModel, SvmError> {
        let start = std::time::Instant::now();
        let pixels = features(&train.images, settings.deskew);
        if settings.components == 0 || settings.components > PIXELS {
            return Err(SvmError::Inconsistent(format!(
                "{} principal components requested; choose 1 to {PIXELS}",
                settings.components
            )));
        }
        if train.is_empty() {
            return Err(SvmError::Empty);
        }
        let pca = Pca::fit(&pixels, PIXELS, settings.components, settings.seed);
        let projected = pca.transform(&pixels);
        let (svm, pairs) = Svm::train(
            &projected,
            settings.components,
            &train.labels,
            10,
            &settings.svm,
            done,
        )?;
        let mut model = SvmModel {
            meta: SvmMeta {
                settings,
                training_images: train.len(),
                training_seconds: start.elapsed().as_secs_f32(),
                support_vectors: svm.support_vectors(),
                validation_accuracy: None,
                test_accuracy: None,
                temperature: 1.0,
                pairs,
                dataset_sha256: crate::model::training_set_sha256(),
                lineage: Default::default(),
            },
            pca,
            svm,
        };
        if !validation.is_empty() {
            model.meta.temperature = fit_temperature(&mut model, validation);
            let right = model
                .predict_bytes(&validation.images)
                .iter()
                .zip(&validation.labels)
                .filter(|(p, &l)| p.digit == l)
                .count();
            model.meta.validation_accuracy = Some(right as f32 / validation.len() as f32);
        }
        Ok(model)
    }

    pub fn parameter_count(&self) -> usize {
        self.pca.components().len()
            + self.pca.mean().len()
            + self.svm.support().len()
            + self.svm.coefficients().len()
            + self.svm.bias().len()
    }
}

impl Classify for SvmModel {
    fn logits(&mut self, images: &[f32]) -> Vec<f32> {
        let pixels = prepare(images.to_vec(), self.meta.settings.deskew);
        self.svm.class_scores(&self.pca.transform(&pixels))
    }

    fn temperature(&self) -> f32 {
        self.meta.temperature
    }
}

/// MNIST bytes to the floats the SVM's PCA sees.
fn features(images: &[u8], deskew: bool) -> Vec<f32> {
    let mut x = vec![0f32; images.len()];
    digits_data::normalize_into(images, &mut x);
    prepare(x, deskew)
}

/// Normalised 28x28 inputs as the SVM takes them: deskewed when its settings say so.
fn prepare(pixels: Vec<f32>, deskew: bool) -> Vec<f32> {
    if deskew {
        pixels
            .par_chunks(PIXELS)
            .flat_map_iter(digits_vision::deskew)
            .collect()
    } else {
        pixels
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// Digits of a toy alphabet: class `c` is a bright bar in row band `c`, plus noise.
    fn toy(per_class: usize, seed: u64) -> Digits {
        let mut rng = digits_rng::Rng::new(seed);
        let mut images = Vec::new();
        let mut labels = Vec::new();
        for i in 0..per_class * 10 {
            let c = i % 10;
            let mut img = [0u8; PIXELS];
            for (p, v) in img.iter_mut().enumerate() {
                let row = p / 28;
                let bar = row >= 2 + 2 * c && row < 4 + 2 * c && (6..22).contains(&(p % 28));
                *v = if bar {
                    200 + rng.below(56) as u8
                } else {
                    rng.below(40) as u8
                };
            }
            images.extend(img);
            labels.push(c as u8);
        }
        Digits::new(images, labels)
    }

    fn settings() -> SvmSettings {
        SvmSettings {
            components: 12,
            deskew: false,
            ..SvmSettings::default()
        }
    }

    pub(crate) fn tiny() -> SvmModel {
        SvmModel::train(&toy(12, 1), &toy(3, 2), settings(), &|_| {}).unwrap()
    }

    #[test]
    fn learns_a_toy_alphabet_with_calibrated_scores() {
        let pairs_done = std::sync::atomic::AtomicUsize::new(0);
        let mut m = SvmModel::train(&toy(12, 1), &toy(3, 2), settings(), &|_| {
            pairs_done.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        })
        .unwrap();
        assert_eq!(pairs_done.into_inner(), MACHINES);
        assert_eq!(digits_svm::pairs(10).len(), MACHINES);
        assert_eq!(m.meta.validation_accuracy, Some(1.0));
        assert!(m.meta.temperature > 0.0);
        let test = toy(5, 3);
        let predictions = m.predict_bytes(&test.images);
        assert!(predictions
            .iter()
            .zip(&test.labels)
            .all(|(p, &l)| p.digit == l));
        assert!(predictions
            .iter()
            .all(|p| (p.probabilities.iter().sum::<f32>() - 1.0).abs() < 1e-4));
    }

    #[test]
    fn impossible_settings_are_refused() {
        let bad = SvmSettings {
            components: 0,
            ..settings()
        };
        assert!(SvmModel::train(&toy(2, 1), &toy(1, 2), bad, &|_| {}).is_err());
        let empty = Digits::new(Vec::new(), Vec::new());
        assert!(SvmModel::train(&empty, &empty, settings(), &|_| {}).is_err());
    }
}
