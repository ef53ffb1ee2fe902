//! What `digits train` (and `digits.train()` in Python) does: the validation split, resuming
//! from checkpoints, the ensemble presets (`best`, `record`), the SVM and the judge, then the
//! test figure and an atomic save. Front ends pick the request and show the observer's
//! progress; every one of them runs this same code.

use crate::arch::{Architecture, Distillation, TrainConfig};
use crate::ensemble::EnsembleModel;
use crate::eval::{evaluate, Evaluation};
use crate::file::{self, ModelError};
use crate::judge::{self, JudgeTraining};
use crate::model::{Model, NeuralModel};
use crate::shipped;
use crate::svm::{SvmModel, SvmSettings, MACHINES};
use crate::train::{touching_negatives, Observer, Trainer};
use digits_data::split::HeldOut;
use digits_data::{DataDir, Digits, Mnist};
use std::path::{Path, PathBuf};
use std::sync::Mutex;

/// What a training run builds.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Recipe {
    Network(Architecture),
    Svm(SvmSettings),
    /// Networks, each with its own seed (and for `record`, augmentation and architecture),
    /// trained one after another and combined into an ensemble.
    Ensemble(Preset),
    /// The number reader's judge of where digits begin and end (written as a judge file).
    Judge,
}

/// The ensembles `digits train --preset` builds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Preset {
    /// Three `cnn`s: the shipped `ensemble`.
    Best,
    /// Five `cnn-large`s and a `cnn-nopool`: the accuracy frontier, at hours of training on
    /// two cores. Members 1, 3 and 5 train as `cnn-large` does (seeds SEED, SEED+1, SEED+2),
    /// members 2 and 4 with elastic and stroke-width augmentation added (seeds SEED, SEED+1),
    /// member 6 as `cnn-nopool` does (seed SEED), so that they err on different images.
    Record,
}

impl Preset {
    pub const ALL: [Preset; 2] = [Preset::Best, Preset::Record];

    /// The record's members that are `cnn-large`s, first; the rest are `cnn-nopool`s.
    const RECORD_LARGE: u64 = 5;

    pub fn name(&self) -> &'static str {
        match self {
            Preset::Best => "best",
            Preset::Record => "record",
        }
    }

    /// What it builds, and the default file name: `ensemble` or `ensemble-large`.
    pub fn model_name(&self) -> &'static str {
        match self {
            Preset::Best => "ensemble",
            Preset::Record => "ensemble-large",
        }
    }

    /// Member `k`'s (from 1) network.
    pub fn member(&self, k: u64) -> Architecture {
        match self {
            Preset::Best => Architecture::Cnn,
            Preset::Record if k <= Self::RECORD_LARGE => Architecture::CnnLarge,
            Preset::Record => Architecture::CnnNopool,
        }
    }

    pub fn members(&self) -> u64 {
        match self {
            Preset::Best => 3,
            Preset::Record => 6,
        }
    }

    /// How member `k` (from 1) trains: its seed, `seed` being the run's, and its recipe.
    pub fn member_training(&self, k: u64, seed: u64) -> (u64, TrainConfig) {
        let a = self.member(k);
        match self {
            Preset::Best => (seed + k - 1, a.default_training()),
            Preset::Record if k > Self::RECORD_LARGE => {
                (seed + k - Self::RECORD_LARGE - 1, a.default_training())
            }
            Preset::Record if k.is_multiple_of(2) => (seed + k / 2 - 1, a.bent_training()),
            Preset::Record => (seed + k / 2, a.default_training()),
        }
    }
}

impl Recipe {
    /// A network's name, `svm` (default settings), `judge`, or a preset's name (`best`,
    /// `record`) or what it builds (`ensemble`, `ensemble-large`).
    pub fn parse(name: &str) -> Option<Recipe> {
        let preset = Preset::ALL
            .into_iter()
            .find(|p| p.name() == name || p.model_name() == name);
        match name {
            "svm" => Some(Recipe::Svm(SvmSettings::default())),
            "judge" => Some(Recipe::Judge),
            _ => preset
                .map(Recipe::Ensemble)
                .or_else(|| Architecture::parse(name).map(Recipe::Network)),
        }
    }

    /// The name of what it builds (`ensemble` for the `best` preset).
    pub fn name(&self) -> &'static str {
        match self {
            Recipe::Network(a) => a.name(),
            Recipe::Svm(_) => "svm",
            Recipe::Ensemble(p) => p.model_name(),
            Recipe::Judge => "judge",
        }
    }

    /// Epochs each network of the recipe trains for, given the request's override (0 for
    /// the SVM, which has none).
    pub fn epochs(&self, requested: Option<usize>) -> usize {
        let network = match self {
            Recipe::Network(a) => *a,
            // Every member of a preset trains for as many epochs by default.
            Recipe::Ensemble(p) => p.member(1),
            Recipe::Judge => {
                return requested.unwrap_or_else(|| JudgeTraining::default().epochs);
            }
            Recipe::Svm(_) => return 0,
        };
        requested.unwrap_or_else(|| network.default_training().epochs)
    }
}

/// How to run a recipe; `Default` is what `digits train` does without flags.
#[derive(Debug, Clone, PartialEq)]
pub struct TrainRequest {
    pub recipe: Recipe,
    /// Epochs (default: the architecture's own).
    pub epochs: Option<usize>,
    /// Initialisation, shuffling, augmentation and dropout.
    pub seed: u64,
    /// Chooses the validation images; models ensembled must share it.
    pub split_seed: u64,
    /// Training images held out for validation.
    pub validation: usize,
    /// Train on only the first N training images (plus the validation ones).
    pub limit: Option<usize>,
    /// Continue from `OUT.ckpt` (and reuse finished ensemble members).
    pub resume: bool,
    /// Images of two touching digits labelled "none" added to a network's training.
    pub touching_negatives: Option<usize>,
    /// A network learns from this model's probabilities too (a shipped name or a file): see
    /// [`crate::arch::Distillation`].
    pub teacher: Option<String>,
    /// The teacher's share of each target.
    pub teacher_weight: f32,
    /// Judge: synthetic lines of training digits to learn from.
    pub judge_lines: usize,
    /// Stop after this many batches (smoke tests).
    pub max_batches: Option<usize>,
}

impl Default for TrainRequest {
    fn default() -> Self {
        TrainRequest {
            recipe: Recipe::Network(Architecture::Cnn),
            epochs: None,
            seed: digits_data::split::SEED,
            split_seed: digits_data::split::SEED,
            validation: digits_data::split::VALIDATION,
            limit: None,
            resume: false,
            touching_negatives: None,
            teacher: None,
            teacher_weight: Distillation::DEFAULT_WEIGHT,
            judge_lines: JudgeTraining::default().lines,
            max_batches: None,
        }
    }
}

/// The teacher a distilled run names, checked to have held out the same validation images as
/// the student (else it would have learned the images the student is measured on). An
/// ensemble teaches without its shifted views: the augmented images already move the digit,
/// and five readings per image would cost five times the time.
fn load_teacher(d: &Distillation, student: &HeldOut) -> Result<Model, ModelError> {
    if !(0.0..=1.0).contains(&d.weight) {
        return Err(ModelError::Unsupported(format!(
            "the teacher's weight must be between 0 and 1, not {}",
            d.weight
        )));
    }
    let mut teacher = shipped::resolve(&d.teacher)?;
    let held_out = match &mut teacher {
        Model::Neural(m) => m.meta.held_out,
        Model::Ensemble(e) => {
            e.meta.shifted_views = false;
            e.members[0].meta.held_out
        }
        Model::Svm(_) => {
            return Err(ModelError::Unsupported(format!(
                "{} is an SVM, whose file does not record its validation images; teach with \
                 a network or an ensemble",
                d.teacher
            )))
        }
    };
    if held_out != *student {
        return Err(ModelError::Unsupported(format!(
            "the teacher {} held out other validation images ({held_out:?}) than this run \
             ({student:?}); train with its --split-seed, --validation and --limit",
            d.teacher
        )));
    }
    Ok(teacher)
}

/// What a run produced: the model (none for the judge, which is a file of its own kind) and
/// its score on the test set, recorded in the file.
pub struct Trained {
    pub model: Option<Model>,
    pub test: Option<Evaluation>,
    pub seconds: f32,
}

impl TrainRequest {
    /// Where the model goes when the front end names no file: `runs/NAME.safetensors`.
    pub fn default_out(&self) -> PathBuf {
        PathBuf::from(format!("runs/{}.safetensors", self.recipe.name()))
    }

    /// The training images this request draws on (after `limit`).
    fn pool(&self, train: &Digits) -> Digits {
        match self.limit {
            Some(n) => train.take(n + self.validation),
            None => train.clone(),
        }
    }

    fn held_out(&self, all: &Digits) -> HeldOut {
        HeldOut {
            seed: self.split_seed,
            images: self.validation,
            pool: all.len(),
        }
    }

    /// Trains, measures on `data.test` and saves to `out` (members and checkpoints beside it).
    pub fn run(
        &self,
        data: &Mnist,
        out: &Path,
        observer: &mut dyn Observer,
    ) -> Result<Trained, ModelError> {
        let start = std::time::Instant::now();
        self.check_teacher()?;
        let all = self.pool(&data.train);
        let model = match self.recipe {
            Recipe::Judge => {
                self.train_judge(&all, out, observer)?;
                return Ok(Trained {
                    model: None,
                    test: None,
                    seconds: start.elapsed().as_secs_f32(),
                });
            }
            Recipe::Ensemble(preset) => {
                Model::Ensemble(self.train_members(preset, &all, out, observer)?)
            }
            Recipe::Network(architecture) => Model::Neural(self.train_network(
                architecture,
                (self.seed, architecture.default_training()),
                &all,
                Some(out),
                observer,
            )?),
            Recipe::Svm(settings) => Model::Svm(self.train_svm(settings, &all, observer)?),
        };
        let seconds = start.elapsed().as_secs_f32();
        let (model, test) = test_and_save(model, &data.test, out)?;
        Ok(Trained {
            model: Some(model),
            test: Some(test),
            seconds,
        })
    }

    /// Trains a network or the SVM on `all` (any 28x28 digits with labels 0..9, such as a
    /// scikit-learn estimator's data) without files: the request's validation images calibrate
    /// its confidence.
    pub fn fit(&self, all: &Digits, observer: &mut dyn Observer) -> Result<Model, ModelError> {
        self.check_teacher()?;
        match self.recipe {
            Recipe::Network(architecture) => Ok(Model::Neural(self.train_network(
                architecture,
                (self.seed, architecture.default_training()),
                all,
                None,
                observer,
            )?)),
            Recipe::Svm(settings) => Ok(Model::Svm(self.train_svm(settings, all, observer)?)),
            Recipe::Ensemble(_) | Recipe::Judge => Err(ModelError::Unsupported(format!(
                "{} is trained on MNIST with `run`, not fitted to arrays",
                self.recipe.name()
            ))),
        }
    }

    /// Only networks (and ensembles of them) learn from a teacher.
    fn check_teacher(&self) -> Result<(), ModelError> {
        match (&self.teacher, self.recipe) {
            (Some(_), Recipe::Svm(_) | Recipe::Judge) => Err(ModelError::Unsupported(format!(
                "the {} does not learn from a teacher; only networks do",
                self.recipe.name()
            ))),
            _ => Ok(()),
        }
    }

    /// One network, resumed from `OUT.ckpt` when asked and present; checkpoints every epoch.
    fn train_network(
        &self,
        architecture: Architecture,
        (seed, mut config): (u64, TrainConfig),
        all: &Digits,
        out: Option<&Path>,
        observer: &mut dyn Observer,
    ) -> Result<NeuralModel, ModelError> {
        let ckpt = out.map(|out| PathBuf::from(format!("{}.ckpt", out.display())));
        let resumable = ckpt.as_ref().filter(|c| self.resume && c.exists());
        let mut trainer = if let Some(ckpt) = resumable {
            let t = Trainer::resume(ckpt)?;
            if t.model.architecture() != architecture {
                return Err(ModelError::Invalid {
                    path: ckpt.clone(),
                    problem: format!(
                        "holds a {} checkpoint, not {architecture}",
                        t.model.architecture()
                    ),
                });
            }
            observer.note(&format!(
                "resuming {} after epoch {}",
                ckpt.display(),
                t.progress.epochs_done
            ));
            t
        } else {
            if let Some(e) = self.epochs {
                config.epochs = e;
            }
            if let Some(n) = self.touching_negatives {
                config.touching_negatives = n;
            }
            if let Some(teacher) = &self.teacher {
                config.distillation = Some(Distillation {
                    teacher: teacher.clone(),
                    weight: self.teacher_weight,
                });
            }
            let mut t = Trainer::new(architecture, config, seed);
            t.model.meta.held_out = self.held_out(all);
            t
        };
        if let Some(e) = self.epochs {
            trainer.model.meta.training.epochs = e;
        }
        if let Some(d) = trainer.model.meta.training.distillation.clone() {
            trainer.set_teacher(load_teacher(&d, &trainer.model.meta.held_out)?);
            observer.note(&format!(
                "learning from {} ({:.0}% of each target) as well as the labels",
                d.teacher,
                d.weight * 100.0
            ));
        }
        let mut split = self.held_out(all).apply(all)?;
        let negatives = trainer.model.meta.training.touching_negatives;
        if negatives > 0 {
            split.train.extend(&touching_negatives(
                &split.train,
                negatives,
                trainer.model.meta.seed,
            ));
            observer.note(&format!(
                "added {negatives} images of touching digit pairs labelled 'none'"
            ));
        }
        observer.note(&format!(
            "training {architecture} ({} parameters) on {} images, validating on {}, {} threads",
            trainer.model.net.parameter_count(),
            split.train.len(),
            split.validation.len(),
            rayon::current_num_threads()
        ));
        trainer.run(&split, observer, ckpt.as_deref(), self.max_batches)?;
        Ok(trainer.finish(&split.validation))
    }

    /// An ensemble preset: trains (or with `resume` reuses) each member, saving it beside
    /// `out` as it finishes, then combines them.
    fn train_members(
        &self,
        preset: Preset,
        all: &Digits,
        out: &Path,
        observer: &mut dyn Observer,
    ) -> Result<EnsembleModel, ModelError> {
        let mut members = Vec::new();
        let count = preset.members();
        for k in 1..=count {
            let path = out.with_extension(format!("member{k}.safetensors"));
            let member = if self.resume && path.exists() {
                observer.note(&format!(
                    "reusing member {k} of {count}: {}",
                    path.display()
                ));
                network_file(&path.to_string_lossy())?
            } else {
                observer.note(&format!("member {k} of {count}:"));
                let m = self.train_network(
                    preset.member(k),
                    preset.member_training(k, self.seed),
                    all,
                    Some(&path),
                    observer,
                )?;
                file::save(&Model::Neural(m.clone()), &path)?;
                m
            };
            members.push(member);
        }
        let split = self.held_out(all).apply(all)?;
        combine(members, &split.validation, observer)
    }

    fn train_svm(
        &self,
        mut settings: SvmSettings,
        all: &Digits,
        observer: &mut dyn Observer,
    ) -> Result<SvmModel, ModelError> {
        settings.seed = self.seed;
        let split = self.held_out(all).apply(all)?;
        observer.note(&format!(
            "training svm (C {}, gamma {}, {} principal components, deskew {}) on {} images, validating on {}, {} threads",
            settings.svm.c,
            settings.svm.gamma,
            settings.components,
            if settings.deskew { "on" } else { "off" },
            split.train.len(),
            split.validation.len(),
            rayon::current_num_threads()
        ));
        let model = train_svm_on(&split.train, &split.validation, settings, observer)?;
        observer.note(&format!(
            "{} support vectors; validation accuracy {}",
            model.meta.support_vectors,
            model
                .meta
                .validation_accuracy
                .map_or("-".to_string(), |a| format!("{:.2}%", 100.0 * a))
        ));
        Ok(model)
    }

    /// Trains the number reader's judge on lines of training digits, scoring it on lines of
    /// the held-out ones, and saves it to `out`.
    fn train_judge(
        &self,
        all: &Digits,
        out: &Path,
        observer: &mut dyn Observer,
    ) -> Result<(), ModelError> {
        let start = std::time::Instant::now();
        let split = self.held_out(all).apply(all)?;
        let mut training = JudgeTraining {
            lines: self.judge_lines,
            ..JudgeTraining::default()
        };
        if let Some(e) = self.epochs {
            training.epochs = e;
        }
        let train = judge::examples(&split.train, training.lines, self.seed);
        let validation = judge::examples(&split.validation, training.lines / 10, self.seed + 1);
        observer.note(&format!(
            "training judge on {} pieces of {} lines ({:.0}% whole digits), validating on {} pieces; {:.0}s to cut them",
            train.len(),
            training.lines,
            100.0 * train.whole_share(),
            validation.len(),
            start.elapsed().as_secs_f32()
        ));
        let mut judge = judge::train_judge(&train, &validation, training, self.seed, observer)?;
        judge.meta.held_out = self.held_out(all);
        file::save_judge(&judge, out)
    }
}

/// Trains the SVM, telling `observer` of each pairwise machine as it finishes (they train in
/// parallel, so the reports pass through a lock).
pub fn train_svm_on(
    train: &Digits,
    validation: &Digits,
    settings: SvmSettings,
    observer: &mut dyn Observer,
) -> Result<SvmModel, ModelError> {
    let done = Mutex::new((0usize, observer));
    let model = SvmModel::train(train, validation, settings, &|s| {
        let mut guard = done.lock().unwrap_or_else(|e| e.into_inner());
        guard.0 += 1;
        let n = guard.0;
        guard.1.machine(n, MACHINES, s);
    })?;
    Ok(model)
}

/// Records the model's test accuracy (reported, never used to choose) and saves it atomically.
pub fn test_and_save(
    mut model: Model,
    test: &Digits,
    out: &Path,
) -> Result<(Model, Evaluation), ModelError> {
    let e = evaluate(&mut model, test);
    model.set_test_accuracy(e.accuracy);
    file::save(&model, out)?;
    Ok((model, e))
}

/// A network model named by file or shipped name (an ensemble is built from networks only).
pub fn network_file(spec: &str) -> Result<NeuralModel, ModelError> {
    match shipped::resolve(spec)? {
        Model::Neural(m) => Ok(m),
        other => Err(ModelError::Ensemble(format!(
            "{spec} is not a network but an {} model; only networks ({}) can be ensembled",
            other.kind(),
            Architecture::names()
        ))),
    }
}

/// Combines networks and calibrates them on their validation split, saying how the ensemble
/// reads and scores there.
pub fn combine(
    members: Vec<NeuralModel>,
    validation: &Digits,
    observer: &mut dyn Observer,
) -> Result<EnsembleModel, ModelError> {
    let model = EnsembleModel::combine(members, validation)?;
    observer.note(&format!(
        "{} members{}; validation accuracy {:.2}%, loss {:.4}",
        model.members.len(),
        if model.meta.shifted_views {
            ", each also reading the image moved one pixel four ways"
        } else {
            ""
        },
        100.0 * model.meta.validation_accuracy.unwrap_or(0.0),
        model.meta.validation_loss.unwrap_or(0.0)
    ));
    Ok(model)
}

/// `digits ensemble`: combines trained networks (files or shipped names) that held out the same
/// validation images, measures the ensemble on the test set unless `test` is None (for
/// comparing combinations on validation without reading the test set), and saves it.
pub fn ensemble_files(
    specs: &[String],
    train: &Digits,
    test: Option<&Digits>,
    out: &Path,
    observer: &mut dyn Observer,
) -> Result<(Model, Option<Evaluation>), ModelError> {
    let members = specs
        .iter()
        .map(|spec| network_file(spec))
        .collect::<Result<Vec<_>, _>>()?;
    let Some(first) = members.first() else {
        return Err(ModelError::Ensemble("no networks given".into()));
    };
    let split = first.meta.held_out.apply(train)?;
    let model = Model::Ensemble(combine(members, &split.validation, observer)?);
    match test {
        Some(test) => test_and_save(model, test, out).map(|(m, e)| (m, Some(e))),
        None => {
            file::save(&model, out)?;
            Ok((model, None))
        }
    }
}

/// Which MNIST digits an evaluation reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DigitSource {
    /// For reported figures.
    Test,
    /// The 5,000 training images `train` holds out by default, as the shipped models did: for
    /// choices, without touching the test set.
    Validation,
}

impl DigitSource {
    pub fn parse(name: &str) -> Option<DigitSource> {
        match name {
            "test" => Some(DigitSource::Test),
            "validation" => Some(DigitSource::Validation),
            _ => None,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            DigitSource::Test => "test",
            DigitSource::Validation => "validation",
        }
    }

    /// Loads (and verifies) only the MNIST files these digits come from.
    pub fn load(self, dir: &DataDir) -> Result<Digits, ModelError> {
        Ok(match self {
            DigitSource::Test => dir.load_test()?,
            DigitSource::Validation => HeldOut::default().apply(&dir.load_train()?)?.validation,
        })
    }
}

/// An evaluation as `digits eval --json` and Python's `evaluate` give it: the scores, with the
/// model's name, the digits read, its architecture and the arithmetic it ran in.
pub fn evaluation_json(
    e: &Evaluation,
    name: &str,
    model: &Model,
    source: DigitSource,
) -> serde_json::Value {
    let mut v = serde_json::to_value(e).expect("an evaluation is plain numbers");
    v["model"] = serde_json::json!(name);
    v["source"] = serde_json::json!(source.name());
    v["architecture"] = serde_json::json!(model.kind());
    v["precision"] = serde_json::json!(crate::model::precision_in_use().0);
    v
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn presets_are_named_by_what_they_are_and_what_they_build() {
        for (name, preset) in [
            ("best", Preset::Best),
            ("ensemble", Preset::Best),
            ("record", Preset::Record),
            ("ensemble-large", Preset::Record),
        ] {
            assert_eq!(
                Recipe::parse(name),
                Some(Recipe::Ensemble(preset)),
                "{name}"
            );
        }
        assert_eq!(Recipe::Ensemble(Preset::Record).name(), "ensemble-large");
        assert_eq!(
            Recipe::parse("cnn-large"),
            Some(Recipe::Network(Architecture::CnnLarge))
        );
        assert_eq!(Recipe::parse("large"), None);
        // Each member trains for its architecture's own epochs unless told otherwise.
        let record = Recipe::Ensemble(Preset::Record);
        assert_eq!(
            record.epochs(None),
            Architecture::CnnLarge.default_training().epochs
        );
        assert_eq!(record.epochs(Some(2)), 2);
        // The record's members: three seeds as cnn-large trains, two with bent augmentation,
        // and a network of the other family.
        let members: Vec<(Architecture, u64, bool)> = (1..=Preset::Record.members())
            .map(|k| {
                let (seed, config) = Preset::Record.member_training(k, 7);
                let bent = config.augment.is_some_and(|a| a.elastic > 0.0);
                (Preset::Record.member(k), seed, bent)
            })
            .collect();
        let large = Architecture::CnnLarge;
        assert_eq!(
            members,
            [
                (large, 7, false),
                (large, 7, true),
                (large, 8, false),
                (large, 8, true),
                (large, 9, false),
                (Architecture::CnnNopool, 7, false)
            ]
        );
        // Every member trains for the same epochs, which the progress shows.
        assert!((1..=6).all(|k| Preset::Record.member(k).default_training().epochs == 30));
        let best: Vec<u64> = (1..=3)
            .map(|k| Preset::Best.member_training(k, 1).0)
            .collect();
        assert_eq!(best, [1, 2, 3]);
        assert_eq!(Recipe::Svm(SvmSettings::default()).epochs(Some(2)), 0);
    }

    #[test]
    fn a_teacher_is_checked_before_anything_trains() {
        let request = |recipe, teacher: &str| TrainRequest {
            recipe,
            teacher: Some(teacher.into()),
            ..TrainRequest::default()
        };
        let svm = request(Recipe::Svm(SvmSettings::default()), "cnn");
        let e = svm.fit(&Digits::default(), &mut ()).unwrap_err();
        assert!(e.to_string().contains("svm does not learn"), "{e}");

        let student = HeldOut::default();
        let d = |teacher: &str, weight| Distillation {
            teacher: teacher.into(),
            weight,
        };
        let teacher = load_teacher(&d("ensemble-large", 0.5), &student).unwrap();
        let Model::Ensemble(e) = teacher else {
            panic!("ensemble-large is an ensemble")
        };
        assert!(!e.meta.shifted_views, "teaches from one view per image");
        for (spec, weight, problem) in [
            ("cnn", 1.5, "between 0 and 1"),
            ("svm", 0.5, "an SVM"),
            ("no-such-model", 0.5, "not a shipped model"),
        ] {
            let e = load_teacher(&d(spec, weight), &student).unwrap_err();
            assert!(e.to_string().contains(problem), "{spec}: {e}");
        }
        let other = HeldOut { seed: 9, ..student };
        let e = load_teacher(&d("cnn", 0.5), &other).unwrap_err();
        assert!(e.to_string().contains("--split-seed"), "{e}");
    }
}
