//! `digits train --finetune`: a trained network continues learning from its users'
//! corrections, mixed with MNIST training images so it does not forget MNIST. A part of the
//! corrections is held out to measure the gain on; the MNIST validation split (the one the base
//! model held out) measures the loss, and a model that lost more than the allowed margin there
//! is not written. Deterministic for a given seed; checkpoints every epoch and resumes.

use crate::eval::{evaluate, fit_temperature, Evaluation};
use crate::file::{self, ModelError};
use crate::model::{Lineage, Model, NeuralModel};
use crate::recipe::test_and_save;
use crate::train::{Observer, Progress, Trainer};
use digits_data::{Digits, Mnist};
use digits_nn::{Optimizer, Schedule};
use digits_rng::Rng;
use std::path::{Path, PathBuf};

/// The corrections to learn from and what identifies them.
#[derive(Debug, Clone)]
pub struct Corrections {
    /// Normalised 28x28 images (MNIST layout) and the labels users gave.
    pub digits: Digits,
    /// The feedback database's fingerprint (see `digits_feedback::Fingerprint`).
    pub sha256: String,
}

/// How to fine-tune; `Default` is what `digits train --finetune` does without flags, chosen on
/// the MNIST validation split's loss and accuracy and the held-out corrections (BENCHMARKS.md).
#[derive(Debug, Clone, PartialEq)]
pub struct FinetuneRequest {
    pub epochs: usize,
    /// Peak learning rate of the one-cycle schedule: a fraction of a fresh run's, so the
    /// network moves towards the new writers without unlearning.
    pub learning_rate: f32,
    /// Share of the corrections held out to measure on.
    pub holdout: f32,
    /// MNIST training images mixed into each epoch, per correction trained on.
    pub mnist_per_correction: usize,
    /// Times each correction is shown per epoch.
    pub repeats: usize,
    /// Largest fall of MNIST validation accuracy, in percentage points, a written model may have.
    pub max_mnist_drop: f32,
    /// Largest relative rise of the MNIST validation loss (cross-entropy) a blend may have to be
    /// preferred to a less adapted one: the loss shows forgetting that 5,000 images' accuracy
    /// cannot resolve.
    pub max_mnist_loss_rise: f32,
    pub seed: u64,
    /// Continue from `OUT.ckpt`.
    pub resume: bool,
}

impl Default for FinetuneRequest {
    fn default() -> Self {
        FinetuneRequest {
            epochs: 2,
            learning_rate: 3e-4,
            holdout: 0.2,
            mnist_per_correction: 128,
            repeats: 6,
            max_mnist_drop: 0.1,
            max_mnist_loss_rise: 0.1,
            seed: 1,
            resume: false,
        }
    }
}

/// Accuracy on the held-out corrections and on the MNIST validation split.
#[derive(Debug, Clone)]
pub struct Scores {
    pub corrections: Evaluation,
    pub mnist_validation: Evaluation,
}

/// What a fine-tuning run found, and the model when it was good enough to write.
pub struct Finetuned {
    pub before: Scores,
    pub after: Scores,
    pub held_out: usize,
    pub trained_on: usize,
    /// The share of the fine-tuning's change to the weights that was kept.
    pub kept: f32,
    /// The written model and its MNIST test figure; `None` when it was refused.
    pub written: Option<(Model, Evaluation)>,
    /// Why the model was not written.
    pub refused: Option<String>,
}

/// Shares of the fine-tuning's change tried, most adapted first.
const BLENDS: &[f32] = &[1.0, 0.8, 0.65, 0.5, 0.4, 0.3, 0.2];

/// `model = base + share * (model - base)`, every parameter and running statistic.
fn blend_towards(model: &mut NeuralModel, base: &NeuralModel, share: f32) {
    for (p, b) in model.net.params_mut().zip(base.net.params()) {
        for (v, &bv) in p.value.iter_mut().zip(&b.value) {
            *v = bv + share * (*v - bv);
        }
    }
}

/// The fewest corrections worth fine-tuning on (some to train on, some to measure).
pub const MIN_CORRECTIONS: usize = 10;

impl FinetuneRequest {
    /// Fine-tunes `base` (named `base_name` in the lineage) on `corrections` and, when MNIST
    /// validation accuracy held, measures it on the test set and saves it to `out`.
    pub fn run(
        &self,
        base: &Model,
        base_name: &str,
        corrections: &Corrections,
        data: &Mnist,
        out: &Path,
        observer: &mut dyn Observer,
    ) -> Result<Finetuned, ModelError> {
        let Model::Neural(network) = base else {
            return Err(ModelError::Unsupported(format!(
                "{base_name} is a {} model; only a network (cnn, cnn-ref, mlp, ...) can be fine-tuned",
                base.kind()
            )));
        };
        if corrections.digits.len() < MIN_CORRECTIONS {
            return Err(ModelError::Unsupported(format!(
                "the feedback database holds {} corrections; fine-tuning needs at least {MIN_CORRECTIONS}",
                corrections.digits.len()
            )));
        }
        if !(0.0..1.0).contains(&self.holdout) || self.epochs == 0 || self.repeats == 0 {
            return Err(ModelError::Unsupported(
                "the held-out share must be in 0..1 and epochs and repeats at least 1".into(),
            ));
        }
        let split = network.meta.held_out.apply(&data.train)?;
        let (train_corr, test_corr) = self.split_corrections(&corrections.digits);
        let mut base_copy = network.clone();
        let before = Scores {
            corrections: evaluate(&mut base_copy, &test_corr),
            mnist_validation: evaluate(&mut base_copy, &split.validation),
        };
        let lineage = Lineage {
            version: network.meta.lineage.version + 1,
            base: Some(base_name.to_string()),
            base_sha256: Some(file::weights_sha256(base)),
            feedback_sha256: Some(corrections.sha256.clone()),
            feedback_records: Some(corrections.digits.len() as u64),
            kept: None,
        };
        let ckpt = PathBuf::from(format!("{}.ckpt", out.display()));
        let mut trainer = if self.resume && ckpt.exists() {
            let t = Trainer::resume(&ckpt)?;
            if t.model.meta.lineage != lineage {
                return Err(ModelError::Invalid {
                    path: ckpt,
                    problem: "it was fine-tuned from another base model or other corrections; \
                              delete it or run without --resume"
                        .into(),
                });
            }
            observer.note(&format!(
                "resuming {} after epoch {}",
                ckpt.display(),
                t.progress.epochs_done
            ));
            t
        } else {
            let mut model = network.clone();
            model.meta.training.epochs = self.epochs;
            model.meta.training.learning_rate = self.learning_rate;
            model.meta.training.schedule = Schedule::OneCycle {
                warmup: 0.2,
                div: 10.0,
                final_div: 100.0,
            };
            model.meta.training.touching_negatives = 0;
            model.meta.training.distillation = None;
            model.meta.seed = self.seed;
            model.meta.history.clear();
            model.meta.epochs_trained = 0;
            model.meta.test_accuracy = None;
            model.meta.lineage = lineage;
            let optimizer = Optimizer::new(model.meta.training.optimizer);
            Trainer::from_parts(model, optimizer, Progress::default())
        };
        let mut mix = split.clone();
        mix.train = self.training_mix(&train_corr, &split.train);
        observer.note(&format!(
            "fine-tuning {base_name} on {} corrections (each shown {} times an epoch) and {} MNIST \
             training images; {} corrections held out",
            train_corr.len(),
            self.repeats,
            mix.train.len() - train_corr.len() * self.repeats,
            test_corr.len()
        ));
        trainer.run(&mix, observer, Some(&ckpt), None)?;
        let trained = trainer.model;
        // The fine-tuned weights are pulled back towards the base until MNIST validation
        // accuracy and loss hold (weight-space interpolation, as in WiSE-FT): the most adapted
        // blend within both margins, else the least adapted; chosen on validation images only.
        let loss_limit = before.mnist_validation.loss * (1.0 + self.max_mnist_loss_rise);
        let mut chosen = None;
        for &share in BLENDS {
            let mut blend = trained.clone();
            blend_towards(&mut blend, network, share);
            blend.meta.temperature = fit_temperature(&mut blend, &split.validation);
            let mnist = evaluate(&mut blend, &split.validation);
            let drop = (before.mnist_validation.accuracy - mnist.accuracy) * 100.0;
            observer.note(&format!(
                "{:.0}% of the fine-tuning kept: MNIST validation {:.2}% ({drop:+.2} points \
                 down), loss {:.4} (base {:.4})",
                share * 100.0,
                100.0 * mnist.accuracy,
                mnist.loss,
                before.mnist_validation.loss
            ));
            let holds = drop <= self.max_mnist_drop && mnist.loss <= loss_limit;
            let last = share == BLENDS[BLENDS.len() - 1];
            if holds || last {
                chosen = Some((blend, mnist, drop, share));
                break;
            }
        }
        let (mut tuned, mnist, drop, share) = chosen.expect("BLENDS is not empty");
        tuned.meta.lineage.kept = Some(share);
        let after = Scores {
            corrections: evaluate(&mut tuned, &test_corr),
            mnist_validation: mnist,
        };
        let mut result = Finetuned {
            before,
            after,
            held_out: test_corr.len(),
            trained_on: train_corr.len(),
            kept: share,
            written: None,
            refused: None,
        };
        if drop > self.max_mnist_drop {
            result.refused = Some(format!(
                "MNIST validation accuracy fell by {drop:.2} points even with only {:.0}% of the \
                 fine-tuning kept (the limit is {:.2}; --max-mnist-drop); {} was not written",
                share * 100.0,
                self.max_mnist_drop,
                out.display()
            ));
        } else {
            result.written = Some(test_and_save(Model::Neural(tuned), &data.test, out)?);
        }
        let _ = std::fs::remove_file(&ckpt);
        Ok(result)
    }

    /// Holds out a seeded share of the corrections (at least one) to measure on.
    fn split_corrections(&self, all: &Digits) -> (Digits, Digits) {
        let mut order: Vec<usize> = (0..all.len()).collect();
        Rng::derive(self.seed, &[0xfeed]).shuffle(&mut order);
        let held = ((all.len() as f32 * self.holdout).round() as usize).clamp(1, all.len() - 1);
        let (test, train) = order.split_at(held);
        let (mut test, mut train) = (test.to_vec(), train.to_vec());
        test.sort_unstable();
        train.sort_unstable();
        (all.select(&train), all.select(&test))
    }

    /// The corrections, `repeats` times over, and a seeded sample of MNIST training images.
    fn training_mix(&self, corrections: &Digits, mnist: &Digits) -> Digits {
        let mut mix = Digits::new(Vec::new(), Vec::new());
        for _ in 0..self.repeats {
            mix.extend(corrections);
        }
        let wanted = (corrections.len() * self.mnist_per_correction).min(mnist.len());
        let mut order: Vec<usize> = (0..mnist.len()).collect();
        Rng::derive(self.seed, &[0x3157]).shuffle(&mut order);
        let mut chosen = order[..wanted].to_vec();
        chosen.sort_unstable();
        mix.extend(&mnist.select(&chosen));
        mix
    }
}

/// A writer the shipped models were not trained for: every digit turned by `degrees`, drawn
/// from the training images the base models trained on (never the validation or test ones).
/// Returns `count` corrections to learn from and `held_out` images of the same writer, from
/// other digits, to measure on.
pub fn tilted_writer(
    data: &Mnist,
    degrees: f32,
    count: usize,
    held_out: usize,
    seed: u64,
) -> Result<(Digits, Digits), ModelError> {
    let train = digits_data::split::HeldOut::default()
        .apply(&data.train)?
        .train;
    if count + held_out > train.len() {
        return Err(ModelError::Unsupported(format!(
            "{} images asked for; there are {} training digits",
            count + held_out,
            train.len()
        )));
    }
    let mut order: Vec<usize> = (0..train.len()).collect();
    Rng::derive(seed, &[0x7117]).shuffle(&mut order);
    let turned = |idx: &[usize]| {
        let images = idx
            .iter()
            .flat_map(|&i| digits_data::augment::tilt(train.image(i), degrees))
            .collect();
        Digits::new(images, idx.iter().map(|&i| train.labels[i]).collect())
    };
    Ok((
        turned(&order[..count]),
        turned(&order[count..count + held_out]),
    ))
}

/// The lineage's short form for people: `v2 (from cnn, 300 corrections)`.
pub fn describe(lineage: &Lineage) -> String {
    match (&lineage.base, lineage.feedback_records) {
        (Some(base), Some(n)) => format!("v{} (from {base}, {n} corrections)", lineage.version),
        (Some(base), None) => format!("v{} (from {base})", lineage.version),
        _ => format!("v{}", lineage.version),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn digits(n: usize) -> Digits {
        Digits::new(
            (0..n * 784).map(|i| (i / 784) as u8).collect(),
            (0..n).map(|i| (i % 10) as u8).collect(),
        )
    }

    #[test]
    fn corrections_are_split_the_same_way_for_a_seed_and_never_overlap() {
        let r = FinetuneRequest::default();
        let all = digits(50);
        let (a_train, a_test) = r.split_corrections(&all);
        let (b_train, b_test) = r.split_corrections(&all);
        assert_eq!(a_test.images, b_test.images);
        assert_eq!(a_train.len() + a_test.len(), 50);
        assert_eq!(a_test.len(), 10);
        // Image i is filled with the byte i: no image is in both parts.
        let firsts = |d: &Digits| (0..d.len()).map(|i| d.image(i)[0]).collect::<Vec<_>>();
        let train = firsts(&a_train);
        assert!(firsts(&a_test).iter().all(|v| !train.contains(v)));
        assert_eq!(b_train.len(), 40);
    }

    #[test]
    fn the_mix_repeats_corrections_and_adds_mnist_in_proportion() {
        let r = FinetuneRequest {
            repeats: 3,
            mnist_per_correction: 2,
            ..Default::default()
        };
        let mix = r.training_mix(&digits(5), &digits(100));
        assert_eq!(mix.len(), 5 * 3 + 10);
    }

    #[test]
    fn lineage_reads_as_a_person_would_say_it() {
        let mut l = Lineage::default();
        assert_eq!(describe(&l), "v1");
        l.version = 2;
        l.base = Some("cnn".into());
        l.feedback_records = Some(300);
        assert_eq!(describe(&l), "v2 (from cnn, 300 corrections)");
    }

    /// Two blob classes (left, right), `n` images.
    fn blobs(n: usize, seed: u64) -> Digits {
        let mut rng = Rng::new(seed);
        let mut images = vec![0u8; n * 784];
        let labels: Vec<u8> = (0..n).map(|i| (i % 2) as u8).collect();
        for (i, &label) in labels.iter().enumerate() {
            let x0 = if label == 0 { 4 } else { 16 };
            for y in 8..20 {
                for x in x0..x0 + 8 {
                    images[i * 784 + y * 28 + x] = (150.0 + 100.0 * rng.uniform()) as u8;
                }
            }
        }
        Digits::new(images, labels)
    }

    /// A small trained network, its data, and corrections for it.
    fn setup() -> (Model, Mnist, Corrections) {
        let data = Mnist {
            train: blobs(300, 1),
            test: blobs(60, 2),
        };
        let held_out = digits_data::split::HeldOut {
            seed: 1,
            images: 60,
            pool: 300,
        };
        let split = held_out.apply(&data.train).unwrap();
        let config = crate::TrainConfig {
            epochs: 1,
            batch_size: 32,
            ..crate::Architecture::Mlp.default_training()
        };
        let mut t = Trainer::new(crate::Architecture::Mlp, config, 1);
        t.run(&split, &mut (), None, None).unwrap();
        let mut base = t.finish(&split.validation);
        base.meta.held_out = held_out;
        let corrections = Corrections {
            digits: blobs(40, 3),
            sha256: "first".into(),
        };
        (Model::Neural(base), data, corrections)
    }

    /// Stops a run after `after` batches, as Ctrl+C or a killed process would.
    struct StopAfter(usize);

    impl Observer for StopAfter {
        fn batch(&mut self, _: usize, _: usize, _: usize, _: f32, _: f32) {
            self.0 = self.0.saturating_sub(1);
        }
        fn interrupted(&mut self) -> bool {
            self.0 == 0
        }
    }

    fn weights(path: &Path) -> Vec<f32> {
        let Model::Neural(m) = file::load(path).unwrap() else {
            panic!("a network")
        };
        m.net.params().flat_map(|p| p.value.clone()).collect()
    }

    #[test]
    fn an_interrupted_finetuning_resumes_to_the_same_model_and_only_its_own() {
        let (base, data, corrections) = setup();
        let dir = tempfile::tempdir().unwrap();
        let request = FinetuneRequest {
            epochs: 2,
            repeats: 2,
            mnist_per_correction: 2,
            max_mnist_drop: 100.0,
            max_mnist_loss_rise: 100.0,
            ..Default::default()
        };
        let straight = dir.path().join("straight.safetensors");
        let done = request
            .run(&base, "toy", &corrections, &data, &straight, &mut ())
            .unwrap();
        assert!(done.written.is_some() && done.refused.is_none());
        let lineage = done.written.unwrap().0.lineage().clone();
        assert_eq!(lineage.version, 2);
        assert_eq!(lineage.base_sha256, Some(file::weights_sha256(&base)));
        assert_eq!(lineage.feedback_sha256.as_deref(), Some("first"));

        let out = dir.path().join("resumed.safetensors");
        let ckpt = dir.path().join("resumed.safetensors.ckpt");
        // Stopped in the second epoch: the first epoch's checkpoint is kept, no model written.
        let batches_per_epoch = (32usize * 2 + 32 * 2).div_ceil(32);
        let stopped = request.run(
            &base,
            "toy",
            &corrections,
            &data,
            &out,
            &mut StopAfter(batches_per_epoch + 1),
        );
        assert!(
            matches!(stopped, Err(ModelError::Interrupted)),
            "{:?}",
            stopped.err()
        );
        assert!(ckpt.exists() && !out.exists());

        // Other corrections may not continue it.
        let other = Corrections {
            sha256: "second".into(),
            ..corrections.clone()
        };
        let resume = FinetuneRequest {
            resume: true,
            ..request.clone()
        };
        let refused = resume.run(&base, "toy", &other, &data, &out, &mut ());
        assert!(
            matches!(&refused, Err(ModelError::Invalid { problem, .. }) if problem.contains("other corrections")),
            "{:?}",
            refused.err()
        );

        resume
            .run(&base, "toy", &corrections, &data, &out, &mut ())
            .unwrap();
        assert!(
            !ckpt.exists(),
            "the checkpoint is removed once the model is written"
        );
        assert_eq!(weights(&out), weights(&straight));
    }
}
