//! Model files and training checkpoints: safetensors (so Python users can open the weights)
//! with our metadata in the header, a SHA-256 over every tensor, written atomically.

use crate::ensemble::{EnsembleMeta, EnsembleModel};
use crate::judge::{Judge, JudgeMeta, JUDGE_INPUT};
use crate::model::{Classify, Model, ModelMeta, NeuralModel, INPUT};
use crate::svm::{SvmMeta, SvmModel};
use digits_data::PIXELS;
use digits_nn::{LayerSpec, Network, Optimizer, Shape};
use digits_svm::{Pca, Svm};
use safetensors::tensor::{Dtype, SafeTensors, TensorView};
use serde::{de::DeserializeOwned, Serialize};
use sha2::{Digest, Sha256};
use std::collections::HashMap;
use std::io::Write;
use std::path::{Path, PathBuf};

/// Bumped whenever the layout of the metadata or tensors changes incompatibly.
pub const FORMAT_VERSION: u32 = 1;
const KEY_FORMAT: &str = "digits.format";
const KEY_KIND: &str = "digits.kind";
const KEY_META: &str = "digits.meta";
const KEY_STATE: &str = "digits.state";
const KEY_SHA: &str = "digits.sha256";
/// The kinds of file, stored under `digits.kind`.
const KIND_NETWORK: &str = "model";
const KIND_SVM: &str = "svm";
const KIND_ENSEMBLE: &str = "ensemble";
const KIND_CHECKPOINT: &str = "checkpoint";
const KIND_JUDGE: &str = "judge";
/// Model files are a few MB; anything this large is not one of ours.
const MAX_FILE: u64 = 1 << 30;

#[derive(Debug, thiserror::Error)]
pub enum ModelError {
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{path}: {problem}")]
    Invalid { path: PathBuf, problem: String },
    #[error("cannot build an ensemble: {0}")]
    Ensemble(String),
    #[error(transparent)]
    Data(#[from] digits_data::DataError),
    #[error("svm: {0}")]
    Svm(#[from] digits_svm::SvmError),
    #[error("{0}")]
    Unsupported(String),
    #[error(
        "training interrupted (a checkpoint, where one is written, holds the last finished epoch)"
    )]
    Interrupted,
}

impl ModelError {
    fn invalid(path: &Path, problem: impl Into<String>) -> Self {
        ModelError::Invalid {
            path: path.to_path_buf(),
            problem: problem.into(),
        }
    }
}

pub type Result<T, E = ModelError> = std::result::Result<T, E>;

/// Writes bytes to a temporary file beside `path`, syncs it, then renames it over `path`: a
/// crash leaves either the old file or the new one, never half of one.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    let io = |e| ModelError::Io {
        path: path.to_path_buf(),
        source: e,
    };
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    std::fs::create_dir_all(dir).map_err(io)?;
    let mut tmp = tempfile::NamedTempFile::new_in(dir).map_err(io)?;
    tmp.write_all(bytes).map_err(io)?;
    // Temporary files are private (0600); a model or report is an ordinary file.
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        tmp.as_file()
            .set_permissions(std::fs::Permissions::from_mode(0o644))
            .map_err(io)?;
    }
    tmp.as_file().sync_all().map_err(io)?;
    tmp.persist(path).map_err(|e| io(e.error))?;
    Ok(())
}

struct Tensor {
    name: String,
    shape: Vec<usize>,
    bytes: Vec<u8>,
}

fn tensor(name: &str, shape: Vec<usize>, values: &[f32]) -> Tensor {
    Tensor {
        name: name.to_string(),
        shape,
        bytes: values.iter().flat_map(|v| v.to_le_bytes()).collect(),
    }
}

fn digest<'a>(tensors: impl Iterator<Item = (&'a str, &'a [usize], &'a [u8])>) -> String {
    let mut sorted: Vec<_> = tensors.collect();
    sorted.sort_by(|a, b| a.0.cmp(b.0));
    let mut h = Sha256::new();
    for (name, shape, bytes) in sorted {
        h.update((name.len() as u64).to_le_bytes());
        h.update(name.as_bytes());
        for d in shape {
            h.update((*d as u64).to_le_bytes());
        }
        h.update(bytes);
    }
    h.finalize().iter().map(|b| format!("{b:02x}")).collect()
}

fn write_file(
    path: &Path,
    kind: &str,
    meta: &impl Serialize,
    state: Option<String>,
    tensors: &[Tensor],
) -> Result<()> {
    write_atomic(path, &encode(path, kind, meta, state, tensors)?)
}

/// A file's contents: the header (format, kind, metadata, state, digest) and the tensors.
fn encode(
    path: &Path,
    kind: &str,
    meta: &impl Serialize,
    state: Option<String>,
    tensors: &[Tensor],
) -> Result<Vec<u8>> {
    let mut header = HashMap::new();
    header.insert(KEY_FORMAT.to_string(), FORMAT_VERSION.to_string());
    header.insert(KEY_KIND.to_string(), kind.to_string());
    header.insert(
        KEY_META.to_string(),
        serde_json::to_string(meta).expect("metadata serialises"),
    );
    if let Some(s) = state {
        header.insert(KEY_STATE.to_string(), s);
    }
    header.insert(
        KEY_SHA.to_string(),
        digest(
            tensors
                .iter()
                .map(|t| (t.name.as_str(), t.shape.as_slice(), t.bytes.as_slice())),
        ),
    );
    let views: Vec<(String, TensorView)> = tensors
        .iter()
        .map(|t| {
            let view =
                TensorView::new(Dtype::F32, t.shape.clone(), &t.bytes).expect("shape matches data");
            (t.name.clone(), view)
        })
        .collect();
    safetensors::serialize(views, Some(header))
        .map_err(|e| ModelError::invalid(path, e.to_string()))
}

/// A verified file: header entries and tensors by name.
struct Loaded {
    kind: String,
    header: HashMap<String, String>,
    tensors: HashMap<String, (Vec<usize>, Vec<f32>)>,
}

fn read_file(path: &Path, what: &str, kinds: &[&str]) -> Result<Loaded> {
    let io = |e| ModelError::Io {
        path: path.to_path_buf(),
        source: e,
    };
    let len = std::fs::metadata(path).map_err(io)?.len();
    if len > MAX_FILE {
        return Err(ModelError::invalid(
            path,
            format!("{len} bytes is far too large for a model file"),
        ));
    }
    parse_file(path, what, kinds, &std::fs::read(path).map_err(io)?)
}

/// Verifies file contents, which must be one of `kinds`; `path` names the origin in errors and
/// `what` the kind of file expected.
fn parse_file(path: &Path, what: &str, kinds: &[&str], bytes: &[u8]) -> Result<Loaded> {
    let not_ours =
        |why: String| ModelError::invalid(path, format!("not a digits {what} file: {why}"));
    let st = SafeTensors::deserialize(bytes)
        .map_err(|e| not_ours(format!("unreadable safetensors data ({e})")))?;
    let (_, md) = SafeTensors::read_metadata(bytes).map_err(|e| not_ours(e.to_string()))?;
    let header = md.metadata().clone().unwrap_or_default();
    match header.get(KEY_FORMAT) {
        None => return Err(not_ours("the safetensors header has no digits metadata".into())),
        Some(v) if v != &FORMAT_VERSION.to_string() => {
            return Err(ModelError::invalid(
                path,
                format!("format version {v} is not supported by this build (it reads version {FORMAT_VERSION})"),
            ))
        }
        _ => {}
    }
    let kind = header.get(KEY_KIND).cloned().unwrap_or_default();
    if !kinds.contains(&kind.as_str()) {
        let found = if kind.is_empty() { "unknown" } else { &kind };
        return Err(not_ours(format!("it is a {found} file")));
    }
    let mut tensors = HashMap::new();
    let mut raw = Vec::new();
    for (name, view) in st.tensors() {
        if view.dtype() != Dtype::F32 {
            return Err(ModelError::invalid(
                path,
                format!("tensor {name} is {:?}, expected F32", view.dtype()),
            ));
        }
        raw.push((name.clone(), view.shape().to_vec(), view.data().to_vec()));
        let values: Vec<f32> = view
            .data()
            .chunks_exact(4)
            .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
            .collect();
        tensors.insert(name, (view.shape().to_vec(), values));
    }
    let actual = digest(
        raw.iter()
            .map(|(n, s, b)| (n.as_str(), s.as_slice(), b.as_slice())),
    );
    let expected = header.get(KEY_SHA).cloned().unwrap_or_default();
    if actual != expected {
        return Err(ModelError::invalid(
            path,
            format!("checksum mismatch: the weights hash to {actual}, the header says {expected}; the file is corrupt"),
        ));
    }
    Ok(Loaded {
        kind,
        header,
        tensors,
    })
}

fn parse_json<T: DeserializeOwned>(
    path: &Path,
    header: &HashMap<String, String>,
    key: &str,
) -> Result<T> {
    let text = header
        .get(key)
        .ok_or_else(|| ModelError::invalid(path, format!("header entry {key} is missing")))?;
    serde_json::from_str(text)
        .map_err(|e| ModelError::invalid(path, format!("header entry {key} is invalid: {e}")))
}

/// The network's parameters as tensors named `{prefix}{parameter}`.
fn network_tensors(net: &Network, prefix: &str) -> Vec<Tensor> {
    net.params()
        .map(|p| tensor(&format!("{prefix}{}", p.name), p.shape.clone(), &p.value))
        .collect()
}

/// Rebuilds the network of `layers` on `input` and fills in its parameters from the tensors
/// named `{prefix}{parameter}`, checking that each is present with the expected shape and
/// finite values.
fn restore_network(
    path: &Path,
    (input, layers, seed): (Shape, &[LayerSpec], u64),
    tensors: &mut HashMap<String, (Vec<usize>, Vec<f32>)>,
    prefix: &str,
) -> Result<Network> {
    let mut net = Network::new(input, layers, seed).map_err(|e| {
        ModelError::invalid(path, format!("the stored architecture is invalid: {e}"))
    })?;
    for p in net.params_mut() {
        let name = format!("{prefix}{}", p.name);
        let (shape, values) = tensors
            .remove(&name)
            .ok_or_else(|| ModelError::invalid(path, format!("tensor {name} is missing")))?;
        if shape != p.shape {
            return Err(ModelError::invalid(
                path,
                format!(
                    "tensor {name} has shape {shape:?}, the architecture needs {:?}",
                    p.shape
                ),
            ));
        }
        if values.iter().any(|v| !v.is_finite()) {
            return Err(ModelError::invalid(
                path,
                format!("tensor {name} holds NaN or infinite values"),
            ));
        }
        p.value = values;
    }
    Ok(net)
}

/// What [`restore_network`] needs of a digit classifier's metadata.
fn digit_network(meta: &ModelMeta) -> (Shape, &[LayerSpec], u64) {
    (INPUT, &meta.layers, meta.seed)
}

/// Saves the number reader's judge.
pub fn save_judge(judge: &Judge, path: &Path) -> Result<()> {
    write_file(
        path,
        KIND_JUDGE,
        &judge.meta,
        None,
        &network_tensors(&judge.net, ""),
    )
}

/// Loads and verifies a judge file.
pub fn load_judge(path: &Path) -> Result<Judge> {
    judge_from(path, read_file(path, "judge", &[KIND_JUDGE])?)
}

/// Verifies and loads a judge file's contents; `origin` names them in errors.
pub fn load_judge_bytes(origin: &Path, bytes: &[u8]) -> Result<Judge> {
    judge_from(origin, parse_file(origin, "judge", &[KIND_JUDGE], bytes)?)
}

fn judge_from(origin: &Path, mut loaded: Loaded) -> Result<Judge> {
    let meta: JudgeMeta = parse_json(origin, &loaded.header, KEY_META)?;
    let net = restore_network(
        origin,
        (JUDGE_INPUT, &meta.layers, meta.seed),
        &mut loaded.tensors,
        "",
    )?;
    if let Some(extra) = loaded.tensors.keys().next() {
        return Err(ModelError::invalid(
            origin,
            format!("unexpected tensor {extra}"),
        ));
    }
    Ok(Judge { meta, net })
}

/// An ensemble's metadata: its own and each member's, in order.
#[derive(serde::Serialize, serde::Deserialize)]
struct EnsembleFile {
    ensemble: EnsembleMeta,
    members: Vec<ModelMeta>,
}

fn member_prefix(i: usize) -> String {
    format!("member{i}.")
}

/// Saves a trained model.
pub fn save(model: &Model, path: &Path) -> Result<()> {
    write_atomic(path, &encode_model(model, path)?)
}

/// A model file's contents, as [`save`] writes them and [`load_bytes`] reads them (for
/// models kept in memory or sent between processes, as Python's pickle does).
pub fn to_bytes(model: &Model) -> Result<Vec<u8>> {
    encode_model(model, Path::new("<model in memory>"))
}

fn encode_model(model: &Model, path: &Path) -> Result<Vec<u8>> {
    let tensors = model_tensors(model);
    match model {
        Model::Neural(m) => encode(path, KIND_NETWORK, &m.meta, None, &tensors),
        Model::Svm(m) => encode(path, KIND_SVM, &m.meta, None, &tensors),
        Model::Ensemble(e) => {
            let meta = EnsembleFile {
                ensemble: e.meta.clone(),
                members: e.members.iter().map(|m| m.meta.clone()).collect(),
            };
            encode(path, KIND_ENSEMBLE, &meta, None, &tensors)
        }
    }
}

fn model_tensors(model: &Model) -> Vec<Tensor> {
    match model {
        Model::Neural(m) => network_tensors(&m.net, ""),
        Model::Svm(m) => svm_tensors(m),
        Model::Ensemble(e) => e
            .members
            .iter()
            .enumerate()
            .flat_map(|(i, m)| network_tensors(&m.net, &member_prefix(i)))
            .collect(),
    }
}

/// SHA-256 of a model's weights (every tensor, by name), the same however and wherever the
/// model was saved: it identifies a base model in a fine-tuned one's lineage. (A file's bytes
/// do not: the header's metadata is written in no fixed order.)
pub fn weights_sha256(model: &Model) -> String {
    let tensors = model_tensors(model);
    digest(
        tensors
            .iter()
            .map(|t| (t.name.as_str(), t.shape.as_slice(), t.bytes.as_slice())),
    )
}

const MODEL_KINDS: [&str; 3] = [KIND_NETWORK, KIND_SVM, KIND_ENSEMBLE];

/// Loads and verifies a model file.
pub fn load(path: &Path) -> Result<Model> {
    model_from(path, read_file(path, "model", &MODEL_KINDS)?)
}

/// Verifies and loads model-file contents held in memory; `origin` names them in errors.
pub fn load_bytes(origin: &Path, bytes: &[u8]) -> Result<Model> {
    model_from(origin, parse_file(origin, "model", &MODEL_KINDS, bytes)?)
}

fn model_from(path: &Path, mut loaded: Loaded) -> Result<Model> {
    let tensors = &mut loaded.tensors;
    let model = match loaded.kind.as_str() {
        KIND_SVM => Model::Svm(svm_from(path, &loaded.header, tensors)?),
        KIND_ENSEMBLE => {
            let file: EnsembleFile = parse_json(path, &loaded.header, KEY_META)?;
            if file.members.len() < 2 {
                return Err(ModelError::invalid(
                    path,
                    format!(
                        "an ensemble needs at least two members, this one has {}",
                        file.members.len()
                    ),
                ));
            }
            let members = file
                .members
                .into_iter()
                .enumerate()
                .map(|(i, meta)| {
                    let net =
                        restore_network(path, digit_network(&meta), tensors, &member_prefix(i))?;
                    Ok(NeuralModel { meta, net })
                })
                .collect::<Result<Vec<_>>>()?;
            Model::Ensemble(EnsembleModel {
                meta: file.ensemble,
                members,
            })
        }
        _ => {
            let meta: ModelMeta = parse_json(path, &loaded.header, KEY_META)?;
            let net = restore_network(path, digit_network(&meta), tensors, "")?;
            Model::Neural(NeuralModel { meta, net })
        }
    };
    if let Some(extra) = tensors.keys().next() {
        return Err(ModelError::invalid(
            path,
            format!("unexpected tensor {extra}"),
        ));
    }
    let mut temperatures = vec![model.temperature()];
    if let Model::Ensemble(e) = &model {
        temperatures.extend(e.members.iter().map(|m| m.meta.temperature));
    }
    if let Some(t) = temperatures.iter().find(|t| !(t.is_finite() && **t > 0.0)) {
        return Err(ModelError::invalid(
            path,
            format!("temperature {t} is not a positive number"),
        ));
    }
    Ok(model)
}

fn svm_tensors(m: &SvmModel) -> Vec<Tensor> {
    let (k, ns, np) = (
        m.pca.output_dim(),
        m.svm.support_vectors(),
        m.svm.bias().len(),
    );
    vec![
        tensor("pca.mean", vec![PIXELS], m.pca.mean()),
        tensor("pca.components", vec![k, PIXELS], m.pca.components()),
        tensor("pca.variances", vec![k], m.pca.variances()),
        tensor("svm.support", vec![ns, k], m.svm.support()),
        tensor("svm.coefficients", vec![ns, np], m.svm.coefficients()),
        tensor("svm.bias", vec![np], m.svm.bias()),
    ]
}

/// Rebuilds an SVM, checking every tensor is present, finite and consistent with the rest.
fn svm_from(
    path: &Path,
    header: &HashMap<String, String>,
    tensors: &mut HashMap<String, (Vec<usize>, Vec<f32>)>,
) -> Result<SvmModel> {
    let meta: SvmMeta = parse_json(path, header, KEY_META)?;
    let mut take = |name: &str| {
        let (_, values) = tensors
            .remove(name)
            .ok_or_else(|| ModelError::invalid(path, format!("tensor {name} is missing")))?;
        if values.iter().any(|v| !v.is_finite()) {
            return Err(ModelError::invalid(
                path,
                format!("tensor {name} holds NaN or infinite values"),
            ));
        }
        Ok(values)
    };
    let (mean, components, variances) = (
        take("pca.mean")?,
        take("pca.components")?,
        take("pca.variances")?,
    );
    let (support, coefficients, bias) = (
        take("svm.support")?,
        take("svm.coefficients")?,
        take("svm.bias")?,
    );
    let pca = Pca::from_parts(PIXELS, mean, components, variances).ok_or_else(|| {
        ModelError::invalid(
            path,
            "the PCA tensors do not fit 28x28 inputs or each other",
        )
    })?;
    let svm = Svm::from_parts(
        10,
        pca.output_dim(),
        meta.settings.svm.gamma,
        support,
        coefficients,
        bias,
    )
    .map_err(|e| ModelError::invalid(path, e.to_string()))?;
    Ok(SvmModel { meta, pca, svm })
}

/// Saves a model with its optimiser and the caller's progress record `state`.
pub fn save_checkpoint(
    path: &Path,
    model: &NeuralModel,
    optimizer: &Optimizer,
    state: &impl Serialize,
) -> Result<()> {
    let mut tensors = network_tensors(&model.net, "");
    for (i, s) in optimizer.state.iter().enumerate() {
        tensors.push(tensor(&format!("optimizer.{i}"), vec![s.len()], s));
    }
    let state = serde_json::json!({ "optimizer_steps": optimizer.steps, "optimizer": optimizer.config, "progress": state });
    write_file(
        path,
        KIND_CHECKPOINT,
        &model.meta,
        Some(state.to_string()),
        &tensors,
    )
}

/// Loads a checkpoint written by [`save_checkpoint`].
pub fn load_checkpoint<S: DeserializeOwned>(path: &Path) -> Result<(NeuralModel, Optimizer, S)> {
    let mut loaded = read_file(path, "checkpoint", &[KIND_CHECKPOINT])?;
    let meta: ModelMeta = parse_json(path, &loaded.header, KEY_META)?;
    let net = restore_network(path, digit_network(&meta), &mut loaded.tensors, "")?;
    #[derive(serde::Deserialize)]
    struct State<S> {
        optimizer_steps: u64,
        optimizer: digits_nn::OptimizerConfig,
        progress: S,
    }
    let state: State<S> = parse_json(path, &loaded.header, KEY_STATE)?;
    let mut optimizer = Optimizer::new(state.optimizer);
    optimizer.steps = state.optimizer_steps;
    for i in 0.. {
        match loaded.tensors.remove(&format!("optimizer.{i}")) {
            Some((_, v)) => optimizer.state.push(v),
            None => break,
        }
    }
    optimizer
        .check_state(net.params())
        .map_err(|problem| ModelError::invalid(path, problem))?;
    Ok((NeuralModel { meta, net }, optimizer, state.progress))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Architecture;

    fn small_network() -> NeuralModel {
        let a = Architecture::Mlp;
        NeuralModel::new(a, a.default_training(), 3)
    }

    fn small() -> Model {
        Model::Neural(small_network())
    }

    #[test]
    fn round_trip_keeps_weights_and_meta() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("m.safetensors");
        let mut m = small_network();
        m.meta.temperature = 1.3;
        save(&Model::Neural(m.clone()), &p).unwrap();
        let Model::Neural(back) = load(&p).unwrap() else {
            panic!("a network came back as something else")
        };
        assert_eq!(back.meta, m.meta);
        let a: Vec<f32> = m.net.params().flat_map(|p| p.value.clone()).collect();
        let b: Vec<f32> = back.net.params().flat_map(|p| p.value.clone()).collect();
        assert_eq!(a, b);
    }

    #[test]
    fn ensemble_round_trips_and_damaged_ensembles_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("e.safetensors");
        let mut second = small_network();
        second.meta.seed = 4;
        second.meta.temperature = 0.7;
        let mut e = EnsembleModel::new(vec![small_network(), second], true);
        e.meta.temperature = 1.2;
        e.meta.validation_accuracy = Some(0.5);
        save(&Model::Ensemble(e.clone()), &p).unwrap();
        let Model::Ensemble(back) = load(&p).unwrap() else {
            panic!("an ensemble came back as something else")
        };
        assert_eq!(back.meta, e.meta);
        for (a, b) in back.members.iter().zip(&e.members) {
            assert_eq!(a.meta, b.meta);
            assert!(a
                .net
                .params()
                .zip(b.net.params())
                .all(|(x, y)| x.value == y.value));
        }

        let meta = EnsembleFile {
            ensemble: e.meta.clone(),
            members: e.members.iter().map(|m| m.meta.clone()).collect(),
        };
        let mut tensors: Vec<Tensor> = e
            .members
            .iter()
            .enumerate()
            .flat_map(|(i, m)| network_tensors(&m.net, &member_prefix(i)))
            .collect();
        let dropped = tensors.pop().unwrap().name;
        write_file(&p, KIND_ENSEMBLE, &meta, None, &tensors).unwrap();
        let err = load(&p).unwrap_err().to_string();
        assert!(err.contains(&format!("{dropped} is missing")), "{err}");

        let mut one = meta;
        one.members.truncate(1);
        write_file(
            &p,
            KIND_ENSEMBLE,
            &one,
            None,
            &network_tensors(&e.members[0].net, "member0."),
        )
        .unwrap();
        let err = load(&p).unwrap_err().to_string();
        assert!(err.contains("at least two members"), "{err}");
    }

    #[test]
    fn svm_round_trips_and_inconsistent_svm_files_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("svm.safetensors");
        let m = crate::svm::tests::tiny();
        save(&Model::Svm(m.clone()), &p).unwrap();
        let Model::Svm(back) = load(&p).unwrap() else {
            panic!("an SVM came back as something else")
        };
        assert_eq!(back.meta, m.meta);
        assert_eq!((&back.pca, &back.svm), (&m.pca, &m.svm));

        // A file whose tensors disagree (checksummed correctly, so only the shape check can
        // catch it) is refused with the reason.
        let mut broken = m.clone();
        broken.meta.settings.svm.gamma = -1.0;
        save(&Model::Svm(broken), &p).unwrap();
        let e = load(&p).unwrap_err().to_string();
        assert!(e.contains("gamma"), "{e}");
        let mut tensors = svm_tensors(&m);
        tensors.retain(|t| t.name != "svm.bias");
        write_file(&p, KIND_SVM, &m.meta, None, &tensors).unwrap();
        let e = load(&p).unwrap_err().to_string();
        assert!(e.contains("svm.bias is missing"), "{e}");
    }

    #[test]
    fn corrupt_truncated_and_foreign_files_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("m.safetensors");
        save(&small(), &p).unwrap();
        let good = std::fs::read(&p).unwrap();

        let mut flipped = good.clone();
        let at = flipped.len() - 100;
        flipped[at] ^= 0x40;
        std::fs::write(&p, &flipped).unwrap();
        let e = load(&p).unwrap_err().to_string();
        assert!(
            e.contains("checksum mismatch") && e.contains("m.safetensors"),
            "{e}"
        );

        std::fs::write(&p, &good[..good.len() / 2]).unwrap();
        let e = load(&p).unwrap_err().to_string();
        assert!(e.contains("not a digits model file"), "{e}");

        std::fs::write(&p, b"").unwrap();
        assert!(load(&p)
            .unwrap_err()
            .to_string()
            .contains("not a digits model file"));

        std::fs::write(&p, b"\x89PNG\r\n\x1a\n0000000000000000").unwrap();
        assert!(load(&p)
            .unwrap_err()
            .to_string()
            .contains("not a digits model file"));

        let e = load(&dir.path().join("absent")).unwrap_err().to_string();
        assert!(e.contains("absent"), "{e}");
    }

    #[test]
    fn checkpoint_is_not_a_model_and_round_trips() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("c.ckpt");
        let m = small_network();
        let mut opt = Optimizer::new(digits_nn::OptimizerConfig::adamw(0.0));
        opt.steps = 5;
        // Adam's two moments for each trainable parameter.
        let params = m.net.params().filter(|p| p.trainable);
        opt.state = params
            .flat_map(|p| [vec![0.5; p.value.len()], vec![0.25; p.value.len()]])
            .collect();
        save_checkpoint(&p, &m, &opt, &42u32).unwrap();
        assert!(load(&p)
            .unwrap_err()
            .to_string()
            .contains("checkpoint file"));
        let (m2, o2, s): (NeuralModel, Optimizer, u32) = load_checkpoint(&p).unwrap();
        assert_eq!((s, o2.steps, &o2.state), (42, 5, &opt.state));
        assert_eq!(m2.meta, m.meta);
        // State that does not fit the model is refused, naming what is wrong.
        opt.state[3].pop();
        save_checkpoint(&p, &m, &opt, &42u32).unwrap();
        let e = load_checkpoint::<u32>(&p).unwrap_err().to_string();
        assert!(
            e.contains("optimiser state of") && e.contains("c.ckpt"),
            "{e}"
        );
        opt.state.pop();
        save_checkpoint(&p, &m, &opt, &42u32).unwrap();
        let e = load_checkpoint::<u32>(&p).unwrap_err().to_string();
        assert!(e.contains("optimiser state has"), "{e}");
    }

    #[test]
    fn judge_round_trips_and_is_told_apart_from_models() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("judge.safetensors");
        let judge = Judge::new(Default::default(), 7);
        save_judge(&judge, &p).unwrap();
        let back = load_judge(&p).unwrap();
        assert_eq!(back.meta, judge.meta);
        assert!(back
            .net
            .params()
            .zip(judge.net.params())
            .all(|(a, b)| a.value == b.value));
        let e = load(&p).unwrap_err().to_string();
        assert!(e.contains("it is a judge file"), "{e}");

        let model = dir.path().join("m.safetensors");
        save(&small(), &model).unwrap();
        let e = load_judge(&model).unwrap_err().to_string();
        assert!(e.contains("not a digits judge file"), "{e}");

        let mut flipped = std::fs::read(&p).unwrap();
        let at = flipped.len() - 100;
        flipped[at] ^= 0x40;
        std::fs::write(&p, &flipped).unwrap();
        let e = load_judge(&p).unwrap_err().to_string();
        assert!(e.contains("checksum mismatch"), "{e}");
    }

    #[test]
    fn the_shipped_judge_loads() {
        let judge = crate::shipped::judge().unwrap();
        assert_eq!(judge.meta.layers, crate::judge::judge_layers());
        assert_eq!(judge.meta.held_out, Default::default());
    }
}
