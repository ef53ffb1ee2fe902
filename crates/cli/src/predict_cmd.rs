//! `digits predict` and `digits realworld`.

use crate::model_cmd::DigitSource;
use anyhow::{bail, Context, Result};
use clap::Args;
use digits_data::DataDir;
use digits_model::eval::GroupScore;
use digits_model::folder::{labelled_folder, score_folder, score_json, summarize, CONFIDENT};
use digits_model::recognize::{read_answer, read_many, Answer, NumberReading, Reading};
use digits_model::synthetic::{score_synthetic, Misread, SyntheticRun};
use digits_model::{shipped, Model};
use digits_vision::synth::Style;
use digits_vision::{read_file, Limits};
use indicatif::ProgressBar;
use serde_json::json;
use std::io::Read;
use std::path::{Path, PathBuf};

#[derive(Args)]
pub struct PredictArgs {
    /// Image files, folders of images, or - for standard input.
    #[arg(required = true)]
    inputs: Vec<String>,
    /// A model file, or the name of a shipped model (cnn, cnn-large, ensemble, ensemble-large, mlp, svm).
    #[arg(long, default_value = "cnn")]
    model: String,
    /// One JSON object per line.
    #[arg(long)]
    json: bool,
    /// Also list the K most likely digits.
    #[arg(long, default_value_t = 1)]
    top: usize,
    /// Draw the normalised 28x28 the model saw.
    #[arg(long)]
    show: bool,
    /// Read a multi-digit number written on one line.
    #[arg(long)]
    number: bool,
}

const IMAGE_EXTENSIONS: [&str; 8] = ["png", "jpg", "jpeg", "bmp", "gif", "webp", "tif", "tiff"];

/// The image files of a folder's listing, by name.
pub(crate) fn image_files(entries: std::fs::ReadDir) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = entries
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|f| {
            f.extension()
                .and_then(|e| e.to_str())
                .is_some_and(|e| IMAGE_EXTENSIONS.contains(&e.to_ascii_lowercase().as_str()))
        })
        .collect();
    files.sort();
    files
}

/// Expands folders into the image files they hold (sorted), keeping files and `-` as given.
fn expand(inputs: &[String]) -> Vec<Result<String, String>> {
    let mut out = Vec::new();
    for i in inputs {
        let p = Path::new(i);
        if i != "-" && p.is_dir() {
            match std::fs::read_dir(p) {
                Ok(entries) => out.extend(
                    image_files(entries)
                        .into_iter()
                        .map(|f| Ok(f.display().to_string())),
                ),
                Err(e) => out.push(Err(format!("{i}: {e}"))),
            }
        } else {
            out.push(Ok(i.clone()));
        }
    }
    out
}

fn read_input(name: &str, limits: &Limits) -> Result<Vec<u8>> {
    if name == "-" {
        let mut bytes = Vec::new();
        std::io::stdin()
            .take(limits.max_bytes as u64 + 1)
            .read_to_end(&mut bytes)?;
        return Ok(bytes);
    }
    Ok(read_file(Path::new(name), limits)?)
}

fn ascii(pixels: &[f32]) -> String {
    const RAMP: &[u8] = b" .:-=+*#%@";
    pixels
        .chunks(28)
        .map(|row| {
            row.iter()
                .map(|&v| RAMP[((v * 9.0).round() as usize).min(9)] as char)
                .collect::<String>()
                + "\n"
        })
        .collect()
}

fn digit_json(r: &Reading, k: usize) -> serde_json::Value {
    json!({
        "digit": r.prediction.digit,
        "confidence": r.prediction.confidence,
        "uncertain": r.uncertain,
        "probabilities": r.prediction.probabilities,
        "top": r.top(k).iter().map(|(d, p)| json!({"digit": d, "probability": p})).collect::<Vec<_>>(),
        "bbox": r.normalized.bbox,
    })
}

fn print_digit(name: &str, r: &Reading, args: &PredictArgs) {
    if args.json {
        let mut v = digit_json(r, args.top);
        v["file"] = json!(name);
        println!("{v}");
        return;
    }
    let flag = if r.uncertain { " uncertain" } else { "" };
    let mut line = format!(
        "{name}: {} ({:.1}%){flag}",
        r.prediction.digit,
        100.0 * r.prediction.confidence
    );
    if args.top > 1 {
        let rest: Vec<String> = r
            .top(args.top)
            .iter()
            .map(|(d, p)| format!("{d} {:.1}%", 100.0 * p))
            .collect();
        line += &format!("  [{}]", rest.join(", "));
    }
    println!("{line}");
    if args.show {
        print!("{}", ascii(&r.normalized.pixels));
    }
}

fn print_number(name: &str, n: &NumberReading, args: &PredictArgs) {
    if args.json {
        let digits: Vec<_> = n.digits.iter().map(|d| digit_json(d, args.top)).collect();
        println!(
            "{}",
            json!({"file": name, "number": n.text, "confidence": n.confidence, "uncertain": n.uncertain, "digits": digits})
        );
        return;
    }
    let flag = if n.uncertain { " uncertain" } else { "" };
    let each: Vec<String> = n
        .digits
        .iter()
        .map(|d| format!("{:.1}%", 100.0 * d.prediction.confidence))
        .collect();
    println!(
        "{name}: {} ({:.1}%; digits {}){flag}",
        n.text,
        100.0 * n.confidence,
        each.join(" ")
    );
    if args.show {
        for d in &n.digits {
            print!("{}", ascii(&d.normalized.pixels));
        }
    }
}

/// Files read together on every core before their answers are printed, in input order.
const PREDICT_CHUNK: usize = 256;

fn answer(model: &mut Model, name: &str, number: bool, limits: &Limits) -> Result<Answer> {
    let bytes = read_input(name, limits).with_context(|| format!("{name}: cannot read"))?;
    read_answer(model, &bytes, limits, number).with_context(|| shown_name(name).to_string())
}

fn shown_name(name: &str) -> &str {
    if name == "-" {
        "<stdin>"
    } else {
        name
    }
}

pub fn predict(args: PredictArgs, threads: usize) -> Result<()> {
    let mut model = shipped::resolve(&args.model)?;
    let limits = Limits::default();
    let mut failures = 0;
    let inputs = expand(&args.inputs);
    for chunk in inputs.chunks(PREDICT_CHUNK) {
        let answers = read_many(&mut model, chunk, threads, |m, input| {
            input
                .clone()
                .map_err(anyhow::Error::msg)
                .and_then(|name| Ok((answer(m, &name, args.number, &limits)?, name)))
        });
        for result in answers {
            match result {
                Ok((Answer::Digit(r), name)) => print_digit(shown_name(&name), &r, &args),
                Ok((Answer::Number(n), name)) => print_number(shown_name(&name), &n, &args),
                Err(e) => {
                    failures += 1;
                    if args.json {
                        let text = format!("{e:#}");
                        let (file, msg) = text.split_once(": ").unwrap_or(("", &text));
                        println!("{}", json!({"file": file, "error": msg}));
                    }
                    eprintln!("error: {e:#}");
                }
            }
        }
    }
    if failures > 0 {
        bail!("{failures} input(s) could not be read");
    }
    Ok(())
}

#[derive(Args)]
pub struct RealworldArgs {
    /// A model file, or the name of a shipped model (cnn, cnn-large, ensemble, ensemble-large, mlp, svm).
    #[arg(long, default_value = "cnn")]
    model: String,
    /// Test digits redrawn per style.
    #[arg(long, default_value_t = 1000)]
    per_style: usize,
    /// Synthetic numbers of 2-6 test digits.
    #[arg(long, default_value_t = 1000)]
    numbers: usize,
    /// How the numbers are written (the digits' styles; a rotated number stays level).
    #[arg(long, default_value = "canvas", value_parser = Style::parse)]
    number_style: Style,
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Digits to redraw: `test` for reported figures, or `validation` (the training images the
    /// shipped models hold out: `train`'s default split) for tuning the reader without touching
    /// the test set.
    #[arg(long, default_value = "test", value_parser = crate::model_cmd::parse_source)]
    source: DigitSource,
    /// Write every misread image into this folder (named with the right and the read answer;
    /// with --dir, the original beside the 28x28 the model saw).
    #[arg(long)]
    save_failures: Option<PathBuf>,
    /// Score a folder of real images instead: its labels.csv (file,label[,kind]; kinds also from
    /// SOURCES.csv) says what each holds. Lists every misread file with what was read.
    #[arg(long, conflicts_with_all = ["per_style", "numbers", "number_style", "source"])]
    dir: Option<PathBuf>,
    #[arg(long)]
    json: bool,
}

/// One group as a table row: its name in a column `width` wide, accuracy and counts.
fn print_score_row(width: usize, g: &GroupScore) {
    let percent = 100.0 * g.accuracy();
    println!(
        "{:<width$} {percent:>8.2}%  ({}/{})",
        g.name, g.correct, g.total
    );
}

/// The groups as a table under a heading.
fn print_score_rows(heading: &str, width: usize, rows: &[GroupScore]) {
    println!("{heading:<width$} {:>9}", "accuracy");
    for g in rows {
        print_score_row(width, g);
    }
}

/// `digits realworld --dir`: the reader on a labelled folder of real images.
fn realworld_folder(args: &RealworldArgs, folder: &Path, threads: usize) -> Result<()> {
    let mut model = shipped::resolve(&args.model)?;
    let images = labelled_folder(folder)?;
    let scored = score_folder(&mut model, &images, threads);
    let summary = summarize(&scored);
    if let Some(out) = &args.save_failures {
        std::fs::create_dir_all(out)?;
        for s in scored.iter().filter(|s| !s.correct()) {
            let Ok(r) = &s.read else { continue };
            let stem = s
                .image
                .file
                .file_stem()
                .unwrap_or_default()
                .to_string_lossy();
            let name = format!("{stem}-is{}-read{}.png", s.image.label, r.prediction.digit);
            let picture = read_file(&s.image.file, &Limits::default())
                .map_err(|e| e.to_string())
                .and_then(|b| {
                    digits_vision::decode(&b, &Limits::default()).map_err(|e| e.to_string())
                })
                .map(|original| digits_vision::beside(&original, &r.normalized.pixels));
            match picture.map(|p| p.save(out.join(&name))) {
                Ok(Ok(())) => {}
                Ok(Err(e)) => tracing::warn!("cannot save {name}: {e}"),
                Err(e) => tracing::warn!("cannot draw {name}: {e}"),
            }
        }
    }
    if args.json {
        let v = score_json(&args.model, folder, &scored, &summary);
        println!("{v}");
        return Ok(());
    }
    print_score_rows("kind", 28, &summary.kinds);
    println!(
        "calibration error {:.2}%; wrong at confidence {:.0}% or more: {}",
        100.0 * summary.calibration_error,
        100.0 * CONFIDENT,
        summary.confident_errors
    );
    for s in scored.iter().filter(|s| !s.correct()) {
        let file = s.image.file.display();
        match &s.read {
            Ok(r) => println!(
                "misread {file} ({}): is {}, read {} ({:.1}%)",
                s.image.kind,
                s.image.label,
                r.prediction.digit,
                100.0 * r.prediction.confidence
            ),
            Err(e) => println!(
                "misread {file} ({}): is {}, {e}",
                s.image.kind, s.image.label
            ),
        }
    }
    Ok(())
}

pub fn realworld(args: RealworldArgs, dir: DataDir, threads: usize) -> Result<()> {
    if let Some(folder) = &args.dir {
        return realworld_folder(&args, folder, threads);
    }
    let mut model = shipped::resolve(&args.model)?;
    let digits = args.source.load(&dir)?;
    let run = SyntheticRun {
        per_style: args.per_style,
        numbers: args.numbers,
        number_style: args.number_style,
        seed: args.seed,
    };
    // Saturating: counts past the library's limit are refused there, not overflowed here.
    let images = run
        .per_style
        .saturating_mul(Style::ALL.len())
        .saturating_add(run.numbers);
    let bar = ProgressBar::new(images as u64);
    if let Some(d) = &args.save_failures {
        std::fs::create_dir_all(d)?;
    }
    let save = |m: Misread| {
        if let Some(d) = &args.save_failures {
            if let Err(e) = std::fs::write(d.join(&m.name), &m.bytes) {
                tracing::warn!("cannot save {}: {e}", m.name);
            }
        }
    };
    let source = args.source.name();
    let progress = || {
        bar.inc(1);
        true
    };
    let score = score_synthetic(&mut model, &digits, source, &run, threads, &progress, &save)?;
    bar.finish_and_clear();
    if args.json {
        println!("{}", score.to_json(&args.model));
    } else {
        // A part that was asked for none (`--per-style 0`, `--numbers 0`) has no row.
        if score.digits.total > 0 {
            // Beside each style's misreads, how many the model makes on the MNIST image too:
            // the rest are the redraw's and the reader's.
            println!(
                "{:<14} {:>9}  {:<15} misread as MNIST too",
                "style", "accuracy", ""
            );
            let all: usize = score.misread_as_mnist.iter().sum();
            let rows = score.styles.iter().zip(&score.misread_as_mnist);
            for (g, &as_mnist) in rows.chain([(&score.digits, &all)]) {
                let counts = format!("({}/{})", g.correct, g.total);
                let wrong = g.total - g.correct;
                println!(
                    "{:<14} {:>8.2}%  {counts:<15} {as_mnist} of {wrong}",
                    g.name,
                    100.0 * g.accuracy()
                );
            }
        }
        if score.numbers.total > 0 {
            println!(
                "{:<14} {:>8.2}%  ({}/{} read exactly; calibration error of their confidence {:.2}%)",
                "numbers",
                100.0 * score.numbers.accuracy(),
                score.numbers.correct,
                score.numbers.total,
                100.0 * score.number_calibration_error
            );
        }
    }
    Ok(())
}
