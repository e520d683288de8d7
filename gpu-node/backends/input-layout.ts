/** Reads a model's input declaration (type and shape) and tells which tensor layout it takes. */
import { INPUT_SIZE, type InputLayout } from "./backend.ts";

/**
 * UINT8 [N,224,224,3] (normalisation inside the graph) or FP32 [N,3,224,224] (normalised by
 * us). Symbolic or -1 dimensions are accepted for the batch only.
 */
export function detectLayout(
  inputName: string,
  type: string,
  shape: readonly (number | string | bigint)[],
): InputLayout {
  const dims = shape.map((d) => (typeof d === "bigint" ? Number(d) : d));
  const is = (want: number[]) =>
    dims.length === 4 && want.every((w, i) => (i === 0 ? true : dims[i] === w));
  const t = type.toLowerCase();
  if ((t === "uint8" || t === "type_uint8") && is([0, INPUT_SIZE, INPUT_SIZE, 3])) {
    return "uint8-nhwc";
  }
  if (
    (t === "float32" || t === "fp32" || t === "type_fp32") &&
    is([0, 3, INPUT_SIZE, INPUT_SIZE])
  ) {
    return "float32-nchw";
  }
  throw new Error(
    `model input '${inputName}' is ${type} [${dims.join(",")}]; expected UINT8 [N,${INPUT_SIZE},${INPUT_SIZE},3] or FP32 [N,3,${INPUT_SIZE},${INPUT_SIZE}]`,
  );
}
