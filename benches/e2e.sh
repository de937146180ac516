#!/usr/bin/env bash
# One command for the end-to-end benchmark: installs what it needs, builds
# hopstage in release mode, runs benches/e2e.py (hopstage vs rclone on a fresh
# Azurite per case) and writes docs/benchmarks.md + docs/benchmarks.svg.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/deps.sh
cargo build --release --locked
exec python3 benches/e2e.py "$@"
