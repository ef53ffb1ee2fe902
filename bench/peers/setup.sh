#!/usr/bin/env bash
# Creates the peers' virtual environment (Keras/TensorFlow from PyPI) in bench/.venv.
set -euo pipefail
cd "$(dirname "$0")/.."
python3 -m venv .venv
.venv/bin/pip install --quiet --upgrade pip
.venv/bin/pip install --quiet "tensorflow-cpu>=2.16" numpy
.venv/bin/python -c "import keras, tensorflow as tf; print('keras', keras.__version__, 'tensorflow', tf.__version__)"
