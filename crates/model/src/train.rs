//! The training loop: seeded shuffling and augmentation, a checkpoint per epoch, exact resume.

use crate::arch::{Architecture, TrainConfig};
use crate::eval::{evaluate, fit_temperature};
use crate::file::{self, ModelError};
use crate::model::{Classify, Model, NeuralModel};
use digits_data::{Digits, Split, PIXELS};
use digits_nn::{softmax_cross_entropy, Mode, Optimizer, SoftTargets};
use digits_rng::Rng;
use rayon::prelude::*;
use serde::{Deserialize, Serialize};
use std::path::Path;
use std::time::Instant;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EpochStats {
    pub epoch: usize,
    pub train_loss: f32,
    pub train_accuracy: f32,
    pub validation_loss: f32,
    pub validation_accuracy: f32,
    pub seconds: f32,
    pub images_per_second: f32,
}

/// What a checkpoint records besides weights and optimiser state.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Progress {
    pub epochs_done: usize,
    pub history: Vec<EpochStats>,
}

/// One epoch of training: `run` of its `steps` batches of `batch` examples, drawn in a seeded
/// shuffle of `examples`.
pub(crate) struct Epoch {
    pub examples: usize,
    pub batch: usize,
    pub steps: usize,
    pub run: usize,
    pub index: usize,
    pub seed: u64,
}

/// What an epoch's training pass measured.
pub(crate) struct Pass {
    /// The observer asked to stop before the epoch's last batch.
    pub interrupted: bool,
    loss: f32,
    accuracy: f32,
    seconds: f32,
    images_per_second: f32,
}

impl Epoch {
    /// Trains on each batch with `step(s, indices)`, which returns the batch's mean loss and
    /// right answers, reporting every batch to `observer`.
    pub fn train(
        &self,
        observer: &mut dyn Observer,
        mut step: impl FnMut(usize, &[usize]) -> (f32, usize),
    ) -> Pass {
        let mut order: Vec<usize> = (0..self.examples).collect();
        Rng::derive(self.seed, &[3, self.index as u64]).shuffle(&mut order);
        let start = Instant::now();
        let (mut loss_sum, mut correct, mut seen) = (0f64, 0usize, 0usize);
        let mut interrupted = false;
        for s in 0..self.run {
            let idx = &order[s * self.batch..((s + 1) * self.batch).min(self.examples)];
            let (loss, ok) = step(s, idx);
            loss_sum += loss as f64 * idx.len() as f64;
            correct += ok;
            seen += idx.len();
            let rate = seen as f32 / start.elapsed().as_secs_f32();
            observer.batch(self.index, s + 1, self.steps, loss, rate);
            if observer.interrupted() {
                interrupted = true;
                break;
            }
        }
        let seconds = start.elapsed().as_secs_f32();
        Pass {
            interrupted,
            loss: (loss_sum / seen.max(1) as f64) as f32,
            accuracy: correct as f32 / seen.max(1) as f32,
            seconds,
            images_per_second: seen as f32 / seconds.max(1e-9),
        }
    }
}

impl Pass {
    /// The epoch's record, with its scores on the validation set.
    pub fn stats(
        &self,
        epoch: usize,
        validation_loss: f32,
        validation_accuracy: f32,
    ) -> EpochStats {
        EpochStats {
            epoch: epoch + 1,
            train_loss: self.loss,
            train_accuracy: self.accuracy,
            validation_loss,
            validation_accuracy,
            seconds: self.seconds,
            images_per_second: self.images_per_second,
        }
    }
}

/// Receives progress; the CLI draws bars from it, the Python package a progress bar, tests
/// ignore it. It can also stop a run (Ctrl+C in Python): training ends after the current batch
/// with [`ModelError::Interrupted`], keeping the last epoch's checkpoint.
pub trait Observer: Send {
    fn batch(
        &mut self,
        _epoch: usize,
        _done: usize,
        _total: usize,
        _loss: f32,
        _images_per_second: f32,
    ) {
    }
    fn epoch(&mut self, _stats: &EpochStats) {}
    /// A line worth showing the person who started the run (what is trained, on how much).
    fn note(&mut self, _line: &str) {}
    /// One of the SVM's pairwise machines finished.
    fn machine(&mut self, _done: usize, _total: usize, _stats: &crate::svm::PairStats) {}
    /// Whether the run should stop now; asked after every batch.
    fn interrupted(&mut self) -> bool {
        false
    }
}

impl Observer for () {}

pub struct Trainer {
    pub model: NeuralModel,
    pub optimizer: Optimizer,
    pub progress: Progress,
    /// The model distilled from, when the training config names one.
    teacher: Option<Model>,
    labels: Vec<u8>,
    taught: Vec<f32>,
    dlogits: Vec<f32>,
}

impl Trainer {
    pub fn new(architecture: Architecture, config: TrainConfig, seed: u64) -> Self {
        let optimizer = Optimizer::new(config.optimizer);
        Trainer::from_parts(
            NeuralModel::new(architecture, config, seed),
            optimizer,
            Progress::default(),
        )
    }

    pub(crate) fn from_parts(model: NeuralModel, optimizer: Optimizer, progress: Progress) -> Self {
        Trainer {
            model,
            optimizer,
            progress,
            teacher: None,
            labels: Vec::new(),
            taught: Vec::new(),
            dlogits: Vec::new(),
        }
    }

    /// Continues from a checkpoint written by [`Trainer::run`].
    pub fn resume(path: &Path) -> Result<Self, ModelError> {
        let (model, optimizer, progress) = file::load_checkpoint(path)?;
        Ok(Trainer::from_parts(model, optimizer, progress))
    }

    /// The model whose probabilities the config's `distillation` mixes into the targets.
    pub fn set_teacher(&mut self, teacher: Model) {
        self.teacher = Some(teacher);
    }

    fn config(&self) -> &TrainConfig {
        &self.model.meta.training
    }

    /// Batches per epoch over `n` training images (the last partial batch is dropped so every
    /// step sees the same batch size, which keeps batch-norm statistics steady).
    pub fn steps_per_epoch(&self, n: usize) -> usize {
        (n / self.config().batch_size).max(1)
    }

    /// One optimisation step on the (augmented) images at `indices`: returns the batch's mean
    /// loss and how many of its images were classified right.
    pub fn step(
        &mut self,
        train: &Digits,
        indices: &[usize],
        epoch: usize,
        global_step: usize,
        total_steps: usize,
    ) -> (f32, usize) {
        let seed = self.model.meta.seed;
        let cfg = self.model.meta.training.clone();
        let batch = indices.len();
        let input = self.model.net.input_mut(batch);
        input
            .par_chunks_mut(PIXELS)
            .zip(indices.par_iter())
            .enumerate()
            .for_each(|(i, (dst, &idx))| {
                let src = train.image(idx);
                match &cfg.augment {
                    Some(aug) => aug.apply(
                        src,
                        dst,
                        &mut Rng::derive(seed, &[1, epoch as u64, global_step as u64, i as u64]),
                    ),
                    None => digits_data::normalize_into(src, dst),
                }
            });
        let soft = match (&mut self.teacher, &cfg.distillation) {
            (Some(teacher), Some(d)) => {
                self.taught.clear();
                self.taught
                    .extend(teacher.predict(input).iter().flat_map(|p| p.probabilities));
                Some(SoftTargets {
                    probabilities: &self.taught,
                    weight: d.weight,
                })
            }
            _ => None,
        };
        self.labels.clear();
        self.labels.extend(indices.iter().map(|&i| train.labels[i]));
        let step_seed = Rng::derive(seed, &[2, global_step as u64]).next_u64();
        let logits = self.model.net.forward(Mode::Train, step_seed);
        self.dlogits.resize(logits.len(), 0.0);
        let (loss, correct) = softmax_cross_entropy(
            logits,
            &self.labels,
            10,
            cfg.label_smoothing,
            soft,
            &mut self.dlogits,
        );
        self.model.net.backward(&self.dlogits);
        let lr = cfg
            .schedule
            .rate(cfg.learning_rate, global_step, total_steps);
        self.optimizer.step(self.model.net.params_mut(), lr);
        (loss, correct)
    }

    /// Trains until the configured number of epochs is done, checkpointing after each epoch
    /// when `checkpoint` is given. `max_batches` stops early (smoke tests, benchmarks).
    pub fn run(
        &mut self,
        split: &Split,
        observer: &mut dyn Observer,
        checkpoint: Option<&Path>,
        max_batches: Option<usize>,
    ) -> Result<(), ModelError> {
        let epochs = self.config().epochs;
        let steps = self.steps_per_epoch(split.train.len());
        let batch_size = self.config().batch_size.min(split.train.len());
        let total = epochs * steps;
        if let (Some(d), None) = (&self.config().distillation, &self.teacher) {
            return Err(ModelError::Unsupported(format!(
                "this run learns from the teacher {:?}, which was not loaded",
                d.teacher
            )));
        }
        let mut budget = max_batches.unwrap_or(usize::MAX);
        while self.progress.epochs_done < epochs && budget > 0 {
            let epoch = self.progress.epochs_done;
            let plan = Epoch {
                examples: split.train.len(),
                batch: batch_size,
                steps,
                run: steps.min(budget),
                index: epoch,
                seed: self.model.meta.seed,
            };
            let pass = plan.train(observer, |s, idx| {
                self.step(&split.train, idx, epoch, epoch * steps + s, total)
            });
            if pass.interrupted {
                return Err(ModelError::Interrupted);
            }
            budget -= plan.run;
            let val = evaluate(&mut self.model, &split.validation);
            let stats = pass.stats(epoch, val.loss, val.accuracy);
            tracing::info!(?stats, "epoch finished");
            observer.epoch(&stats);
            self.progress.history.push(stats);
            self.progress.epochs_done += 1;
            self.model.meta.epochs_trained = self.progress.epochs_done;
            self.model.meta.validation_accuracy = Some(val.accuracy);
            self.model.meta.history = self.progress.history.clone();
            if let Some(path) = checkpoint {
                file::save_checkpoint(path, &self.model, &self.optimizer, &self.progress)?;
            }
        }
        Ok(())
    }

    /// Fits the confidence temperature on the validation split and returns the model.
    pub fn finish(mut self, validation: &Digits) -> NeuralModel {
        if !validation.is_empty() {
            self.model.meta.temperature = fit_temperature(&mut self.model, validation);
        }
        self.model
    }
}

/// Trains a fresh network with `config` on `split` (no checkpoints) and calibrates it.
pub fn train_network(
    architecture: Architecture,
    config: TrainConfig,
    seed: u64,
    split: &Split,
    observer: &mut dyn Observer,
) -> Result<NeuralModel, ModelError> {
    let mut trainer = Trainer::new(architecture, config, seed);
    trainer.run(split, observer, None, None)?;
    Ok(trainer.finish(&split.validation))
}

/// Label of the negative examples: "none of the ten digits".
pub const NONE: u8 = 10;

/// `n` images of two touching digits drawn from `train`, put through the same normalisation as
/// user images and labelled [`NONE`]. Only ever built from the training split.
pub fn touching_negatives(train: &Digits, n: usize, seed: u64) -> Digits {
    use digits_vision::{synth::render_touching_pair, Limits};
    let images: Vec<u8> = (0..n)
        .into_par_iter()
        .flat_map_iter(|i| {
            let mut rng = Rng::derive(seed, &[4, i as u64]);
            let (a, b) = (rng.below(train.len()), rng.below(train.len()));
            let png = render_touching_pair(train.image(a), train.image(b), &mut rng);
            let pixels = digits_vision::decode(&png, &Limits::default())
                .and_then(|img| digits_vision::normalize_image(&img))
                .map(|n| n.pixels)
                .unwrap_or_else(|_| vec![0.0; PIXELS]);
            pixels
                .into_iter()
                .map(|v| (v * 255.0).round() as u8)
                .collect::<Vec<u8>>()
        })
        .collect();
    Digits::new(images, vec![NONE; n])
}

/// Batches per turn of [`bench_train`].
const BENCH_TURN: usize = 5;

/// What [`bench_train`] measured on one pool.
#[derive(Debug, Clone, Copy)]
pub struct TrainSpeed {
    /// Training images per second.
    pub images: f32,
    /// Rounds of a loop of arithmetic in registers per second, every thread of the pool
    /// running one at once, in the same turns as the training: the machine's own speed at
    /// the pool's thread count, with no memory traffic and nothing to wait for. On shared
    /// machines two cores do not give twice one core's speed even there (0.98-2.13x in the
    /// rounds of BENCHMARKS.md, under 1.8x in several), so the ratio of these figures tells how much of a training's
    /// shortfall from the thread count the machine took. Measured only where several pools
    /// are compared.
    pub probe: Option<f32>,
}

/// Multiply-adds on 32 independent chains in registers: a few milliseconds of one core.
fn probe_round() -> f32 {
    let (scale, step) = std::hint::black_box((0.999_999f32, 1e-6f32));
    let mut chains = [1.0f32; 32];
    for _ in 0..1 << 20 {
        for c in &mut chains {
            *c = *c * scale + step;
        }
    }
    chains.iter().sum()
}

/// Training throughput of one network on each of `pools`, over `batches` batches each after
/// two warm-up batches (nothing is evaluated or saved): the figures `digits bench train`
/// reports. With several pools the batches run in turns of five, one pool after another, so
/// that the machine's changes of speed, which on shared machines reach 10% between minutes,
/// fall on every pool alike and their ratio holds.
pub fn bench_train(
    architecture: Architecture,
    train: &Digits,
    batches: usize,
    seed: u64,
    pools: &[rayon::ThreadPool],
) -> Vec<TrainSpeed> {
    let config = architecture.default_training();
    let batch = config.batch_size;
    let mut t = Trainer::new(architecture, config, seed);
    let n = train.len();
    let (mut step, total) = (0, (batches + 2) * pools.len());
    let mut steps = |t: &mut Trainer, count: usize| {
        for _ in 0..count {
            let indices: Vec<usize> = (0..batch).map(|i| (step * batch + i) % n).collect();
            t.step(train, &indices, 0, step, total);
            step += 1;
        }
    };
    for pool in pools {
        pool.install(|| steps(&mut t, 2));
    }
    let mut seconds = vec![(0.0f32, 0.0f32); pools.len()];
    let (mut done, mut turns) = (0, 0);
    while done < batches {
        let turn = BENCH_TURN.min(batches - done);
        for (pool, (training, probe)) in pools.iter().zip(&mut seconds) {
            let start = Instant::now();
            pool.install(|| steps(&mut t, turn));
            *training += start.elapsed().as_secs_f32();
            if pools.len() > 1 {
                let start = Instant::now();
                std::hint::black_box(pool.broadcast(|_| probe_round()));
                *probe += start.elapsed().as_secs_f32();
            }
        }
        (done, turns) = (done + turn, turns + 1);
    }
    pools
        .iter()
        .zip(seconds)
        .map(|(pool, (training, probe))| TrainSpeed {
            images: (batches * batch) as f32 / training,
            probe: (pools.len() > 1).then(|| (turns * pool.current_num_threads()) as f32 / probe),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Two blob classes a network must tell apart within a few steps.
    fn toy() -> Split {
        let mut rng = Rng::new(1);
        let make = |n: usize, rng: &mut Rng| {
            let mut images = vec![0u8; n * PIXELS];
            let mut labels = vec![0u8; n];
            for i in 0..n {
                let label = (i % 2) as u8;
                labels[i] = label;
                let x0 = if label == 0 { 4 } else { 16 };
                for y in 8..20 {
                    for x in x0..x0 + 8 {
                        images[i * PIXELS + y * 28 + x] = (150.0 + 100.0 * rng.uniform()) as u8;
                    }
                }
            }
            Digits::new(images, labels)
        };
        Split {
            train: make(256, &mut rng),
            validation: make(64, &mut rng),
        }
    }

    fn config() -> TrainConfig {
        TrainConfig {
            epochs: 2,
            batch_size: 32,
            ..Architecture::Mlp.default_training()
        }
    }

    /// Stops the run after `after` batches, as Ctrl+C in Python does.
    struct StopAfter {
        after: usize,
        seen: usize,
    }

    impl Observer for StopAfter {
        fn batch(&mut self, _: usize, _: usize, _: usize, _: f32, _: f32) {
            self.seen += 1;
        }
        fn interrupted(&mut self) -> bool {
            self.seen >= self.after
        }
    }

    #[test]
    fn an_interrupted_run_stops_after_the_batch_and_keeps_the_last_checkpoint() {
        let split = toy();
        let dir = tempfile::tempdir().unwrap();
        let ckpt = dir.path().join("c.ckpt");
        let steps = 256 / 32;
        let mut t = Trainer::new(Architecture::Mlp, config(), 3);
        let mut stop = StopAfter {
            after: steps + 2,
            seen: 0,
        };
        let result = t.run(&split, &mut stop, Some(&ckpt), None);
        assert!(matches!(result, Err(ModelError::Interrupted)), "{result:?}");
        assert_eq!(stop.seen, steps + 2, "no batch after the request to stop");
        assert_eq!(t.progress.epochs_done, 1);
        let resumed = Trainer::resume(&ckpt).unwrap();
        assert_eq!(
            resumed.progress.epochs_done, 1,
            "the first epoch's checkpoint is kept"
        );
    }

    #[test]
    fn learns_a_separable_toy_problem() {
        let split = toy();
        let mut t = Trainer::new(Architecture::Mlp, config(), 1);
        t.run(&split, &mut (), None, None).unwrap();
        assert_eq!(t.progress.history.len(), 2);
        assert!(
            t.progress.history[1].validation_accuracy > 0.95,
            "{:?}",
            t.progress.history
        );
        let model = t.finish(&split.validation);
        assert!(model.meta.temperature > 0.0);
    }

    #[test]
    fn resume_continues_exactly_where_it_stopped() {
        let split = toy();
        let dir = tempfile::tempdir().unwrap();
        let ckpt = dir.path().join("c.ckpt");
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(1)
            .build()
            .unwrap();
        pool.install(|| {
            let mut straight = Trainer::new(Architecture::Mlp, config(), 9);
            straight.run(&split, &mut (), None, None).unwrap();

            let mut first = Trainer::new(Architecture::Mlp, config(), 9);
            first.run(&split, &mut (), Some(&ckpt), Some(8)).unwrap();
            assert_eq!(first.progress.epochs_done, 1);
            let mut resumed = Trainer::resume(&ckpt).unwrap();
            resumed.run(&split, &mut (), Some(&ckpt), None).unwrap();
            let losses = |p: &Progress| {
                p.history
                    .iter()
                    .map(|e| (e.train_loss, e.validation_loss))
                    .collect::<Vec<_>>()
            };
            assert_eq!(losses(&resumed.progress), losses(&straight.progress));
            let a: Vec<f32> = straight
                .model
                .net
                .params()
                .flat_map(|p| p.value.clone())
                .collect();
            let b: Vec<f32> = resumed
                .model
                .net
                .params()
                .flat_map(|p| p.value.clone())
                .collect();
            assert_eq!(a, b);
        });
    }

    #[test]
    fn a_student_at_full_weight_learns_its_teacher_not_the_labels() {
        let split = toy();
        let mut teacher = Trainer::new(Architecture::Mlp, config(), 1);
        teacher.run(&split, &mut (), None, None).unwrap();
        let teacher = Model::Neural(teacher.finish(&split.validation));
        // Every training label swapped: only the teacher knows the truth.
        let mut swapped = split.clone();
        swapped.train.labels.iter_mut().for_each(|l| *l = 1 - *l);
        let student = |weight: f32| {
            let mut config = config();
            config.distillation = Some(crate::arch::Distillation {
                teacher: "the toy teacher".into(),
                weight,
            });
            let mut t = Trainer::new(Architecture::Mlp, config, 2);
            t.set_teacher(teacher.clone());
            t.run(&swapped, &mut (), None, None).unwrap();
            t.progress.history[1].validation_accuracy
        };
        assert!(student(1.0) > 0.95, "taught: {}", student(1.0));
        assert!(student(0.0) < 0.05, "labels only: {}", student(0.0));
    }

    #[test]
    fn a_distilled_run_refuses_to_start_without_its_teacher() {
        let mut config = config();
        config.distillation = Some(crate::arch::Distillation {
            teacher: "cnn-large".into(),
            weight: 0.5,
        });
        let mut t = Trainer::new(Architecture::Mlp, config, 1);
        let e = t.run(&toy(), &mut (), None, None).unwrap_err();
        assert!(
            e.to_string()
                .contains("\"cnn-large\", which was not loaded"),
            "{e}"
        );
    }
}
