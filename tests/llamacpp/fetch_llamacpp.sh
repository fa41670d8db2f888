#!/bin/sh
# Fetches llama.cpp's C library (CPU build) from the npm registry into DEST: the pinned package
# @node-llama-cpp/linux-x64 (npm pack checks the registry's integrity hash), unpacked; DEST/bins/linux-x64 then
# holds libllama and libggml*. Third-party files stay in the build folder and are never committed.
# Usage: fetch_llamacpp.sh DEST
# Exit 0 when the library is there, 77 (CTest: skipped) when it cannot be had outside CI, 1 when it cannot be had
# in CI (CI=true): the llama.cpp stage must not pass silently without its client.
set -u
PACKAGE="@node-llama-cpp/linux-x64@3.22.1"
DEST=$1
LIB="$DEST/package/bins/linux-x64/libllama.v0.5.0.so"
[ -f "$LIB" ] && { echo "llama.cpp: $LIB present"; exit 0; }
fail() {
  echo "*** llama.cpp harness: $1 ***" >&2
  if [ "${CI:-}" = "true" ]; then echo "*** CI=true: failing (the llama.cpp stage needs $PACKAGE) ***" >&2; exit 1; fi
  echo "*** SKIPPED: the llama.cpp tests need $PACKAGE from the npm registry ***" >&2
  exit 77
}
command -v npm >/dev/null 2>&1 || fail "npm is not installed (Debian: apt-get install npm)"
mkdir -p "$DEST" || fail "cannot create $DEST"
tmp=$(mktemp -d "$DEST/.fetch.XXXXXX") || fail "cannot create a temporary folder in $DEST"
trap 'rm -rf "$tmp"' EXIT
( cd "$tmp" && npm pack --silent "$PACKAGE" >pack.log 2>&1 ) || { cat "$tmp/pack.log" >&2; fail "npm pack $PACKAGE failed"; }
tarball=$(ls "$tmp"/*.tgz 2>/dev/null | head -n 1)
[ -n "$tarball" ] || fail "npm pack produced no tarball"
tar -xzf "$tarball" -C "$tmp" || fail "cannot unpack $tarball"
[ -f "$tmp/package/bins/linux-x64/libllama.v0.5.0.so" ] || fail "$PACKAGE has no bins/linux-x64/libllama.v0.5.0.so"
rm -rf "$DEST/package" && mv "$tmp/package" "$DEST/package" || fail "cannot move the package into $DEST"
echo "llama.cpp: fetched $PACKAGE into $DEST/package"
