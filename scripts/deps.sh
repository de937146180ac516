#!/usr/bin/env bash
# Installs what hopstage's tests, demo and benchmarks need on a fresh Debian
# machine, skipping whatever is already there: Azurite (npm), Microsoft's
# Python SDK (PyPI), rclone, rpm, cpio, slurm-wlm, munge and shellcheck (Debian). Idempotent.
set -euo pipefail

need_apt=()
command -v rclone >/dev/null 2>&1 || need_apt+=(rclone)
command -v npm >/dev/null 2>&1 || need_apt+=(nodejs npm)
[ -x /usr/bin/time ] || need_apt+=(time)
command -v rpmbuild >/dev/null 2>&1 || need_apt+=(rpm)
command -v cpio >/dev/null 2>&1 || need_apt+=(cpio)
# Slurm hook tests: a real slurmctld + slurmd + munged (and the Lua burst buffer).
[ -x /usr/sbin/slurmctld ] || need_apt+=(slurm-wlm)
[ -x /usr/sbin/munged ] || need_apt+=(munge)
[ -x /usr/sbin/runuser ] || need_apt+=(util-linux)
# Bootstrap tests: the generated cluster-init script must pass shellcheck.
command -v shellcheck >/dev/null 2>&1 || need_apt+=(shellcheck)
if [ "${#need_apt[@]}" -gt 0 ]; then
  echo "deps: installing ${need_apt[*]} (apt)"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq >/dev/null
  apt-get install -y -qq "${need_apt[@]}" >/dev/null
fi
if ! command -v azurite-blob >/dev/null 2>&1; then
  echo "deps: installing azurite (npm)"
  npm install -g --silent azurite@3 >/dev/null
fi
if ! python3 -c 'import azure.storage.blob' >/dev/null 2>&1; then
  echo "deps: installing azure-storage-blob (pip)"
  python3 -m pip install -q azure-storage-blob >/dev/null
fi
