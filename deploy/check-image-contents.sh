#!/usr/bin/env bash
# Proves the gpu-node image's contents are enough to run, without Docker: copies exactly what
# deploy/gpu-host/Dockerfile COPYs (files git tracks or would track, minus /.dockerignore's
# exclusions) into a temporary folder, installs production dependencies only (`npm ci --omit=dev`, as the image
# does; needs the npm registry), then starts the gpu-node from there twice — noop backend with
# two worker processes, the embedded ONNX Runtime backend with a generated vit-tiny, and noop
# with a self-signed certificate — and checks /healthz, /readyz, the image's healthcheck script
# (HTTP and HTTPS), /metrics, one Embed call, a SIGHUP certificate reload and a clean SIGTERM.
# Usage: bash deploy/check-image-contents.sh [--keep]   (NODE_BIN overrides the Node 24 binary)
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
DOCKERFILE=deploy/gpu-host/Dockerfile
NODE_BIN=${NODE_BIN:-$ROOT/node_modules/node/bin/node}
[ -x "$NODE_BIN" ] || { echo "no Node 24 at $NODE_BIN (run npm ci, or set NODE_BIN)"; exit 1; }
WORK=$(mktemp -d "${TMPDIR:-/tmp}/gpu-node-image.XXXXXX")
PID=
cleanup() {
  if [ -n "$PID" ] && kill -0 "$PID" 2>/dev/null; then kill -TERM "$PID"; wait "$PID" || true; fi
  if [ "${1:-}" != "--keep" ]; then rm -rf "$WORK"; else echo "kept $WORK"; fi
}
trap 'cleanup "${KEEP:-}"' EXIT
[ "${1:-}" = "--keep" ] && KEEP=--keep

step() { printf '\n=== %s (%ss)\n' "$1" "$SECONDS"; }

step "copy what $DOCKERFILE copies"
# `COPY src dest` lines (no --from): the image mirrors the repository layout under WORKDIR.
mapfile -t SOURCES < <(awk '$1 == "COPY" && $2 !~ /^--/ { for (i = 2; i < NF; i++) print $i }' "$DOCKERFILE")
[ "${#SOURCES[@]}" -gt 0 ] || { echo "no COPY lines in $DOCKERFILE"; exit 1; }
printf '  %s\n' "${SOURCES[@]}"
git ls-files -z --cached --others --exclude-standard -- "${SOURCES[@]}" | (cd "$ROOT" && xargs -0 cp --parents -t "$WORK")
# /.dockerignore exclusions: `**/<glob>` by name, other plain lines (not `*`, not `!…`) by path.
while IFS= read -r line; do
  case "$line" in
    '' | '#'* | '!'* | '*') ;;
    '**/'*) find "$WORK" -depth -name "${line#\*\*/}" -exec rm -rf {} + ;;
    *) rm -rf "${WORK:?}/$line" ;;
  esac
done < .dockerignore
echo "  $(find "$WORK" -type f | wc -l) files, $(du -sh "$WORK" | cut -f1)"
if find "$WORK" -name '*.test.ts' | grep -q .; then echo "test files were copied"; exit 1; fi

step "npm ci --omit=dev (ONNXRUNTIME_NODE_INSTALL=skip, as the image's default)"
cd "$WORK"
PATH="$(dirname "$NODE_BIN"):$PATH" ONNXRUNTIME_NODE_INSTALL=skip \
  npm ci --omit=dev --no-audit --no-fund --loglevel=error
echo "  node_modules: $(du -sh node_modules | cut -f1), $(ls node_modules | wc -l) top-level entries"
[ ! -e node_modules/vitest ] && [ ! -e node_modules/node ] || { echo "dev dependencies were installed"; exit 1; }

# Starts the gpu-node from $WORK with the image's environment; sets PORT and METRICS_PORT.
start() {
  local log=$WORK/gpu-node-$1.log
  shift
  GLIBC_TUNABLES=glibc.malloc.arena_max=2:glibc.malloc.mmap_threshold=131072 NODE_ENV=production \
    GPU_NODE_CACHE_DIR="$WORK/cache" \
    "$NODE_BIN" --initial-old-space-size=64 gpu-node/main.ts --host 127.0.0.1 --port 0 --metrics-port 0 "$@" >"$log" 2>&1 &
  PID=$!
  local url=
  for _ in $(seq 1 300); do
    url=$(grep -o '"url":"https\{0,1\}://[^"]*"' "$log" | head -1 | cut -d'"' -f4 || true)
    [ -n "$url" ] && break
    kill -0 "$PID" 2>/dev/null || { cat "$log"; echo "gpu-node exited"; exit 1; }
    sleep 0.2
  done
  [ -n "$url" ] || { cat "$log"; echo "gpu-node did not listen"; exit 1; }
  PORT=${url##*:}
  PORT=${PORT%/}
  METRICS_PORT=$(grep -o '"metricsUrl":"http://[^"]*"' "$log" | head -1 | cut -d'"' -f4 | sed 's/.*://')
  echo "  listening on $PORT, metrics on $METRICS_PORT"
}

# Probes from $WORK with Node's fetch; the Embed call uses Connect's JSON protocol and a JPEG
# that sharp (a production dependency) makes.
probe() {
  "$NODE_BIN" deploy/gpu-host/healthcheck.ts --port "$PORT"
  echo "  healthcheck.ts: ok"
  PORT=$PORT METRICS_PORT=$METRICS_PORT "$NODE_BIN" --input-type=module -e '
    import sharp from "sharp";
    const base = `http://127.0.0.1:${process.env.PORT}`;
    const get = async (url) => { const r = await fetch(url); return [r.status, await r.text()]; };
    const check = (ok, what) => { if (!ok) { console.error(`FAILED: ${what}`); process.exit(1); } console.log(`  ${what}: ok`); };
    const [hs, hb] = await get(`${base}/healthz`);
    check(hs === 200 && JSON.parse(hb).status === "ok", `/healthz ${hs} ${hb}`);
    const [rs, rb] = await get(`${base}/readyz`);
    check(rs === 200 && JSON.parse(rb).status === "ready", `/readyz ${rs} ${rb}`);
    const [ms, mb] = await get(`http://127.0.0.1:${process.env.METRICS_PORT}/metrics`);
    check(ms === 200 && /^gpu_node_queued_images /m.test(mb), `/metrics ${ms} (gpu_node_queued_images present)`);
    const jpeg = await sharp({ create: { width: 320, height: 240, channels: 3, background: "#3a7" } }).jpeg().toBuffer();
    const r = await fetch(`${base}/embedder.v1.EmbedderService/Embed`, {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: JSON.stringify({ images: [{ id: "a", data: jpeg.toString("base64") }] }),
    });
    const body = await r.json();
    check(r.status === 200 && body.embeddings?.length === 1, `Embed ${r.status} (${JSON.stringify(body).slice(0, 120)}…)`);
  '
}

stop() {
  kill -TERM "$PID"
  local rc=0
  wait "$PID" || rc=$?
  PID=
  [ "$rc" = 0 ] || { echo "gpu-node exited $rc on SIGTERM"; exit 1; }
  echo "  SIGTERM: exited 0"
}

step "gpu-node --backend noop --processes 2"
start noop --backend noop --processes 2
probe
# The image's plain-JPEG fast path is the committed native build (imaging/native/), not WASM.
if [ "$(uname -m)" = x86_64 ]; then
  grep -q '"jpegFastPath":"native"' "$WORK/gpu-node-noop.log" || {
    cat "$WORK/gpu-node-noop.log"
    echo "the native JPEG decoder did not load from the image's files"
    exit 1
  }
  echo "  jpegFastPath native: ok"
fi
stop

step "gpu-node --backend onnxruntime --model vit-tiny (CPU provider)"
start ort --backend onnxruntime --model vit-tiny --processes 1 --threads 1
probe
stop

step "gpu-node with TLS (--tls-cert/--tls-key), healthcheck over HTTPS, SIGHUP reload"
if command -v openssl >/dev/null; then
  openssl req -x509 -newkey rsa:2048 -nodes -days 2 -subj /CN=gpu.example.com \
    -keyout "$WORK/key.pem" -out "$WORK/cert.pem" 2>/dev/null
  start tls --backend noop --processes 1 --tls-cert "$WORK/cert.pem" --tls-key "$WORK/key.pem"
  GPU_NODE_TLS_CERT="$WORK/cert.pem" GPU_NODE_TLS_KEY="$WORK/key.pem" \
    "$NODE_BIN" deploy/gpu-host/healthcheck.ts --port "$PORT"
  echo "  healthcheck.ts over HTTPS: ok"
  kill -HUP "$PID"
  sleep 1
  GPU_NODE_TLS_CERT="$WORK/cert.pem" GPU_NODE_TLS_KEY="$WORK/key.pem" \
    "$NODE_BIN" deploy/gpu-host/healthcheck.ts --port "$PORT"
  grep -q "TLS certificate reloaded" "$WORK/gpu-node-tls.log" || {
    cat "$WORK/gpu-node-tls.log"
    echo "no reload logged after SIGHUP"
    exit 1
  }
  echo "  SIGHUP: still serving: ok"
  stop
else
  echo "  skipped: no openssl"
fi

step "ok: the image's files and production dependencies run the gpu-node"
