//! `digits train`, `digits eval` and `digits bench`.

use anyhow::{Context, Result};
use clap::{Args, Subcommand};
use digits_data::{split::split, DataDir, Digits, PIXELS};
use digits_model::bench::{bulk_images_per_second, stage_times};
use digits_model::eval::{evaluate, Evaluation};
use digits_model::train::{bench_train, touching_negatives, EpochStats, Observer, Trainer};
use digits_model::{file, shipped, Architecture, Model, SvmModel, SvmSettings};
use digits_rng::Rng;
use digits_vision::synth;
use indicatif::{ProgressBar, ProgressStyle};
use std::path::PathBuf;

fn parse_arch(s: &str) -> Result<Architecture, String> {
    Architecture::parse(s)
        .ok_or_else(|| format!("unknown network '{s}' (choose cnn, cnn-ref or mlp)"))
}

/// What `digits train` can build.
#[derive(Clone, Copy, PartialEq)]
pub enum Kind {
    Network(Architecture),
    Svm,
}

impl Kind {
    pub fn parse(s: &str) -> Result<Kind, String> {
        match s {
            "svm" => Ok(Kind::Svm),
            _ => Architecture::parse(s)
                .map(Kind::Network)
                .ok_or_else(|| format!("unknown model '{s}' (choose cnn, cnn-ref, mlp or svm)")),
        }
    }
}

impl std::fmt::Display for Kind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Kind::Network(a) => a.fmt(f),
            Kind::Svm => f.write_str("svm"),
        }
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
    fn settings(&self, seed: u64) -> SvmSettings {
        let mut s = SvmSettings::default();
        s.svm.c = self.svm_c;
        s.svm.gamma = self.svm_gamma;
        s.components = self.svm_components;
        s.deskew = !self.svm_no_deskew;
        s.seed = seed;
        s
    }
}

#[derive(Args)]
pub struct TrainArgs {
    /// Model: cnn (default), cnn-ref (the peers' reference network), mlp or svm.
    #[arg(long, default_value = "cnn", value_parser = Kind::parse)]
    model: Kind,
    /// Epochs (default: the architecture's own).
    #[arg(long)]
    epochs: Option<usize>,
    /// Seed for initialisation, the validation split, shuffling, augmentation and dropout.
    #[arg(long, default_value_t = digits_data::split::SEED)]
    seed: u64,
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
    /// Stop after this many batches (smoke tests).
    #[arg(long)]
    max_batches: Option<usize>,
    #[command(flatten)]
    svm: SvmArgs,
}

/// Draws a bar per epoch with the running loss and speed.
struct Bars {
    bar: Option<ProgressBar>,
    epochs: usize,
}

impl Observer for Bars {
    fn batch(&mut self, epoch: usize, done: usize, total: usize, loss: f32, ips: f32) {
        let epochs = self.epochs;
        let bar = self.bar.get_or_insert_with(|| {
            let b = ProgressBar::new(total as u64);
            b.set_style(
                ProgressStyle::with_template(
                    "epoch {prefix} {bar:30} {pos}/{len} batches  {msg}  eta {eta}",
                )
                .expect("static template"),
            );
            b.set_prefix(format!("{}/{epochs}", epoch + 1));
            b
        });
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
}

pub fn train(args: TrainArgs, dir: DataDir) -> Result<()> {
    let data = dir.load()?;
    let all = match args.limit {
        Some(n) => data.train.take(n + args.validation),
        None => data.train,
    };
    let out = args
        .out
        .clone()
        .unwrap_or_else(|| PathBuf::from(format!("runs/{}.safetensors", args.model)));
    let start = std::time::Instant::now();
    let mut model = match args.model {
        Kind::Network(architecture) => {
            Model::Neural(train_network(&args, architecture, &all, &out)?)
        }
        Kind::Svm => Model::Svm(train_svm(&args, &all)?),
    };
    let seconds = start.elapsed().as_secs_f32();
    let test = evaluate(&mut model, &data.test);
    model.set_test_accuracy(test.accuracy);
    file::save(&model, &out)?;
    println!(
        "trained in {seconds:.0}s; test accuracy {:.2}% ({} errors of {}), confidence temperature {:.3}; saved {}",
        100.0 * test.accuracy,
        test.errors,
        test.images,
        digits_model::Classify::temperature(&model),
        out.display()
    );
    Ok(())
}

fn train_network(
    args: &TrainArgs,
    architecture: Architecture,
    all: &Digits,
    out: &std::path::Path,
) -> Result<digits_model::NeuralModel> {
    let ckpt = PathBuf::from(format!("{}.ckpt", out.display()));
    let mut trainer = if args.resume && ckpt.exists() {
        let t = Trainer::resume(&ckpt)?;
        anyhow::ensure!(
            t.model.architecture() == architecture,
            "{} holds a {} checkpoint, not {}",
            ckpt.display(),
            t.model.architecture(),
            architecture
        );
        println!(
            "resuming {} after epoch {}",
            ckpt.display(),
            t.progress.epochs_done
        );
        t
    } else {
        let mut config = architecture.default_training();
        if let Some(e) = args.epochs {
            config.epochs = e;
        }
        if let Some(n) = args.touching_negatives {
            config.touching_negatives = n;
        }
        Trainer::new(architecture, config, args.seed)
    };
    if let Some(e) = args.epochs {
        trainer.model.meta.training.epochs = e;
    }
    let seed = trainer.model.meta.seed;
    let mut split = split(all, args.validation, seed)?;
    let negatives = trainer.model.meta.training.touching_negatives;
    if negatives > 0 {
        split
            .train
            .extend(&touching_negatives(&split.train, negatives, seed));
        println!("added {negatives} images of touching digit pairs labelled 'none'");
    }
    println!(
        "training {architecture} ({} parameters) on {} images, validating on {}, {} threads",
        trainer.model.net.parameter_count(),
        split.train.len(),
        split.validation.len(),
        rayon::current_num_threads()
    );
    let epochs = trainer.model.meta.training.epochs;
    trainer.run(
        &split,
        &mut Bars { bar: None, epochs },
        Some(&ckpt),
        args.max_batches,
    )?;
    Ok(trainer.finish(&split.validation))
}

fn train_svm(args: &TrainArgs, all: &Digits) -> Result<SvmModel> {
    let split = split(all, args.validation, args.seed)?;
    let settings = args.svm.settings(args.seed);
    println!(
        "training svm (C {}, gamma {}, {} principal components, deskew {}) on {} images, validating on {}, {} threads",
        settings.svm.c,
        settings.svm.gamma,
        settings.components,
        if settings.deskew { "on" } else { "off" },
        split.train.len(),
        split.validation.len(),
        rayon::current_num_threads()
    );
    let bar = ProgressBar::new(digits_model::svm::MACHINES as u64);
    bar.set_style(
        ProgressStyle::with_template("{bar:30} {pos}/{len} pairwise machines  {msg}  eta {eta}")
            .expect("static template"),
    );
    let model = SvmModel::train(&split.train, &split.validation, settings, &|s| {
        bar.set_message(format!(
            "{} vs {}: {} support vectors",
            s.classes.0, s.classes.1, s.support_vectors
        ));
        bar.inc(1);
    })?;
    bar.finish_and_clear();
    println!(
        "{} support vectors; validation accuracy {}",
        model.meta.support_vectors,
        model
            .meta
            .validation_accuracy
            .map_or("-".to_string(), |a| format!("{:.2}%", 100.0 * a))
    );
    Ok(model)
}

#[derive(Args)]
pub struct EvalArgs {
    /// A model file, or the name of a shipped model (cnn, mlp, svm).
    #[arg(long, default_value = "cnn")]
    model: String,
    /// Print one JSON object instead of a table.
    #[arg(long)]
    json: bool,
}

pub fn eval(args: EvalArgs, dir: DataDir) -> Result<()> {
    let mut model = shipped::resolve(&args.model)?;
    let test = dir.load()?.test;
    let e = evaluate(&mut model, &test);
    if args.json {
        let mut v = serde_json::to_value(&e)?;
        v["model"] = serde_json::json!(args.model);
        v["architecture"] = serde_json::json!(model.kind());
        println!("{v}");
    } else {
        print_evaluation(&args.model, &e);
    }
    Ok(())
}

fn print_evaluation(name: &str, e: &Evaluation) {
    println!(
        "{name}: accuracy {:.2}% ({} errors of {}), loss {:.4}, calibration error {:.2}%",
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
            json,
        } => {
            anyhow::ensure!(batches > 0, "--batches must be at least 1");
            let train: Digits = dir
                .load()
                .context("the benchmark trains on real MNIST images")?
                .train;
            let ips = bench_train(model, &train, batches, 1);
            if json {
                println!(
                    "{}",
                    serde_json::json!({"model": model, "threads": threads, "batches": batches,
                        "batch_size": model.default_training().batch_size, "images_per_second": ips})
                );
            } else {
                println!(
                    "{model}: {ips:.0} training images/s ({threads} threads, {batches} batches)"
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
            if json {
                println!(
                    "{}",
                    serde_json::json!({"model": model, "threads": threads, "stages": stages,
                        "bulk_images": n, "bulk_images_per_second": bulk_ips})
                );
            } else {
                println!("{model} ({threads} threads), medians of {runs} runs:");
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
                println!("bulk: {bulk_ips:.0} images/s ({n} normalised test images in one call)");
            }
            Ok(())
        }
    }
}
