//! The native half of the Python package `digits`: a thin front end like the CLI. It turns
//! Python values (paths, bytes, numpy arrays) into the library's inputs, releases the GIL while
//! the library works, and turns answers and errors back into numpy arrays and Python
//! exceptions. Argument checking that reads better in Python lives in `python/digits`.

use digits_data::{DataDir, Digits, PIXELS};
use digits_model::arch::Distillation;
use digits_model::eval::evaluate;
use digits_model::folder::{labelled_folder, score_folder, score_json, summarize, FolderError};
use digits_model::recipe::{self, DigitSource, Recipe, TrainRequest};
use digits_model::recognize::{
    self, read_answer, read_image_answer, Answer, NumberReading, Reading,
};
use digits_model::svm::PairStats;
use digits_model::synthetic::{score_synthetic, SyntheticError, SyntheticRun};
use digits_model::train::{EpochStats, Observer};
use digits_model::{
    file, shipped, Architecture, Classify, Model, ModelError, Prediction, SvmSettings,
};
use digits_vision::synth::Style;
use digits_vision::{Limits, RgbaImage, VisionError};
use numpy::{
    PyArray1, PyArrayMethods, PyReadonlyArray2, PyReadonlyArray3, PyUntypedArray,
    PyUntypedArrayMethods,
};
use pyo3::exceptions::{
    PyFileNotFoundError, PyKeyboardInterrupt, PyOSError, PyRuntimeError, PyValueError,
};
use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyDict, PyString};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;

/// A model error as the Python exception a user expects: an unreadable file is an `OSError`,
/// anything wrong with the file's content or the request a `ValueError`.
fn model_error(e: ModelError) -> PyErr {
    match e {
        ModelError::Io { .. } => PyOSError::new_err(e.to_string()),
        ModelError::Interrupted => PyKeyboardInterrupt::new_err(e.to_string()),
        _ => PyValueError::new_err(e.to_string()),
    }
}

fn data_error(e: digits_data::DataError) -> PyErr {
    use digits_data::DataError;
    match e {
        DataError::Missing { .. } => PyFileNotFoundError::new_err(e.to_string()),
        DataError::Io { .. } | DataError::Download { .. } => PyOSError::new_err(e.to_string()),
        _ => PyValueError::new_err(e.to_string()),
    }
}

/// A trained classifier: a shipped one by name, or a model file.
#[pyclass(module = "digits._digits", frozen)]
struct NativeModel {
    /// The name or path it was loaded from.
    #[pyo3(get)]
    spec: String,
    model: Mutex<Model>,
}

impl NativeModel {
    fn model(&self) -> std::sync::MutexGuard<'_, Model> {
        self.model.lock().unwrap_or_else(|e| e.into_inner())
    }
}

#[pymethods]
impl NativeModel {
    #[new]
    fn new(py: Python<'_>, spec: String) -> PyResult<Self> {
        let model = py.detach(|| shipped::resolve(&spec)).map_err(model_error)?;
        Ok(NativeModel {
            spec,
            model: Mutex::new(model),
        })
    }

    /// `cnn`, `cnn-large`, `cnn-nopool`, `cnn-ref`, `cnn-small`, `cnn-minute`, `mlp`, `svm` or
    /// `ensemble`.
    #[getter]
    fn kind(&self) -> &'static str {
        self.model().kind()
    }

    #[getter]
    fn temperature(&self) -> f32 {
        self.model().temperature()
    }

    #[getter]
    fn parameter_count(&self) -> usize {
        self.model().parameter_count()
    }

    /// MNIST test accuracy recorded in the file when it was trained.
    #[getter]
    fn test_accuracy(&self) -> Option<f32> {
        self.model().test_accuracy()
    }

    /// Calibrated probabilities (n x 10, float32) of normalised images: n x 784 float32 in
    /// 0..1, read in place (the caller has made them contiguous).
    fn proba_f32<'py>(
        &self,
        py: Python<'py>,
        images: PyReadonlyArray2<'py, f32>,
    ) -> PyResult<Bound<'py, PyArray1<f32>>> {
        let pixels = images
            .as_slice()
            .map_err(|e| PyValueError::new_err(format!("images must be contiguous: {e}")))?;
        check_pixels(pixels)?;
        let probabilities = py.detach(|| flat(self.model().predict(pixels)));
        Ok(PyArray1::from_vec(py, probabilities))
    }

    /// The same for MNIST-layout bytes (n x 784 uint8, 0..255).
    fn proba_u8<'py>(
        &self,
        py: Python<'py>,
        images: PyReadonlyArray2<'py, u8>,
    ) -> PyResult<Bound<'py, PyArray1<f32>>> {
        let bytes = images
            .as_slice()
            .map_err(|e| PyValueError::new_err(format!("images must be contiguous: {e}")))?;
        let probabilities = py.detach(|| flat(self.model().predict_bytes(bytes)));
        Ok(PyArray1::from_vec(py, probabilities))
    }

    /// Scores the model on MNIST (`test` or `validation`) like `digits eval --json`.
    #[pyo3(signature = (split="test", data_dir=None))]
    fn evaluate(&self, py: Python<'_>, split: &str, data_dir: Option<PathBuf>) -> PyResult<String> {
        let source = digit_source(split)?;
        py.detach(|| -> PyResult<String> {
            let dir = DataDir::resolve(data_dir).map_err(data_error)?;
            let digits = source.load(&dir).map_err(model_error)?;
            let mut model = self.model();
            let e = evaluate(&mut *model, &digits);
            Ok(recipe::evaluation_json(&e, &self.spec, &model, source).to_string())
        })
    }

    /// Seconds of each of `runs` readings of `source` in Rust (a path is read from disk each
    /// time, as `read` does), back to back with the GIL released: the baseline
    /// bench/python/speed.py measures Python's overhead against, in the same process and
    /// interleaved with `digits.read` (the machine's noise between two processes is larger than
    /// the overhead).
    fn time_read(&self, py: Python<'_>, source: Source, runs: usize) -> Vec<f64> {
        py.detach(|| {
            let mut model = self.model();
            (0..runs)
                .map(|_| {
                    let start = std::time::Instant::now();
                    std::hint::black_box(source.read(&mut model, false).ok());
                    start.elapsed().as_secs_f64()
                })
                .collect()
        })
    }

    /// The model file's contents (for pickling).
    fn to_bytes<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyBytes>> {
        let bytes = py
            .detach(|| file::to_bytes(&self.model()))
            .map_err(model_error)?;
        Ok(PyBytes::new(py, &bytes))
    }

    /// A model from a model file's contents, verified as a file is.
    #[staticmethod]
    fn from_bytes(py: Python<'_>, spec: String, bytes: &[u8]) -> PyResult<Self> {
        let model = py
            .detach(|| file::load_bytes(std::path::Path::new(&spec), bytes))
            .map_err(model_error)?;
        Ok(NativeModel {
            spec,
            model: Mutex::new(model),
        })
    }

    /// Writes the network or ensemble as an ONNX file (opset 17), atomically; returns its size.
    fn export_onnx(&self, py: Python<'_>, path: PathBuf) -> PyResult<usize> {
        py.detach(|| digits_model::onnx::save(&self.model(), &path))
            .map_err(model_error)
    }

    /// Writes the model atomically (a model file any front end loads).
    fn save(&self, py: Python<'_>, path: PathBuf) -> PyResult<()> {
        py.detach(|| file::save(&self.model(), &path))
            .map_err(model_error)
    }

    /// Scores the reader on a folder of labelled images like `digits realworld --dir DIR
    /// --json`.
    #[pyo3(signature = (folder, threads=0))]
    fn score_folder(&self, py: Python<'_>, folder: PathBuf, threads: usize) -> PyResult<String> {
        py.detach(|| {
            let images = labelled_folder(&folder).map_err(|e| match e {
                FolderError::Io { .. } => PyOSError::new_err(e.to_string()),
                FolderError::Malformed { .. } => PyValueError::new_err(e.to_string()),
            })?;
            let scored = on_threads(threads, |workers| {
                score_folder(&mut self.model(), &images, workers)
            })?;
            let summary = summarize(&scored);
            Ok(score_json(&self.spec, &folder, &scored, &summary).to_string())
        })
    }

    /// Scores the reader on MNIST digits redrawn in every style like `digits realworld
    /// --json`. Ctrl+C stops it (KeyboardInterrupt) within an image or two.
    #[pyo3(signature = (per_style, numbers, number_style, split, seed, data_dir=None, threads=0))]
    #[allow(clippy::too_many_arguments)]
    fn realworld(
        &self,
        py: Python<'_>,
        per_style: usize,
        numbers: usize,
        number_style: &str,
        split: &str,
        seed: u64,
        data_dir: Option<PathBuf>,
        threads: usize,
    ) -> PyResult<String> {
        let source = digit_source(split)?;
        let run = SyntheticRun {
            per_style,
            numbers,
            number_style: Style::parse(number_style).map_err(PyValueError::new_err)?,
            seed,
        };
        let digits = py.detach(|| {
            let dir = DataDir::resolve(data_dir).map_err(data_error)?;
            source.load(&dir).map_err(model_error)
        })?;
        let interrupt = std::sync::OnceLock::new();
        let done = AtomicBool::new(false);
        let score = py.detach(|| {
            std::thread::scope(|scope| {
                let scoring = scope.spawn(|| {
                    let going_on = || interrupt.get().is_none();
                    let score = on_threads(threads, |workers| {
                        score_synthetic(
                            &mut self.model(),
                            &digits,
                            source.name(),
                            &run,
                            workers,
                            &going_on,
                            &|_| {},
                        )
                    });
                    done.store(true, Ordering::Release);
                    score
                });
                // Signals reach only this (the calling) thread: it watches for Ctrl+C.
                while !done.load(Ordering::Acquire) {
                    std::thread::sleep(std::time::Duration::from_millis(50));
                    if let Err(e) = Python::attach(|py| py.check_signals()) {
                        let _ = interrupt.set(e);
                    }
                }
                scoring
                    .join()
                    .unwrap_or_else(|_| Err(PyRuntimeError::new_err("the realworld run failed")))
            })
        })?;
        match (score, interrupt.into_inner()) {
            (Ok(score), _) => Ok(score.to_json(&self.spec).to_string()),
            (Err(SyntheticError::Stopped), Some(e)) => Err(e),
            (Err(e), _) => Err(PyValueError::new_err(e.to_string())),
        }
    }

    /// Reads one source: a reading, or the error message (`digits.read`'s short path: no list,
    /// no thread pool).
    #[pyo3(signature = (source, number=false, top=1))]
    fn read_one(
        &self,
        py: Python<'_>,
        source: Source,
        number: bool,
        top: usize,
    ) -> PyResult<Py<PyAny>> {
        let answer = py.detach(|| source.read(&mut self.model(), number));
        answer_object(py, answer, top)
    }

    /// Reads each source (see [`Source`]) on `threads` workers (0: every core); each answer is
    /// a reading (listing its `top` likeliest digits), or the error message for that source.
    #[pyo3(signature = (sources, number=false, threads=0, top=1))]
    fn read_many(
        &self,
        py: Python<'_>,
        sources: Vec<Source>,
        number: bool,
        threads: usize,
        top: usize,
    ) -> PyResult<Vec<Py<PyAny>>> {
        // One source is read on the calling thread: no pool to start.
        let threads = if sources.len() == 1 { 0 } else { threads };
        let answers = py.detach(|| {
            on_threads(threads, |workers| {
                recognize::read_many(&mut self.model(), &sources, workers, |m, s| {
                    s.read(m, number)
                })
            })
        })?;
        answers
            .into_iter()
            .map(|a| answer_object(py, a, top))
            .collect()
    }
}

/// Runs `f` with the number of workers to use: `threads`, or with 0 every core of the global
/// pool; other counts get a pool of their own.
fn on_threads<T: Send>(threads: usize, f: impl FnOnce(usize) -> T + Send) -> PyResult<T> {
    if threads == 0 {
        return Ok(f(rayon::current_num_threads()));
    }
    rayon::ThreadPoolBuilder::new()
        .num_threads(threads)
        .build()
        .map(|pool| pool.install(|| f(threads)))
        .map_err(|e| PyOSError::new_err(format!("cannot start threads: {e}")))
}

/// The MNIST digits a split names.
fn digit_source(split: &str) -> PyResult<DigitSource> {
    DigitSource::parse(split).ok_or_else(|| {
        PyValueError::new_err(format!(
            "unknown split '{split}' (choose test or validation)"
        ))
    })
}

/// A reading as its Python object, or the error message as a string.
fn answer_object(
    py: Python<'_>,
    answer: Result<Answer, String>,
    top: usize,
) -> PyResult<Py<PyAny>> {
    Ok(match answer {
        Ok(Answer::Digit(r)) => Py::new(py, PyReading::new(r, top))?.into_any(),
        Ok(Answer::Number(n)) => Py::new(py, PyNumberReading::new(py, n, top)?)?.into_any(),
        Err(message) => message.into_pyobject(py)?.into_any().unbind(),
    })
}

/// The predictions' probabilities, one row of ten after another.
fn flat(predictions: Vec<Prediction>) -> Vec<f32> {
    predictions
        .into_iter()
        .flat_map(|p| p.probabilities)
        .collect()
}

/// Pixels a model takes are in 0..1; anything else (0..255 floats, NaN) is a caller's mistake
/// that would be read as nonsense, so it is refused with the fix.
fn check_pixels(pixels: &[f32]) -> PyResult<()> {
    match pixels.iter().position(|v| !(0.0..=1.0).contains(v)) {
        None => Ok(()),
        Some(i) => Err(PyValueError::new_err(format!(
            "float pixels must be in 0..1, but image {} has {} at pixel {}; divide 0..255 data by 255 or pass uint8",
            i / PIXELS,
            pixels[i],
            i % PIXELS
        ))),
    }
}

/// One thing to read: a file, the bytes of an encoded image, or decoded pixels (a numpy array
/// of H x W grey or H x W x 3 / 4 colour, uint8; floats were scaled to uint8 in Python).
enum Source {
    Path(PathBuf),
    Bytes(Vec<u8>),
    Pixels(Result<RgbaImage, String>),
}

impl<'a, 'py> FromPyObject<'a, 'py> for Source {
    type Error = PyErr;

    fn extract(ob: Borrowed<'a, 'py, PyAny>) -> PyResult<Self> {
        // The common kinds first, by type, so that no failed conversion raises and discards a
        // Python exception on the way (that alone costs microseconds per image).
        if let Ok(text) = ob.cast::<PyString>() {
            return Ok(Source::Path(PathBuf::from(&*text.to_cow()?)));
        }
        if let Ok(b) = ob.cast::<PyBytes>() {
            return Ok(Source::Bytes(b.as_bytes().to_vec()));
        }
        if let Ok(array) = ob.cast::<PyUntypedArray>() {
            return Ok(Source::Pixels(match array.ndim() {
                2 => {
                    let a = ob.extract::<PyReadonlyArray2<'py, u8>>()?;
                    let (h, w) = (a.shape()[0], a.shape()[1]);
                    let rgba = a.as_array().iter().flat_map(|&v| [v, v, v, 255]).collect();
                    image_from(w, h, rgba)
                }
                3 => {
                    let a = ob.extract::<PyReadonlyArray3<'py, u8>>()?;
                    let (h, w, c) = (a.shape()[0], a.shape()[1], a.shape()[2]);
                    let v = a.as_array();
                    match c {
                        3 => image_from(
                            w,
                            h,
                            v.outer_iter()
                                .flat_map(|row| {
                                    row.outer_iter()
                                        .flat_map(|p| [p[0], p[1], p[2], 255])
                                        .collect::<Vec<_>>()
                                })
                                .collect(),
                        ),
                        4 => image_from(w, h, v.iter().copied().collect()),
                        _ => Err(format!("an image array has 1, 3 or 4 channels, not {c}")),
                    }
                }
                n => Err(format!(
                    "an image array is H x W or H x W x channels, not {n}-dimensional"
                )),
            }));
        }
        if let Ok(p) = ob.extract::<PathBuf>() {
            return Ok(Source::Path(p));
        }
        Err(PyValueError::new_err(format!(
            "cannot read a {}: pass a path, bytes, a PIL image or a numpy array",
            ob.get_type().name()?
        )))
    }
}

fn image_from(width: usize, height: usize, rgba: Vec<u8>) -> Result<RgbaImage, String> {
    let limit = Limits::default().max_pixels;
    if width == 0 || height == 0 {
        return Err(format!(
            "the image array is {height}x{width}: it has no pixels"
        ));
    }
    if (width * height) as u64 > limit {
        return Err(VisionError::TooManyPixels {
            width: width as u32,
            height: height as u32,
            limit,
        }
        .to_string());
    }
    RgbaImage::from_raw(width as u32, height as u32, rgba)
        .ok_or_else(|| "the image array's size does not match its shape".to_string())
}

impl Source {
    /// Reads it, or says what is wrong (naming the file where there is one).
    fn read(&self, model: &mut Model, number: bool) -> Result<Answer, String> {
        let limits = Limits::default();
        match self {
            Source::Path(p) => digits_vision::read_file(p, &limits)
                .map_err(|e| format!("cannot read: {e}"))
                .and_then(|b| read_answer(model, &b, &limits, number).map_err(|e| e.to_string()))
                .map_err(|e| format!("{}: {e}", p.display())),
            Source::Bytes(b) => read_answer(model, b, &limits, number).map_err(|e| e.to_string()),
            Source::Pixels(image) => {
                let image = image.as_ref().map_err(Clone::clone)?;
                read_image_answer(model, image, number).map_err(|e| e.to_string())
            }
        }
    }
}

/// One digit read from an image.
#[pyclass(module = "digits._digits", name = "Reading", frozen)]
struct PyReading {
    #[pyo3(get)]
    digit: u8,
    #[pyo3(get)]
    confidence: f32,
    #[pyo3(get)]
    uncertain: bool,
    /// Where the ink was in the source: x, y, width, height.
    #[pyo3(get)]
    bbox: (u32, u32, u32, u32),
    /// The likeliest digits with their probabilities, likeliest first (as many as asked for
    /// with `top`, as `digits predict --top K` lists them).
    #[pyo3(get)]
    top: Vec<(u8, f32)>,
    probabilities: Vec<f32>,
    normalized: Vec<f32>,
}

impl PyReading {
    fn new(r: Reading, top: usize) -> Self {
        let [x, y, w, h] = r.normalized.bbox;
        PyReading {
            top: r.top(top),
            digit: r.prediction.digit,
            confidence: r.prediction.confidence,
            uncertain: r.uncertain,
            bbox: (x, y, w, h),
            probabilities: r.prediction.probabilities.to_vec(),
            normalized: r.normalized.pixels,
        }
    }
}

#[pymethods]
impl PyReading {
    /// The ten calibrated probabilities (float32).
    #[getter]
    fn probabilities<'py>(&self, py: Python<'py>) -> Bound<'py, PyArray1<f32>> {
        PyArray1::from_slice(py, &self.probabilities)
    }

    /// The 28x28 the model saw (float32, 0 background, 1 ink).
    #[getter]
    fn normalized<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        Ok(PyArray1::from_slice(py, &self.normalized)
            .reshape([28, 28])?
            .into_any())
    }

    fn __repr__(&self) -> String {
        format!(
            "Reading(digit={}, confidence={:.4}, uncertain={})",
            self.digit,
            self.confidence,
            if self.uncertain { "True" } else { "False" }
        )
    }
}

/// A number read from an image, digit by digit, left to right.
#[pyclass(module = "digits._digits", name = "NumberReading", frozen)]
struct PyNumberReading {
    /// The digits as text, e.g. "2071".
    #[pyo3(get)]
    number: String,
    /// Probability that every digit is right.
    #[pyo3(get)]
    confidence: f32,
    #[pyo3(get)]
    uncertain: bool,
    digits: Vec<Py<PyReading>>,
}

impl PyNumberReading {
    fn new(py: Python<'_>, n: NumberReading, top: usize) -> PyResult<Self> {
        Ok(PyNumberReading {
            number: n.text,
            confidence: n.confidence,
            uncertain: n.uncertain,
            digits: n
                .digits
                .into_iter()
                .map(|d| Py::new(py, PyReading::new(d, top)))
                .collect::<PyResult<_>>()?,
        })
    }
}

#[pymethods]
impl PyNumberReading {
    #[getter]
    fn digits(&self, py: Python<'_>) -> Vec<Py<PyReading>> {
        self.digits.iter().map(|d| d.clone_ref(py)).collect()
    }

    fn __repr__(&self) -> String {
        format!(
            "NumberReading(number={:?}, confidence={:.4}, uncertain={})",
            self.number,
            self.confidence,
            if self.uncertain { "True" } else { "False" }
        )
    }
}

/// MNIST as numpy arrays: (images n x 28 x 28 uint8, labels n uint8), verified against the
/// canonical checksums; `data_dir` or `$DIGITS_DATA_DIR` or the per-user cache, as the CLI.
#[pyfunction]
#[pyo3(signature = (split="train", data_dir=None))]
fn load_mnist<'py>(
    py: Python<'py>,
    split: &str,
    data_dir: Option<PathBuf>,
) -> PyResult<(Bound<'py, PyAny>, Bound<'py, PyArray1<u8>>)> {
    let load = match split {
        "train" => DataDir::load_train,
        "test" => DataDir::load_test,
        _ => {
            return Err(PyValueError::new_err(format!(
                "unknown split '{split}' (choose train or test)"
            )))
        }
    };
    // Only the split asked for is read and verified.
    let digits = py.detach(|| DataDir::resolve(data_dir).and_then(|d| load(&d)));
    let digits = digits.map_err(data_error)?;
    let n = digits.len();
    let images = PyArray1::from_vec(py, digits.images).reshape([n, 28, 28])?;
    Ok((images.into_any(), PyArray1::from_vec(py, digits.labels)))
}

/// Passes training progress to a Python callable `(event, value)` and stops the run when
/// Python has a pending signal (Ctrl+C).
struct PyObserver {
    callback: Option<Py<PyAny>>,
    /// The error (KeyboardInterrupt, or one the callback raised) that stopped the run.
    error: Option<PyErr>,
}

impl PyObserver {
    fn send(&mut self, event: &str, value: impl for<'py> IntoPyObject<'py> + Send) {
        if self.error.is_some() {
            return;
        }
        let Some(callback) = &self.callback else {
            return;
        };
        if let Err(e) = Python::attach(|py| callback.call1(py, (event, value)).map(drop)) {
            self.error = Some(e);
        }
    }
}

impl Observer for PyObserver {
    fn batch(&mut self, epoch: usize, done: usize, total: usize, loss: f32, ips: f32) {
        self.send("batch", (epoch, done, total, loss, ips));
    }

    fn epoch(&mut self, s: &EpochStats) {
        let json = serde_json::to_string(s).unwrap_or_default();
        self.send("epoch", json);
    }

    fn note(&mut self, line: &str) {
        self.send("note", line.to_string());
    }

    fn machine(&mut self, done: usize, total: usize, _stats: &PairStats) {
        self.send("machine", (done, total));
    }

    fn interrupted(&mut self) -> bool {
        if self.error.is_none() {
            if let Err(e) = Python::attach(|py| py.check_signals()) {
                self.error = Some(e);
            }
        }
        self.error.is_some()
    }
}

/// Runs `f` with the GIL released and `observer` reporting; an interruption comes back as the
/// Python error that caused it.
fn observed<T: Send>(
    py: Python<'_>,
    callback: Option<Py<PyAny>>,
    f: impl FnOnce(&mut PyObserver) -> Result<T, ModelError> + Send,
) -> PyResult<T> {
    let mut observer = PyObserver {
        callback,
        error: None,
    };
    let result = py.detach(|| f(&mut observer));
    match (result, observer.error) {
        (Ok(v), None) => Ok(v),
        (_, Some(e)) => Err(e),
        (Err(e), None) => Err(model_error(e)),
    }
}

fn recipe(name: &str) -> PyResult<Recipe> {
    Recipe::parse(name).ok_or_else(|| {
        PyValueError::new_err(format!(
            "unknown model '{name}' (choose {}, svm, best, record or judge)",
            Architecture::names()
        ))
    })
}

/// `digits train` from Python: trains on MNIST, measures on the test set and saves to `out`
/// (a checkpoint beside it after every epoch). Returns the test evaluation as JSON, or None for
/// the judge.
#[pyfunction]
#[pyo3(signature = (model, out, epochs=None, seed=1, split_seed=1, validation=5000, limit=None, resume=false, max_batches=None, data_dir=None, progress=None, teacher=None, teacher_weight=Distillation::DEFAULT_WEIGHT))]
#[allow(clippy::too_many_arguments)]
fn train(
    py: Python<'_>,
    model: &str,
    out: PathBuf,
    epochs: Option<usize>,
    seed: u64,
    split_seed: u64,
    validation: usize,
    limit: Option<usize>,
    resume: bool,
    max_batches: Option<usize>,
    data_dir: Option<PathBuf>,
    progress: Option<Py<PyAny>>,
    teacher: Option<String>,
    teacher_weight: f32,
) -> PyResult<Option<String>> {
    let request = TrainRequest {
        recipe: recipe(model)?,
        epochs,
        seed,
        split_seed,
        validation,
        limit,
        resume,
        max_batches,
        teacher,
        teacher_weight,
        ..TrainRequest::default()
    };
    let data = py
        .detach(|| DataDir::resolve(data_dir).and_then(|d| d.load()))
        .map_err(data_error)?;
    let trained = observed(py, progress, |o| request.run(&data, &out, o))?;
    Ok(trained
        .test
        .map(|t| serde_json::to_string(&t).unwrap_or_default()))
}

/// Trains a network or the SVM on arrays (the scikit-learn estimators' `fit`): images n x 784
/// uint8, labels n uint8 in 0..9, `validation` of them held out to calibrate confidence.
#[pyfunction]
#[pyo3(signature = (model, images, labels, validation, seed=1, epochs=None, svm_c=None, svm_gamma=None, svm_components=None, svm_deskew=true, progress=None))]
#[allow(clippy::too_many_arguments)]
fn fit(
    py: Python<'_>,
    model: &str,
    images: PyReadonlyArray2<'_, u8>,
    labels: numpy::PyReadonlyArray1<'_, u8>,
    validation: usize,
    seed: u64,
    epochs: Option<usize>,
    svm_c: Option<f32>,
    svm_gamma: Option<f32>,
    svm_components: Option<usize>,
    svm_deskew: bool,
    progress: Option<Py<PyAny>>,
) -> PyResult<NativeModel> {
    let mut recipe = recipe(model)?;
    if let Recipe::Svm(settings) = &mut recipe {
        let d = SvmSettings::default();
        settings.svm.c = svm_c.unwrap_or(d.svm.c);
        settings.svm.gamma = svm_gamma.unwrap_or(d.svm.gamma);
        settings.components = svm_components.unwrap_or(d.components);
        settings.deskew = svm_deskew;
    }
    let request = TrainRequest {
        recipe,
        epochs,
        seed,
        split_seed: seed,
        validation,
        ..TrainRequest::default()
    };
    let digits = Digits::new(
        images
            .as_slice()
            .map_err(|e| PyValueError::new_err(e.to_string()))?
            .to_vec(),
        labels
            .as_slice()
            .map_err(|e| PyValueError::new_err(e.to_string()))?
            .to_vec(),
    );
    let model = observed(py, progress, |o| request.fit(&digits, o))?;
    Ok(NativeModel {
        spec: format!("<fitted {}>", model.kind()),
        model: Mutex::new(model),
    })
}

/// Sets the arithmetic of every network's predictions from now on: "auto" (the default: the
/// faster of the two on this CPU), "bf16" (bfloat16 products where the CPU has them) or "f32".
#[pyfunction]
fn set_precision(name: &str) -> PyResult<()> {
    let precision = digits_model::Precision::parse(name).ok_or_else(|| {
        PyValueError::new_err(format!(
            "unknown precision '{name}' (choose auto, bf16 or f32)"
        ))
    })?;
    digits_model::set_precision(precision);
    Ok(())
}

/// The setting: "auto", "bf16" or "f32" (`build_info["precision"]` says what it computes in).
#[pyfunction]
fn precision() -> &'static str {
    digits_model::precision().name()
}

/// Names of the shipped models.
#[pyfunction]
fn shipped_models() -> Vec<&'static str> {
    shipped::NAMES.to_vec()
}

#[pymodule]
fn _digits(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_class::<NativeModel>()?;
    m.add_class::<PyReading>()?;
    m.add_class::<PyNumberReading>()?;
    m.add_function(wrap_pyfunction!(load_mnist, m)?)?;
    m.add_function(wrap_pyfunction!(train, m)?)?;
    m.add_function(wrap_pyfunction!(fit, m)?)?;
    m.add_function(wrap_pyfunction!(shipped_models, m)?)?;
    m.add_function(wrap_pyfunction!(set_precision, m)?)?;
    m.add_function(wrap_pyfunction!(precision, m)?)?;
    let info = PyDict::new(m.py());
    info.set_item("precision", digits_model::model::precision_in_use().0)?;
    m.add("build_info", info)?;
    Ok(())
}
