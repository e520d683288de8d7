/** For tests of what the edge sends: a JPEG in, the marker bytes of its segments up to and including SOS out (runtimes: workerd and Node). */

/**
 * Marker bytes of the segments up to and including SOS. Written apart from
 * imaging/jpeg/segments.ts on purpose: it is the independent check that no metadata segment
 * reached the gpu-node.
 */
export function segmentMarkers(jpeg: Uint8Array): number[] {
  const out: number[] = [];
  let i = 2;
  while (i + 4 <= jpeg.length && jpeg[i] === 0xff) {
    const m = jpeg[i + 1]!;
    out.push(m);
    if (m === 0xda) break;
    i += 2 + ((jpeg[i + 2]! << 8) | jpeg[i + 3]!);
  }
  return out;
}
