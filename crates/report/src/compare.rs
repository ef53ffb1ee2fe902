//! Training (or loading) each model on the same split and measuring it on the same test images.

use crate::{Comparison, Mistake, ModelResult, ReportError};
use digits_data::split::split;
use digits_data::{Digits, Mnist};
use digits_model::eval::score;
use digits_model::svm::MACHINES;
use digits_model::train::{train_network, Observer};
use digits_model::{file, Architecture, Classify, Model, SvmModel, SvmSettings};
use std::path::PathBuf;
use std::sync::Mutex;
use std::time::Instant;

/// Models a comparison knows, in report order.
pub const MODELS: [&str; 3] = ["svm", "mlp", "cnn"];
/// Mistakes kept per model for the gallery.
const MISTAKES: usize = 32;

#[derive(Debug, Clone)]
pub struct Options {
    pub models: Vec<String>,
    /// A small subset and short training, so the whole report builds in well under a minute.
    pub quick: bool,
    /// Load models a previous run saved in the report's `models/` folder instead of training.
    pub reuse: bool,
    pub out: PathBuf,
    pub seed: u64,
    /// Epochs for the networks (default: each architecture's own, or 2 and 5 when quick).
    pub epochs: Option<usize>,
    pub validation: usize,
}

impl Options {
    /// Train, validation and test sizes (`None`: all).
    fn sizes(&self) -> (Option<usize>, usize, Option<usize>) {
        if self.quick {
            (Some(5000), 1000, Some(2000))
        } else {
            (None, self.validation, None)
        }
    }

    fn epochs(&self, architecture: Architecture) -> usize {
        match (self.epochs, self.quick, architecture) {
            (Some(e), _, _) => e,
            (None, true, Architecture::Mlp) => 5,
            (None, true, _) => 2,
            (None, false, a) => a.default_training().epochs,
        }
    }
}

/// Receives progress: the CLI draws a bar per model.
pub trait Progress: Send {
    fn start(&mut self, model: &str, steps: usize, unit: &'static str);
    fn advance(&mut self, done: usize, message: &str);
    fn finish(&mut self, line: &str);
}

/// Turns training callbacks into one running count per model.
struct Steps<'a> {
    progress: &'a mut dyn Progress,
    per_epoch: usize,
}

impl Observer for Steps<'_> {
    fn batch(&mut self, epoch: usize, done: usize, _total: usize, loss: f32, ips: f32) {
        self.progress.advance(
            epoch * self.per_epoch + done,
            &format!("epoch {} loss {loss:.4} {ips:.0} images/s", epoch + 1),
        );
    }
}

/// Trains or loads every requested model and measures it on the test set.
pub fn run(
    options: &Options,
    data: &Mnist,
    progress: &mut dyn Progress,
) -> Result<(Comparison, Digits), ReportError> {
    if let Some(bad) = options
        .models
        .iter()
        .find(|m| !MODELS.contains(&m.as_str()))
    {
        return Err(ReportError::Invalid(format!(
            "unknown model '{bad}' (choose from {})",
            MODELS.join(", ")
        )));
    }
    if options.models.is_empty() {
        return Err(ReportError::Invalid("no models chosen".into()));
    }
    let (train_n, validation, test_n) = options.sizes();
    let all = match train_n {
        Some(n) => data.train.take(n + validation),
        None => data.train.clone(),
    };
    let test = match test_n {
        Some(n) => data.test.take(n),
        None => data.test.clone(),
    };
    let split = split(&all, validation, options.seed)?;
    let mut models = Vec::new();
    for name in MODELS
        .iter()
        .filter(|m| options.models.iter().any(|o| o == *m))
    {
        let path = options
            .out
            .join("models")
            .join(format!("{name}.safetensors"));
        let (mut model, reused) = if options.reuse && path.exists() {
            let m = file::load(&path)?;
            if m.kind() != *name {
                return Err(ReportError::Invalid(format!(
                    "{} holds a {} model, not {name}",
                    path.display(),
                    m.kind()
                )));
            }
            progress.finish(&format!("{name}: reusing {}", path.display()));
            (m, true)
        } else {
            let m = train(name, options, &split, progress)?;
            file::save(&m, &path)?;
            (m, false)
        };
        let start = Instant::now();
        let predictions = model.predict_bytes(&test.images);
        let evaluation = score(&predictions, &test.labels, start.elapsed().as_secs_f32());
        let mut mistakes: Vec<Mistake> = predictions
            .iter()
            .zip(&test.labels)
            .enumerate()
            .filter(|(_, (p, &l))| p.digit != l)
            .map(|(index, (p, &label))| Mistake {
                index,
                label,
                predicted: p.digit,
                confidence: p.confidence,
            })
            .collect();
        mistakes.sort_by(|a, b| b.confidence.total_cmp(&a.confidence));
        mistakes.truncate(MISTAKES);
        progress.finish(&format!(
            "{name}: test accuracy {:.2}% ({} errors of {}), trained in {}, predicted in {:.2}s",
            100.0 * evaluation.accuracy,
            evaluation.errors,
            evaluation.images,
            model
                .training_seconds()
                .map_or("(not recorded)".to_string(), |s| format!("{s:.1}s")),
            evaluation.seconds
        ));
        models.push(ModelResult {
            name: name.to_string(),
            parameters: model.parameter_count(),
            train_seconds: model.training_seconds(),
            reused,
            history: model.history().to_vec(),
            evaluation,
            mistakes,
        });
    }
    let comparison = Comparison {
        quick: options.quick,
        threads: rayon::current_num_threads(),
        machine: machine(),
        train_images: split.train.len(),
        validation_images: split.validation.len(),
        test_images: test.len(),
        seed: options.seed,
        models,
        peers: Vec::new(),
    };
    Ok((comparison, test))
}

fn train(
    name: &str,
    options: &Options,
    split: &digits_data::Split,
    progress: &mut dyn Progress,
) -> Result<Model, ReportError> {
    if name == "svm" {
        progress.start(name, MACHINES, "pairwise machines");
        let progress = Mutex::new(progress);
        let done = std::sync::atomic::AtomicUsize::new(0);
        let settings = SvmSettings {
            seed: options.seed,
            ..SvmSettings::default()
        };
        let model = SvmModel::train(&split.train, &split.validation, settings, &|s| {
            let n = done.fetch_add(1, std::sync::atomic::Ordering::Relaxed) + 1;
            if let Ok(mut p) = progress.lock() {
                p.advance(n, &format!("{} vs {}", s.classes.0, s.classes.1));
            }
        })?;
        return Ok(Model::Svm(model));
    }
    let architecture = Architecture::parse(name).expect("names were checked");
    let mut config = architecture.default_training();
    config.epochs = options.epochs(architecture);
    let per_epoch = (split.train.len() / config.batch_size).max(1);
    progress.start(name, per_epoch * config.epochs, "batches");
    let model = train_network(
        architecture,
        config,
        options.seed,
        split,
        &mut Steps {
            progress,
            per_epoch,
        },
    )?;
    Ok(Model::Neural(model))
}

/// The CPU model, for the report's header.
fn machine() -> String {
    std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|t| {
            t.lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split(':').nth(1))
                .map(|s| s.trim().to_string())
        })
        .unwrap_or_else(|| std::env::consts::ARCH.to_string())
}
