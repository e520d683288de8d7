#!/usr/bin/env bash
# Rebuilds webp.wasm (committed: CI and the Worker build have no Emscripten) from Debian's
# libwebp source with Debian's Emscripten. Needs root on Debian 12 (bookworm) with deb-src:
#
#   apt-get install -y emscripten node-acorn dpkg-dev
#   bash imaging/webp/build.sh            # or: LIBWEBP_SRC=/path/to/libwebp-1.2.4 bash …
#
# Pinned: libwebp 1.2.4-0.2+deb12u1 (Debian bookworm, its security patches applied by
# dpkg-source), emscripten 3.1.6~dfsg-5. Decoder only (src/dec, src/dsp, src/utils), no SIMD, no
# threads. The output is a standalone module (no JS glue) whose imports codec.ts provides.
set -euo pipefail
export NODE_PATH="${NODE_PATH:-/usr/share/nodejs}"

here="$(cd "$(dirname "$0")" && pwd)"
# shellcheck source=../debian-source.sh
. "$here/../debian-source.sh"
debian_source LIBWEBP_SRC libwebp=1.2.4-0.2+deb12u1 libwebp-1.2.4

shopt -s nullglob
files=("$here/webp_wasm.c" "$src"/src/dec/*.c "$src"/src/utils/*.c)
# The portable C DSP files only: the SIMD variants (sse2, sse41, neon, msa, mips) are left out.
for f in "$src"/src/dsp/*.c; do
  case "$f" in *_sse2.c | *_sse41.c | *_neon.c | *_msa.c | *_mips32.c | *_mips_dsp_r2.c) continue ;; esac
  files+=("$f")
done

# 96 MiB hard cap on linear memory: malloc fails (→ VP8_STATUS_OUT_OF_MEMORY, a clean 422)
# instead of the isolate dying at 128 MB.
emcc -O3 -I"$src" -I"$src/src" "${files[@]}" -o "$here/webp.wasm" \
  --no-entry -sSTANDALONE_WASM=1 -sFILESYSTEM=0 \
  -sALLOW_MEMORY_GROWTH=1 -sINITIAL_MEMORY=2MB -sMAXIMUM_MEMORY=96MB -sTOTAL_STACK=256KB \
  -sERROR_ON_UNDEFINED_SYMBOLS=0 \
  -sEXPORTED_FUNCTIONS=_wd_info,_wd_malloc,_wd_free,_wd_features,_wd_decode,_wd_release

cp "$src/COPYING" "$here/LICENSE.libwebp.txt"
cp "$src/PATENTS" "$here/PATENTS.libwebp.txt"
ls -l "$here/webp.wasm"
