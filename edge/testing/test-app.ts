/** The edge app as the Worker builds it (real Images binding from the workerd test env) in front of gpu-node stand-ins, with an API key: for workerd tests that send many requests. */
import { env } from "cloudflare:test";
import { createApp } from "../app.ts";
import { createGpuClient } from "../gpu-client.ts";
import { createImagesBindingResizer } from "../resize/images-binding.ts";
import { createStandIn, type StandIn } from "./gpu-stand-in.ts";

export const TEST_KEY = "hostile-test-key-5c1d";
export const TEST_TOKEN = "hostile-edge-token-9a0b";

async function sha256Hex(text: string): Promise<string> {
  const d = new Uint8Array(await crypto.subtle.digest("SHA-256", new TextEncoder().encode(text)));
  return Array.from(d, (b) => b.toString(16).padStart(2, "0")).join("");
}

export interface TestApp {
  readonly standIn: StandIn;
  /** Sends `init` to `path` with the API key (or `key`, or none when null). */
  request(path: string, init?: RequestInit, key?: string | null): Promise<Response>;
}

export async function testApp(vars: Record<string, string> = {}): Promise<TestApp> {
  const standIn = createStandIn();
  const app = createApp({
    resizer: (e) => createImagesBindingResizer((e as Env).IMAGES),
    gpu: (config) =>
      createGpuClient({
        urls: config.gpuNodeUrls,
        token: config.gpuNodeToken,
        timeoutMs: config.gpuNodeTimeoutMs,
        fetch: standIn.fetch,
        backoffMs: 1,
      }),
  });
  const appEnv = {
    ...env,
    GPU_NODE_URLS: "http://gpu-0.test",
    GPU_NODE_TOKEN: TEST_TOKEN,
    API_KEY_HASHES: await sha256Hex(TEST_KEY),
    ...vars,
  };
  return {
    standIn,
    request(path, init = {}, key = TEST_KEY) {
      const headers = new Headers(init.headers);
      if (key !== null) headers.set("authorization", `Bearer ${key}`);
      return Promise.resolve(app.request(path, { ...init, headers }, appEnv));
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
