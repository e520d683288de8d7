/** Client auth: `Authorization: Bearer <key>` checked against SHA-256 hashes in constant time; every failure looks the same. */
import { createMiddleware } from "hono/factory";
import { edgeConfig } from "./config.ts";
import { HttpError } from "./errors.ts";

const encoder = new TextEncoder();

async function sha256(text: string): Promise<Uint8Array> {
  return new Uint8Array(await crypto.subtle.digest("SHA-256", encoder.encode(text)));
}

function fromHex(hex: string): Uint8Array {
  const out = new Uint8Array(hex.length / 2);
  for (let i = 0; i < out.length; i++) out[i] = Number.parseInt(hex.slice(2 * i, 2 * i + 2), 16);
  return out;
}

/** Equal-length comparison whose time does not depend on where the bytes differ. */
export function constantTimeEqual(a: Uint8Array, b: Uint8Array): boolean {
  if (a.length !== b.length) return false;
  let diff = 0;
  for (let i = 0; i < a.length; i++) diff |= a[i]! ^ b[i]!;
  return diff === 0;
}

/**
 * The key's SHA-256 when it matches one of `hashes`, else undefined; always compares against every
 * hash. One digest a request serves both the check and the key's id (SHA-256 through
 * crypto.subtle showed up in a profile of the Worker's CPU: no need to pay for it twice).
 */
export async function matchingDigest(
  key: string,
  hashes: readonly string[],
): Promise<Uint8Array | undefined> {
  const digest = await sha256(key);
  let ok = false;
  for (const h of hashes) ok = constantTimeEqual(digest, fromHex(h)) || ok;
  return ok && key.length > 0 ? digest : undefined;
}

/** Bearer-key middleware; passes everything through when auth is explicitly disabled. */
export function requireApiKey() {
  return createMiddleware<{ Bindings: object; Variables: { apiKeyId: string } }>(
    async (c, next) => {
      const config = edgeConfig(c.env);
      if (config.authDisabled) {
        c.set("apiKeyId", "anonymous");
        return next();
      }
      const header = c.req.header("authorization") ?? "";
      const key = header.startsWith("Bearer ") ? header.slice(7).trim() : "";
      const digest = await matchingDigest(key, config.apiKeyHashes);
      if (!digest) throw new HttpError(401, "unauthenticated", "missing or invalid API key");
      // A stable, non-secret id for rate limiting and logs: a prefix of the key's hash.
      c.set(
        "apiKeyId",
        Array.from(digest.slice(0, 8), (b) => b.toString(16).padStart(2, "0")).join(""),
      );
      return next();
    },
  );
}
