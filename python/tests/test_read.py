"""Reading images from Python as the CLI reads them."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest
from conftest import EXAMPLES, scribbles

import digits

TRUNCATED_PNG = (EXAMPLES / "seven.png").read_bytes()[:200]


def test_reads_the_readme_example(examples):
    r = digits.read(str(examples / "seven.png"))
    assert r.digit == 7
    assert not r.uncertain
    assert r.probabilities.shape == (10,) and r.probabilities.dtype == np.float32
    assert abs(float(r.probabilities.sum()) - 1.0) < 1e-4
    assert r.confidence == pytest.approx(float(r.probabilities[7]))
    assert r.normalized.shape == (28, 28)
    assert len(r.bbox) == 4 and r.bbox[2] > 0
    assert [d for d, _ in r.top] == [7]
    top3 = digits.read(str(examples / "seven.png"), top=3).top
    assert len(top3) == 3 and top3[0][0] == 7 and top3[0][1] >= top3[1][1] >= top3[2][1]


def test_every_kind_of_source_gives_the_same_reading(examples):
    from PIL import Image

    path = examples / "five-photo.png"
    data = path.read_bytes()
    img = Image.open(path)
    rgba = np.asarray(img.convert("RGBA"))
    grey = np.asarray(img.convert("L"))
    answers = [
        digits.read(str(path)),
        digits.read(path),
        digits.read(data),
        digits.read(bytearray(data)),
        digits.read(img),
        digits.read(rgba),
        digits.read(rgba[:, :, :3]),
        digits.read(rgba.astype(np.float32) / 255.0),
    ]
    assert {a.digit for a in answers} == {5}
    for a in answers[1:5]:
        assert a.confidence == answers[0].confidence
    assert digits.read(grey).digit == 5


def test_a_number(examples):
    n = digits.read_number(examples / "number-899092.png")
    assert n.number == "899092"
    assert [d.digit for d in n.digits] == [8, 9, 9, 0, 9, 2]
    assert 0 < n.confidence <= 1


def test_each_model_reads_by_name(examples):
    from digits._model import SHIPPED

    assert "ensemble-large" in SHIPPED
    for name in SHIPPED:
        assert digits.read(examples / "seven.png", model=name).digit == 7, name


@pytest.mark.parametrize(
    "source, message",
    [
        (b"", "empty input"),
        (TRUNCATED_PNG, "could not be decoded"),
        (b"hello", "not a supported image"),
        (np.full((40, 40), 255, np.uint8), "no ink found"),
        (np.zeros((0, 5), np.uint8), "no pixels"),
        (np.zeros((4, 4, 2), np.uint8), "H x W"),
        (np.full((9, 9), 2.0), "0..1"),
        (np.full((9, 9), -3, np.int64), "0..255"),
        ("/no/such/file.png", "cannot read"),
        (12345, "cannot read a int"),
    ],
)
def test_bad_input_raises_a_read_error_naming_the_problem(source, message):
    with pytest.raises(digits.ReadError, match=message):
        digits.read(source)


def test_read_error_is_a_value_error():
    with pytest.raises(ValueError):
        digits.read(b"nope")


def test_read_many_keeps_order_and_returns_errors_as_values(examples):
    good = scribbles(40)
    sources = good[:20] + [b"broken", "/missing.png"] + good[20:] + [examples / "seven.png"]
    answers = digits.read_many(iter(sources), threads=2)
    assert len(answers) == len(sources)
    assert isinstance(answers[20], digits.ReadError) and "not a supported image" in str(answers[20])
    assert isinstance(answers[21], digits.ReadError) and answers[21].index == 21
    assert answers[-1].digit == 7
    one_by_one = [digits.read(s).digit for s in good]
    many = [a.digit for a in answers[:20] + answers[22:-1]]
    assert many == one_by_one


def test_read_many_gives_the_same_answers_on_any_number_of_threads():
    sources = scribbles(120, seed=3)
    one = digits.read_many(sources, threads=1)
    three = digits.read_many(sources, threads=3)
    assert [(a.digit, a.confidence) for a in one] == [(a.digit, a.confidence) for a in three]


def test_read_many_of_numbers(examples):
    answers = digits.read_many([examples / "number-899092.png"], number=True)
    assert answers[0].number == "899092"


def test_read_many_refuses_zero_threads():
    with pytest.raises(ValueError, match="threads"):
        digits.read_many([], threads=0)


def test_the_readme_one_liner_prints_seven(examples):
    out = subprocess.run(
        [sys.executable, "-c", "import digits; print(digits.read('examples/seven.png').digit)"],
        cwd=examples.parent,
        capture_output=True,
        text=True,
        check=True,
    )
    assert out.stdout.strip() == "7"
