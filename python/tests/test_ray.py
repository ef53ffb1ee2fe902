"""Ray Data on a local cluster: the same answers as read_many, joined to the file names."""

from __future__ import annotations

import pytest
from conftest import scribbles

import digits

ray = pytest.importorskip("ray")


def test_a_folder_read_on_a_local_ray_cluster(tmp_path, examples):
    images = scribbles(300, seed=11)
    for i, png in enumerate(images):
        (tmp_path / f"{i:04d}.png").write_bytes(png)
    (tmp_path / "broken.png").write_bytes(b"not an image")
    import digits.ray as digits_ray

    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    try:
        rows = digits_ray.read_images(str(tmp_path), model="cnn", batch_size=64).take_all()
    finally:
        ray.shutdown()
    by_name = {r["path"].rsplit("/", 1)[-1]: r for r in rows}
    assert len(by_name) == 301
    assert by_name["broken.png"]["digit"] == -1
    assert "not a supported image" in by_name["broken.png"]["error"]
    expected = digits.read_many(images)
    for i, want in enumerate(expected):
        got = by_name[f"{i:04d}.png"]
        assert (got["digit"], got["error"]) == (want.digit, "")
        assert got["confidence"] == pytest.approx(want.confidence, abs=1e-6)
