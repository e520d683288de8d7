#!/usr/bin/env bash
# Rebuilds clip-native.linux-x64.node (committed: neither CI nor a GPU host needs a compiler) from
# clip_native.c and Debian's libjpeg-turbo source, with its x86 SIMD (NASM). Needs root on Debian 12
# (bookworm) with deb-src and the project's dev dependencies installed (node-api-headers):
#
#   apt-get install -y gcc cmake make nasm dpkg-dev
#   bash imaging/native/build.sh          # or: LIBJPEG_SRC=/path/to/libjpeg-turbo-2.1.5 bash …
#
# Pinned: libjpeg-turbo 1:2.1.5-2 (Debian bookworm), the release ../jpeg/jpeg.wasm is built from,
# so both give the same bytes. Node-API (version 8) is ABI-stable: one binary serves Node 22 and 24.
# glibc 2.17 symbols or older only (checked below), so any x86-64 Linux GPU host of the last decade
# loads it.
set -euo pipefail
if [[ "${1:-}" == "--help" || "${1:-}" == "-h" ]]; then
  sed -n '2,/^set -euo/p' "$0" | grep '^#' | sed 's/^# \{0,1\}//'
  exit 0
fi
here="$(cd "$(dirname "$0")" && pwd)"
root="$(cd "$here/../.." && pwd)"
headers="$root/node_modules/node-api-headers/include"
[[ -f "$headers/node_api.h" ]] || { echo "no $headers: npm ci first" >&2; exit 1; }
# shellcheck source=../debian-source.sh
. "$here/../debian-source.sh"
# The same pin as ../jpeg/build.sh: both builds must give the same bytes.
debian_source LIBJPEG_SRC libjpeg-turbo=1:2.1.5-2 libjpeg-turbo-2.1.5

build="$work/build-native"
mkdir -p "$build"
(
  cd "$build"
  # PIC for linking into a shared object; hidden symbols so that the libjpeg inside sharp's libvips
  # and this one never stand in for each other.
  cmake "$src" -DCMAKE_BUILD_TYPE=Release -DENABLE_SHARED=0 -DENABLE_STATIC=1 \
    -DWITH_SIMD=1 -DREQUIRE_SIMD=1 -DWITH_TURBOJPEG=0 -DWITH_JAVA=0 -DWITH_12BIT=0 \
    -DWITH_ARITH_DEC=1 -DWITH_ARITH_ENC=0 -DCMAKE_POSITION_INDEPENDENT_CODE=1 \
    -DCMAKE_C_VISIBILITY_PRESET=hidden \
    -DCMAKE_C_FLAGS="-O2 -fvisibility=hidden -DNO_GETENV -DNO_PUTENV" >cmake.log
  make -j"$(nproc)" jpeg-static >make.log
)

out="$here/clip-native.linux-x64.node"
gcc -O3 -std=c11 -D_DEFAULT_SOURCE -Wall -Wextra -Werror -fPIC -shared -fvisibility=hidden \
  -DNAPI_VERSION=8 -DNO_GETENV -DNO_PUTENV -I"$headers" -I"$src" -I"$build" \
  "$here/clip_native.c" "$build/libjpeg.a" \
  -Wl,--exclude-libs,ALL -Wl,-Bsymbolic -Wl,-z,defs -Wl,--unresolved-symbols=ignore-in-object-files \
  -s -o "$out"

# Only old glibc symbols: the GPU host's distribution may be older than the build machine's.
newest="$(objdump -T "$out" | grep -o 'GLIBC_[0-9.]*' | sort -uV | tail -1)"
[[ "$(printf '%s\nGLIBC_2.17\n' "$newest" | sort -V | tail -1)" == GLIBC_2.17 ]] ||
  { echo "$out needs $newest (> GLIBC_2.17)" >&2; exit 1; }
cp "$src/LICENSE.md" "$here/LICENSE.libjpeg-turbo.txt"
cp "$src/README.ijg" "$here/README.ijg"
ls -l "$out"
