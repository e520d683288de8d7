/** The edge's settings, read once per isolate from the Worker's vars and secrets, validated, frozen. */
import { HttpError } from "./errors.ts";

const MiB = 1024 * 1024;

export type ResizerKind = "images" | "wasm";
/** What the edge sends: a short-side resize, or open_clip's exact 224x224 centre crop. */
export type ResizeMode = "short-side" | "crop-224";

export interface EdgeConfig {
  /** gpu-node base URLs, tried in order (rotating start) on Unavailable or a connection error. */
  readonly gpuNodeUrls: readonly string[];
  /** Sent to the gpu-node as `Authorization: Bearer …`; empty = none. */
  readonly gpuNodeToken: string;
  /** Whole-request deadline for the gpu-node call, retries included. */
  readonly gpuNodeTimeoutMs: number;
  /** Lower-case hex SHA-256 of each accepted client API key. */
  readonly apiKeyHashes: readonly string[];
  /** True only when AUTH_DISABLED is exactly "true" (local development). */
  readonly authDisabled: boolean;
  readonly maxRequestBytes: number;
  readonly maxImageBytes: number;
  readonly maxImagePixels: number;
  readonly maxImagesPerRequest: number;
  readonly resizer: ResizerKind;
  /** Short side of the JPEG sent to the gpu-node (resizeMode short-side). */
  readonly targetShortSide: number;
  readonly resizeMode: ResizeMode;
  readonly jpegQuality: number;
  /** "*" or exact origins allowed by CORS. */
  readonly corsOrigins: readonly string[];
  readonly modelName: string;
}

/** Every setting: variable, default and meaning — the one place they are documented. */
export const EDGE_SETTINGS = {
  GPU_NODE_URLS: ["http://127.0.0.1:50051", "comma-separated gpu-node base URLs"],
  GPU_NODE_TOKEN: ["", "secret: shared token sent to the gpu-node"],
  GPU_NODE_TIMEOUT_MS: ["15000", "deadline for the gpu-node call, retries included"],
  API_KEY_HASHES: ["", "secret: comma-separated hex SHA-256 of the client API keys"],
  AUTH_DISABLED: ["false", '"true" switches client auth off (local development only)'],
  MAX_REQUEST_BYTES: [String(32 * MiB), "request body limit, enforced while streaming"],
  MAX_IMAGE_BYTES: [String(20 * MiB), "one image (the Images binding's input limit)"],
  MAX_IMAGE_PIXELS: ["100000000", "width x height from the header, before any decode"],
  MAX_IMAGES_PER_REQUEST: ["32", "images in one request"],
  RESIZER: ["images", '"images" (Images binding) or "wasm" (in-Worker, JPEG only)'],
  TARGET_SHORT_SIDE: ["256", "short side of the JPEG sent to the gpu-node (224..512)"],
  RESIZE_MODE: [
    "short-side",
    '"short-side" (TARGET_SHORT_SIDE) or "crop-224": the exact 224x224 centre crop open_clip cuts, which the gpu-node only decodes',
  ],
  JPEG_QUALITY: ["80", "quality of that JPEG (the Images binding under wrangler dev ignores it)"],
  CORS_ORIGINS: ["*", 'comma-separated allowed origins, or "*"'],
  MODEL_NAME: ["openclip-vit-b32", "model name reported to clients"],
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
  if (resizer !== "images" && resizer !== "wasm") {
    throw new EdgeConfigError(`RESIZER must be "images" or "wasm", got "${resizer}"`);
  }
  const resizeMode = raw("RESIZE_MODE");
  if (resizeMode !== "short-side" && resizeMode !== "crop-224") {
    throw new EdgeConfigError(
      `RESIZE_MODE must be "short-side" or "crop-224", got "${resizeMode}"`,
    );
  }
  const authDisabled = raw("AUTH_DISABLED") === "true";
  return Object.freeze({
    gpuNodeUrls: urls.map((u) => u.replace(/\/+$/, "")),
    gpuNodeToken: raw("GPU_NODE_TOKEN"),
    gpuNodeTimeoutMs: int("GPU_NODE_TIMEOUT_MS", 100, 600_000),
    apiKeyHashes: hashes,
    authDisabled,
    maxRequestBytes: int("MAX_REQUEST_BYTES", 1024, 100 * MiB),
    maxImageBytes: int("MAX_IMAGE_BYTES", 1024, 100 * MiB),
    maxImagePixels: int("MAX_IMAGE_PIXELS", 1, 1_000_000_000),
    maxImagesPerRequest: int("MAX_IMAGES_PER_REQUEST", 1, 1024),
    resizer,
    targetShortSide: int("TARGET_SHORT_SIDE", 224, 512),
    resizeMode,
    jpegQuality: int("JPEG_QUALITY", 1, 100),
    corsOrigins: list("CORS_ORIGINS"),
    modelName: raw("MODEL_NAME"),
  });
}
