"""Plain PyTorch reference for glimpse's heatmap attention head and its block.

Independent, readable implementation used only to generate numerical fixtures
(tools/make_fixtures.py). Everything works in any floating dtype: float64 for the
"truth", float32 / bfloat16 to measure what PyTorch itself gets. Wherever Qwen-VL
upcasts to float32 (rotary, RMSNorm, softmax) we upcast to *at least* float32, so
float64 inputs stay float64.

Shapes: S = sequence (patches), D = model width, H = heads, d = D / H, I = MLP width.
"""
import math

import torch
import torch.nn as nn
import torch.nn.functional as F


def _at_least_f32(dtype):
    """float32 for bf16/f16/f32, float64 stays float64."""
    return torch.promote_types(dtype, torch.float32)


# ----------------------------------------------------------------------------------------
# Rotary position embedding (2-D, Qwen2.5-VL / Qwen3-VL vision style)
# ----------------------------------------------------------------------------------------
class VisionRotary(nn.Module):
    """cos, sin [S, head_dim] for 2-D positions pos [S, 2] = (row, col).

    dr = head_dim / 2
    inv_freq[j] = theta ** (-(2j) / dr), j = 0 .. dr/2 - 1   (head_dim/4 values, float32,
                  exactly like the Qwen buffer: 1 / theta ** (arange(0, dr, 2, float32) / dr))
    angles = cat([row * inv_freq, col * inv_freq])           (head_dim/2 values)
    emb    = cat([angles, angles])                           (head_dim values)
    cos, sin = emb.cos(), emb.sin()   computed in pos.dtype (float64 for the fixtures).
    """

    def __init__(self, head_dim, theta=10000.0):
        super().__init__()
        if head_dim % 4 != 0:
            raise ValueError(f"head_dim must be divisible by 4, got {head_dim}")
        self.head_dim = head_dim
        self.theta = theta
        dr = head_dim // 2
        inv_freq = 1.0 / (theta ** (torch.arange(0, dr, 2, dtype=torch.float32) / dr))
        self.register_buffer("inv_freq", inv_freq, persistent=False)

    def forward(self, pos):
        inv_freq = self.inv_freq.to(pos.dtype)
        row = pos[:, 0:1] * inv_freq  # [S, head_dim/4]
        col = pos[:, 1:2] * inv_freq  # [S, head_dim/4]
        angles = torch.cat([row, col], dim=-1)  # [S, head_dim/2]
        emb = torch.cat([angles, angles], dim=-1)  # [S, head_dim]
        return emb.cos(), emb.sin()


def rotate_half(x):
    half = x.shape[-1] // 2
    return torch.cat([-x[..., half:], x[..., :half]], dim=-1)


def apply_rotary(x, cos, sin):
    """x [S, H, d], cos/sin [S, d] (broadcast over heads) -> x*cos + rotate_half(x)*sin.

    Computed in (at least) float32, then cast back to x.dtype, like Qwen vision.
    """
    ct = _at_least_f32(x.dtype)
    xf = x.to(ct)
    c = cos.to(ct).unsqueeze(-2)  # [S, 1, d]
    s = sin.to(ct).unsqueeze(-2)
    return (xf * c + rotate_half(xf) * s).to(x.dtype)


# ----------------------------------------------------------------------------------------
# Norms and MLPs
# ----------------------------------------------------------------------------------------
class RMSNorm(nn.Module):
    """y = weight * (x * rsqrt(mean(x^2) + eps)); normalisation in (at least) float32,
    cast back to the input dtype, THEN multiplied by weight (Qwen2RMSNorm order)."""

    def __init__(self, D, eps=1e-6):
        super().__init__()
        self.weight = nn.Parameter(torch.ones(D))
        self.eps = eps

    def forward(self, x):
        ct = _at_least_f32(x.dtype)
        xf = x.to(ct)
        y = xf * torch.rsqrt(xf.pow(2).mean(-1, keepdim=True) + self.eps)
        return self.weight * y.to(x.dtype)


class LayerNorm(nn.LayerNorm):
    """torch.nn.LayerNorm(D, eps) with weight and bias."""

    def __init__(self, D, eps=1e-6):
        super().__init__(D, eps=eps, elementwise_affine=True)


class SwiGLUMLP(nn.Module):
    """down_proj(silu(gate_proj(x)) * up_proj(x)), all Linear with bias (Qwen2.5-VL)."""

    def __init__(self, D, I):
        super().__init__()
        self.gate_proj = nn.Linear(D, I)
        self.up_proj = nn.Linear(D, I)
        self.down_proj = nn.Linear(I, D)

    def forward(self, x):
        return self.down_proj(F.silu(self.gate_proj(x)) * self.up_proj(x))


class GeluMLP(nn.Module):
    """linear_fc2(gelu(linear_fc1(x))), approximate = "tanh" or "none" (erf) (Qwen3-VL)."""

    def __init__(self, D, I, approximate="tanh"):
        super().__init__()
        self.linear_fc1 = nn.Linear(D, I)
        self.linear_fc2 = nn.Linear(I, D)
        self.approximate = approximate

    def forward(self, x):
        return self.linear_fc2(F.gelu(self.linear_fc1(x), approximate=self.approximate))


# ----------------------------------------------------------------------------------------
# Attention
# ----------------------------------------------------------------------------------------
def sdpa(q, k, v, mask=None, scale=None):
    """Generic multi-head attention.

    q [S, H, d], k [Sk, H, d], v [Sk, H, d], mask additive [S, Sk] (or None).
    scores_h = (q_h k_h^T) * scale (+ mask); probs = softmax over keys, computed in (at
    least) float32 and cast back to q.dtype (Qwen eager style); o_h = probs_h v_h.
    Returns out [S, H, d], probs [H, S, Sk].
    """
    d = q.shape[-1]
    if scale is None:
        scale = 1.0 / math.sqrt(d)
    qh = q.transpose(0, 1)  # [H, S, d]
    kh = k.transpose(0, 1)  # [H, Sk, d]
    vh = v.transpose(0, 1)  # [H, Sk, d]
    scores = torch.matmul(qh, kh.transpose(1, 2)) * scale  # [H, S, Sk]
    if mask is not None:
        scores = scores + mask.to(scores.dtype)
    probs = torch.softmax(scores, dim=-1, dtype=_at_least_f32(scores.dtype)).to(q.dtype)
    out = torch.matmul(probs, vh)  # [H, S, d]
    return out.transpose(0, 1), probs


class HeatmapAttentionHead(nn.Module):
    """Cross-attention whose queries come from a scalar heatmap value per patch.

    q = q_proj(h) (Linear 1 -> D), k = k_proj(x), v = v_proj(x) (Linear D -> D), each viewed
    [S, H, d]; head j owns columns [j*d, (j+1)*d). Optional rotary on q and k. Per head
    probs_j = softmax(q_j k_j^T / sqrt(d) + mask), o_j = probs_j v_j,
    out = proj(concat_j o_j).
    """

    def __init__(self, D, H):
        super().__init__()
        if D % H != 0:
            raise ValueError("D must be divisible by H")
        self.D, self.H, self.d = D, H, D // H
        self.q_proj = nn.Linear(1, D)
        self.k_proj = nn.Linear(D, D)
        self.v_proj = nn.Linear(D, D)
        self.proj = nn.Linear(D, D)

    def forward(self, x, h, cos=None, sin=None, mask=None):
        S = x.shape[0]
        q = self.q_proj(h).view(S, self.H, self.d)
        k = self.k_proj(x).view(S, self.H, self.d)
        v = self.v_proj(x).view(S, self.H, self.d)
        if cos is not None:
            q = apply_rotary(q, cos, sin)
            k = apply_rotary(k, cos, sin)
        o, probs = sdpa(q, k, v, mask=mask, scale=1.0 / math.sqrt(self.d))
        out = self.proj(o.reshape(S, self.D))
        return out, probs


class HeatmapHead(nn.Module):
    """The block: a = attn(norm1(x), h); y = x + a; m = mlp(norm2(y)); z = y + m.

    kind "rms_swiglu"   : RMSNorm + SwiGLUMLP (Qwen2.5-VL vision block layout)
    kind "ln_gelu_tanh" : LayerNorm + GeluMLP(approximate="tanh") (Qwen3-VL layout)
    forward returns (z, delta, probs) with delta = a + m (so z = x + delta).
    """

    KINDS = ("rms_swiglu", "ln_gelu_tanh")

    def __init__(self, D, H, I, kind="rms_swiglu", eps=1e-6):
        super().__init__()
        if kind == "rms_swiglu":
            self.norm1 = RMSNorm(D, eps)
            self.norm2 = RMSNorm(D, eps)
            self.mlp = SwiGLUMLP(D, I)
        elif kind == "ln_gelu_tanh":
            self.norm1 = LayerNorm(D, eps)
            self.norm2 = LayerNorm(D, eps)
            self.mlp = GeluMLP(D, I, approximate="tanh")
        else:
            raise ValueError(f"unknown kind {kind!r}")
        self.kind = kind
        self.attn = HeatmapAttentionHead(D, H)

    def forward(self, x, h, cos=None, sin=None):
        a, probs = self.attn(self.norm1(x), h, cos, sin)
        y = x + a
        m = self.mlp(self.norm2(y))
        z = y + m
        delta = a + m
        return z, delta, probs
