/** Test support: awaits a promise that must reject with an HttpError, and hands that error back. */
import { expect } from "vitest";
import { HttpError } from "../errors.ts";

export async function rejection(p: Promise<unknown>): Promise<HttpError> {
  const e = await p.then(
    () => undefined,
    (err: unknown) => err,
  );
  expect(e).toBeInstanceOf(HttpError);
  return e as HttpError;
}
