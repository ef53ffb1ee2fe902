//! The number reader's judge of where digits begin and end: a small CNN that looks at a
//! candidate piece of a line among its neighbours ([`digits_vision::context_view`]) and gives
//! the probability that the piece is exactly one whole digit, not a fragment of one nor two
//! run together.
//!
//! Why a judge of its own: the digit classifier is confident about fragments (half an open 0
//! reads as a sure 1) and about touching pairs, so its confidence alone cannot settle how to cut
//! a line; a 28x28 crop of the piece alone cannot show either, since normalisation scales every
//! piece to the same size. The judge is taught on lines of *training* digits whose every pixel's
//! digit is known, with exactly the pieces the reader weighs ([`digits_vision::lattice`]).

use crate::arch::pooled_blocks;
use crate::file::ModelError;
use crate::model::training_set_sha256;
use crate::train::{Epoch, EpochStats, Observer};
use digits_data::split::HeldOut;
use digits_data::Digits;
use digits_nn::{
    softmax_cross_entropy, softmax_in_place, LayerSpec, Mode, Network, Optimizer, OptimizerConfig,
    Schedule, Shape,
};
use digits_rng::Rng;
use digits_vision::synth::render_training_line;
use digits_vision::{context_view, decode, lattice, InkMap, Limits, VIEW_CHANNELS, VIEW_H, VIEW_W};
use rayon::prelude::*;
use serde::{Deserialize, Serialize};

/// The judge's input: a piece in its line, two channels (the piece's ink, its neighbours').
pub const JUDGE_INPUT: Shape = Shape::new(VIEW_H, VIEW_W, VIEW_CHANNELS);
const VIEW_LEN: usize = VIEW_H * VIEW_W * VIEW_CHANNELS;
/// A piece holding at least this share of one digit's ink, and at most [`STRAY`] of any
/// other's, is that digit, whole.
const WHOLE: f32 = 0.9;
const STRAY: f32 = 0.1;
/// A piece holding less than this share of every digit's ink, or more than [`MIXED`] of a
/// second digit's, is not one whole digit. Pieces in between (the best straight cut between
/// overlapping digits) are neither clearly right nor clearly wrong, and are left out.
const PART: f32 = 0.75;
const MIXED: f32 = 0.25;
/// Digits on each line the judge learns from (drawn uniformly).
const LINE_DIGITS: std::ops::RangeInclusive<usize> = 1..=6;

/// How a judge is trained; stored in its file.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct JudgeTraining {
    /// Synthetic lines of training digits the examples are cut from.
    pub lines: usize,
    pub epochs: usize,
    pub batch_size: usize,
    pub learning_rate: f32,
    pub optimizer: OptimizerConfig,
    pub schedule: Schedule,
}

impl Default for JudgeTraining {
    fn default() -> Self {
        JudgeTraining {
            lines: 40_000,
            epochs: 4,
            batch_size: 128,
            learning_rate: 3e-3,
            optimizer: OptimizerConfig::adamw(1e-4),
            schedule: Schedule::OneCycle {
                warmup: 0.2,
                div: 10.0,
                final_div: 100.0,
            },
        }
    }
}

/// Everything stored next to the judge's weights.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct JudgeMeta {
    pub layers: Vec<LayerSpec>,
    pub training: JudgeTraining,
    pub seed: u64,
    /// The training images held out: the judge's validation lines are made from them.
    pub held_out: HeldOut,
    /// Loss and accuracy of every epoch on the validation lines' pieces.
    pub history: Vec<EpochStats>,
    /// SHA-256 of the training images and labels.
    pub dataset_sha256: Vec<String>,
}

#[derive(Debug, Clone)]
pub struct Judge {
    pub meta: JudgeMeta,
    pub net: Network,
}

/// Three conv blocks (16-32-64) with batch norm and pooling, then two outputs (not whole,
/// whole): `cnn-small`'s layers.
pub fn judge_layers() -> Vec<LayerSpec> {
    pooled_blocks(&[16, 32, 64], 2)
}

impl Judge {
    pub fn new(training: JudgeTraining, seed: u64) -> Self {
        let meta = JudgeMeta {
            layers: judge_layers(),
            training,
            seed,
            held_out: HeldOut::default(),
            history: Vec::new(),
            dataset_sha256: training_set_sha256(),
        };
        let net =
            Network::new(JUDGE_INPUT, &meta.layers, seed).expect("the judge's layers are valid");
        Judge { meta, net }
    }

    /// The probability that each view (`n x VIEW_LEN` values, from `context_view`) shows one
    /// whole digit.
    pub fn whole(&mut self, views: &[f32]) -> Vec<f32> {
        let n = views.len() / VIEW_LEN;
        if n == 0 {
            return Vec::new();
        }
        let mut p = self.net.predict(views, n).to_vec();
        softmax_in_place(&mut p, 2);
        p.chunks_exact(2).map(|c| c[1]).collect()
    }
}

/// Views of pieces of synthetic lines, each labelled whole digit (1) or not (0).
#[derive(Debug, Clone, Default)]
pub struct Examples {
    /// `len x VIEW_LEN` bytes (0..255 for ink 0..1).
    pub views: Vec<u8>,
    pub labels: Vec<u8>,
}

impl Examples {
    pub fn len(&self) -> usize {
        self.labels.len()
    }

    pub fn is_empty(&self) -> bool {
        self.labels.is_empty()
    }

    /// Share of the examples that are whole digits.
    pub fn whole_share(&self) -> f32 {
        self.labels.iter().filter(|&&l| l == 1).count() as f32 / self.len().max(1) as f32
    }
}

/// Cuts `lines` synthetic lines of `digits` into the pieces the reader weighs and labels each
/// by which digits' ink it holds. Only ever fed with training digits.
pub fn examples(digits: &Digits, lines: usize, seed: u64) -> Examples {
    let per_line: Vec<(Vec<u8>, Vec<u8>)> = (0..lines)
        .into_par_iter()
        .map(|i| {
            let mut rng = Rng::derive(seed, &[5, i as u64]);
            let len = rng.below(LINE_DIGITS.end() - LINE_DIGITS.start() + 1) + LINE_DIGITS.start();
            let images: Vec<&[u8]> = (0..len)
                .map(|_| digits.image(rng.below(digits.len())))
                .collect();
            let line = render_training_line(&images, &mut rng);
            let Ok(ink) =
                decode(&line.bytes, &Limits::default()).and_then(|i| InkMap::from_rgba(&i))
            else {
                return (Vec::new(), Vec::new());
            };
            let lattice = lattice(&ink);
            let truth = line.truth(&ink);
            let mut views = Vec::new();
            let mut labels = Vec::new();
            let mut seen = Vec::new();
            for piece in lattice.steps.iter().flat_map(|s| &s.pieces) {
                if seen.contains(&piece) {
                    continue;
                }
                seen.push(piece);
                let (main, stray) = truth.attribution(piece);
                let label = if main >= WHOLE && stray <= STRAY {
                    1
                } else if main < PART || stray > MIXED {
                    0
                } else {
                    continue;
                };
                labels.push(label);
                views.extend(
                    context_view(&ink, piece, &lattice.line)
                        .into_iter()
                        .map(|v| (v * 255.0).round() as u8),
                );
            }
            (views, labels)
        })
        .collect();
    let mut all = Examples::default();
    for (views, labels) in per_line {
        all.views.extend(views);
        all.labels.extend(labels);
    }
    all
}

/// Mean loss and accuracy of the judge on `set`.
fn score(judge: &mut Judge, set: &Examples) -> (f32, f32) {
    let mut loss = 0f64;
    let mut correct = 0usize;
    let mut input = Vec::new();
    let mut grad = Vec::new();
    for (views, labels) in set.views.chunks(256 * VIEW_LEN).zip(set.labels.chunks(256)) {
        input.clear();
        input.extend(views.iter().map(|&v| v as f32 / 255.0));
        let logits = judge.net.predict(&input, labels.len());
        grad.resize(logits.len(), 0.0);
        let (l, ok) = softmax_cross_entropy(logits, labels, 2, 0.0, None, &mut grad);
        loss += l as f64 * labels.len() as f64;
        correct += ok;
    }
    let n = set.len().max(1);
    ((loss / n as f64) as f32, correct as f32 / n as f32)
}

/// Trains a judge on `train`'s examples, scoring every epoch on `validation`'s.
pub fn train_judge(
    train: &Examples,
    validation: &Examples,
    training: JudgeTraining,
    seed: u64,
    observer: &mut dyn Observer,
) -> Result<Judge, ModelError> {
    let mut judge = Judge::new(training.clone(), seed);
    let mut optimizer = Optimizer::new(training.optimizer);
    let batch = training.batch_size.min(train.len()).max(1);
    let steps = (train.len() / batch).max(1);
    let total = training.epochs * steps;
    let mut labels = Vec::with_capacity(batch);
    let mut dlogits = Vec::new();
    for epoch in 0..training.epochs {
        let plan = Epoch {
            examples: train.len(),
            batch,
            steps,
            run: steps,
            index: epoch,
            seed,
        };
        let pass = plan.train(observer, |s, idx| {
            let input = judge.net.input_mut(idx.len());
            input
                .par_chunks_mut(VIEW_LEN)
                .zip(idx.par_iter())
                .for_each(|(dst, &i)| {
                    let src = &train.views[i * VIEW_LEN..(i + 1) * VIEW_LEN];
                    dst.iter_mut()
                        .zip(src)
                        .for_each(|(d, &v)| *d = v as f32 / 255.0);
                });
            labels.clear();
            labels.extend(idx.iter().map(|&i| train.labels[i]));
            let step = epoch * steps + s;
            let logits = judge
                .net
                .forward(Mode::Train, Rng::derive(seed, &[2, step as u64]).next_u64());
            dlogits.resize(logits.len(), 0.0);
            let (loss, ok) = softmax_cross_entropy(logits, &labels, 2, 0.0, None, &mut dlogits);
            judge.net.backward(&dlogits);
            let lr = training.schedule.rate(training.learning_rate, step, total);
            optimizer.step(judge.net.params_mut(), lr);
            (loss, ok)
        });
        if pass.interrupted {
            return Err(ModelError::Interrupted);
        }
        let (validation_loss, validation_accuracy) = score(&mut judge, validation);
        let stats = pass.stats(epoch, validation_loss, validation_accuracy);
        observer.epoch(&stats);
        judge.meta.history.push(stats);
    }
    Ok(judge)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Digits drawn as plain strokes, so the tests need no MNIST files: a bar (a 1), a ring
    /// (a 0) and a 7.
    fn strokes() -> Digits {
        let mut images = vec![0u8; 3 * 784];
        for y in 4..24 {
            images[y * 28 + 14] = 255;
            images[y * 28 + 15] = 255;
        }
        let ring = &mut images[784..1568];
        for t in 0..360 {
            let a = (t as f32).to_radians();
            let (x, y) = (14.0 + 6.0 * a.cos(), 14.0 + 9.0 * a.sin());
            ring[y as usize * 28 + x as usize] = 255;
        }
        let seven = &mut images[1568..];
        for x in 7..21 {
            seven[5 * 28 + x] = 255;
        }
        for y in 5..24 {
            seven[y * 28 + 20 - (y - 5) / 2] = 255;
        }
        Digits::new(images, vec![1, 0, 7])
    }

    #[test]
    fn examples_label_whole_digits_and_wrong_pieces() {
        let set = examples(&strokes(), 60, 1);
        assert_eq!(set.views.len(), set.len() * VIEW_LEN);
        let whole = set.whole_share();
        assert!(
            set.len() > 100 && whole > 0.05 && whole < 0.9,
            "{} {whole}",
            set.len()
        );
        assert_eq!(examples(&strokes(), 60, 1).labels, set.labels, "seeded");
    }

    #[test]
    fn a_judge_learns_to_tell_whole_digits_from_pieces() {
        let (train, validation) = (examples(&strokes(), 150, 1), examples(&strokes(), 50, 2));
        let training = JudgeTraining {
            lines: 150,
            epochs: 2,
            ..JudgeTraining::default()
        };
        let mut judge = train_judge(&train, &validation, training, 1, &mut ()).unwrap();
        let last = judge.meta.history.last().unwrap().clone();
        assert!(last.validation_accuracy > 0.9, "{last:?}");
        // Its probabilities agree with the accuracy it reports.
        let views: Vec<f32> = validation.views.iter().map(|&v| v as f32 / 255.0).collect();
        let p = judge.whole(&views);
        let right = p
            .iter()
            .zip(&validation.labels)
            .filter(|(p, &l)| (**p > 0.5) == (l == 1))
            .count();
        assert_eq!(
            right as f32 / validation.len() as f32,
            last.validation_accuracy
        );
    }
}
