# Sourced by ../jpeg/build.sh and ../native/build.sh: sets `work` (WORK_DIR, or a new temporary
# folder) and `src`, the libjpeg-turbo source both builds are pinned to (LIBJPEG_SRC, or Debian
# bookworm's 1:2.1.5-2 fetched with deb-src), so the WASM and native decoders give the same bytes.
work="${WORK_DIR:-$(mktemp -d)}"
mkdir -p "$work"
src="${LIBJPEG_SRC:-}"
if [[ -z "$src" ]]; then
  (cd "$work" && apt-get source libjpeg-turbo=1:2.1.5-2)
  src="$work/libjpeg-turbo-2.1.5"
fi
