"""Ctrl+C stops a long native call with KeyboardInterrupt, and the interpreter lives on."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import pytest

SCRIPT = """
import sys, digits
try:
    digits.train("cnn", epochs=5, out=sys.argv[1], progress=True)
except KeyboardInterrupt:
    print("interrupted cleanly", flush=True)
    sys.exit(3)
"""


def test_ctrl_c_interrupts_training(tmp_path):
    if not os.environ.get("DIGITS_DATA_DIR"):
        pytest.skip("set DIGITS_DATA_DIR to the MNIST files to run this test")
    proc = subprocess.Popen(
        [sys.executable, "-c", SCRIPT, str(tmp_path / "cnn.safetensors")],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    # Wait until batches are running (the progress bar is drawn on stderr).
    deadline = time.time() + 60
    seen = ""
    while time.time() < deadline and "batch" not in seen:
        seen += proc.stderr.read(1) or ""
    assert "batch" in seen, seen
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 3, (out, err)
    assert "interrupted cleanly" in out


REALWORLD = """
import sys, digits
model = digits.load_model("cnn")
print("started", flush=True)
try:
    model.realworld(per_style=100000, numbers=0, split="validation")
except KeyboardInterrupt:
    print("interrupted cleanly", flush=True)
    sys.exit(3)
"""


def test_ctrl_c_interrupts_a_realworld_run():
    if not os.environ.get("DIGITS_DATA_DIR"):
        pytest.skip("set DIGITS_DATA_DIR to the MNIST files to run this test")
    proc = subprocess.Popen(
        [sys.executable, "-c", REALWORLD], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    assert proc.stdout.readline().strip() == "started"
    # 1.6 million images take many minutes: the run is well under way after two seconds.
    time.sleep(2)
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 3, (out, err)
    assert "interrupted cleanly" in out
