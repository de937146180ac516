#!/usr/bin/env bash
# Runs every cargo-fuzz target for a fixed time budget (default 60 s each) and
# prints executions and findings per target. Not part of CI's default path.
# cargo-fuzz needs nightly features; RUSTC_BOOTSTRAP=1 lets the stable
# toolchain (the only one these machines have) accept them.
set -euo pipefail
cd "$(dirname "$0")/.."
SECONDS_EACH="${1:-60}"
command -v cargo-fuzz >/dev/null 2>&1 || cargo install --locked cargo-fuzz
export RUSTC_BOOTSTRAP=1
cd fuzz
for t in $(cargo fuzz list); do
  mkdir -p "corpus/$t" "artifacts/$t"
  log="target/fuzz-$t.log"
  mkdir -p target
  if cargo fuzz run "$t" -- -max_total_time="$SECONDS_EACH" -print_final_stats=1 >"$log" 2>&1; then
    status="no findings"
  else
    status="FINDING (see fuzz/artifacts/$t)"
  fi
  execs=$(grep -o 'stat::number_of_executed_units: *[0-9]*' "$log" | grep -o '[0-9]*$' || echo "?")
  echo "$t: $execs executions in ${SECONDS_EACH}s, $status"
done
