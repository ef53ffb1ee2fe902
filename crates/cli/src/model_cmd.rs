//! `digits train`, `digits eval` and `digits bench`.

use anyhow::{Context, Result};
use clap::{Args, Subcommand, ValueEnum};
use digits_data::{split::HeldOut, DataDir, Digits, Mnist, PIXELS};
use digits_model::bench::{bulk_images_per_second, stage_times};
use digits_model::eval::{evaluate, Evaluation};
use digits_model::judge::{self, JudgeTraining};
use digits_model::train::{bench_train, touching_negatives, EpochStats, Observer, Trainer};
use digits_model::{
    file, shipped, Architecture, EnsembleModel, Model, NeuralModel, SvmModel, SvmSettings,
};
use digits_rng::Rng;
use digits_vision::synth;
use indicatif::{ProgressBar, ProgressStyle};
use std::path::{Path, PathBuf};

fn parse_arch(s: &str) -> Result<Architecture, String> {
    Architecture::parse(s)
        .ok_or_else(|| format!("unknown network '{s}' (choose cnn, cnn-ref, cnn-small or mlp)"))
}

/// What `digits train` can build.
#[derive(Clone, Copy, PartialEq)]
pub enum Kind {
    Network(Architecture),
    Svm,
    /// The number reader's judge of where digits begin and end.
    Judge,
}

impl Kind {
    pub fn parse(s: &str) -> Result<Kind, String> {
        match s {
            "svm" => Ok(Kind::Svm),
            "judge" => Ok(Kind::Judge),
            _ => Architecture::parse(s).map(Kind::Network).ok_or_else(|| {
                format!("unknown model '{s}' (choose cnn, cnn-ref, cnn-small, mlp, svm or judge)")
            }),
        }
    }
}

impl std::fmt::Display for Kind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Kind::Network(a) => a.fmt(f),
            Kind::Svm => f.write_str("svm"),
            Kind::Judge => f.write_str("judge"),
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

/// Recipes that train more than one model.
#[derive(Clone, Copy, ValueEnum)]
pub enum Preset {
    /// Three `cnn`s (seeds SEED, SEED+1, SEED+2) combined into an ensemble: the most accurate
    /// model, at three times the training time and three (or with shifted views fifteen) times
    /// the prediction time.
    Best,
}

/// Networks in the `best` preset's ensemble.
const BEST_MEMBERS: u64 = 3;

#[derive(Args)]
pub struct TrainArgs {
    /// Model: cnn (default), cnn-ref (the peers' reference network), cnn-small (trains in
    /// seconds), mlp, svm, or judge (the number reader's judge of where digits begin and end).
    #[arg(long, default_value = "cnn", value_parser = Kind::parse)]
    model: Kind,
    /// Train a recipe instead of one --model. Each member is saved beside --out as it
    /// finishes (OUT.member1.safetensors, ...); with --resume, finished members are reused.
    #[arg(long, value_enum, conflicts_with = "model")]
    preset: Option<Preset>,
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
    /// Judge: synthetic lines of training digits to learn from.
    #[arg(long, default_value_t = JudgeTraining::default().lines)]
    lines: usize,
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
    let name = match args.preset {
        Some(Preset::Best) => "ensemble".to_string(),
        None => args.model.to_string(),
    };
    let out = args
        .out
        .clone()
        .unwrap_or_else(|| PathBuf::from(format!("runs/{name}.safetensors")));
    let start = std::time::Instant::now();
    if args.preset.is_none() && args.model == Kind::Judge {
        return train_judge(&args, &all, &out);
    }
    let model = match (args.preset, args.model) {
        (Some(Preset::Best), _) => Model::Ensemble(train_best(&args, &all, &out)?),
        (None, Kind::Network(architecture)) => {
            Model::Neural(train_network(&args, architecture, args.seed, &all, &out)?)
        }
        (None, Kind::Svm) => Model::Svm(train_svm(&args, &all)?),
        (None, Kind::Judge) => unreachable!("trained above"),
    };
    print!("trained in {:.0}s; ", start.elapsed().as_secs_f32());
    test_and_save(model, &data.test, &out)
}

/// Trains the number reader's judge on lines of training digits, scoring it on lines of the
/// held-out ones.
fn train_judge(args: &TrainArgs, all: &Digits, out: &Path) -> Result<()> {
    let start = std::time::Instant::now();
    let split = held_out(args, all).apply(all)?;
    let mut training = JudgeTraining {
        lines: args.lines,
        ..JudgeTraining::default()
    };
    if let Some(e) = args.epochs {
        training.epochs = e;
    }
    let train = judge::examples(&split.train, training.lines, args.seed);
    let validation = judge::examples(&split.validation, training.lines / 10, args.seed + 1);
    println!(
        "training judge on {} pieces of {} lines ({:.0}% whole digits), validating on {} pieces; {:.0}s to cut them",
        train.len(),
        training.lines,
        100.0 * train.whole_share(),
        validation.len(),
        start.elapsed().as_secs_f32()
    );
    let epochs = training.epochs;
    let mut judge = judge::train_judge(
        &train,
        &validation,
        training,
        args.seed,
        &mut Bars { bar: None, epochs },
    );
    judge.meta.held_out = held_out(args, all);
    file::save_judge(&judge, out)?;
    println!(
        "trained in {:.0}s; saved {}",
        start.elapsed().as_secs_f32(),
        out.display()
    );
    Ok(())
}

/// Records the model's test accuracy (reported, never used to choose) and saves it.
fn test_and_save(mut model: Model, test: &Digits, out: &Path) -> Result<()> {
    let test = evaluate(&mut model, test);
    model.set_test_accuracy(test.accuracy);
    file::save(&model, out)?;
    println!(
        "test accuracy {:.2}% ({} errors of {}), confidence temperature {:.3}; saved {}",
        100.0 * test.accuracy,
        test.errors,
        test.images,
        digits_model::Classify::temperature(&model),
        out.display()
    );
    Ok(())
}

/// The `best` preset: trains (or with --resume reuses) each member, then combines them.
fn train_best(args: &TrainArgs, all: &Digits, out: &Path) -> Result<EnsembleModel> {
    let mut members = Vec::new();
    for k in 1..=BEST_MEMBERS {
        let path = out.with_extension(format!("member{k}.safetensors"));
        let member = if args.resume && path.exists() {
            println!("reusing member {k} of {BEST_MEMBERS}: {}", path.display());
            network_file(&path.to_string_lossy())?
        } else {
            println!("member {k} of {BEST_MEMBERS}:");
            let m = train_network(args, Architecture::Cnn, args.seed + k - 1, all, &path)?;
            file::save(&Model::Neural(m.clone()), &path)?;
            m
        };
        members.push(member);
    }
    let split = held_out(args, all).apply(all)?;
    combine(members, &split.validation)
}

/// A network model named on the command line (an ensemble is built from networks only).
fn network_file(spec: &str) -> Result<NeuralModel> {
    match shipped::resolve(spec)? {
        Model::Neural(m) => Ok(m),
        other => anyhow::bail!(
            "{spec} is not a network but an {} model; only networks (cnn, cnn-small, mlp, ...) can be ensembled",
            other.kind()
        ),
    }
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
}

/// `digits ensemble`: combines trained networks and calibrates them on their validation split.
pub fn ensemble(args: EnsembleArgs, dir: DataDir) -> Result<()> {
    let members = args
        .models
        .iter()
        .map(|spec| network_file(spec))
        .collect::<Result<Vec<_>>>()?;
    let data = dir.load()?;
    let split = members[0].meta.held_out.apply(&data.train)?;
    let model = combine(members, &split.validation)?;
    test_and_save(Model::Ensemble(model), &data.test, &args.out)
}

/// Combines the members and says how the ensemble reads and scores on validation.
fn combine(members: Vec<NeuralModel>, validation: &Digits) -> Result<EnsembleModel> {
    let model = EnsembleModel::combine(members, validation)?;
    print!(
        "{} members{}; validation accuracy {:.2}%, loss {:.4}; ",
        model.members.len(),
        if model.meta.shifted_views {
            ", each also reading the image moved one pixel four ways"
        } else {
            ""
        },
        100.0 * model.meta.validation_accuracy.unwrap_or(0.0),
        model.meta.validation_loss.unwrap_or(0.0)
    );
    Ok(model)
}

/// The validation images the arguments hold out of `all` (the training images, after --limit).
fn held_out(args: &TrainArgs, all: &Digits) -> HeldOut {
    HeldOut {
        seed: args.split_seed,
        images: args.validation,
        pool: all.len(),
    }
}

fn train_network(
    args: &TrainArgs,
    architecture: Architecture,
    seed: u64,
    all: &Digits,
    out: &Path,
) -> Result<NeuralModel> {
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
        let mut t = Trainer::new(architecture, config, seed);
        t.model.meta.held_out = held_out(args, all);
        t
    };
    if let Some(e) = args.epochs {
        trainer.model.meta.training.epochs = e;
    }
    let mut split = held_out(args, all).apply(all)?;
    let negatives = trainer.model.meta.training.touching_negatives;
    if negatives > 0 {
        split.train.extend(&touching_negatives(
            &split.train,
            negatives,
            trainer.model.meta.seed,
        ));
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
    let split = held_out(args, all).apply(all)?;
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
    /// A model file, or the name of a shipped model (cnn, ensemble, mlp, svm).
    #[arg(long, default_value = "cnn")]
    model: String,
    /// Digits to score: `test` for reported figures, or `validation` (the 5,000 training
    /// images the shipped models hold out) for choices, without touching the test set.
    #[arg(long, value_enum, default_value_t = DigitSource::Test)]
    source: DigitSource,
    /// Print one JSON object instead of a table.
    #[arg(long)]
    json: bool,
}

/// Which MNIST digits a command reads.
#[derive(Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum DigitSource {
    Test,
    /// The training images `train` holds out by default, as the shipped models did.
    Validation,
}

impl DigitSource {
    pub fn name(self) -> &'static str {
        match self {
            DigitSource::Test => "test",
            DigitSource::Validation => "validation",
        }
    }

    pub fn digits(self, mnist: Mnist) -> Result<Digits> {
        Ok(match self {
            DigitSource::Test => mnist.test,
            DigitSource::Validation => HeldOut::default().apply(&mnist.train)?.validation,
        })
    }
}

pub fn eval(args: EvalArgs, dir: DataDir) -> Result<()> {
    let mut model = shipped::resolve(&args.model)?;
    let digits = args.source.digits(dir.load()?)?;
    let e = evaluate(&mut model, &digits);
    if args.json {
        let mut v = serde_json::to_value(&e)?;
        v["model"] = serde_json::json!(args.model);
        v["source"] = serde_json::json!(args.source.name());
        v["architecture"] = serde_json::json!(model.kind());
        v["precision"] = serde_json::json!(digits_model::precision().effective().name());
        println!("{v}");
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
        digits_model::precision().effective().name(),
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
            if json {
                println!(
                    "{}",
                    serde_json::json!({"model": model, "threads": threads, "stages": stages,
                        "bulk_images": n, "bulk_images_per_second": bulk_ips,
                        "precision": digits_model::precision().effective().name()})
                );
            } else {
                let precision = digits_model::precision().effective().name();
                println!("{model} ({threads} threads, {precision}), medians of {runs} runs:");
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
