#!/usr/bin/env bash
# Installs the Python package (built from this checkout by maturin, release mode) into the peers'
# virtual environment bench/.venv, beside PyTorch and scikit-learn, with Pillow for the images
# speed.py writes. Run bench/peers/setup.sh first if bench/.venv does not exist.
set -euo pipefail
cd "$(dirname "$0")/../.."
[ -x bench/.venv/bin/python ] || bench/peers/setup.sh
bench/.venv/bin/pip install --quiet --force-reinstall --no-deps .
bench/.venv/bin/pip install --quiet tqdm pillow
bench/.venv/bin/python -c "import digits; print('digits', digits.__version__, digits.build_info)"
