//! The peers' side: `bench/peers/peers.py` trains and times the same three kinds of model with
//! scikit-learn, PyTorch and Keras on the same MNIST files, in the same session, and prints one
//! JSON object per model; their rows join ours in the report.

use crate::ReportError;
use serde::{Deserialize, Serialize};
use std::path::Path;
use std::process::{Command, Stdio};

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct PeerResult {
    /// scikit-learn, PyTorch or Keras.
    pub framework: String,
    /// svm, mlp or cnn.
    pub model: String,
    pub accuracy: f32,
    pub train_images: usize,
    pub test_images: usize,
    pub train_seconds: f32,
    pub predict_seconds: f32,
    pub threads: usize,
    /// What was trained, in the peer's own words (hyper-parameters, epochs).
    pub recipe: String,
}

/// Parses the script's output: one JSON object per line; other lines are ignored.
pub fn parse(output: &str) -> Result<Vec<PeerResult>, ReportError> {
    output
        .lines()
        .map(str::trim)
        .filter(|l| l.starts_with('{'))
        .map(|l| {
            serde_json::from_str(l)
                .map_err(|e| ReportError::Peers(format!("unreadable result line ({e}): {l}")))
        })
        .collect()
}

/// Runs the peers' script with `python` and returns its results; its progress goes to stderr.
#[allow(clippy::too_many_arguments)]
pub fn run(
    python: &Path,
    script: &Path,
    data_dir: &Path,
    models: &[String],
    quick: bool,
    epochs: Option<usize>,
    threads: usize,
) -> Result<Vec<PeerResult>, ReportError> {
    let mut cmd = Command::new(python);
    cmd.arg(script)
        .arg("--data-dir")
        .arg(data_dir)
        .arg("--models")
        .arg(models.join(","))
        .arg("--threads")
        .arg(threads.to_string())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit());
    if quick {
        cmd.arg("--quick");
    }
    if let Some(e) = epochs {
        cmd.arg("--epochs").arg(e.to_string());
    }
    let out = cmd.output().map_err(|e| {
        ReportError::Peers(format!(
            "cannot run {} ({e}); create the peers' environment with bench/peers/setup.sh",
            python.display()
        ))
    })?;
    if !out.status.success() {
        return Err(ReportError::Peers(format!(
            "{} {} failed ({})",
            python.display(),
            script.display(),
            out.status
        )));
    }
    parse(&String::from_utf8_lossy(&out.stdout))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_result_lines_and_rejects_broken_ones() {
        let out = "loading...\n{\"framework\":\"PyTorch\",\"model\":\"cnn\",\"accuracy\":0.99,\"train_images\":100,\"test_images\":50,\"train_seconds\":3.5,\"predict_seconds\":0.2,\"threads\":2,\"recipe\":\"Adam\"}\n";
        let r = parse(out).unwrap();
        assert_eq!(
            (r.len(), r[0].framework.as_str(), r[0].train_seconds),
            (1, "PyTorch", 3.5)
        );
        assert!(parse("{\"framework\": 1}").is_err());
        assert!(run(
            Path::new("/nonexistent/python"),
            Path::new("x.py"),
            Path::new("."),
            &[],
            true,
            None,
            1
        )
        .unwrap_err()
        .to_string()
        .contains("setup.sh"));
    }
}
