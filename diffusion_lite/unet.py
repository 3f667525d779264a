"""The noise-prediction U-Net (Ronneberger et al. 2015; as used by Ho et al. 2020) - chapter 03.

``UNet(cfg)(x_t, t) -> eps_hat``; with text, ``UNet(cfg)(x_t, t, context, context_mask)``, where the
text tokens enter through cross-attention (chapter 07) and their masked mean is added to the
timestep embedding (a pooled text embedding, as in Imagen and SDXL).

For the default MNIST config (28x28, channel_mults (1, 2, 2)) the feature maps are::

    x_t (B,1,28,28) -> conv_in (B,32,28,28) -> [res] -> down (B,32,14,14) -> [res] (B,64,14,14)
    -> down (B,64,7,7) -> [res + attn] (B,64,7,7) -> mid -> up path mirrors it, concatenating the
    skip connections -> conv_out (B,1,28,28) = eps_hat
"""

from __future__ import annotations

import contextlib
import numbers

import torch
import torch.nn.functional as F
from torch import nn

from .config import UNetConfig
from .layers import (
    CrossAttention,
    Downsample,
    ResBlock,
    SelfAttention2d,
    SpatialTransformer,
    Upsample,
    check_mask_rows,
    timestep_embedding,
    zero_module,
)
from .utils import autocast_enabled


def _check_dtype(name: str, x: torch.Tensor, dtype: torch.dtype) -> None:
    """Inputs must have the parameters' dtype (any float dtype under autocast, which casts itself)."""
    if x.dtype != dtype and not (x.is_floating_point() and autocast_enabled(x.device.type)):
        raise TypeError(f"{name} must have the U-Net's parameter dtype {dtype}, got {x.dtype}"
                        + (" (uint8 images? see utils.from_uint8)" if not x.is_floating_point() else "")
                        + ("" if dtype == torch.float32 else "; or keep float32 weights and use autocast "
                           "(TrainConfig.amp)"))


def _check_mask(mask: torch.Tensor, context: torch.Tensor) -> None:
    """context_mask must be (B, L) bool with a True in every row. The row check reads the values, so it runs
    only for CPU tensors outside torch.compile: on a GPU it would make every step wait for the device (the
    pipeline and guidance check their masks once per call instead)."""
    if mask.dtype != torch.bool:
        raise TypeError(f"context_mask must be a bool tensor (True = real token), got dtype {mask.dtype}; a float "
                        "mask would be added to the attention scores, not mask them: pass mask.bool() yourself")
    if mask.shape != context.shape[:2]:
        raise ValueError(f"context_mask must have shape {tuple(context.shape[:2])} (B, L) like context "
                         f"{tuple(context.shape)}, got {tuple(mask.shape)}")
    if mask.device.type == "cpu" and not torch.compiler.is_compiling():
        check_mask_rows(mask, "context_mask")


class UNet(nn.Module):
    """x_t: (B, C, H, W) of the parameters' dtype, t: (B,) long in [0, T) or an int -> eps_hat (B, C, H, W).

    context: (B, L, D) text tokens and context_mask: (B, L) bool (True = real token; each row needs at
    least one, as the empty prompt <bos><eos> has), needed exactly when the config has ``context_dim``.
    """

    def __init__(self, cfg: UNetConfig):
        super().__init__()
        self.cfg = cfg
        ch0, emb_dim = cfg.base_channels, 4 * cfg.base_channels
        self.time_mlp = nn.Sequential(nn.Linear(ch0, emb_dim), nn.SiLU(), nn.Linear(emb_dim, emb_dim))
        self.context_pool = nn.Linear(cfg.context_dim, emb_dim) if cfg.context_dim else None
        self.conv_in = nn.Conv2d(cfg.in_channels, ch0, 3, padding=1)

        def attn_block(c: int, res: int) -> nn.Module | None:
            if res in cfg.cross_attn_resolutions:
                return SpatialTransformer(c, cfg.context_dim, cfg.num_heads, cfg.groups)
            if res in cfg.attn_resolutions:
                return SelfAttention2d(c, cfg.num_heads, cfg.groups)
            return None

        def block(c_in: int, c_out: int, res: int) -> nn.ModuleList:
            layers = [ResBlock(c_in, c_out, emb_dim, cfg.groups, cfg.dropout)]
            a = attn_block(c_out, res)
            return nn.ModuleList(layers + ([a] if a is not None else []))

        # down path: remember the width of every output that becomes a skip connection
        self.down = nn.ModuleList()
        skips, ch, res = [ch0], ch0, cfg.image_size
        for level, mult in enumerate(cfg.channel_mults):
            for _ in range(cfg.num_res_blocks):
                self.down.append(block(ch, ch0 * mult, res))
                ch = ch0 * mult
                skips.append(ch)
            if level < len(cfg.channel_mults) - 1:
                self.down.append(nn.ModuleList([Downsample(ch)]))
                res //= 2
                skips.append(ch)

        mid_attn = attn_block(ch, res)  # attention in the middle only where the config asks for it
        self.mid = nn.ModuleList([ResBlock(ch, ch, emb_dim, cfg.groups, cfg.dropout)]
                                 + ([mid_attn] if mid_attn is not None else [])
                                 + [ResBlock(ch, ch, emb_dim, cfg.groups, cfg.dropout)])

        # up path: num_res_blocks + 1 blocks per level, each eating one skip connection
        self.up = nn.ModuleList()
        for level, mult in reversed(list(enumerate(cfg.channel_mults))):
            for i in range(cfg.num_res_blocks + 1):
                blk = block(ch + skips.pop(), ch0 * mult, res)
                ch = ch0 * mult
                if level > 0 and i == cfg.num_res_blocks:
                    blk.append(Upsample(ch))
                    res *= 2
                self.up.append(blk)

        self.norm_out = nn.GroupNorm(cfg.groups, ch)
        self.conv_out = zero_module(nn.Conv2d(ch, cfg.in_channels, 3, padding=1))

    def _run(self, layers, h, emb, context, mask):
        for layer in layers:
            if isinstance(layer, ResBlock):
                h = layer(h, emb)
            elif isinstance(layer, SpatialTransformer):
                h = layer(h, context, mask)
            elif isinstance(layer, SelfAttention2d):
                h = layer(h)
            else:  # Downsample / Upsample
                h = layer(h)
        return h

    def forward(self, x_t: torch.Tensor, t: torch.Tensor, context: torch.Tensor | None = None,
                context_mask: torch.Tensor | None = None) -> torch.Tensor:
        cfg = self.cfg
        if x_t.dim() != 4 or x_t.shape[1:] != (cfg.in_channels, cfg.image_size, cfg.image_size):
            raise ValueError(f"x_t must have shape (B, {cfg.in_channels}, {cfg.image_size}, {cfg.image_size}), "
                             f"got {tuple(x_t.shape)}")
        _check_dtype("x_t", x_t, self.conv_in.weight.dtype)
        if isinstance(t, numbers.Integral):  # one step for the whole batch
            t = torch.tensor(int(t), dtype=torch.long, device=x_t.device)
        if t.dim() == 0:
            t = t.expand(x_t.shape[0])
        if t.shape != (x_t.shape[0],):
            raise ValueError(f"t must have shape ({x_t.shape[0]},), got {tuple(t.shape)}")
        t = t.to(x_t.device)  # e.g. torch.tensor([500]) on the CPU with x_t on a GPU
        if (context is None) != (cfg.context_dim is None):
            raise ValueError("this U-Net was built " + ("with" if cfg.context_dim else "without")
                             + " text conditioning; pass context (B, L, D) exactly when cfg.context_dim is set")

        emb = self.time_mlp(timestep_embedding(t, cfg.base_channels).to(self.conv_in.weight.dtype))  # (B, 4C)
        if context is not None:
            if context.dim() != 3 or context.shape[0] != x_t.shape[0] or context.shape[2] != cfg.context_dim:
                raise ValueError(f"context must have shape ({x_t.shape[0]}, L, {cfg.context_dim}), "
                                 f"got {tuple(context.shape)}")
            _check_dtype("context", context, self.conv_in.weight.dtype)
            if context_mask is None:
                context_mask = torch.ones(context.shape[:2], dtype=torch.bool, device=context.device)
            _check_mask(context_mask, context)
            m = context_mask.to(context.dtype)[..., None]  # (B, L, 1)
            pooled = (context * m).sum(1) / m.sum(1).clamp(min=1.0)  # (B, D)
            emb = emb + self.context_pool(pooled)

        h = self.conv_in(x_t)
        hs = [h]
        for layers in self.down:
            h = self._run(layers, h, emb, context, context_mask)
            hs.append(h)
        h = self._run(self.mid, h, emb, context, context_mask)
        for layers in self.up:
            h = torch.cat([h, hs.pop()], dim=1)  # skip connection: (B, C_h + C_skip, H, W)
            h = self._run(layers, h, emb, context, context_mask)
        return self.conv_out(F.silu(self.norm_out(h)))

    @contextlib.contextmanager
    def capture_attention(self):
        """Record the cross-attention probabilities of every layer during forward passes.

        >>> with unet.capture_attention() as maps:
        ...     unet(x_t, t, context, mask)
        >>> maps[0]["probs"].shape  # (B, heads, H*W, L)

        Yields a list that fills with dicts {"layer": name, "resolution": H, "probs": tensor}, one per
        layer call, in call order.
        """
        records: list[dict] = []
        modules = [(n, m) for n, m in self.named_modules() if isinstance(m, CrossAttention)]
        if not modules:
            raise ValueError("this U-Net has no cross-attention layers (cfg.cross_attn_resolutions is empty)")
        for n, m in modules:
            m.capture, m.capture_name = records, n
        try:
            yield records
        finally:
            for _, m in modules:
                m.capture = None

    def num_parameters(self) -> int:
        return sum(p.numel() for p in self.parameters())
