// An ONNX Runtime session on a worker thread: the same vectors as on the main thread, the main
// thread free while it runs, ONNX Runtime's own errors, and a released session that refuses work.
import { stat } from "node:fs";
import { createRequire } from "node:module";
import { tmpdir } from "node:os";
import { join } from "node:path";
import * as ort from "onnxruntime-node";
import { beforeAll, describe, expect, it } from "vitest";
import { ensureModel } from "../model/index.ts";
import { IMAGE_BYTES } from "./backend.ts";
import { openSessionOnThread } from "./ort-thread.ts";

const ORT = createRequire(import.meta.url).resolve("onnxruntime-node");
const OPTIONS = { executionProviders: ["cpu"], intraOpNumThreads: 1 };
let modelPath: string;

beforeAll(async () => {
  modelPath = (await ensureModel("vit-tiny", join(tmpdir(), "gpu-node-ort-test-cache"))).path;
});

const input = (count: number) => {
  const data = new Uint8Array(count * IMAGE_BYTES);
  for (let i = 0; i < data.length; i++) data[i] = (i * 7919) & 255;
  return new ort.Tensor("uint8", data, [count, 224, 224, 3]);
};

describe("a session on a worker thread", () => {
  it("gives the main-thread session's vectors, and the event loop turns while it runs", async () => {
    const here = await ort.InferenceSession.create(modelPath, OPTIONS);
    const there = await openSessionOnThread(ORT, modelPath, OPTIONS);
    expect(there.inputNames).toEqual(here.inputNames);
    expect(there.inputMetadata[0]).toMatchObject({ isTensor: true, type: "uint8" });
    const feeds = { [here.inputNames[0]!]: input(4) };
    const want = (await here.run(feeds))[here.outputNames[0]!]!.data as Float32Array;
    const got = (await there.run(feeds, there.outputNames))[there.outputNames[0]!]!.data;
    expect(got).toBeInstanceOf(Float32Array);
    expect(Array.from(got as Float32Array)).toEqual(Array.from(want));

    // The loop must turn at least twice before the reply. The main-thread session turns it once:
    // onnxruntime-node defers its run to the next turn, then holds the thread for the whole run.
    // Counting on the thread from an I/O callback puts the first turn before the loop can poll
    // for the reply; the second needs the thread's 32-image run (tens of ms) to outlast one turn
    // of an idle loop. (A 1 ms timer raced the reply on a loaded CI machine.)
    const batch = { [here.inputNames[0]!]: input(32) };
    await new Promise((done) => stat(".", done));
    let turns = 0;
    const tick = () => {
      if (++turns < 2) setImmediate(tick);
    };
    setImmediate(tick);
    await there.run(batch, there.outputNames);
    expect(turns).toBe(2);
    await Promise.all([here.release(), there.release()]);
  });

  it("passes on ONNX Runtime's errors and refuses work once released", async () => {
    await expect(openSessionOnThread(ORT, "/nonexistent/model.onnx", OPTIONS)).rejects.toThrow(
      /nonexistent|No such file|Load model/i,
    );
    const there = await openSessionOnThread(ORT, modelPath, OPTIONS);
    await expect(
      there.run(
        { [there.inputNames[0]!]: new ort.Tensor("uint8", new Uint8Array(3), [1, 1, 1, 3]) },
        there.outputNames,
      ),
    ).rejects.toThrow();
    await there.release();
    await expect(
      there.run({ [there.inputNames[0]!]: input(1) }, there.outputNames),
    ).rejects.toThrow(/released/);
  });
});
