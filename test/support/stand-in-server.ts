/** A gpu-node stand-in (edge/testing/gpu-stand-in.ts) served over real HTTP/1.1 on loopback, for Workers under wrangler to call; it records when each Embed call's body had arrived. */
import { createServer } from "node:http";
import type { AddressInfo } from "node:net";
import type { StandIn } from "../../edge/testing/gpu-stand-in.ts";

export interface StandInServer {
  readonly url: string;
  /** performance.now() when each Embed call's body had arrived. */
  readonly embedArrivals: number[];
  close(): Promise<void>;
}

export async function serveStandIn(standIn: StandIn): Promise<StandInServer> {
  const embedArrivals: number[] = [];
  const server = createServer(async (req, res) => {
    const chunks: Buffer[] = [];
    for await (const c of req) chunks.push(c as Buffer);
    if (req.url?.endsWith("/Embed")) embedArrivals.push(performance.now());
    const answer = await standIn.fetch(`http://stand-in${req.url}`, {
      method: req.method,
      headers: req.headers as Record<string, string>,
      body: req.method === "POST" ? Buffer.concat(chunks) : undefined,
    });
    res.writeHead(answer.status, Object.fromEntries(answer.headers));
    res.end(Buffer.from(await answer.arrayBuffer()));
  });
  await new Promise<void>((ready) => server.listen(0, "127.0.0.1", ready));
  return {
    url: `http://127.0.0.1:${(server.address() as AddressInfo).port}`,
    embedArrivals,
    close: () => new Promise((closed) => server.close(() => closed())),
  };
}
