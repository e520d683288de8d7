/** The edge's Hono app: middleware (request id, timing, CORS, auth, rate limit, body limit), the routes, and the one place errors become JSON responses. */
import { type Context, Hono } from "hono";
import { bodyLimit } from "hono/body-limit";
import { cors } from "hono/cors";
import { HTTPException } from "hono/http-exception";
import { requestId } from "hono/request-id";
import { endTime, setMetric, startTime, timing } from "hono/timing";
import { analytics, noteImages } from "./analytics.ts";
import { requireApiKey } from "./auth.ts";
import { type EdgeConfig, edgeConfig } from "./config.ts";
import { HttpError } from "./errors.ts";
import { createGpuClient, type GpuClient } from "./gpu-client.ts";
import { type PipelineResult, runPipeline, type StageTimer } from "./pipeline.ts";
import type { Resizer } from "./resize/resizer.ts";
import { parseBase64Upload, parseEmbeddingsUpload, toBase64 } from "./upload.ts";

/** How the app gets its side effects; the entries (Worker, Node) pass real ones, tests fakes. */
export interface EdgeDeps {
  readonly resizer: (env: object, config: EdgeConfig) => Resizer;
  readonly gpu?: (config: EdgeConfig) => GpuClient;
}

type AppEnv = {
  Bindings: object;
  Variables: { apiKeyId: string; requestId: string };
};

type Ctx = Context<AppEnv>;

interface RateLimiter {
  limit(options: { key: string }): Promise<{ success: boolean }>;
}

export function createApp(deps: EdgeDeps) {
  // One gpu-node client per config (i.e. per isolate): keeps its round-robin position.
  const gpuClients = new WeakMap<EdgeConfig, GpuClient>();
  const gpuFor = (config: EdgeConfig) => {
    let g = gpuClients.get(config);
    if (!g) {
      g =
        deps.gpu?.(config) ??
        createGpuClient({
          urls: config.gpuNodeUrls,
          token: config.gpuNodeToken,
          timeoutMs: config.gpuNodeTimeoutMs,
        });
      gpuClients.set(config, g);
    }
    return g;
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

  app.get("/healthz", (c) => c.json({ status: "ok" }));
  app.get("/readyz", async (c) => {
    const ready = await gpuFor(edgeConfig(c.env)).ready(2000);
    return c.json({ status: ready ? "ready" : "gpu-node unreachable" }, ready ? 200 : 503);
  });

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

  const stageTimer =
    (c: Ctx): StageTimer =>
    async (stage, work) => {
      startTime(c, stage);
      try {
        return await work();
      } finally {
        endTime(c, stage);
      }
    };

  const embed = async (c: Ctx, uploads: Parameters<typeof runPipeline>[0]) => {
    const config = edgeConfig(c.env);
    const result = await runPipeline(uploads, {
      config,
      resizer: deps.resizer(c.env, config),
      gpu: gpuFor(config),
      time: stageTimer(c),
      requestId: c.get("requestId"),
      signal: c.req.raw.signal,
    });
    reportGpuTimings(c, result);
    noteImages(c, result.images);
    return { config, result };
  };

  app.post("/v1/embeddings", ...guard, async (c) => {
    const { uploads, encodingFormat } = await parseEmbeddingsUpload(c.req.raw, edgeConfig(c.env));
    const { config, result } = await embed(c, uploads);
    return c.json({
      object: "list",
      data: result.embedded.vectors.map((v, index) => ({
        object: "embedding",
        index,
        embedding:
          encodingFormat === "base64"
            ? toBase64(new Uint8Array(v.buffer, v.byteOffset, v.byteLength))
            : Array.from(v),
        ...result.images[index],
      })),
      model: config.modelName,
      model_version: result.embedded.modelVersion,
      usage: { images: uploads.length, prompt_tokens: 0, total_tokens: 0 },
    });
  });

  // Drop-in for the seed's PyTorch FastAPI endpoint: same request and response JSON.
  app.post("/embed/base64", ...guard, async (c) => {
    const req = await parseBase64Upload(c.req.raw, edgeConfig(c.env));
    const { config, result } = await embed(c, req.uploads);
    return c.json({
      embeddings: result.embedded.vectors.map((v) => Array.from(v)),
      model_info: {
        model_name: req.modelName ?? config.modelName,
        pretrained: req.pretrained ?? null,
        embedding_dim: result.embedded.dimension,
        served_model: result.embedded.model,
        model_version: result.embedded.modelVersion,
      },
      count: result.embedded.vectors.length,
    });
  });

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

/** The gpu-node's own stages, prefixed, next to the edge's in Server-Timing. */
function reportGpuTimings(c: Ctx, result: PipelineResult): void {
  const t = result.embedded.timings;
  if (!t) return;
  const ms = (us: number) => us / 1000;
  setMetric(c, "gpu-node-decode", ms(t.decodeUs));
  setMetric(c, "gpu-node-preprocess", ms(t.preprocessUs));
  setMetric(c, "gpu-node-queue", ms(t.queueUs));
  setMetric(c, "gpu-node-inference", ms(t.inferenceUs));
  setMetric(c, "gpu-node-total", ms(t.totalUs));
}
