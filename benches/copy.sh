#!/usr/bin/env bash
# Local copy benchmark: `hopstage copy` against `cp -a` and `rsync -a` on the
# same trees (one 2 GiB file; 200 × 8 MiB; 5,000 × 4 KiB nested), 3 rounds,
# page cache synced and dropped before every run (as root). Prints wall, CPU
# (user+sys) and peak RSS per tool and case.
#   benches/copy.sh [WORKDIR]
set -euo pipefail
cd "$(dirname "$0")/.."
HOP="${HOPSTAGE_BIN:-target/release/hopstage}"
[ -x "$HOP" ] || cargo build --release --locked
command -v rsync >/dev/null || apt-get install -y -qq rsync >/dev/null
W="${1:-/tmp/hopstage-copy-bench}"
mkdir -p "$W/src"
if [ ! -e "$W/src/.done" ]; then
  mkdir -p "$W/src/big" "$W/src/medium" "$W/src/small"
  head -c $((2 << 30)) /dev/urandom >"$W/src/big/f2g"
  for i in $(seq -w 0 199); do head -c $((8 << 20)) /dev/urandom >"$W/src/medium/m$i"; done
  for i in $(seq 0 4999); do d="$W/src/small/d$((i / 500))/e$(((i / 50) % 10))"; mkdir -p "$d"; head -c 4096 /dev/urandom >"$d/f$i"; done
  touch "$W/src/.done"
fi
drop() { sync; echo 3 >/proc/sys/vm/drop_caches 2>/dev/null || true; }
printf '%-8s %-9s %8s %8s %9s\n' case tool wall_s cpu_s rss_mib
for round in 1 2 3; do
  for c in big medium small; do
    for tool in hopstage cp rsync; do
      rm -rf "$W/dst"; mkdir -p "$W/dst"; drop
      case $tool in
        hopstage) cmd=("$HOP" copy "$W/src/$c" "$W/dst/$c" -q) ;;
        cp) cmd=(cp -a "$W/src/$c" "$W/dst/$c") ;;
        rsync) cmd=(rsync -a "$W/src/$c/" "$W/dst/$c/") ;;
      esac
      /usr/bin/time -f "%e %U %S %M" -o "$W/time" "${cmd[@]}"
      read -r wall user sys rss <"$W/time"
      printf '%-8s %-9s %8.2f %8.2f %9.1f\n' "$c" "$tool" "$wall" "$(echo "$user + $sys" | bc)" "$(echo "$rss / 1024" | bc -l)"
    done
  done
done
