"""Classifier-free guidance (Ho & Salimans 2022) as a wrapper around a model function - chapter 08.

    eps = eps_uncond + s * (eps_cond - eps_uncond)

s = 1 is the purely conditional model, s = 0 the unconditional one, s > 1 pushes samples towards the
prompt. Ho & Salimans write eps = (1 + w) eps_cond - w eps_uncond, i.e. w = s - 1. The unconditional
branch is the empty prompt (the model was trained with prompts dropped to "" with probability
p_uncond), or a negative prompt. Sampling never reads p_uncond.

Guidance interval (Kynkaanniemi et al. 2024, "Applying guidance in a limited interval improves sample and
distribution quality"): guidance at the noisiest steps mostly collapses diversity (it decides the global
layout of every sample the same way), and at the least noisy steps it does little. With
``interval=(t_lo, t_hi)`` the scale s is applied only for t_lo <= t <= t_hi, and the purely conditional
model (s = 1) elsewhere.
"""

from __future__ import annotations

from typing import Callable

import torch

from .sampling import ModelFn


def pad_context(context: torch.Tensor, mask: torch.Tensor, length: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Pad text tokens (B, L, D) and mask (B, L) with masked-out zeros to ``length`` tokens."""
    B, L, D = context.shape
    if L > length:
        raise ValueError(f"cannot pad {L} tokens down to {length}")
    if L == length:
        return context, mask
    context = torch.cat([context, context.new_zeros(B, length - L, D)], dim=1)
    mask = torch.cat([mask, mask.new_zeros(B, length - L)], dim=1)
    return context, mask


def classifier_free_guidance(eps_fn: Callable[..., torch.Tensor], cond: tuple[torch.Tensor, torch.Tensor],
                             uncond: tuple[torch.Tensor, torch.Tensor], scale: float,
                             interval: tuple[int, int] | None = None) -> ModelFn:
    """Return ``model_fn(x_t, t) -> eps`` guided with scale s (CFG eq. 6 with w = s - 1).

    eps_fn(x_t, t, context=..., context_mask=...) -> eps_hat is the text-conditional network.
    cond, uncond: (context (B, L, D), mask (B, L)) for the prompt and for the empty/negative prompt;
    B must match the batch of x_t (or be 1, then it is broadcast).
    Both branches run as one batch of 2B. At s = 1 only the conditional branch and at s = 0 only the
    unconditional branch is evaluated (the other term has weight 0).
    interval: (t_lo, t_hi) timesteps (inclusive) where the scale applies; outside it, s = 1 (see the
    module docstring). None: everywhere.
    """
    if interval is not None:
        t_lo, t_hi = (int(v) for v in interval)
        if not 0 <= t_lo <= t_hi:
            raise ValueError(f"interval must be (t_lo, t_hi) with 0 <= t_lo <= t_hi, got {tuple(interval)}")
    c_ctx, c_mask = cond
    u_ctx, u_mask = uncond
    L = max(c_ctx.shape[1], u_ctx.shape[1])
    c_ctx, c_mask = pad_context(c_ctx, c_mask, L)
    u_ctx, u_mask = pad_context(u_ctx, u_mask, L)

    def expand(x: torch.Tensor, B: int) -> torch.Tensor:
        if x.shape[0] == B:
            return x
        if x.shape[0] == 1:
            return x.expand(B, *x.shape[1:])
        raise ValueError(f"conditioning has batch {x.shape[0]}, but x_t has batch {B}")

    def model_fn(x_t: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        B = x_t.shape[0]
        inside = None
        if interval is not None:
            inside = (t >= t_lo) & (t <= t_hi)  # (B,) bool
            if not bool(inside.any()):  # no sample of the batch is guided at this step
                return eps_fn(x_t, t, context=expand(c_ctx, B), context_mask=expand(c_mask, B))
        if scale == 1.0:
            return eps_fn(x_t, t, context=expand(c_ctx, B), context_mask=expand(c_mask, B))
        if scale == 0.0:
            return eps_fn(x_t, t, context=expand(u_ctx, B), context_mask=expand(u_mask, B))
        ctx = torch.cat([expand(c_ctx, B), expand(u_ctx, B)])  # (2B, L, D)
        mask = torch.cat([expand(c_mask, B), expand(u_mask, B)])  # (2B, L)
        eps_c, eps_u = eps_fn(torch.cat([x_t, x_t]), torch.cat([t, t]), context=ctx, context_mask=mask).chunk(2)
        if inside is None:
            return eps_u + scale * (eps_c - eps_u)
        s_t = torch.where(inside, scale, 1.0).to(eps_c.dtype).view(B, *([1] * (eps_c.dim() - 1)))  # (B, 1, 1, 1)
        return eps_u + s_t * (eps_c - eps_u)

    return model_fn
