"""Fixtures for glimpse-compare: a heatmap head on the tiny Qwen3-VL checkpoint and the
attention maps it must produce for given boxes, computed by transformers + the plain
PyTorch reference head, independently of glimpse.

Writes into tests/data/:
  compare_head/heatmap_head.safetensors   a head-only directory as glimpse-train writes it
  compare_head/glimpse_head.json          (random head: ln_gelu_tanh block, D 64, H 4, I 96,
                                           q_proj scaled x8 so the softmax is not flat)
  compare_expected.safetensors            for the image tests/data/images/tall_240x90.png:
    heatmap.<box>      [gh, gw]     per-patch coverage of the box (raster), an independent
                                    implementation of the box -> patch mapping
    attention.<box>    [gh, gw]     the head's attention of the in-box queries (patches with
                                    coverage > 0), weights 1/count, mean over heads, raster
    per_head.<box>     [H, gh, gw]
  metadata: the boxes (pixels of the 90x240 original), grid, resized size.
* tests/data/inner_head_expected.safetensors: the same head after block 1 of 4 (residual), the
  person box's heatmap: the tower's hidden, merged and deepstack outputs (f64 truth, f32).

Pipeline (float64 throughout, from the stored f32 weights):
  image -> Qwen2VLImageProcessor (Qwen3-VL settings: patch 16, merge 2, min_pixels 65536,
  mean/std 0.5) -> Qwen3VLVisionModel (transformers 5.23) -> last_hidden_state (the features
  before the merger, merge-block order) -> HeatmapHead(ln_gelu_tanh) with 2-D RoPE
  (VisionRotary(D/H), positions (row, col) of each merge-block token) -> probs [H, S, S].

Run: /work/venv/bin/python tools/make_compare_fixtures.py   (about 5 s on a CPU)
"""

import json
import os
import sys

import numpy as np
import torch
from PIL import Image
from safetensors.torch import load_file
from transformers import Qwen3VLConfig, Qwen3VLForConditionalGeneration

import provenance
from provenance import save_file
from transformers.models.qwen2_vl.image_processing_qwen2_vl import Qwen2VLImageProcessor

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "reference"))
from glimpse_reference import HeatmapHead, VisionRotary  # noqa: E402

ROOT = os.path.join(HERE, "..", "tests", "data")
CKPT = os.path.join(ROOT, "qwen3_vl_tiny")
IMAGE = os.path.join(ROOT, "images", "tall_240x90.png")
# Pixels of the 90 (w) x 240 (h) original: x1 y1 x2 y2. Edge cases on purpose: a box
# touching the left and top edges, one touching the right and bottom edges, one inside a
# single patch column boundary.
BOXES = {
    "person": [0.0, 0.0, 50.0, 130.0],
    "object": [40.0, 150.0, 90.0, 240.0],
    "interaction": [0.0, 0.0, 90.0, 240.0],
    "small": [33.0, 70.0, 36.0, 74.0],
}
Q_SCALE = 8.0


def box_coverage(box, W, H, gh, gw):
    x1, y1, x2, y2 = box
    pw, ph = W / gw, H / gh
    out = np.zeros((gh, gw))
    for r in range(gh):
        oy = max(0.0, min(y2, (r + 1) * ph) - max(y1, r * ph))
        for c in range(gw):
            ox = max(0.0, min(x2, (c + 1) * pw) - max(x1, c * pw))
            out[r, c] = ox * oy / (pw * ph)
    return out


def merge_order(gh, gw, m=2):
    """raster index of each merge-block token (2x2 blocks of the raster, block-raster order)."""
    idx = np.arange(gh * gw).reshape(gh // m, m, gw // m, m).transpose(0, 2, 1, 3).reshape(-1)
    return idx


def make_inner_head(visual, head, batch, order, cov):
    """The same head placed after an INNER block (block 1 of 4, residual): the rest of the tower,
    the deepstack taps (Qwen3: blocks 1 and 2, the first of which sees the head's output) and the
    merger run on what it added. Written as a forward hook on visual.blocks[1] that returns
    x + delta = the head block's z, the semantics of glimpse's site::after_block(1)."""
    S = len(order)
    h_tok = torch.tensor(cov.reshape(-1)[order], dtype=torch.float64).reshape(S, 1)
    pos = torch.tensor([[r // cov.shape[1], r % cov.shape[1]] for r in order], dtype=torch.float64)
    D, H = visual.config.hidden_size, visual.config.num_heads
    cos, sin = VisionRotary(D // H)(pos)

    def hook(_mod, _args, output):
        z, _, _ = head(output, h_tok, cos, sin)
        return z

    with torch.no_grad():
        plain = visual(batch["pixel_values"].double(), grid_thw=batch["image_grid_thw"])
        h = visual.blocks[1].register_forward_hook(hook)
        try:
            got = visual(batch["pixel_values"].double(), grid_thw=batch["image_grid_thw"])
        finally:
            h.remove()
    t = {"heatmap.person": torch.tensor(cov, dtype=torch.float32),
         "hidden": got.last_hidden_state.float().contiguous(), "merged": got.pooler_output.float().contiguous()}
    for j, d in enumerate(got.deepstack_features):
        t[f"deepstack.{j}"] = d.float().contiguous()
    change = (got.pooler_output - plain.pooler_output).abs().max().item()
    assert change > 1e-2, change  # the head really changes the tower's output
    meta = {"site": "after_block(1)", "combine": "residual", "heatmap": "box.person of compare_expected",
            "checkpoint": "qwen3_vl_tiny", "head_dir": "compare_head", "image": "images/tall_240x90.png",
            "hidden_order": "merge-block", "merged_change_vs_no_head": f"{change:.3e}"}
    save_file(t, os.path.join(ROOT, "inner_head_expected.safetensors"), metadata=meta)


def main():
    torch.manual_seed(0)
    cfg = json.load(open(os.path.join(CKPT, "config.json")))
    vc = cfg["vision_config"]
    D, H, I = vc["hidden_size"], vc["num_heads"], vc["intermediate_size"]
    model = Qwen3VLForConditionalGeneration(Qwen3VLConfig(**{k: v for k, v in cfg.items()
                                                             if k in ("vision_config", "text_config")}))
    sd = load_file(os.path.join(CKPT, "model.safetensors"))
    missing, _ = model.load_state_dict(sd, strict=False)
    assert not [k for k in missing if "visual" in k], missing
    visual = model.model.visual.double().eval()

    proc = Qwen2VLImageProcessor(patch_size=16, temporal_patch_size=2, merge_size=2, min_pixels=65536,
                                 max_pixels=16777216, image_mean=[0.5] * 3, image_std=[0.5] * 3)
    im = Image.open(IMAGE).convert("RGB")
    W, Hh = im.size
    b = proc(images=[im], return_tensors="pt")
    grid = b["image_grid_thw"]
    _, gh, gw = [int(v) for v in grid[0]]
    S = gh * gw
    with torch.no_grad():
        x = visual(b["pixel_values"].double(), grid_thw=grid).last_hidden_state  # [S, D] merge-block order

    order = merge_order(gh, gw)
    pos = torch.tensor([[r // gw, r % gw] for r in order], dtype=torch.float64)
    cos, sin = VisionRotary(D // H)(pos)

    head = HeatmapHead(D, H, I, kind="ln_gelu_tanh").double()
    with torch.no_grad():
        g = torch.Generator().manual_seed(1234)
        for n, p in head.named_parameters():
            if "norm" in n and n.endswith("weight"):
                p.copy_(1 + 0.2 * torch.randn(p.shape, generator=g, dtype=torch.float64))
            elif "norm" in n:
                p.copy_(0.1 * torch.randn(p.shape, generator=g, dtype=torch.float64))
            else:
                p.copy_((p.shape[-1] ** -0.5) * (2 * torch.rand(p.shape, generator=g, dtype=torch.float64) - 1))
        head.attn.q_proj.weight.mul_(Q_SCALE)
        head.attn.q_proj.bias.mul_(Q_SCALE)
    # Store f32 weights; compute the truth from exactly those values.
    weights = {f"heatmap_head.{n}": p.detach().float().contiguous() for n, p in head.named_parameters()}
    with torch.no_grad():
        for n, p in head.named_parameters():
            p.copy_(weights[f"heatmap_head.{n}"].double())

    out, meta = {}, {}
    for name, box in BOXES.items():
        cov = box_coverage(box, W, Hh, gh, gw)
        h_tok = torch.tensor(cov.reshape(-1)[order], dtype=torch.float64).reshape(S, 1)
        with torch.no_grad():
            _, _, probs = head(x, h_tok, cos, sin)  # [H, S, S] token order
        q = (h_tok[:, 0] != 0).double()
        pooled = torch.einsum("i,hij->hj", q / q.sum(), probs)  # [H, S] keys in token order
        raster = torch.zeros(H, S, dtype=torch.float64)
        raster[:, torch.tensor(order)] = pooled
        out[f"heatmap.{name}"] = torch.tensor(cov, dtype=torch.float32)
        out[f"per_head.{name}"] = raster.reshape(H, gh, gw).float()
        out[f"attention.{name}"] = raster.mean(0).reshape(gh, gw).float()
        meta[f"box.{name}"] = json.dumps(box)
    meta.update({"image": "images/tall_240x90.png", "image_wh": json.dumps([W, Hh]), "grid_hw": json.dumps([gh, gw]),
                 "checkpoint": "qwen3_vl_tiny", "head_dir": "compare_head", "torch": torch.__version__,
                 "q_scale": str(Q_SCALE)})

    hd = os.path.join(ROOT, "compare_head")
    os.makedirs(hd, exist_ok=True)
    save_file(weights, os.path.join(hd, "heatmap_head.safetensors"), metadata={"format": "pt"})
    with open(os.path.join(hd, "glimpse_head.json"), "w") as f:
        json.dump({"written_by": "tools/make_compare_fixtures.py", "encoder_family": "qwen3_vl",
                   "kind": "ln_gelu_tanh", "dim": D, "heads": H, "intermediate": I, "rope": True,
                   "note": "random head for the glimpse-compare parity test (not trained)"}, f, indent=2)
        f.write("\n")
    save_file(out, os.path.join(ROOT, "compare_expected.safetensors"), metadata=meta)
    make_inner_head(visual, head, b, order, cov=box_coverage(BOXES["person"], W, Hh, gh, gw))
    provenance.wrote(os.path.join(hd, "glimpse_head.json"))
    provenance.record()
    print(f"grid {gh}x{gw}, S={S}; wrote compare_head/ and compare_expected.safetensors")
    for name in BOXES:
        a = out[f"attention.{name}"]
        print(f"  {name:12s} max {a.max():.4f}  sum {a.sum():.6f}")


if __name__ == "__main__":
    main()
