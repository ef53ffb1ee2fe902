//! Where the MNIST files live, whether they are the real ones, and fetching them when absent.

use crate::idx::{self, IdxArray};
use crate::split::Digits;
use crate::{DataError, Result};
use sha2::{Digest, Sha256};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::time::Duration;

/// Environment variable that points at the data folder (the `--data-dir` flag wins over it).
pub const DATA_DIR_ENV: &str = "DIGITS_DATA_DIR";
/// Comma-separated base URLs to download from instead of [`MIRRORS`].
pub const MIRRORS_ENV: &str = "DIGITS_MNIST_MIRRORS";
/// Public mirrors of the original files, tried in order.
pub const MIRRORS: &[&str] = &[
    "https://ossci-datasets.s3.amazonaws.com/mnist/",
    "https://storage.googleapis.com/cvdf-datasets/mnist/",
];

/// One of the four MNIST files and the SHA-256 of its decompressed bytes.
#[derive(Debug, Clone, Copy)]
pub struct FileSpec {
    pub name: &'static str,
    pub sha256: &'static str,
}

pub const TRAIN_IMAGES: FileSpec = FileSpec {
    name: "train-images-idx3-ubyte",
    sha256: "ba891046e6505d7aadcbbe25680a0738ad16aec93bde7f9b65e87a2fc25776db",
};
pub const TRAIN_LABELS: FileSpec = FileSpec {
    name: "train-labels-idx1-ubyte",
    sha256: "65a50cbbf4e906d70832878ad85ccda5333a97f0f4c3dd2ef09a8a9eef7101c5",
};
pub const TEST_IMAGES: FileSpec = FileSpec {
    name: "t10k-images-idx3-ubyte",
    sha256: "0fa7898d509279e482958e8ce81c8e77db3f2f8254e26661ceb7762c4d494ce7",
};
pub const TEST_LABELS: FileSpec = FileSpec {
    name: "t10k-labels-idx1-ubyte",
    sha256: "ff7bcfd416de33731a308c3f266cc351222c34898ecbeaf847f06e48f7ec33f2",
};
pub const FILES: [FileSpec; 4] = [TRAIN_IMAGES, TRAIN_LABELS, TEST_IMAGES, TEST_LABELS];

/// The training and test sets, verified.
#[derive(Debug, Clone)]
pub struct Mnist {
    pub train: Digits,
    pub test: Digits,
}

/// What `verify` found for one file.
#[derive(Debug, Clone)]
pub struct FileStatus {
    pub name: &'static str,
    pub path: Option<PathBuf>,
    pub result: std::result::Result<usize, String>,
}

/// The folder that holds (or will hold) the MNIST files.
#[derive(Debug, Clone)]
pub struct DataDir {
    pub path: PathBuf,
    /// SHA-256 of the decompressed contents per file name; the canonical MNIST values unless a
    /// test swaps in its own small files.
    checksums: Vec<FileSpec>,
}

pub fn sha256_hex(bytes: &[u8]) -> String {
    Sha256::digest(bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

impl DataDir {
    pub fn new(path: impl Into<PathBuf>) -> Self {
        DataDir {
            path: path.into(),
            checksums: FILES.to_vec(),
        }
    }

    /// Uses other expected checksums (tests with their own small files).
    pub fn with_checksums(mut self, checksums: Vec<FileSpec>) -> Self {
        self.checksums = checksums;
        self
    }

    /// `--data-dir` if given, else `$DIGITS_DATA_DIR`, else the per-user cache folder.
    pub fn resolve(flag: Option<PathBuf>) -> Result<Self> {
        if let Some(p) = flag {
            return Ok(DataDir::new(p));
        }
        if let Some(p) = std::env::var_os(DATA_DIR_ENV).filter(|p| !p.is_empty()) {
            return Ok(DataDir::new(PathBuf::from(p)));
        }
        let cache = dirs::cache_dir().ok_or_else(|| {
            DataError::Invalid(format!(
                "no per-user cache folder is known on this system; pass --data-dir or set {DATA_DIR_ENV}"
            ))
        })?;
        Ok(DataDir::new(cache.join("digits").join("mnist")))
    }

    fn expected(&self, name: &str) -> &str {
        self.checksums
            .iter()
            .find(|s| s.name == name)
            .map(|s| s.sha256)
            .unwrap_or_default()
    }

    /// The file for `name`, raw or gzip-compressed, if present.
    pub fn locate(&self, name: &str) -> Option<PathBuf> {
        [name.to_string(), format!("{name}.gz")]
            .into_iter()
            .map(|n| self.path.join(n))
            .find(|p| p.is_file())
    }

    /// Reads, decompresses, checks the SHA-256 and parses one file.
    pub fn read(&self, name: &str) -> Result<IdxArray> {
        let path = self.locate(name).ok_or_else(|| DataError::Missing {
            name: name.to_string(),
            dir: self.path.clone(),
        })?;
        read_verified(&path, self.expected(name))
    }

    /// Checks every file; reports each one rather than stopping at the first problem.
    pub fn verify(&self) -> Vec<FileStatus> {
        FILES
            .iter()
            .map(|spec| FileStatus {
                name: spec.name,
                path: self.locate(spec.name),
                result: self
                    .read(spec.name)
                    .map(|a| a.dims[0])
                    .map_err(|e| e.to_string()),
            })
            .collect()
    }

    /// Loads and verifies the training and test sets.
    pub fn load(&self) -> Result<Mnist> {
        Ok(Mnist {
            train: self.load_train()?,
            test: self.load_test()?,
        })
    }

    /// Loads and verifies the 60,000 training digits only.
    pub fn load_train(&self) -> Result<Digits> {
        self.load_pair(TRAIN_IMAGES, TRAIN_LABELS)
    }

    /// Loads and verifies the 10,000 test digits only.
    pub fn load_test(&self) -> Result<Digits> {
        self.load_pair(TEST_IMAGES, TEST_LABELS)
    }

    fn load_pair(&self, images: FileSpec, labels: FileSpec) -> Result<Digits> {
        let img = self.read(images.name)?;
        let lab = self.read(labels.name)?;
        idx::check_pair(
            &self.path.join(images.name),
            &img,
            &self.path.join(labels.name),
            &lab,
        )?;
        Ok(Digits::new(img.data, lab.data))
    }

    /// Downloads every file that is missing or fails verification. `mirrors` are base URLs
    /// (ending in `/`); `None` means `$DIGITS_MNIST_MIRRORS` or the public [`MIRRORS`].
    pub fn fetch(&self, mirrors: Option<&[String]>, progress: bool) -> Result<Vec<&'static str>> {
        let mirrors: Vec<String> = match mirrors {
            Some(m) => m.to_vec(),
            None => std::env::var(MIRRORS_ENV)
                .ok()
                .filter(|s| !s.trim().is_empty())
                .map(|s| s.split(',').map(|m| m.trim().to_string()).collect())
                .unwrap_or_else(|| MIRRORS.iter().map(|m| m.to_string()).collect()),
        };
        std::fs::create_dir_all(&self.path).map_err(|e| DataError::io(&self.path, e))?;
        let agent: ureq::Agent = ureq::Agent::config_builder()
            .timeout_connect(Some(Duration::from_secs(15)))
            .timeout_recv_body(Some(Duration::from_secs(60)))
            .build()
            .into();
        let mut fetched = Vec::new();
        for spec in FILES {
            if self.read(spec.name).is_ok() {
                continue;
            }
            let mut attempts = Vec::new();
            let mut done = false;
            for base in &mirrors {
                let url = format!("{}{}.gz", ensure_slash(base), spec.name);
                match self.download_one(&agent, &url, spec.name, progress) {
                    Ok(()) => {
                        done = true;
                        break;
                    }
                    Err(e) => {
                        tracing::warn!("{url}: {e}");
                        attempts.push(format!("{url}: {e}"));
                    }
                }
            }
            if !done {
                return Err(DataError::Download {
                    name: spec.name.to_string(),
                    attempts: attempts.join("; "),
                });
            }
            fetched.push(spec.name);
        }
        Ok(fetched)
    }

    /// Streams one URL into a temporary file beside the target, verifies it, then renames it
    /// into place, so an interrupted or corrupt download never looks like a good file.
    fn download_one(
        &self,
        agent: &ureq::Agent,
        url: &str,
        name: &str,
        progress: bool,
    ) -> Result<(), String> {
        let mut resp = agent.get(url).call().map_err(|e| e.to_string())?;
        let total = resp
            .headers()
            .get("content-length")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<u64>().ok());
        let bar = if progress {
            indicatif::ProgressBar::new(total.unwrap_or(0))
        } else {
            indicatif::ProgressBar::hidden()
        };
        bar.set_style(
            indicatif::ProgressStyle::with_template(
                "{msg:28} {bar:30} {bytes}/{total_bytes} {bytes_per_sec}",
            )
            .expect("static template"),
        );
        bar.set_message(name.to_string());
        let mut tmp = tempfile::NamedTempFile::new_in(&self.path).map_err(|e| e.to_string())?;
        let mut reader = resp.body_mut().with_config().limit(256 << 20).reader();
        let mut buf = vec![0u8; 1 << 16];
        let mut received = 0u64;
        loop {
            let n = reader
                .read(&mut buf)
                .map_err(|e| format!("download interrupted: {e}"))?;
            if n == 0 {
                break;
            }
            tmp.write_all(&buf[..n]).map_err(|e| e.to_string())?;
            received += n as u64;
            bar.set_position(received);
        }
        bar.finish_and_clear();
        if let Some(t) = total {
            if received != t {
                return Err(format!("truncated download: {received} of {t} bytes"));
            }
        }
        tmp.as_file().sync_all().map_err(|e| e.to_string())?;
        read_verified(tmp.path(), self.expected(name)).map_err(|e| match e {
            DataError::Checksum {
                actual, expected, ..
            } => {
                format!("downloaded file has SHA-256 {actual}, expected {expected}")
            }
            other => other.to_string(),
        })?;
        let target = self.path.join(format!("{name}.gz"));
        tmp.persist(&target).map_err(|e| e.to_string())?;
        Ok(())
    }
}

fn ensure_slash(base: &str) -> String {
    if base.ends_with('/') {
        base.to_string()
    } else {
        format!("{base}/")
    }
}

fn read_verified(path: &Path, expected: &str) -> Result<IdxArray> {
    let bytes = idx::read_maybe_gz(path)?;
    let actual = sha256_hex(&bytes);
    if !expected.is_empty() && actual != expected {
        return Err(DataError::Checksum {
            path: path.to_path_buf(),
            expected: expected.to_string(),
            actual,
        });
    }
    idx::parse(path, &bytes)
}
