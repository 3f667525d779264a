"""Classifier-free guidance (Ho & Salimans 2022) as a wrapper around a model function - chapter 08.

    eps = eps_uncond + s * (eps_cond - eps_uncond)

s = 1 is the purely conditional model, s = 0 the unconditional one, s > 1 pushes samples towards the
prompt. Ho & Salimans write eps = (1 + w) eps_cond - w eps_uncond, i.e. w = s - 1. The unconditional
branch is the empty prompt (the model was trained with prompts dropped to "" with probability
p_uncond), or a negative prompt. Sampling never reads p_uncond.

Guidance interval (Kynkaanniemi et al. 2024, "Applying guidance in a limited interval improves sample and
distribution quality in diffusion models"): guidance at the noisiest steps mostly collapses diversity (it
decides the global layout of every sample the same way), and at the least noisy steps it does little. With
``interval=(t_lo, t_hi)`` the scale s is applied only for t_lo <= t <= t_hi, and the purely conditional
model (s = 1) elsewhere.

Condition-annealed sampling, CADS (Sadat et al. 2024, "CADS: Unleashing the diversity of diffusion
models through condition-annealed sampling"; the labels (a)-(c) below are this module's, not the paper's
equation numbers): at high guidance every sample of a prompt
becomes the same "typical" digit. CADS adds Gaussian noise to the prompt's token embeddings y,
strong at the noisiest steps and none at the end,

    y_hat = sqrt(gamma(t)) y + noise_scale sqrt(1 - gamma(t)) n,     n ~ N(0, I)        (a)
    gamma(t) = 1 for t/(T-1) <= tau1, 0 for t/(T-1) >= tau2, linear in between            (b)
    y_hat <- psi * rescale(y_hat) + (1 - psi) * y_hat,  rescale = back to y's mean and std (c)

so the global layout of a sample is decided under a blurred prompt (varied, as the data is), and the
details under the real one (the right digit). The scale s is unchanged; the unconditional branch is
not noised. (Time is normalised: this package's integer t in [0, T - 1] becomes t/(T-1), so the noisiest
step is 1.) ``CADS`` holds the four numbers; pass it as ``cads=`` to ``classifier_free_guidance``.
"""

from __future__ import annotations

import math
import numbers
from dataclasses import dataclass
from typing import Callable

import torch

from .layers import check_mask_rows
from .sampling import ModelFn
from .utils import randn


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


@dataclass(frozen=True)
class CADS:
    """Condition-annealed sampling settings (module docstring; defaults: the paper's, with a stronger
    noise_scale, chosen on this project's MNIST model, BENCHMARKS.md section 4).

    noise_scale: s in (a), >= 0; tau1 < tau2 in [0, 1]: the annealing window in t / (T - 1) (0: the clean
    end, 1: the noisiest step; (b)); psi in [0, 1]: how much of the rescaled embedding to use ((c)).
    """
    noise_scale: float = 0.5
    tau1: float = 0.6
    tau2: float = 0.9
    psi: float = 1.0

    def __post_init__(self):
        if not (math.isfinite(self.noise_scale) and self.noise_scale >= 0):  # NaN passes "< 0"
            raise ValueError(f"CADS noise_scale must be a finite number >= 0, got {self.noise_scale}")
        if not 0.0 <= self.tau1 < self.tau2 <= 1.0:
            raise ValueError(f"CADS needs 0 <= tau1 < tau2 <= 1, got tau1={self.tau1}, tau2={self.tau2}")
        if not 0.0 <= self.psi <= 1.0:
            raise ValueError(f"CADS psi must be in [0, 1], got {self.psi}")


def cads_gamma(t_frac: torch.Tensor, tau1: float, tau2: float) -> torch.Tensor:
    """(b) of the module docstring, t_frac = t / (T - 1) in [0, 1]: gamma = 1 for t_frac <= tau1 (clean end),
    0 for t_frac >= tau2 (noisy end), linear between."""
    return ((tau2 - t_frac) / (tau2 - tau1)).clamp(0.0, 1.0)


def cads_noise(y: torch.Tensor, mask: torch.Tensor, gamma: torch.Tensor, cfg: CADS,
               generator: torch.Generator | None = None) -> torch.Tensor:
    """(a) and (c) of the module docstring on text tokens y (B, L, D) with mask (B, L) (True = real token); gamma (B,).

    Returns y_hat (B, L, D); padding positions stay zero, and mean and std for the rescaling are taken
    over each prompt's real tokens. gamma = 1 returns y unchanged.
    """
    dtype, y = y.dtype, (y.float() if y.dtype in (torch.float16, torch.bfloat16) else y)  # the statistics sum
    # L * D squares: float16 overflows (max 65504) for a wide encoder's 77 x 768 tokens
    g = gamma.to(y.dtype).view(-1, 1, 1)  # (B, 1, 1)
    n = randn(y.shape, generator, y.device, y.dtype)  # (B, L, D)
    y_hat = g.sqrt() * y + cfg.noise_scale * (1 - g).sqrt() * n
    m = mask.to(y.dtype).unsqueeze(-1)  # (B, L, 1)
    count = (m.sum(dim=(1, 2), keepdim=True) * y.shape[-1]).clamp(min=1.0)

    def mean_std(z):
        mu = (z * m).sum(dim=(1, 2), keepdim=True) / count
        return mu, (((z - mu) * m) ** 2).sum(dim=(1, 2), keepdim=True).div(count).sqrt()

    if cfg.psi > 0:
        mu, sd = mean_std(y)
        mu_hat, sd_hat = mean_std(y_hat)
        rescaled = (y_hat - mu_hat) / sd_hat.clamp(min=1e-12) * sd + mu
        y_hat = cfg.psi * rescaled + (1 - cfg.psi) * y_hat
    y_hat = y_hat * m
    return torch.where(g == 1, y, y_hat).to(dtype)


def classifier_free_guidance(eps_fn: Callable[..., torch.Tensor], cond: tuple[torch.Tensor, torch.Tensor],
                             uncond: tuple[torch.Tensor, torch.Tensor], scale: float,
                             interval: tuple[int, int] | None = None, cads: CADS | None = None,
                             T: int | None = None, generator: torch.Generator | None = None) -> ModelFn:
    """Return ``model_fn(x_t, t) -> eps`` guided with scale s (CFG eq. 6 with w = s - 1).

    eps_fn(x_t, t, context=..., context_mask=...) -> eps_hat is the text-conditional network.
    cond, uncond: (context (B, L, D), mask (B, L)) for the prompt and for the empty/negative prompt;
    B must match the batch of x_t (or be 1, then it is broadcast).
    Both branches run as one batch of 2B. At s = 1 only the conditional branch and at s = 0 only the
    unconditional branch is evaluated (the other term has weight 0).
    interval: (t_lo, t_hi) timesteps (inclusive) where the scale applies; outside it, s = 1 (see the
    module docstring). None: everywhere.
    cads: noise the prompt tokens with condition-annealed sampling (module docstring), a ``CADS`` or a
    number, its noise_scale (``CADS(0.5)``, like the CLI's ``--cads 0.5``); needs T, the schedule's number
    of timesteps, and anneals over t / (T - 1) (t = T - 1 is the noisiest step); ``generator`` draws its
    noise (on the CPU unless it lives elsewhere).
    """
    if not 0 <= scale < float("inf"):  # also rejects NaN
        raise ValueError(f"the guidance scale s must be finite and >= 0 (0: unconditional, 1: conditional, "
                         f"> 1: guided), got {scale}")
    if isinstance(cads, numbers.Real) and not isinstance(cads, bool):
        cads = CADS(float(cads))
    if cads is not None and not isinstance(cads, CADS):
        raise TypeError(f"cads must be a guidance.CADS or a number (its noise_scale), got {type(cads).__name__}")
    if cads is not None and T is None:
        raise ValueError("CADS needs T, the number of timesteps of the schedule, to anneal over t / (T - 1)")
    if interval is not None:
        if len(interval) != 2 or any(isinstance(v, bool) or not isinstance(v, numbers.Real)
                                     or not float(v).is_integer()
                                     for v in interval):
            raise ValueError(f"interval must be two whole timesteps (t_lo, t_hi), got {tuple(interval)}")
        t_lo, t_hi = (int(v) for v in interval)
        if not 0 <= t_lo <= t_hi:
            raise ValueError(f"interval must be (t_lo, t_hi) with 0 <= t_lo <= t_hi, got {tuple(interval)}")
    c_ctx, c_mask = cond
    u_ctx, u_mask = uncond
    for name, m in (("cond", c_mask), ("uncond", u_mask)):  # once per call; UNet.forward checks only CPU masks
        if m.dtype == torch.bool:
            check_mask_rows(m, f"the {name} mask")
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
        ctx_c, mask_c = expand(c_ctx, B), expand(c_mask, B)
        if cads is not None:
            gamma = cads_gamma(t.float() / (T - 1), cads.tau1, cads.tau2)  # (B,)
            if bool((gamma < 1).any()):
                ctx_c = cads_noise(ctx_c, mask_c, gamma, cads, generator)
        inside = None
        if interval is not None:
            inside = (t >= t_lo) & (t <= t_hi)  # (B,) bool
            if not bool(inside.any()):  # no sample of the batch is guided at this step
                return eps_fn(x_t, t, context=ctx_c, context_mask=mask_c)
        if scale == 1.0:
            return eps_fn(x_t, t, context=ctx_c, context_mask=mask_c)
        if scale == 0.0 and (inside is None or bool(inside.all())):  # a mixed batch needs both branches
            return eps_fn(x_t, t, context=expand(u_ctx, B), context_mask=expand(u_mask, B))
        ctx = torch.cat([ctx_c, expand(u_ctx, B)])  # (2B, L, D)
        mask = torch.cat([mask_c, expand(u_mask, B)])  # (2B, L)
        eps_c, eps_u = eps_fn(torch.cat([x_t, x_t]), torch.cat([t, t]), context=ctx, context_mask=mask).chunk(2)
        if inside is None:
            return eps_u + scale * (eps_c - eps_u)
        s_t = torch.where(inside, scale, 1.0).to(eps_c.dtype).view(B, *([1] * (eps_c.dim() - 1)))  # (B, 1, 1, 1)
        return eps_u + s_t * (eps_c - eps_u)

    return model_fn
