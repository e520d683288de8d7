/** Reads the gpu-node's TLS certificate and key (PEM files) and proves they belong together, naming the file at fault. */
import { readFileSync } from "node:fs";
import { createSecureContext } from "node:tls";
import type { TlsPem } from "./listener.ts";

/** A certificate or key that cannot serve: unreadable, not PEM, or not a pair. */
export class TlsFileError extends Error {
  override name = "TlsFileError";
}

function read(path: string, what: string): Buffer {
  try {
    return readFileSync(path);
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code ?? "error";
    throw new TlsFileError(`cannot read the TLS ${what} file ${path} (${code})`);
  }
}

/** Both files, checked one at a time so a bad one is named, then together (a key of another certificate). */
export function loadTlsFiles(certPath: string, keyPath: string): TlsPem {
  const cert = read(certPath, "certificate");
  const key = read(keyPath, "key");
  const reason = (err: unknown) => (err instanceof Error ? err.message : String(err));
  if (!cert.includes("-----BEGIN CERTIFICATE-----")) {
    throw new TlsFileError(`the TLS certificate file ${certPath} holds no PEM certificate`);
  }
  try {
    createSecureContext({ cert });
  } catch (err) {
    throw new TlsFileError(`the TLS certificate file ${certPath} is not usable: ${reason(err)}`);
  }
  if (!/-----BEGIN [A-Z ]*PRIVATE KEY-----/.test(key.toString("latin1"))) {
    throw new TlsFileError(`the TLS key file ${keyPath} holds no PEM private key`);
  }
  try {
    createSecureContext({ key });
  } catch (err) {
    throw new TlsFileError(`the TLS key file ${keyPath} is not usable: ${reason(err)}`);
  }
  try {
    createSecureContext({ cert, key });
  } catch (err) {
    throw new TlsFileError(
      `the TLS key file ${keyPath} does not match the certificate ${certPath}: ${reason(err)}`,
    );
  }
  return { cert, key };
}
