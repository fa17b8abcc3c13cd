#!/usr/bin/env python3
"""Writes examples/data/head_demo.safetensors: the bundled input of glimpse-head-demo.

A 32 x 32 patch grid of synthetic vision features (D = 128) with two "objects": patches
inside each object share a prototype direction plus noise, the background is noise. A
heatmap head (rms_swiglu block, H = 4, I = 256, no RoPE) with PyTorch-default random
weights (q_proj sharpened x8 so its softmax is not near-uniform) is stored under the
documented names `heatmap_head.*`, together with the block's output for a box heatmap over
object A, computed by tools/reference in float64, so the demo can show its own parity.

    python tools/make_demo_input.py        # needs torch + safetensors
"""
import json
import os
import sys

import torch

import provenance
from provenance import save_file

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "reference"))
from glimpse_reference import HeatmapHead  # noqa: E402

GH, GW, D, H, I = 32, 32, 128, 4, 256
BOX_A = (8, 6, 20, 16)   # patch rows [8,20) x cols [6,16): the "person"
BOX_B = (14, 18, 26, 28)  # the "object"


def main():
    torch.manual_seed(2026)
    S = GH * GW
    x = 0.5 * torch.randn(S, D)
    protos = torch.randn(2, D)
    for k, (r0, c0, r1, c1) in enumerate((BOX_A, BOX_B)):
        for r in range(r0, r1):
            for c in range(c0, c1):
                x[r * GW + c] += protos[k]
    x = x.to(torch.bfloat16).float()  # stored as bf16: use exactly those values
    block = HeatmapHead(D, H, I, "rms_swiglu")
    with torch.no_grad():
        block.attn.q_proj.weight.mul_(8.0)
        block.attn.q_proj.bias.mul_(8.0)
    h = torch.zeros(S, 1)
    r0, c0, r1, c1 = BOX_A
    for r in range(r0, r1):
        for c in range(c0, c1):
            h[r * GW + c] = 1.0
    with torch.no_grad():
        b64 = block.double()
        z, delta, probs = b64(x.double(), h.double(), None, None)
    tensors = {"features": x.to(torch.bfloat16), "expected.z": z.float().contiguous()}
    for name, p in block.state_dict().items():
        tensors["heatmap_head." + name] = p.float().contiguous()
    meta = {"grid_h": str(GH), "grid_w": str(GW), "dim": str(D), "heads": str(H),
            "intermediate": str(I), "kind": "rms_swiglu", "rope": "0",
            "box_a": json.dumps(BOX_A), "box_b": json.dumps(BOX_B),
            "expected": "expected.z = block(features, box_a heatmap) in float64 (tools/reference)"}
    out = os.path.join(HERE, "..", "examples", "data", "head_demo.safetensors")
    save_file(tensors, out, metadata=meta)
    provenance.record()
    print("wrote", os.path.normpath(out), os.path.getsize(out), "bytes")


if __name__ == "__main__":
    main()
