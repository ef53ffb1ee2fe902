//! Digit classifiers built on `digits-nn` and `digits-svm`: the architectures, their model files, training with
//! checkpoints, and evaluation. Front ends (CLI, server, GUI) only call into this crate.

pub mod arch;
pub mod bench;
pub mod ensemble;
pub mod eval;
pub mod file;
pub mod finetune;
pub mod folder;
pub mod judge;
pub mod model;
pub mod onnx;
pub mod recipe;
pub mod recognize;
pub mod shipped;
pub mod svm;
pub mod synthetic;
pub mod train;

pub use arch::{Architecture, TrainConfig};
pub use digits_nn::{precision, set_precision, Precision};
pub use ensemble::{EnsembleMeta, EnsembleModel};
pub use file::ModelError;
pub use model::{Classify, Lineage, Model, ModelMeta, NeuralModel, Prediction};
pub use svm::{SvmModel, SvmSettings};
