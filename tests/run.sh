#!/usr/bin/env bash
# Install everything the test suite needs on a fresh Debian machine, then run all of it.
# Usage: bash tests/run.sh [pytest arguments]   (e.g. -m unit for the fast layer)
set -euo pipefail
cd "$(dirname "$0")/.."
bash deploy/install.sh test
venv="${TXCHAT_VENV:-.venv}"
"$venv/bin/python" -m mypy
exec "$venv/bin/python" -m pytest "$@"
