/** Per-call policy for the Connect routes: request ids, the bearer token, refusal while draining, the call log line, error translation. */
import { createHash, randomUUID, timingSafeEqual } from "node:crypto";
import {
  Code,
  ConnectError,
  type ContextValues,
  createContextKey,
  createContextValues,
  type Interceptor,
} from "@connectrpc/connect";
import type { Config } from "../config.ts";
import type { Logger } from "../logger.ts";
import { toConnectError } from "./errors.ts";

export const requestIdKey = createContextKey<string>("", { description: "request id" });
/** Set when the call's headers arrived before draining began: it is served, even if its body was still on its way. */
export const arrivedBeforeDrainKey = createContextKey<boolean>(false, {
  description: "arrived before drain",
});
const REQUEST_ID = /^[A-Za-z0-9._:-]{1,128}$/;

/** The request id a caller sent when it is well-formed, else a fresh one. */
export function requestContext(given: string | string[] | undefined): ContextValues {
  const id = typeof given === "string" && REQUEST_ID.test(given) ? given : randomUUID();
  return createContextValues().set(requestIdKey, id);
}

/** Set once a call's bearer token has been checked and found good. */
export const authenticatedKey = createContextKey<boolean>(false, { description: "authenticated" });

/**
 * A constant-time check of `Authorization: Bearer <token>` (hashing first makes the lengths
 * equal). The token's own digest is taken once here, not on every call.
 */
export function bearerCheck(token: string): (header: string | null) => boolean {
  const want = createHash("sha256").update(token).digest();
  return (header) => {
    const given = header?.startsWith("Bearer ") ? header.slice(7) : "";
    return timingSafeEqual(createHash("sha256").update(given).digest(), want) && given.length > 0;
  };
}

export interface CallState {
  draining: boolean;
  inFlight: number;
}

/**
 * Per call: request id, auth, refusal while draining, one log line (debug when served), error
 * translation. `tokenOk` is the server's own `bearerCheck(config.token)`, shared with its gate.
 */
export function callInterceptor(
  config: Config,
  log: Logger,
  state: CallState,
  tokenOk: (header: string | null) => boolean,
): Interceptor {
  return (next) => async (req) => {
    const requestId = req.contextValues.get(requestIdKey);
    const started = performance.now();
    const method = req.method.name;
    const finish = (code: string, extra: Record<string, unknown> = {}) => {
      state.inFlight--;
      // A served call's line is debug: at one image per call it cost ~10% of the node's CPU per
      // image (pino, the write, the log reader's wake-ups; metrics count every call anyway).
      // Refused and failed calls stay at info.
      log[code === "ok" ? "debug" : "info"](
        { requestId, method, code, ms: +(performance.now() - started).toFixed(2), ...extra },
        "call",
      );
    };
    const translate = (err: unknown) =>
      toConnectError(err, (e) => log.error({ requestId, method, err: e }, "internal error"));
    state.inFlight++;
    try {
      if (state.draining && !req.contextValues.get(arrivedBeforeDrainKey)) {
        throw new ConnectError("server is shutting down", Code.Unavailable);
      }
      if (
        config.token !== "" &&
        !req.contextValues.get(authenticatedKey) &&
        !tokenOk(req.header.get("authorization"))
      ) {
        throw new ConnectError("missing or invalid credentials", Code.Unauthenticated);
      }
      const res = await next(req);
      res.header.set("x-request-id", requestId);
      if (!res.stream) {
        finish("ok");
        return res;
      }
      const messages = res.message;
      return {
        ...res,
        message: (async function* () {
          let count = 0;
          let code = "ok";
          try {
            for await (const m of messages) {
              count++;
              yield m;
            }
          } catch (err) {
            const ce = translate(err);
            code = Code[ce.code];
            throw ce;
          } finally {
            finish(code, { messages: count });
          }
        })(),
      };
    } catch (err) {
      const ce = translate(err);
      finish(Code[ce.code]);
      throw ce;
    }
  };
}
