#!/usr/bin/env python3
"""Write the trainer's fixtures (tests/train) into tests/data/train_*.safetensors.

Usage (from the repository root):  python tools/make_train_fixtures.py [--out tests/data]

train_box_focus.safetensors
    The box-focus objective of docs/training.md on two tiny "images" (site features given
    directly, raster token order) for both block kinds, with RoPE: the minibatch loss and
    every parameter gradient, by autograd in float64 on the plain reference head
    (tools/reference/glimpse_reference.py). Stored as F32.

train_adamw.safetensors
    torch.optim.AdamW (two parameter groups: decay on rank >= 2 tensors only) driven by a
    warm-up + cosine schedule (LinearLR then CosineAnnealingLR through SequentialLR) and
    torch.nn.utils.clip_grad_norm_, for a few steps on a toy parameter set, in float32, with
    the gradients of every step stored: the C++ optimiser replays them step by step.

Deterministic: byte-identical from one run to the next (fixed seeds, sorted metadata).
"""
import argparse
import math
import os
import sys
import warnings

import torch

import provenance

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "reference"))
from glimpse_reference import HeatmapHead, VisionRotary  # noqa: E402
from make_fixtures import EPS, THETA, f32, params, randomize_norm, raster_pos, save  # noqa: E402

PATCH = 16  # pixels per patch side in the fixture's "images"


# ----------------------------------------------------------------------------------------
# The objective (docs/training.md), written independently of the C++ code
# ----------------------------------------------------------------------------------------
def box_coverage(box, img_w, img_h, gh, gw):
    """Fraction of each patch's area inside box = (x1, y1, x2, y2) in pixels: [gh*gw] raster."""
    x1, y1, x2, y2 = box
    pw, ph = img_w / gw, img_h / gh
    out = torch.zeros(gh * gw, dtype=torch.float64)
    for r in range(gh):
        oy = max(0.0, min(y2, (r + 1) * ph) - max(y1, r * ph))
        for c in range(gw):
            ox = max(0.0, min(x2, (c + 1) * pw) - max(x1, c * pw))
            out[r * gw + c] = (ox * oy) / (pw * ph)
    return out


def union(a, b):
    return (min(a[0], b[0]), min(a[1], b[1]), max(a[2], b[2]), max(a[3], b[3]))


def box_focus_term(head, x, cos, sin, heat, feature_weight):
    """-log(mass) + feature_weight * sum(delta^2) / sum(x^2) for one heatmap.

    mass = mean over heads of sum over in-box keys of the attention that the in-box queries
    (weights 1/count) place on them; in-box = coverage > 0.
    """
    heat = heat.to(torch.float32).to(x.dtype)  # the C++ heatmap is f32
    inside = heat > 0
    w = inside.to(x.dtype) / inside.sum()
    _, delta, probs = head(x, heat.view(-1, 1), cos, sin)  # probs [H, S, S]
    pooled = torch.einsum("q,hqk->hk", w, probs)  # [H, S]
    mass = pooled[:, inside].sum(-1).mean()
    feat = (delta * delta).sum() / (x * x).sum()
    return -torch.log(mass) + feature_weight * feat, mass, feat


def make_box_focus(out_dir):
    t = {}
    meta = {"patch": PATCH, "feature_weight": "0.25", "boxes": "person,object,union", "theta": "10000",
            "eps": "1e-6", "objective": "mean_examples mean_boxes [-log(mass) + fw*sum(delta^2)/sum(x^2)]",
            "q_scale": 3, "dtype": "f32 (truth computed in f64)"}
    fw = 0.25
    # (kind, D, H, I): d = D/H must be divisible by 4 for the 2-D RoPE.
    cases = [("ln_gelu_tanh", 32, 4, 48), ("rms_swiglu", 24, 2, 40)]
    # Two images of different grids; boxes in pixels, cutting patches (fractional coverage).
    images = [
        {"gh": 4, "gw": 6, "person": (20.0, 17.5, 60.25, 64.0), "object": (50.0, 20.0, 96.0, 41.0)},
        {"gh": 5, "gw": 3, "person": (3.0, 18.0, 30.0, 44.0), "object": (17.0, 40.0, 48.0, 80.0)},
    ]
    meta["examples"] = len(images)
    for e, im in enumerate(images):
        gh, gw = im["gh"], im["gw"]
        meta[f"ex{e}.grid"] = f"{gh},{gw}"
        meta[f"ex{e}.image_wh"] = f"{gw * PATCH},{gh * PATCH}"
        t[f"in.ex{e}.person_box"] = torch.tensor(im["person"], dtype=torch.float32)
        t[f"in.ex{e}.object_box"] = torch.tensor(im["object"], dtype=torch.float32)
    for kind, D, H, I in cases:
        torch.manual_seed(4200 + D)
        head = HeatmapHead(D, H, I, kind=kind, eps=EPS)
        randomize_norm(head.norm1, D)
        randomize_norm(head.norm2, D)
        with torch.no_grad():  # sharpen the softmax so the gradients are far from uniform
            head.attn.q_proj.weight.mul_(3.0)
            head.attn.q_proj.bias.mul_(3.0)
        p = f"{kind}."
        meta[p + "D"], meta[p + "H"], meta[p + "I"] = D, H, I
        t.update(params(head, "w." + p))
        head = head.double()
        head.zero_grad()
        d = D // H
        total, per_example = 0.0, []
        for e, im in enumerate(images):
            gh, gw = im["gh"], im["gw"]
            S = gh * gw
            x = torch.randn(S, D)
            t[f"in.{p}ex{e}.x"] = x
            cos, sin = VisionRotary(d, THETA)(raster_pos(gh, gw).double())
            t[f"in.{p}ex{e}.cos"] = f32(cos)
            t[f"in.{p}ex{e}.sin"] = f32(sin)
            boxes = [im["person"], im["object"], union(im["person"], im["object"])]
            loss_e, masses = 0.0, []
            for b in boxes:
                heat = box_coverage(b, gw * PATCH, gh * PATCH, gh, gw)
                term, mass, _ = box_focus_term(head, x.double(), f32(cos).double(), f32(sin).double(), heat, fw)
                loss_e = loss_e + term / len(boxes)
                masses.append(float(mass))
            t[f"out.{p}ex{e}.mass"] = torch.tensor(masses, dtype=torch.float32)
            per_example.append(float(loss_e))
            total = total + loss_e / len(images)
        total.backward()
        t[f"out.{p}loss"] = torch.tensor([float(total)], dtype=torch.float32)
        t[f"out.{p}example_loss"] = torch.tensor(per_example, dtype=torch.float32)
        for n, prm in head.named_parameters():
            t[f"grad.{p}{n}"] = f32(prm.grad)
    save(os.path.join(out_dir, "train_box_focus.safetensors"), t, meta)


# ----------------------------------------------------------------------------------------
# AdamW + warm-up/cosine + global-norm clipping
# ----------------------------------------------------------------------------------------
def make_adamw(out_dir):
    torch.manual_seed(4300)
    steps, warmup = 9, 3
    lr, wd, b1, b2, eps, clip, min_lr_ratio = 0.05, 0.1, 0.9, 0.999, 1e-8, 1.0, 0.1
    shapes = {"layer.weight": (4, 3), "layer.bias": (4,), "norm.weight": (3,), "proj.weight": (2, 4)}
    prm = {n: torch.nn.Parameter(torch.randn(*s)) for n, s in shapes.items()}
    t = {f"in.param.{n}": p.detach().clone() for n, p in prm.items()}
    decay = [p for n, p in prm.items() if p.dim() >= 2]
    no_decay = [p for n, p in prm.items() if p.dim() < 2]
    opt = torch.optim.AdamW([{"params": decay, "weight_decay": wd}, {"params": no_decay, "weight_decay": 0.0}],
                            lr=lr, betas=(b1, b2), eps=eps, foreach=False)
    sched = torch.optim.lr_scheduler.SequentialLR(
        opt,
        [torch.optim.lr_scheduler.LinearLR(opt, start_factor=1.0 / warmup, end_factor=1.0, total_iters=warmup - 1),
         torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=steps - warmup, eta_min=lr * min_lr_ratio)],
        milestones=[warmup])
    # Gradient scales: some steps are clipped (global norm > 1), some are not.
    scales = [0.05, 2.0, 0.3, 5.0, 0.1, 0.2, 3.0, 0.05, 0.4]
    for s in range(steps):
        for n, p in prm.items():
            p.grad = scales[s] * torch.randn_like(p)
            t[f"in.grad.{s}.{n}"] = p.grad.detach().clone()
        norm = torch.nn.utils.clip_grad_norm_(list(prm.values()), clip, foreach=False)
        t[f"out.grad_norm.{s}"] = norm.detach().reshape(1).clone()
        t[f"out.lr.{s}"] = torch.tensor([opt.param_groups[0]["lr"]], dtype=torch.float32)
        opt.step()
        sched.step()
        for n, p in prm.items():
            t[f"out.param.{s}.{n}"] = p.detach().clone()
    for n, p in prm.items():
        st = opt.state[p]
        t[f"out.exp_avg.{n}"] = st["exp_avg"].clone()
        t[f"out.exp_avg_sq.{n}"] = st["exp_avg_sq"].clone()
    # The lr of every step in float64 (the closed form SequentialLR's recursion approximates).
    meta = {"steps": steps, "warmup": warmup, "lr": lr, "weight_decay": wd, "beta1": b1, "beta2": b2, "eps": eps,
            "clip": clip, "min_lr_ratio": min_lr_ratio, "names": ",".join(shapes),
            "decay": "rank >= 2 only", "dtype": "f32 (torch.optim.AdamW, foreach=False)"}
    save(os.path.join(out_dir, "train_adamw.safetensors"), t, meta)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", default=os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests", "data"))
    args = ap.parse_args()
    torch.set_num_threads(1)
    warnings.filterwarnings("ignore", category=UserWarning)  # SequentialLR's epoch-argument deprecation notice
    make_box_focus(args.out)
    make_adamw(args.out)
    provenance.record()


if __name__ == "__main__":
    main()
