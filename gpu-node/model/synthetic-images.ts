/** Seeded synthetic photos-ish images (gradients, blobs, noise, stripes), as uint8 RGB HWC. */

import { type Rng, streamFor } from "./prng.ts";

type Colour = readonly [number, number, number];
/** Writes one image's RGB pixels (HWC, row-major) in 0..255, before rounding. */
type Painter = (rng: Rng, size: number, out: Float32Array) => void;

const randomColour = (rng: Rng): Colour => [
  rng.range(0, 255),
  rng.range(0, 255),
  rng.range(0, 255),
];

function mix(out: Float32Array, at: number, a: Colour, b: Colour, t: number): void {
  out[at] = a[0] + (b[0] - a[0]) * t;
  out[at + 1] = a[1] + (b[1] - a[1]) * t;
  out[at + 2] = a[2] + (b[2] - a[2]) * t;
}

const clamp01 = (t: number): number => Math.min(1, Math.max(0, t));

/** A linear gradient between two colours at a random angle (sky, walls). */
const linearGradient: Painter = (rng, size, out) => {
  const [a, b] = [randomColour(rng), randomColour(rng)];
  const angle = rng.range(0, 2 * Math.PI);
  const [dx, dy] = [Math.cos(angle) / size, Math.sin(angle) / size];
  for (let y = 0; y < size; y++) {
    for (let x = 0; x < size; x++) {
      const t = clamp01((x - size / 2) * dx + (y - size / 2) * dy + 0.5);
      mix(out, (y * size + x) * 3, a, b, t);
    }
  }
};

/** A radial gradient around a random centre (vignettes, lamps). */
const radialGradient: Painter = (rng, size, out) => {
  const [a, b] = [randomColour(rng), randomColour(rng)];
  const [cx, cy] = [rng.range(0, size), rng.range(0, size)];
  const radius = rng.range(0.3, 1.2) * size;
  for (let y = 0; y < size; y++) {
    for (let x = 0; x < size; x++) {
      mix(out, (y * size + x) * 3, a, b, clamp01(Math.hypot(x - cx, y - cy) / radius));
    }
  }
};

/** Soft Gaussian blobs of colour on a plain background (objects, faces, fruit). */
const blobs: Painter = (rng, size, out) => {
  const background = randomColour(rng);
  for (let i = 0; i < size * size; i++) out.set(background, i * 3);
  const count = 3 + rng.int(6);
  for (let k = 0; k < count; k++) {
    const colour = randomColour(rng);
    const [cx, cy] = [rng.range(0, size), rng.range(0, size)];
    const sigma = rng.range(0.04, 0.3) * size;
    const inv = 1 / (2 * sigma * sigma);
    for (let y = 0; y < size; y++) {
      for (let x = 0; x < size; x++) {
        const weight = Math.exp(-((x - cx) ** 2 + (y - cy) ** 2) * inv);
        const at = (y * size + x) * 3;
        mix(out, at, [out[at]!, out[at + 1]!, out[at + 2]!], colour, weight);
      }
    }
  }
};

/** Per-pixel noise around a base colour (texture, grain, foliage from afar). */
const pixelNoise: Painter = (rng, size, out) => {
  const base = randomColour(rng);
  const amplitude = rng.range(40, 255);
  for (let i = 0; i < size * size * 3; i++) {
    out[i] = base[i % 3]! + amplitude * (rng.uniform() - 0.5);
  }
};

/** Smooth value noise: random colours on a coarse grid, bilinearly interpolated (landscapes). */
const valueNoise: Painter = (rng, size, out) => {
  const cells = 2 + rng.int(11);
  const grid: Colour[] = Array.from({ length: (cells + 1) ** 2 }, () => randomColour(rng));
  const corner = (gx: number, gy: number) => grid[gy * (cells + 1) + gx]!;
  const top = new Float32Array(3);
  const bottom = new Float32Array(3);
  for (let y = 0; y < size; y++) {
    const fy = (y / size) * cells;
    const gy = Math.floor(fy);
    for (let x = 0; x < size; x++) {
      const fx = (x / size) * cells;
      const gx = Math.floor(fx);
      mix(top, 0, corner(gx, gy), corner(gx + 1, gy), fx - gx);
      mix(bottom, 0, corner(gx, gy + 1), corner(gx + 1, gy + 1), fx - gx);
      mix(
        out,
        (y * size + x) * 3,
        [top[0]!, top[1]!, top[2]!],
        [bottom[0]!, bottom[1]!, bottom[2]!],
        fy - gy,
      );
    }
  }
};

/** Sinusoidal stripes or a checkerboard (fabric, buildings, screens). */
const stripes: Painter = (rng, size, out) => {
  const [a, b] = [randomColour(rng), randomColour(rng)];
  const angle = rng.range(0, Math.PI);
  const cycles = rng.range(2, 24);
  const checker = rng.uniform() < 0.5;
  const k = (2 * Math.PI * cycles) / size;
  const [c, s] = [Math.cos(angle) * k, Math.sin(angle) * k];
  const phase = rng.range(0, 2 * Math.PI);
  for (let y = 0; y < size; y++) {
    for (let x = 0; x < size; x++) {
      let wave = Math.sin(x * c + y * s + phase);
      if (checker) wave *= Math.sin(-x * s + y * c + phase);
      mix(out, (y * size + x) * 3, a, b, 0.5 + 0.5 * wave);
    }
  }
};

/** The patterns, in the order image indices cycle through them. */
export const PATTERNS = [
  "linear-gradient",
  "blobs",
  "value-noise",
  "radial-gradient",
  "stripes",
  "pixel-noise",
] as const;
const PAINTERS: readonly Painter[] = [
  linearGradient,
  blobs,
  valueNoise,
  radialGradient,
  stripes,
  pixelNoise,
];

/**
 * Image `index` of the set named by `seed`: pattern `index % PATTERNS.length`, plus a little
 * sensor-like noise. The same (seed, index) always gives the same bytes.
 */
export function syntheticImage(seed: number, index: number, size = 224): Uint8Array {
  const rng = streamFor(seed, `synthetic-image-${index}`);
  const pixels = new Float32Array(size * size * 3);
  PAINTERS[index % PAINTERS.length]!(rng, size, pixels);
  const grain = rng.range(0, 8);
  // A clamped array rounds and clamps to 0..255 on assignment.
  const out = new Uint8ClampedArray(pixels.length);
  for (let i = 0; i < pixels.length; i++) out[i] = pixels[i]! + grain * (rng.uniform() - 0.5);
  return new Uint8Array(out.buffer);
}

/** `count` images (indices start..start+count-1) packed back to back, NHWC. */
export function syntheticBatch(seed: number, count: number, start = 0, size = 224): Uint8Array {
  const bytes = size * size * 3;
  const batch = new Uint8Array(count * bytes);
  for (let i = 0; i < count; i++) batch.set(syntheticImage(seed, start + i, size), i * bytes);
  return batch;
}
