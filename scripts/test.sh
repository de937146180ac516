#!/usr/bin/env bash
# The whole test suite: installs what the tests need if it is missing, checks
# formatting and lints, then runs unit and integration tests (the integration
# tests start their own Azurite on a free 127.0.0.1 port).
set -euo pipefail
cd "$(dirname "$0")/.."

bash scripts/deps.sh
cargo fmt --check
cargo clippy --all-targets --locked -- -D warnings
cargo test --locked 2>&1 | tee target/test.log
