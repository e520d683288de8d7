/** The WAN emulator's own process: receives link commands over IPC from test/bench/wan/process.ts, hands back ports and byte counters. Kept apart so that the benchmark's clients never delay the link's timers. */
import { type LinkSettings, startWanProxy, type Target, type WanProxy } from "./link.ts";

export type WanCommand =
  | {
      readonly op: "open";
      readonly name: string;
      readonly target: Target;
      readonly link: LinkSettings;
    }
  | {
      readonly op: "set";
      readonly name: string;
      readonly target?: Target;
      readonly link?: LinkSettings;
    }
  | { readonly op: "stats" }
  | { readonly op: "close" };

export interface WanRequest {
  readonly id: number;
  readonly command: WanCommand;
}

export interface WanReply {
  readonly id: number;
  readonly ok: boolean;
  readonly result?: unknown;
  readonly error?: string;
}

const links = new Map<string, WanProxy>();

async function handle(command: WanCommand): Promise<unknown> {
  switch (command.op) {
    case "open": {
      if (links.has(command.name)) throw new Error(`link ${command.name} is already open`);
      const proxy = await startWanProxy({ target: command.target, link: command.link });
      links.set(command.name, proxy);
      return { port: proxy.port, url: proxy.url };
    }
    case "set": {
      const proxy = links.get(command.name);
      if (!proxy) throw new Error(`no link ${command.name}`);
      if (command.link) proxy.setLink(command.link);
      if (command.target) proxy.setTarget(command.target);
      return null;
    }
    case "stats":
      return Object.fromEntries([...links].map(([name, p]) => [name, p.stats()]));
    case "close":
      await Promise.all([...links.values()].map((p) => p.close()));
      links.clear();
      return null;
  }
}

if (!process.send)
  throw new Error("run me through test/bench/wan/process.ts (needs an IPC channel)");
process.on("message", (message: WanRequest) => {
  handle(message.command).then(
    (result) =>
      process.send!({ id: message.id, ok: true, result } satisfies WanReply, undefined, {}, () => {
        // Closed: once the reply is out, nothing keeps this process alive.
        if (message.command.op === "close") process.disconnect();
      }),
    (err: unknown) =>
      process.send!({
        id: message.id,
        ok: false,
        error: err instanceof Error ? err.message : String(err),
      } satisfies WanReply),
  );
});
// The parent went away: nothing else keeps this process useful.
process.on("disconnect", () => process.exit(0));
