#!/usr/bin/env python3
"""Write the gradient fixtures for glimpse's backward pass (tests/grad) into tests/data/grad_*.

Usage (from the repository root):  python tools/make_grad_fixtures.py [--out tests/data]

The truth is PyTorch autograd on the plain reference implementation
(tools/reference/glimpse_reference.py) in float64, from exactly the stored values (bf16
weights upcast to float64). Before writing anything, torch.autograd.gradcheck checks that
reference itself against finite differences, layer by layer and for the whole block.

Names: parameters `w.*`, inputs `in.*` (upstream gradients `in.d*`), forward outputs `out.*`,
expected gradients `grad.<layer>.<parameter>` (parameter names as the C++ `visit` yields them,
without prefix) and `grad.<layer>.x` / `grad.x` / `grad.heatmap` for inputs. See tools/README.md.
"""
import argparse
import math
import os
import sys

import torch
from torch.func import functional_call

import provenance

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "reference"))
from glimpse_reference import (  # noqa: E402
    GeluMLP,
    HeatmapHead,
    LayerNorm,
    RMSNorm,
    SwiGLUMLP,
    VisionRotary,
    apply_rotary,
    sdpa,
)
from make_fixtures import (  # noqa: E402
    EPS,
    THETA,
    bf16_round,
    box_heatmap,
    f32,
    params,
    randomize_norm,
    raster_pos,
    save,
    sharpen_q,
)

ACTS = {
    "silu": lambda x: torch.nn.functional.silu(x),
    "gelu_tanh": lambda x: torch.nn.functional.gelu(x, approximate="tanh"),
    "gelu_erf": lambda x: torch.nn.functional.gelu(x, approximate="none"),
}


def module_grads(module, inputs, upstream, fwd=None):
    """Autograd in float64: returns ({param name: grad}, [input grads]) of <module(*inputs), upstream>."""
    m = module.double()
    ins = [t.detach().double().requires_grad_(True) for t in inputs]
    for p in m.parameters():
        p.grad = None
    out = (fwd or m)(*ins)
    loss = (out * upstream.double()).sum()
    loss.backward()
    return {n: p.grad.detach().clone() for n, p in m.named_parameters()}, [i.grad for i in ins], out.detach()


# ----------------------------------------------------------------------------------------
# gradcheck: the reference itself against finite differences (float64)
# ----------------------------------------------------------------------------------------
def block_function(block, cos, sin):
    names = [n for n, _ in block.named_parameters()]

    def fn(x, h, w, *ps):
        z, delta, probs = functional_call(block, dict(zip(names, ps)), (x, h, cos, sin))
        pooled = torch.einsum("q,hqk->hk", w, probs)
        return delta, pooled

    return fn, [p.detach().clone().requires_grad_(True) for _, p in block.named_parameters()]


def run_gradchecks():
    torch.manual_seed(4242)
    S, D, H, I = 6, 8, 2, 12
    for kind in HeatmapHead.KINDS:
        for rope in (False, True):
            block = HeatmapHead(D, H, I, kind, EPS).double()
            randomize_norm(block.norm1, D)
            randomize_norm(block.norm2, D)
            cos = sin = None
            if rope:
                cos, sin = VisionRotary(D // H, THETA)(raster_pos(2, 3).double())
            fn, ps = block_function(block, cos, sin)
            x = torch.randn(S, D, dtype=torch.float64, requires_grad=True)
            h = torch.rand(S, 1, dtype=torch.float64, requires_grad=True)
            w = torch.rand(S, dtype=torch.float64)
            assert torch.autograd.gradcheck(lambda x, h, *ps: fn(x, h, w, *ps), (x, h, *ps), eps=1e-6, atol=1e-7,
                                            rtol=1e-5), (kind, rope)
    # layers on their own (the block reaches each, but an error could hide behind another)
    x = torch.randn(5, 8, dtype=torch.float64, requires_grad=True)
    for act in ACTS.values():
        assert torch.autograd.gradcheck(act, (x,))
    q = torch.randn(4, 2, 4, dtype=torch.float64, requires_grad=True)
    k = torch.randn(5, 2, 4, dtype=torch.float64, requires_grad=True)
    v = torch.randn(5, 2, 4, dtype=torch.float64, requires_grad=True)
    mask = torch.zeros(4, 5, dtype=torch.float64)
    mask[1, 2] = -1e9
    mask[2, 0] = -0.5
    assert torch.autograd.gradcheck(lambda q, k, v: sdpa(q, k, v, mask, 0.5), (q, k, v))
    cos, sin = VisionRotary(4, THETA)(raster_pos(2, 2).double())
    assert torch.autograd.gradcheck(lambda q: apply_rotary(q, cos, sin), (q,))
    for norm in (RMSNorm(8, EPS).double(), LayerNorm(8, EPS).double()):
        randomize_norm(norm, 8)
        norm.double()
        assert torch.autograd.gradcheck(norm, (x,))
    print("gradcheck: block (both kinds, RoPE on/off), activations, sdpa with mask, rotary, norms: ok")


# ----------------------------------------------------------------------------------------
# grad_layers.safetensors
# ----------------------------------------------------------------------------------------
def make_layers(out_dir):
    torch.manual_seed(5001)
    S, D, I, O = 12, 24, 20, 10
    Hr, dr = 3, 16
    x = torch.randn(S, D)
    dy = torch.randn(S, D)
    t = {"in.x": x, "in.dy": dy}
    meta = {"S": S, "D": D, "I": I, "linear_out": O, "eps": "1e-6", "theta": "10000", "rotary_H": Hr,
            "rotary_head_dim": dr, "softmax_scale": "0.7", "seed": 5001}

    # linear, f32 and bf16-stored weights (the bf16 truth uses the rounded weights)
    lin = torch.nn.Linear(D, O)
    dy_lin = torch.randn(S, O)
    t["in.dy_linear"] = dy_lin
    for tag, dt in (("linear", torch.float32), ("linear_bf16", torch.bfloat16)):
        m = torch.nn.Linear(D, O)
        m.load_state_dict(lin.state_dict())
        if dt == torch.bfloat16:
            with torch.no_grad():
                for p in m.parameters():
                    p.copy_(bf16_round(p))
        t.update(params(m, f"w.{tag}.", dt))
        g, (gx,), _ = module_grads(m, [x], dy_lin)
        t[f"grad.{tag}.x"] = f32(gx)
        for n, v in g.items():
            t[f"grad.{tag}.{n}"] = f32(v)

    rms = RMSNorm(D, EPS)
    randomize_norm(rms, D)
    ln = LayerNorm(D, EPS)
    randomize_norm(ln, D)
    swiglu = SwiGLUMLP(D, I)
    gelu = GeluMLP(D, I, approximate="tanh")
    t.update(params(rms, "w.rms."))
    t.update(params(ln, "w.ln."))
    t.update(params(swiglu, "w.swiglu."))
    t.update(params(gelu, "w.gelu."))
    for tag, m in (("rms", rms), ("ln", ln), ("swiglu", swiglu), ("gelu_tanh", gelu)):
        g, (gx,), _ = module_grads(m, [x], dy)
        t[f"grad.{tag}.x"] = f32(gx)
        for n, v in g.items():
            t[f"grad.{tag}.{n}"] = f32(v)
    gelu.approximate = "none"
    g, (gx,), _ = module_grads(gelu, [x], dy)
    t["grad.gelu_erf.x"] = f32(gx)
    for n, v in g.items():
        t[f"grad.gelu_erf.{n}"] = f32(v)

    # activations and softmax(0.7 x) over rows
    xs = 2.0 * x
    t["in.x_act"] = xs
    for name, fn in ACTS.items():
        xi = xs.double().requires_grad_(True)
        (fn(xi) * dy.double()).sum().backward()
        t[f"grad.act_{name}.x"] = f32(xi.grad)
    xi = xs.double().requires_grad_(True)
    (torch.softmax(0.7 * xi, dim=-1) * dy.double()).sum().backward()
    t["grad.softmax.x"] = f32(xi.grad)

    # rotary on [S, Hr, dr]
    pos = torch.randint(0, 6, (S, 2)).to(torch.float32)
    qk = torch.randn(S, Hr, dr)
    dqk = torch.randn(S, Hr, dr)
    t.update({"in.pos": pos, "in.qk": qk, "in.dqk": dqk})
    cos, sin = VisionRotary(dr, THETA)(pos.double())
    qi = qk.double().requires_grad_(True)
    (apply_rotary(qi, cos, sin) * dqk.double()).sum().backward()
    t["grad.rotary.x"] = f32(qi.grad)
    save(os.path.join(out_dir, "grad_layers.safetensors"), t, meta)


# ----------------------------------------------------------------------------------------
# grad_sdpa.safetensors
# ----------------------------------------------------------------------------------------
def make_sdpa(out_dir):
    torch.manual_seed(5002)
    Sq, Sk, H, d, R = 10, 13, 3, 8, 2
    q, k, v = 2.0 * torch.randn(Sq, H, d), torch.randn(Sk, H, d), torch.randn(Sk, H, d)
    d_out = torch.randn(Sq, H, d)
    qw = torch.rand(R, Sq)
    d_pooled = torch.randn(R, H, Sk)
    mask = torch.zeros(Sq, Sk)
    mask[torch.rand(Sq, Sk) < 0.25] = -1e9
    mask[torch.rand(Sq, Sk) < 0.15] = -2.5
    mask[torch.arange(Sq), torch.randint(0, Sk, (Sq,))] = 0.0  # at least one key per row
    scale = 1.0 / math.sqrt(d)
    t = {"in.q": q, "in.k": k, "in.v": v, "in.d_out": d_out, "in.query_weights": qw, "in.d_pooled": d_pooled,
         "in.mask": mask}
    for tag, m in (("", None), ("_mask", mask)):
        ins = [a.double().requires_grad_(True) for a in (q, k, v)]
        o, p = sdpa(*ins, None if m is None else m.double(), scale)
        pooled = torch.einsum("rq,hqk->rhk", qw.double(), p)
        ((o * d_out.double()).sum() + (pooled * d_pooled.double()).sum()).backward()
        for n, a in zip("qkv", ins):
            t[f"grad{tag}.{n}"] = f32(a.grad)
        t[f"out{tag}.pooled"] = f32(pooled)
    save(os.path.join(out_dir, "grad_sdpa.safetensors"), t,
         {"Sq": Sq, "Sk": Sk, "H": H, "d": d, "R": R, "scale": repr(scale), "seed": 5002})


# ----------------------------------------------------------------------------------------
# grad_block_*.safetensors
# ----------------------------------------------------------------------------------------
BLOCK_CASES = [
    dict(kind="rms_swiglu", rope=True, wdt="f32", gh=4, gw=4, D=32, H=4, I=48, seed=5101),
    dict(kind="ln_gelu_tanh", rope=True, wdt="f32", gh=4, gw=6, D=48, H=4, I=64, seed=5102),
    dict(kind="rms_swiglu", rope=False, wdt="f32", gh=4, gw=5, D=32, H=4, I=40, seed=5103, box=(1, 3, 1, 4)),
    dict(kind="ln_gelu_tanh", rope=False, wdt="f32", gh=5, gw=8, D=32, H=4, I=40, seed=5104, box=(0, 3, 2, 6)),
    dict(kind="rms_swiglu", rope=True, wdt="bf16", gh=4, gw=4, D=32, H=4, I=48, seed=5101),
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
    qw = torch.rand(S)
    d_delta = torch.randn(S, D)
    d_pooled = torch.randn(1, H, S)
    bf16 = wdt == "bf16"
    if bf16:
        with torch.no_grad():
            for p in block.parameters():
                p.copy_(bf16_round(p))
        x, h = bf16_round(x), bf16_round(h)
    t = {"in.x": x, "in.h": h, "in.pos": pos, "in.query_weights": qw, "in.d_delta": d_delta,
         "in.d_pooled": d_pooled}
    t.update(params(block, "w.", torch.bfloat16 if bf16 else torch.float32))

    bd = HeatmapHead(D, H, I, kind, EPS).double()
    bd.load_state_dict(block.state_dict())
    cos = sin = None
    if rope:
        cos, sin = VisionRotary(d, THETA)(pos.double())
    xd = x.double().requires_grad_(True)
    hd = h.double().requires_grad_(True)
    _, delta, probs = bd(xd, hd, cos, sin)
    pooled = torch.einsum("q,hqk->hk", qw.double(), probs).unsqueeze(0)  # [1, H, S]
    ((delta * d_delta.double()).sum() + (pooled * d_pooled.double()).sum()).backward()
    t["out.delta"] = f32(delta)
    t["out.pooled"] = f32(pooled)
    t["grad.x"] = f32(xd.grad)
    t["grad.heatmap"] = f32(hd.grad.view(S))
    for n, p in bd.named_parameters():
        t[f"grad.{n}"] = f32(p.grad)
    meta = {"S": S, "D": D, "H": H, "d": d, "I": I, "kind": kind, "rope": int(rope), "grid_h": gh, "grid_w": gw,
            "eps": "1e-6", "theta": "10000", "q_scale": "8", "weights_dtype": wdt, "seed": seed,
            "heatmap": "uniform01" if rope else "binary_box",
            "loss": "sum(delta*d_delta) + sum(pooled*d_pooled), pooled[0,h,k] = sum_q w[q] P[h,q,k]"}
    if box is not None:
        meta["box"] = ",".join(str(b) for b in box)
        meta["box_format"] = "r0,r1,c0,c1 half-open"
    name = f"grad_block_{kind}_{'rope' if rope else 'norope'}_{wdt}.safetensors"
    save(os.path.join(out_dir, name), t, meta)


# ----------------------------------------------------------------------------------------
# grad_combine.safetensors
# ----------------------------------------------------------------------------------------
def make_combine(out_dir):
    torch.manual_seed(5201)
    S, D = 9, 16
    x, delta, dz = torch.randn(S, D), torch.randn(S, D), torch.randn(S, D)
    gs, gc = torch.tensor([0.37]), torch.randn(D)
    t = {"in.x": x, "in.delta": delta, "in.dz": dz, "in.gate_scalar": gs, "in.gate_channel": gc}
    modes = {
        "residual": (lambda x, dl, g: x + dl, None),
        "gated_scalar": (lambda x, dl, g: x + torch.tanh(g) * dl, gs),
        "gated_channel": (lambda x, dl, g: x + torch.tanh(g) * dl, gc),
        "replace": (lambda x, dl, g: dl, None),
    }
    for mode, (fn, gate) in modes.items():
        xi, di = x.double().requires_grad_(True), delta.double().requires_grad_(True)
        gi = None if gate is None else gate.double().requires_grad_(True)
        z = fn(xi, di, gi)
        t[f"out.{mode}.z"] = f32(z)
        (z * dz.double()).sum().backward()
        t[f"grad.{mode}.x"] = f32(xi.grad if xi.grad is not None else torch.zeros(S, D))
        t[f"grad.{mode}.delta"] = f32(di.grad)
        if gi is not None:
            t[f"grad.{mode}.gate"] = f32(gi.grad)
    save(os.path.join(out_dir, "grad_combine.safetensors"), t, {"S": S, "D": D, "seed": 5201})


def main():
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", default=os.path.join(root, "tests", "data"))
    ap.add_argument("--skip-gradcheck", action="store_true")
    args = ap.parse_args()
    torch.set_num_threads(2)
    if not args.skip_gradcheck:
        run_gradchecks()
    make_layers(args.out)
    make_sdpa(args.out)
    for c in BLOCK_CASES:
        make_block(args.out, **c)
    make_combine(args.out)
    provenance.record()


if __name__ == "__main__":
    main()
