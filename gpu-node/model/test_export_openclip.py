"""Tests of export_openclip.py's wrapping logic on small stand-in modules (no open_clip, no weights).

Run with Debian's torch: /usr/bin/python3 -m unittest gpu-node/model/test_export_openclip.py
With EXPORT_TEST_DIR set, the export test leaves model.onnx, input.bin and expected.bin there for
the TypeScript side to run in onnxruntime-node (export-openclip.test.ts).
"""

import os
import sys
import tempfile
import unittest
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
import export_openclip as ex  # noqa: E402


class QuickGELU(torch.nn.Module):
    """Named like open_clip's, which is how the activation check recognises it."""

    def forward(self, x):
        return x * torch.sigmoid(1.702 * x)


def stand_in_visual(activation: torch.nn.Module, dim: int = 512) -> torch.nn.Module:
    """A tiny image tower with the same interface: normalised FP32 NCHW in, [N, dim] out."""
    torch.manual_seed(0)
    return torch.nn.Sequential(
        torch.nn.Conv2d(3, 8, kernel_size=32, stride=32, bias=False),
        activation,
        torch.nn.Flatten(),
        torch.nn.Linear(8 * 7 * 7, dim),
    ).eval()


class HalfFriendlyVisual(torch.nn.Module):
    """A stand-in tower for the fp16 tests, made of ops that torch runs in half on the CPU even
    where it has no CPU half kernels for Conv2d, Linear or GELU (Debian's torch 1.13): patch
    means, then a projection written as multiply-and-sum, then a polynomial nonlinearity."""

    def __init__(self, dim: int = 512):
        super().__init__()
        g = torch.Generator().manual_seed(0)
        self.proj = torch.nn.Parameter(torch.randn(3 * 7 * 7, dim, generator=g) / 12)
        self.bias = torch.nn.Parameter(torch.randn(dim, generator=g) * 0.1)

    def forward(self, x):
        patches = x.reshape(-1, 3, 7, 32, 7, 32).mean(dim=(3, 5)).reshape(-1, 3 * 7 * 7, 1)
        y = (patches * self.proj).sum(dim=1) + self.bias
        return y * (1 + 0.1 * y * y)


def row_cosines(a: torch.Tensor, b: torch.Tensor) -> list[float]:
    a, b = a.double(), b.double()
    return (a * b).sum(-1).div(a.norm(dim=-1) * b.norm(dim=-1)).tolist()


class ToTensor:
    def __call__(self, img):
        return torch.from_numpy(np.asarray(img, dtype=np.float32) / 255.0).permute(2, 0, 1)


class Normalize:
    def __init__(self, mean, std):
        self.mean = torch.tensor(mean).view(3, 1, 1)
        self.std = torch.tensor(std).view(3, 1, 1)

    def __call__(self, t):
        return (t - self.mean) / self.std


class CentreCrop:
    def __call__(self, img):
        w, h = img.size
        left, top = (w - 224) // 2, (h - 224) // 2
        return img.crop((left, top, left + 224, top + 224))


class Compose:
    """open_clip's preprocess shape: crop, ToTensor, Normalize."""

    def __init__(self):
        self.transforms = [CentreCrop(), ToTensor(), Normalize(ex.CLIP_MEAN, ex.CLIP_STD)]

    def __call__(self, img):
        for t in self.transforms:
            img = t(img)
        return img


def random_uint8(n: int, seed: int = 1) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.randint(0, 256, (n, 224, 224, 3), dtype=torch.uint8, generator=g)


class WrapperTest(unittest.TestCase):
    def test_normalises_inside_like_open_clip_then_l2_normalises(self):
        visual = stand_in_visual(torch.nn.GELU())
        wrapper = ex.Uint8NhwcEncoder(visual).eval()
        x = random_uint8(3)
        mean = torch.tensor(ex.CLIP_MEAN).view(1, 3, 1, 1)
        std = torch.tensor(ex.CLIP_STD).view(1, 3, 1, 1)
        with torch.no_grad():
            expected = visual((x.permute(0, 3, 1, 2).float() / 255 - mean) / std)
            expected = expected / expected.norm(dim=-1, keepdim=True)
            got = wrapper(x)
        self.assertEqual(tuple(got.shape), (3, 512))
        self.assertLess(float((got - expected).abs().max()), 1e-6)
        self.assertTrue(torch.allclose(got.norm(dim=-1), torch.ones(3), atol=1e-6))

    def test_channel_order_matters(self):
        # A wrapper that forgot the NHWC→NCHW transpose (or swapped RGB) would not pass this.
        wrapper = ex.Uint8NhwcEncoder(stand_in_visual(torch.nn.GELU())).eval()
        x = random_uint8(1, seed=2)
        with torch.no_grad():
            a = wrapper(x)
            b = wrapper(x.flip(-1).contiguous())
        self.assertGreater(float((a - b).abs().max()), 1e-3)

    def test_takes_the_first_output_of_a_tuple(self):
        class Tokens(torch.nn.Module):
            def __init__(self):
                super().__init__()
                self.inner = stand_in_visual(torch.nn.GELU())

            def forward(self, x):
                return self.inner(x), torch.zeros(1)

        out = ex.Uint8NhwcEncoder(Tokens()).eval()(random_uint8(2))
        self.assertEqual(tuple(out.shape), (2, 512))


class HalfPrecisionTest(unittest.TestCase):
    def test_fp16_keeps_uint8_in_and_fp32_out_and_stays_close_to_fp32(self):
        visual = HalfFriendlyVisual().eval()
        full = ex.Uint8NhwcEncoder(visual).eval()
        half = ex.Uint8NhwcEncoder(visual, precision="fp16").eval()
        self.assertEqual(half.visual.proj.dtype, torch.float16)
        # The caller's module (open_clip's reference in main) is not converted under it.
        self.assertEqual(visual.proj.dtype, torch.float32)
        self.assertEqual(half.mean_255.dtype, torch.float32)
        x = random_uint8(4, seed=3)
        with torch.no_grad():
            a, b = full(x), half(x)
        self.assertEqual(b.dtype, torch.float32)
        self.assertEqual(tuple(b.shape), (4, 512))
        self.assertTrue(torch.allclose(b.norm(dim=-1), torch.ones(4), atol=1e-6))
        cosines = row_cosines(a, b)
        self.assertGreaterEqual(min(cosines), 0.999)
        self.assertLess(min(cosines), 1 - 1e-7)  # it did compute in half

    def test_refuses_an_unknown_precision(self):
        with self.assertRaisesRegex(ValueError, "precision"):
            ex.Uint8NhwcEncoder(HalfFriendlyVisual(), precision="bf16")

    def test_help_documents_the_precision(self):
        import contextlib
        import io

        out = io.StringIO()
        with contextlib.redirect_stdout(out), self.assertRaises(SystemExit):
            ex.main(["--help"])
        self.assertIn("--precision {fp32,fp16}", out.getvalue())
        self.assertIn("--min-cosine", out.getvalue())


class ActivationTest(unittest.TestCase):
    def test_refuses_openai_weights_without_quickgelu(self):
        with self.assertRaisesRegex(ex.ActivationMismatch, "trained with QuickGELU.*ViT-B-32-quickgelu"):
            ex.check_activation("ViT-B-32", "openai", stand_in_visual(torch.nn.GELU()))

    def test_accepts_matching_activations(self):
        ex.check_activation("ViT-B-32", "openai", stand_in_visual(QuickGELU()))
        ex.check_activation("ViT-B-32-quickgelu", "metaclip_400m", stand_in_visual(QuickGELU()))
        ex.check_activation("ViT-B-32", "laion2b_s34b_b79k", stand_in_visual(torch.nn.GELU()))
        ex.check_activation("ViT-B-32", "laion400m_e32", stand_in_visual(QuickGELU()), {"quick_gelu": True})

    def test_refuses_quickgelu_with_gelu_weights(self):
        with self.assertRaisesRegex(ex.ActivationMismatch, "trained with GELU"):
            ex.check_activation("ViT-B-32", "laion2b_s34b_b79k", stand_in_visual(QuickGELU()))


class ExportTest(unittest.TestCase):
    def test_exports_uint8_nhwc_with_dynamic_batch(self):
        out_dir = Path(os.environ.get("EXPORT_TEST_DIR") or tempfile.mkdtemp())
        wrapper = ex.Uint8NhwcEncoder(stand_in_visual(QuickGELU())).eval()
        path = out_dir / "model.onnx"
        ex.export_onnx(wrapper, path)
        import onnx

        model = onnx.load(str(path))
        onnx.checker.check_model(model)
        (inp,) = model.graph.input
        self.assertEqual(inp.name, "image")
        self.assertEqual(inp.type.tensor_type.elem_type, onnx.TensorProto.UINT8)
        dims = [d.dim_param or d.dim_value for d in inp.type.tensor_type.shape.dim]
        self.assertEqual(dims, ["batch", 224, 224, 3])
        self.assertEqual([o.name for o in model.graph.output], ["embedding"])
        # For the TypeScript side: a batch of 3 and what PyTorch says it gives.
        x = random_uint8(3, seed=5)
        with torch.no_grad():
            expected = wrapper(x).numpy().astype("<f4")
        (out_dir / "input.bin").write_bytes(x.numpy().tobytes())
        (out_dir / "expected.bin").write_bytes(expected.tobytes())

    def test_exports_fp16_tower_between_uint8_input_and_fp32_output(self):
        out_dir = Path(os.environ.get("EXPORT_TEST_DIR") or tempfile.mkdtemp())
        visual = HalfFriendlyVisual().eval()
        wrapper = ex.Uint8NhwcEncoder(visual, precision="fp16").eval()
        path = out_dir / "model_fp16.onnx"
        ex.export_onnx(wrapper, path)
        import onnx

        model = onnx.load(str(path))
        onnx.checker.check_model(model)
        (inp,) = model.graph.input
        (out,) = model.graph.output
        self.assertEqual(inp.type.tensor_type.elem_type, onnx.TensorProto.UINT8)
        dims = [d.dim_param or d.dim_value for d in inp.type.tensor_type.shape.dim]
        self.assertEqual(dims, ["batch", 224, 224, 3])
        self.assertEqual(out.type.tensor_type.elem_type, onnx.TensorProto.FLOAT)
        types = {t.name: t.data_type for t in model.graph.initializer}
        # The tower's weights are half; the normalisation constants stay float.
        self.assertIn(onnx.TensorProto.FLOAT16, types.values())
        self.assertEqual(types.get("mean_255"), onnx.TensorProto.FLOAT)
        casts = [
            a.i for n in model.graph.node if n.op_type == "Cast" for a in n.attribute if a.name == "to"
        ]
        self.assertIn(onnx.TensorProto.FLOAT16, casts)
        self.assertEqual(casts[-1], onnx.TensorProto.FLOAT)
        # For the TypeScript side: the same batch through the fp32 wrapper, the reference.
        x = random_uint8(3, seed=5)
        with torch.no_grad():
            reference = ex.Uint8NhwcEncoder(visual).eval()(x).numpy().astype("<f4")
        (out_dir / "input_fp16.bin").write_bytes(x.numpy().tobytes())
        (out_dir / "expected_fp32_of_fp16.bin").write_bytes(reference.tobytes())


class CompareTest(unittest.TestCase):
    def setUp(self):
        self.visual = stand_in_visual(torch.nn.GELU())
        self.preprocess = Compose()
        self.images = list(ex.synthetic_images(3))

    def test_the_wrapper_matches_open_clips_own_path(self):
        wrapper = ex.Uint8NhwcEncoder(self.visual).eval()
        rows = ex.compare(self.images, self.preprocess, self.visual, wrapper, None)
        self.assertEqual(len(rows), 3)
        for r in rows:
            self.assertLess(r["torch_max_abs_diff"], 1e-5)
            self.assertGreater(r["cosine"], 0.99999)

    def test_a_wrong_normalisation_is_caught(self):
        wrong = ex.Uint8NhwcEncoder(self.visual, mean=(0.5, 0.5, 0.5), std=(0.5, 0.5, 0.5)).eval()
        rows = ex.compare(self.images, self.preprocess, self.visual, wrong, None)
        self.assertGreater(max(r["torch_max_abs_diff"] for r in rows), 1e-3)


if __name__ == "__main__":
    unittest.main()
