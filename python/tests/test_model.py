"""Models on numpy arrays, model files, MNIST, training and evaluation from Python."""

from __future__ import annotations

import numpy as np
import pytest

import digits


def test_shapes_and_dtypes_agree(mnist_test):
    images, labels = mnist_test
    model = digits.load_model("cnn")
    x = images[:300]
    by_bytes = model.predict_proba(x)
    # Bytes are scaled by 1/255 in Rust; the same floats give the same answers bit for bit.
    by_floats = model.predict_proba(x.astype(np.float32) * np.float32(1.0 / 255.0))
    flat = model.predict_proba(x.reshape(300, 784))
    assert by_bytes.shape == (300, 10) and by_bytes.dtype == np.float32
    np.testing.assert_array_equal(by_bytes, by_floats)
    # Dividing instead moves the last bit of some pixels, which bfloat16 products can carry
    # into the fourth decimal of a probability.
    np.testing.assert_allclose(by_bytes, model.predict_proba(x / 255.0), atol=2e-3)
    np.testing.assert_array_equal(by_bytes, flat)
    assert (model.predict(x) == labels[:300]).mean() > 0.99


def test_predict_matches_the_recorded_test_accuracy(mnist_test):
    images, labels = mnist_test
    model = digits.load_model("cnn")
    accuracy = float((model.predict(images) == labels).mean())
    assert accuracy == pytest.approx(model.test_accuracy, abs=0.0015)
    assert accuracy >= 0.995


def test_evaluate_reports_like_the_cli(mnist_test):
    e = digits.evaluate("mlp")
    assert e["images"] == 10000 and e["accuracy"] > 0.98
    assert len(e["confusion"]) == 10 and e["source"] == "test"
    v = digits.load_model("mlp").evaluate(split="validation")
    assert v["images"] == 5000 and v["source"] == "validation"


def test_mnist_load_verifies_and_shapes(mnist_test):
    images, labels = mnist_test
    assert images.shape == (10000, 28, 28) and images.dtype == np.uint8
    assert labels.shape == (10000,) and list(labels[:3]) == [7, 2, 1]


def test_mnist_load_names_a_missing_folder(tmp_path):
    with pytest.raises(FileNotFoundError, match="digits data fetch"):
        digits.mnist.load(data_dir=tmp_path / "nothing", split="test")
    with pytest.raises(ValueError, match="split"):
        digits.mnist.load(split="everything")


@pytest.mark.parametrize(
    "X, message",
    [
        (np.zeros((28, 28), np.uint8), "X\\[None\\]"),
        (np.zeros((3, 10)), "shape"),
        (np.full((2, 784), 255.0, np.float32), "0..1"),
        (np.full((2, 784), np.nan, np.float32), "0..1"),
        (np.zeros((2, 784), np.complex64), "uint8"),
    ],
)
def test_bad_arrays_raise_value_errors(X, message):
    with pytest.raises(ValueError, match=message):
        digits.load_model("cnn").predict(X)


def test_bad_model_files(tmp_path):
    with pytest.raises(OSError):
        digits.load_model(tmp_path)  # a folder, not a file
    junk = tmp_path / "junk.safetensors"
    junk.write_bytes(b"\x08\x00\x00\x00\x00\x00\x00\x00{}garbage")
    with pytest.raises(ValueError, match="junk.safetensors"):
        digits.load_model(junk)
    with pytest.raises(ValueError, match="not a shipped model"):
        digits.load_model("no-such-model")


def test_a_saved_model_loads_and_predicts_the_same(tmp_path, mnist_test):
    images, _ = mnist_test
    model = digits.load_model("svm")
    model.save(tmp_path / "svm.safetensors")
    again = digits.load_model(tmp_path / "svm.safetensors")
    assert again.kind == "svm"
    np.testing.assert_array_equal(again.predict(images[:200]), model.predict(images[:200]))


def test_train_writes_a_model_that_predicts(tmp_path, mnist_test):
    images, labels = mnist_test
    out = tmp_path / "small.safetensors"
    model = digits.train(
        "cnn-small", epochs=1, out=out, progress=False, limit=10000, validation=1000
    )
    assert out.exists() and (tmp_path / "small.safetensors.ckpt").exists()
    assert model.kind == "cnn-small" and model.test_accuracy > 0.9
    assert (model.predict(images[:1000]) == labels[:1000]).mean() > 0.9


def test_train_learns_from_a_teacher(tmp_path, mnist_test):
    images, labels = mnist_test
    model = digits.train(
        "cnn-small",
        epochs=1,
        max_batches=60,
        out=tmp_path / "s.safetensors",
        progress=False,
        teacher="cnn",
        teacher_weight=0.7,
    )
    assert (model.predict(images[:1000]) == labels[:1000]).mean() > 0.8
    # A teacher that saw this run's validation images would leak them into its training.
    with pytest.raises(ValueError, match="held out other validation images"):
        digits.train(
            "cnn-small",
            limit=10000,
            out=tmp_path / "t.safetensors",
            progress=False,
            teacher="cnn",
        )


def test_train_rejects_nonsense():
    with pytest.raises(ValueError, match="unknown model"):
        digits.train("resnet", progress=False, out="runs/x.safetensors")
    with pytest.raises(ValueError, match="epochs"):
        digits.train("cnn-small", epochs=0, progress=False)


def test_realworld_reports_like_the_cli(mnist_test):
    model = digits.load_model("cnn")
    v = model.realworld(per_style=12, numbers=10, split="validation", seed=3)
    assert v["model"] == "cnn" and v["numbers"] == 10
    assert len(v["styles"]) == 16 and "thin" in v["styles"] and "finger" in v["styles"]
    assert all(s["total"] == 12 for s in v["styles"].values())
    assert v["misread_as_mnist"].keys() == v["styles"].keys()
    assert all(
        v["misread_as_mnist"][k] <= s["total"] - s["correct"] for k, s in v["styles"].items()
    )
    assert v["digit_accuracy"] > 0.9 and 0 <= v["number_calibration_error"] <= 1
    # The same seed draws the same images.
    assert model.realworld(per_style=12, numbers=10, split="validation", seed=3) == v
    with pytest.raises(ValueError, match="unknown style 'sketchy'.*finger"):
        model.realworld(per_style=1, numbers=1, number_style="sketchy")
    with pytest.raises(ValueError, match="split"):
        model.realworld(per_style=1, numbers=1, split="train")
    with pytest.raises(ValueError, match="per_style"):
        model.realworld(per_style=-1)
    with pytest.raises(ValueError, match="2000000 numbers asked for: a run draws at most 1000000"):
        model.realworld(per_style=1, numbers=2_000_000)
    with pytest.raises(ValueError, match="threads"):
        model.realworld(per_style=1, numbers=1, threads=0)


def test_a_labelled_folder_is_scored_with_its_misreadings(tmp_path, examples):
    import shutil

    for name in ("seven.png", "five-photo.png", "one-transparent.png"):
        shutil.copy(examples / name, tmp_path / name)
    (tmp_path / "broken.png").write_bytes(b"not an image")
    (tmp_path / "labels.csv").write_text(
        "file,label,kind\nseven.png,7,canvas\nfive-photo.png,3,photo\n"
        "one-transparent.png,1,canvas\nbroken.png,4,photo\n"
    )
    v = digits.load_model("cnn").score_folder(tmp_path, threads=2)
    assert v["kinds"]["canvas"] == {"correct": 2, "total": 2, "accuracy": 1.0}
    assert v["kinds"]["all"]["total"] == 4 and v["kinds"]["photo"]["correct"] == 0
    misread = {m["file"].rsplit("/", 1)[-1]: m for m in v["misread"]}
    assert misread["five-photo.png"]["read"] == 5 and misread["five-photo.png"]["label"] == 3
    assert "not a supported image" in misread["broken.png"]["error"]
    assert v["confident_errors"] == int(misread["five-photo.png"]["confidence"] >= 0.95)
    (tmp_path / "labels.csv").write_text("file,label\nseven.png,12\n")
    with pytest.raises(ValueError, match="label '12' is not a digit"):
        digits.load_model("cnn").score_folder(tmp_path)
    with pytest.raises(OSError, match="labels.csv"):
        digits.load_model("cnn").score_folder(tmp_path / "nowhere")
