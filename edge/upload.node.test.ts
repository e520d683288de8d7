// The seed route's base64 decoding on Node (the Node edge): its Buffer (then atob) and atob.
import { expect, it } from "vitest";
import { base64Cases, bufferCases, runtimeDecoders } from "./testing/base64-cases.ts";
import { nodeBufferBase64 } from "./upload.ts";

it("has Node's Buffer path", () => {
  expect(nodeBufferBase64).toBeDefined();
});
base64Cases(runtimeDecoders());
bufferCases();
