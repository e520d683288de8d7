/** The edge's settings, read once per isolate from the Worker's vars and secrets, validated, frozen. */
import { HttpError } from "./errors.ts";

const MiB = 1024 * 1024;

export type ResizerKind = "images" | "wasm" | "auto";
/** What the edge sends: a short-side resize, or open_clip's exact 224x224 centre crop. */
export type ResizeMode = "short-side" | "crop-224";

export interface EdgeConfig {
  /** gpu-node base URLs, tried in order (rotating start) on Unavailable or a connection error. */
  readonly gpuNodeUrls: readonly string[];
  /** Sent to the gpu-node as `Authorization: Bearer …`; empty = none. */
  readonly gpuNodeToken: string;
  /** Whole-request deadline for the gpu-node call, retries included. */
  readonly gpuNodeTimeoutMs: number;
  /** How long a gpu-node that refused work (ResourceExhausted) is skipped; 0: never. */
  readonly gpuNodeShedMs: number;
  /** Let into resize only as many requests at once as the gpu-nodes took before refusing. */
  readonly adaptiveAdmission: boolean;
  /** Lower-case hex SHA-256 of each accepted client API key. */
  readonly apiKeyHashes: readonly string[];
  /** True only when AUTH_DISABLED is exactly "true" (local development). */
  readonly authDisabled: boolean;
  readonly maxRequestBytes: number;
  readonly maxImageBytes: number;
  readonly maxImagePixels: number;
  readonly maxImagesPerRequest: number;
  /** Images per gpu-node call: a request's images go in calls of at most this many. */
  readonly gpuCallMaxImages: number;
  readonly resizer: ResizerKind;
  /** RESIZER=auto: the estimated Worker CPU a WASM decode may take before the binding gets it. */
  readonly wasmCpuBudgetMs: number;
  /** Short side of the JPEG sent to the gpu-node (resizeMode short-side). */
  readonly targetShortSide: number;
  readonly resizeMode: ResizeMode;
  readonly jpegQuality: number;
  /** "*" or exact origins allowed by CORS. */
  readonly corsOrigins: readonly string[];
  readonly modelName: string;
  /** "production" on a deployed Worker: local-only gpu-node URLs are then configuration errors. */
  readonly environment: "development" | "production";
  /** A Cloudflare Access service token for the gpu-node's hostname (both or neither). */
  readonly accessClientId: string;
  readonly accessClientSecret: string;
  /**
   * Why this configuration cannot work where it runs (production only): each entry names a
   * GPU_NODE_URLS entry and the fix. Non-empty: /readyz and embedding calls answer 503.
   */
  readonly problems: readonly string[];
}

/** Every setting: variable, default and meaning — the one place they are documented. */
export const EDGE_SETTINGS = {
  GPU_NODE_URLS: ["http://127.0.0.1:50051", "comma-separated gpu-node base URLs"],
  GPU_NODE_TOKEN: ["", "secret: shared token sent to the gpu-node"],
  GPU_NODE_TIMEOUT_MS: ["15000", "deadline for the gpu-node call, retries included"],
  GPU_NODE_SHED_MS: [
    "50",
    "after a gpu-node refuses work as full, skip it this long (ms); while all are skipped, uploads get 503 + Retry-After before any resize (0: off)",
  ],
  ADAPTIVE_ADMISSION: [
    "true",
    '"true": once a gpu-node refuses work as full, each isolate lets into resize only a little under what it had in flight then, growing again as answers come (AIMD); the rest get 503 + Retry-After at once',
  ],
  API_KEY_HASHES: ["", "secret: comma-separated hex SHA-256 of the client API keys"],
  AUTH_DISABLED: ["false", '"true" switches client auth off (local development only)'],
  MAX_REQUEST_BYTES: [String(32 * MiB), "request body limit, enforced while streaming"],
  MAX_IMAGE_BYTES: [String(20 * MiB), "one image (the Images binding's input limit)"],
  MAX_IMAGE_PIXELS: ["100000000", "width x height from the header, before any decode"],
  MAX_IMAGES_PER_REQUEST: ["32", "images in one request"],
  GPU_CALL_MAX_IMAGES: [
    "8",
    "a request's images go to the gpu-node in calls of at most this many, each sent as soon as its images are resized, so that later images resize while the first cross the link (1 to 1024; MAX_IMAGES_PER_REQUEST or more: one call)",
  ],
  RESIZER: [
    "images",
    '"images" (Images binding; under wrangler dev the WASM decoders take what its local stand-in cannot read), "wasm" (in-Worker: JPEG, HEIC, PNG, WebP) or "auto" (WASM within WASM_CPU_BUDGET_MS, the binding for the rest)',
  ],
  WASM_CPU_BUDGET_MS: [
    "4000",
    "RESIZER=auto: most estimated Worker CPU milliseconds for one in-Worker decode (docs/formats.md)",
  ],
  TARGET_SHORT_SIDE: ["256", "short side of the JPEG sent to the gpu-node (224..512)"],
  RESIZE_MODE: [
    "short-side",
    '"short-side" (TARGET_SHORT_SIDE) or "crop-224": the exact 224x224 centre crop open_clip cuts, which the gpu-node only decodes',
  ],
  JPEG_QUALITY: ["80", "quality of that JPEG (the Images binding under wrangler dev ignores it)"],
  CORS_ORIGINS: ["*", 'comma-separated allowed origins, or "*"'],
  MODEL_NAME: ["openclip-vit-b32", "model name reported to clients"],
  ENVIRONMENT: [
    "development",
    "\"production\" on a deployed Worker ([env.production] sets it): a GPU_NODE_URLS entry with a port other than its scheme's default, or http: to a host that is not loopback, is then a configuration error (a deployed Worker's fetch ignores such ports)",
  ],
  CF_ACCESS_CLIENT_ID: [
    "",
    "secret: Cloudflare Access service token id, sent as CF-Access-Client-Id to a gpu-node behind a Tunnel protected by Access",
  ],
  CF_ACCESS_CLIENT_SECRET: ["", "secret: that service token's secret (CF-Access-Client-Secret)"],
} as const satisfies Record<string, readonly [string, string]>;

export type EdgeVars = Partial<Record<keyof typeof EDGE_SETTINGS, string>>;

const cache = new WeakMap<object, EdgeConfig>();

/** Parses once per env object (one per isolate); a bad value is a 500 with the variable named in the log. */
export function edgeConfig(env: object): EdgeConfig {
  let c = cache.get(env);
  if (!c) {
    c = parseEdgeConfig(env as EdgeVars);
    cache.set(env, c);
  }
  return c;
}

export class EdgeConfigError extends HttpError {
  constructor(message: string) {
    super(500, "internal", `edge misconfigured: ${message}`);
  }
}

export function parseEdgeConfig(vars: EdgeVars): EdgeConfig {
  const raw = (k: keyof typeof EDGE_SETTINGS) => (vars[k] ?? EDGE_SETTINGS[k][0]).trim();
  const list = (k: keyof typeof EDGE_SETTINGS) =>
    raw(k)
      .split(",")
      .map((s) => s.trim())
      .filter((s) => s !== "");
  const int = (k: keyof typeof EDGE_SETTINGS, min: number, max: number) => {
    const n = Number(raw(k));
    if (!Number.isSafeInteger(n) || n < min || n > max) {
      throw new EdgeConfigError(`${k} must be an integer from ${min} to ${max}, got "${raw(k)}"`);
    }
    return n;
  };
  const bool = (k: keyof typeof EDGE_SETTINGS) => {
    const v = raw(k);
    if (v !== "true" && v !== "false") {
      throw new EdgeConfigError(`${k} must be "true" or "false", got "${v}"`);
    }
    return v === "true";
  };
  const urls = list("GPU_NODE_URLS");
  if (urls.length === 0) throw new EdgeConfigError("GPU_NODE_URLS is empty");
  for (const u of urls) {
    if (!/^https?:\/\/[^/]+/.test(u))
      throw new EdgeConfigError(`GPU_NODE_URLS has a bad URL "${u}"`);
  }
  const hashes = list("API_KEY_HASHES").map((h) => h.toLowerCase());
  for (const h of hashes) {
    if (!/^[0-9a-f]{64}$/.test(h)) {
      throw new EdgeConfigError("API_KEY_HASHES must hold 64-hex-digit SHA-256 values");
    }
  }
  const resizer = raw("RESIZER");
  if (resizer !== "images" && resizer !== "wasm" && resizer !== "auto") {
    throw new EdgeConfigError(`RESIZER must be "images", "wasm" or "auto", got "${resizer}"`);
  }
  const resizeMode = raw("RESIZE_MODE");
  if (resizeMode !== "short-side" && resizeMode !== "crop-224") {
    throw new EdgeConfigError(
      `RESIZE_MODE must be "short-side" or "crop-224", got "${resizeMode}"`,
    );
  }
  const authDisabled = raw("AUTH_DISABLED") === "true";
  const environment = raw("ENVIRONMENT");
  if (environment !== "development" && environment !== "production") {
    throw new EdgeConfigError(
      `ENVIRONMENT must be "development" or "production", got "${environment}"`,
    );
  }
  const accessClientId = raw("CF_ACCESS_CLIENT_ID");
  const accessClientSecret = raw("CF_ACCESS_CLIENT_SECRET");
  if ((accessClientId === "") !== (accessClientSecret === "")) {
    throw new EdgeConfigError("CF_ACCESS_CLIENT_ID and CF_ACCESS_CLIENT_SECRET go together");
  }
  return Object.freeze({
    gpuNodeUrls: urls.map((u) => u.replace(/\/+$/, "")),
    gpuNodeToken: raw("GPU_NODE_TOKEN"),
    gpuNodeTimeoutMs: int("GPU_NODE_TIMEOUT_MS", 100, 600_000),
    gpuNodeShedMs: int("GPU_NODE_SHED_MS", 0, 10_000),
    adaptiveAdmission: bool("ADAPTIVE_ADMISSION"),
    apiKeyHashes: hashes,
    authDisabled,
    maxRequestBytes: int("MAX_REQUEST_BYTES", 1024, 100 * MiB),
    maxImageBytes: int("MAX_IMAGE_BYTES", 1024, 100 * MiB),
    maxImagePixels: int("MAX_IMAGE_PIXELS", 1, 1_000_000_000),
    maxImagesPerRequest: int("MAX_IMAGES_PER_REQUEST", 1, 1024),
    gpuCallMaxImages: int("GPU_CALL_MAX_IMAGES", 1, 1024),
    resizer,
    wasmCpuBudgetMs: int("WASM_CPU_BUDGET_MS", 1, 300_000),
    targetShortSide: int("TARGET_SHORT_SIDE", 224, 512),
    resizeMode,
    jpegQuality: int("JPEG_QUALITY", 1, 100),
    corsOrigins: list("CORS_ORIGINS"),
    modelName: raw("MODEL_NAME"),
    environment,
    accessClientId,
    accessClientSecret,
    problems: environment === "production" ? gpuNodeUrlProblems(urls) : [],
  });
}

const LOOPBACK = /^(localhost|127(\.\d{1,3}){3}|\[::1\])$/i;

/**
 * What would break once deployed: a deployed Worker's fetch ignores a custom port (http goes to
 * 80, https to 443) while `wrangler dev` honours it, and plain http would carry photos and the
 * token in clear across the internet. One message per bad entry, each saying the fix.
 */
export function gpuNodeUrlProblems(urls: readonly string[]): string[] {
  const problems: string[] = [];
  for (const text of urls) {
    let url: URL;
    try {
      url = new URL(text);
    } catch {
      problems.push(`GPU_NODE_URLS entry "${text}" is not a URL`);
      continue;
    }
    // URL drops a scheme's default port, so any port left is one a deployed Worker ignores.
    if (url.port !== "") {
      const goesTo = url.protocol === "https:" ? 443 : 80;
      problems.push(
        `GPU_NODE_URLS entry "${text}" names port ${url.port}: a deployed Worker ignores it and would call port ${goesTo}; serve the gpu-node on ${goesTo} (TLS with a public certificate) or behind a Cloudflare Tunnel hostname`,
      );
    }
    if (url.protocol === "http:" && !LOOPBACK.test(url.hostname)) {
      problems.push(
        `GPU_NODE_URLS entry "${text}" is cleartext http to ${url.hostname}: photos and the token would cross the internet unencrypted; use https (a Tunnel hostname, or --tls-cert/--tls-key on 443)`,
      );
    }
  }
  return problems;
}
