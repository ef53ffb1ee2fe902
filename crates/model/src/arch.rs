//! The model families and how each is trained by default. Dense layers flatten their input
//! themselves (NHWC memory is already flat), so no Flatten layer copies activations.

use digits_data::augment::Augment;
use digits_nn::{LayerSpec, OptimizerConfig, Schedule};
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Architecture {
    /// The default: two VGG-style blocks of 3x3 convolutions with batch norm, for accuracy.
    Cnn,
    /// Exactly the peers' Keras/PyTorch tutorial model, for like-for-like timing.
    CnnRef,
    /// A two-hidden-layer perceptron.
    Mlp,
}

impl Architecture {
    pub const ALL: [Architecture; 3] = [Architecture::Cnn, Architecture::CnnRef, Architecture::Mlp];

    pub fn name(&self) -> &'static str {
        match self {
            Architecture::Cnn => "cnn",
            Architecture::CnnRef => "cnn-ref",
            Architecture::Mlp => "mlp",
        }
    }

    pub fn parse(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|a| a.name() == name)
    }

    pub fn layers(&self) -> Vec<LayerSpec> {
        let conv = |filters, padding, bias, relu| LayerSpec::Conv2d {
            filters,
            kernel: 3,
            stride: 1,
            padding,
            bias,
            relu,
        };
        let bn = || LayerSpec::BatchNorm {
            momentum: 0.1,
            eps: 1e-5,
        };
        let dense = |units, relu| LayerSpec::Dense { units, relu };
        let drop = |rate| LayerSpec::Dropout { rate };
        let pool = LayerSpec::MaxPool2d { size: 2 };
        match self {
            Architecture::Cnn => vec![
                conv(32, 1, false, false),
                bn(),
                LayerSpec::Relu,
                conv(32, 1, false, false),
                bn(),
                LayerSpec::Relu,
                pool.clone(),
                conv(64, 1, false, false),
                bn(),
                LayerSpec::Relu,
                conv(64, 1, false, false),
                bn(),
                LayerSpec::Relu,
                pool,
                dense(128, false),
                bn(),
                LayerSpec::Relu,
                drop(0.3),
                dense(10, false),
            ],
            Architecture::CnnRef => vec![
                conv(32, 0, true, true),
                conv(64, 0, true, true),
                pool,
                drop(0.25),
                dense(128, true),
                drop(0.5),
                dense(10, false),
            ],
            Architecture::Mlp => vec![
                dense(512, true),
                drop(0.2),
                dense(256, true),
                drop(0.2),
                dense(10, false),
            ],
        }
    }

    /// Training defaults, chosen on the validation split (never the test set).
    pub fn default_training(&self) -> TrainConfig {
        match self {
            Architecture::Cnn => TrainConfig {
                epochs: 15,
                batch_size: 128,
                learning_rate: 3e-3,
                optimizer: OptimizerConfig::adamw(1e-4),
                schedule: Schedule::OneCycle {
                    warmup: 0.2,
                    div: 10.0,
                    final_div: 1000.0,
                },
                label_smoothing: 0.0,
                augment: Some(Augment::default()),
                touching_negatives: 0,
            },
            // Keras' defaults for the tutorial model: Adam at 1e-3, no schedule, no augmentation.
            Architecture::CnnRef => TrainConfig {
                epochs: 1,
                batch_size: 128,
                learning_rate: 1e-3,
                optimizer: OptimizerConfig::adamw(0.0),
                schedule: Schedule::Constant,
                label_smoothing: 0.0,
                augment: None,
                touching_negatives: 0,
            },
            Architecture::Mlp => TrainConfig {
                epochs: 30,
                batch_size: 128,
                learning_rate: 2e-3,
                optimizer: OptimizerConfig::adamw(1e-4),
                schedule: Schedule::OneCycle {
                    warmup: 0.2,
                    div: 10.0,
                    final_div: 1000.0,
                },
                label_smoothing: 0.0,
                augment: Some(Augment {
                    rotation_deg: 8.0,
                    scale: 0.08,
                    shift: 1.5,
                }),
                touching_negatives: 0,
            },
        }
    }
}

impl std::fmt::Display for Architecture {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// How a network is trained; stored in model files and checkpoints.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TrainConfig {
    pub epochs: usize,
    pub batch_size: usize,
    /// Peak learning rate (the schedule scales it).
    pub learning_rate: f32,
    pub optimizer: OptimizerConfig,
    pub schedule: Schedule,
    pub label_smoothing: f32,
    pub augment: Option<Augment>,
    /// Images of two touching training digits added with the label "none" (uniform target), so
    /// the model is unsure of them and a reader of numbers cuts such blobs apart.
    #[serde(default)]
    pub touching_negatives: usize,
}
