//! `digits train`, `digits eval` and `digits bench`.

use anyhow::{bail, Context, Result};
use clap::{Args, Subcommand, ValueEnum};
use digits_data::{DataDir, Digits, PIXELS};
use digits_model::bench::{bulk_images_per_second, stage_times};
use digits_model::eval::{evaluate, Evaluation};
use digits_model::finetune::{describe, Corrections, FinetuneRequest, Scores};
pub use digits_model::recipe::DigitSource;
use digits_model::recipe::{self, Preset, Recipe, TrainRequest};
use digits_model::svm::PairStats;
use digits_model::train::{bench_train, EpochStats, Observer};
use digits_model::{shipped, Architecture, Model, SvmSettings};
use digits_rng::Rng;
use digits_vision::synth;
use indicatif::{ProgressBar, ProgressStyle};
use std::path::{Path, PathBuf};

fn parse_arch(s: &str) -> Result<Architecture, String> {
    Architecture::parse(s)
        .ok_or_else(|| format!("unknown network '{s}' (choose {})", Architecture::names()))
}

fn parse_recipe(s: &str) -> Result<Recipe, String> {
    match Recipe::parse(s) {
        Some(Recipe::Ensemble(_)) | None => Err(format!(
            "unknown model '{s}' (choose {}, svm or judge; ensembles with --preset)",
            Architecture::names()
        )),
        Some(r) => Ok(r),
    }
}

/// SVM settings; the defaults were chosen on the validation split.
#[derive(Args)]
pub struct SvmArgs {
    /// SVM: penalty C on margin violations.
    #[arg(long, default_value_t = SvmSettings::default().svm.c)]
    svm_c: f32,
    /// SVM: RBF kernel width gamma (on PCA coordinates of pixels in 0..1).
    #[arg(long, default_value_t = SvmSettings::default().svm.gamma)]
    svm_gamma: f32,
    /// SVM: principal components kept.
    #[arg(long, default_value_t = SvmSettings::default().components)]
    svm_components: usize,
    /// SVM: do not deskew digits before projecting them.
    #[arg(long)]
    svm_no_deskew: bool,
}

impl SvmArgs {
    fn settings(&self) -> SvmSettings {
        let mut s = SvmSettings::default();
        s.svm.c = self.svm_c;
        s.svm.gamma = self.svm_gamma;
        s.components = self.svm_components;
        s.deskew = !self.svm_no_deskew;
        s
    }
}

/// Recipes that train more than one model.
#[derive(Clone, Copy, ValueEnum)]
pub enum PresetArg {
    /// Three `cnn`s (seeds SEED, SEED+1, SEED+2) combined into an ensemble (the shipped
    /// `ensemble`), at three times the training time and three (or with shifted views fifteen)
    /// times the prediction time.
    Best,
    /// Five `cnn-large`s and a `cnn-nopool` combined into an ensemble (`ensemble-large`): three
    /// trained as `cnn-large` is (seeds SEED, SEED+1, SEED+2), two with elastic and
    /// stroke-width augmentation added (seeds SEED, SEED+1), one `cnn-nopool` (seed SEED). The
    /// most accurate model, at about three hours of training on two cores.
    Record,
}

#[derive(Args)]
pub struct TrainArgs {
    /// Model: cnn (default), cnn-large (the deeper accuracy network, half an hour on two
    /// cores), cnn-nopool (convolutions without pooling, a member for ensembles), cnn-ref (the
    /// peers' reference network), cnn-small (trains in seconds), cnn-minute (a minute, with
    /// augmentation), mlp, svm, or judge (the number reader's judge of where digits begin and
    /// end).
    #[arg(long, default_value = "cnn", value_parser = parse_recipe)]
    model: Recipe,
    /// Train a recipe instead of one --model. Each member is saved beside --out as it
    /// finishes (OUT.member1.safetensors, ...); with --resume, finished members are reused.
    #[arg(long, value_enum, conflicts_with = "model")]
    preset: Option<PresetArg>,
    /// Epochs (default: the architecture's own).
    #[arg(long)]
    epochs: Option<usize>,
    /// Seed for initialisation, shuffling, augmentation and dropout.
    #[arg(long, default_value_t = digits_data::split::SEED)]
    seed: u64,
    /// Seed that chooses the validation images; models compared or ensembled must share it.
    #[arg(long, default_value_t = digits_data::split::SEED)]
    split_seed: u64,
    /// Where to write the model (a checkpoint goes beside it as PATH.ckpt).
    #[arg(long)]
    out: Option<PathBuf>,
    /// Continue from PATH.ckpt after an interruption.
    #[arg(long)]
    resume: bool,
    /// Training images held out for validation.
    #[arg(long, default_value_t = digits_data::split::VALIDATION)]
    validation: usize,
    /// Train on only the first N training images (quick experiments).
    #[arg(long)]
    limit: Option<usize>,
    /// Add N images of two touching training digits labelled "none", so the model doubts such
    /// blobs and `predict --number` cuts them apart (see BENCHMARKS.md for the trade-off).
    #[arg(long)]
    touching_negatives: Option<usize>,
    /// Learn from this model's probabilities (a shipped name or a file) as well as from the
    /// labels: distillation. It must have held out the same validation images.
    #[arg(long, value_name = "MODEL")]
    teacher: Option<String>,
    /// The teacher's share of each training target, 0 to 1.
    #[arg(long, default_value_t = TrainRequest::default().teacher_weight, requires = "teacher")]
    teacher_weight: f32,
    /// Judge: synthetic lines of training digits to learn from.
    #[arg(long, default_value_t = TrainRequest::default().judge_lines)]
    lines: usize,
    /// Stop after this many batches (smoke tests).
    #[arg(long)]
    max_batches: Option<usize>,
    #[command(flatten)]
    svm: SvmArgs,
    /// Fine-tune this network (a file or shipped name) on the corrections in --feedback,
    /// mixed with MNIST training images, instead of training from scratch.
    #[arg(long, requires = "feedback", requires = "out", conflicts_with_all = ["preset", "limit", "max_batches"])]
    finetune: Option<String>,
    /// The corrections database to fine-tune on.
    #[arg(long, env = "DIGITS_FEEDBACK_DB", requires = "finetune")]
    feedback: Option<PathBuf>,
    /// Fine-tuning: refuse to write the model when MNIST validation accuracy falls by more
    /// than this many percentage points.
    #[arg(long, default_value_t = FinetuneRequest::default().max_mnist_drop, requires = "finetune")]
    max_mnist_drop: f32,
    /// Fine-tuning: prefer a less adapted model when the MNIST validation loss rose by more
    /// than this share (0.1 = 10%).
    #[arg(long, default_value_t = FinetuneRequest::default().max_mnist_loss_rise, requires = "finetune")]
    max_mnist_loss_rise: f32,
    /// Fine-tuning: peak learning rate.
    #[arg(long, default_value_t = FinetuneRequest::default().learning_rate, requires = "finetune")]
    finetune_lr: f32,
    /// Fine-tuning: times each correction is shown per epoch.
    #[arg(long, default_value_t = FinetuneRequest::default().repeats, requires = "finetune")]
    repeats: usize,
    /// Fine-tuning: MNIST training images mixed in per correction, so MNIST is not forgotten.
    #[arg(long, default_value_t = FinetuneRequest::default().mnist_per_correction, requires = "finetune")]
    mnist_per_correction: usize,
    /// Fine-tuning: share of the corrections held out to measure on.
    #[arg(long, default_value_t = FinetuneRequest::default().holdout, requires = "finetune")]
    holdout: f32,
}

impl TrainArgs {
    fn request(&self) -> TrainRequest {
        let recipe = match (self.preset, self.model) {
            (Some(PresetArg::Best), _) => Recipe::Ensemble(Preset::Best),
            (Some(PresetArg::Record), _) => Recipe::Ensemble(Preset::Record),
            (None, Recipe::Svm(_)) => Recipe::Svm(self.svm.settings()),
            (None, r) => r,
        };
        TrainRequest {
            recipe,
            epochs: self.epochs,
            seed: self.seed,
            split_seed: self.split_seed,
            validation: self.validation,
            limit: self.limit,
            resume: self.resume,
            touching_negatives: self.touching_negatives,
            teacher: self.teacher.clone(),
            teacher_weight: self.teacher_weight,
            judge_lines: self.lines,
            max_batches: self.max_batches,
        }
    }
}

/// Draws a bar per epoch (or over the SVM's pairwise machines) with the running loss and speed,
/// and prints the library's notes.
struct Bars {
    bar: Option<ProgressBar>,
    epochs: usize,
}

impl Bars {
    fn new(request: &TrainRequest) -> Self {
        Bars {
            bar: None,
            epochs: request.recipe.epochs(request.epochs),
        }
    }

    fn bar(&mut self, total: usize, template: &str) -> &ProgressBar {
        self.bar.get_or_insert_with(|| {
            let b = ProgressBar::new(total as u64);
            b.set_style(ProgressStyle::with_template(template).expect("static template"));
            b
        })
    }
}

impl Observer for Bars {
    fn batch(&mut self, epoch: usize, done: usize, total: usize, loss: f32, ips: f32) {
        let epochs = self.epochs;
        let bar = self.bar(
            total,
            "epoch {prefix} {bar:30} {pos}/{len} batches  {msg}  eta {eta}",
        );
        bar.set_prefix(format!("{}/{epochs}", epoch + 1));
        bar.set_position(done as u64);
        bar.set_message(format!("loss {loss:.4}  {ips:.0} images/s"));
    }

    fn epoch(&mut self, s: &EpochStats) {
        if let Some(b) = self.bar.take() {
            b.finish_and_clear();
        }
        println!(
            "epoch {:>2}/{}: train loss {:.4}, train acc {:.2}%, val loss {:.4}, val acc {:.2}%, {:.1}s ({:.0} images/s)",
            s.epoch,
            self.epochs,
            s.train_loss,
            100.0 * s.train_accuracy,
            s.validation_loss,
            100.0 * s.validation_accuracy,
            s.seconds,
            s.images_per_second
        );
    }

    fn note(&mut self, line: &str) {
        if let Some(b) = self.bar.take() {
            b.finish_and_clear();
        }
        println!("{line}");
    }

    fn machine(&mut self, done: usize, total: usize, s: &PairStats) {
        let bar = self.bar(
            total,
            "{bar:30} {pos}/{len} pairwise machines  {msg}  eta {eta}",
        );
        bar.set_position(done as u64);
        bar.set_message(format!(
            "{} vs {}: {} support vectors",
            s.classes.0, s.classes.1, s.support_vectors
        ));
    }
}

pub fn train(args: TrainArgs, dir: DataDir) -> Result<()> {
    if let (Some(base), Some(db)) = (&args.finetune, &args.feedback) {
        return finetune(&args, base, db, dir);
    }
    let data = dir.load()?;
    let request = args.request();
    let out = args.out.clone().unwrap_or_else(|| request.default_out());
    let trained = request.run(&data, &out, &mut Bars::new(&request))?;
    match (trained.model, trained.test) {
        (Some(model), Some(test)) => {
            print!("trained in {:.0}s; ", trained.seconds);
            print_saved(&model, &test, &out);
        }
        _ => println!(
            "trained in {:.0}s; saved {}",
            trained.seconds,
            out.display()
        ),
    }
    Ok(())
}

/// `digits train --finetune MODEL --feedback DB --out FILE`.
fn finetune(args: &TrainArgs, base_name: &str, db: &Path, dir: DataDir) -> Result<()> {
    let out = args.out.clone().context("--finetune needs --out FILE")?;
    let store = digits_feedback::Store::open(db)?;
    let corrections = Corrections {
        digits: store.training_digits()?,
        sha256: store.fingerprint()?.sha256,
    };
    drop(store);
    let base = shipped::resolve(base_name)?;
    let request = FinetuneRequest {
        epochs: args.epochs.unwrap_or(FinetuneRequest::default().epochs),
        seed: args.seed,
        resume: args.resume,
        max_mnist_drop: args.max_mnist_drop,
        max_mnist_loss_rise: args.max_mnist_loss_rise,
        learning_rate: args.finetune_lr,
        repeats: args.repeats,
        mnist_per_correction: args.mnist_per_correction,
        holdout: args.holdout,
    };
    let data = dir.load()?;
    let mut bars = Bars {
        bar: None,
        epochs: request.epochs,
    };
    let done = request.run(&base, base_name, &corrections, &data, &out, &mut bars)?;
    let line = |when: &str, s: &Scores| {
        println!(
            "{when}: held-out corrections {:.2}% ({} of {}), MNIST validation {:.2}%",
            100.0 * s.corrections.accuracy,
            s.corrections.images - s.corrections.errors,
            s.corrections.images,
            100.0 * s.mnist_validation.accuracy
        )
    };
    println!(
        "trained on {} corrections, {} held out to measure on; {:.0}% of the change kept",
        done.trained_on,
        done.held_out,
        100.0 * done.kept
    );
    line("before", &done.before);
    line("after ", &done.after);
    if let Some(why) = done.refused {
        bail!(why);
    }
    if let Some((model, test)) = done.written {
        print!("{}; ", describe(model.lineage()));
        print_saved(&model, &test, &out);
    }
    Ok(())
}

fn print_saved(model: &Model, test: &Evaluation, out: &Path) {
    println!(
        "test accuracy {:.2}% ({} errors of {}), confidence temperature {:.3}; saved {}",
        100.0 * test.accuracy,
        test.errors,
        test.images,
        digits_model::Classify::temperature(model),
        out.display()
    );
}

#[derive(Args)]
pub struct EnsembleArgs {
    /// Trained network files or shipped names (two or more) that held out the same
    /// validation images (the same --split-seed and --validation when trained).
    #[arg(required = true, num_args = 2..)]
    models: Vec<String>,
    /// Where to write the ensemble.
    #[arg(long, default_value = "runs/ensemble.safetensors")]
    out: PathBuf,
    /// Do not read the test set: compare combinations by their validation figures, then
    /// measure the chosen one once with `digits eval`.
    #[arg(long)]
    no_test: bool,
}

/// `digits ensemble`: combines trained networks and calibrates them on their validation split.
pub fn ensemble(args: EnsembleArgs, dir: DataDir) -> Result<()> {
    let train = dir.load_train()?;
    let test = if args.no_test {
        None
    } else {
        Some(dir.load_test()?)
    };
    let (model, test) = recipe::ensemble_files(
        &args.models,
        &train,
        test.as_ref(),
        &args.out,
        &mut Bars {
            bar: None,
            epochs: 0,
        },
    )?;
    match test {
        Some(test) => print_saved(&model, &test, &args.out),
        None => println!(
            "confidence temperature {:.3}; saved {} (test set not read)",
            digits_model::Classify::temperature(&model),
            args.out.display()
        ),
    }
    Ok(())
}

#[derive(Args)]
pub struct EvalArgs {
    /// A model file, or the name of a shipped model (cnn, cnn-large, ensemble, ensemble-large, mlp, svm).
    #[arg(long, default_value = "cnn")]
    model: String,
    /// Digits to score: `test` for reported figures, or `validation` (the 5,000 training
    /// images the shipped models hold out) for choices, without touching the test set.
    #[arg(long, default_value = "test", value_parser = parse_source)]
    source: DigitSource,
    /// Print one JSON object instead of a table.
    #[arg(long)]
    json: bool,
}

#[derive(Args)]
pub struct ExportArgs {
    /// A model file, or the name of a shipped model (cnn, cnn-large, ensemble, ensemble-large, mlp).
    model: String,
    /// Where to write the ONNX file (opset 17; input `pixels` N x 1 x 28 x 28, bytes / 255;
    /// outputs `logits` and `probabilities`, N x 10).
    #[arg(long, value_name = "FILE")]
    onnx: PathBuf,
}

pub fn export(args: ExportArgs) -> Result<()> {
    let model = shipped::resolve(&args.model)?;
    let bytes = digits_model::onnx::save(&model, &args.onnx)?;
    println!(
        "wrote {} ({} model, {:.1} MB, ONNX opset 17): input `pixels` N x 1 x 28 x 28 (bytes / 255), \
         outputs `logits` and `probabilities` N x 10",
        args.onnx.display(),
        model.kind(),
        bytes as f64 / 1e6
    );
    Ok(())
}

pub fn parse_source(s: &str) -> Result<DigitSource, String> {
    DigitSource::parse(s).ok_or_else(|| format!("unknown source '{s}' (choose test or validation)"))
}

pub fn eval(args: EvalArgs, dir: DataDir) -> Result<()> {
    let mut model = shipped::resolve(&args.model)?;
    let digits = args.source.load(&dir)?;
    let e = evaluate(&mut model, &digits);
    if args.json {
        println!(
            "{}",
            recipe::evaluation_json(&e, &args.model, &model, args.source)
        );
    } else {
        print_evaluation(&args.model, args.source, &e);
    }
    Ok(())
}

fn print_evaluation(name: &str, source: DigitSource, e: &Evaluation) {
    let on = match source {
        DigitSource::Test => "",
        DigitSource::Validation => " on the validation digits",
    };
    println!(
        "{name} ({} arithmetic){on}: accuracy {:.2}% ({} errors of {}), loss {:.4}, calibration error {:.2}%",
        digits_model::model::precision_in_use().0,
        100.0 * e.accuracy,
        e.errors,
        e.images,
        e.loss,
        100.0 * e.calibration_error
    );
    println!(
        "prediction: {:.3}s for {} images ({:.0} images/s)\n",
        e.seconds, e.images, e.images_per_second
    );
    println!("confusion matrix (rows: true digit, columns: predicted)");
    println!(
        "      {}",
        (0..10).map(|d| format!("{d:>5}")).collect::<String>()
    );
    for (t, row) in e.confusion.iter().enumerate() {
        println!(
            "  {t:>2}  {}",
            row.iter().map(|n| format!("{n:>5}")).collect::<String>()
        );
    }
    println!("\ndigit  precision  recall     f1  support");
    for c in &e.per_class {
        println!(
            "{:>5}  {:>8.2}%  {:>5.2}%  {:>5.2}%  {:>7}",
            c.digit,
            100.0 * c.precision,
            100.0 * c.recall,
            100.0 * c.f1,
            c.support
        );
    }
}

#[derive(Subcommand)]
pub enum BenchCommand {
    /// Training throughput (images/s) over a fixed number of batches of real MNIST images.
    Train {
        #[arg(long, default_value = "cnn-ref", value_parser = parse_arch)]
        model: Architecture,
        #[arg(long, default_value_t = 50)]
        batches: usize,
        /// Thread counts to compare in one run, e.g. `1,2`: their batches alternate in turns
        /// of five, so the machine's changes of speed fall on each alike (default: --threads).
        #[arg(long, value_delimiter = ',')]
        compare_threads: Vec<usize>,
        #[arg(long)]
        json: bool,
    },
    /// Prediction speed: each stage of reading one image (median), and bulk images/s.
    Predict {
        /// Shipped model name or model file.
        #[arg(long, default_value = "cnn")]
        model: String,
        /// Image to read (default: a test digit redrawn on a canvas).
        #[arg(long)]
        image: Option<PathBuf>,
        /// Timed runs per stage.
        #[arg(long, default_value_t = 2000)]
        runs: usize,
        /// Test images classified in one call for the bulk figure.
        #[arg(long, default_value_t = 1000)]
        bulk: usize,
        #[arg(long)]
        json: bool,
    },
}

pub fn bench(cmd: BenchCommand, dir: DataDir, threads: usize) -> Result<()> {
    match cmd {
        BenchCommand::Train {
            model,
            batches,
            compare_threads,
            json,
        } => {
            anyhow::ensure!(batches > 0, "--batches must be at least 1");
            let counts = if compare_threads.is_empty() {
                vec![threads]
            } else {
                compare_threads
            };
            anyhow::ensure!(
                counts.iter().all(|&t| t > 0),
                "--compare-threads takes counts of at least 1"
            );
            let pools = counts
                .iter()
                .map(|&t| rayon::ThreadPoolBuilder::new().num_threads(t).build())
                .collect::<Result<Vec<_>, _>>()?;
            let train: Digits = dir
                .load()
                .context("the benchmark trains on real MNIST images")?
                .train;
            let measured = bench_train(model, &train, batches, 1, &pools);
            let batch_size = model.default_training().batch_size;
            let speeds: Vec<f32> = measured.iter().map(|m| m.images).collect();
            let ratios: Vec<f32> = speeds.iter().map(|s| s / speeds[0]).collect();
            let probes: Vec<Option<f32>> = measured
                .iter()
                .map(|m| m.probe.zip(measured[0].probe).map(|(p, first)| p / first))
                .collect();
            if json {
                let v = match (&counts[..], &speeds[..]) {
                    ([threads], [ips]) => serde_json::json!({"model": model, "threads": threads,
                        "batches": batches, "batch_size": batch_size, "images_per_second": ips}),
                    _ => serde_json::json!({"model": model, "threads": counts, "batches": batches,
                        "batch_size": batch_size, "images_per_second": speeds,
                        "ratio_to_first": ratios, "compute_loop_ratio_to_first": probes}),
                };
                println!("{v}");
            }
            let rows = counts.iter().zip(&speeds).zip(ratios.iter().zip(&probes));
            for ((&threads, &ips), (ratio, probe)) in rows.filter(|_| !json) {
                let against = match probe {
                    Some(probe) if threads != counts[0] => format!(
                        "; {ratio:.2}x the speed on {}, where a compute loop gained {probe:.2}x",
                        counts[0]
                    ),
                    _ => String::new(),
                };
                println!(
                    "{model}: {ips:.0} training images/s ({threads} threads, {batches} batches{against})"
                );
            }
            Ok(())
        }
        BenchCommand::Predict {
            model,
            image,
            runs,
            bulk,
            json,
        } => {
            anyhow::ensure!(runs > 0 && bulk > 0, "--runs and --bulk must be at least 1");
            let test = dir
                .load()
                .context("the benchmark classifies real MNIST test images")?
                .test;
            let mut m = shipped::resolve(&model)?;
            let bytes = match &image {
                Some(path) => {
                    std::fs::read(path).with_context(|| format!("reading {}", path.display()))?
                }
                None => synth::render_digit(test.image(0), synth::Style::Canvas, &mut Rng::new(1)),
            };
            let stages = stage_times(&mut m, &bytes, runs)?;
            let n = bulk.min(test.len());
            let mut images = vec![0f32; n * PIXELS];
            digits_data::normalize_into(&test.images[..n * PIXELS], &mut images);
            let bulk_ips = bulk_images_per_second(&mut m, &images, 5);
            let (precision, why) = digits_model::model::precision_in_use();
            if json {
                println!(
                    "{}",
                    serde_json::json!({"model": model, "threads": threads, "stages": stages,
                        "bulk_images": n, "bulk_images_per_second": bulk_ips,
                        "precision": precision, "precision_why": why,
                        "setting": digits_model::precision().name()})
                );
            } else {
                println!("{model} ({threads} threads, {precision}), medians of {runs} runs:");
                let setting = digits_model::precision().name();
                if why[0] == why[1] {
                    println!("  precision: {setting}: {}", why[0]);
                } else {
                    println!(
                        "  precision: {setting}: one image: {}; batches: {}",
                        why[0], why[1]
                    );
                }
                println!("  decode     {:>9.1} us", stages.decode_us);
                println!("  ink map    {:>9.1} us", stages.ink_us);
                println!("  normalize  {:>9.1} us", stages.normalize_us);
                println!(
                    "  classify   {:>9.1} us (one normalised image)",
                    stages.classify_us
                );
                println!(
                    "  total      {:>9.1} us ({:.0} images/s per thread)",
                    stages.total_us,
                    1e6 / stages.total_us
                );
                println!(
                    "  one call   {:>9.1} us (read_digit, the stages together)",
                    stages.read_us
                );
                println!("bulk: {bulk_ips:.0} images/s ({n} normalised test images in one call)");
            }
            Ok(())
        }
    }
}
