/** The ingest CLIs as child processes for tests (spawned with this Node, output collected, stopped by handle), a photo library generated on disk (distinct scenes, EXIF orientation twins, copies, files whose extension lies, non-images, links that loop or dangle), and the database read from outside. */
import { type ChildProcess, spawn } from "node:child_process";
import { mkdirSync, symlinkSync, writeFileSync } from "node:fs";
import { join, resolve } from "node:path";
import { DatabaseSync } from "node:sqlite";
import sharp from "sharp";
import { addGrain, photoPixels } from "./images.ts";
import { ROOT, track } from "./processes.ts";

export const INGEST = resolve(ROOT, "ingest/cli/ingest.ts");
export const DUPLICATES = resolve(ROOT, "ingest/cli/duplicates.ts");

export interface CliRun {
  readonly child: ChildProcess;
  /** Everything written so far. */
  stdout(): string;
  stderr(): string;
  readonly exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
}

/**
 * Starts `node script ...args` (or, for a script that is not a .ts file, `script ...args`: e.g.
 * setpriv wrapping node); killed if the test process exits first.
 */
export function startCli(
  script: string,
  args: readonly string[],
  env: NodeJS.ProcessEnv = {},
): CliRun {
  const [cmd, argv] = script.endsWith(".ts")
    ? [process.execPath, [script, ...args]]
    : [script, [...args]];
  const child = track(
    spawn(cmd, argv, {
      cwd: ROOT,
      env: { ...process.env, ...env },
      stdio: ["ignore", "pipe", "pipe"],
    }),
  );
  let out = "";
  let err = "";
  child.stdout!.setEncoding("utf8").on("data", (c: string) => (out += c));
  child.stderr!.setEncoding("utf8").on("data", (c: string) => (err += c));
  const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((done) =>
    child.once("close", (code, signal) => done({ code, signal })),
  );
  return { child, stdout: () => out, stderr: () => err, exited };
}

/** Runs a CLI to its end. */
export async function runCli(script: string, args: readonly string[], env: NodeJS.ProcessEnv = {}) {
  const run = startCli(script, args, env);
  const { code } = await run.exited;
  return { code, stdout: run.stdout(), stderr: run.stderr() };
}

/** Rows of the results database, read by a separate connection (WAL lets it read while the CLI writes). */
export function dbRows(path: string): {
  path: string;
  sha256: string | null;
  model: string | null;
  model_version: string | null;
  has_vector: number;
  error_code: string | null;
  error_message: string | null;
  source: string | null;
  mtime_ms: number;
}[] {
  const db = new DatabaseSync(path, { readOnly: true });
  try {
    return db
      .prepare(
        "SELECT path, sha256, model, model_version, vector IS NOT NULL AS has_vector, error_code, error_message, source, mtime_ms FROM photos ORDER BY path",
      )
      .all() as ReturnType<typeof dbRows>;
  } finally {
    db.close();
  }
}

export function integrity(path: string): string {
  const db = new DatabaseSync(path, { readOnly: true });
  try {
    return (db.prepare("PRAGMA integrity_check").get() as { integrity_check: string })
      .integrity_check;
  } finally {
    db.close();
  }
}

const W = 480;
const H = 360;

/** A grainy seeded scene, its raw pixels (distinct seeds are distinct photos to any model). */
export function scene(seed: number): {
  px: Buffer;
  raw: { raw: { width: number; height: number; channels: 3 } };
} {
  return {
    px: addGrain(photoPixels(W, H, seed), seed * 7 + 1, 10),
    raw: { raw: { width: W, height: H, channels: 3 } },
  };
}

/**
 * The same picture stored rotated with the EXIF orientation that turns it back (3: 180°, 6: stored
 * rotated 90° anticlockwise, 8: 90° clockwise): a viewer, and the gpu-node, show all alike.
 */
export async function orientationTwin(seed: number, orientation: 1 | 3 | 6 | 8): Promise<Buffer> {
  const { px, raw } = scene(seed);
  const angle = { 1: 0, 3: 180, 6: -90, 8: 90 }[orientation];
  return sharp(px, raw)
    .rotate(angle)
    .jpeg({ quality: 90 })
    .withMetadata({ orientation })
    .toBuffer();
}

export interface Library {
  readonly dir: string;
  /** Files that are photos, by path relative to dir. */
  readonly photos: readonly string[];
  /** Regular files that are not photos. */
  readonly notPhotos: readonly string[];
}

/**
 * `scenes` distinct photos s<seed>.jpg; orientation twins of scene 1; a byte copy of scene 2 in a
 * subfolder; a PNG named .jpg, a WebP without extension and a TIFF; a text file, a text file
 * named .jpg; a symlink loop and a dangling link.
 */
export async function writeLibrary(dir: string, scenes = 6): Promise<Library> {
  mkdirSync(join(dir, "sub"), { recursive: true });
  const photos: string[] = [];
  const put = (name: string, data: Buffer | string) => {
    writeFileSync(join(dir, name), data);
    return name;
  };
  for (let s = 1; s <= scenes; s++) {
    const { px, raw } = scene(s);
    photos.push(put(`s${s}.jpg`, await sharp(px, raw).jpeg({ quality: 90 }).toBuffer()));
  }
  for (const o of [3, 6, 8] as const)
    photos.push(put(`s1-orientation${o}.jpg`, await orientationTwin(1, o)));
  const { px: p2, raw } = scene(2);
  photos.push(put("sub/s2-copy.jpg", await sharp(p2, raw).jpeg({ quality: 90 }).toBuffer()));
  const extra = (seed: number) => sharp(scene(seed).px, scene(seed).raw);
  photos.push(put("s101-png-named.jpg", await extra(101).png().toBuffer()));
  photos.push(put("s102-webp-no-extension", await extra(102).webp().toBuffer()));
  photos.push(put("s103.tiff", await extra(103).tiff().toBuffer()));
  const notPhotos = [
    put("notes.txt", "a shopping list\n"),
    put("sub/fake.jpg", "not a jpeg at all\n"),
  ];
  symlinkSync(dir, join(dir, "sub/loop"));
  symlinkSync(join(dir, "nowhere.jpg"), join(dir, "dangling.jpg"));
  return { dir, photos: photos.sort(), notPhotos };
}
