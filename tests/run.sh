#!/usr/bin/env bash
# Install what the tests need on a fresh Debian machine, then run them.
# Usage: bash tests/run.sh [pytest arguments]   (e.g. -m unit for the fast layer)
# With -m naming layers (and no "not"), and no path, only those layers' programs are installed
# (-m unit: none); otherwise everything.
set -euo pipefail
cd "$(dirname "$0")/.."
layers=()
all=""
args=("$@")
for ((i = 0; i < ${#args[@]}; i++)); do
    case "${args[i]}" in
        -m) expression="${args[i + 1]:-}"; i=$((i + 1)) ;;
        -m*) expression="${args[i]#-m}"; expression="${expression#=}" ;;
        -*) ;;
        *) all=yes ;;  # a path, or an option's value: play safe
    esac
done
if [ -z "$all" ] && [ -n "${expression:-}" ]; then
    for word in $(tr '()' '  ' <<<"$expression"); do
        case "$word" in
            unit | memory | live | process | cluster | browser | faults) layers+=("$word") ;;
            or | and) ;;
            *) all=yes ;;
        esac
    done
else
    all=yes
fi
if [ -n "$all" ]; then
    bash deploy/install.sh test
else
    bash deploy/install.sh test "${layers[@]}"
fi
venv="${TXCHAT_VENV:-.venv}"
"$venv/bin/python" -m mypy
exec "$venv/bin/python" -m pytest "$@"
