/** The one edge test app for workerd tests: options (gpu-node stand-ins, bindings, key) in; the app as the Worker builds it (real Images binding from the workerd test env) in front of the stand-ins, and a `request` that carries the API key, out. */
import { env } from "cloudflare:test";
import { createApp } from "../app.ts";
import { createGpuClient, gpuClientOptions } from "../gpu-client.ts";
import { selectResizer } from "../resize/select.ts";
import { createStandIn, type StandIn } from "./gpu-stand-in.ts";

export const TEST_KEY = "hostile-test-key-5c1d";
export const TEST_TOKEN = "hostile-edge-token-9a0b";

async function sha256Hex(text: string): Promise<string> {
  const d = new Uint8Array(await crypto.subtle.digest("SHA-256", new TextEncoder().encode(text)));
  return Array.from(d, (b) => b.toString(16).padStart(2, "0")).join("");
}

export interface TestAppOptions {
  /** Bindings over the wrangler.toml env; `undefined` removes one (e.g. ANALYTICS). */
  readonly vars?: Readonly<Record<string, unknown>>;
  /** One per gpu-node URL (http://gpu-<i>.test), in order; "down" refuses connections. */
  readonly standIns?: readonly (StandIn | "down")[];
  /** The API key (its hash is bound as API_KEY_HASHES) that requests carry unless told. */
  readonly key?: string;
  /** GPU_NODE_TOKEN; null leaves it unbound. */
  readonly token?: string | null;
}

export interface TestApp {
  readonly app: ReturnType<typeof createApp>;
  /** The first gpu-node stand-in (the only one unless `standIns` gave more); throws if "down". */
  readonly standIn: StandIn;
  /** Sends `init` to `path` with the API key (or `key`, or none when null). */
  request(path: string, init?: RequestInit, key?: string | null): Promise<Response>;
}

export async function testApp(options: TestAppOptions = {}): Promise<TestApp> {
  const standIns = options.standIns ?? [createStandIn()];
  const key = options.key ?? TEST_KEY;
  const token = options.token === undefined ? TEST_TOKEN : options.token;
  // The gpu-node client's fetch, routed by host name to the stand-in of that index.
  const routedFetch: typeof fetch = async (input, init) => {
    const url = new URL(new Request(input, init).url);
    const target = standIns[Number(url.hostname.slice(4, -5))];
    if (target === undefined || target === "down") throw new TypeError("connection refused");
    return target.fetch(input, init);
  };
  const app = createApp({
    resizer: (e, config) => selectResizer(e as Env, config),
    gpu: (config) =>
      createGpuClient({
        ...gpuClientOptions(config),
        fetch: routedFetch,
      }),
  });
  const bindings: Record<string, unknown> = {
    ...env,
    GPU_NODE_URLS: standIns.map((_, i) => `http://gpu-${i}.test`).join(","),
    ...(token === null ? {} : { GPU_NODE_TOKEN: token }),
    API_KEY_HASHES: await sha256Hex(key),
    ...options.vars,
  };
  for (const [name, value] of Object.entries(bindings)) {
    if (value === undefined) delete bindings[name];
  }
  return {
    app,
    get standIn() {
      const first = standIns[0];
      if (first === undefined || first === "down") throw new Error("the first gpu-node is down");
      return first;
    },
    request(path, init = {}, as = key) {
      const headers = new Headers(init.headers);
      if (as !== null) headers.set("authorization", `Bearer ${as}`);
      return Promise.resolve(app.request(path, { ...init, headers }, bindings));
    },
  };
}

export function fromBase64(s: string): Uint8Array {
  const bin = atob(s);
  const out = new Uint8Array(bin.length);
  for (let i = 0; i < bin.length; i++) out[i] = bin.charCodeAt(i);
  return out;
}

/** True when `needle` occurs in `haystack`. */
export function contains(haystack: Uint8Array, needle: Uint8Array | string): boolean {
  const n = typeof needle === "string" ? new TextEncoder().encode(needle) : needle;
  outer: for (let i = 0; i + n.length <= haystack.length; i++) {
    for (let j = 0; j < n.length; j++) if (haystack[i + j] !== n[j]) continue outer;
    return true;
  }
  return false;
}
