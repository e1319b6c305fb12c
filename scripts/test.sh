#!/usr/bin/env bash
# Sets up (scripts/setup.sh: a venv with torch==2.11.0 and the test tools from
# tests/requirements.txt) and runs every test: formatting (rustfmt.toml is the house
# style) and clippy with warnings as errors, the Rust unit tests and the architecture
# invariants, the cross-component tests that start the real layerlensd, CLI, editor
# server and nginx (tests/tests/*.rs), and the Python client suite with its headless
# notebooks (tests/python).
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
python="$(scripts/setup.sh | tail -n 1)"

step() { printf '\n== %s (%s)\n' "$1" "$(date +%H:%M:%S)" >&2; }

step "formatting"
cargo fmt --all -- --check

step "fixtures"
"$python" tests/fixtures/make_fixtures.py tests/fixtures/out

step "build"
cargo build --locked --workspace --bins

step "clippy"
cargo clippy --locked --workspace --all-targets -- -D warnings

step "rust tests"
cargo test --locked --workspace

step "python tests"
"$python" -m pytest -q tests/python

step "all tests passed"
