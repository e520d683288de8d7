/** The benchmark's link profiles: for each, the link settings of every hop a variant's bytes cross (client ↔ edge, edge ↔ GPU site, client ↔ GPU site). */
import { type LinkSettings, PASS_THROUGH, symmetricLink } from "./link.ts";

const MBIT = 1e6;

export type ProfileName = "seed" | "mobile" | "loopback";

export interface LinkProfile {
  readonly name: ProfileName;
  readonly summary: string;
  /** Why these numbers. */
  readonly rationale: string;
  /**
   * Client → edge in variant (1). The edge runs at a point of presence near the client, so this
   * is the client's access link.
   */
  readonly access: LinkSettings;
  /** Edge → gpu-node in variant (1): the long haul from the point of presence to the GPU site. */
  readonly backbone: LinkSettings;
  /**
   * Client → GPU site in variants (2) and (3): access and long haul in one (their delays add up,
   * the slower rate wins), so all three variants see the same client ↔ GPU round trip.
   */
  readonly direct: LinkSettings;
}

/**
 * The seed measured 14 ms RTT client ↔ GPU; its bandwidth is not recorded. Its Triton batch-32 run
 * moved 19.3 MB per batch at 32.3 img/s, i.e. ≥ 156 Mbit/s even if nothing else took time; we
 * round up to 200 Mbit/s symmetric, the slowest rate consistent with that figure.
 */
const SEED_WAN = symmetricLink(14, 200 * MBIT);

export const PROFILES: Readonly<Record<ProfileName, LinkProfile>> = {
  seed: {
    name: "seed",
    summary: "14 ms RTT, 200 Mbit/s both ways",
    rationale:
      "The seed's client sat 14 ms from the GPU (its figures' RTT). Its bandwidth is not recorded: " +
      "its Triton batch-32 run moved 19.3 MB per batch at 32.3 img/s, which needs ≥ 156 Mbit/s " +
      "even with zero compute, so we use the next round figure, 200 Mbit/s, both ways. The seed's " +
      "client was a server in a data centre: in variant (1) the edge sits beside it (client → " +
      "edge is loopback) and the 14 ms link is edge → gpu-node.",
    access: PASS_THROUGH,
    backbone: SEED_WAN,
    direct: SEED_WAN,
  },
  mobile: {
    name: "mobile",
    summary: "40 ms RTT, 20 Mbit/s down / 5 Mbit/s up",
    rationale:
      "A phone on a mobile network: 40 ms RTT to the GPU site, 20 Mbit/s down and 5 Mbit/s up. " +
      "In variant (1) the edge is at the provider's point of presence, between the radio access " +
      "network and the long haul: client → edge is the access link (26 ms RTT, 20/5 Mbit/s) and " +
      "edge → gpu-node the seed's 14 ms, 200 Mbit/s link, so the round trip adds up to 40 ms as " +
      "in (2) and (3). The original photo crosses the slow uplink in every variant; the edge " +
      "cannot avoid that, only what crosses the long haul and what the GPU host must decode.",
    access: {
      up: { delayMs: 13, bitsPerSecond: 5 * MBIT },
      down: { delayMs: 13, bitsPerSecond: 20 * MBIT },
      handshake: true,
    },
    backbone: SEED_WAN,
    direct: {
      up: { delayMs: 20, bitsPerSecond: 5 * MBIT },
      down: { delayMs: 20, bitsPerSecond: 20 * MBIT },
      handshake: true,
    },
  },
  loopback: {
    name: "loopback",
    summary: "no delay, no rate limit (the proxies only copy bytes)",
    rationale:
      "Everything on one machine: the proxies stay in the path (same hops as the other " +
      "profiles) but add no delay and no rate limit, so the rows show the software's own cost.",
    access: PASS_THROUGH,
    backbone: PASS_THROUGH,
    direct: PASS_THROUGH,
  },
};
