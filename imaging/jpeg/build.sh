#!/usr/bin/env bash
# Rebuilds jpeg.wasm (committed: CI and the Worker build have no Emscripten) from Debian's
# libjpeg-turbo source with Debian's Emscripten. Needs root on Debian 12 (bookworm) with deb-src:
#
#   apt-get install -y emscripten node-acorn cmake make dpkg-dev
#   bash imaging/jpeg/build.sh            # or: LIBJPEG_SRC=/path/to/libjpeg-turbo-2.1.5 bash …
#
# Pinned: libjpeg-turbo 1:2.1.5-2 (Debian bookworm), emscripten 3.1.6~dfsg-5. The output is a
# standalone module (no JS glue) whose imports wasm-jpeg's codec.ts provides.
set -euo pipefail
# Debian's emscripten runs its JS optimiser with the system node and Debian's node-acorn.
export NODE_PATH="${NODE_PATH:-/usr/share/nodejs}"

here="$(cd "$(dirname "$0")" && pwd)"
# shellcheck source=../debian-source.sh
. "$here/../debian-source.sh"
# The same pin as ../native/build.sh: both builds must give the same bytes.
debian_source LIBJPEG_SRC libjpeg-turbo=1:2.1.5-2 libjpeg-turbo-2.1.5

build="$work/build"
mkdir -p "$build"
(
  cd "$build"
  emcmake cmake "$src" -DCMAKE_BUILD_TYPE=Release -DENABLE_SHARED=0 -DENABLE_STATIC=1 \
    -DWITH_SIMD=0 -DWITH_TURBOJPEG=0 -DWITH_JAVA=0 -DWITH_12BIT=0 \
    -DWITH_ARITH_DEC=1 -DWITH_ARITH_ENC=0 \
    -DHAVE_SIZE_T=TRUE -DSIZE_T=4 -DHAVE_UNSIGNED_LONG=TRUE -DUNSIGNED_LONG=4 \
    -DCMAKE_C_FLAGS="-O3 -DNO_GETENV -DNO_PUTENV" >cmake.log
  # cmake's try_run of the type-size probes misfires under Emscripten: wasm32 is pinned above.
  grep -q "SIZEOF_SIZE_T  4" jconfigint.h || { echo "jconfigint.h: wrong size_t" >&2; exit 1; }
  emmake make -j"$(nproc)" jpeg-static >make.log
)

# 96 MiB hard cap on linear memory: malloc fails (→ a clean libjpeg error) instead of the isolate
# dying at 128 MB. The codec also caps libjpeg's own big buffers (progressive files) below that.
emcc -O3 -DNO_GETENV -DNO_PUTENV -I"$src" -I"$build" "$here/jpeg_wasm.c" "$build/libjpeg.a" \
  -o "$here/jpeg.wasm" \
  --no-entry -sSTANDALONE_WASM=1 -sFILESYSTEM=0 \
  -sALLOW_MEMORY_GROWTH=1 -sINITIAL_MEMORY=2MB -sMAXIMUM_MEMORY=96MB -sTOTAL_STACK=256KB \
  -sERROR_ON_UNDEFINED_SYMBOLS=0 \
  -sEXPORTED_FUNCTIONS=_jw_info,_jw_malloc,_jw_free,_jw_begin,_jw_decode,_jw_end,_jw_encode

cp "$src/LICENSE.md" "$here/LICENSE.libjpeg-turbo.txt"
cp "$src/README.ijg" "$here/README.ijg"
ls -l "$here/jpeg.wasm"
