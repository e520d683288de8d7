/** Folders and files named on the command line in; every regular file under them out (sorted, absolute paths, with size and mtime), plus a plain-words problem for each path that cannot be walked: unreadable folders, broken links, symlink loops, special files. */
import type { Dirent, Stats } from "node:fs";
import { lstat, readdir, stat } from "node:fs/promises";
import { join, resolve } from "node:path";

export interface FileEntry {
  readonly path: string;
  readonly size: number;
  readonly mtimeMs: number;
}

export interface WalkProblem {
  readonly path: string;
  readonly message: string;
}

export type Walked = { readonly file: FileEntry } | { readonly problem: WalkProblem };

export interface WalkOptions {
  /** Follow links to folders and files (loops detected by device and inode). */
  readonly followSymlinks: boolean;
  /** Absolute paths left out silently (the run's own database files, when inside a root). */
  readonly skip?: ReadonlySet<string>;
}

/** An fs error in words a user can act on; the code stays visible for searching. */
export function describeFsError(error: unknown): string {
  const code = (error as NodeJS.ErrnoException).code;
  switch (code) {
    case "ENOENT":
      return "does not exist (a broken link, or removed while walking)";
    case "EACCES":
    case "EPERM":
      return `permission denied (${code})`;
    case "ELOOP":
      return "symlink loop: the link points back to itself (ELOOP)";
    case "EIO":
      return "I/O error reading it (EIO): a failing disk or a dropped network mount?";
    case "ENAMETOOLONG":
      return "path too long (ENAMETOOLONG)";
    default:
      return error instanceof Error ? error.message : String(error);
  }
}

const key = (s: Stats) => `${s.dev}:${s.ino}`;

/**
 * Walks depth first. A folder whose device and inode is already on the way down is a symlink
 * loop; one seen before elsewhere (two links to one folder) is walked once, so that its photos
 * are not listed twice under different paths.
 */
export async function* walk(roots: readonly string[], opts: WalkOptions): AsyncGenerator<Walked> {
  const seenDirs = new Map<string, string>();
  for (const root of roots) {
    const path = resolve(root);
    let st: Stats;
    try {
      st = await stat(path);
    } catch (error) {
      yield { problem: { path, message: describeFsError(error) } };
      continue;
    }
    if (st.isDirectory()) yield* walkDir(path, st, [], seenDirs, opts);
    else yield classify(path, st);
  }
}

function classify(path: string, st: Stats): Walked {
  if (st.isFile()) return { file: { path, size: st.size, mtimeMs: st.mtimeMs } };
  const what = st.isFIFO()
    ? "a named pipe"
    : st.isSocket()
      ? "a socket"
      : st.isCharacterDevice() || st.isBlockDevice()
        ? "a device"
        : "not a regular file";
  return { problem: { path, message: `skipped: ${what}, not a photo file` } };
}

async function* walkDir(
  dir: string,
  st: Stats,
  ancestors: readonly string[],
  seenDirs: Map<string, string>,
  opts: WalkOptions,
): AsyncGenerator<Walked> {
  const id = key(st);
  if (ancestors.includes(id)) {
    yield {
      problem: {
        path: dir,
        message: "symlink loop: this link leads back to a folder above it (skipped)",
      },
    };
    return;
  }
  const earlier = seenDirs.get(id);
  if (earlier !== undefined) {
    yield {
      problem: { path: dir, message: `skipped: the same folder as ${earlier}, already walked` },
    };
    return;
  }
  seenDirs.set(id, dir);
  let entries: Dirent[];
  try {
    entries = await readdir(dir, { withFileTypes: true });
  } catch (error) {
    yield { problem: { path: dir, message: `folder not readable: ${describeFsError(error)}` } };
    return;
  }
  entries.sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
  const below = [...ancestors, id];
  for (const entry of entries) {
    const path = join(dir, entry.name);
    if (opts.skip?.has(path)) continue;
    if (entry.isSymbolicLink() && !opts.followSymlinks) continue;
    let child: Stats;
    try {
      // stat follows links (ELOOP for a link to itself); lstat is enough for everything else.
      child = entry.isSymbolicLink() ? await stat(path) : await lstat(path);
    } catch (error) {
      yield { problem: { path, message: describeFsError(error) } };
      continue;
    }
    if (child.isDirectory()) yield* walkDir(path, child, below, seenDirs, opts);
    else yield classify(path, child);
  }
}
