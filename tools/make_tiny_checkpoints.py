#!/usr/bin/env python3
"""Tiny random-weight Qwen2.5-VL / Qwen3-VL checkpoints and their vision-tower outputs.

Builds `Qwen2_5_VLForConditionalGeneration` and `Qwen3VLForConditionalGeneration`
with transformers (checked with 5.23) from tiny configs (vision: depth 4, D 64,
4 heads of 16, MLP 96, out 80; text: 1 layer), randomises every vision parameter
(linear weights U(+-1/sqrt(in)), biases small, norm weights 1 +- 0.2, so that no
norm is an identity), and writes, under tests/data/:

  qwen2_5_vl_tiny/            config.json + model.safetensors (f32, HF layout `visual.*`)
  qwen3_vl_tiny/              config.json + model.safetensors (f32, `model.visual.*`)
  qwen2_5_vl_tiny_expected.safetensors, qwen3_vl_tiny_expected.safetensors

Each expected file holds, per case k:
  pixel_values.k  [N, C*T*p*p] BF16 (exact values of the f32 input), N(0, 1) (merge-block row order, as the processor emits)
  grid_thw.k      [n_images, 3] f32
  hidden.k        [N, D] last_hidden_state in MERGE-BLOCK order. Qwen2.5's
                  last_hidden_state is window-ordered in transformers 5.x: it is
                  un-windowed here (rows in 4-row groups by argsort(window_index)).
  merged.k        [N/4, out] pooler_output
  deepstack.k.j   [N/4, out] (Qwen3 only)
computed with model.double() (the f64 truth, with the float32 casts inside
RMSNorm and apply_rotary_pos_emb_vision removed; RoPE cos/sin stay the float32
tables as transformers builds them). Metadata records the grids and torch's own
float32 error against that truth, per output (max abs, max |ref|).
bf16: to stay under 4 MB no bf16 checkpoint is stored; the tests write one
(the f32 Qwen3 weights rounded to bf16, round-to-nearest-even as torch does)
and compare it with `bf16.<output>.0` in the Qwen3 file: the f64 forward of the
bf16-rounded weights on case 0's pixels.

Run from the repo root:  /work/venv/bin/python tools/make_tiny_checkpoints.py
"""

import json
import os
import shutil
import sys

import torch

import transformers
from transformers import (Qwen2_5_VLConfig, Qwen2_5_VLForConditionalGeneration, Qwen3VLConfig,
                          Qwen3VLForConditionalGeneration)
from transformers.models.qwen2_5_vl import modeling_qwen2_5_vl as m25
from transformers.models.qwen3_vl import modeling_qwen3_vl as m3

import provenance

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests", "data")

TEXT = dict(vocab_size=64, hidden_size=80, intermediate_size=32, num_hidden_layers=1, num_attention_heads=2,
            num_key_value_heads=1, max_position_embeddings=256)

# Qwen2.5-VL: p 14, window 112 px = 4 merged tokens. Cases: square whose merged
# grid (4x4) is a multiple of the window (a full padding row/column of empty
# windows); non-square 5x6 merged (2x2 windows, partial in both directions); a batch of an image and a
# 2-frame video.
CASES_25 = [[[1, 8, 8]], [[1, 10, 12]], [[1, 4, 6], [2, 4, 4]]]
# Qwen3-VL: p 16, 8x8 position table.
CASES_3 = [[[1, 4, 4]], [[1, 6, 10]], [[1, 4, 6], [1, 8, 4]]]


# --- f64 truth: transformers casts to float32 inside RMSNorm and the vision
# rotary; for a float64 reference those casts would inject f32 rounding.
def _rms_forward(self, hidden_states):
    var = hidden_states.pow(2).mean(-1, keepdim=True)
    return self.weight * (hidden_states * torch.rsqrt(var + self.variance_epsilon))


def _rotary(q, k, cos, sin):
    cos, sin = cos.unsqueeze(-2).to(q.dtype), sin.unsqueeze(-2).to(q.dtype)
    return q * cos + m25.rotate_half(q) * sin, k * cos + m25.rotate_half(k) * sin


# Attention probabilities of the tower's own blocks, as transformers' eager path computes them
# (each block's attention calls eager_attention_forward once per cu_seqlens segment: every
# window in Qwen2.5's windowed blocks, every image in full ones). The replacement does the
# same math without eager's float32 softmax cast, so a float64 run gives the f64 truth.
def attention_probs(visual, pix, grid, family, blocks):
    mod = m25 if family == "qwen2_5_vl" else m3
    original, impl = mod.eager_attention_forward, visual.config._attn_implementation
    current, captured = [-1], {b: [] for b in blocks}

    def eager(module, query, key, value, attention_mask, scaling, dropout=0.0, **kwargs):
        w = torch.matmul(query, key.transpose(2, 3)) * scaling
        if attention_mask is not None:
            w = w + attention_mask
        w = torch.softmax(w, dim=-1)
        if current[0] in captured:
            captured[current[0]].append(w[0])  # [H, l, l] for one segment
        return torch.matmul(w, value).transpose(1, 2).contiguous(), w

    hooks = [blk.register_forward_pre_hook(lambda m, a, i=i: current.__setitem__(0, i))
             for i, blk in enumerate(visual.blocks)]
    mod.eager_attention_forward = eager
    visual.config._attn_implementation = "eager"
    try:
        run(visual, pix, grid, family)
    finally:
        mod.eager_attention_forward = original
        visual.config._attn_implementation = impl
        for h in hooks:
            h.remove()
    out = {}
    for b, segs in captured.items():
        n = sum(x.shape[-1] for x in segs)
        full = torch.zeros(segs[0].shape[0], n, n, dtype=segs[0].dtype)
        o = 0
        for x in segs:  # block-diagonal, in the block's own token order
            full[:, o:o + x.shape[-1], o:o + x.shape[-1]] = x
            o += x.shape[-1]
        out[b] = (full, len(segs))
    return out


def randomise(visual, g):
    with torch.no_grad():
        for name, p in visual.named_parameters():
            leaf = name.split(".")[-1]
            is_norm = any(s in name for s in ("norm", "ln_q"))
            if is_norm and leaf == "weight":
                p.copy_(1 + 0.2 * (2 * torch.rand(p.shape, generator=g) - 1))
            elif leaf == "bias":
                p.copy_(0.1 * (2 * torch.rand(p.shape, generator=g) - 1))
            elif "pos_embed" in name:
                p.copy_(0.5 * torch.randn(p.shape, generator=g))
            else:
                fan_in = p[0].numel()
                b = fan_in ** -0.5
                p.copy_(b * (2 * torch.rand(p.shape, generator=g) - 1))


def window_index_of(grid_thw, visual):
    from transformers import vision_utils as vu
    wi, _ = vu.get_vision_window_index(grid_thw, spatial_merge_size=visual.spatial_merge_size,
                                       window_size=visual.window_size, patch_size=visual.patch_size)
    return wi


def run(visual, pix, grid, family):
    out = visual(pix, grid_thw=grid)
    hidden = out.last_hidden_state
    if family == "qwen2_5_vl":  # window order -> merge-block order, in 4-row groups
        wi = window_index_of(grid, visual)
        inv = torch.argsort(wi)
        hidden = hidden.reshape(-1, 4, hidden.shape[-1])[inv].reshape(-1, hidden.shape[-1])
    res = {"hidden": hidden, "merged": out.pooler_output}
    if family == "qwen3_vl":
        for j, d in enumerate(out.deepstack_features):
            res[f"deepstack.{j}"] = d
    return res


def save_dir(model, path, dtype):
    if os.path.exists(path):
        shutil.rmtree(path)
    model.to(dtype).save_pretrained(path, safe_serialization=True)
    for f in os.listdir(path):
        if f not in ("config.json", "model.safetensors"):
            os.remove(os.path.join(path, f))


def build(family):
    g = torch.Generator().manual_seed(1234 if family == "qwen2_5_vl" else 4321)
    if family == "qwen2_5_vl":
        vision = dict(depth=4, hidden_size=64, num_heads=4, intermediate_size=96, out_hidden_size=80, patch_size=14,
                      temporal_patch_size=2, spatial_merge_size=2, window_size=112, fullatt_block_indexes=[1, 3],
                      hidden_act="silu", in_channels=3)
        text = dict(TEXT, rope_parameters={"rope_type": "default", "rope_theta": 10000.0, "mrope_section": [4, 8, 8]})
        cfg = Qwen2_5_VLConfig(vision_config=vision, text_config=text)
        model = Qwen2_5_VLForConditionalGeneration(cfg)
    else:
        vision = dict(depth=4, hidden_size=64, num_heads=4, intermediate_size=96, out_hidden_size=80, patch_size=16,
                      temporal_patch_size=2, spatial_merge_size=2, num_position_embeddings=64,
                      deepstack_visual_indexes=[1, 2], hidden_act="gelu_pytorch_tanh", in_channels=3)
        text = dict(TEXT, head_dim=40,
                    rope_parameters={"rope_type": "default", "rope_theta": 10000.0, "mrope_section": [4, 8, 8]})
        cfg = Qwen3VLConfig(vision_config=vision, text_config=text)
        model = Qwen3VLForConditionalGeneration(cfg)
    model.eval()
    randomise(model.model.visual, g)
    return model, g


def expected(model, g, family, cases, prefix=""):
    visual = model.model.visual
    p = visual.config.patch_size
    T = visual.config.temporal_patch_size
    C = visual.config.in_channels
    tensors, meta = {}, {}
    for k, grids in enumerate(cases):
        grid = torch.tensor(grids, dtype=torch.long)
        n = int((grid[:, 0] * grid[:, 1] * grid[:, 2]).sum())
        # N(0, 1) rounded to bf16 values: exact in f32, stored as BF16 to halve the file.
        pix = torch.randn(n, C * T * p * p, generator=g, dtype=torch.float32).bfloat16().float()
        with torch.no_grad():
            visual.double()
            ref = run(visual, pix.double(), grid, family)
            visual.float()
            f32 = run(visual, pix, grid, family)
        if not prefix:
            tensors[f"pixel_values.{k}"] = pix.bfloat16()
            tensors[f"grid_thw.{k}"] = grid.float()
        meta[f"{prefix}grids.{k}"] = json.dumps(grids)
        for name, t in ref.items():
            tensors[f"{prefix}{name}.{k}"] = t.float().contiguous()
            e = (f32[name].double() - t).abs().max().item()
            meta[f"{prefix}torch_f32_max_abs.{name}.{k}"] = f"{e:.3e}"
            meta[f"{prefix}max_ref.{name}.{k}"] = f"{t.abs().max().item():.6e}"
    return tensors, meta


def main():
    m25.Qwen2_5_VLRMSNorm.forward = _rms_forward
    m25.apply_rotary_pos_emb_vision = _rotary
    m3.apply_rotary_pos_emb_vision = _rotary
    torch.manual_seed(0)
    base_meta = {"transformers": transformers.__version__, "torch": torch.__version__,
                 "truth": "float64 forward (f32 casts in RMSNorm/rotary removed; RoPE cos/sin as float32 tables)"}

    for family, cases, name in (("qwen2_5_vl", CASES_25, "qwen2_5_vl_tiny"), ("qwen3_vl", CASES_3, "qwen3_vl_tiny")):
        model, g = build(family)
        model.config._attn_implementation = "sdpa"
        tensors, meta = expected(model, g, family, cases)
        meta.update(base_meta)
        meta["family"] = family
        meta["cases"] = str(len(cases))
        if family == "qwen2_5_vl":
            meta["hidden_order"] = "merge-block (un-windowed from transformers' window-ordered last_hidden_state)"
        else:
            meta["hidden_order"] = "merge-block (as transformers returns it)"
        # The blocks' own attention maps: Qwen2.5 case 1 (10x12 patches, 2x2 windows, partial in
        # both directions) in windowed block 0 and full block 3; Qwen3 case 1 in its last block.
        with torch.no_grad():
            visual = model.model.visual.double()
            k = 1
            blocks = [0, 3] if family == "qwen2_5_vl" else [3]
            probs = attention_probs(visual, tensors[f"pixel_values.{k}"].double(), torch.tensor(cases[k]), family,
                                    blocks)
            visual.float()
        for b, (t, segs) in probs.items():
            tensors[f"attn_probs.{b}.{k}"] = t.float().contiguous()
            meta[f"attn_probs.{b}.{k}.segments"] = str(segs)
        meta["attn_probs"] = ("attn_probs.<block>.<case>: [H, N, N] softmax(q k^T / sqrt(d)) of that block, f64, "
                              "rows and columns in the block's token order (Qwen2.5: window order), zero "
                              "across segments; from eager_attention_forward without its f32 softmax cast")
        save_dir(model, os.path.join(ROOT, name), torch.float32)
        if family == "qwen3_vl":
            # bf16 copy: expected outputs of the bf16-rounded weights, computed in f64.
            # Round the parameters only: model.to(bfloat16) would also round the
            # rotary inv_freq buffer, which transformers keeps in float32.
            with torch.no_grad():
                for prm in model.parameters():
                    prm.copy_(prm.bfloat16().float())
            with torch.no_grad():
                visual = model.model.visual.double()
                ref = run(visual, tensors["pixel_values.0"].double(), torch.tensor(cases[0]), family)
            for n_, t in ref.items():
                tensors[f"bf16.{n_}.0"] = t.float().contiguous()
            meta["bf16"] = "bf16.<output>.0: f64 forward of the bf16-rounded weights on case 0's pixels"
        provenance.save_file(tensors, os.path.join(ROOT, name + "_expected.safetensors"), meta)
        provenance.wrote(os.path.join(ROOT, name))
        print(name, {k: v for k, v in meta.items() if "max_abs" in k})
    for d in ("qwen2_5_vl_tiny", "qwen3_vl_tiny"):
        print(d, sum(os.path.getsize(os.path.join(ROOT, d, f)) for f in os.listdir(os.path.join(ROOT, d))))
    provenance.record()


if __name__ == "__main__":
    sys.exit(main())
