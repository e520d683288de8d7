#!/usr/bin/env bash
# A software WebGPU adapter for CI (no GPU): Mesa's lavapipe from bookworm-backports (Dawn refuses
# bookworm's own mesa 22.3: it lacks shaderUniform*ArrayDynamicIndexing), its libdrm, and the
# Vulkan loader, unpacked with dpkg -x into a folder — nothing is installed system-wide. The
# mirror is the one this machine's apt already uses. Writes DIR/env.json (LD_LIBRARY_PATH,
# VK_DRIVER_FILES, XDG_RUNTIME_DIR) for gpu-node/backends/onnxruntime-webgpu.test.ts, and
# DIR/no-adapter.json: a Vulkan driver manifest whose library is missing (the loader then finds
# no device, and ONNX Runtime's WebGPU provider its real "no adapter" failure).
# Usage: bash .ci/lavapipe.sh [DIR]   (default .cache/lavapipe)
set -euo pipefail
D=${1:-.cache/lavapipe}
mkdir -p "$D" && D=$(cd "$D" && pwd)
if [ -f "$D/env.json" ] && [ -f "$D/root/usr/share/vulkan/icd.d/lvp_icd.json" ]; then
  echo "lavapipe already unpacked in $D"; exit 0
fi
mkdir -p "$D/apt/lists/partial" "$D/apt/cache/archives/partial" "$D/debs" "$D/root" "$D/xdg"
chmod 700 "$D/xdg"
# The Debian mirror this machine's apt is configured with (deb822 or one-line sources).
mirror=$({ grep -hsE '^(URIs:|deb )' /etc/apt/sources.list.d/*.sources /etc/apt/sources.list.d/*.list /etc/apt/sources.list 2>/dev/null || true; } \
  | grep -v security | sed -E 's/^URIs:[[:space:]]*//; s/^deb[[:space:]]+(\[[^]]*\][[:space:]]+)?//' | awk '{print $1}' | head -1)
[ -n "$mirror" ] || { echo "no Debian mirror found in the apt sources"; exit 1; }
keyring=/usr/share/keyrings/debian-archive-keyring.gpg
printf 'deb [signed-by=%s] %s bookworm main\ndeb [signed-by=%s] %s bookworm-backports main\n' \
  "$keyring" "$mirror" "$keyring" "$mirror" > "$D/apt/sources.list"
O=(-o "Dir::Etc::SourceList=$D/apt/sources.list" -o Dir::Etc::SourceParts=/nonexistent
   -o "Dir::State::Lists=$D/apt/lists" -o "Dir::Cache=$D/apt/cache" -o APT::Architecture=amd64
   -o Debug::NoLocking=1 -o APT::Sandbox::User=root)
apt-get -qq "${O[@]}" update
(cd "$D/debs" && apt-get -qq "${O[@]}" download mesa-vulkan-drivers/bookworm-backports \
  libdrm2/bookworm-backports libdrm-amdgpu1/bookworm-backports libvulkan1)
for f in "$D"/debs/*.deb; do dpkg -x "$f" "$D/root"; done
L="$D/root/usr/lib/x86_64-linux-gnu"
sed "s#\"libvulkan_lvp.so\"#\"$L/libvulkan_lvp.so\"#" "$D/root/usr/share/vulkan/icd.d/lvp_icd.json" > "$D/lvp_icd.json"
printf '{"file_format_version":"1.0.0","ICD":{"library_path":"%s/missing/libvulkan_nvidia_missing.so","api_version":"1.3.0"}}\n' "$D" > "$D/no-adapter.json"
printf '{"LD_LIBRARY_PATH":"%s","VK_DRIVER_FILES":"%s/lvp_icd.json","XDG_RUNTIME_DIR":"%s/xdg"}\n' "$L" "$D" "$D" > "$D/env.json"
echo "lavapipe unpacked in $D: $(ls "$D/debs")"
