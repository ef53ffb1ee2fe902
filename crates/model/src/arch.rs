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
    /// The `cnn` with a third block (128-128) and a wider dense layer, trained twice as long:
    /// the accuracy preset.
    CnnLarge,
    /// Ten 3x3 convolutions without padding or pooling, 16 to 88 filters, each with batch
    /// norm, the map shrinking from 28x28 to 8x8 (An et al.'s M3 at half its width): a second
    /// family that errs on other images than the pooled networks, for ensembles.
    CnnNopool,
    /// Exactly the peers' Keras/PyTorch tutorial model, for like-for-like timing.
    CnnRef,
    /// Three narrow conv blocks (16-32-64) with batch norm: trains to 99.2% in seconds.
    CnnSmall,
    /// `cnn-small`'s blocks with a dense layer of 256 before the outputs, trained with
    /// augmentation: the time-to-accuracy ladder's 99.5% rung, about a minute on two cores.
    CnnMinute,
    /// A two-hidden-layer perceptron.
    Mlp,
}

impl Architecture {
    pub const ALL: [Architecture; 7] = [
        Architecture::Cnn,
        Architecture::CnnLarge,
        Architecture::CnnNopool,
        Architecture::CnnRef,
        Architecture::CnnSmall,
        Architecture::CnnMinute,
        Architecture::Mlp,
    ];

    pub fn name(&self) -> &'static str {
        match self {
            Architecture::Cnn => "cnn",
            Architecture::CnnLarge => "cnn-large",
            Architecture::CnnNopool => "cnn-nopool",
            Architecture::CnnRef => "cnn-ref",
            Architecture::CnnSmall => "cnn-small",
            Architecture::CnnMinute => "cnn-minute",
            Architecture::Mlp => "mlp",
        }
    }

    pub fn parse(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|a| a.name() == name)
    }

    /// Every network's name, for messages that list the choices.
    pub fn names() -> String {
        Self::ALL.map(|a| a.name()).join(", ")
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
        let dense = |units, relu| LayerSpec::Dense { units, relu };
        let drop = |rate| LayerSpec::Dropout { rate };
        let pool = || LayerSpec::MaxPool2d { size: 2 };
        match self {
            Architecture::Cnn => vgg_blocks(&[32, 64], 128),
            Architecture::CnnLarge => vgg_blocks(&[32, 64, 128], 256),
            Architecture::CnnNopool => unpooled(&[16, 24, 32, 40, 48, 56, 64, 72, 80, 88]),
            Architecture::CnnRef => vec![
                conv(32, 0, true, true),
                conv(64, 0, true, true),
                pool(),
                drop(0.25),
                dense(128, true),
                drop(0.5),
                dense(10, false),
            ],
            Architecture::CnnSmall => pooled_blocks(&[16, 32, 64], 10),
            Architecture::CnnMinute => conv_pooled(&[16, 32, 64]).chain(dense_head(256)).collect(),
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
            Architecture::Cnn => one_cycle(15, 3e-3, 1000.0, Some(Augment::default())),
            // 30 epochs: validation 99.74% (loss 0.0108), against 99.66% (0.0116) with the
            // elastic and stroke-width augmentation of [`Architecture::bent_training`].
            Architecture::CnnLarge => one_cycle(30, 3e-3, 1000.0, Some(Augment::default())),
            // `cnn-large`'s recipe: 30 epochs, validation 99.54% (loss 0.0148) alone, and it
            // lowers the record ensemble's validation loss (BENCHMARKS.md).
            Architecture::CnnNopool => one_cycle(30, 3e-3, 1000.0, Some(Augment::default())),
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
                distillation: None,
            },
            // Two epochs: validation accuracy 99.18%, against 99.14% after three (BENCHMARKS.md).
            Architecture::CnnSmall => one_cycle(2, 1e-2, 100.0, None),
            // Seven epochs: validation 99.44-99.58% over five seeds (mean 99.52%), against
            // `cnn-small`'s 99.34-99.50% with the same augmentation (BENCHMARKS.md).
            Architecture::CnnMinute => one_cycle(7, 1e-2, 100.0, Some(Augment::default())),
            Architecture::Mlp => one_cycle(
                30,
                2e-3,
                1000.0,
                Some(Augment {
                    rotation_deg: 8.0,
                    scale: 0.08,
                    shift: 1.5,
                    ..Augment::default()
                }),
            ),
        }
    }
}

impl Architecture {
    /// The default training with elastic warps and strokes made thinner or thicker added to
    /// the augmentation: networks that err elsewhere than the default's, for ensembles.
    pub fn bent_training(&self) -> TrainConfig {
        let mut config = self.default_training();
        config.augment = Some(Augment {
            elastic: 1.5,
            stroke: 0.6,
            ..config.augment.unwrap_or_default()
        });
        config
    }
}

/// Two [`LayerSpec::norm_block`]s and a 2x2 max pool for each of `filters`, then a
/// [`dense_head`] of `units`.
fn vgg_blocks(filters: &[usize], units: usize) -> Vec<LayerSpec> {
    filters
        .iter()
        .flat_map(|&f| {
            [LayerSpec::norm_block(f), LayerSpec::norm_block(f)]
                .into_iter()
                .flatten()
                .chain([LayerSpec::MaxPool2d { size: 2 }])
        })
        .chain(dense_head(units))
        .collect()
}

/// An [`LayerSpec::unpadded_norm_block`] for each of `filters`, then the ten outputs: every
/// layer sees the whole map, where a pool would keep only its strongest parts.
fn unpooled(filters: &[usize]) -> Vec<LayerSpec> {
    filters
        .iter()
        .flat_map(|&f| LayerSpec::unpadded_norm_block(f))
        .chain([LayerSpec::Dense {
            units: 10,
            relu: false,
        }])
        .collect()
}

/// A dense layer of `units` with batch norm, ReLU and dropout 0.3, then the ten outputs.
fn dense_head(units: usize) -> [LayerSpec; 5] {
    [
        LayerSpec::Dense { units, relu: false },
        LayerSpec::BatchNorm {
            momentum: 0.1,
            eps: 1e-5,
        },
        LayerSpec::Relu,
        LayerSpec::Dropout { rate: 0.3 },
        LayerSpec::Dense {
            units: 10,
            relu: false,
        },
    ]
}

/// A [`LayerSpec::norm_block`] and a 2x2 max pool for each of `filters`.
fn conv_pooled(filters: &[usize]) -> impl Iterator<Item = LayerSpec> + '_ {
    filters.iter().flat_map(|&f| {
        LayerSpec::norm_block(f)
            .into_iter()
            .chain([LayerSpec::MaxPool2d { size: 2 }])
    })
}

/// [`conv_pooled`] blocks, then a dense layer of `outputs`: a small network that is quick to
/// train.
pub fn pooled_blocks(filters: &[usize], outputs: usize) -> Vec<LayerSpec> {
    conv_pooled(filters)
        .chain([LayerSpec::Dense {
            units: outputs,
            relu: false,
        }])
        .collect()
}

/// Our usual recipe: AdamW (weight decay 1e-4) on batches of 128, the learning rate rising to
/// its peak over the first 20% of the steps and annealing to `peak / final_div`.
fn one_cycle(epochs: usize, peak: f32, final_div: f32, augment: Option<Augment>) -> TrainConfig {
    TrainConfig {
        epochs,
        batch_size: 128,
        learning_rate: peak,
        optimizer: OptimizerConfig::adamw(1e-4),
        schedule: Schedule::OneCycle {
            warmup: 0.2,
            div: 10.0,
            final_div,
        },
        label_smoothing: 0.0,
        augment,
        touching_negatives: 0,
        distillation: None,
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
    /// Learn from a trained model's probabilities as well as from the labels.
    #[serde(default)]
    pub distillation: Option<Distillation>,
}

/// A teacher whose probabilities on each augmented training image are mixed into the target:
/// a student learns which digits the teacher finds alike, not only which one is right.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Distillation {
    /// The teacher as it was named: a shipped model's name or a file's path (resuming loads
    /// it again from there).
    pub teacher: String,
    /// Share of the target that is the teacher's (the rest is the label's), 0 to 1.
    pub weight: f32,
}

impl Distillation {
    /// Half the target from the teacher, half from the label.
    pub const DEFAULT_WEIGHT: f32 = 0.5;
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::NeuralModel;

    #[test]
    fn every_architecture_is_found_by_its_name_and_builds() {
        let weights = |a: Architecture| {
            NeuralModel::new(a, a.default_training(), 1)
                .net
                .parameter_count()
        };
        for a in Architecture::ALL {
            assert_eq!(Architecture::parse(a.name()), Some(a));
            assert!(weights(a) > 0, "{a}");
        }
        // `cnn-minute` is `cnn-small` (whose ten outputs take 5,770 weights) with a dense
        // layer of 256 and its batch norm in between.
        assert_eq!(weights(Architecture::CnnSmall), 29_178);
        assert_eq!(
            weights(Architecture::CnnMinute),
            29_178 - 5_770 + (576 * 256 + 256) + 2 * 256 + (256 * 10 + 10)
        );
        // Ten unpadded 3x3 convolutions (no bias) with batch norm take the map from 28x28
        // to 8x8, which the outputs read whole.
        let filters = [1, 16, 24, 32, 40, 48, 56, 64, 72, 80, 88];
        let convolutions: usize = filters.windows(2).map(|w| 9 * w[0] * w[1] + 2 * w[1]).sum();
        assert_eq!(
            weights(Architecture::CnnNopool),
            convolutions + 8 * 8 * 88 * 10 + 10
        );
    }
}
