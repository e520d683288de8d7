/** The messages between the cluster's primary and its workers (over node:cluster's IPC channel). */
import type { MetricObjectWithValues, MetricValue } from "prom-client";
import type { ModelDescription } from "../backends/backend.ts";
import type { Config } from "../config.ts";
import type { MetricsSnapshot } from "../observability/metrics.ts";
import type { FastPath } from "../preprocess/decode.ts";

export type PromMetrics = MetricObjectWithValues<MetricValue<string>>[];

/** Primary → worker. */
export type ToWorker =
  | {
      readonly t: "start";
      readonly config: Config;
      readonly index: number;
      /** Pixels go to the primary's batcher over fd 4 (onnxruntime); else a backend of its own. */
      readonly central: boolean;
      /** The primary's model, when central. */
      readonly model?: ModelDescription;
    }
  | { readonly t: "drain" }
  /** Re-read the TLS certificate and key (the primary got SIGHUP and checked the files). */
  | { readonly t: "reload-tls" }
  | { readonly t: "metrics"; readonly id: number };

/** Worker → primary. */
export type FromWorker =
  | {
      readonly t: "listening";
      readonly port: number;
      readonly model: ModelDescription;
      /** Which libjpeg-turbo build its plain-JPEG fast paths use, or "off" (preprocess/decode.ts). */
      readonly jpegFastPath: FastPath;
    }
  | { readonly t: "failed"; readonly message: string }
  | { readonly t: "load"; readonly inFlight: number }
  | { readonly t: "draining"; readonly inFlight: number }
  | {
      readonly t: "metrics";
      readonly id: number;
      readonly json: PromMetrics;
      readonly snapshot: MetricsSnapshot;
    };
