#!/usr/bin/env bash
# Builds hopstage's packages: a .deb (dpkg-deb) and an .rpm (rpmbuild), each
# with the binary, the man page and shell completions (generated from the CLI
# definitions), and an example /etc/hopstage/config.toml (mode 0640, kept on
# upgrade). Prints the paths of the packages it wrote.
#
#   scripts/package.sh [--binary PATH] [--out DIR]
#
# Default binary: target/release/hopstage (built if missing). No static musl
# build: see docs/packaging.md.
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

# RPM from the same staged tree (needs rpmbuild: `apt-get install rpm` or EL's rpm-build).
if command -v rpmbuild >/dev/null 2>&1; then
  TOP=$(mktemp -d)
  RPMARCH=$(uname -m)
  cat >"$TOP/hopstage.spec" <<SPEC
Name: hopstage
Version: $VERSION
Release: 1
Summary: Stage data between Azure Blob Storage and Lustre (AMLFS)
License: MIT
%description
Parallel, resumable, verified copies between Blob containers and POSIX or
Lustre trees, with AMLFS-compatible POSIX metadata and Lustre layouts.
%install
cp -a $STAGE/usr $STAGE/etc %{buildroot}/
%files
%attr(0755,root,root) /usr/bin/hopstage
/usr/share/man/man1/hopstage.1.gz
/usr/share/bash-completion/completions/hopstage
/usr/share/zsh/vendor-completions/_hopstage
/usr/share/fish/vendor_completions.d/hopstage.fish
/usr/share/doc/hopstage/README.md
%dir /etc/hopstage
%config(noreplace) %attr(0640,root,root) /etc/hopstage/config.toml
SPEC
  rpmbuild -bb --quiet --define "_topdir $TOP" --define "_build_id_links none" \
    --define "__strip /bin/true" --target "$RPMARCH" "$TOP/hopstage.spec" >/dev/null 2>&1
  cp "$TOP"/RPMS/*/hopstage-*.rpm "$OUT/"
  rm -rf "$TOP"
  ls "$OUT"/hopstage-"$VERSION"-1.*.rpm
fi
