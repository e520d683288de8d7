"""Independent check of a generated ViT model: onnx.checker plus a float64 numpy forward pass.

Usage: /usr/bin/python3 reference_forward.py MODEL.onnx [IMAGES.bin]

Always runs onnx.checker.check_model(full_check=True). With IMAGES.bin (N x 224x224x3 uint8,
back to back) it also computes the embeddings in numpy, float64, from the weights looked up
by name. The ViT math (preprocessing, patch embedding, attention, QuickGELU, pooling,
projection, calibration) is written out here from OpenCLIP's definition, not by interpreting
the graph's nodes, so it catches a graph that is well-formed but computes the wrong thing.
Prints one JSON object: {"checked": true, "embeddings": [[...], ...]}.
"""

import json
import sys

import numpy as np
import onnx
from onnx import numpy_helper

# OpenCLIP's preprocessing constants, restated here rather than read from the graph.
CLIP_MEAN = np.array([0.48145466, 0.4578275, 0.40821073])
CLIP_STD = np.array([0.26862954, 0.26130258, 0.27577711])
QUICK_GELU_ALPHA = 1.702
IMAGE_SIZE = 224


def layer_norm(x, weights, prefix, eps):
    mean = x.mean(axis=-1, keepdims=True)
    var = ((x - mean) ** 2).mean(axis=-1, keepdims=True)
    return (x - mean) / np.sqrt(var + eps) * weights[prefix + ".weight"] + weights[prefix + ".bias"]


def softmax(x):
    e = np.exp(x - x.max(axis=-1, keepdims=True))
    return e / e.sum(axis=-1, keepdims=True)


def l2_normalise(x):
    return x / np.maximum(np.linalg.norm(x, axis=-1, keepdims=True), 1e-12)


def attention(x, weights, prefix, heads):
    n, length, width = x.shape
    head_dim = width // heads
    # in_proj_weight_t is OpenCLIP's in_proj_weight transposed: [width, 3*width], q|k|v.
    qkv = x @ weights[prefix + ".in_proj_weight_t"] + weights[prefix + ".in_proj_bias"]
    q, k, v = np.split(qkv, 3, axis=-1)

    def by_head(t):
        return t.reshape(n, length, heads, head_dim).transpose(0, 2, 1, 3)

    q, k, v = by_head(q), by_head(k), by_head(v)
    probs = softmax(q @ k.transpose(0, 1, 3, 2) / np.sqrt(head_dim))
    ctx = (probs @ v).transpose(0, 2, 1, 3).reshape(n, length, width)
    return ctx @ weights[prefix + ".out_proj.weight_t"] + weights[prefix + ".out_proj.bias"]


def mlp(x, weights, prefix):
    h = x @ weights[prefix + ".c_fc.weight_t"] + weights[prefix + ".c_fc.bias"]
    h = h / (1 + np.exp(-QUICK_GELU_ALPHA * h))  # QuickGELU: h * sigmoid(1.702 h)
    return h @ weights[prefix + ".c_proj.weight_t"] + weights[prefix + ".c_proj.bias"]


def forward(images, weights, heads, eps):
    """images: uint8 [N, 224, 224, 3] RGB. Returns float64 [N, output_dim]."""
    n = images.shape[0]
    x = (images.astype(np.float64) / 255.0 - CLIP_MEAN) / CLIP_STD  # NHWC

    # Patch embedding as a matrix product: each patch flattened in the conv weight's
    # (channel, row, column) order.
    conv = weights["visual.conv1.weight"]  # [width, 3, patch, patch]
    width, _, patch, _ = conv.shape
    grid = IMAGE_SIZE // patch
    patches = (
        x.reshape(n, grid, patch, grid, patch, 3)
        .transpose(0, 1, 3, 5, 2, 4)
        .reshape(n, grid * grid, 3 * patch * patch)
    )
    tokens = patches @ conv.reshape(width, -1).T

    cls = np.broadcast_to(weights["visual.class_embedding"], (n, 1, width))
    x = np.concatenate([cls, tokens], axis=1) + weights["visual.positional_embedding"]
    x = layer_norm(x, weights, "visual.ln_pre", eps)

    layer = 0
    while f"visual.transformer.resblocks.{layer}.ln_1.weight" in weights:
        prefix = f"visual.transformer.resblocks.{layer}"
        x = x + attention(layer_norm(x, weights, prefix + ".ln_1", eps), weights, prefix + ".attn", heads)
        x = x + mlp(layer_norm(x, weights, prefix + ".ln_2", eps), weights, prefix + ".mlp")
        layer += 1
    if layer == 0:
        raise SystemExit("no residual blocks found: not a generated ViT model?")

    # OpenCLIP: ln_post over all tokens, then take the class token, then project.
    pooled = layer_norm(x, weights, "visual.ln_post", eps)[:, 0]
    embedding = l2_normalise(pooled @ weights["visual.proj"])
    if "calibration.centre" in weights:
        embedding = l2_normalise(embedding - weights["calibration.centre"])
    return embedding


def main(argv):
    if len(argv) not in (2, 3):
        raise SystemExit(__doc__)
    model = onnx.load(argv[1])
    # Check the loaded proto, not the path: onnx 1.12's check_model(path, full_check=True)
    # writes the shape-inferred model back over the file.
    onnx.checker.check_model(model, full_check=True)
    result = {"checked": True}
    if len(argv) == 3:
        weights = {
            t.name: numpy_helper.to_array(t).astype(np.float64)
            for t in model.graph.initializer
            if t.data_type == onnx.TensorProto.FLOAT
        }
        meta = {p.key: p.value for p in model.metadata_props}
        # The head count is the one hyperparameter the weight shapes cannot tell.
        heads = int(meta["vit.heads"])
        eps = float(meta.get("vit.ln_epsilon", "1e-5"))
        raw = np.fromfile(argv[2], dtype=np.uint8)
        images = raw.reshape(-1, IMAGE_SIZE, IMAGE_SIZE, 3)
        result["embeddings"] = forward(images, weights, heads, eps).tolist()
    json.dump(result, sys.stdout)
    sys.stdout.write("\n")


if __name__ == "__main__":
    main(sys.argv)
