//! The bad-input corpus (`tests/corpus`, see its README): every malformed image, JSON body, IDX
//! file and model file fed to the library and the CLI (the API gets the same files in
//! crates/server/tests/api.rs). Each must get a clear error that names the problem; nothing
//! may panic.

use std::path::{Path, PathBuf};
use std::process::Command;

fn corpus(dir: &str) -> Vec<PathBuf> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../tests/corpus")
        .join(dir);
    let mut files: Vec<PathBuf> = std::fs::read_dir(&root)
        .unwrap_or_else(|e| panic!("{}: {e}", root.display()))
        .map(|e| e.unwrap().path())
        .collect();
    files.sort();
    files
}

fn name(p: &Path) -> &str {
    p.file_name().unwrap().to_str().unwrap()
}

/// Images the front ends read rather than refuse (`tests/corpus/readable.txt`).
fn readable() -> Vec<String> {
    let list = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/corpus/readable.txt");
    std::fs::read_to_string(list)
        .unwrap()
        .lines()
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .map(String::from)
        .collect()
}

/// What each image must give: the error's words, or the digit a valid-but-unusual file holds.
fn expected_image(file: &str) -> Result<Option<u8>, &'static str> {
    match file {
        "animated.gif" | "cmyk.jpg" | "sixteen-bit.png" => Ok(Some(7)),
        f if readable().iter().any(|r| r == f) => Ok(None),
        "zero-bytes.png" | "zero-bytes.jpg" => Err("empty input"),
        f if f.starts_with("bomb-") => Err("the limit is"),
        f if f.starts_with("blank-") || f == "one-pixel.png" => Err("no ink found"),
        "text-named.png" | "html-named.jpg" | "wrong-magic.png" | "random-bytes.png" => {
            Err("not a supported image")
        }
        _ => Err("could not be decoded"),
    }
}

#[test]
fn the_corpus_is_big_enough() {
    let n: usize = ["images", "json", "idx", "models"]
        .iter()
        .map(|d| corpus(d).len())
        .sum();
    assert!(n >= 30, "{n} files");
}

#[test]
fn library_reads_or_refuses_every_image_with_a_reason() {
    let mut model = digits_model::shipped::resolve("cnn").unwrap();
    for path in corpus("images") {
        let bytes = std::fs::read(&path).unwrap();
        let got = digits_model::recognize::read_digit(&mut model, &bytes, &Default::default());
        match (expected_image(name(&path)), got) {
            (Ok(Some(d)), Ok(r)) => assert_eq!(r.prediction.digit, d, "{}", name(&path)),
            (Ok(None), Ok(_)) => {}
            (Err(words), Err(e)) => {
                assert!(e.to_string().contains(words), "{}: {e}", name(&path))
            }
            (want, got) => panic!("{}: wanted {want:?}, got {got:?}", name(&path)),
        }
        // Number mode takes the same inputs.
        let _ = digits_model::recognize::read_number(&mut model, &bytes, &Default::default());
    }
}

#[test]
fn cli_reports_each_bad_image_and_reads_the_rest() {
    let o = Command::new(env!("CARGO_BIN_EXE_digits"))
        .arg("predict")
        .args(corpus("images"))
        .output()
        .unwrap();
    let (out, err) = (
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr),
    );
    assert_eq!(o.status.code(), Some(1), "{out}{err}");
    assert!(!err.contains("panicked"), "{err}");
    for path in corpus("images") {
        let line = format!("{}:", path.display());
        match expected_image(name(&path)) {
            Ok(_) => assert!(out.contains(&line), "{line} missing from {out}"),
            Err(words) => assert!(
                err.lines().any(|l| l.contains(&line) && l.contains(words)),
                "{line} {words}: {err}"
            ),
        }
    }
}

#[test]
fn bad_idx_files_are_refused_by_the_library_and_the_cli() {
    for path in corpus("idx") {
        let bytes = digits_data::idx::read_maybe_gz(&path);
        let parsed = bytes.and_then(|b| digits_data::idx::parse(&path, &b));
        // These parse as IDX; what is wrong with them shows against MNIST's shape or labels.
        let mnist_level = name(&path).starts_with("count-mismatch")
            || name(&path).starts_with("label-")
            || name(&path).starts_with("wrong-dims");
        match parsed {
            Err(e) => assert!(e.to_string().contains(name(&path)), "{e}"),
            Ok(a) => assert!(mnist_level, "{} parsed as {:?}", name(&path), a.dims),
        }
    }
    // The CLI with a data folder whose files are the corrupt ones.
    let cases = [
        ("bad-magic-idx3-ubyte", "train-images-idx3-ubyte"),
        ("short-data-idx3-ubyte", "train-images-idx3-ubyte"),
        ("huge-count-idx3-ubyte", "train-images-idx3-ubyte"),
        ("wrong-dims-idx3-ubyte", "train-images-idx3-ubyte"),
        ("empty-idx1-ubyte", "train-labels-idx1-ubyte"),
        ("truncated-idx1-ubyte.gz", "train-labels-idx1-ubyte.gz"),
    ];
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/corpus/idx");
    for (bad, as_name) in cases {
        let dir = tempfile::tempdir().unwrap();
        std::fs::copy(root.join(bad), dir.path().join(as_name)).unwrap();
        let o = Command::new(env!("CARGO_BIN_EXE_digits"))
            .args(["data", "verify", "--data-dir"])
            .arg(dir.path())
            .output()
            .unwrap();
        let t = format!(
            "{}{}",
            String::from_utf8_lossy(&o.stdout),
            String::from_utf8_lossy(&o.stderr)
        );
        assert!(!o.status.success(), "{bad}: {t}");
        assert!(t.contains(as_name) && !t.contains("panicked"), "{bad}: {t}");
    }
    // Images and labels that disagree, and a label that is not a digit.
    let load = |n: &str| {
        let p = root.join(n);
        digits_data::idx::parse(&p, &std::fs::read(&p).unwrap()).unwrap()
    };
    let (img, lab) = (
        load("count-mismatch-images-idx3-ubyte"),
        load("count-mismatch-labels-idx1-ubyte"),
    );
    let e = digits_data::idx::check_pair(Path::new("i"), &img, Path::new("l"), &lab).unwrap_err();
    assert!(
        e.to_string().contains("10") && e.to_string().contains("9"),
        "{e}"
    );
    let three = load("label-out-of-range-idx1-ubyte");
    let images3 = digits_data::idx::IdxArray {
        dims: vec![3, 28, 28],
        data: vec![0; 3 * 784],
    };
    let e =
        digits_data::idx::check_pair(Path::new("i"), &images3, Path::new("l"), &three).unwrap_err();
    assert!(e.to_string().contains("12"), "{e}");
}

#[test]
fn bad_model_files_are_refused_with_their_name() {
    for path in corpus("models") {
        let e = digits_model::file::load(&path)
            .expect_err(name(&path))
            .to_string();
        assert!(e.contains(name(&path)), "{e}");
        let o = Command::new(env!("CARGO_BIN_EXE_digits"))
            .args(["predict", "--model"])
            .arg(&path)
            .arg("-")
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&o.stderr);
        assert!(!o.status.success() && err.contains(name(&path)), "{err}");
        assert!(!err.contains("panicked"), "{err}");
    }
}
