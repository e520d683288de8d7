#!/usr/bin/env bash
# Rebuilds hevc.wasm (committed: CI and the Worker build have no Emscripten) from Debian's
# libde265 source with Debian's Emscripten. Needs root on Debian 12 (bookworm) with deb-src:
#
#   apt-get install -y emscripten node-acorn cmake make dpkg-dev
#   bash imaging/heif/build.sh            # or: LIBDE265_SRC=/path/to/libde265-1.0.11 bash …
#
# Pinned: libde265 1.0.11-1+deb12u2 (Debian bookworm, its security patches applied by
# dpkg-source), emscripten 3.1.6~dfsg-5. The output is a standalone module (no JS glue) whose
# imports codec.ts provides. Only the decoder is compiled (no encoder, no SIMD, no threads).
set -euo pipefail
export NODE_PATH="${NODE_PATH:-/usr/share/nodejs}"

here="$(cd "$(dirname "$0")" && pwd)"
# shellcheck source=../debian-source.sh
. "$here/../debian-source.sh"
debian_source LIBDE265_SRC libde265=1.0.11-1+deb12u2 libde265-1.0.11

build="$work/build-de265"
mkdir -p "$build"
# de265-version.h comes with the source; config.h is not needed with these defines.
sources=(alloc_pool bitstream cabac configparam contextmodel de265 deblock decctx dpb
  fallback-dct fallback-motion fallback image intrapred md5 motion nal-parser nal pps
  quality refpic sao scan sei slice sps threads transform util vps vui)
objects=()
for s in "${sources[@]}"; do
  em++ -O3 -std=c++11 -fno-exceptions -DHAVE_STDINT_H=1 -DHAVE_STDBOOL_H=1 \
    -DHAVE_MALLOC_H=1 -DHAVE_POSIX_MEMALIGN=1 -DNDEBUG -I"$src" -I"$src/libde265" \
    -c "$src/libde265/$s.cc" -o "$build/$s.o"
  objects+=("$build/$s.o")
done

# 96 MiB hard cap on linear memory: an allocation past it fails (a clean error or a trap the JS
# side turns into 422) instead of the isolate dying at 128 MB.
emcc -O3 -I"$src" -c "$here/heif_wasm.c" -o "$build/heif_wasm.o"
em++ -O3 "$build/heif_wasm.o" "${objects[@]}" -o "$here/hevc.wasm" \
  --no-entry -sSTANDALONE_WASM=1 -sFILESYSTEM=0 \
  -sALLOW_MEMORY_GROWTH=1 -sINITIAL_MEMORY=2MB -sMAXIMUM_MEMORY=96MB -sTOTAL_STACK=256KB \
  -sERROR_ON_UNDEFINED_SYMBOLS=0 \
  -sEXPORTED_FUNCTIONS=_hd_info,_hd_malloc,_hd_free,_hd_decode,_hd_accumulate,_hd_finish,_hd_release

cp "$src/COPYING" "$here/LICENSE.libde265.txt"
ls -l "$here/hevc.wasm"
