# Sourced by the build.sh scripts under imaging/: `debian_source VAR PACKAGE=VERSION DIR` sets
# `work` (WORK_DIR, or a new temporary folder) and `src`: the folder named by the environment
# variable VAR when it is set, else Debian bookworm's pinned source fetched into $work with deb-src.
debian_source() {
  work="${WORK_DIR:-$(mktemp -d)}"
  mkdir -p "$work"
  src="${!1:-}"
  if [[ -z "$src" ]]; then
    (cd "$work" && apt-get source "$2")
    src="$work/$3"
  fi
}
