//! The `digits` binary as a user runs it. Tests that need the real MNIST files run when
//! DIGITS_DATA_DIR points at them (CI sets it) and say so when skipped.

use std::path::Path;
use std::process::{Command, Output};

fn digits(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_digits")).args(args).output().expect("binary runs")
}

fn text(o: &Output) -> String {
    format!("{}{}", String::from_utf8_lossy(&o.stdout), String::from_utf8_lossy(&o.stderr))
}

fn data_dir() -> Option<String> {
    let d = std::env::var("DIGITS_DATA_DIR").ok().filter(|d| Path::new(d).is_dir());
    if d.is_none() {
        eprintln!("DIGITS_DATA_DIR not set: skipping a test that needs MNIST");
    }
    d
}

fn json(o: &Output) -> serde_json::Value {
    assert!(o.status.success(), "{}", text(o));
    serde_json::from_slice(&o.stdout).unwrap_or_else(|e| panic!("{e}: {}", text(o)))
}

#[test]
fn shipped_models_meet_their_accuracy_bars() {
    let Some(_) = data_dir() else { return };
    let cnn = json(&digits(&["eval", "--model", "cnn", "--json"]));
    assert!(cnn["accuracy"].as_f64().unwrap() >= 0.995, "{cnn}");
    assert!(cnn["calibration_error"].as_f64().unwrap() <= 0.01, "{cnn}");
    let mlp = json(&digits(&["eval", "--model", "mlp", "--json"]));
    assert!(mlp["accuracy"].as_f64().unwrap() >= 0.983, "{mlp}");
}

#[test]
fn eval_prints_a_readable_report() {
    let Some(_) = data_dir() else { return };
    let o = digits(&["eval", "--model", "mlp"]);
    let t = text(&o);
    assert!(o.status.success(), "{t}");
    assert!(t.contains("confusion matrix") && t.contains("precision") && t.contains("images/s"), "{t}");
}

#[test]
fn smoke_training_saves_resumes_and_evaluates() {
    let Some(_) = data_dir() else { return };
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("ref.safetensors");
    let out_s = out.to_str().unwrap();
    let common = ["--model", "cnn-ref", "--limit", "3000", "--validation", "500", "--epochs", "2", "--out", out_s];
    let o = digits(&[&["train", "--max-batches", "23"][..], &common].concat());
    assert!(o.status.success(), "{}", text(&o));
    assert!(text(&o).contains("epoch  1/2"), "{}", text(&o));
    let o = digits(&[&["train", "--resume"][..], &common].concat());
    let t = text(&o);
    assert!(o.status.success() && t.contains("resuming") && t.contains("epoch  2/2"), "{t}");
    let e = json(&digits(&["eval", "--model", out_s, "--json"]));
    // 46 batches of 128 images: far from converged, far above chance.
    assert!(e["accuracy"].as_f64().unwrap() > 0.85, "{e}");
}

#[test]
fn bench_reports_images_per_second() {
    let Some(_) = data_dir() else { return };
    let v = json(&digits(&["bench", "train", "--model", "mlp", "--batches", "3", "--threads", "1", "--json"]));
    assert!(v["images_per_second"].as_f64().unwrap() > 0.0, "{v}");
}

#[test]
fn corrupt_model_file_gives_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("broken.safetensors");
    std::fs::write(&p, b"definitely not a model").unwrap();
    let o = digits(&["eval", "--model", p.to_str().unwrap(), "--data-dir", dir.path().to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(1));
    let t = text(&o);
    assert!(t.contains("broken.safetensors") && t.contains("not a digits model file"), "{t}");
    let o = digits(&["eval", "--model", "nonsense"]);
    assert!(text(&o).contains("not a shipped model"), "{}", text(&o));
}

#[test]
fn missing_data_is_explained() {
    let dir = tempfile::tempdir().unwrap();
    let o = digits(&["data", "verify", "--data-dir", dir.path().to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(1));
    let t = text(&o);
    assert!(t.contains("missing") && t.contains("digits data fetch"), "{t}");
}

#[test]
fn bad_arguments_are_rejected_without_a_panic() {
    let o = digits(&["train", "--model", "resnet"]);
    assert!(!o.status.success());
    assert!(text(&o).contains("unknown model 'resnet'"), "{}", text(&o));
    let o = digits(&["--threads", "0", "data", "info"]);
    assert!(text(&o).contains("--threads must be at least 1"), "{}", text(&o));
}
