#!/usr/bin/env bash
# Builds a Debian package of hopstage with dpkg-deb: the binary, the man page
# and shell completions (generated from the CLI definitions), and an example
# /etc/hopstage/config.toml (mode 0640, a conffile).
#
#   scripts/package.sh [--binary PATH] [--out DIR]
#
# Default binary: target/release/hopstage (built if missing). RPM and a static
# musl build are not produced: see docs/packaging.md.
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=""
OUT="target/pkg"
while [ $# -gt 0 ]; do
  case "$1" in
    --binary) BIN="$2"; shift 2 ;;
    --out) OUT="$2"; shift 2 ;;
    *) echo "usage: $0 [--binary PATH] [--out DIR]" >&2; exit 2 ;;
  esac
done
if [ -z "$BIN" ]; then
  cargo build --release --locked
  BIN=target/release/hopstage
fi
VERSION=$("$BIN" --version | awk '{print $2}')
ARCH=$(dpkg --print-architecture 2>/dev/null || echo amd64)
STAGE=$(mktemp -d)
trap 'rm -rf "$STAGE"' EXIT
install -D -m 0755 "$BIN" "$STAGE/usr/bin/hopstage"
strip "$STAGE/usr/bin/hopstage" 2>/dev/null || true
mkdir -p "$STAGE/usr/share/man/man1"
"$BIN" man | gzip -9n >"$STAGE/usr/share/man/man1/hopstage.1.gz"
install -d "$STAGE/usr/share/bash-completion/completions" "$STAGE/usr/share/zsh/vendor-completions" \
  "$STAGE/usr/share/fish/vendor_completions.d"
"$BIN" completions bash >"$STAGE/usr/share/bash-completion/completions/hopstage"
"$BIN" completions zsh >"$STAGE/usr/share/zsh/vendor-completions/_hopstage"
"$BIN" completions fish >"$STAGE/usr/share/fish/vendor_completions.d/hopstage.fish"
install -D -m 0640 packaging/config.toml "$STAGE/etc/hopstage/config.toml"
install -D -m 0644 README.md "$STAGE/usr/share/doc/hopstage/README.md"
mkdir -p "$STAGE/DEBIAN"
cat >"$STAGE/DEBIAN/control" <<CONTROL
Package: hopstage
Version: $VERSION
Architecture: $ARCH
Maintainer: hopstage developers <hopstage@localhost>
Section: utils
Priority: optional
Depends: libc6
Description: stage data between Azure Blob Storage and Lustre (AMLFS)
 Parallel, resumable, verified copies between Blob containers and POSIX or
 Lustre trees, with AMLFS-compatible POSIX metadata and Lustre layouts.
CONTROL
echo "/etc/hopstage/config.toml" >"$STAGE/DEBIAN/conffiles"
mkdir -p "$OUT"
DEB="$OUT/hopstage_${VERSION}_${ARCH}.deb"
dpkg-deb --root-owner-group --build "$STAGE" "$DEB" >/dev/null
echo "$DEB"
