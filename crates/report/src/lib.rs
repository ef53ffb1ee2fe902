//! The comparison report: the SVM, MLP and CNN trained (or loaded) on one split and measured
//! side by side, optionally beside the peers' programs, written as `report.md`, a self-contained
//! `index.html`, `results.json` and every figure as PNG and SVG.

pub mod compare;
mod figures;
mod page;
pub mod peers;

use digits_model::eval::Evaluation;
use digits_model::train::EpochStats;
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

pub use compare::{run, Options, Progress};
pub use peers::PeerResult;

#[derive(Debug, thiserror::Error)]
pub enum ReportError {
    #[error(transparent)]
    Model(#[from] digits_model::ModelError),
    #[error("training the svm failed: {0}")]
    Svm(#[from] digits_model::svm::SvmError),
    #[error(transparent)]
    Data(#[from] digits_data::DataError),
    #[error("{0}")]
    Invalid(String),
    #[error("drawing {figure}: {problem}")]
    Figure { figure: String, problem: String },
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("peers: {0}")]
    Peers(String),
}

/// One of our models, measured.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ModelResult {
    pub name: String,
    pub parameters: usize,
    /// Wall-clock seconds of training (the epochs, or the whole SVM fit); `None` for a reused
    /// model file that does not record it.
    pub train_seconds: Option<f32>,
    pub reused: bool,
    pub evaluation: Evaluation,
    pub history: Vec<EpochStats>,
    /// The most confident mistakes on the test set, most confident first.
    pub mistakes: Vec<Mistake>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Mistake {
    /// Index into the test set.
    pub index: usize,
    pub label: u8,
    pub predicted: u8,
    pub confidence: f32,
}

/// Everything the report shows; written as `results.json`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Comparison {
    pub quick: bool,
    pub threads: usize,
    pub machine: String,
    pub train_images: usize,
    pub validation_images: usize,
    pub test_images: usize,
    pub seed: u64,
    pub models: Vec<ModelResult>,
    pub peers: Vec<PeerResult>,
}

/// The files a report consists of, relative to its folder.
pub fn write(
    comparison: &Comparison,
    test_images: &[u8],
    dir: &Path,
) -> Result<Vec<PathBuf>, ReportError> {
    let figures = figures::all(comparison, test_images)?;
    let mut written = Vec::new();
    let mut save = |name: String, bytes: &[u8]| -> Result<(), ReportError> {
        let path = dir.join(&name);
        digits_model::file::write_atomic(&path, bytes)?;
        written.push(PathBuf::from(name));
        Ok(())
    };
    for f in &figures {
        save(format!("{}.png", f.stem), &f.png)?;
        save(format!("{}.svg", f.stem), f.svg.as_bytes())?;
    }
    let json = serde_json::to_string_pretty(comparison).expect("results serialise");
    save("results.json".into(), json.as_bytes())?;
    save(
        "report.md".into(),
        page::markdown(comparison, &figures).as_bytes(),
    )?;
    save(
        "index.html".into(),
        page::html(comparison, &figures).as_bytes(),
    )?;
    Ok(written)
}
