# Sourced by the peer scripts: from the repository root, with the MNIST files, the peers'
# Python ($py) and a fresh release build of digits.
cd "$(dirname "${BASH_SOURCE[0]}")/../.."
: "${DIGITS_DATA_DIR:?point DIGITS_DATA_DIR at the MNIST files}"
py=${PEERS_PYTHON:-bench/.venv/bin/python}
cargo build --release --quiet
