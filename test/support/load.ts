/** A real HTTP load generator for the edge (autocannon, in this process): POSTs a set of image bodies in turn over N keep-alive connections, closed loop or at a fixed overall rate, for a fixed time; records every response's status and latency and hands each body to a checker. Stops by itself. */
import autocannon from "autocannon";

export interface LoadBody {
  readonly body: Buffer;
  readonly contentType: string;
}

export interface LoadOptions {
  readonly url: string;
  readonly path: string;
  readonly apiKey: string;
  readonly bodies: readonly LoadBody[];
  readonly connections: number;
  readonly durationSeconds: number;
  /** Requests per second over all connections (open loop); omitted = as fast as answers come. */
  readonly overallRate?: number;
  /** Called with every response: which body it was for, its status, body and headers. */
  readonly check?: (
    index: number,
    status: number,
    body: string,
    headers: Record<string, string>,
  ) => void;
  /** Seconds before a request counts as timed out. */
  readonly timeoutSeconds?: number;
}

export interface LoadResult {
  readonly requests: number;
  readonly durationSeconds: number;
  /** Responses per second over the run (all statuses). */
  readonly rps: number;
  readonly statuses: Record<string, number>;
  /** Latencies in ms by status. */
  readonly latencies: Record<string, number[]>;
  /** Connection errors and timeouts (no HTTP answer at all). */
  readonly errors: number;
  readonly timeouts: number;
}

export async function runHttpLoad(opts: LoadOptions): Promise<LoadResult> {
  const latencies: Record<string, number[]> = {};
  const statuses: Record<string, number> = {};
  const requests = opts.bodies.map((b, index) => ({
    method: "POST" as const,
    path: opts.path,
    headers: { "content-type": b.contentType, authorization: `Bearer ${opts.apiKey}` },
    body: b.body,
    onResponse: (
      status: number,
      body: string,
      _context: unknown,
      headers?: Record<string, unknown>,
    ) => {
      // Header names arrive as the server cased them.
      const lower = Object.fromEntries(
        Object.entries(headers ?? {}).map(([k, v]) => [k.toLowerCase(), String(v)]),
      );
      opts.check?.(index, status, body, lower);
    },
  }));
  // Without a callback autocannon returns its instance, which is also a promise of the result.
  const instance = autocannon({
    url: opts.url,
    connections: opts.connections,
    duration: opts.durationSeconds,
    timeout: opts.timeoutSeconds ?? 30,
    ...(opts.overallRate !== undefined ? { overallRate: opts.overallRate } : {}),
    // autocannon's typings predate onResponse's headers argument.
    requests: requests as unknown as autocannon.Request[],
  }) as unknown as autocannon.Instance & PromiseLike<autocannon.Result>;
  instance.on("response", (_client: unknown, status: number, _bytes: number, ms: number) => {
    const k = String(status);
    statuses[k] = (statuses[k] ?? 0) + 1;
    latencies[k] ??= [];
    latencies[k].push(ms);
  });
  const result = await instance;
  const total = Object.values(statuses).reduce((a, b) => a + b, 0);
  return {
    requests: total,
    durationSeconds: result.duration,
    rps: total / result.duration,
    statuses,
    latencies,
    errors: result.errors,
    timeouts: result.timeouts,
  };
}
