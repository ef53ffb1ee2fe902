"""ONNX export: the exported graph, run by ONNX Runtime, reads the MNIST test set as we do."""

from __future__ import annotations

import numpy as np
import onnxruntime as ort
import pytest

import digits

# Images per ONNX Runtime call: the ensemble's shifted views make five copies of each batch.
CHUNK = 500


@pytest.fixture
def f32():
    """Our predictions in f32, as ONNX Runtime computes (bf16 products differ by about 1e-3)."""
    before = digits.precision()
    digits.set_precision("f32")
    yield
    digits.set_precision(before)


def run_onnx(path, images: np.ndarray) -> np.ndarray:
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    pixels = (images.astype(np.float32) / np.float32(255)).reshape(-1, 1, 28, 28)
    chunks = [
        session.run(["probabilities"], {"pixels": pixels[i : i + CHUNK]})[0]
        for i in range(0, len(pixels), CHUNK)
    ]
    return np.concatenate(chunks)


@pytest.mark.parametrize(
    "name, count",
    # ensemble-large reads each image 30 times (six members, five views): 2,000 of them.
    [("cnn", 10_000), ("ensemble", 10_000), ("ensemble-large", 2_000), ("mlp", 10_000)],
)
def test_onnx_runtime_reads_the_test_set_as_we_do(name, count, mnist_test, tmp_path, f32):
    images, labels = (a[:count] for a in mnist_test)
    model = digits.load_model(name)
    path = tmp_path / f"{name}.onnx"
    assert model.export_onnx(path) == path.stat().st_size
    theirs = run_onnx(path, images)
    ours = model.predict_proba(images)
    assert theirs.shape == ours.shape == (len(images), 10)
    disagree = np.flatnonzero(theirs.argmax(1) != ours.argmax(1))
    assert disagree.size == 0, f"different digits on test images {disagree[:10]}"
    worst = np.abs(theirs - ours).max()
    assert worst < 1e-4, f"probabilities differ by up to {worst}"
    assert (theirs.argmax(1) == labels).mean() > 0.99


@pytest.mark.parametrize("architecture", ["cnn-large", "cnn-ref", "cnn-small"])
def test_every_architecture_exports(architecture, mnist_test, tmp_path, f32):
    """The other architectures: a pool of an odd-sized map (cnn-large's 7x7), unpadded
    convolutions with biases and a fused ReLU (cnn-ref), three pooled blocks (cnn-small).
    Briefly trained: only agreement counts."""
    images = mnist_test[0][:2000]
    model = digits.train(
        architecture, epochs=1, max_batches=20, out=tmp_path / "m.safetensors", progress=False
    )
    model.export_onnx(tmp_path / "m.onnx")
    theirs, ours = run_onnx(tmp_path / "m.onnx", images), model.predict_proba(images)
    assert np.array_equal(theirs.argmax(1), ours.argmax(1))
    assert np.abs(theirs - ours).max() < 1e-4


def test_onnx_file_names_its_inputs_outputs_and_model(tmp_path):
    path = tmp_path / "cnn.onnx"
    digits.load_model("cnn").export_onnx(path)
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    (pixels,) = session.get_inputs()
    assert pixels.name == "pixels" and pixels.shape[1:] == [1, 28, 28]
    assert [o.name for o in session.get_outputs()] == ["logits", "probabilities"]
    meta = session.get_modelmeta()
    assert meta.producer_name == "digits"
    assert meta.custom_metadata_map["digits.kind"] == "cnn"
    # Any batch size, one image included; probabilities sum to one.
    (p,) = session.run(["probabilities"], {"pixels": np.zeros((1, 1, 28, 28), np.float32)})
    assert p.shape == (1, 10) and abs(float(p.sum()) - 1) < 1e-5


def test_an_svm_is_refused_with_the_reason(tmp_path):
    with pytest.raises(ValueError, match="an SVM is not a network"):
        digits.load_model("svm").export_onnx(tmp_path / "svm.onnx")
    assert not (tmp_path / "svm.onnx").exists()
