//! Digit classifiers built on `digits-nn`: the architectures, their model files, training with
//! checkpoints, and evaluation. Front ends (CLI, server, GUI) only call into this crate.

pub mod arch;
pub mod eval;
pub mod file;
pub mod model;
pub mod recognize;
pub mod shipped;
pub mod train;

pub use arch::{Architecture, TrainConfig};
pub use file::ModelError;
pub use model::{Model, ModelMeta, Prediction};
