"""The contenders: diffusion_lite's U-Net and diffusers' U-Nets configured to the same size and layout.

"uncond": ``cli.MODEL_PRESETS["small"]`` (base 16, mults (1, 2, 4) -> widths 16/32/64 at 28/14/7 px,
one res block per level, self-attention at 7 px and in the middle, GroupNorm(8), 4 heads) against
``UNet2DModel`` with block_out_channels (16, 32, 64), layers_per_block 1, AttnDownBlock2D / AttnUpBlock2D
at 7 px (plus its mid-block attention), norm_num_groups 8, head dim 16 (4 heads at 64 channels).

"text": the same U-Net with a transformer block (self + cross-attention to 64-d text tokens) at 7 px
instead of self-attention, as the shipped text model (``--cross-attn 7``), against ``UNet2DConditionModel``
with CrossAttnDownBlock2D / CrossAttnUpBlock2D at 7 px, UNetMidBlock2DCrossAttn, cross_attention_dim 64,
4 heads. diffusers' transformer uses a GEGLU feed-forward (a little wider); its block count per level
is the same. Parameter counts must match within 10% (checked by ``build``).

Both sides are wrapped to the same call ``model(x_t, t, context=None, context_mask=None) -> eps_hat``.
"""

from __future__ import annotations

import torch
from torch import nn

from diffusion_lite.cli import MODEL_PRESETS
from diffusion_lite.config import UNetConfig
from diffusion_lite.unet import UNet

CONTEXT_DIM, CONTEXT_LEN = 64, 16  # the shipped mnist-clip's token width and max length
KINDS = ("uncond", "text")
TOLERANCE = 0.10


def ours_config(kind: str) -> UNetConfig:
    preset = dict(MODEL_PRESETS["small"])
    if kind == "text":
        preset.update(attn_resolutions=(), cross_attn_resolutions=(7,), context_dim=CONTEXT_DIM)
    elif kind != "uncond":
        raise ValueError(f"kind must be one of {KINDS}, got {kind!r}")
    return UNetConfig(**preset)


class DiffusersUNet(nn.Module):
    """diffusers' UNet2DModel / UNet2DConditionModel behind diffusion_lite's call signature."""

    def __init__(self, kind: str):
        super().__init__()
        import diffusers

        common = dict(sample_size=28, in_channels=1, out_channels=1, block_out_channels=(16, 32, 64),
                      layers_per_block=1, norm_num_groups=8)
        self.kind = kind
        if kind == "uncond":
            self.net = diffusers.UNet2DModel(
                down_block_types=("DownBlock2D", "DownBlock2D", "AttnDownBlock2D"),
                up_block_types=("AttnUpBlock2D", "UpBlock2D", "UpBlock2D"), attention_head_dim=16, **common)
        elif kind == "text":
            # UNet2DConditionModel reads attention_head_dim as the number of heads (diffusers issue #2011)
            self.net = diffusers.UNet2DConditionModel(
                down_block_types=("DownBlock2D", "DownBlock2D", "CrossAttnDownBlock2D"),
                up_block_types=("CrossAttnUpBlock2D", "UpBlock2D", "UpBlock2D"), attention_head_dim=4,
                cross_attention_dim=CONTEXT_DIM, **common)
        else:
            raise ValueError(f"kind must be one of {KINDS}, got {kind!r}")

    def forward(self, x_t: torch.Tensor, t: torch.Tensor, context: torch.Tensor | None = None,
                context_mask: torch.Tensor | None = None) -> torch.Tensor:
        if self.kind == "uncond":
            return self.net(x_t, t).sample
        return self.net(x_t, t, encoder_hidden_states=context,
                        encoder_attention_mask=context_mask.to(x_t.dtype) if context_mask is not None else None).sample


def num_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def build(kind: str, seed: int = 0) -> dict[str, nn.Module]:
    """{"diffusion_lite": UNet, "diffusers": DiffusersUNet} for ``kind``, initialised from ``seed``.
    ValueError if their parameter counts differ by more than 10%."""
    torch.manual_seed(seed)
    models = {"diffusion_lite": UNet(ours_config(kind)), "diffusers": DiffusersUNet(kind)}
    p_ours, p_hf = num_parameters(models["diffusion_lite"]), num_parameters(models["diffusers"])
    if abs(p_hf / p_ours - 1) > TOLERANCE:
        raise ValueError(f"{kind}: parameter counts differ by more than {TOLERANCE:.0%}: {p_ours} vs {p_hf}")
    return models


def random_context(batch: int, generator: torch.Generator | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Stand-in text tokens (B, 16, 64) and masks (B, 16) with 3-8 real tokens (prompt lengths of MNIST
    captions); the frozen text encoder's cost is the same for both sides and is left out."""
    ctx = torch.randn(batch, CONTEXT_LEN, CONTEXT_DIM, generator=generator)
    lengths = torch.randint(3, 9, (batch,), generator=generator)
    mask = torch.arange(CONTEXT_LEN)[None, :] < lengths[:, None]  # (B, L) bool
    return ctx, mask
