//! The trained models that ship inside the binary, so predicting and serving work before any
//! training. They are built by `digits train` (see the README) and verified like any file.

use crate::file::{self, ModelError};
use crate::judge::Judge;
use crate::model::Model;
use std::path::{Path, PathBuf};

const CNN: &[u8] = include_bytes!("../../../models/cnn.safetensors");
const CNN_LARGE: &[u8] = include_bytes!("../../../models/cnn-large.safetensors");
const MLP: &[u8] = include_bytes!("../../../models/mlp.safetensors");
const SVM: &[u8] = include_bytes!("../../../models/svm.safetensors");
const ENSEMBLE: &[u8] = include_bytes!("../../../models/ensemble.safetensors");
const ENSEMBLE_LARGE: &[u8] = include_bytes!("../../../models/ensemble-large.safetensors");
const JUDGE: &[u8] = include_bytes!("../../../models/judge.safetensors");

/// Names accepted wherever a model is chosen, besides a path to a file.
pub const NAMES: [&str; 6] = [
    "cnn",
    "cnn-large",
    "ensemble",
    "ensemble-large",
    "mlp",
    "svm",
];

/// The shipped model called `name`, if there is one.
pub fn by_name(name: &str) -> Option<Result<Model, ModelError>> {
    let bytes = match name {
        "cnn" => CNN,
        "cnn-large" => CNN_LARGE,
        "mlp" => MLP,
        "svm" => SVM,
        "ensemble" => ENSEMBLE,
        "ensemble-large" => ENSEMBLE_LARGE,
        _ => return None,
    };
    Some(file::load_bytes(
        Path::new(&format!("<shipped {name} model>")),
        bytes,
    ))
}

/// The number reader's judge of where digits begin and end.
pub fn judge() -> Result<Judge, ModelError> {
    file::load_judge_bytes(Path::new("<shipped judge>"), JUDGE)
}

/// A model named on the command line: a file if one exists at `spec`, else a shipped model.
pub fn resolve(spec: &str) -> Result<Model, ModelError> {
    let path = PathBuf::from(spec);
    if path.exists() {
        return file::load(&path);
    }
    by_name(spec).unwrap_or_else(|| {
        Err(ModelError::Invalid {
            path,
            problem: format!(
                "no such file, and not a shipped model (one of: {})",
                NAMES.join(", ")
            ),
        })
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shipped_networks_match_the_architectures_they_name() {
        for name in NAMES {
            let networks = match by_name(name).unwrap().unwrap() {
                Model::Neural(m) => vec![m],
                Model::Ensemble(e) => e.members,
                Model::Svm(_) => continue,
            };
            for m in networks {
                assert_eq!(m.meta.layers, m.architecture().layers(), "{name}");
                assert_eq!(m.meta.held_out, Default::default(), "{name}");
            }
        }
    }
}
