//! Trained classifiers and what is needed to use them: a network with its architecture and
//! metadata, or the SVM; [`Model`] is either, and every front end works with it.

use crate::arch::{Architecture, TrainConfig};
use crate::ensemble::EnsembleModel;
use crate::svm::SvmModel;
use crate::train::EpochStats;
use digits_data::split::HeldOut;
use digits_data::{PIXELS, SIDE};
use digits_nn::{softmax_in_place, Network, Shape};
use serde::{Deserialize, Serialize};

/// The input every model takes: one 28x28 grey channel scaled to [0, 1], white ink on black.
pub const INPUT: Shape = Shape::new(SIDE, SIDE, 1);
/// Images per forward pass when classifying many at once.
const PREDICT_BATCH: usize = 256;

/// Everything stored next to the weights.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ModelMeta {
    pub architecture: Architecture,
    pub layers: Vec<digits_nn::LayerSpec>,
    /// How pixels are prepared: MNIST layout, 28x28, bytes / 255.
    pub preprocessing: String,
    pub training: TrainConfig,
    pub seed: u64,
    /// The training images held out for validation (files from before it was recorded all
    /// used the default); models are only ensembled when they held out the same ones.
    #[serde(default)]
    pub held_out: HeldOut,
    pub epochs_trained: usize,
    pub validation_accuracy: Option<f32>,
    /// Measured on the MNIST test set after training; never used to choose anything.
    pub test_accuracy: Option<f32>,
    /// Loss, accuracy and time of every epoch (the learning curves).
    #[serde(default)]
    pub history: Vec<EpochStats>,
    /// Softmax temperature fitted on the validation split so confidences are calibrated.
    pub temperature: f32,
    /// SHA-256 of the training images and labels the model was trained on.
    pub dataset_sha256: Vec<String>,
    #[serde(default)]
    pub lineage: Lineage,
}

/// Where a model came from: its version (1 for a model trained from scratch, one more than its
/// base's for each fine-tuning) and, for a fine-tuned one, its base and the corrections it
/// learned from. Files from before lineage was recorded read as version 1.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Lineage {
    pub version: u32,
    /// The base model: its name or file, and the SHA-256 of its weights ([`crate::file::weights_sha256`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub base: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub base_sha256: Option<String>,
    /// The feedback database's fingerprint and record count when the model was fine-tuned.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub feedback_sha256: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub feedback_records: Option<u64>,
    /// The share of the fine-tuning's change kept (the rest pulled back to the base so MNIST
    /// accuracy held).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kept: Option<f32>,
}

impl Default for Lineage {
    fn default() -> Self {
        Lineage {
            version: 1,
            base: None,
            base_sha256: None,
            feedback_sha256: None,
            feedback_records: None,
            kept: None,
        }
    }
}

impl ModelMeta {
    pub fn new(architecture: Architecture, training: TrainConfig, seed: u64) -> Self {
        ModelMeta {
            architecture,
            layers: architecture.layers(),
            preprocessing: "mnist-28x28-unit".to_string(),
            training,
            seed,
            held_out: HeldOut::default(),
            epochs_trained: 0,
            validation_accuracy: None,
            test_accuracy: None,
            history: Vec::new(),
            temperature: 1.0,
            dataset_sha256: training_set_sha256(),
            lineage: Lineage::default(),
        }
    }
}

/// SHA-256 of the MNIST training images and labels, recorded in every model trained on them.
pub(crate) fn training_set_sha256() -> Vec<String> {
    digits_data::mnist::FILES[..2]
        .iter()
        .map(|f| f.sha256.to_string())
        .collect()
}

/// Class probabilities for one image.
#[derive(Debug, Clone, PartialEq)]
pub struct Prediction {
    pub digit: u8,
    pub confidence: f32,
    pub probabilities: [f32; 10],
}

impl Prediction {
    fn from_probabilities(p: &[f32]) -> Self {
        let mut probabilities = [0f32; 10];
        probabilities.copy_from_slice(&p[..10]);
        let digit = (0..10).fold(0, |b, i| if p[i] > p[b] { i } else { b });
        Prediction {
            digit: digit as u8,
            confidence: p[digit],
            probabilities,
        }
    }
}

/// Anything that scores normalised 28x28 images over the ten digits.
pub trait Classify {
    /// Uncalibrated scores (`n x 10`) for normalised images (`n x 784` floats in [0, 1]).
    fn logits(&mut self, images: &[f32]) -> Vec<f32>;

    /// Softmax temperature fitted on validation data so confidences are calibrated.
    fn temperature(&self) -> f32;

    /// Calibrated predictions for normalised images.
    fn predict(&mut self, images: &[f32]) -> Vec<Prediction> {
        let mut p = self.logits(images);
        let t = self.temperature();
        p.iter_mut().for_each(|v| *v /= t);
        softmax_in_place(&mut p, 10);
        p.chunks_exact(10)
            .map(Prediction::from_probabilities)
            .collect()
    }

    /// Predictions for MNIST-layout byte images.
    fn predict_bytes(&mut self, images: &[u8]) -> Vec<Prediction> {
        let mut x = vec![0f32; images.len()];
        digits_data::normalize_into(images, &mut x);
        self.predict(&x)
    }
}

/// What networks compute in now, for one image and for the batches [`Classify::logits`] runs,
/// with the reason for each (`digits bench predict` prints them): "bf16", or "bf16 (one image),
/// f32 (batches)" where they differ.
pub fn precision_in_use() -> (String, [&'static str; 2]) {
    let setting = crate::precision();
    let (one, why_one) = setting.choose(1);
    let (bulk, why_bulk) = setting.choose(PREDICT_BATCH);
    let name = if one == bulk {
        one.name().to_string()
    } else {
        format!("{} (one image), {} (batches)", one.name(), bulk.name())
    };
    (name, [why_one, why_bulk])
}

/// A neural network (CNN or MLP) with its metadata.
#[derive(Debug, Clone)]
pub struct NeuralModel {
    pub meta: ModelMeta,
    pub net: Network,
}

impl NeuralModel {
    /// A freshly initialised model.
    pub fn new(architecture: Architecture, training: TrainConfig, seed: u64) -> Self {
        let meta = ModelMeta::new(architecture, training, seed);
        let net =
            Network::new(INPUT, &meta.layers, seed).expect("built-in architectures are valid");
        NeuralModel { meta, net }
    }

    pub fn architecture(&self) -> Architecture {
        self.meta.architecture
    }
}

impl Classify for NeuralModel {
    /// Raw logits, `PREDICT_BATCH` images per forward pass.
    fn logits(&mut self, images: &[f32]) -> Vec<f32> {
        let n = images.len() / PIXELS;
        let mut out = Vec::with_capacity(n * 10);
        for start in (0..n).step_by(PREDICT_BATCH) {
            let b = PREDICT_BATCH.min(n - start);
            out.extend_from_slice(
                self.net
                    .predict(&images[start * PIXELS..(start + b) * PIXELS], b),
            );
        }
        out
    }

    fn temperature(&self) -> f32 {
        self.meta.temperature
    }
}

/// Any trained digit classifier.
#[derive(Debug, Clone)]
pub enum Model {
    Neural(NeuralModel),
    Svm(SvmModel),
    Ensemble(EnsembleModel),
}

impl Model {
    /// The kind of model: `cnn`, `cnn-ref`, `mlp`, `svm` or `ensemble`.
    pub fn kind(&self) -> &'static str {
        match self {
            Model::Neural(m) => m.architecture().name(),
            Model::Svm(_) => "svm",
            Model::Ensemble(_) => "ensemble",
        }
    }

    /// Learned numbers: weights, or support-vector coordinates and coefficients plus the PCA.
    pub fn parameter_count(&self) -> usize {
        match self {
            Model::Neural(m) => m.net.parameter_count(),
            Model::Svm(m) => m.parameter_count(),
            Model::Ensemble(m) => m.parameter_count(),
        }
    }

    /// MNIST test accuracy recorded when the model was trained.
    pub fn test_accuracy(&self) -> Option<f32> {
        match self {
            Model::Neural(m) => m.meta.test_accuracy,
            Model::Svm(m) => m.meta.test_accuracy,
            Model::Ensemble(m) => m.meta.test_accuracy,
        }
    }

    /// Seconds spent training (the epochs, the SVM's whole fit, or every member's epochs),
    /// when recorded.
    pub fn training_seconds(&self) -> Option<f32> {
        fn epochs(m: &NeuralModel) -> Option<f32> {
            let h = &m.meta.history;
            (!h.is_empty()).then(|| h.iter().map(|e| e.seconds).sum())
        }
        match self {
            Model::Neural(m) => epochs(m),
            Model::Svm(m) => Some(m.meta.training_seconds),
            Model::Ensemble(m) => m.members.iter().map(epochs).sum(),
        }
    }

    /// Per-epoch learning curve (empty for the SVM, which has no epochs, and for an ensemble,
    /// whose members each have their own).
    pub fn history(&self) -> &[EpochStats] {
        match self {
            Model::Neural(m) => &m.meta.history,
            Model::Svm(_) | Model::Ensemble(_) => &[],
        }
    }

    /// The model's version and where it came from.
    pub fn lineage(&self) -> &Lineage {
        match self {
            Model::Neural(m) => &m.meta.lineage,
            Model::Svm(m) => &m.meta.lineage,
            Model::Ensemble(m) => &m.meta.lineage,
        }
    }

    pub fn set_test_accuracy(&mut self, accuracy: f32) {
        match self {
            Model::Neural(m) => m.meta.test_accuracy = Some(accuracy),
            Model::Svm(m) => m.meta.test_accuracy = Some(accuracy),
            Model::Ensemble(m) => m.meta.test_accuracy = Some(accuracy),
        }
    }
}

impl Classify for Model {
    fn logits(&mut self, images: &[f32]) -> Vec<f32> {
        match self {
            Model::Neural(m) => m.logits(images),
            Model::Svm(m) => m.logits(images),
            Model::Ensemble(m) => m.logits(images),
        }
    }

    fn temperature(&self) -> f32 {
        match self {
            Model::Neural(m) => m.temperature(),
            Model::Svm(m) => m.temperature(),
            Model::Ensemble(m) => m.temperature(),
        }
    }
}
