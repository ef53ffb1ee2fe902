//! `digits compare`: the SVM, MLP and CNN side by side (and the peers' programs with --peers).

use anyhow::{Context, Result};
use clap::Args;
use digits_data::DataDir;
use digits_report::{compare, peers, Options, Progress};
use indicatif::{ProgressBar, ProgressStyle};
use std::path::PathBuf;

#[derive(Args)]
pub struct CompareArgs {
    /// Models to compare, comma-separated.
    #[arg(long, value_delimiter = ',', default_value = "svm,mlp,cnn")]
    models: Vec<String>,
    /// A small subset and short training: the whole report in well under a minute.
    #[arg(long)]
    quick: bool,
    /// Load the models a previous run saved in OUT/models instead of training them again.
    #[arg(long)]
    reuse: bool,
    /// Report folder.
    #[arg(long, default_value = "reports/compare")]
    out: PathBuf,
    /// Seed for the validation split and training.
    #[arg(long, default_value_t = digits_data::split::SEED)]
    seed: u64,
    /// Epochs for the networks, ours and the peers' (default: each architecture's own).
    #[arg(long)]
    epochs: Option<usize>,
    /// Training images held out for validation.
    #[arg(long, default_value_t = digits_data::split::VALIDATION)]
    validation: usize,
    /// Also train and time the peers (scikit-learn, PyTorch, Keras) in this run.
    #[arg(long)]
    peers: bool,
    /// Python of the peers' environment (made by bench/peers/setup.sh).
    #[arg(long, default_value = "bench/.venv/bin/python")]
    python: PathBuf,
    /// The peers' script.
    #[arg(long, default_value = "bench/peers/peers.py")]
    peers_script: PathBuf,
}

struct Bars(Option<ProgressBar>);

impl Progress for Bars {
    fn start(&mut self, model: &str, steps: usize, unit: &'static str) {
        let bar = ProgressBar::new(steps as u64);
        bar.set_style(
            ProgressStyle::with_template(&format!(
                "{{prefix:>4}} {{bar:30}} {{pos}}/{{len}} {unit}  {{msg}}  eta {{eta}}"
            ))
            .expect("static template"),
        );
        bar.set_prefix(model.to_string());
        self.0 = Some(bar);
    }

    fn advance(&mut self, done: usize, message: &str) {
        if let Some(b) = &self.0 {
            b.set_position(done as u64);
            b.set_message(message.to_string());
        }
    }

    fn finish(&mut self, line: &str) {
        if let Some(b) = self.0.take() {
            b.finish_and_clear();
        }
        println!("{line}");
    }
}

pub fn compare(args: CompareArgs, dir: DataDir, threads: usize) -> Result<()> {
    let data = dir.load()?;
    let options = Options {
        models: args.models.clone(),
        quick: args.quick,
        reuse: args.reuse,
        out: args.out.clone(),
        seed: args.seed,
        epochs: args.epochs,
        validation: args.validation,
    };
    let (mut comparison, test) = compare::run(&options, &data, &mut Bars(None))?;
    if args.peers {
        println!(
            "running the peers: {} {}",
            args.python.display(),
            args.peers_script.display()
        );
        comparison.peers = peers::run(
            &args.python,
            &args.peers_script,
            &dir.path,
            &args.models,
            args.quick,
            args.epochs,
            threads,
        )?;
        for p in &comparison.peers {
            println!(
                "{} {}: test accuracy {:.2}%, trained in {:.1}s, predicted in {:.2}s",
                p.framework,
                p.model,
                100.0 * p.accuracy,
                p.train_seconds,
                p.predict_seconds
            );
        }
    }
    let files = digits_report::write(&comparison, &test.images, &args.out)
        .with_context(|| format!("writing the report to {}", args.out.display()))?;
    println!(
        "wrote {} files to {}; open {}",
        files.len(),
        args.out.display(),
        args.out.join("index.html").display()
    );
    Ok(())
}
