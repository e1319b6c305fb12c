#!/usr/bin/env bash
# Sets up, builds and starts layerlensd on 127.0.0.1:7533 with the default embedded
# store (~/.local/share/layerlens) and the demo model: a small CNN trained on
# scikit-learn's digits, saved with torch.export (.pt2) and stored under the name
# `digits` (input shape 1,1,8,8), and the web explorer on http://127.0.0.1:7534/.
# Extra arguments go to layerlensd, e.g. `--listen 127.0.0.1:7600` or
# `--web-listen 127.0.0.1:7700`.
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
python="$(scripts/setup.sh | tail -n 1)"
"$python" tests/fixtures/make_fixtures.py tests/fixtures/out
cargo build --locked --bin layerlensd --bin layerlens
web=(--web-listen 127.0.0.1:7534)
for argument in "$@"; do
  [[ "$argument" == --web-listen* ]] && web=()
done
exec target/debug/layerlensd --add-model "digits=$root/tests/fixtures/out/digits_cnn.pt2@1,1,8,8" "${web[@]}" "$@"
