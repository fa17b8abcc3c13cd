#!/usr/bin/env python3
"""The PyTorch peer of bench/bench_cuda.cpp, run in the same session on the same GPU.

Rows (same shapes and FLOP counts as bench_cuda.cpp):
  attn/S/d/<backend>     F.scaled_dot_product_attention, bf16 [1, 16, S, d], non-causal,
                         S in {1024, 4096, 16384}, d in {72, 80, 128}; backends: flash
                         (FLASH_ATTENTION), cudnn (CUDNN_ATTENTION), efficient
                         (EFFICIENT_ATTENTION), each forced alone through sdpa_kernel.
  attn_window/16384/80/<backend>   64-token windows as a batch [S/64, 16, 64, 80] (SDPA has no
                         varlen; a batch of equal windows is its best case).
  head/generic/S         the heatmap head's generic path in PyTorch eager (bf16 weights, D 1280,
                         16 heads, SDPA for the attention): q = Linear(1->D)(h), k, v, out.
  encode/<family>/<side> transformers' Qwen2.5-VL-7B / Qwen3-VL-8B vision tower, random
                         full-size bf16 weights, attn_implementation in {sdpa, flash_attention_2
                         (when flash_attn is installed)}.
FLOPs: attention 4 S^2 H d; the head 2SD + 6SD^2 + 4S^2D; encoders as bench_encoders.cpp.
Timing: CUDA events, warm-up first, median. ratio x_peak against the datasheet dense bf16
peak of the device (the table in bench_cuda.cpp).

Usage: python3 bench/torch_cuda_peer.py [--out results.json] [--only attn,head,encode]
"""
import argparse
import json
import math
import statistics
import sys

import torch
import torch.nn.functional as F

H = 16
FAMILIES = {  # vision_config of Qwen2.5-VL-7B-Instruct and Qwen3-VL-8B-Instruct (shared/bench/vision_bench.py)
    "qwen2_5_vl_7b": dict(depth=32, hidden_size=1280, num_heads=16, intermediate_size=3420, patch_size=14,
                          window_size=112, fullatt_block_indexes=[7, 15, 23, 31], out_hidden_size=3584,
                          hidden_act="silu", spatial_merge_size=2, temporal_patch_size=2, in_channels=3),
    "qwen3_vl_8b": dict(depth=27, hidden_size=1152, num_heads=16, intermediate_size=4304, patch_size=16,
                        num_position_embeddings=2304, deepstack_visual_indexes=[8, 16, 24],
                        out_hidden_size=4096, hidden_act="gelu_pytorch_tanh", spatial_merge_size=2,
                        temporal_patch_size=2, in_channels=3),
}


def peak_of(name):
    if "H200" in name:
        return 989.4
    if "H100" in name and "PCIe" in name:
        return 756.0
    if "H100" in name and "NVL" in name:
        return 835.0
    if "H100" in name or "H800" in name:
        return 989.4
    if "A100" in name:
        return 312.0
    return 0.0


def time_cuda(f, iters, warmup=3):
    for _ in range(warmup):
        f()
    torch.cuda.synchronize()
    ts = []
    for _ in range(iters):
        e0, e1 = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        e0.record()
        f()
        e1.record()
        e1.synchronize()
        ts.append(e0.elapsed_time(e1) * 1e-3)
    return statistics.median(ts)


def row(rows, name, flop, sec, peak, extra=None):
    tf = flop / sec * 1e-12
    r = dict(name=name, ms=sec * 1e3, tflops=tf, x_peak=tf / peak if peak else 0.0)
    r.update(extra or {})
    rows.append(r)
    print(f"{name:<40} {sec * 1e3:10.3f} ms {tf:8.1f} TFLOP/s  x_peak {r['x_peak']:.3f}", flush=True)


def bench_attention(rows, peak):
    from torch.nn.attention import SDPBackend, sdpa_kernel
    backends = {"flash": SDPBackend.FLASH_ATTENTION, "cudnn": SDPBackend.CUDNN_ATTENTION,
                "efficient": SDPBackend.EFFICIENT_ATTENTION}
    g = torch.Generator(device="cuda").manual_seed(0)
    shapes = [(S, d, 0) for S in (1024, 4096, 16384) for d in (72, 80, 128)] + [(16384, 80, 64)]
    for S, d, window in shapes:
        if window:
            b, s = S // window, window
        else:
            b, s = 1, S
        q, k, v = (torch.randn(b, H, s, d, device="cuda", dtype=torch.bfloat16, generator=g) for _ in range(3))
        flop = 4.0 * b * s * s * H * d
        for bname, be in backends.items():
            name = (f"attn_window/{S}/{d}/{bname}" if window else f"attn/{S}/{d}/{bname}")
            try:
                with sdpa_kernel([be]):
                    sec = time_cuda(lambda: F.scaled_dot_product_attention(q, k, v), 10 if S >= 16384 else 50)
                row(rows, name, flop, sec, peak)
            except Exception as e:  # a backend that refuses the shape says so in the table
                print(f"{name:<40} unavailable: {str(e).splitlines()[0][:100]}", flush=True)
                rows.append(dict(name=name, error=str(e).splitlines()[0]))


def bench_head(rows, peak):
    D = 1280
    d = D // H
    torch.manual_seed(0)
    qp = torch.nn.Linear(1, D).cuda().to(torch.bfloat16)
    kp, vp, op = (torch.nn.Linear(D, D).cuda().to(torch.bfloat16) for _ in range(3))
    for S in (1024, 4096):
        x = torch.randn(S, D, device="cuda", dtype=torch.bfloat16)
        side = int(math.isqrt(S))
        h = torch.zeros(S, 1, device="cuda", dtype=torch.bfloat16)
        idx = torch.arange(S, device="cuda")
        h[((idx // side) >= side // 4) & ((idx // side) < side // 2) & ((idx % side) < side // 3)] = 1

        def fwd():
            with torch.no_grad():
                q = qp(h).view(S, H, d).transpose(0, 1)
                k = kp(x).view(S, H, d).transpose(0, 1)
                v = vp(x).view(S, H, d).transpose(0, 1)
                o = F.scaled_dot_product_attention(q, k, v).transpose(0, 1).reshape(S, D)
                return op(o)
        flop = 2 * S * D + 6 * S * D * D + 4 * S * S * D
        row(rows, f"head/generic/{S}", flop, time_cuda(fwd, 20), peak)


def grid_side(side, c):
    f = c["patch_size"] * c["spatial_merge_size"]
    return round(side / f) * c["spatial_merge_size"]


def window_segments(gs, c):
    """Qwen2.5-VL's window sizes (in patches) for a gs x gs grid: windows of v x v merged tokens
    in raster order, the ragged ones at the right and bottom edges cut (transformers'
    get_vision_window_index without its padding)."""
    m = c["spatial_merge_size"]
    v = c["window_size"] // c["patch_size"] // m
    g = gs // m
    n = -(-g // v)
    return [min(v, g - a * v) * min(v, g - b * v) * m * m for a in range(n) for b in range(n)]


def encoder_flops(family, c, gs):
    N = gs * gs
    D, I = c["hidden_size"], c["intermediate_size"]
    q25 = family.startswith("qwen2_5")
    flop = 2 * N * (c["in_channels"] * c["temporal_patch_size"] * c["patch_size"] ** 2) * D
    flop += c["depth"] * (8 * N * D * D + (3 if q25 else 2) * 2 * N * D * I)
    full = 4 * N * N * D
    if q25:
        segs = window_segments(gs, c)
        nf = len(c["fullatt_block_indexes"])
        flop += nf * full + (c["depth"] - nf) * sum(4 * s * s * D for s in segs)
    else:
        flop += c["depth"] * full
    return flop


def bench_encoders(rows, peak):
    impls = ["sdpa"]
    try:
        import flash_attn  # noqa: F401
        impls.append("flash_attention_2")
    except ImportError:
        print("flash_attn not installed: encoders with sdpa only", flush=True)
    for family, c in FAMILIES.items():
        if family.startswith("qwen2_5"):
            from transformers import Qwen2_5_VLVisionConfig as C
            from transformers.models.qwen2_5_vl.modeling_qwen2_5_vl import \
                Qwen2_5_VisionTransformerPretrainedModel as M
        else:
            from transformers import Qwen3VLVisionConfig as C
            from transformers.models.qwen3_vl.modeling_qwen3_vl import Qwen3VLVisionModel as M
        for impl in impls:
            try:
                m = M._from_config(C(**c), dtype=torch.bfloat16, attn_implementation=impl).cuda().eval()
            except Exception as e:
                print(f"encode/{family} {impl}: {str(e).splitlines()[0][:100]}", flush=True)
                continue
            for side in (448, 1024):
                gs = grid_side(side, c)
                K = c["in_channels"] * c["temporal_patch_size"] * c["patch_size"] ** 2
                pv = torch.randn(gs * gs, K, device="cuda", dtype=torch.bfloat16)
                grid = torch.tensor([[1, gs, gs]], device="cuda")

                def fwd():
                    with torch.no_grad():
                        return m(pv, grid_thw=grid)
                row(rows, f"encode/{family}/{side}/{impl}", encoder_flops(family, c, gs), time_cuda(fwd, 5, 2),
                    peak, dict(N=gs * gs))
            del m
            torch.cuda.empty_cache()


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", default="")
    ap.add_argument("--only", default="attn,head,encode")
    a = ap.parse_args()
    if not torch.cuda.is_available():
        print("torch_cuda_peer: no CUDA device")
        return 0
    name = torch.cuda.get_device_name(0)
    peak = peak_of(name)
    print(f"device: {name}; torch {torch.__version__}; datasheet dense bf16 peak {peak} TFLOP/s", flush=True)
    rows = []
    x = torch.randn(8192, 8192, device="cuda", dtype=torch.bfloat16)
    y = torch.randn(8192, 8192, device="cuda", dtype=torch.bfloat16)
    row(rows, "peak/torch_bf16_matmul_8192", 2.0 * 8192 ** 3, time_cuda(lambda: x @ y, 20), peak)
    del x, y
    only = set(a.only.split(","))
    if "attn" in only:
        bench_attention(rows, peak)
    if "head" in only:
        bench_head(rows, peak)
    if "encode" in only:
        bench_encoders(rows, peak)
    if a.out:
        with open(a.out, "w") as f:
            json.dump(dict(device=name, torch=torch.__version__, peak_tflops=peak, rows=rows), f, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
