#!/usr/bin/env python3
"""Re-derive every out.* of make_fixtures.py's files (layers, sdpa, head_*, block_*) from the
stored w.* / in.* with NumPy float64 (no torch, no safetensors package, no tools/reference)
and report the max abs difference. The other generators' fixtures are checked by rerunning
them (tools/regenerate_fixtures.py).

Second, independent implementation of the same formulas; exits 1 if any difference is above
2e-6 (the outputs are float64 results rounded to float32).
"""
import glob
import json
import math
import os
import struct
import sys

import numpy as np

TOL = 2e-6
root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def load(path):
    """Reads a safetensors file with NumPy alone (F32, BF16, F16 -> float64)."""
    with open(path, "rb") as f:
        n = struct.unpack("<Q", f.read(8))[0]
        header = json.loads(f.read(n))
        body = f.read()
    meta = header.pop("__metadata__", None) or {}
    out = {}
    for k, info in header.items():
        a, b = info["data_offsets"]
        raw = body[a:b]
        if info["dtype"] == "F32":
            v = np.frombuffer(raw, "<f4")
        elif info["dtype"] == "F16":
            v = np.frombuffer(raw, "<f2")
        elif info["dtype"] == "BF16":
            v = (np.frombuffer(raw, "<u2").astype(np.uint32) << 16).view("<f4")
        else:
            continue
        out[k] = v.astype(np.float64).reshape(info["shape"])
    return out, meta


def lin(x, t, name, bias=True):
    y = x @ t[name + ".weight"].T
    return y + t[name + ".bias"] if bias else y


def rms(x, w, eps):
    return x / np.sqrt((x * x).mean(-1, keepdims=True) + eps) * w


def ln(x, w, b, eps):
    mu = x.mean(-1, keepdims=True)
    var = ((x - mu) ** 2).mean(-1, keepdims=True)
    return (x - mu) / np.sqrt(var + eps) * w + b


def silu(x):
    return x / (1 + np.exp(-x))


def gelu_tanh(x):
    return 0.5 * x * (1 + np.tanh(math.sqrt(2 / math.pi) * (x + 0.044715 * x ** 3)))


def gelu_erf(x):
    return 0.5 * x * (1 + np.vectorize(math.erf)(x / math.sqrt(2)))


def softmax(s):
    s = s - s.max(-1, keepdims=True)
    e = np.exp(s)
    return e / e.sum(-1, keepdims=True)


def rope_cs(pos, hd, theta=10000.0):
    dr = hd // 2
    inv = (1.0 / theta ** (np.arange(0, dr, 2, dtype=np.float32) / np.float32(dr))).astype(np.float32)
    inv = inv.astype(np.float64)
    ang = np.concatenate([pos[:, :1] * inv, pos[:, 1:2] * inv], -1)
    emb = np.concatenate([ang, ang], -1)
    return np.cos(emb), np.sin(emb)


def rope(x, c, s):  # x [S,H,d]
    h = x.shape[-1] // 2
    rot = np.concatenate([-x[..., h:], x[..., :h]], -1)
    return x * c[:, None, :] + rot * s[:, None, :]


def attn(q, k, v, mask=None, scale=None):  # [S,H,d] -> o [S,H,d], p [H,S,Sk]
    scale = scale or 1 / math.sqrt(q.shape[-1])
    sc = np.einsum("shd,thd->hst", q, k) * scale
    if mask is not None:
        sc = sc + mask
    p = softmax(sc)
    return np.einsum("hst,thd->shd", p, v), p


def head(t, pre, x, h, H, pos=None):
    S, D = x.shape
    d = D // H
    q = lin(h, t, pre + "q_proj").reshape(S, H, d)
    k = lin(x, t, pre + "k_proj").reshape(S, H, d)
    v = lin(x, t, pre + "v_proj").reshape(S, H, d)
    if pos is not None:
        c, s = rope_cs(pos, d)
        q, k = rope(q, c, s), rope(k, c, s)
    o, p = attn(q, k, v)
    return lin(o.reshape(S, D), t, pre + "proj"), p


worst = 0.0


def check(fname, t, name, val):
    global worst
    err = float(np.abs(t[name] - val).max())
    worst = max(worst, err)
    flag = "" if err <= TOL else "   <-- FAIL"
    print(f"  {fname:42s} {name:22s} max|diff| {err:.2e}{flag}")


def main():
    for path in sorted(glob.glob(os.path.join(root, "tests", "data", "*.safetensors"))):
        fn = os.path.basename(path)
        t, m = load(path)
        if fn == "layers.safetensors":
            x, eps = t["in.x"], float(m["eps"])
            check(fn, t, "out.linear", lin(x, t, "w.linear"))
            check(fn, t, "out.linear_nobias", lin(x, t, "w.linear", bias=False))
            check(fn, t, "out.rmsnorm", rms(x, t["w.rms.weight"], eps))
            check(fn, t, "out.layernorm", ln(x, t["w.ln.weight"], t["w.ln.bias"], eps))
            sw = lin(silu(lin(x, t, "w.swiglu.gate_proj")) * lin(x, t, "w.swiglu.up_proj"),
                     t, "w.swiglu.down_proj")
            check(fn, t, "out.swiglu", sw)
            a = lin(x, t, "w.gelu.linear_fc1")
            check(fn, t, "out.gelu_tanh", lin(gelu_tanh(a), t, "w.gelu.linear_fc2"))
            check(fn, t, "out.gelu_erf", lin(gelu_erf(a), t, "w.gelu.linear_fc2"))
            check(fn, t, "out.silu", silu(x))
            check(fn, t, "out.gelu_tanh_act", gelu_tanh(x))
            check(fn, t, "out.gelu_erf_act", gelu_erf(x))
            c, s = rope_cs(t["in.pos"], t["in.qk"].shape[-1])
            check(fn, t, "out.cos", c)
            check(fn, t, "out.sin", s)
            check(fn, t, "out.rotated", rope(t["in.qk"], c, s))
            check(fn, t, "out.softmax", softmax(x * float(m["softmax_scale"])))
        elif fn == "sdpa.safetensors":
            for suf, mask in (("", None), ("_mask", t["in.mask"])):
                o, p = attn(t["in.q"], t["in.k"], t["in.v"], mask, float(m["scale"]))
                check(fn, t, "out.o" + suf, o)
                check(fn, t, "out.probs" + suf, p)
                check(fn, t, "out.probs" + suf + "_mean", p.mean(0))
        elif fn.startswith("head_"):
            H, rope_on = int(m["H"]), m["rope"] == "1"
            pos = t["in.pos"] if rope_on else None
            y, p = head(t, "w.", t["in.x"], t["in.h"], H, pos)
            check(fn, t, "out.y", y)
            check(fn, t, "out.probs", p)
            check(fn, t, "out.probs_mean", p.mean(0))
            if "in.h_levels" in t:
                y, p = head(t, "w.", t["in.x"], t["in.h_levels"], H)
                check(fn, t, "out.y_levels", y)
                check(fn, t, "out.probs_mean_levels", p.mean(0))
        elif fn.startswith("block_"):
            H, eps, x = int(m["H"]), float(m["eps"]), t["in.x"]
            pos = t["in.pos"] if m["rope"] == "1" else None
            if m["kind"] == "rms_swiglu":
                n1 = lambda u: rms(u, t["w.norm1.weight"], eps)  # noqa: E731
                n2 = lambda u: rms(u, t["w.norm2.weight"], eps)  # noqa: E731
                mlp = lambda u: lin(silu(lin(u, t, "w.mlp.gate_proj")) * lin(u, t, "w.mlp.up_proj"),  # noqa: E731
                                    t, "w.mlp.down_proj")
            else:
                n1 = lambda u: ln(u, t["w.norm1.weight"], t["w.norm1.bias"], eps)  # noqa: E731
                n2 = lambda u: ln(u, t["w.norm2.weight"], t["w.norm2.bias"], eps)  # noqa: E731
                mlp = lambda u: lin(gelu_tanh(lin(u, t, "w.mlp.linear_fc1")), t, "w.mlp.linear_fc2")  # noqa: E731
            a, p = head(t, "w.attn.", n1(x), t["in.h"], H, pos)
            y = x + a
            mm = mlp(n2(y))
            delta = a + mm
            check(fn, t, "out.z", y + mm)
            check(fn, t, "out.delta", delta)
            check(fn, t, "out.probs_mean", p.mean(0))
            check(fn, t, "out.gated_scalar", x + np.tanh(t["in.gate_scalar"]) * delta)
            check(fn, t, "out.gated_channel", x + np.tanh(t["in.gate_channel"]) * delta)
    print(f"worst max|diff| = {worst:.2e} (tolerance {TOL:.0e})")
    return 0 if worst <= TOL else 1


if __name__ == "__main__":
    sys.exit(main())
