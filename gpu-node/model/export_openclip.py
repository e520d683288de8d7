#!/usr/bin/env python3
"""Exports OpenCLIP's image tower to ONNX for the gpu-node's Triton model repository.

The exported graph takes what the gpu-node sends: UINT8 [N,224,224,3] (RGB, the 224x224 centre
crop), normalises it inside the graph with OpenCLIP's mean/std, runs the visual tower and returns
the L2-normalised FP32 embedding [N,512]. Input `image`, output `embedding`, dynamic batch.

Run it on the GPU host (real weights cannot be fetched where this project is developed):

    pip install torch open_clip_torch pillow onnx onnxruntime   # onnxruntime: for the check
    python3 gpu-node/model/export_openclip.py \\
        --model ViT-B-32 --pretrained laion2b_s34b_b79k \\
        --check-images photo1.jpg photo2.jpg photo3.jpg

It writes gpu-node/model/triton/model_repository/openclip_vit_b32_uint8/1/model.onnx (beside the
committed config.pbtxt), then checks the export against open_clip's own preprocessing and
encode_image on the given images (or synthetic ones): the wrapper in PyTorch and the ONNX file in
ONNX Runtime must agree with open_clip to --tolerance. It refuses weights whose activation does
not match the model (the `openai` weights need QuickGELU: use ViT-B-32-quickgelu, or open_clip's
openai loader, which builds it with QuickGELU).

--precision fp16 exports the visual tower in half precision (weights and arithmetic) between
the same ends: the UINT8 input is normalised in FP32 and cast to FP16 for the tower, whose output
is cast back to FP32 for the L2 normalisation (whose epsilon would underflow in half), so the
input and output types, and the Triton config, are the fp32 export's. It is meant for GPUs
(ONNX Runtime's CPU provider runs it through casts to float). Its default --out is
openclip_vit_b32_uint8_fp16/1/model.onnx (copy the fp32 config.pbtxt beside it, with that name),
and its check compares with open_clip's FP32 path by cosine (at least --min-cosine per image)
instead of --tolerance: half precision moves single values by ~1e-3.
"""

from __future__ import annotations

import argparse
import copy
import inspect
import os
import sys
from pathlib import Path
from typing import Callable, Iterable, Sequence

import numpy as np
import torch

CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)
INPUT_NAME = "image"
OUTPUT_NAME = "embedding"
SIZE = 224
REPO = Path(__file__).resolve().parents[1] / "triton" / "model_repository"
DEFAULT_OUT = REPO / "openclip_vit_b32_uint8" / "1" / "model.onnx"
DEFAULT_OUT_FP16 = REPO / "openclip_vit_b32_uint8_fp16" / "1" / "model.onnx"
PRECISIONS = ("fp32", "fp16")


class Uint8NhwcEncoder(torch.nn.Module):
    """UINT8 [N,H,W,3] → L2-normalised FP32 embedding, OpenCLIP's normalisation inside the graph.

    precision="fp16": the tower runs on a half-precision copy of `visual` (the caller's module,
    often open_clip's reference, is left as it is), between a cast to FP16 after the FP32
    normalisation and a cast back to FP32 before the L2 normalisation.
    """

    def __init__(
        self,
        visual: torch.nn.Module,
        mean: Sequence[float] = CLIP_MEAN,
        std: Sequence[float] = CLIP_STD,
        precision: str = "fp32",
    ) -> None:
        super().__init__()
        if precision not in PRECISIONS:
            raise ValueError(f"precision must be one of {PRECISIONS}, got {precision!r}")
        self.half = precision == "fp16"
        self.visual = copy.deepcopy(visual).half() if self.half else visual
        # (x/255 - mean)/std == (x - 255*mean) * 1/(255*std): one Sub and one Mul in the graph.
        self.register_buffer("mean_255", torch.tensor(mean, dtype=torch.float32).view(1, 3, 1, 1) * 255)
        self.register_buffer(
            "inv_std_255", 1.0 / (torch.tensor(std, dtype=torch.float32).view(1, 3, 1, 1) * 255)
        )

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        # Transpose the uint8 tensor before casting: 4x fewer bytes moved than transposing floats.
        x = image.permute(0, 3, 1, 2).to(torch.float32)
        x = (x - self.mean_255) * self.inv_std_255
        if self.half:
            x = x.to(torch.float16)
        y = self.visual(x)
        if isinstance(y, (tuple, list)):  # visual towers built with output_tokens=True
            y = y[0]
        return torch.nn.functional.normalize(y.to(torch.float32), dim=-1)


class ActivationMismatch(Exception):
    """The model's activation is not the one its weights were trained with."""


def uses_quickgelu(module: torch.nn.Module) -> bool:
    return any(type(m).__name__ == "QuickGELU" for m in module.modules())


def expects_quickgelu(model_name: str, pretrained: str, pretrained_cfg: dict | None) -> bool:
    return (
        pretrained.lower() == "openai"
        or model_name.lower().endswith("-quickgelu")
        or bool((pretrained_cfg or {}).get("quick_gelu", False))
    )


def check_activation(
    model_name: str, pretrained: str, visual: torch.nn.Module, pretrained_cfg: dict | None = None
) -> None:
    want = expects_quickgelu(model_name, pretrained, pretrained_cfg)
    have = uses_quickgelu(visual)
    if want and not have:
        raise ActivationMismatch(
            f"'{pretrained}' weights were trained with QuickGELU, but {model_name} is built with GELU: "
            f"its embeddings would be silently wrong. Use {model_name}-quickgelu (or force_quick_gelu=True)."
        )
    if have and not want:
        raise ActivationMismatch(
            f"{model_name} is built with QuickGELU, but '{pretrained}' weights were trained with GELU: "
            f"use the model name without -quickgelu."
        )


def device_of(module: torch.nn.Module) -> torch.device:
    return next(iter(module.buffers()), torch.zeros(0)).device


def export_onnx(wrapper: torch.nn.Module, out: Path, opset: int = 17) -> None:
    """Writes the wrapper as ONNX with a dynamic batch dimension (TorchScript exporter).

    Tracing runs the wrapper once, on the device it is on: an fp16 tower needs one with half
    kernels for its ops (CUDA; or a recent torch's CPU, which older ones such as 1.13 lack).
    """
    out.parent.mkdir(parents=True, exist_ok=True)
    wrapper = wrapper.eval()
    dummy = torch.zeros(2, SIZE, SIZE, 3, dtype=torch.uint8, device=device_of(wrapper))
    kwargs = {}
    if "dynamo" in inspect.signature(torch.onnx.export).parameters:
        kwargs["dynamo"] = False  # newer torch defaults to the dynamo exporter; keep one path
    with torch.no_grad():
        torch.onnx.export(
            wrapper,
            (dummy,),
            str(out),
            input_names=[INPUT_NAME],
            output_names=[OUTPUT_NAME],
            dynamic_axes={INPUT_NAME: {0: "batch"}, OUTPUT_NAME: {0: "batch"}},
            opset_version=opset,
            do_constant_folding=True,
            **kwargs,
        )


def uint8_crop(preprocess: Callable, image) -> np.ndarray:
    """Runs open_clip's preprocessing up to (not including) ToTensor: the 224x224 RGB crop."""
    for t in getattr(preprocess, "transforms", []):
        if type(t).__name__ in ("ToTensor", "Normalize"):
            break
        image = t(image)
    crop = np.asarray(image.convert("RGB") if hasattr(image, "convert") else image, dtype=np.uint8)
    if crop.shape != (SIZE, SIZE, 3):
        raise ValueError(f"preprocessing gave a {crop.shape} crop, expected ({SIZE}, {SIZE}, 3)")
    return crop


def compare(
    images: Iterable,
    preprocess: Callable,
    encode_image: Callable[[torch.Tensor], torch.Tensor],
    wrapper: torch.nn.Module,
    onnx_run: Callable[[np.ndarray], np.ndarray] | None,
) -> list[dict]:
    """Per image: max |diff| of the wrapper (and the ONNX file) against open_clip's own path."""
    rows = []
    device = device_of(wrapper)
    with torch.no_grad():
        for name, image in images:
            ref = torch.nn.functional.normalize(encode_image(preprocess(image).unsqueeze(0)), dim=-1)
            crop = uint8_crop(preprocess, image)[None]
            ours = wrapper(torch.from_numpy(crop.copy()).to(device)).cpu()
            row = {
                "image": name,
                "torch_max_abs_diff": float((ours - ref).abs().max()),
                "cosine": float((ours * ref).sum()),
            }
            if onnx_run is not None:
                got = onnx_run(crop)
                row["onnx_max_abs_diff"] = float(np.abs(got - ref.numpy()).max())
                row["onnx_cosine"] = float((got * ref.numpy()).sum())
            rows.append(row)
    return rows


def synthetic_images(count: int = 4):
    """Smooth gradients and blobs, when the user gives no photos."""
    from PIL import Image

    rng = np.random.default_rng(0)
    for i in range(count):
        h, w = 256 + 16 * i, 320 - 24 * i
        y, x = np.mgrid[0:h, 0:w]
        base = np.stack([x / w, y / h, (x + y) / (w + h)], axis=-1) * 200
        for _ in range(3):
            cy, cx, r = rng.uniform(0, h), rng.uniform(0, w), rng.uniform(20, 90)
            base[(y - cy) ** 2 + (x - cx) ** 2 < r * r] = rng.uniform(0, 255, 3)
        yield f"synthetic-{i}", Image.fromarray(base.clip(0, 255).astype(np.uint8))


def onnx_runner(path: Path) -> Callable[[np.ndarray], np.ndarray] | None:
    try:
        import onnxruntime as ort
    except ImportError:
        print("onnxruntime not installed: the ONNX file is not checked (pip install onnxruntime)")
        return None
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return lambda x: session.run([OUTPUT_NAME], {INPUT_NAME: x})[0]


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", default="ViT-B-32", help="open_clip model name (default ViT-B-32)")
    p.add_argument("--pretrained", default="laion2b_s34b_b79k", help="open_clip pretrained tag")
    p.add_argument(
        "--out",
        type=Path,
        default=None,
        help=f"ONNX file (default {DEFAULT_OUT}, with --precision fp16 {DEFAULT_OUT_FP16})",
    )
    p.add_argument(
        "--precision",
        choices=PRECISIONS,
        default="fp32",
        help="fp32 (default, the reference) or fp16: the visual tower in half precision, "
        "input still UINT8 and output still FP32 (cast at the ends); checked by --min-cosine",
    )
    p.add_argument("--check-images", nargs="*", default=[], help="photos to check the export on")
    p.add_argument(
        "--tolerance", type=float, default=1e-4, help="fp32: max |diff| per value (default 1e-4)"
    )
    p.add_argument(
        "--min-cosine",
        type=float,
        default=0.999,
        help="fp16: least cosine to open_clip's FP32 embedding, per image (default 0.999)",
    )
    p.add_argument("--opset", type=int, default=17)
    args = p.parse_args(argv)
    if args.out is None:
        args.out = DEFAULT_OUT_FP16 if args.precision == "fp16" else DEFAULT_OUT

    import open_clip  # only needed here: the tests use stand-in modules
    from PIL import Image

    model, _, preprocess = open_clip.create_model_and_transforms(args.model, pretrained=args.pretrained)
    model.eval()
    try:
        cfg = open_clip.get_pretrained_cfg(args.model, args.pretrained)
    except Exception:  # older open_clip
        cfg = None
    check_activation(args.model, args.pretrained, model.visual, cfg)
    mean = getattr(model.visual, "image_mean", None) or CLIP_MEAN
    std = getattr(model.visual, "image_std", None) or CLIP_STD
    wrapper = Uint8NhwcEncoder(model.visual, mean, std, args.precision).eval()
    if args.precision == "fp16" and torch.cuda.is_available():
        wrapper = wrapper.to("cuda")  # half kernels for every op; open_clip's reference stays on the CPU
    export_onnx(wrapper, args.out, args.opset)
    print(f"wrote {args.out} ({os.path.getsize(args.out) / 1e6:.1f} MB)")

    images = (
        [(path, Image.open(path)) for path in args.check_images]
        if args.check_images
        else list(synthetic_images())
    )
    rows = compare(images, preprocess, model.encode_image, wrapper, onnx_runner(args.out))
    for r in rows:
        print("  " + "  ".join(f"{k}={v:.6g}" if isinstance(v, float) else f"{k}={v}" for k, v in r.items()))
    if args.precision == "fp16":
        least = min(v for r in rows for k, v in r.items() if k.endswith("cosine"))
        if least < args.min_cosine:
            print(
                f"FAILED: the fp16 export's cosine to open_clip's FP32 path is {least:.6g} < {args.min_cosine}",
                file=sys.stderr,
            )
            return 1
        print(f"ok: fp16 export's cosine to open_clip's FP32 path is at least {least:.6g}")
        return 0
    worst = max(v for r in rows for k, v in r.items() if k.endswith("max_abs_diff"))
    if worst > args.tolerance:
        print(f"FAILED: the export differs from open_clip by {worst:.3g} > {args.tolerance}", file=sys.stderr)
        return 1
    print(f"ok: export matches open_clip within {worst:.3g}")
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except ActivationMismatch as e:
        print(f"refusing to export: {e}", file=sys.stderr)
        sys.exit(2)
