/** The edge's Hono app: side effects (resizer, gpu-node client) in; the app out, with its middleware (request id, timing, CORS, auth, rate limit, body limit), the routes of routes/, and the one place errors become JSON responses. */
import { Hono } from "hono";
import { bodyLimit } from "hono/body-limit";
import { cors } from "hono/cors";
import { HTTPException } from "hono/http-exception";
import { requestId } from "hono/request-id";
import { timing } from "hono/timing";
import { type Admission, createAdmission } from "./admission.ts";
import { analytics } from "./analytics.ts";
import { requireApiKey } from "./auth.ts";
import { type EdgeConfig, edgeConfig } from "./config.ts";
import { HttpError } from "./errors.ts";
import { createGpuClient, type GpuClient, gpuClientOptions } from "./gpu-client.ts";
import type { Resizer } from "./resize/resizer.ts";
import { type AppEnv, type Ctx, createEmbed } from "./routes/context.ts";
import { embedBase64 } from "./routes/embed-base64.ts";
import { embeddings } from "./routes/embeddings.ts";
import { healthz, readyz } from "./routes/health.ts";

/** How the app gets its side effects; the entries (Worker, Node) pass real ones, tests fakes. */
export interface EdgeDeps {
  readonly resizer: (env: object, config: EdgeConfig) => Resizer;
  readonly gpu?: (config: EdgeConfig) => GpuClient;
}

interface RateLimiter {
  limit(options: { key: string }): Promise<{ success: boolean }>;
}

export function createApp(deps: EdgeDeps) {
  // One gpu-node client per config (i.e. per isolate): keeps its round-robin position.
  const gpuClients = new WeakMap<EdgeConfig, GpuClient>();
  const gpuFor = (config: EdgeConfig) => {
    // A production config that would call the wrong port (or cleartext across the internet)
    // fails here, with the reason, instead of reaching some other service.
    if (config.problems.length > 0) {
      throw new HttpError(
        503,
        "misconfigured",
        `edge misconfigured for production: ${config.problems.join("; ")}`,
      );
    }
    let g = gpuClients.get(config);
    if (!g) {
      g = deps.gpu?.(config) ?? createGpuClient(gpuClientOptions(config));
      gpuClients.set(config, g);
    }
    return g;
  };
  // One adaptive admission per config too (i.e. per isolate), when ADAPTIVE_ADMISSION is on.
  const admissions = new WeakMap<EdgeConfig, Admission>();
  const admissionFor = (config: EdgeConfig) => {
    if (!config.adaptiveAdmission) return undefined;
    let a = admissions.get(config);
    if (!a) {
      a = createAdmission();
      admissions.set(config, a);
    }
    return a;
  };

  const app = new Hono<AppEnv>();
  app.use(requestId({ headerName: "X-Request-Id" }));
  // Outside timing(): it reads the finished Server-Timing header (one Analytics Engine point).
  app.use(analytics());
  app.use(timing({ totalDescription: "edge total", autoEnd: true }));
  app.use(
    cors({
      origin: (origin, c) => {
        const allowed = edgeConfig(c.env).corsOrigins;
        return allowed.includes("*") ? "*" : allowed.includes(origin) ? origin : null;
      },
      allowMethods: ["GET", "POST", "OPTIONS"],
      allowHeaders: ["Authorization", "Content-Type", "X-Request-Id"],
      exposeHeaders: ["Server-Timing", "X-Request-Id", "Retry-After"],
      maxAge: 600,
    }),
  );

  const guard = [
    requireApiKey(),
    // Per-key rate limit, when the Workers rate-limiting binding is configured.
    async (c: Ctx, next: () => Promise<void>) => {
      const limiter = (c.env as { RATE_LIMITER?: RateLimiter }).RATE_LIMITER;
      if (limiter && !(await limiter.limit({ key: c.get("apiKeyId") })).success) {
        throw new HttpError(429, "rate_limited", "too many requests for this API key", {
          retryAfter: 10,
        });
      }
      return next();
    },
    // The body limit is enforced while the body streams in (chunked bodies too).
    async (c: Ctx, next: () => Promise<void>) => {
      const max = edgeConfig(c.env).maxRequestBytes;
      return bodyLimit({
        maxSize: max,
        onError: () => {
          throw new HttpError(413, "payload_too_large", `the request body is over ${max} bytes`);
        },
      })(c, next);
    },
  ] as const;

  const embed = createEmbed(deps.resizer, gpuFor, admissionFor);

  app.get("/healthz", healthz);
  app.get("/readyz", readyz(gpuFor));
  app.post("/v1/embeddings", ...guard, embeddings(embed));
  // Drop-in for the seed's PyTorch FastAPI endpoint: same request and response JSON.
  app.post("/embed/base64", ...guard, embedBase64(embed));

  app.notFound((c) => c.json({ error: { code: "not_found", message: "no such route" } }, 404));

  app.onError((err, c) => {
    const id = c.get("requestId");
    if (err instanceof HttpError) {
      if (err.status >= 500) {
        console.error(
          JSON.stringify({
            requestId: id,
            code: err.code,
            message: err.message,
            cause: String(err.cause ?? ""),
          }),
        );
      }
      if (err.retryAfter !== undefined) c.header("Retry-After", String(err.retryAfter));
      return c.json({ error: { code: err.code, message: err.message } }, err.status);
    }
    if (err instanceof HTTPException && err.status < 500) {
      return c.json(
        { error: { code: "bad_request", message: err.message || "bad request" } },
        err.status,
      );
    }
    // Unknown: the details go to the log, never to the client.
    console.error(
      JSON.stringify({ requestId: id, code: "internal", message: String(err), stack: err.stack }),
    );
    return c.json({ error: { code: "internal", message: "internal error" } }, 500);
  });

  return app;
}
