#!/usr/bin/env python3
"""Write the numerical fixtures for glimpse's C++ tests into tests/data/.

Usage (from the repository root):  python tools/make_fixtures.py [--out tests/data]

Every file is a safetensors file: parameters `w.*`, inputs `in.*`, expected outputs `out.*`,
string metadata with the configuration. Tensors are F32 except the `w.*` of the *_bf16 block
files, which are BF16. Expected outputs are computed in float64 from exactly the stored
parameters and inputs (bf16 weights upcast to float64), then stored as F32.
See tools/README.md.
"""
import argparse
import math
import os
import sys

import torch

import provenance

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "reference"))
from glimpse_reference import (  # noqa: E402
    GeluMLP,
    HeatmapAttentionHead,
    HeatmapHead,
    LayerNorm,
    RMSNorm,
    SwiGLUMLP,
    VisionRotary,
    apply_rotary,
    sdpa,
)

EPS = 1e-6
THETA = 10000.0
Q_SCALE = 8.0  # q_proj weight and bias multiplied by this: softmax far from uniform
ALLOWED = (torch.float32, torch.bfloat16, torch.float16)


def f32(t):
    return t.detach().to(torch.float32).contiguous()


def bf16_round(t):
    """Round to bfloat16 and come back to float32 (exactly representable values)."""
    return t.to(torch.bfloat16).to(torch.float32)


def save(path, tensors, meta):
    for k, v in tensors.items():
        assert v.dtype in ALLOWED, (k, v.dtype)
        assert torch.isfinite(v.float()).all(), k
    tensors = {k: v.detach().contiguous() for k, v in tensors.items()}
    provenance.save_file(tensors, path, meta)
    print(f"wrote {path} ({os.path.getsize(path)} bytes, {len(tensors)} tensors)")


def params(module, prefix, dtype=torch.float32):
    return {f"{prefix}{n}": p.detach().to(dtype).contiguous() for n, p in module.named_parameters()}


def raster_pos(gh, gw):
    i = torch.arange(gh * gw)
    return torch.stack([i // gw, i % gw], dim=-1).to(torch.float32)  # [S, 2] (row, col)


def box_heatmap(gh, gw, box):
    r0, r1, c0, c1 = box  # half-open rows [r0, r1), cols [c0, c1)
    pos = raster_pos(gh, gw)
    r, c = pos[:, 0], pos[:, 1]
    inside = (r >= r0) & (r < r1) & (c >= c0) & (c < c1)
    return inside.to(torch.float32).view(-1, 1)


def levels_heatmap(S):
    levels = torch.tensor([0.0, 0.25, 0.5, 1.0])
    idx = torch.randint(0, 4, (S,))
    idx[torch.randperm(S)[:4]] = torch.arange(4)  # every level present
    return levels[idx].view(S, 1)


def sharpen_q(attn):
    with torch.no_grad():
        attn.q_proj.weight.mul_(Q_SCALE)
        attn.q_proj.bias.mul_(Q_SCALE)


def randomize_norm(norm, D):
    with torch.no_grad():
        norm.weight.copy_(1.0 + 0.2 * torch.randn(D))
        if getattr(norm, "bias", None) is not None:
            norm.bias.copy_(0.1 * torch.randn(D))


def max_abs(t):
    return float(t.abs().max())


def fmt(x):
    return f"{x:.6e}"


# ----------------------------------------------------------------------------------------
# layers.safetensors
# ----------------------------------------------------------------------------------------
def make_layers(out_dir):
    torch.manual_seed(1001)
    S, D, I, Hr, dr = 7, 24, 16, 3, 16
    softmax_scale = 0.7
    x = torch.randn(S, D)
    linear = torch.nn.Linear(D, 10)
    rms = RMSNorm(D, EPS)
    randomize_norm(rms, D)
    ln = LayerNorm(D, EPS)
    randomize_norm(ln, D)
    swiglu = SwiGLUMLP(D, I)
    gelu = GeluMLP(D, I, approximate="tanh")
    pos = torch.randint(0, 6, (S, 2)).to(torch.float32)
    qk = torch.randn(S, Hr, dr)

    t = {"in.x": x, "in.pos": pos, "in.qk": qk}
    t.update(params(linear, "w.linear."))
    t.update(params(rms, "w.rms."))
    t.update(params(ln, "w.ln."))
    t.update(params(swiglu, "w.swiglu."))
    t.update(params(gelu, "w.gelu."))

    xd = x.double()
    with torch.no_grad():
        lin_d = linear.double()
        t["out.linear"] = f32(lin_d(xd))
        t["out.linear_nobias"] = f32(xd @ lin_d.weight.t())
        t["out.rmsnorm"] = f32(rms.double()(xd))
        t["out.layernorm"] = f32(ln.double()(xd))
        t["out.swiglu"] = f32(swiglu.double()(xd))
        gd = gelu.double()
        gd.approximate = "tanh"
        t["out.gelu_tanh"] = f32(gd(xd))
        gd.approximate = "none"
        t["out.gelu_erf"] = f32(gd(xd))
        t["out.silu"] = f32(torch.nn.functional.silu(xd))
        t["out.gelu_tanh_act"] = f32(torch.nn.functional.gelu(xd, approximate="tanh"))
        t["out.gelu_erf_act"] = f32(torch.nn.functional.gelu(xd, approximate="none"))
        cos, sin = VisionRotary(dr, THETA)(pos.double())
        t["out.cos"] = f32(cos)
        t["out.sin"] = f32(sin)
        t["out.rotated"] = f32(apply_rotary(qk.double(), cos, sin))
        t["out.softmax"] = f32(torch.softmax(xd * softmax_scale, dim=-1))
        # F16 storage (no new random draws): the linear's parameters rounded to float16, the
        # truth from exactly those values.
        w16, b16 = linear.weight.detach().half(), linear.bias.detach().half()
        t["w.linear_f16.weight"], t["w.linear_f16.bias"] = w16, b16
        t["out.linear_f16"] = f32(xd @ w16.double().t() + b16.double())

    meta = {"S": S, "D": D, "I": I, "linear_out": 10, "eps": "1e-6",
            "rotary_H": Hr, "rotary_head_dim": dr, "theta": "10000",
            "softmax_scale": "0.7", "weights_dtype": "f32 (w.linear_f16.*: F16)", "seed": 1001,
            "rmsnorm": "x*rsqrt(mean(x^2)+eps)*w", "layernorm": "torch.nn.LayerNorm",
            "swiglu": "down(silu(gate(x))*up(x))", "gelu_mlp": "linear_fc2(gelu(linear_fc1(x)))"}
    save(os.path.join(out_dir, "layers.safetensors"), t, meta)


# ----------------------------------------------------------------------------------------
# sdpa.safetensors
# ----------------------------------------------------------------------------------------
def make_sdpa(out_dir):
    torch.manual_seed(1002)
    S, Sk, H, d = 9, 11, 3, 8
    q = 2.0 * torch.randn(S, H, d)
    k = torch.randn(Sk, H, d)
    v = torch.randn(Sk, H, d)
    mask = torch.zeros(S, Sk)
    mask[torch.rand(S, Sk) < 0.3] = -1e9
    mask[torch.rand(S, Sk) < 0.15] = -2.5
    mask[0, 1:] = -1e9  # row 0: a single unmasked key
    mask[0, 0] = 0.0
    mask[1, 3] = -0.75
    keep = torch.randint(0, Sk, (S,))
    mask[torch.arange(S), keep] = 0.0  # at least one unmasked key per row
    assert ((mask > -1e8).sum(-1) >= 1).all()
    scale = 1.0 / math.sqrt(d)

    t = {"in.q": q, "in.k": k, "in.v": v, "in.mask": mask}
    with torch.no_grad():
        o, p = sdpa(q.double(), k.double(), v.double(), None, scale)
        t["out.o"] = f32(o)
        t["out.probs"] = f32(p)
        t["out.probs_mean"] = f32(p.mean(0))
        o, p = sdpa(q.double(), k.double(), v.double(), mask.double(), scale)
        t["out.o_mask"] = f32(o)
        t["out.probs_mask"] = f32(p)
        t["out.probs_mask_mean"] = f32(p.mean(0))
    meta = {"S": S, "Sk": Sk, "H": H, "d": d, "scale": repr(scale), "mask_neg": "-1e9",
            "mask": "additive", "weights_dtype": "f32", "seed": 1002}
    save(os.path.join(out_dir, "sdpa.safetensors"), t, meta)


# ----------------------------------------------------------------------------------------
# head_*.safetensors (bare HeatmapAttentionHead)
# ----------------------------------------------------------------------------------------
HEAD_CASES = [
    # S, gh, gw, D, H, rope, box (rows [r0,r1), cols [c0,c1)) for the norope binary heatmap
    dict(gh=4, gw=4, D=32, H=4, rope=False, box=(1, 4, 1, 3), seed=2001),
    dict(gh=4, gw=4, D=32, H=4, rope=True, box=None, seed=2002),
    dict(gh=4, gw=6, D=48, H=4, rope=True, box=None, seed=2003),
    dict(gh=5, gw=7, D=64, H=8, rope=False, box=(1, 4, 2, 6), seed=2004),
]


def mean_max_prob(probs):
    return float(probs.max(-1).values.mean())


def make_head(out_dir, gh, gw, D, H, rope, box, seed):
    torch.manual_seed(seed)
    S, d = gh * gw, D // H
    head = HeatmapAttentionHead(D, H)
    sharpen_q(head)
    x = torch.randn(S, D)
    pos = raster_pos(gh, gw)
    if rope:
        h = torch.rand(S, 1)
    else:
        h = box_heatmap(gh, gw, box)
        h_levels = levels_heatmap(S)

    t = {"in.x": x, "in.h": h, "in.pos": pos}
    t.update(params(head, "w."))
    meta = {"S": S, "D": D, "H": H, "d": d, "rope": int(rope), "grid_h": gh, "grid_w": gw,
            "theta": "10000", "q_scale": "8", "weights_dtype": "f32", "seed": seed,
            "heatmap": "uniform01" if rope else "binary_box"}
    if not rope:
        meta["box"] = ",".join(str(b) for b in box)
        meta["box_format"] = "r0,r1,c0,c1 half-open"
        t["in.h_levels"] = h_levels

    hd = head.double()
    with torch.no_grad():
        cos = sin = None
        if rope:
            cos, sin = VisionRotary(d, THETA)(pos.double())
        y, p = hd(x.double(), h.double(), cos, sin)
        t["out.y"] = f32(y)
        t["out.probs"] = f32(p)
        t["out.probs_mean"] = f32(p.mean(0))
        meta["ref_max_abs"] = fmt(max_abs(y))
        meta["mean_max_prob"] = f"{mean_max_prob(p):.4f}"
        if not rope:
            yl, pl = hd(x.double(), h_levels.double())
            t["out.y_levels"] = f32(yl)
            t["out.probs_mean_levels"] = f32(pl.mean(0))
        # what float32 PyTorch gets
        hf = head.float()
        c32 = s32 = None
        if rope:
            c32, s32 = VisionRotary(d, THETA)(pos)
        y32, _ = hf(x, h, c32, s32)
        meta["torch_f32_max_abs_err"] = fmt(max_abs(y32.double() - y))

    name = f"head_S{S}_D{D}_H{H}_{'rope' if rope else 'norope'}.safetensors"
    save(os.path.join(out_dir, name), t, meta)


# ----------------------------------------------------------------------------------------
# block_*.safetensors (HeatmapHead)
# ----------------------------------------------------------------------------------------
BLOCK_CASES = [
    dict(kind="rms_swiglu", rope=True, wdt="f32", gh=4, gw=4, D=32, H=4, I=48, seed=3001),
    dict(kind="ln_gelu_tanh", rope=True, wdt="f32", gh=4, gw=6, D=48, H=4, I=64, seed=3002),
    dict(kind="rms_swiglu", rope=False, wdt="f32", gh=4, gw=4, D=32, H=2, I=40, seed=3003,
         box=(1, 3, 0, 3)),
    # bf16 files use the seed of their f32 counterpart: same draws, rounded to bf16
    dict(kind="rms_swiglu", rope=True, wdt="bf16", gh=4, gw=4, D=32, H=4, I=48, seed=3001),
    dict(kind="ln_gelu_tanh", rope=True, wdt="bf16", gh=4, gw=6, D=48, H=4, I=64, seed=3002),
]


def make_block(out_dir, kind, rope, wdt, gh, gw, D, H, I, seed, box=None):
    torch.manual_seed(seed)
    S, d = gh * gw, D // H
    block = HeatmapHead(D, H, I, kind, EPS)
    randomize_norm(block.norm1, D)
    randomize_norm(block.norm2, D)
    sharpen_q(block.attn)
    x = torch.randn(S, D)
    h = torch.rand(S, 1) if rope else box_heatmap(gh, gw, box)
    pos = raster_pos(gh, gw)
    gate_scalar = torch.tensor([0.37])
    gate_channel = torch.randn(D)

    bf16 = wdt == "bf16"
    if bf16:  # the stored values are the truth: round weights and inputs to bf16
        with torch.no_grad():
            for p in block.parameters():
                p.copy_(bf16_round(p))
        x, h = bf16_round(x), bf16_round(h)

    t = {"in.x": x, "in.h": h, "in.pos": pos, "in.gate_scalar": gate_scalar,
         "in.gate_channel": gate_channel}
    t.update(params(block, "w.", torch.bfloat16 if bf16 else torch.float32))
    meta = {"S": S, "D": D, "H": H, "d": d, "I": I, "kind": kind, "rope": int(rope),
            "grid_h": gh, "grid_w": gw, "eps": "1e-6", "theta": "10000", "q_scale": "8",
            "weights_dtype": wdt, "seed": seed, "heatmap": "uniform01" if rope else "binary_box",
            "gate_scalar": "0.37",
            "norm": "RMSNorm" if kind == "rms_swiglu" else "LayerNorm",
            "mlp": "swiglu" if kind == "rms_swiglu" else "gelu_tanh"}
    if box is not None:
        meta["box"] = ",".join(str(b) for b in box)
        meta["box_format"] = "r0,r1,c0,c1 half-open"

    with torch.no_grad():
        bd = HeatmapHead(D, H, I, kind, EPS).double()
        bd.load_state_dict(block.state_dict())  # copies (upcast) the exact stored values
        cos = sin = None
        if rope:
            cos, sin = VisionRotary(d, THETA)(pos.double())
        xd = x.double()
        z, delta, p = bd(xd, h.double(), cos, sin)
        t["out.z"] = f32(z)
        t["out.delta"] = f32(delta)
        t["out.probs_mean"] = f32(p.mean(0))
        t["out.gated_scalar"] = f32(xd + torch.tanh(gate_scalar.double()) * delta)
        t["out.gated_channel"] = f32(xd + torch.tanh(gate_channel.double()) * delta)
        meta["ref_max_abs"] = fmt(max_abs(z))
        meta["mean_max_prob"] = f"{mean_max_prob(p):.4f}"

        # what PyTorch itself gets: float32 (same stored values) ...
        c32 = s32 = None
        if rope:
            c32, s32 = VisionRotary(d, THETA)(pos)  # cos/sin in f32
        b32 = HeatmapHead(D, H, I, kind, EPS).float()
        b32.load_state_dict(block.state_dict())
        z32, _, _ = b32(x, h, c32, s32)
        meta["torch_f32_max_abs_err"] = fmt(max_abs(z32.double() - z))
        # ... and bfloat16 (model.to(bf16), inputs bf16, cos/sin f32 applied in f32)
        if bf16:
            b16 = HeatmapHead(D, H, I, kind, EPS)
            b16.load_state_dict(block.state_dict())
            b16 = b16.to(torch.bfloat16)
            z16, _, _ = b16(x.to(torch.bfloat16), h.to(torch.bfloat16), c32, s32)
            meta["torch_bf16_max_abs_err"] = fmt(max_abs(z16.double() - z))

    name = f"block_{kind}_{'rope' if rope else 'norope'}_{wdt}.safetensors"
    save(os.path.join(out_dir, name), t, meta)


def main():
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", default=os.path.join(root, "tests", "data"))
    args = ap.parse_args()
    os.makedirs(args.out, exist_ok=True)
    torch.set_num_threads(2)
    make_layers(args.out)
    make_sdpa(args.out)
    for c in HEAD_CASES:
        make_head(args.out, **c)
    for c in BLOCK_CASES:
        make_block(args.out, **c)
    provenance.record()


if __name__ == "__main__":
    main()
