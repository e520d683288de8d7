/** Builds an OpenCLIP-ViT-shaped ONNX graph with seeded weights: UINT8 NHWC in, [N, 512] out. */

import { CLIP_MEAN, CLIP_STD } from "../../imaging/clip.ts";
import { toFloat16 } from "./float16.ts";
import { attr, DataType, GraphBuilder } from "./onnx-builder.ts";
import { streamFor } from "./prng.ts";
import { type Precision, sequenceLength, type VitConfig } from "./vit-config.ts";

export const INPUT_NAME = "image";
export const OUTPUT_NAME = "embedding";
/** The symbolic batch dimension of input and output. */
export const BATCH_DIM = "batch";

/** QuickGELU's constant, x * sigmoid(1.702 x), as in the `openai` CLIP weights. */
const QUICK_GELU_ALPHA = 1.702;
/** Guards the L2 normalisations against a zero vector (as torch's F.normalize does). */
const NORM_EPSILON = 1e-12;

/** A graph up to the unit-length embedding; finish it with one of the two `finish*` calls. */
export interface VitGraph {
  readonly config: VitConfig;
  readonly precision: Precision;
  readonly builder: GraphBuilder;
  /** The L2-normalised, uncentred embedding tensor, [batch, outputDim]. */
  readonly unitEmbedding: string;
}

/**
 * Weight names follow OpenCLIP's state_dict (`visual.*`) so the independent reference
 * (reference_forward.py) can find them. Linear weights are stored transposed, [in, out], for
 * a plain MatMul; those names end in `_t`.
 *
 * `fp16`: the same seeded weights rounded to half. The input normalisation runs in float (it
 * is cheap; its result is rounded to half once, after it); the transformer
 * body, from the patch embedding through the projection, computes in FLOAT16 with FLOAT16
 * initializers; the L2 normalisation (and the calibrated models' centring) runs in float again,
 * where its 1e-12 epsilon does not underflow. Input and output types are those of `fp32`.
 */
export function buildVitGraph(
  config: VitConfig,
  seed: number,
  precision: Precision = "fp32",
): VitGraph {
  const b = new GraphBuilder();
  const w = new Weights(b, seed, precision);
  const { width: d, heads, patchSize: p, imageSize, layers } = config;
  if (d % heads !== 0) throw new Error(`${config.name}: width ${d} not divisible by ${heads}`);
  const seq = sequenceLength(config);

  const image = b.input(INPUT_NAME, DataType.UINT8, [BATCH_DIM, imageSize, imageSize, 3]);

  // Normalisation inside the graph. Transposing the uint8 tensor first moves 4x fewer bytes
  // than transposing floats (measured: +1 ms/image on CPU the other way round).
  const nchw = b.node("Transpose", [image], "pre.nchw", { perm: attr.ints([0, 3, 1, 2]) });
  const floats = b.node("Cast", [nchw], "pre.float", { to: attr.int(DataType.FLOAT) });
  const mean = b.initializer(
    "pre.mean_255",
    Float32Array.from(CLIP_MEAN, (m) => m * 255),
    [1, 3, 1, 1],
  );
  const invStd = b.initializer(
    "pre.inv_std_255",
    Float32Array.from(CLIP_STD, (s) => 1 / (s * 255)),
    [1, 3, 1, 1],
  );
  const centred = b.node("Sub", [floats, mean], "pre.centred");
  const normalised = b.node("Mul", [centred, invStd], "pre.normalised");
  const pixels =
    precision === "fp16"
      ? b.node("Cast", [normalised], "pre.half", { to: attr.int(DataType.FLOAT16) })
      : normalised;

  // Patch embedding: a strided Conv without bias (OpenCLIP's conv1), then [N, patches, D].
  const conv = w.uniform("visual.conv1.weight", [d, 3, p, p], 1 / Math.sqrt(3 * p * p));
  const grid = b.node("Conv", [pixels, conv], "embed.conv", {
    kernel_shape: attr.ints([p, p]),
    strides: attr.ints([p, p]),
  });
  const flat = b.node("Reshape", [grid, w.int64("embed.flat_shape", [0, d, -1])], "embed.flat");
  const patches = b.node("Transpose", [flat], "embed.patches", { perm: attr.ints([0, 2, 1]) });

  // Class token + positional embedding. A zero row padded in front of the patches plus one
  // constant [seq, D] offset (class token folded into row 0) equals OpenCLIP's concat-then-add;
  // the offset is a constant subgraph that onnxruntime folds at load time.
  const scale = d ** -0.5;
  const classEmb = w.uniform("visual.class_embedding", [d], scale);
  const posEmb = w.uniform("visual.positional_embedding", [seq, d], scale);
  const classRow = b.node("Reshape", [classEmb, w.int64("embed.class_shape", [1, d])], "embed.cls");
  const classPadded = b.node(
    "Pad",
    [classRow, w.int64("embed.class_pads", [0, 0, seq - 1, 0])],
    "embed.cls_padded",
  );
  const offset = b.node("Add", [classPadded, posEmb], "embed.token_offset");
  const padded = b.node(
    "Pad",
    [patches, w.int64("embed.token_pads", [0, 1, 0, 0, 0, 0])],
    "embed.tokens_padded",
  );
  const tokens = b.node("Add", [padded, offset], "embed.tokens");
  let x = layerNorm(b, w, config, tokens, "visual.ln_pre");

  for (let i = 0; i < layers; i++) x = residualBlock(b, w, config, x, i);

  // Pool the class token, then ln_post and the projection. (OpenCLIP applies ln_post to all
  // tokens before pooling; LayerNorm is per token, so pooling first is the same and cheaper.)
  const pooled = b.node("Gather", [x, w.int64Scalar("head.class_index", 0)], "head.pooled", {
    axis: attr.int(1),
  });
  const normed = layerNorm(b, w, config, pooled, "visual.ln_post");
  const proj = w.uniform("visual.proj", [d, config.outputDim], scale);
  const projected = b.node("MatMul", [normed, proj], "head.projected");
  const raw =
    precision === "fp16"
      ? b.node("Cast", [projected], "head.projected_float", { to: attr.int(DataType.FLOAT) })
      : projected;
  const unitEmbedding = l2Normalise(b, raw, "head.unit");
  return { config, precision, builder: b, unitEmbedding };
}

/** The plain model: output = the L2-normalised embedding. Works on a fork of the graph. */
export function finishUncalibrated(graph: VitGraph): GraphBuilder {
  const b = graph.builder.clone();
  b.node("Identity", [graph.unitEmbedding], OUTPUT_NAME);
  b.output(OUTPUT_NAME, DataType.FLOAT, [BATCH_DIM, graph.config.outputDim]);
  return b;
}

/**
 * The calibrated model: subtract the centre (the mean unit embedding of a calibration set)
 * and normalise again. Random weights map every photo into a narrow cone; centring spreads
 * them so that cosine similarity between different photos means something.
 */
export function finishCalibrated(graph: VitGraph, centre: Float32Array): GraphBuilder {
  if (centre.length !== graph.config.outputDim) {
    throw new Error(`centre has ${centre.length} values, want ${graph.config.outputDim}`);
  }
  const b = graph.builder.clone();
  const c = b.initializer("calibration.centre", centre, [graph.config.outputDim]);
  const shifted = b.node("Sub", [graph.unitEmbedding, c], "calibration.shifted");
  const unit = l2Normalise(b, shifted, "calibration.unit");
  b.node("Identity", [unit], OUTPUT_NAME);
  b.output(OUTPUT_NAME, DataType.FLOAT, [BATCH_DIM, graph.config.outputDim]);
  return b;
}

function residualBlock(
  b: GraphBuilder,
  w: Weights,
  config: VitConfig,
  input: string,
  index: number,
): string {
  const { width: d, heads, mlpWidth, layers } = config;
  const headDim = d / heads;
  const n = `visual.transformer.resblocks.${index}`;
  const t = `block${index}`;
  // OpenCLIP's init for its (text) transformers, which keeps each branch's share of the
  // residual stream independent of width and depth, with the residual output projections at
  // half its std. That half puts both configs where randomly weighted ViTs were measured to land
  // (median cosine ~0.94 between 24 different real photos, docs/architecture.md#models; here
  // 0.93 tiny, 0.95 b32 on synthetic images),
  // so vit-tiny stands in for vit-b32 in tests. (OpenCLIP's own untrained visual tower uses
  // PyTorch defaults: depth-dependent, 0.84 for tiny but 0.53 for b32.)
  const attnStd = d ** -0.5;
  const projStd = 0.5 * d ** -0.5 * (2 * layers) ** -0.5;
  const fcStd = (2 * d) ** -0.5;
  // Small non-zero biases (OpenCLIP starts them at zero) so the reference test sees them used.
  const biasStd = 0.02;

  // Attention: one fused QKV MatMul, split into heads as [N, H, L, dh].
  const h = layerNorm(b, w, config, input, `${n}.ln_1`);
  const qkvW = w.uniform(`${n}.attn.in_proj_weight_t`, [d, 3 * d], attnStd);
  const qkvB = w.uniform(`${n}.attn.in_proj_bias`, [3 * d], biasStd);
  const qkv = b.node("Add", [b.node("MatMul", [h, qkvW], `${t}.qkv_mm`), qkvB], `${t}.qkv`);
  const split = b.node(
    "Reshape",
    [qkv, w.int64(`${t}.qkv_shape`, [0, 0, 3, heads, headDim])],
    `${t}.qkv_split`,
  );
  const byHead = b.node("Transpose", [split], `${t}.qkv_heads`, {
    perm: attr.ints([2, 0, 3, 1, 4]),
  });
  const pick = (i: number, name: string) =>
    b.node("Gather", [byHead, w.int64Scalar(`${t}.${name}_index`, i)], `${t}.${name}`, {
      axis: attr.int(0),
    });
  const q = pick(0, "q");
  const k = pick(1, "k");
  const v = pick(2, "v");
  // Scale q (as torch's MultiheadAttention does); onnxruntime folds the scalar Mul and the
  // k transpose into one FusedMatMul.
  const qScaled = b.node("Mul", [q, w.scalar(`${t}.attn_scale`, headDim ** -0.5)], `${t}.q_scaled`);
  const kT = b.node("Transpose", [k], `${t}.k_t`, { perm: attr.ints([0, 1, 3, 2]) });
  const scores = b.node("MatMul", [qScaled, kT], `${t}.scores`);
  const probs = b.node("Softmax", [scores], `${t}.probs`, { axis: attr.int(-1) });
  const ctx = b.node("MatMul", [probs, v], `${t}.ctx`);
  const ctxTokens = b.node("Transpose", [ctx], `${t}.ctx_tokens`, {
    perm: attr.ints([0, 2, 1, 3]),
  });
  const merged = b.node(
    "Reshape",
    [ctxTokens, w.int64(`${t}.merge_shape`, [0, 0, d])],
    `${t}.ctx_merged`,
  );
  const outW = w.uniform(`${n}.attn.out_proj.weight_t`, [d, d], projStd);
  const outB = w.uniform(`${n}.attn.out_proj.bias`, [d], biasStd);
  const attnOut = b.node(
    "Add",
    [b.node("MatMul", [merged, outW], `${t}.attn_mm`), outB],
    `${t}.attn_out`,
  );
  const afterAttn = b.node("Add", [input, attnOut], `${t}.resid_1`);

  // MLP with QuickGELU, written as the Mul-Sigmoid-Mul pattern onnxruntime fuses.
  const h2 = layerNorm(b, w, config, afterAttn, `${n}.ln_2`);
  const fcW = w.uniform(`${n}.mlp.c_fc.weight_t`, [d, mlpWidth], fcStd);
  const fcB = w.uniform(`${n}.mlp.c_fc.bias`, [mlpWidth], biasStd);
  const fc = b.node("Add", [b.node("MatMul", [h2, fcW], `${t}.fc_mm`), fcB], `${t}.fc`);
  const alpha = w.scalar(`${t}.gelu_alpha`, QUICK_GELU_ALPHA);
  const gate = b.node("Sigmoid", [b.node("Mul", [fc, alpha], `${t}.gelu_in`)], `${t}.gelu_gate`);
  const act = b.node("Mul", [fc, gate], `${t}.gelu`);
  const projW = w.uniform(`${n}.mlp.c_proj.weight_t`, [mlpWidth, d], projStd);
  const projB = w.uniform(`${n}.mlp.c_proj.bias`, [d], biasStd);
  const mlpOut = b.node(
    "Add",
    [b.node("MatMul", [act, projW], `${t}.proj_mm`), projB],
    `${t}.mlp_out`,
  );
  return b.node("Add", [afterAttn, mlpOut], `${t}.resid_2`);
}

/** LayerNormalization over the last axis with weights `<prefix>.weight` / `<prefix>.bias`. */
function layerNorm(
  b: GraphBuilder,
  w: Weights,
  config: VitConfig,
  input: string,
  prefix: string,
): string {
  // Around OpenCLIP's ones/zeros, perturbed so that a wrong scale or shift shows in the
  // reference comparison.
  const gamma = w.uniform(`${prefix}.weight`, [config.width], 0.1, 1);
  const beta = w.uniform(`${prefix}.bias`, [config.width], 0.02);
  return b.node("LayerNormalization", [input, gamma, beta], `${prefix}.out`, {
    axis: attr.int(-1),
    epsilon: attr.float(config.lnEpsilon),
  });
}

/** x / max(||x||, eps) along the last axis. */
function l2Normalise(b: GraphBuilder, input: string, prefix: string): string {
  const norm = b.node("ReduceL2", [input], `${prefix}.norm`, {
    axes: attr.ints([-1]),
    keepdims: attr.int(1),
  });
  const eps = b.initializer(`${prefix}.eps`, Float32Array.of(NORM_EPSILON), []);
  const safe = b.node("Max", [norm, eps], `${prefix}.safe`);
  return b.node("Div", [input, safe], prefix);
}

/** Seeded weight and constant factory bound to one builder; floats in the body's precision. */
class Weights {
  readonly #b: GraphBuilder;
  readonly #seed: number;
  readonly #half: boolean;

  constructor(b: GraphBuilder, seed: number, precision: Precision) {
    this.#b = b;
    this.#seed = seed;
    this.#half = precision === "fp16";
  }

  #floats(name: string, values: Float32Array, dims: readonly number[]): string {
    return this.#b.initializer(name, this.#half ? toFloat16(values) : values, dims);
  }

  /**
   * Uniform values with the given mean and standard deviation. Uniform rather than normal:
   * it needs no log/sin (bit-identical everywhere) and init only needs the right scale.
   */
  uniform(name: string, dims: readonly number[], std: number, mean = 0): string {
    const count = dims.reduce((a, c) => a * c, 1);
    const values = new Float32Array(count);
    const half = std * Math.sqrt(3);
    streamFor(this.#seed, name).fillUniform(values, mean - half, mean + half);
    return this.#floats(name, values, dims);
  }

  scalar(name: string, value: number): string {
    return this.#floats(name, Float32Array.of(value), []);
  }

  int64(name: string, values: readonly number[]): string {
    return this.#b.initializer(name, BigInt64Array.from(values, BigInt), [values.length]);
  }

  int64Scalar(name: string, value: number): string {
    return this.#b.initializer(name, BigInt64Array.of(BigInt(value)), []);
  }
}
