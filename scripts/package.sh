#!/usr/bin/env bash
# Builds what ships, from a built binary, without a container engine:
#
#   OUT/rootfs/                the container runtime tree: the binary, the shared
#                              libraries it loads (as ldd resolves them here) and
#                              the dynamic loader, an /etc/passwd naming the
#                              non-root user 65532, nothing else (no shell).
#                              deploy/container/Dockerfile copies it into `scratch`.
#   OUT/drawbridge_V_ARCH.deb  the binary, the systemd units, the docs and examples;
#                              Depends: the Debian packages that hold those libraries
#                              (at least the versions built against). No maintainer
#                              scripts: the units use DynamicUser, nothing to create.
#
# Usage: scripts/package.sh PATH/TO/drawbridge OUT_DIR
# Checked by test/deploy/deploy_test.sh (`make package` runs this on the Release build).
set -euo pipefail

BIN=$(realpath "$1")
OUT=$2
SRC=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
VERSION=$(sed -n 's/^project(drawbridge VERSION \([0-9.]*\).*/\1/p' "$SRC/CMakeLists.txt")
ARCH=$(dpkg --print-architecture)
[[ -n $VERSION ]] || { echo "package.sh: no version in CMakeLists.txt" >&2; exit 1; }

# The shared libraries the binary loads: "name => /path (addr)" lines, plus the
# loader ("/lib64/ld-linux-x86-64.so.2 (addr)").
mapfile -t LIBS < <(ldd "$BIN" | awk '/=> \// {print $3} /^[ \t]*\/.*ld-linux/ {print $1}')
if [[ ${#LIBS[@]} -eq 0 ]]; then
  echo "package.sh: ldd found no libraries for $BIN" >&2
  exit 1
fi

rm -rf "$OUT/rootfs" "$OUT/deb"
mkdir -p "$OUT/rootfs/usr/bin" "$OUT/rootfs/etc"
install -m 0755 "$BIN" "$OUT/rootfs/usr/bin/drawbridge"
strip --strip-unneeded "$OUT/rootfs/usr/bin/drawbridge"
for lib in "${LIBS[@]}"; do
  # The path as the loader asks for it (a /lib64 symlink stays one), and the
  # file behind it.
  mkdir -p "$OUT/rootfs$(dirname "$lib")"
  cp -L "$lib" "$OUT/rootfs$lib"
done
# Debian 12 is merged-/usr: /lib is /usr/lib. The tree keeps the paths ldd
# printed, which the loader's default search (and /etc/ld.so.cache absent)
# finds as they are.
printf 'root:x:0:0:root:/nonexistent:/nonexistent\nnonroot:x:65532:65532:nonroot:/nonexistent:/nonexistent\n' \
  >"$OUT/rootfs/etc/passwd"
printf 'root:x:0:\nnonroot:x:65532:\n' >"$OUT/rootfs/etc/group"
mkdir -p "$OUT/rootfs/var/lib/drawbridge" "$OUT/rootfs/etc/drawbridge"

# --- the .deb ---------------------------------------------------------------
PKG="$OUT/deb/drawbridge_${VERSION}_${ARCH}"
mkdir -p "$PKG/DEBIAN" "$PKG/usr/bin" "$PKG/lib/systemd/system" \
  "$PKG/usr/share/doc/drawbridge/examples"
install -m 0755 "$BIN" "$PKG/usr/bin/drawbridge"
strip --strip-unneeded "$PKG/usr/bin/drawbridge"
install -m 0644 "$SRC"/deploy/systemd/*.service "$PKG/lib/systemd/system/"
install -m 0644 "$SRC/README.md" "$SRC"/docs/*.md "$PKG/usr/share/doc/drawbridge/"
[[ -f $SRC/SECURITY.md ]] && install -m 0644 "$SRC/SECURITY.md" "$PKG/usr/share/doc/drawbridge/"
install -m 0644 "$SRC"/deploy/examples/* "$PKG/usr/share/doc/drawbridge/examples/"

# Depends: the package owning each library the binary names (DT_NEEDED; the
# rest come with those), at least at the version built against.
mapfile -t NEEDED < <(objdump -p "$BIN" | awk '/NEEDED/ {print $2}')
declare -A DEP
for name in "${NEEDED[@]}"; do
  lib=$(ldd "$BIN" | awk -v n="$name" '$1 == n && $3 ~ /^\// {print $3}')
  [[ -n $lib ]] || { echo "package.sh: ldd does not resolve $name" >&2; exit 1; }
  real=$(realpath "$lib")
  owner=""
  for candidate in "$lib" "$real" "${lib/#\/lib\//\/usr\/lib\/}" "${real/#\/usr\/lib\//\/lib\/}"; do
    owner=$(dpkg-query -S "$candidate" 2>/dev/null | head -n 1 | cut -d: -f1) && [[ -n $owner ]] && break
  done
  if [[ -z $owner ]]; then
    echo "package.sh: no Debian package owns $lib" >&2
    exit 1
  fi
  DEP[$owner]=$(dpkg-query -W -f='${Version}' "$owner")
done
# Suggests: what a feature loads at run time only (keys in a PKCS#11 token:
# OpenSSL's pkcs11 engine, docs/enrollment.md).
depends=""
for p in $(printf '%s\n' "${!DEP[@]}" | sort); do
  depends+="${depends:+, }$p (>= ${DEP[$p]})"
done
size=$(du -sk "$PKG" | cut -f1)
cat >"$PKG/DEBIAN/control" <<CONTROL
Package: drawbridge
Version: $VERSION
Architecture: $ARCH
Maintainer: Drawbridge developers <security@drawbridge.example>
Installed-Size: $size
Depends: $depends
Suggests: libengine-pkcs11-openssl
Section: net
Priority: optional
Homepage: https://drawbridge.example
Description: zero-trust connector: broker, agent and client in one binary
 An agent inside a private network dials out to a broker; a client forward
 proxy next to a cloud application reaches private resources through it.
 Every hop is mutual TLS 1.3 with short-lived certificates; deny-by-default
 policy, a tamper-evident audit trail and instant revocation.
 .
 Ships hardened systemd units for the server and the agent.
CONTROL
(cd "$PKG" && find usr lib -type f -exec md5sum {} + | sort -k2 >DEBIAN/md5sums)
find "$PKG" -type d -exec chmod 0755 {} +
dpkg-deb --root-owner-group --build "$PKG" "$OUT/drawbridge_${VERSION}_${ARCH}.deb" >/dev/null
echo "$OUT/rootfs"
echo "$OUT/drawbridge_${VERSION}_${ARCH}.deb"
