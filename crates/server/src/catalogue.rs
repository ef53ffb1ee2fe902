//! The models a server offers, and swapping in new versions without a restart.
//!
//! A [`Catalogue`] is immutable; a reload builds a new one and swaps the pointer. A request takes
//! the catalogue of the moment it arrives and finishes on the models it holds, so a reload never
//! fails or changes a request in flight; the inference threads copy a model the first time a
//! request needs a version they have not seen ([`crate::workers::Cache`]).

use digits_model::finetune::describe;
use digits_model::{file, shipped, Model};
use serde_json::{json, Value};
use sha2::{Digest, Sha256};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

/// Identifies one loaded version of a model across reloads (for the threads' caches).
static NEXT_ID: AtomicU64 = AtomicU64::new(1);

/// One model as served.
#[derive(Clone)]
pub struct Served {
    pub model: Arc<Model>,
    /// The file it came from in the models folder (shipped models have none).
    pub file: Option<PathBuf>,
    /// SHA-256 of the file's contents: a reload swaps in only files whose contents changed.
    pub file_sha256: String,
    /// SHA-256 of the weights: what a fine-tuned model's lineage names as its base.
    pub weights_sha256: String,
    pub(crate) id: u64,
}

impl Served {
    pub fn new(model: Model, file: Option<PathBuf>, file_sha256: String) -> Self {
        Served {
            weights_sha256: file::weights_sha256(&model),
            model: Arc::new(model),
            file,
            file_sha256,
            id: NEXT_ID.fetch_add(1, Ordering::Relaxed),
        }
    }

    /// A model held in memory, not read from the models folder.
    pub fn in_memory(model: Model) -> Self {
        Served::new(model, None, String::new())
    }
}

/// The models on offer at one moment, by name, and the default.
#[derive(Clone)]
pub struct Catalogue {
    pub models: BTreeMap<String, Served>,
    pub default: String,
}

#[derive(Debug, thiserror::Error)]
pub enum CatalogueError {
    #[error(transparent)]
    Model(#[from] digits_model::ModelError),
    #[error("{0}: {1}")]
    Folder(PathBuf, std::io::Error),
    #[error("the default model '{0}' is not among the models served ({1})")]
    NoDefault(String, String),
}

/// What a reload did.
#[derive(Debug, Default, Clone, serde::Serialize)]
pub struct ReloadReport {
    pub loaded: Vec<String>,
    pub unchanged: Vec<String>,
    pub removed: Vec<String>,
    /// Files that could not be loaded (the model they would have replaced stays), with why.
    pub refused: Vec<Refused>,
}

#[derive(Debug, Clone, serde::Serialize)]
pub struct Refused {
    pub file: String,
    pub error: String,
}

impl Catalogue {
    /// The shipped models and, from `dir`, every `*.safetensors` model file (named by its
    /// stem; a file named like a shipped model replaces it). A file that does not load stops
    /// the start: an operator should know at once.
    pub fn load(default: &str, dir: Option<&Path>) -> Result<Catalogue, CatalogueError> {
        let mut models = BTreeMap::new();
        for name in shipped::NAMES {
            models.insert(name.to_string(), Served::in_memory(shipped::resolve(name)?));
        }
        if let Some(dir) = dir {
            for (name, path) in model_files(dir)? {
                let bytes =
                    std::fs::read(&path).map_err(|e| CatalogueError::Folder(path.clone(), e))?;
                let model = file::load_bytes(&path, &bytes)?;
                models.insert(name, Served::new(model, Some(path), sha256_hex(&bytes)));
            }
        }
        let default = if models.contains_key(default) {
            default.to_string()
        } else if Path::new(default).is_file() {
            // A model file given by path joins the catalogue under its stem.
            let path = PathBuf::from(default);
            let bytes =
                std::fs::read(&path).map_err(|e| CatalogueError::Folder(path.clone(), e))?;
            let name = path
                .file_stem()
                .map_or("custom".into(), |s| s.to_string_lossy().into_owned());
            let model = file::load_bytes(&path, &bytes)?;
            models.insert(name.clone(), Served::new(model, None, sha256_hex(&bytes)));
            name
        } else {
            return Err(CatalogueError::NoDefault(
                default.to_string(),
                models.keys().cloned().collect::<Vec<_>>().join(", "),
            ));
        };
        Ok(Catalogue { models, default })
    }

    /// Models held in memory (tests, embedding), the first one named `default`.
    pub fn from_models(models: BTreeMap<String, Model>, default: &str) -> Catalogue {
        Catalogue {
            models: models
                .into_iter()
                .map(|(n, m)| (n, Served::in_memory(m)))
                .collect(),
            default: default.to_string(),
        }
    }

    /// The catalogue after reading `dir` again: new and changed files loaded, files gone
    /// removed (shipped models they had replaced come back), broken files refused with the
    /// model they would replace kept, unchanged ones kept as they are.
    pub fn reloaded(&self, dir: &Path) -> Result<(Catalogue, ReloadReport), CatalogueError> {
        let mut next = self.clone();
        let mut report = ReloadReport::default();
        let files = model_files(dir)?;
        for (name, path) in &files {
            let bytes = match std::fs::read(path) {
                Ok(b) => b,
                Err(e) => {
                    report.refused.push(Refused {
                        file: path.display().to_string(),
                        error: e.to_string(),
                    });
                    continue;
                }
            };
            let sha = sha256_hex(&bytes);
            if self.models.get(name).is_some_and(|s| s.file_sha256 == sha) {
                report.unchanged.push(name.clone());
                continue;
            }
            match file::load_bytes(path, &bytes) {
                Ok(model) => {
                    next.models
                        .insert(name.clone(), Served::new(model, Some(path.clone()), sha));
                    report.loaded.push(name.clone());
                }
                Err(e) => report.refused.push(Refused {
                    file: path.display().to_string(),
                    error: e.to_string(),
                }),
            }
        }
        let gone: Vec<String> = self
            .models
            .iter()
            .filter(|(name, s)| s.file.is_some() && !files.contains_key(*name))
            .map(|(name, _)| name.clone())
            .collect();
        for name in gone {
            match shipped::by_name(&name) {
                Some(shipped) => {
                    next.models
                        .insert(name.clone(), Served::in_memory(shipped?));
                }
                None if name == self.default => {
                    report.refused.push(Refused {
                        file: name.clone(),
                        error: "the default model's file is gone; it is kept until a file \
                                replaces it"
                            .into(),
                    });
                    continue;
                }
                None => {
                    next.models.remove(&name);
                }
            }
            report.removed.push(name);
        }
        Ok((next, report))
    }

    /// `GET /api/v1/models`.
    pub fn describe(&self) -> Value {
        let models: Vec<Value> = self
            .models
            .iter()
            .map(|(name, s)| {
                let m = &s.model;
                let lineage = m.lineage();
                json!({
                    "name": name,
                    "architecture": m.kind(),
                    "parameters": m.parameter_count(),
                    "test_accuracy": m.test_accuracy(),
                    "default": *name == self.default,
                    "version": lineage.version,
                    "lineage": lineage,
                    "description": describe(lineage),
                    "sha256": s.weights_sha256,
                    "source": if s.file.is_some() { "models-dir" } else { "shipped" },
                })
            })
            .collect();
        json!({"default": self.default, "models": models})
    }
}

/// `NAME.safetensors` files in `dir`, by name.
fn model_files(dir: &Path) -> Result<BTreeMap<String, PathBuf>, CatalogueError> {
    let entries = std::fs::read_dir(dir).map_err(|e| CatalogueError::Folder(dir.into(), e))?;
    let mut out = BTreeMap::new();
    for entry in entries {
        let path = entry
            .map_err(|e| CatalogueError::Folder(dir.into(), e))?
            .path();
        if path.extension().is_some_and(|e| e == "safetensors") && path.is_file() {
            if let Some(stem) = path.file_stem() {
                out.insert(stem.to_string_lossy().into_owned(), path);
            }
        }
    }
    Ok(out)
}

pub fn sha256_hex(bytes: &[u8]) -> String {
    Sha256::digest(bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}
