//! MNIST for the `digits` workspace: the first stage of the data flow
//! (data -> preprocessing -> models -> training/evaluation -> front ends).
//!
//! * [`idx`] reads IDX files, raw or gzip-compressed, and says exactly what is wrong with a bad one.
//! * [`mnist`] finds the four files, verifies their SHA-256 and downloads them when absent.
//! * [`split`] holds the in-memory dataset and the seeded validation split.
//! * [`augment`] produces randomly transformed training images.

pub mod augment;
pub mod idx;
pub mod mnist;
pub mod split;

pub use mnist::{DataDir, Mnist};
pub use split::{normalize_into, split, Digits, Split};

/// One byte pixel scaled to [0, 1]; see [`normalize_into`].
pub(crate) fn normalize_into_pixel(p: u8) -> f32 {
    p as f32 * (1.0 / 255.0)
}

use std::path::PathBuf;

/// Side of an MNIST image in pixels.
pub const SIDE: usize = 28;
/// Pixels in one MNIST image.
pub const PIXELS: usize = SIDE * SIDE;
/// Number of classes.
pub const CLASSES: usize = 10;

/// Everything that can go wrong while finding, fetching or reading data files.
#[derive(Debug, thiserror::Error)]
pub enum DataError {
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{path}: {problem}")]
    Malformed { path: PathBuf, problem: String },
    #[error(
        "{path}: SHA-256 of the decompressed data is {actual}, expected {expected}; \
         the file is corrupt or not the MNIST file it is named after (delete it and run `digits data fetch`)"
    )]
    Checksum {
        path: PathBuf,
        expected: String,
        actual: String,
    },
    #[error(
        "MNIST file {name} is missing from {dir}; run `digits data fetch` \
         or point --data-dir / DIGITS_DATA_DIR at a folder that holds it"
    )]
    Missing { name: String, dir: PathBuf },
    #[error("could not download {name}: {attempts}")]
    Download { name: String, attempts: String },
    #[error("{0}")]
    Invalid(String),
}

impl DataError {
    pub(crate) fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        DataError::Io {
            path: path.into(),
            source,
        }
    }

    pub(crate) fn malformed(path: impl Into<PathBuf>, problem: impl Into<String>) -> Self {
        DataError::Malformed {
            path: path.into(),
            problem: problem.into(),
        }
    }
}

pub type Result<T, E = DataError> = std::result::Result<T, E>;
