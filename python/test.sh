#!/usr/bin/env bash
# The Python package's tests as a user meets the package: maturin builds the wheel, a fresh
# virtual environment installs it with its test extras (pytest, scikit-learn, Ray Data,
# Pillow) from PyPI, then ruff checks the Python sources and pytest runs python/tests against
# the installed wheel (a local two-CPU Ray cluster included; tests that need MNIST run when
# DIGITS_DATA_DIR points at it).
set -euo pipefail
# A relative data folder is the caller's; pytest runs from elsewhere.
if [ -n "${DIGITS_DATA_DIR:-}" ]; then
  [ -d "$DIGITS_DATA_DIR" ] || { echo "DIGITS_DATA_DIR=$DIGITS_DATA_DIR is not a folder" >&2; exit 1; }
  DIGITS_DATA_DIR=$(cd "$DIGITS_DATA_DIR" && pwd)
  export DIGITS_DATA_DIR
fi
cd "$(dirname "$0")/.."
venv=target/python-test-venv
wheels=target/wheels
rm -rf "$venv" "$wheels"
python3 -m venv "$venv"
"$venv/bin/pip" install --quiet --upgrade pip
"$venv/bin/pip" install --quiet "maturin>=1.9,<2" "ruff>=0.6"
"$venv/bin/ruff" format --check python bench/python bench/peers tests/corpus
"$venv/bin/ruff" check python bench/python bench/peers tests/corpus
"$venv/bin/maturin" build --release --out "$wheels"
wheel=$(ls "$wheels"/digits-*.whl)
"$venv/bin/pip" install --quiet "$wheel[test]"
# From outside the checkout, so that `import digits` is the installed wheel, not python/digits.
cd "$venv"
"$OLDPWD/$venv/bin/python" -m pytest -p no:cacheprovider -q "$OLDPWD/python/tests"
