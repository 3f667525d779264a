"""DPM-Solver++(2M): a second-order multistep sampler (Lu et al. 2022, "DPM-Solver++"), chapter 05's going further.

DDIM with eta = 0 solves the probability-flow ODE with one model call per step, holding the predicted clean image
x0_hat constant over each step: a first-order method, so its error falls only in proportion to the step size.
DPM-Solver++ writes the same ODE in log-SNR time and uses x0_hat from the *previous* step as well, extrapolating
it linearly across the step: second order, still one model call per step. It is a popular sampler for Stable
Diffusion ("DPM++ 2M"; diffusers' DPMSolverMultistepScheduler, k-diffusion's sample_dpmpp_2m, which this follows).
How much it helps a real network depends on the time grid as much as on the update (chapter 05, section 6, and
BENCHMARKS.md, section 3): ``spacing="logsnr"`` visits steps even in lambda (``sampling.timesteps``).

=================  ===============  ==============================================================
symbol             code             meaning
=================  ===============  ==============================================================
alpha_t, sigma_t   ``a, sig``       sqrt(alpha_bar_t), sqrt(1 - alpha_bar_t): x_t = alpha_t x_0 + sigma_t eps
                                    (not DDPM's alpha_t = 1 - beta_t, nor DDIM's noise level sigma_t)
lambda_t           ``lam``          log(alpha_t / sigma_t), half the log-SNR; grows as t falls
h                  ``h``            lambda_{t_prev} - lambda_t > 0, the step in log-SNR time
x0_hat             ``x0_hat``       the data prediction D(x_t) (DPM-Solver++ is written in it)
r                  ``r``            h_last / h, the previous step's size relative to this one
=================  ===============  ==============================================================

One step from t to s = t_prev, written with the data prediction x0_hat as DPM-Solver++ is:

    x_s = (sigma_s / sigma_t) x_t - alpha_s (e^{-h} - 1) D
    D = x0_hat                                        first order: exactly DDIM's eta = 0 step
    D = (1 + 1/(2r)) x0_hat - 1/(2r) x0_hat_last      second order (Algorithm 2, "2M")

(DDIM's step x_s = alpha_s x0_hat + sigma_s eps_hat with eps_hat = (x_t - alpha_t x0_hat) / sigma_t is the first
line with D = x0_hat, since alpha_t sigma_s / sigma_t = alpha_s e^{-h}.) With ``clip_x0`` each x0_hat is clipped
to [-1, 1], but D, an extrapolation, is not: it can reach 1 + 1/r.

The first step has no previous prediction and takes the first-order form. So does the step into t = 0, the last
noisy state (alpha_bar_0 = 0.99996 for the cosine schedule): on DDIM's grid, even in t, it is the longest after the
first in log-SNR time (10 steps: lambda 1.7 -> 5.1, h = 3.4, against 0.35-0.72 for the steps between), and on
Gaussian data N(0.3, 0.5^2) extrapolating across it made the error larger than DDIM's (on narrow data,
N(0, 0.1^2), it would have helped). This is a choice of this package: k-diffusion's and diffusers' first-order
final step is the one to sigma = 0, which returns x0_hat; here that is the step from t = 0 to t_prev = -1, which
returns x0_hat as DDIM's does. It also caps the order: on N(0.3, 0.5^2) with the cosine schedule and DDIM's grid
the error falls 0.0057 -> 0.0039 -> 0.0018 over 20, 40, 80 steps, first-order behaviour at a level far below
DDIM's (0.14 -> 0.07 -> 0.03).

With guidance the model function changes along the chain wherever guidance switches (a guidance interval's
edges, CADS's prompt noise): the 2M step then extrapolates between two differently guided x0_hat, about half a
step's worth of extra (or less) guidance at an edge. k-diffusion and diffusers behave the same.
"""

from __future__ import annotations

import torch

from .sampling import Callback, ModelFn, _loop, _uniform_step, _x0_and_eps, float32_update
from .schedules import Schedule, extract


def _alpha_sigma_lambda(schedule: Schedule, t: torch.Tensor, x: torch.Tensor):
    """(alpha_t, sigma_t, lambda_t), each (B, 1, 1, 1) in x's dtype."""
    ab = extract(schedule.alpha_bar, t, x)
    a, sig = ab.sqrt(), (1 - ab).sqrt()
    return a, sig, torch.log(a) - torch.log(sig)


@float32_update
def dpmpp_2m_step(schedule: Schedule, x_t: torch.Tensor, t: torch.Tensor, t_prev: torch.Tensor,
                  eps_hat: torch.Tensor, x0_last: torch.Tensor | None = None, t_last: torch.Tensor | None = None,
                  clip_x0: bool = True) -> tuple[torch.Tensor, torch.Tensor]:
    """One DPM-Solver++(2M) step x_t -> x_{t_prev} (``t_prev = -1``: to x_0). Returns (x_prev, x0_hat).

    x_t, eps_hat: (B, C, H, W); t, t_prev: (B,) long, each one value for the whole batch. x0_last: the x0_hat
    the previous step predicted at t_last (B,), a larger t; None (the first step), or a step into t_prev = 0,
    takes the first-order step, which equals DDIM's with eta = 0. With ``clip_x0`` the data prediction x0_hat is
    clamped to [-1, 1] (the extrapolated D is not; module docstring).
    """
    t0, t_prev0 = _uniform_step(t, t_prev)
    x0_hat, _ = _x0_and_eps(schedule, x_t, t, eps_hat, clip_x0)
    if t_prev0 < 0:
        return x0_hat, x0_hat
    if (x0_last is None) != (t_last is None):
        raise ValueError("give x0_last and t_last together (the previous step's prediction and its t), or neither")
    _, sig_t, lam_t = _alpha_sigma_lambda(schedule, t, x_t)
    a_s, sig_s, lam_s = _alpha_sigma_lambda(schedule, t_prev, x_t)
    h = lam_s - lam_t  # (B, 1, 1, 1), > 0
    D = x0_hat
    if x0_last is not None and t_prev0 > 0:  # second order, except into t = 0 (module docstring)
        t_last0, _ = _uniform_step(t_last, t_last)
        if t_last0 <= t0:
            raise ValueError(f"t_last ({t_last0}) must be a larger, noisier step than t ({t0})")
        _, _, lam_last = _alpha_sigma_lambda(schedule, t_last, x_t)
        r = (lam_t - lam_last) / h
        D = (1 + 1 / (2 * r)) * x0_hat - (1 / (2 * r)) * x0_last.to(x0_hat.dtype)
    return (sig_s / sig_t) * x_t - a_s * torch.expm1(-h) * D, x0_hat


def dpmpp_2m_stepper(schedule: Schedule, clip_x0: bool = True):
    """``dpmpp_2m_step`` as ``fn(x_t, t, t_prev, eps_hat, noise) -> (x_prev, x0_hat)`` with its memory of the
    previous step (``sampling.step_function("dpm++2m", ...)``); one per chain."""
    last = {}  # the previous step's x0_hat and t: the "multistep" memory

    def step(x, t, t_prev, eps_hat, noise):
        x_prev, x0_hat = dpmpp_2m_step(schedule, x, t, t_prev, eps_hat, last.get("x0"), last.get("t"), clip_x0)
        last.update(x0=x0_hat, t=t)
        return x_prev, x0_hat

    return step


def sample_dpmpp_2m(model_fn: ModelFn, schedule: Schedule, *, shape=None, x_T=None, steps: int = 50,
                    generator: torch.Generator | None = None, callback: Callback | None = None, clip_x0: bool = True,
                    progress: bool = True, device=None, dtype: torch.dtype | None = None,
                    spacing: str = "linspace") -> torch.Tensor:
    """DPM-Solver++(2M) over ``steps`` time steps; sample_ddim's signature without eta: deterministic given
    x_T, one model call per step. ``generator`` only draws x_T when it is not given. spacing: the time grid
    (``sampling.timesteps``). On the default grid, even in t as DDIM's, the first step spans 8.2 of lambda's 15
    units (cosine, 10 steps: from T-1 to 888), the extrapolation of x0_hat has little to work with, and the
    samples are no closer to the ODE's solution than DDIM's at 5-20 steps; ``spacing="logsnr"``, even in
    lambda, is what makes the second order count there (chapter 05, section 6; BENCHMARKS.md, section 3: better
    for unguided sampling, worse for guidance 3 over the whole chain). Returns x_0 (B, C, H, W), roughly in
    [-1, 1]."""
    return _loop(dpmpp_2m_stepper(schedule, clip_x0), model_fn, schedule, shape, x_T, steps, generator, callback,
                 progress, device, dtype, "DPM++ 2M", spacing)
