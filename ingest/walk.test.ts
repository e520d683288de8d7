// The walk: every regular file once, in order; loops, broken links, special files and folders
// reached twice are reported in words and skipped, and the walk goes on.
import { execFileSync } from "node:child_process";
import { mkdirSync, mkdtempSync, rmSync, symlinkSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { type Walked, walk } from "./walk.ts";

let root: string;

beforeAll(() => {
  root = mkdtempSync(join(tmpdir(), "ingest-walk-"));
  mkdirSync(join(root, "a/b"), { recursive: true });
  mkdirSync(join(root, "other"));
  writeFileSync(join(root, "a/1.jpg"), "x");
  writeFileSync(join(root, "a/b/2.jpg"), "yy");
  writeFileSync(join(root, "other/3.jpg"), "zzz");
  symlinkSync(join(root, "a"), join(root, "a/b/up")); // a loop: b/up → a, an ancestor
  symlinkSync("self", join(root, "a/self")); // a link to itself: ELOOP
  symlinkSync(join(root, "gone.jpg"), join(root, "a/broken.jpg"));
  symlinkSync(join(root, "other"), join(root, "link-to-other")); // the same folder twice
  execFileSync("mkfifo", [join(root, "a/pipe")]);
});
afterAll(() => rmSync(root, { recursive: true, force: true }));

async function all(roots: string[], followSymlinks = true): Promise<Walked[]> {
  const out: Walked[] = [];
  for await (const w of walk(roots, { followSymlinks })) out.push(w);
  return out;
}

const files = (ws: Walked[]) => ws.flatMap((w) => ("file" in w ? [w.file.path] : []));
const problems = (ws: Walked[]) =>
  Object.fromEntries(
    ws.flatMap((w) => ("problem" in w ? [[w.problem.path, w.problem.message]] : [])),
  );

describe("walk", () => {
  it("lists each regular file once and reports every path it cannot use", async () => {
    const ws = await all([root]);
    expect(files(ws).map((p) => p.slice(root.length + 1))).toEqual([
      "a/1.jpg",
      "a/b/2.jpg",
      "link-to-other/3.jpg",
    ]);
    const p = problems(ws);
    expect(p[join(root, "a/b/up")]).toMatch(/symlink loop/);
    expect(p[join(root, "a/self")]).toMatch(/symlink loop.*ELOOP/);
    expect(p[join(root, "a/broken.jpg")]).toMatch(/does not exist/);
    expect(p[join(root, "a/pipe")]).toMatch(/named pipe/);
    expect(p[join(root, "other")]).toMatch(/same folder as .*link-to-other/);
  });

  it("gives size and mtime, and takes files as well as folders", async () => {
    const ws = await all([join(root, "a/b/2.jpg"), join(root, "missing")]);
    expect("file" in ws[0]! && ws[0].file.size).toBe(2);
    expect(problems(ws)[join(root, "missing")]).toMatch(/does not exist/);
  });

  it("skips every link with followSymlinks off", async () => {
    const ws = await all([root], false);
    expect(files(ws).map((p) => p.slice(root.length + 1))).toEqual([
      "a/1.jpg",
      "a/b/2.jpg",
      "other/3.jpg",
    ]);
    expect(Object.keys(problems(ws))).toEqual([join(root, "a/pipe")]);
  });
});
