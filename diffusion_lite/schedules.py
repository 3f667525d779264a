"""Noise schedules and the forward (noising) process (chapters 01 and 02).

Notation (Ho et al. 2020, "Denoising Diffusion Probabilistic Models", DDPM):

=================  ==========================  ===============================================
symbol             code                        meaning
=================  ==========================  ===============================================
beta_t             ``betas[t]``                variance added at step t, eq. (2)
alpha_t            ``alphas[t]``               1 - beta_t
alpha_bar_t        ``alpha_bar[t]``            prod_{i<=t} alpha_i, eq. (4)
q(x_t | x_0)       :func:`q_sample`            N(sqrt(alpha_bar_t) x_0, (1 - alpha_bar_t) I)
q(x_t | x_{t-1})   :func:`q_step`              N(sqrt(alpha_t) x_{t-1}, beta_t I), eq. (2)
mu~_t, beta~_t     ``posterior_*``             q(x_{t-1} | x_t, x_0), eqs. (6)-(7)
SNR(t)             ``snr``                     alpha_bar_t / (1 - alpha_bar_t)
=================  ==========================  ===============================================

Time steps are 0-indexed: ``t = 0`` is the first noising step, ``t = T - 1`` the last, so
``alpha_bar[T-1]`` is close to 0 (pure noise). Schedules are computed in float64 and stored as float32.
"""

from __future__ import annotations

import math
import numbers
from dataclasses import dataclass

import torch

from .config import ScheduleConfig
from .utils import randn

# ---------------------------------------------------------------------------------------------
# beta schedules: pure functions returning float64 tensors of shape (T,)
# ---------------------------------------------------------------------------------------------


def linear_betas(T: int, beta_start: float = 1e-4, beta_end: float = 0.02) -> torch.Tensor:
    """DDPM's linear schedule (Ho et al. 2020, sec. 4) for T=1000; for other T the betas are scaled by
    1000/T (as in improved-diffusion) so the total noise stays comparable, capped at 0.999."""
    scale = 1000.0 / T
    return torch.linspace(beta_start * scale, beta_end * scale, T, dtype=torch.float64).clamp(max=0.999)


def cosine_betas(T: int, s: float = 0.008, max_beta: float = 0.999) -> torch.Tensor:
    """Nichol & Dhariwal 2021 ("Improved DDPM"), eq. (17): alpha_bar(t) = cos^2((t/T + s)/(1 + s) * pi/2)."""
    steps = torch.arange(T + 1, dtype=torch.float64) / T
    f = torch.cos((steps + s) / (1 + s) * math.pi / 2) ** 2
    alpha_bar = f / f[0]
    betas = 1 - alpha_bar[1:] / alpha_bar[:-1]
    return betas.clamp(max=max_beta)


def sigmoid_betas(T: int, beta_start: float = 1e-4, beta_end: float = 0.02, tau: float = 6.0) -> torch.Tensor:
    """Betas that follow a sigmoid from beta_start to beta_end (as in GeoDiff, Xu et al. 2022); for T other than
    1000 they are scaled by 1000/T like ``linear_betas``, capped at 0.999."""
    x = torch.linspace(-tau, tau, T, dtype=torch.float64)
    return (torch.sigmoid(x) * (beta_end - beta_start) + beta_start).mul(1000.0 / T).clamp(max=0.999)


BETA_SCHEDULES = {"linear": linear_betas, "cosine": cosine_betas, "sigmoid": sigmoid_betas}


def make_betas(cfg: ScheduleConfig) -> torch.Tensor:
    """Dispatch on ``cfg.kind``; returns float64 betas of shape (T,)."""
    if cfg.kind not in BETA_SCHEDULES:
        raise ValueError(f"unknown schedule kind {cfg.kind!r}; expected one of {sorted(BETA_SCHEDULES)}")
    if cfg.T < 2:
        raise ValueError(f"T must be >= 2, got {cfg.T}")
    if cfg.kind == "cosine":
        return cosine_betas(cfg.T)
    return BETA_SCHEDULES[cfg.kind](cfg.T, cfg.beta_start, cfg.beta_end)


# ---------------------------------------------------------------------------------------------
# Schedule: every derived quantity, precomputed
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Schedule:
    """All per-step constants of a diffusion process, each a float32 tensor of shape (T,)."""

    config: ScheduleConfig
    betas: torch.Tensor
    alphas: torch.Tensor
    alpha_bar: torch.Tensor
    alpha_bar_prev: torch.Tensor
    sqrt_alpha_bar: torch.Tensor
    sqrt_one_minus_alpha_bar: torch.Tensor
    posterior_variance: torch.Tensor  # beta~_t, eq. (7)
    posterior_log_variance: torch.Tensor  # log beta~_t, clipped at t=0
    posterior_mean_coef1: torch.Tensor  # multiplies x_0 in mu~_t, eq. (7)
    posterior_mean_coef2: torch.Tensor  # multiplies x_t in mu~_t, eq. (7)
    snr: torch.Tensor

    @property
    def T(self) -> int:
        return self.config.T

    @classmethod
    def from_config(cls, cfg: ScheduleConfig | None = None, **kwargs) -> Schedule:
        """``Schedule.from_config(ScheduleConfig("linear", T=1000))`` or ``Schedule.from_config(kind="linear")``
        (a config or keyword arguments, not both)."""
        if cfg is not None and kwargs:
            raise TypeError(f"give either a ScheduleConfig or keyword arguments, not both (got {sorted(kwargs)} "
                            "besides the config); use cfg.replace(...) to change a config")
        cfg = cfg or ScheduleConfig(**kwargs)
        b = make_betas(cfg)  # float64 throughout, cast at the end
        a = 1.0 - b
        ab = torch.cumprod(a, 0)
        ab_prev = torch.cat([torch.ones(1, dtype=torch.float64), ab[:-1]])
        post_var = b * (1.0 - ab_prev) / (1.0 - ab)
        # beta~_0 is 0; log-variance uses beta~_1 there (as guided-diffusion does)
        post_logvar = torch.log(torch.cat([post_var[1:2], post_var[1:]]))
        f = lambda x: x.to(torch.float32)
        return cls(
            config=cfg, betas=f(b), alphas=f(a), alpha_bar=f(ab), alpha_bar_prev=f(ab_prev),
            sqrt_alpha_bar=f(ab.sqrt()), sqrt_one_minus_alpha_bar=f((1 - ab).sqrt()),
            posterior_variance=f(post_var), posterior_log_variance=f(post_logvar),
            posterior_mean_coef1=f(b * ab_prev.sqrt() / (1.0 - ab)),
            posterior_mean_coef2=f((1.0 - ab_prev) * a.sqrt() / (1.0 - ab)),
            snr=f(ab / (1.0 - ab)),
        )

    def to(self, device: torch.device | str) -> Schedule:
        """A copy with every tensor on `device`."""
        kw = {k: (v.to(device) if isinstance(v, torch.Tensor) else v) for k, v in self.__dict__.items()}
        return Schedule(**kw)


def extract(a: torch.Tensor, t: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """Gather ``a[t]`` for a batch of steps and reshape to broadcast against x: (B,) -> (B, 1, 1, 1)."""
    out = a.to(x.device)[t.to(x.device).long()]  # .long(): a uint8 index would be read as a boolean mask
    return out.reshape(t.shape[0], *([1] * (x.dim() - 1))).to(x.dtype)


def _check_t(schedule: Schedule, x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    if not isinstance(t, torch.Tensor):
        if not isinstance(t, numbers.Integral):  # a float step is a bug, not a step to round
            raise TypeError(f"t must be an integer tensor (B,) or an int, got {type(t).__name__} {t!r}")
        t = torch.full((x.shape[0],), int(t), dtype=torch.long, device=x.device)
    if t.is_floating_point() or t.is_complex() or t.dtype == torch.bool:
        raise TypeError(f"t must be an integer tensor (B,) or an int, got dtype {t.dtype}")
    t = t.long()  # uint8 / int8 steps index like any others
    if t.dim() != 1 or t.shape[0] != x.shape[0]:
        raise ValueError(f"t must have shape ({x.shape[0]},) to match x of shape {tuple(x.shape)}, "
                         f"got {tuple(t.shape)}")
    lo, hi = torch.stack([t.min(), t.max()]).tolist() if t.numel() else (0, 0)  # one read (a sync on a GPU)
    if lo < 0 or hi >= schedule.T:
        raise ValueError(f"t must be in [0, {schedule.T}), got values in [{lo}, {hi}]")
    return t


# ---------------------------------------------------------------------------------------------
# The forward process
# ---------------------------------------------------------------------------------------------


def q_sample(schedule: Schedule, x0: torch.Tensor, t: torch.Tensor | int, noise: torch.Tensor | None = None,
             generator: torch.Generator | None = None) -> torch.Tensor:
    """Closed form of the forward process, DDPM eq. (4): x_t = sqrt(alpha_bar_t) x_0 + sqrt(1 - alpha_bar_t) eps.

    x0: (B, C, H, W) float in [-1, 1]; t: (B,) integer in [0, T) or an int; noise: x0's shape, or None (drawn).
    Returns x_t, same shape as x0.
    """
    if not x0.is_floating_point():
        raise TypeError(f"x0 must be a float tensor in [-1, 1], got {x0.dtype} (convert with utils.from_uint8)")
    t = _check_t(schedule, x0, t)
    if noise is None:
        noise = randn(x0.shape, generator, x0.device, x0.dtype)
    elif noise.shape != x0.shape:
        raise ValueError(f"noise must have x0's shape {tuple(x0.shape)}, got {tuple(noise.shape)}")
    return extract(schedule.sqrt_alpha_bar, t, x0) * x0 + extract(schedule.sqrt_one_minus_alpha_bar, t, x0) * noise


def q_step(schedule: Schedule, x_prev: torch.Tensor, t: torch.Tensor | int,
           generator: torch.Generator | None = None) -> torch.Tensor:
    """One Markov step, DDPM eq. (2): x_t = sqrt(1 - beta_t) x_{t-1} + sqrt(beta_t) eps."""
    t = _check_t(schedule, x_prev, t)
    noise = randn(x_prev.shape, generator, x_prev.device, x_prev.dtype)
    return extract(schedule.alphas, t, x_prev).sqrt() * x_prev + extract(schedule.betas, t, x_prev).sqrt() * noise


def forward_chain(schedule: Schedule, x0: torch.Tensor, t_max: int | None = None,
                  generator: torch.Generator | None = None, keep: list[int] | None = None) -> dict[int, torch.Tensor]:
    """Run the Markov chain step by step from x_0 up to ``t_max`` (default T-1).

    Returns ``{t: x_t}`` for the steps in ``keep`` (default: only t_max); compare with :func:`q_sample`
    to see that the closed form and the chain agree in distribution.
    """
    t_max = schedule.T - 1 if t_max is None else t_max
    keep_set = set(keep) if keep is not None else {t_max}
    out, x = {}, x0
    for t in range(t_max + 1):
        x = q_step(schedule, x, t, generator=generator)
        if t in keep_set:
            out[t] = x
    return out


def q_posterior_mean_variance(schedule: Schedule, x0: torch.Tensor, x_t: torch.Tensor, t: torch.Tensor):
    """Mean and variance of q(x_{t-1} | x_t, x_0), DDPM eqs. (6)-(7). Returns (mean, variance, log_variance)."""
    t = _check_t(schedule, x_t, t)
    mean = extract(schedule.posterior_mean_coef1, t, x_t) * x0 + extract(schedule.posterior_mean_coef2, t, x_t) * x_t
    return mean, extract(schedule.posterior_variance, t, x_t), extract(schedule.posterior_log_variance, t, x_t)


def predict_x0_from_eps(schedule: Schedule, x_t: torch.Tensor, t: torch.Tensor, eps: torch.Tensor) -> torch.Tensor:
    """Invert eq. (4): x_0 = (x_t - sqrt(1 - alpha_bar_t) eps) / sqrt(alpha_bar_t)."""
    return (x_t - extract(schedule.sqrt_one_minus_alpha_bar, t, x_t) * eps) / extract(schedule.sqrt_alpha_bar, t, x_t)


def predict_eps_from_x0(schedule: Schedule, x_t: torch.Tensor, t: torch.Tensor, x0: torch.Tensor) -> torch.Tensor:
    """Invert eq. (4) for the noise: eps = (x_t - sqrt(alpha_bar_t) x_0) / sqrt(1 - alpha_bar_t)."""
    return (x_t - extract(schedule.sqrt_alpha_bar, t, x_t) * x0) / extract(schedule.sqrt_one_minus_alpha_bar, t, x_t)


def v_target(schedule: Schedule, x0: torch.Tensor, t: torch.Tensor, eps: torch.Tensor) -> torch.Tensor:
    """v-prediction target (Salimans & Ho 2022): v = sqrt(alpha_bar) eps - sqrt(1 - alpha_bar) x_0."""
    return extract(schedule.sqrt_alpha_bar, t, x0) * eps - extract(schedule.sqrt_one_minus_alpha_bar, t, x0) * x0


def eps_from_v(schedule: Schedule, x_t: torch.Tensor, t: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    """Convert a v prediction to eps: eps = sqrt(alpha_bar) v + sqrt(1 - alpha_bar) x_t."""
    return extract(schedule.sqrt_alpha_bar, t, x_t) * v + extract(schedule.sqrt_one_minus_alpha_bar, t, x_t) * x_t
