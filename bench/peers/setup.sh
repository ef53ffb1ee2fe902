#!/usr/bin/env bash
# Creates the peers' virtual environment in bench/.venv: scikit-learn, PyTorch, Keras
# (TensorFlow, CPU) and ONNX Runtime from PyPI, for bench/peers/*.py and `digits compare --peers`.
set -euo pipefail
cd "$(dirname "$0")/.."
python3 -m venv .venv
.venv/bin/pip install --quiet --upgrade pip
.venv/bin/pip install --quiet "tensorflow-cpu>=2.16" torch scikit-learn numpy onnxruntime
.venv/bin/python -c "import keras, tensorflow as tf, torch, sklearn, onnxruntime as ort; print('keras', keras.__version__, 'tensorflow', tf.__version__, 'torch', torch.__version__, 'scikit-learn', sklearn.__version__, 'onnxruntime', ort.__version__)"
