#!/usr/bin/env python3
"""Checkpoints written by PyTorch itself with a heatmap head inside, and the maps PyTorch computes.

What a researcher brings: the whole Qwen model saved by their trainer with `save_pretrained`
(sharded: model-0000k-of-0000n.safetensors + model.safetensors.index.json), the head's tensors
under the trainer's module path. The head modules below are written from the seed's description
(`Qwen2_5VisionHeatmapAttentionHead`: q_proj 1 -> hidden, k/v from the vision features, 2-D RoPE,
output projection; `Qwen2_5VisionHeatmapHead`: norm1, attn, norm2, MLP of the host encoder's
blocks, residual) — independent of glimpse and of tools/reference.

Writes into tests/data/pt_heads/:
  qwen3_f32/     Qwen3-VL tiny + head at visual.heatmap_head (saved as model.visual.heatmap_head.*),
                 float32, sharded
  qwen2_5_bf16/  Qwen2.5-VL tiny + head at visual.spatial_linking.block (saved as
                 visual.spatial_linking.block.*), bfloat16, sharded
  qwen3_renamed_bf16/  Qwen3-VL tiny + a head whose trainer spelt its leaves otherwise (q as a
                 [1, D] parameter `attention.query`, `attention.out`, `pre_norm`, `ffn.*`) at
                 visual.hm, bfloat16, sharded; names.json maps them (docs/weights.md)
  expected.safetensors   per case c and box b:
    <c>.attention.<b>  [gh, gw]     the head's attention of the in-box queries (patches the box
                                    touches), weights 1/count, mean over heads, raster order
    <c>.per_head.<b>   [H, gh, gw]
  metadata: boxes, image, grids, the head's module path per case, versions.

The towers are the committed tiny checkpoints (tests/data/qwen*_vl_tiny, loaded with
from_pretrained); the head's weights are random (q_proj x8 so the softmax is not flat). The
truth is float64 (f32 casts inside RMSNorm and the vision rotary removed, as in
make_tiny_checkpoints.py) from the weights exactly as stored (bf16 upcast). The head runs on what
the tower's last block returns, with the position embeddings that block received (captured by a
forward hook): the features before the merger, in the tower's own token order (Qwen2.5: window
order; Qwen3: merge-block order), mapped back to raster order here from transformers' own window
index.

Run from the repo root:  /work/venv/bin/python tools/make_pt_head_fixtures.py   (about 10 s)
"""

import copy
import json
import math
import os
import shutil
import sys

import torch
import torch.nn as nn
import transformers
from PIL import Image
from transformers import Qwen2_5_VLForConditionalGeneration, Qwen3VLForConditionalGeneration
from transformers.models.qwen2_5_vl import modeling_qwen2_5_vl as m25
from transformers.models.qwen2_vl.image_processing_qwen2_vl import Qwen2VLImageProcessor
from transformers.models.qwen3_vl import modeling_qwen3_vl as m3

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
from make_compare_fixtures import box_coverage, merge_order  # noqa: E402
from make_tiny_checkpoints import _rms_forward, _rotary, window_index_of  # noqa: E402

import provenance  # noqa: E402

ROOT = os.path.join(HERE, "..", "tests", "data")
OUT = os.path.join(ROOT, "pt_heads")
IMAGE = os.path.join(ROOT, "images", "wide_67x203.png")
# Pixels of the 203 (w) x 67 (h) original: x1 y1 x2 y2.
BOXES = {
    "person": [10.0, 5.0, 80.0, 60.0],
    "object": [120.0, 20.0, 203.0, 67.0],
    "interaction": [10.0, 5.0, 203.0, 67.0],
}
Q_SCALE = 8.0


class Qwen2_5VisionHeatmapAttentionHead(nn.Module):
    """Cross-attention: queries from one heatmap scalar per patch, keys/values from the features."""

    def __init__(self, dim, num_heads):
        super().__init__()
        self.num_heads, self.head_dim = num_heads, dim // num_heads
        self.q_proj = nn.Linear(1, dim)  # the seed: "a query projection of shape (1, hidden_size)"
        self.k_proj = nn.Linear(dim, dim)
        self.v_proj = nn.Linear(dim, dim)
        self.proj = nn.Linear(dim, dim)

    def query(self, heatmap):
        return self.q_proj(heatmap)

    def out(self, o):
        return self.proj(o)

    def forward(self, x, heatmap, position_embeddings):
        S, H, d = x.shape[0], self.num_heads, self.head_dim
        q = self.query(heatmap).view(S, H, d)
        k = self.k_proj(x).view(S, H, d)
        v = self.v_proj(x).view(S, H, d)
        cos, sin = position_embeddings
        q, k = m25.apply_rotary_pos_emb_vision(q, k, cos, sin)
        probs = torch.softmax(torch.einsum("ihd,jhd->hij", q, k) / math.sqrt(d), dim=-1)  # [H, S, S]
        o = torch.einsum("hij,jhd->ihd", probs, v).reshape(S, H * d)
        return self.out(o), probs


class RenamedAttention(Qwen2_5VisionHeatmapAttentionHead):
    """The same head as another trainer wrote it: q a raw [1, D] parameter, `out` for proj."""

    def __init__(self, dim, num_heads):
        super().__init__(dim, num_heads)
        del self.q_proj, self.proj
        self.query_weight = nn.Parameter(torch.zeros(1, dim))
        self.query_bias = nn.Parameter(torch.zeros(dim))
        self.out_proj = nn.Linear(dim, dim)

    def query(self, heatmap):
        return heatmap @ self.query_weight + self.query_bias

    def out(self, o):
        return self.out_proj(o)


class Qwen2_5VisionHeatmapHead(nn.Module):
    """Pre-norm block around the head, as the host encoder's blocks: z = y + mlp(norm2(y)), y = x + attn."""

    def __init__(self, visual, family, renamed=False):
        super().__init__()
        blk = visual.blocks[0]
        D, H = visual.config.hidden_size, visual.config.num_heads
        norm = lambda: type(blk.norm1)(D, eps=1e-6)  # noqa: E731
        mlp = (type(blk.mlp)(visual.config, bias=True) if family == "qwen2_5_vl" else type(blk.mlp)(visual.config))
        attn = (RenamedAttention if renamed else Qwen2_5VisionHeatmapAttentionHead)(D, H)
        if renamed:
            self.pre_norm, self.attention, self.post_norm, self.ffn = norm(), attn, norm(), mlp
        else:
            self.norm1, self.attn, self.norm2, self.mlp = norm(), attn, norm(), mlp
        self.renamed = renamed

    def parts(self):
        if self.renamed:
            return self.pre_norm, self.attention, self.post_norm, self.ffn
        return self.norm1, self.attn, self.norm2, self.mlp

    def forward(self, x, heatmap, position_embeddings):
        n1, attn, n2, mlp = self.parts()
        a, probs = attn(n1(x), heatmap, position_embeddings)
        y = x + a
        return y + mlp(n2(y)), probs


CASES = [
    # name, family, tiny checkpoint, module path under the vision tower, dtype, renamed leaves
    ("qwen3_f32", "qwen3_vl", "qwen3_vl_tiny", "heatmap_head", torch.float32, False),
    ("qwen2_5_bf16", "qwen2_5_vl", "qwen2_5_vl_tiny", "spatial_linking.block", torch.bfloat16, False),
    ("qwen3_renamed_bf16", "qwen3_vl", "qwen3_vl_tiny", "hm", torch.bfloat16, True),
]
NAMES_JSON = {
    "comment": "the leaves of a head whose trainer named them otherwise (tools/make_pt_head_fixtures.py)",
    "leaves": {"norm1": "pre_norm", "norm2": "post_norm", "attn": "attention", "attn.q_proj.weight":
               "attention.query_weight", "attn.q_proj.bias": "attention.query_bias", "attn.proj": "attention.out_proj",
               "mlp": "ffn"},
}


def attach(visual, path, module):
    parent = visual
    parts = path.split(".")
    for p in parts[:-1]:
        if not hasattr(parent, p):
            parent.add_module(p, nn.Module())
        parent = getattr(parent, p)
    parent.add_module(parts[-1], module)


def randomise_head(head, g):
    with torch.no_grad():
        for n, p in head.named_parameters():
            if "norm" in n and n.endswith("weight"):
                p.copy_(1 + 0.2 * torch.randn(p.shape, generator=g))
            elif "norm" in n:
                p.copy_(0.1 * torch.randn(p.shape, generator=g))
            elif "query" in n or "q_proj" in n:
                p.copy_(Q_SCALE * (2 * torch.rand(p.shape, generator=g) - 1))
            else:
                fan_in = p.shape[-1] if p.dim() > 1 else p.shape[0]
                p.copy_((fan_in ** -0.5) * (2 * torch.rand(p.shape, generator=g) - 1))


def processor(family):
    if family == "qwen2_5_vl":  # glimpse's defaults without preprocessor_config.json: Qwen2.5-VL's released ones
        return Qwen2VLImageProcessor(patch_size=14, temporal_patch_size=2, merge_size=2, min_pixels=3136,
                                     max_pixels=12845056)
    return Qwen2VLImageProcessor(patch_size=16, temporal_patch_size=2, merge_size=2, min_pixels=65536,
                                 max_pixels=16777216, image_mean=[0.5] * 3, image_std=[0.5] * 3)


def site(visual, pixel_values, grid):
    """The last block's output and the position embeddings it received (the tower's order)."""
    got = {}

    def hook(_mod, _args, kwargs, output):
        got["x"] = output[0] if isinstance(output, tuple) else output
        got["pe"] = kwargs["position_embeddings"]

    h = visual.blocks[-1].register_forward_hook(hook, with_kwargs=True)
    with torch.no_grad():
        visual(pixel_values, grid_thw=grid)
    h.remove()
    return got["x"], got["pe"]


def main():
    m25.Qwen2_5_VLRMSNorm.forward = _rms_forward
    m25.apply_rotary_pos_emb_vision = _rotary
    m3.apply_rotary_pos_emb_vision = _rotary
    if os.path.exists(OUT):
        shutil.rmtree(OUT)
    os.makedirs(OUT)
    im = Image.open(IMAGE).convert("RGB")
    W, Hh = im.size
    expected, meta = {}, {}
    for ci, (case, family, tiny, path, dtype, renamed) in enumerate(CASES):
        cls = Qwen2_5_VLForConditionalGeneration if family == "qwen2_5_vl" else Qwen3VLForConditionalGeneration
        model = cls.from_pretrained(os.path.join(ROOT, tiny), dtype=torch.float32).eval()
        visual = model.model.visual
        head = Qwen2_5VisionHeatmapHead(visual, family, renamed)
        randomise_head(head, torch.Generator().manual_seed(100 + ci))
        attach(visual, path, head)
        # Round the parameters only (model.to(bfloat16) would also round the rotary's inv_freq
        # buffer, which transformers keeps in float32).
        if dtype == torch.bfloat16:
            with torch.no_grad():
                for p in model.parameters():
                    p.copy_(p.bfloat16().float())
        d = os.path.join(OUT, case)
        # A copy is cast for saving: casting the model itself would round its rotary buffer too.
        copy.deepcopy(model).to(dtype).save_pretrained(d, max_shard_size="400KB")
        for f in os.listdir(d):
            if not (f.endswith(".safetensors") or f in ("config.json", "model.safetensors.index.json")):
                os.remove(os.path.join(d, f))
        if renamed:
            with open(os.path.join(d, "names.json"), "w") as f:
                json.dump(NAMES_JSON, f, indent=2)
                f.write("\n")
        shards = sorted(f for f in os.listdir(d) if f.endswith(".safetensors"))
        assert len(shards) >= 2, shards

        # f64 truth from exactly the stored values.
        visual = model.model.visual.double()
        b = processor(family)(images=[im], return_tensors="pt")
        grid = b["image_grid_thw"]
        _, gh, gw = [int(v) for v in grid[0]]
        S = gh * gw
        x, (cos, sin) = site(visual, b["pixel_values"].double(), grid)
        order = merge_order(gh, gw)  # merge-block token -> raster
        if family == "qwen2_5_vl":  # window order: merged units in window_index order, 4 rows each
            wi = window_index_of(grid, visual).tolist()
            order = [order[u * 4 + j] for u in wi for j in range(4)]
        order = torch.tensor(order)
        H = visual.config.num_heads
        for bn, box in BOXES.items():
            cov = torch.tensor(box_coverage(box, W, Hh, gh, gw), dtype=torch.float64).reshape(-1)
            h_tok = cov[order].reshape(S, 1)
            with torch.no_grad():
                _, probs = head.double()(x, h_tok, (cos.double(), sin.double()))
            q = (h_tok[:, 0] != 0).double()
            pooled = torch.einsum("i,hij->hj", q / q.sum(), probs)
            raster = torch.zeros(H, S, dtype=torch.float64)
            raster[:, order] = pooled
            expected[f"{case}.per_head.{bn}"] = raster.reshape(H, gh, gw).float()
            expected[f"{case}.attention.{bn}"] = raster.mean(0).reshape(gh, gw).float()
        # The prefix as saved (transformers may rename module paths on save), from the index.
        with open(os.path.join(d, "model.safetensors.index.json")) as f:
            keys = json.load(f)["weight_map"].keys()
        leaf = "attention.query_weight" if renamed else "attn.q_proj.weight"
        prefix = [k[: -len(leaf) - 1] for k in keys if k.endswith("." + leaf)]
        assert len(prefix) == 1, prefix
        prefix = prefix[0]
        assert prefix.endswith(path), (prefix, path)
        meta[f"{case}.prefix"] = prefix
        meta[f"{case}.grid_hw"] = json.dumps([gh, gw])
        meta[f"{case}.family"] = family
        meta[f"{case}.dtype"] = str(dtype).replace("torch.", "")
        meta[f"{case}.shards"] = str(len(shards))
        print(f"{case}: {family}, head at {prefix}, {len(shards)} shards, grid {gh}x{gw}")
    for bn, box in BOXES.items():
        meta[f"box.{bn}"] = json.dumps(box)
    meta.update({"image": "images/wide_67x203.png", "image_wh": json.dumps([W, Hh]), "torch": torch.__version__,
                 "transformers": transformers.__version__, "q_scale": str(Q_SCALE),
                 "truth": "float64 from the stored weights (f32 casts in RMSNorm/rotary removed)"})
    provenance.save_file(expected, os.path.join(OUT, "expected.safetensors"), meta)
    provenance.wrote(OUT)
    provenance.record()
    total = sum(os.path.getsize(os.path.join(dp, f)) for dp, _, fs in os.walk(OUT) for f in fs)
    print(f"wrote {OUT}: {total / 1e6:.2f} MB")


if __name__ == "__main__":
    sys.exit(main())
