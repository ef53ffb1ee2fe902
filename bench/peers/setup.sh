#!/usr/bin/env bash
# Creates the peers' virtual environment in bench/.venv: scikit-learn, PyTorch and Keras
# (TensorFlow, CPU) from PyPI, for bench/peers/*.py and `digits compare --peers`.
set -euo pipefail
cd "$(dirname "$0")/.."
python3 -m venv .venv
.venv/bin/pip install --quiet --upgrade pip
.venv/bin/pip install --quiet "tensorflow-cpu>=2.16" torch scikit-learn numpy
.venv/bin/python -c "import keras, tensorflow as tf, torch, sklearn; print('keras', keras.__version__, 'tensorflow', tf.__version__, 'torch', torch.__version__, 'scikit-learn', sklearn.__version__)"
