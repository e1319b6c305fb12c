#!/usr/bin/env bash
# Prepares a machine to build and test layerlens, unattended and idempotently.
#
# 1. A Python virtualenv with torch==2.11.0 (the libtorch that tch 0.24.0 binds) and
#    what the tests need, kept in a per-user cache directory keyed by the hash of
#    tests/requirements.txt: every clone, worktree and CI run on the machine shares one
#    4.7 GB install instead of downloading 3 GB again.
# 2. .cargo/config.toml (ignored by git) pointing tch at that libtorch, so that a plain
#    `cargo build` works from then on.
#
# Prints the venv's python path as its last line. A second run takes about a second.
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
requirements="$root/tests/requirements.txt"
key="$(sha256sum "$requirements" | cut -c1-16)"
cache="${XDG_CACHE_HOME:-$HOME/.cache}/layerlens"
venv="${LAYERLENS_VENV:-$cache/venv-py311-$key}"
mkdir -p "$cache"

# Two clones setting up at once must not both write the same venv.
exec 9>"$cache/setup.lock"
flock 9

if [ ! -f "$venv/.layerlens-ready" ]; then
    echo "setup: creating $venv (torch 2.11.0 and test tools; ~3 GB download the first time)" >&2
    rm -rf "$venv"
    python3 -m venv "$venv"
    "$venv/bin/python" -m pip install --quiet --upgrade pip
    "$venv/bin/python" -m pip install --quiet --progress-bar off -r "$requirements"
    touch "$venv/.layerlens-ready"
fi

# The real path: a venv reached through a symlink must give builds the same LIBTORCH.
libtorch="$("$venv/bin/python" -c 'import os, torch; print(os.path.realpath(os.path.dirname(torch.__file__)))')"
mkdir -p "$root/.cargo"
config="$root/.cargo/config.toml"
new_config="$(cat <<TOML
# Written by scripts/setup.sh; not tracked by git. Points tch at the shared libtorch.
[env]
LIBTORCH = "$libtorch"
LIBTORCH_CXX11_ABI = "1"
LAYERLENS_PYTHON = "$venv/bin/python"
TOML
)"
if [ ! -f "$config" ] || [ "$(cat "$config")" != "$new_config" ]; then
    printf '%s\n' "$new_config" > "$config"
fi
echo "$venv/bin/python"
