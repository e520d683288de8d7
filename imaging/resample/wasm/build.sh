#!/usr/bin/env bash
# Rebuilds resample.wasm (committed: CI has no Emscripten) from resample.c with Debian's
# Emscripten (apt-get install -y emscripten node-acorn; pinned: emscripten 3.1.6~dfsg-5):
#
#   bash imaging/resample/wasm/build.sh
#
# A standalone module, no JS glue, no imports; ../bicubic-wasm.ts drives it.
set -euo pipefail
export NODE_PATH="${NODE_PATH:-/usr/share/nodejs}"
here="$(cd "$(dirname "$0")" && pwd)"
emcc -O3 -msimd128 "$here/resample.c" -o "$here/resample.wasm" \
  --no-entry -sSTANDALONE_WASM=1 -sFILESYSTEM=0 \
  -sALLOW_MEMORY_GROWTH=1 -sINITIAL_MEMORY=4MB -sMAXIMUM_MEMORY=256MB -sTOTAL_STACK=64KB \
  -sERROR_ON_UNDEFINED_SYMBOLS=0 \
  -sEXPORTED_FUNCTIONS=_rs_malloc,_rs_free,_rs_horizontal,_rs_vertical
ls -l "$here/resample.wasm"
