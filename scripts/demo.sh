#!/usr/bin/env bash
# The newcomer's demo: builds and installs hopstage, starts Azurite on
# loopback, seeds a demo project into the `home` container, stages it into a
# local "/AMLFS" directory with `hopstage pull`, pushes a job's output back
# with `hopstage push`, files the transfer summaries in the `log` container,
# and shows them. Everything lives under $DEMO_DIR (default: a new temp dir);
# the Azurite it started is stopped on exit.
set -euo pipefail
cd "$(dirname "$0")/.."

bash scripts/deps.sh
cargo install --quiet --locked --path . --root "${CARGO_HOME:-$HOME/.cargo}"
HOPSTAGE="${CARGO_HOME:-$HOME/.cargo}/bin/hopstage"

DEMO_DIR="${DEMO_DIR:-$(mktemp -d /tmp/hopstage-demo.XXXXXX)}"
mkdir -p "$DEMO_DIR"
PORT=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
azurite-blob --blobHost 127.0.0.1 --blobPort "$PORT" --location "$DEMO_DIR/azurite" \
  --silent --skipApiVersionCheck --disableTelemetry >"$DEMO_DIR/azurite.log" 2>&1 &
AZURITE_PID=$!
trap 'kill "$AZURITE_PID" 2>/dev/null || true' EXIT
for _ in $(seq 1 100); do
  (exec 3<>"/dev/tcp/127.0.0.1/$PORT") 2>/dev/null && break
  sleep 0.1
done

# Azurite's documented development account; the key is public.
export AZURE_STORAGE_CONNECTION_STRING="DefaultEndpointsProtocol=http;AccountName=devstoreaccount1;AccountKey=Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw==;BlobEndpoint=http://127.0.0.1:$PORT/devstoreaccount1;"

echo "== seeding a demo project into home:/proj"
SEED="$DEMO_DIR/seed/proj"
mkdir -p "$SEED/input/mesh" "$SEED/input/params" "$SEED/empty"
head -c $((64 * 1024 * 1024)) /dev/urandom >"$SEED/input/mesh/grid.bin"
for i in $(seq 1 200); do printf 'param %d\n' "$i" >"$SEED/input/params/p$i.txt"; done
echo "nx=512" >"$SEED/input/case.cfg"
"$HOPSTAGE" push "$SEED" home:/proj --create-container --quiet
"$HOPSTAGE" push "$SEED/input/case.cfg" log:/README --create-container --quiet
"$HOPSTAGE" ls -l home:/proj

echo "== stage in: hopstage pull home:/proj $DEMO_DIR/AMLFS/proj"
"$HOPSTAGE" pull home:/proj "$DEMO_DIR/AMLFS/proj" --json | tee "$DEMO_DIR/pull.json"

echo "== the job writes output"
mkdir -p "$DEMO_DIR/AMLFS/proj/out"
head -c $((16 * 1024 * 1024)) /dev/urandom >"$DEMO_DIR/AMLFS/proj/out/result.h5"
date >"$DEMO_DIR/AMLFS/proj/out/done.txt"

echo "== stage out: hopstage push $DEMO_DIR/AMLFS/proj/out home:/proj/out"
"$HOPSTAGE" push "$DEMO_DIR/AMLFS/proj/out" home:/proj/out --json | tee "$DEMO_DIR/push.json"

echo "== summaries filed in log:/demo"
"$HOPSTAGE" push "$DEMO_DIR/pull.json" log:/demo/pull.json --quiet
"$HOPSTAGE" push "$DEMO_DIR/push.json" log:/demo/push.json --quiet
"$HOPSTAGE" ls -R log:/demo

echo "== a second pull moves nothing (everything is up to date)"
"$HOPSTAGE" pull home:/proj "$DEMO_DIR/AMLFS/proj" --json
echo "demo files are in $DEMO_DIR"
