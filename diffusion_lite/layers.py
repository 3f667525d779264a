"""Building blocks of the U-Net (chapter 03) and its text conditioning (chapter 07).

Read top-down: timestep embedding -> residual block -> down/up sampling -> self-attention ->
cross-attention and the transformer block that Stable Diffusion puts inside its U-Net.
Shapes: B batch, C channels, H x W pixels, L text tokens, D text width, h heads, d = C / h.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn


def timestep_embedding(t: torch.Tensor, dim: int, max_period: float = 10000.0) -> torch.Tensor:
    """Sinusoidal embedding of integer steps (Vaswani et al. 2017): (B,) -> (B, dim), in the form of
    guided-diffusion (Dhariwal & Nichol 2021: cos first, f_i over dim/2); DDPM puts sin first, f_i over dim/2 - 1.

    Channel i < dim/2 holds cos(t * f_i), channel dim/2 + i holds sin(t * f_i), with frequencies
    f_i = max_period^(-i / (dim/2)), i = 0 .. dim/2 - 1, spread geometrically from 1 down to
    max_period^(-(dim/2 - 1) / (dim/2)) (just above 1/max_period).
    """
    if dim % 2:
        raise ValueError(f"timestep embedding dim must be even, got {dim}")
    half = dim // 2
    freqs = torch.exp(-math.log(max_period) * torch.arange(half, dtype=torch.float32, device=t.device) / half)
    args = t.float()[:, None] * freqs[None]  # (B, half)
    return torch.cat([torch.cos(args), torch.sin(args)], dim=-1)  # (B, dim)


def zero_module(m: nn.Module) -> nn.Module:
    """Zero a layer's parameters so a residual branch starts as the identity."""
    for p in m.parameters():
        nn.init.zeros_(p)
    return m


class ResBlock(nn.Module):
    """GroupNorm -> SiLU -> conv, plus the timestep embedding as a per-channel scale and shift (FiLM),
    -> GroupNorm -> SiLU -> dropout -> conv, added to a (1x1-projected) skip of the input.

    x: (B, C_in, H, W), emb: (B, E) -> (B, C_out, H, W)
    """

    def __init__(self, c_in: int, c_out: int, emb_dim: int, groups: int = 8, dropout: float = 0.0):
        super().__init__()
        self.norm1 = nn.GroupNorm(groups, c_in)
        self.conv1 = nn.Conv2d(c_in, c_out, 3, padding=1)
        self.emb = nn.Linear(emb_dim, 2 * c_out)
        self.norm2 = nn.GroupNorm(groups, c_out)
        self.dropout = nn.Dropout(dropout)
        self.conv2 = zero_module(nn.Conv2d(c_out, c_out, 3, padding=1))
        self.skip = nn.Conv2d(c_in, c_out, 1) if c_in != c_out else nn.Identity()

    def forward(self, x: torch.Tensor, emb: torch.Tensor) -> torch.Tensor:
        h = self.conv1(F.silu(self.norm1(x)))  # (B, C_out, H, W)
        scale, shift = self.emb(F.silu(emb))[:, :, None, None].chunk(2, dim=1)  # 2 x (B, C_out, 1, 1)
        h = self.norm2(h) * (1 + scale) + shift
        h = self.conv2(self.dropout(F.silu(h)))
        return self.skip(x) + h


class Downsample(nn.Module):
    """Stride-2 3x3 convolution: (B, C, H, W) -> (B, C, H/2, W/2)."""

    def __init__(self, c: int):
        super().__init__()
        self.conv = nn.Conv2d(c, c, 3, stride=2, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(x)


class Upsample(nn.Module):
    """Nearest-neighbour x2 then a 3x3 convolution: (B, C, H, W) -> (B, C, 2H, 2W)."""

    def __init__(self, c: int):
        super().__init__()
        self.conv = nn.Conv2d(c, c, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(F.interpolate(x, scale_factor=2.0, mode="nearest"))


def check_mask_rows(mask: torch.Tensor, name: str) -> None:
    """Every row of a bool key mask (B, L) needs a True: with none, attention has nothing to attend to (the empty
    prompt is <bos><eos>, two real tokens). Reads the values: one device sync."""
    if mask.numel() and not bool(mask.any(-1).all()):
        raise ValueError(f"every row of {name} needs at least one True (real) token; the empty prompt "
                         "is <bos><eos>, as the tokenizers encode it")


def attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, mask: torch.Tensor | None = None,
              return_probs: bool = False):
    """Scaled dot-product attention, softmax(q k^T / sqrt(d)) v (Vaswani et al. 2017, eq. 1).

    q: (B, h, N, d), k and v: (B, h, L, d), mask: (B, L) bool, True = token takes part; every row needs
    at least one True (UNet.forward checks this; with none, the two paths differ: SDPA gives zeros,
    ``return_probs`` NaN). A float mask would be an additive bias to SDPA, not a mask: pass bool.
    Returns (B, h, N, d), and the probabilities (B, h, N, L) if ``return_probs``.
    """
    attn_mask = None if mask is None else mask[:, None, None, :]  # (B, 1, 1, L)
    if not return_probs:
        return F.scaled_dot_product_attention(q, k, v, attn_mask=attn_mask)
    scores = q @ k.transpose(-2, -1) / math.sqrt(q.shape[-1])  # (B, h, N, L)
    if attn_mask is not None:
        scores = scores.masked_fill(~attn_mask, float("-inf"))
    probs = scores.softmax(dim=-1)
    return probs @ v, probs


class SelfAttention2d(nn.Module):
    """Multi-head self-attention over the H*W pixels of a feature map, with a residual connection."""

    def __init__(self, c: int, num_heads: int = 4, groups: int = 8):
        super().__init__()
        if c % num_heads:
            raise ValueError(f"channels {c} not divisible by num_heads={num_heads}")
        self.h = num_heads
        self.norm = nn.GroupNorm(groups, c)
        self.qkv = nn.Conv2d(c, 3 * c, 1)
        self.proj = zero_module(nn.Conv2d(c, c, 1))

    def forward(self, x: torch.Tensor, emb: torch.Tensor | None = None) -> torch.Tensor:
        B, C, H, W = x.shape
        qkv = self.qkv(self.norm(x)).reshape(B, 3, self.h, C // self.h, H * W)  # (B, 3, h, d, HW)
        q, k, v = qkv.permute(1, 0, 2, 4, 3).contiguous().unbind(0)  # 3 x (B, h, HW, d), d contiguous (fused kernels)
        out = attention(q, k, v)  # (B, h, HW, d)
        out = out.transpose(2, 3).reshape(B, C, H, W)
        return x + self.proj(out)


class CrossAttention(nn.Module):
    """Queries from image tokens, keys and values from text tokens (Rombach et al. 2022, sec. 3.3).

    x: (B, N, C) image tokens, context: (B, L, D) text tokens, mask: (B, L) bool (True = real token).
    While ``self.capture`` is a list, a record {"layer", "resolution", "probs": (B, h, N, L)} is
    appended to it on every call (see :func:`diffusion_lite.unet.UNet.capture_attention`).
    """

    def __init__(self, c: int, context_dim: int, num_heads: int = 4):
        super().__init__()
        if c % num_heads:
            raise ValueError(f"channels {c} not divisible by num_heads={num_heads}")
        self.h = num_heads
        self.q = nn.Linear(c, c, bias=False)
        self.kv = nn.Linear(context_dim, 2 * c, bias=False)
        self.out = nn.Linear(c, c)
        self.capture: list | None = None
        self.capture_name = ""

    def forward(self, x: torch.Tensor, context: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        B, N, C = x.shape
        L = context.shape[1]
        q = self.q(x).reshape(B, N, self.h, C // self.h).transpose(1, 2)  # (B, h, N, d)
        k, v = self.kv(context).reshape(B, L, 2, self.h, C // self.h).permute(2, 0, 3, 1, 4)  # 2 x (B, h, L, d)
        if self.capture is not None:
            out, probs = attention(q, k, v, mask, return_probs=True)
            self.capture.append({"layer": self.capture_name, "resolution": int(round(math.sqrt(N))),
                                 "probs": probs.detach()})
        else:
            out = attention(q, k, v, mask)
        return self.out(out.transpose(1, 2).reshape(B, N, C))  # (B, N, C)


class SpatialTransformer(nn.Module):
    """Stable Diffusion's transformer block on a feature map: self-attention, cross-attention to the
    text, feed-forward, each pre-LayerNorm and residual, between 1x1 projections in and out.

    x: (B, C, H, W), context: (B, L, D), mask: (B, L) -> (B, C, H, W)
    """

    def __init__(self, c: int, context_dim: int, num_heads: int = 4, groups: int = 8):
        super().__init__()
        self.h = num_heads
        self.norm = nn.GroupNorm(groups, c)
        self.proj_in = nn.Conv2d(c, c, 1)
        self.ln1, self.ln2, self.ln3 = nn.LayerNorm(c), nn.LayerNorm(c), nn.LayerNorm(c)
        self.self_qkv = nn.Linear(c, 3 * c, bias=False)
        self.self_out = nn.Linear(c, c)
        self.cross = CrossAttention(c, context_dim, num_heads)
        self.ff = nn.Sequential(nn.Linear(c, 4 * c), nn.GELU(), nn.Linear(4 * c, c))
        self.proj_out = zero_module(nn.Conv2d(c, c, 1))

    def forward(self, x: torch.Tensor, context: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        B, C, H, W = x.shape
        h = self.proj_in(self.norm(x)).flatten(2).transpose(1, 2)  # (B, HW, C)
        q, k, v = self.self_qkv(self.ln1(h)).reshape(B, H * W, 3, self.h, C // self.h).permute(2, 0, 3, 1, 4)
        h = h + self.self_out(attention(q, k, v).transpose(1, 2).reshape(B, H * W, C))
        h = h + self.cross(self.ln2(h), context, mask)
        h = h + self.ff(self.ln3(h))
        return x + self.proj_out(h.transpose(1, 2).reshape(B, C, H, W))
