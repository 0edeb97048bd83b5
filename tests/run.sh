#!/usr/bin/env bash
# Install everything the test suite needs on a fresh Debian machine, then run all of it.
# Usage: bash tests/run.sh [pytest arguments]
set -euo pipefail
cd "$(dirname "$0")/.."

# System packages the tests drive for real, installed only when missing.
need=()
command -v chromium >/dev/null || need+=(chromium)
command -v chromedriver >/dev/null || need+=(chromium-driver)
command -v redis-server >/dev/null || need+=(redis-server)
command -v nginx >/dev/null || need+=(nginx)
if [ ${#need[@]} -gt 0 ]; then
    apt-get update
    DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends "${need[@]}"
fi

# Not editable: twistd finds plugins only in a real install.
python3 -m pip install --quiet --root-user-action=ignore ".[test]"
exec python3 -m pytest "$@"
