//! Scoring the reader on a folder of real images with their labels (`digits realworld --dir`):
//! other people's drawings and photos measure what MNIST cannot.

use crate::eval::{expected_calibration_error, groups_json, GroupScore};
use crate::model::Model;
use crate::recognize::{read_digit, read_many, Reading};
use digits_vision::{read_file, Limits};
use serde_json::json;
use std::collections::HashMap;
use std::path::{Path, PathBuf};

/// Labels file a scored folder holds: `file,label[,kind]`, one image a line after a header.
pub const LABELS: &str = "labels.csv";
/// Where a folder may say where each image came from: `file,label,kind,...`; its `kind`
/// column groups the figures when `labels.csv` has none.
pub const SOURCES: &str = "SOURCES.csv";

#[derive(Debug, thiserror::Error)]
pub enum FolderError {
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{path} line {line}: {problem}")]
    Malformed {
        path: PathBuf,
        line: usize,
        problem: String,
    },
}

/// One image of a labelled folder.
#[derive(Debug, Clone, PartialEq)]
pub struct LabelledImage {
    pub file: PathBuf,
    pub label: u8,
    /// The group it is counted in (`photo`, `canvas-28px`, ...; `all` where none is given).
    pub kind: String,
}

/// Rows of a CSV file with a header, split on commas (the labels files hold no quoted commas),
/// with their line numbers.
fn rows(path: &Path) -> Result<Vec<(usize, Vec<String>)>, FolderError> {
    let text = std::fs::read_to_string(path).map_err(|source| FolderError::Io {
        path: path.to_path_buf(),
        source,
    })?;
    Ok(text
        .lines()
        .enumerate()
        .skip(1)
        .filter(|(_, l)| !l.trim().is_empty())
        .map(|(i, l)| (i + 1, l.split(',').map(|c| c.trim().to_string()).collect()))
        .collect())
}

/// The images `dir/labels.csv` lists, in its order, each checked to be a file in `dir` with a
/// label 0-9.
pub fn labelled_folder(dir: &Path) -> Result<Vec<LabelledImage>, FolderError> {
    let labels = dir.join(LABELS);
    let sources = dir.join(SOURCES);
    let kinds: HashMap<String, String> = if sources.exists() {
        rows(&sources)?
            .into_iter()
            .filter_map(|(_, r)| Some((r.first()?.clone(), r.get(2)?.clone())))
            .collect()
    } else {
        HashMap::new()
    };
    rows(&labels)?
        .into_iter()
        .map(|(line, r)| {
            let bad = |problem: String| FolderError::Malformed {
                path: labels.clone(),
                line,
                problem,
            };
            let (Some(file), Some(label)) = (r.first(), r.get(1)) else {
                return Err(bad("expected file,label".into()));
            };
            let label = match label.parse::<u8>() {
                Ok(d) if d < 10 => d,
                _ => return Err(bad(format!("label '{label}' is not a digit 0-9"))),
            };
            if file.contains("..") || Path::new(file).is_absolute() {
                return Err(bad(format!("'{file}' is not a file inside the folder")));
            }
            let kind = r
                .get(2)
                .or_else(|| kinds.get(file))
                .cloned()
                .unwrap_or_else(|| "all".to_string());
            Ok(LabelledImage {
                file: dir.join(file),
                label,
                kind,
            })
        })
        .collect()
}

/// What the reader made of one labelled image: a reading, or why there was none.
pub struct Scored {
    pub image: LabelledImage,
    pub read: Result<Reading, String>,
}

impl Scored {
    pub fn correct(&self) -> bool {
        self.read
            .as_ref()
            .is_ok_and(|r| r.prediction.digit == self.image.label)
    }
}

/// Reads every image on `threads` workers, in the folder's order.
pub fn score_folder(model: &mut Model, images: &[LabelledImage], threads: usize) -> Vec<Scored> {
    let limits = Limits::default();
    read_many(model, images, threads, |m, image| Scored {
        image: image.clone(),
        read: read_file(&image.file, &limits)
            .map_err(|e| format!("cannot read: {e}"))
            .and_then(|bytes| read_digit(m, &bytes, &limits).map_err(|e| e.to_string())),
    })
}

/// Right answers out of all, per kind in first-seen order, then over the whole folder.
pub fn accuracy_by_kind(scored: &[Scored]) -> Vec<GroupScore> {
    let mut rows: Vec<GroupScore> = Vec::new();
    for s in scored {
        let at = match rows.iter().position(|r| r.name == s.image.kind) {
            Some(i) => i,
            None => {
                rows.push(GroupScore::new(&s.image.kind, 0, 0));
                rows.len() - 1
            }
        };
        rows[at].correct += usize::from(s.correct());
        rows[at].total += 1;
    }
    if rows.len() > 1 || rows.first().is_some_and(|r| r.name != "all") {
        let right = scored.iter().filter(|s| s.correct()).count();
        rows.push(GroupScore::new("all", right, scored.len()));
    }
    rows
}

/// A wrong reading at least this sure is a confident error: the kind a user would trust.
pub const CONFIDENT: f32 = 0.95;

/// How well a folder was read, and how well the reader knew it.
#[derive(Debug, Clone, PartialEq)]
pub struct FolderScore {
    pub kinds: Vec<GroupScore>,
    /// Expected calibration error of the confidence (an image with no reading counts as a
    /// wrong answer at confidence 0).
    pub calibration_error: f32,
    /// Wrong readings at [`CONFIDENT`] or more.
    pub confident_errors: usize,
}

/// The scores of a folder's readings.
pub fn summarize(scored: &[Scored]) -> FolderScore {
    let sure: Vec<(f32, bool)> = scored
        .iter()
        .map(|s| {
            let confidence = s.read.as_ref().map_or(0.0, |r| r.prediction.confidence);
            (confidence, s.correct())
        })
        .collect();
    FolderScore {
        kinds: accuracy_by_kind(scored),
        calibration_error: expected_calibration_error(&sure),
        confident_errors: sure.iter().filter(|(c, ok)| !ok && *c >= CONFIDENT).count(),
    }
}

/// A folder's scores and every misread file (with what was read and how surely, or why
/// nothing was), as `digits realworld --dir --json` prints them for `model`.
pub fn score_json(
    model: &str,
    folder: &Path,
    scored: &[Scored],
    summary: &FolderScore,
) -> serde_json::Value {
    let misread: Vec<serde_json::Value> = scored
        .iter()
        .filter(|s| !s.correct())
        .map(|s| {
            let mut v = json!({"file": s.image.file.display().to_string(),
                "label": s.image.label, "kind": s.image.kind});
            match &s.read {
                Ok(r) => {
                    v["read"] = json!(r.prediction.digit);
                    v["confidence"] = json!(r.prediction.confidence);
                }
                Err(e) => v["error"] = json!(e),
            }
            v
        })
        .collect();
    json!({"model": model, "folder": folder.display().to_string(),
        "kinds": groups_json(&summary.kinds), "calibration_error": summary.calibration_error,
        "confident_errors": summary.confident_errors, "misread": misread})
}

#[cfg(test)]
mod tests {
    use super::*;

    fn folder(labels: &str, sources: Option<&str>) -> tempfile::TempDir {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join(LABELS), labels).unwrap();
        if let Some(s) = sources {
            std::fs::write(dir.path().join(SOURCES), s).unwrap();
        }
        dir
    }

    #[test]
    fn labels_and_kinds_are_read_and_checked() {
        let dir = folder(
            "file,label\na.png,3\n\nb.jpg,7\n",
            Some("file,label,kind,repo\na.png,3,photo,x\nb.jpg,7,canvas,y\n"),
        );
        let images = labelled_folder(dir.path()).unwrap();
        assert_eq!(images.len(), 2);
        assert_eq!((images[0].label, images[0].kind.as_str()), (3, "photo"));
        assert_eq!(images[1].file, dir.path().join("b.jpg"));
        for (labels, problem) in [
            (
                "file,label\na.png,12\n",
                "line 2: label '12' is not a digit",
            ),
            ("file,label\na.png\n", "line 2: expected file,label"),
            ("file,label\n../x.png,1\n", "not a file inside the folder"),
        ] {
            let dir = folder(labels, None);
            let e = labelled_folder(dir.path()).unwrap_err().to_string();
            assert!(e.contains(problem), "{e}");
        }
        let empty = tempfile::tempdir().unwrap();
        let e = labelled_folder(empty.path()).unwrap_err().to_string();
        assert!(e.contains("labels.csv"), "{e}");
    }

    #[test]
    fn a_folder_is_scored_per_kind_and_in_all() {
        let dir = folder(
            "file,label,kind\nmissing.png,1,photo\nnot.png,2,canvas\n",
            None,
        );
        std::fs::write(dir.path().join("not.png"), b"not an image").unwrap();
        let mut model = crate::shipped::by_name("cnn").unwrap().unwrap();
        let images = labelled_folder(dir.path()).unwrap();
        let scored = score_folder(&mut model, &images, 2);
        assert!(scored[0]
            .read
            .as_ref()
            .is_err_and(|e| e.contains("cannot read")));
        assert!(scored[1]
            .read
            .as_ref()
            .is_err_and(|e| e.contains("not a supported image")));
        let summary = summarize(&scored);
        assert_eq!(
            summary.kinds,
            vec![
                GroupScore::new("photo", 0, 1),
                GroupScore::new("canvas", 0, 1),
                GroupScore::new("all", 0, 2)
            ]
        );
        assert_eq!(summary.confident_errors, 0);
    }
}
