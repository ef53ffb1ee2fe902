//! `digits feedback`: the corrections database from the command line (import a labelled
//! folder, see what it holds, export it, delete a record, check the file).

use crate::predict_cmd::image_files;
use anyhow::{bail, Context, Result};
use clap::{Args, Subcommand};
use digits_data::{DataDir, Digits};
use digits_feedback::{digit_correction, Correction, Origin, Source, Store};
use digits_model::finetune::tilted_writer;
use digits_model::recognize::read_digit;
use digits_model::shipped;
use digits_vision::Limits;
use std::path::{Path, PathBuf};

#[derive(Args)]
pub struct FeedbackArgs {
    /// The corrections database.
    #[arg(long, env = "DIGITS_FEEDBACK_DB")]
    db: Option<PathBuf>,
    #[command(subcommand)]
    command: FeedbackCommand,
}

#[derive(Subcommand)]
pub enum FeedbackCommand {
    /// Store labelled images as corrections: a folder of 0/ .. 9/ subfolders of images, a
    /// folder with a labels.csv, or a CSV of file,label lines (files relative to the CSV).
    Import {
        source: PathBuf,
        /// The model that reads each image (its reading is stored beside the label).
        #[arg(long, default_value = "cnn")]
        model: String,
    },
    /// What the database holds: counts by digit, source and model.
    Stats {
        #[arg(long)]
        json: bool,
    },
    /// Write every correction as DIR/LABEL/ID.EXT (the original image, or the normalised 28x28
    /// as PNG when there was none) and DIR/records.csv; `import` reads it back.
    Export { dir: PathBuf },
    /// Delete records by id.
    Delete {
        #[arg(required = true)]
        ids: Vec<i64>,
    },
    /// SQLite's integrity check and every record's own checks.
    Check,
    /// Make a writer the shipped models read badly, to try the loop on: MNIST training digits
    /// turned by --tilt degrees, as OUT/corrections and OUT/held-out (PNGs and labels.csv;
    /// import the first, score the second with `digits realworld --dir`).
    Simulate {
        out: PathBuf,
        #[arg(long, default_value_t = 45.0)]
        tilt: f32,
        #[arg(long, default_value_t = 400)]
        count: usize,
        #[arg(long, default_value_t = 1000)]
        held_out: usize,
        #[arg(long, default_value_t = 1)]
        seed: u64,
    },
}

pub fn run(args: FeedbackArgs, data: impl FnOnce() -> Result<DataDir>) -> Result<()> {
    if let FeedbackCommand::Simulate {
        out,
        tilt,
        count,
        held_out,
        seed,
    } = &args.command
    {
        let mnist = data()?.load()?;
        let (corrections, held) = tilted_writer(&mnist, *tilt, *count, *held_out, *seed)?;
        write_folder(&out.join("corrections"), &corrections)?;
        write_folder(&out.join("held-out"), &held)?;
        println!(
            "wrote {} digits turned {tilt} degrees to {} and {} more to {}",
            corrections.len(),
            out.join("corrections").display(),
            held.len(),
            out.join("held-out").display()
        );
        return Ok(());
    }
    let db = args
        .db
        .context("give the database with --db FILE or DIGITS_FEEDBACK_DB")?;
    let mut store = Store::open(&db)?;
    match args.command {
        FeedbackCommand::Import { source, model } => import(&mut store, &source, &model),
        FeedbackCommand::Stats { json } => stats(&store, json),
        FeedbackCommand::Export { dir } => export(&store, &dir),
        FeedbackCommand::Delete { ids } => {
            for id in ids {
                if store.delete(id)? {
                    println!("deleted {id}");
                } else {
                    bail!("{}: there is no record {id}", db.display());
                }
            }
            Ok(())
        }
        FeedbackCommand::Simulate { .. } => unreachable!("handled above"),
        FeedbackCommand::Check => {
            store.integrity_check()?;
            let n = store.records()?.len();
            println!("{}: ok, {n} records", db.display());
            Ok(())
        }
    }
}

/// (file, label) pairs from a folder of digit subfolders or a CSV.
fn labelled_files(source: &Path) -> Result<Vec<(PathBuf, u8)>> {
    let mut out = Vec::new();
    if source.is_dir() {
        for d in 0..10u8 {
            let sub = source.join(d.to_string());
            if !sub.is_dir() {
                continue;
            }
            let entries = std::fs::read_dir(&sub)
                .with_context(|| format!("cannot read {}", sub.display()))?;
            out.extend(image_files(entries).into_iter().map(|f| (f, d)));
        }
        if out.is_empty() && source.join("labels.csv").is_file() {
            return labelled_files(&source.join("labels.csv"));
        }
        if out.is_empty() {
            bail!(
                "{}: no images in 0/ .. 9/ subfolders and no labels.csv (or give a CSV of \
                 file,label)",
                source.display()
            );
        }
    } else {
        let text = std::fs::read_to_string(source)
            .with_context(|| format!("cannot read {}", source.display()))?;
        let base = source.parent().unwrap_or(Path::new("."));
        for (i, line) in text.lines().enumerate() {
            let line = line.trim();
            if line.is_empty() || (i == 0 && line.to_ascii_lowercase().starts_with("file")) {
                continue;
            }
            let (file, label) = line.rsplit_once(',').with_context(|| {
                format!("{} line {}: expected file,label", source.display(), i + 1)
            })?;
            let label: u8 = label
                .trim()
                .parse()
                .ok()
                .filter(|d| *d < 10)
                .with_context(|| {
                    format!(
                        "{} line {}: label '{}' is not a digit 0-9",
                        source.display(),
                        i + 1,
                        label.trim()
                    )
                })?;
            out.push((base.join(file.trim()), label));
        }
    }
    Ok(out)
}

fn import(store: &mut Store, source: &Path, model_name: &str) -> Result<()> {
    let files = labelled_files(source)?;
    let mut model = shipped::resolve(model_name)?;
    let version = model.lineage().version;
    let limits = Limits::default();
    let mut all: Vec<Correction> = Vec::with_capacity(files.len());
    let mut skipped = 0;
    for (path, label) in &files {
        let read = std::fs::read(path)
            .map_err(|e| e.to_string())
            .and_then(|bytes| {
                read_digit(&mut model, &bytes, &limits)
                    .map(|r| (r, bytes))
                    .map_err(|e| e.to_string())
            });
        match read {
            Ok((reading, bytes)) => all.push(digit_correction(
                &reading,
                *label,
                Origin {
                    source: Source::Import,
                    model: model_name.to_string(),
                    model_version: version,
                    image: Some(bytes),
                },
            )),
            Err(e) => {
                skipped += 1;
                eprintln!("skipped {}: {e}", path.display());
            }
        }
    }
    let misread = all.iter().filter(|c| c.predicted != Some(c.label)).count();
    let ids = store.insert_all(&all)?;
    println!(
        "imported {} corrections into {} ({} were misread by {model_name}){}",
        ids.len(),
        store.path().display(),
        misread,
        if skipped > 0 {
            format!("; skipped {skipped} unreadable files")
        } else {
            String::new()
        }
    );
    Ok(())
}

fn stats(store: &Store, json: bool) -> Result<()> {
    let s = store.stats()?;
    let fp = store.fingerprint()?;
    if json {
        let mut v = serde_json::to_value(&s)?;
        v["sha256"] = serde_json::json!(fp.sha256);
        println!("{v}");
        return Ok(());
    }
    println!("{}: {} corrections", store.path().display(), s.records);
    if s.records == 0 {
        return Ok(());
    }
    println!("  misread by the model they corrected: {}", s.misread);
    let by_label: Vec<String> = s
        .by_label
        .iter()
        .enumerate()
        .map(|(d, n)| format!("{d}: {n}"))
        .collect();
    println!("  by digit:  {}", by_label.join("  "));
    let pairs = |v: &[(String, u64)]| {
        v.iter()
            .map(|(k, n)| format!("{k}: {n}"))
            .collect::<Vec<_>>()
            .join("  ")
    };
    println!("  by source: {}", pairs(&s.by_source));
    println!("  by model:  {}", pairs(&s.by_model));
    println!("  fingerprint: {}", fp.sha256);
    Ok(())
}

fn export(store: &Store, dir: &Path) -> Result<()> {
    let records = store.records()?;
    let mut csv = String::from(
        "id,file,label,predicted,confidence,model,model_version,source,position,created_ms\n",
    );
    for r in &records {
        let c = &r.correction;
        let sub = dir.join(c.label.to_string());
        std::fs::create_dir_all(&sub)
            .with_context(|| format!("cannot create {}", sub.display()))?;
        let (ext, bytes) = match c.image.as_deref().map(|b| (image::guess_format(b), b)) {
            Some((Ok(format), bytes)) => (
                format.extensions_str().first().copied().unwrap_or("img"),
                bytes.to_vec(),
            ),
            _ => ("png", normalized_png(&c.normalized)?),
        };
        let name = format!("{}/{}.{ext}", c.label, r.id);
        std::fs::write(dir.join(&name), bytes)
            .with_context(|| format!("cannot write {}", dir.join(&name).display()))?;
        let opt = |v: Option<String>| v.unwrap_or_default();
        csv += &format!(
            "{},{name},{},{},{},{},{},{},{},{}\n",
            r.id,
            c.label,
            opt(c.predicted.map(|p| p.to_string())),
            opt(c.confidence.map(|p| format!("{p:.4}"))),
            c.model.replace(',', " "),
            c.model_version,
            c.source.name(),
            opt(c.position.map(|p| p.to_string())),
            r.created_ms
        );
    }
    std::fs::create_dir_all(dir)?;
    std::fs::write(dir.join("records.csv"), csv)?;
    println!(
        "exported {} corrections to {}",
        records.len(),
        dir.display()
    );
    Ok(())
}

/// 28x28 digits as PNGs and a labels.csv, the layout `import` and `realworld --dir` read.
fn write_folder(dir: &Path, digits: &Digits) -> Result<()> {
    std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let mut labels = String::from("file,label\n");
    for i in 0..digits.len() {
        let name = format!("{i:05}.png");
        std::fs::write(dir.join(&name), normalized_png(digits.image(i))?)?;
        labels += &format!("{name},{}\n", digits.labels[i]);
    }
    std::fs::write(dir.join("labels.csv"), labels)?;
    Ok(())
}

/// A normalised 28x28 (white ink on black) as a PNG.
fn normalized_png(pixels: &[u8]) -> Result<Vec<u8>> {
    let img = image::GrayImage::from_raw(28, 28, pixels.to_vec())
        .context("a record's image is not 28x28")?;
    let mut out = Vec::new();
    img.write_to(&mut std::io::Cursor::new(&mut out), image::ImageFormat::Png)?;
    Ok(out)
}
