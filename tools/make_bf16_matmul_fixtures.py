#!/usr/bin/env python3
"""Expected tower outputs under bf16 matmul precision (cpu::matmul_precision::bf16).

glimpse's bf16 matmul precision rounds both inputs of every GEMM to bf16 (round to nearest
even) and sums the products in f32; attention, norms, softmax and residuals stay exact. In the
Qwen towers the GEMMs are the patch embedding (transformers' Conv3d with kernel == stride) and
every nn.Linear (qkv, proj, MLP, mergers); attention is not a GEMM in glimpse and is not
rounded here either.

This script loads the committed tiny checkpoints (tests/data/qwen{2_5,3}_vl_tiny, written by
make_tiny_checkpoints.py) and runs transformers' towers in float64 (the same f64 truth as
there: the float32 casts in RMSNorm and the vision rotary removed) with F.linear and F.conv3d
wrapped to round their input and weight to bf16 first. Output:

  tests/data/bf16_matmul_expected.safetensors
    <family>.hidden.k, <family>.merged.k, qwen3_vl.deepstack.j.k   for every case k of the
    family's *_expected.safetensors (same pixels and grids, read from there)

Run from the repo root:  /work/venv/bin/python tools/make_bf16_matmul_fixtures.py
"""

import os
import sys

import torch
import torch.nn.functional as F
import transformers
from safetensors import safe_open
from transformers import Qwen2_5_VLForConditionalGeneration, Qwen3VLForConditionalGeneration

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import make_tiny_checkpoints as tiny  # noqa: E402
import provenance  # noqa: E402  (the f64-truth patches and the output order)


def rounded(t):
    return t.to(torch.bfloat16).to(t.dtype)


def main():
    tiny.m25.Qwen2_5_VLRMSNorm.forward = tiny._rms_forward
    tiny.m25.apply_rotary_pos_emb_vision = tiny._rotary
    tiny.m3.apply_rotary_pos_emb_vision = tiny._rotary
    linear, conv3d = F.linear, F.conv3d
    F.linear = lambda x, w, b=None: linear(rounded(x), rounded(w), b)
    F.conv3d = lambda x, w, b=None, *a, **k: conv3d(rounded(x), rounded(w), b, *a, **k)

    tensors, meta = {}, {"transformers": transformers.__version__, "torch": torch.__version__,
                         "truth": "float64 forward, F.linear / F.conv3d inputs and weights rounded to bf16"}
    for family, cls, name in (("qwen2_5_vl", Qwen2_5_VLForConditionalGeneration, "qwen2_5_vl_tiny"),
                              ("qwen3_vl", Qwen3VLForConditionalGeneration, "qwen3_vl_tiny")):
        model = cls.from_pretrained(os.path.join(tiny.ROOT, name), torch_dtype=torch.float32)
        model.config._attn_implementation = "sdpa"
        visual = model.model.visual.double()
        with safe_open(os.path.join(tiny.ROOT, name + "_expected.safetensors"), "pt") as f:
            cases = int(f.metadata()["cases"])
            for k in range(cases):
                pix = f.get_tensor(f"pixel_values.{k}").double()
                grid = f.get_tensor(f"grid_thw.{k}").long()
                with torch.no_grad():
                    out = tiny.run(visual, pix, grid, family)
                for n, t in out.items():
                    tensors[f"{family}.{n}.{k}"] = t.float().contiguous()
                    exact = f.get_tensor(f"{n}.{k}").double()
                    meta[f"{family}.rel_vs_exact.{n}.{k}"] = \
                        f"{((t - exact).abs().max() / exact.abs().max()).item():.3e}"
        meta[f"{family}.cases"] = str(cases)
    provenance.save_file(tensors, os.path.join(tiny.ROOT, "bf16_matmul_expected.safetensors"), meta)
    provenance.record()
    print({k: v for k, v in meta.items() if "rel_vs_exact" in k})


if __name__ == "__main__":
    sys.exit(main())
