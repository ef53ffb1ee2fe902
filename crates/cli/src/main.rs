//! `digits`: the command-line front end. It parses arguments, draws progress and prints
//! results; all the work happens in the library crates.

mod compare_cmd;
mod data_cmd;
mod feedback_cmd;
mod gui_cmd;
mod model_cmd;
mod predict_cmd;
mod serve_cmd;

use anyhow::Result;
use clap::{Parser, Subcommand};
use std::path::PathBuf;

#[derive(Parser)]
#[command(
    name = "digits",
    version,
    about = "Handwritten digit recognition on MNIST"
)]
struct Cli {
    /// Worker threads (default: all cores).
    #[arg(long, global = true)]
    threads: Option<usize>,
    /// Folder with the MNIST files [env: DIGITS_DATA_DIR; default: the per-user cache].
    #[arg(long, global = true)]
    data_dir: Option<PathBuf>,
    /// Arithmetic of the networks' convolutions when they predict: bf16 multiplies in
    /// bfloat16 with f32 sums where the CPU has AVX-512 BF16 (f32 elsewhere), f32 throughout
    /// otherwise; auto takes whichever is faster on this CPU (`digits bench predict` says
    /// which and why). Training is always f32.
    #[arg(long, global = true, value_enum, default_value_t = PrecisionArg::Auto, env = "DIGITS_PRECISION")]
    precision: PrecisionArg,
    #[command(subcommand)]
    command: Command,
}

#[derive(Clone, Copy, clap::ValueEnum)]
enum PrecisionArg {
    Auto,
    Bf16,
    F32,
}

#[derive(Subcommand)]
enum Command {
    /// Download, verify or describe the MNIST files.
    #[command(subcommand)]
    Data(data_cmd::DataCommand),
    /// Train a model on MNIST.
    Train(model_cmd::TrainArgs),
    /// Combine trained networks into one ensemble model.
    Ensemble(model_cmd::EnsembleArgs),
    /// Write a network or ensemble as an ONNX file, for ONNX Runtime and other engines.
    Export(model_cmd::ExportArgs),
    /// Evaluate a model on the MNIST test set (or the held-out validation digits).
    Eval(model_cmd::EvalArgs),
    /// Read the digit (or with --number, the number) in image files.
    Predict(predict_cmd::PredictArgs),
    /// Accuracy on realistic drawings and photos made from the MNIST test set.
    Realworld(predict_cmd::RealworldArgs),
    /// Train (or reuse) the SVM, MLP and CNN on one split and write a comparison report.
    Compare(compare_cmd::CompareArgs),
    /// Open the desktop app: draw a digit or a number and watch it read.
    Gui(gui_cmd::GuiArgs),
    /// Serve the drawing page and the JSON API.
    Serve(serve_cmd::ServeArgs),
    /// The corrections users gave: import, stats, export, delete, check.
    Feedback(feedback_cmd::FeedbackArgs),
    /// Measure speed.
    #[command(subcommand)]
    Bench(model_cmd::BenchCommand),
}

/// Restores the default SIGPIPE action so `digits ... | head` ends quietly, as Unix tools do,
/// instead of failing on a closed stdout.
#[cfg(unix)]
fn quiet_broken_pipe() {
    extern "C" {
        fn signal(signum: i32, handler: usize) -> usize;
    }
    const SIGPIPE: i32 = 13;
    const SIG_DFL: usize = 0;
    // SAFETY: setting a signal's disposition to the default is async-signal-safe and touches no
    // Rust state.
    unsafe {
        signal(SIGPIPE, SIG_DFL);
    }
}

#[cfg(not(unix))]
fn quiet_broken_pipe() {}

/// glibc's malloc hands every freed buffer over 128 KiB (a decoded image, its ink map) straight
/// back to the OS and faults it in again, zeroed, on the next request. Raising both the mmap and
/// the trim threshold keeps them in the heap for reuse (bench/load/run.sh, BENCHMARKS.md).
fn keep_freed_memory() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: mallopt only changes allocator tuning; called before any other thread starts.
    unsafe {
        libc::mallopt(libc::M_MMAP_THRESHOLD, 32 << 20);
        libc::mallopt(libc::M_TRIM_THRESHOLD, 256 << 20);
    }
}

fn main() {
    keep_freed_memory();
    quiet_broken_pipe();
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("DIGITS_LOG")
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn")),
        )
        .with_writer(std::io::stderr)
        .init();
    let cli = Cli::parse();
    if let Err(e) = run(cli) {
        eprintln!("error: {e:#}");
        std::process::exit(1);
    }
}

fn run(cli: Cli) -> Result<()> {
    let threads = cli
        .threads
        .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()));
    anyhow::ensure!(threads > 0, "--threads must be at least 1");
    digits_model::set_precision(match cli.precision {
        PrecisionArg::Auto => digits_model::Precision::Auto,
        PrecisionArg::Bf16 => digits_model::Precision::Bf16,
        PrecisionArg::F32 => digits_model::Precision::F32,
    });
    rayon::ThreadPoolBuilder::new()
        .num_threads(threads)
        .build_global()?;
    let data_dir = || digits_data::DataDir::resolve(cli.data_dir.clone());
    match cli.command {
        Command::Data(cmd) => data_cmd::run(cmd, data_dir()?),
        Command::Train(args) => model_cmd::train(args, data_dir()?),
        Command::Ensemble(args) => model_cmd::ensemble(args, data_dir()?),
        Command::Export(args) => model_cmd::export(args),
        Command::Eval(args) => model_cmd::eval(args, data_dir()?),
        Command::Predict(args) => predict_cmd::predict(args, threads),
        Command::Realworld(args) => predict_cmd::realworld(args, data_dir()?, threads),
        Command::Compare(args) => compare_cmd::compare(args, data_dir()?, threads),
        Command::Gui(args) => gui_cmd::gui(args),
        Command::Serve(args) => serve_cmd::serve(args, threads),
        Command::Feedback(args) => feedback_cmd::run(args, || Ok(data_dir()?)),
        Command::Bench(cmd) => model_cmd::bench(cmd, data_dir()?, threads),
    }
}
