#!/usr/bin/env bash
# Install txchat into its own virtual environment, with Debian's python3 (which refuses a bare
# `pip install`: PEP 668). Usage: bash deploy/install.sh [EXTRA [LAYER ...]]   (EXTRA: "test" for the suite)
# The environment is $TXCHAT_VENV, by default .venv in the checkout; its bin/ holds twistd.
set -euo pipefail
cd "$(dirname "$0")/.."
venv="${TXCHAT_VENV:-.venv}"
python="${PYTHON:-/usr/bin/python3}"
[ -x "$python" ] || python="$(command -v python3)"

# apt-get as root, or through sudo; "apt-get update" once, only when something is missing.
aptInstall() {
    local run=()
    [ "$(id -u)" -eq 0 ] || run=(sudo)
    "${run[@]}" apt-get update
    DEBIAN_FRONTEND=noninteractive "${run[@]}" apt-get install -y --no-install-recommends "$@"
}

# With "test", the layers to run may follow (unit memory live process cluster browser faults);
# none named: all of them. Only the layers named get the programs they drive for real.
extra="${1:-}"
if [ $# -gt 0 ]; then shift; fi
layers=" ${*:-cluster browser faults} "
wants() { [[ "$layers" == *" $1 "* ]]; }

need=()
# Debian splits venv's pip bootstrap into python3-venv.
"$python" -c 'import ensurepip, venv' 2>/dev/null || need+=(python3-venv)
if [ "$extra" = test ]; then
    if wants browser; then
        command -v chromium >/dev/null || need+=(chromium)
        command -v chromedriver >/dev/null || need+=(chromium-driver)
    fi
    if wants cluster || wants browser || wants faults; then
        command -v redis-server >/dev/null || need+=(redis-server)
    fi
    # A cluster's chat log: the tests start their own PostgreSQL from Debian's server binaries.
    if wants live || wants cluster || wants faults; then
        compgen -G "/usr/lib/postgresql/*/bin/postgres" >/dev/null || need+=(postgresql)
    fi
    if wants cluster; then
        command -v nginx >/dev/null || need+=(nginx)
        command -v redis-cli >/dev/null || need+=(redis-tools)
    fi
    # The fault runs: network namespaces, veth links and traffic control.
    if wants faults; then
        { [ -x /usr/sbin/ip ] || [ -x /sbin/ip ]; } && { [ -x /usr/sbin/tc ] || [ -x /sbin/tc ]; } || need+=(iproute2)
    fi
fi
if [ ${#need[@]} -gt 0 ]; then
    aptInstall "${need[@]}"
fi

[ -x "$venv/bin/python" ] || "$python" -m venv "$venv"
# Not editable: twistd finds plugins only in a real install.
"$venv/bin/python" -m pip install --quiet --disable-pip-version-check ".${extra:+[$extra]}"
