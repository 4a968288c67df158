#!/usr/bin/env bash
# Build the isolated virtual environments for the peer benchmarks.
#
# Usage (from the repository root):  bash benchmarks/peers/build_venvs.sh [name ...]
#   names: rejax sb3 purejaxrl urlb dreamer (default: all five)
#
# Each peer gets benchmarks/.venvs/<name>, created with `python3 -m venv` and
# filled from benchmarks/peers/requirements-<name>.txt. A venv whose
# .complete marker exists is left alone, so re-running is cheap; a half-built
# venv (no marker) is removed and rebuilt. The pip cache is reused.
set -euo pipefail

PYTHON="${PYTHON:-python3}"
PEERS_DIR="benchmarks/peers"
VENV_ROOT="benchmarks/.venvs"

if [[ ! -d "$PEERS_DIR" ]]; then
    echo "build_venvs.sh: run from the repository root ($PEERS_DIR not found)" >&2
    exit 1
fi

names=("$@")
if [[ ${#names[@]} -eq 0 ]]; then
    names=(rejax sb3 purejaxrl urlb dreamer)
fi

mkdir -p "$VENV_ROOT"

for name in "${names[@]}"; do
    req="$PEERS_DIR/requirements-$name.txt"
    venv="$VENV_ROOT/$name"
    if [[ ! -f "$req" ]]; then
        echo "build_venvs.sh: no requirements file $req" >&2
        exit 1
    fi
    if [[ -f "$venv/.complete" ]]; then
        echo "[$name] $venv already built, skipping"
        continue
    fi
    echo "[$name] building $venv from $req"
    rm -rf "$venv"
    "$PYTHON" -m venv "$venv"
    "$venv/bin/python" -m pip install --quiet -r "$req"
    "$venv/bin/python" -m pip check
    touch "$venv/.complete"
    echo "[$name] done"
done
