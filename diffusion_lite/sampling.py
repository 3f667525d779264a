"""The reverse process: DDPM ancestral sampling and DDIM (chapter 05); DPM-Solver++ is in dpm_solver.py.

Every sampler is a plain function with one signature (as in k-diffusion)::

    x_0 = sample_ddim(model_fn, schedule, shape=(16, 1, 28, 28), steps=50, generator=g)

where ``model_fn(x_t, t) -> eps_hat`` is any callable: a U-Net trained to predict eps (one trained for
v or x0 predicts something else: wrap it, ``eps_model_fn(unet, schedule, "v")``), a closure that adds text
conditioning, or a classifier-free guidance wrapper (guidance.py). The step functions are pure.

=============  ==============  =========================================================
symbol         code            meaning
=============  ==============  =========================================================
eps_theta      ``eps_hat``     the network's noise prediction
x_0 hat        ``x0_hat``      predicted clean image, eq. (15) of DDPM / eq. (12) of DDIM
sigma_t        ``sigma``       DDIM noise level, eq. (16); eta=1 gives DDPM's posterior std
=============  ==============  =========================================================
"""

from __future__ import annotations

import functools
import numbers
from typing import Callable

import torch
from tqdm.auto import tqdm

from .schedules import Schedule, extract, predict_eps_from_x0, predict_x0_from_eps, q_posterior_mean_variance
from .utils import progress_disabled, randn

ModelFn = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
Callback = Callable[[dict], None]
HALF = (torch.float16, torch.bfloat16)


SPACINGS = ("linspace", "logsnr")  # the time grids timesteps() builds


def timesteps(schedule: Schedule, steps: int, spacing: str = "linspace") -> list[int]:
    """``steps`` distinct, decreasing time steps from T-1 down to 0: the grid a sampler visits.

    "linspace": evenly spaced in t, rounded: the "linspace" spacing of Lin et al. 2024 (Table 2), not their
    "trailing" one (999, 899, ..., 99 for T = 1000, 10 steps). Every sampler's default, as in diffusers.

    "logsnr": evenly spaced in lambda_t = log(alpha_t / sigma_t) = log(alpha_bar_t / (1 - alpha_bar_t)) / 2 (half
    the log-SNR, the time variable of DPM-Solver), each the integer t nearest its lambda; Lu et al. (2022)
    recommend it for low-resolution pixel-space models. With DPM-Solver++ it halves FID / floor at 10 steps for the
    unconditional model but raises it for the text model at guidance 3, whose guidance then acts over more of
    the noisiest steps, where it costs the most variety (BENCHMARKS.md, section 3). The even grid runs
    from lambda at T-2 to lambda at 0, and the first step is moved to T-1: the cosine schedule clips its last beta
    (to 0.999), so lambda falls from -6.5 at T-2 to -9.9 at T-1 (T = 1000), and a grid starting there would spend
    its steps on pure noise. Where two neighbours round to the same t (many steps, near either end) the later
    one moves down. Cosine, T = 1000, 10 steps: 999, 995, 986, 953, 836, 517, 177, 45, 8, 0 (steps of 1.2-1.3 in
    lambda after the first; "linspace": 999, 888, ..., 111, 0, whose steps in lambda run 8.2, 0.72, ..., 0.35,
    ..., 3.4).
    """
    T = schedule.T
    if isinstance(steps, bool) or not isinstance(steps, numbers.Integral) or not 1 <= steps <= T:
        raise ValueError(f"steps must be an integer in [1, {T}], got {steps!r}")
    if spacing not in SPACINGS:
        raise ValueError(f"unknown spacing {spacing!r}; expected one of {', '.join(SPACINGS)}")
    if spacing == "logsnr":
        return _logsnr_timesteps(schedule, steps)
    ts = torch.linspace(T - 1, 0, steps).round().long().tolist()  # float32: every grid so far (seeded samples)
    if len(set(ts)) < steps:  # float32 merges neighbouring steps for T above ~5,000 (T = 10,000, 9,999 steps: 9,997)
        ts = torch.linspace(T - 1, 0, steps, dtype=torch.float64).round().long().tolist()
    return sorted(set(ts), reverse=True)


def _logsnr_timesteps(schedule: Schedule, steps: int) -> list[int]:
    T = schedule.T
    if steps == 1 or T < 3:
        return list(range(T - 1, T - 1 - steps, -1))
    ab = schedule.alpha_bar.detach().double().cpu()
    lam = 0.5 * torch.log(ab / (1 - ab))  # (T,), decreasing in t
    targets = torch.linspace(float(lam[T - 2]), float(lam[0]), steps, dtype=torch.float64)
    ts = [int(torch.argmin((lam - v).abs())) for v in targets]  # the nearest integer t of each target
    ts[0] = T - 1
    for i in range(1, steps):  # strictly decreasing, leaving room for the steps still to come
        ts[i] = max(min(ts[i], ts[i - 1] - 1), steps - 1 - i)
    return ts


def _uniform_step(t: torch.Tensor, t_prev: torch.Tensor) -> tuple[int, int]:
    """The step functions move the whole batch from one t to one t_prev: check that, return both as ints."""
    if t.dim() != 1 or t_prev.shape != t.shape or t.numel() == 0:
        raise ValueError(f"t and t_prev must both be (B,) with B >= 1, got {tuple(t.shape)} and {tuple(t_prev.shape)}")
    t_lo, t_hi, p_lo, p_hi = torch.stack([t.min().long(), t.max().long(), t_prev.min().long(),
                                          t_prev.max().long()]).tolist()  # one device sync
    if t_lo != t_hi or p_lo != p_hi:
        raise ValueError(f"every sample must be at the same step: got t in [{t_lo}, {t_hi}] and t_prev in "
                         f"[{p_lo}, {p_hi}]; call the step once per distinct (t, t_prev)")
    return t_lo, p_lo


def float32_update(step_fn):
    """Decorator of the step functions: float16 and bfloat16 inputs are updated in float32, and (x_prev, x0_hat)
    returned in x_t's dtype. In bfloat16, alpha_bar of the first 10 (linear) to 21 (cosine, T = 1000) steps rounds
    to 1 (in float16 the first 2 to 4), so (1 - ab_prev) / (1 - ab_t) would be 0/0 = NaN."""
    @functools.wraps(step_fn)
    def step(schedule, x_t, t, t_prev, eps_hat, *args, **kwargs):
        if x_t.dtype not in HALF:
            return step_fn(schedule, x_t, t, t_prev, eps_hat, *args, **kwargs)
        up = lambda a: a.float() if isinstance(a, torch.Tensor) and a.is_floating_point() else a  # noqa: E731
        x_prev, x0_hat = step_fn(schedule, x_t.float(), t, t_prev, eps_hat.float(), *map(up, args),
                                 **{k: up(v) for k, v in kwargs.items()})
        return x_prev.to(x_t.dtype), x0_hat.to(x_t.dtype)
    return step


def _x0_and_eps(schedule, x_t, t, eps_hat, clip_x0: bool):
    """Predicted x_0 from eps_hat; with ``clip_x0`` clamp it to [-1, 1] and re-derive eps from it."""
    x0_hat = predict_x0_from_eps(schedule, x_t, t, eps_hat)
    if clip_x0:
        x0_hat = x0_hat.clamp(-1.0, 1.0)
        eps_hat = predict_eps_from_x0(schedule, x_t, t, x0_hat)
    return x0_hat, eps_hat


@float32_update
def ddpm_step(schedule: Schedule, x_t: torch.Tensor, t: torch.Tensor, t_prev: torch.Tensor, eps_hat: torch.Tensor,
              noise: torch.Tensor, clip_x0: bool = True) -> tuple[torch.Tensor, torch.Tensor]:
    """One ancestral step x_t -> x_{t_prev}, from q(x_{t_prev} | x_t, x0_hat) (DDPM eqs. 6-7, Algorithm 2).

    With ``t_prev = t - 1`` this is DDPM's step; with larger jumps the posterior is taken between
    alpha_bar_t and alpha_bar_{t_prev} (as in "respaced" DDPM, Nichol & Dhariwal 2021).
    ``t_prev = -1`` means the final step to x_0, where no noise is added. t and t_prev (B,) must each hold
    one value for the whole batch (ValueError otherwise). Returns (x_prev, x0_hat).
    """
    t0, t_prev0 = _uniform_step(t, t_prev)
    x0_hat, eps_hat = _x0_and_eps(schedule, x_t, t, eps_hat, clip_x0)
    if t_prev0 == t0 - 1:
        mean, var, _ = q_posterior_mean_variance(schedule, x0_hat, x_t, t)
    else:  # respaced: the posterior of the coarser chain whose steps are t_prev -> t
        ab_t = extract(schedule.alpha_bar, t, x_t)
        ab_prev = extract(schedule.alpha_bar, t_prev.clamp(min=0), x_t) if t_prev0 >= 0 else torch.ones_like(ab_t)
        beta = 1 - ab_t / ab_prev
        var = beta * (1 - ab_prev) / (1 - ab_t)
        mean = (ab_prev.sqrt() * beta / (1 - ab_t)) * x0_hat + ((1 - beta).sqrt() * (1 - ab_prev) / (1 - ab_t)) * x_t
    if t_prev0 < 0:
        return x0_hat, x0_hat
    return mean + var.sqrt() * noise, x0_hat


@float32_update
def ddim_step(schedule: Schedule, x_t: torch.Tensor, t: torch.Tensor, t_prev: torch.Tensor, eps_hat: torch.Tensor,
              noise: torch.Tensor | None = None, eta: float = 0.0, clip_x0: bool = True):
    """DDIM update (Song et al. 2021, eq. 12) from t to t_prev (``t_prev = -1``: to x_0), each (B,) holding one
    value for the whole batch. Returns (x_prev, x0_hat).

    x_prev = sqrt(ab_prev) x0_hat + sqrt(1 - ab_prev - sigma^2) eps_hat + sigma noise,
    sigma = eta sqrt((1 - ab_prev) / (1 - ab_t)) sqrt(1 - ab_t / ab_prev)   (eq. 16).
    eta = 0 is deterministic; eta = 1 matches DDPM's posterior variance.
    """
    _, t_prev0 = _uniform_step(t, t_prev)
    x0_hat, eps_hat = _x0_and_eps(schedule, x_t, t, eps_hat, clip_x0)
    if t_prev0 < 0:
        return x0_hat, x0_hat
    ab_t = extract(schedule.alpha_bar, t, x_t)
    ab_prev = extract(schedule.alpha_bar, t_prev, x_t)
    sigma = eta * ((1 - ab_prev) / (1 - ab_t) * (1 - ab_t / ab_prev)).sqrt()
    x_prev = ab_prev.sqrt() * x0_hat + (1 - ab_prev - sigma**2).clamp(min=0).sqrt() * eps_hat
    if eta > 0:
        if noise is None:
            raise ValueError("ddim_step with eta > 0 needs noise")
        x_prev = x_prev + sigma * noise
    return x_prev, x0_hat


def _loop(step_fn, model_fn: ModelFn, schedule: Schedule, shape, x_T, steps, generator, callback, progress, device,
          dtype, desc, spacing="linspace", grid=None, after_step=None):
    """The chain every sampler runs: ``step_fn`` over the pairs of ``timesteps(schedule, steps, spacing)`` (or of
    ``grid``, an explicit decreasing list of t, whose first entry x_T then is at: editing.py starts mid-chain),
    from x_T; ``after_step(x, t_next) -> x``, if given, may change the state after each step (inpainting puts
    the known pixels back)."""
    if dtype is not None and not (isinstance(dtype, torch.dtype) and dtype.is_floating_point):
        raise TypeError(f"dtype must be a floating-point torch.dtype (the model's, e.g. torch.float32), got {dtype!r}")
    if x_T is None:
        if shape is None:
            raise ValueError("give either shape=(B, C, H, W) or x_T")
        x_T = randn(shape, generator, device if device is not None else schedule.alpha_bar.device, dtype)
    elif not isinstance(x_T, torch.Tensor) or not x_T.is_floating_point():
        got = x_T.dtype if isinstance(x_T, torch.Tensor) else type(x_T).__name__
        raise TypeError(f"x_T must be a floating-point tensor (the model's dtype, usually float32), got {got}")
    elif dtype is not None and x_T.dtype != dtype:
        raise ValueError(f"x_T is {x_T.dtype} but dtype={dtype}: give one of them (dtype is x_T's when drawn)")
    elif shape is not None and tuple(shape) != tuple(x_T.shape):
        raise ValueError(f"shape {tuple(shape)} and x_T of shape {tuple(x_T.shape)} disagree; give one of them")
    # the update runs in at least float32: in bfloat16, alpha_bar near t = 0 rounds to 1 and the posterior's
    # (1 - ab_prev) / (1 - ab_t) is 0/0; the model still sees x_T's dtype
    x = x_T.float() if x_T.dtype in HALF else x_T
    B = x.shape[0]
    ts = timesteps(schedule, steps, spacing) if grid is None else list(grid)
    pairs = list(zip(ts, ts[1:] + [-1]))
    for i, (t_cur, t_next) in enumerate(tqdm(pairs, desc=desc, disable=progress_disabled(progress), leave=False)):
        t = torch.full((B,), t_cur, dtype=torch.long, device=x.device)
        t_prev = torch.full((B,), t_next, dtype=torch.long, device=x.device)
        with torch.no_grad():
            eps_hat = model_fn(x.to(x_T.dtype), t)
        if eps_hat.shape != x.shape:
            raise ValueError(f"model_fn returned shape {tuple(eps_hat.shape)}, expected {tuple(x.shape)}")
        noise = randn(x.shape, generator, x.device, x.dtype) if t_next >= 0 else None
        x, x0_hat = step_fn(x, t, t_prev, eps_hat.to(x.dtype), noise)
        if after_step is not None:
            x = after_step(x, t_next)
        if callback is not None:
            callback({"i": i, "t": t_cur, "t_next": t_next, "x_t": x, "x0_hat": x0_hat})
    return x.to(x_T.dtype)


def batches_bar(schedule: Schedule, sampler: str, steps: int, n_batches: int, batch_size: int,
                progress: bool = True):
    """One tqdm bar over every sampler step of ``n_batches`` batches ("DDIM 50 steps x 4 batches of <= 256"): a
    bar over batches would sit still for minutes. Update it from the samplers' callback; close it after."""
    batches = f"{n_batches} batch{'es' if n_batches > 1 else ''}"
    return tqdm(total=n_batches * steps, unit="step", leave=False,  # every grid has exactly `steps` steps
                desc=f"{str(sampler).upper()} {steps} steps x {batches} of <= {batch_size}",
                disable=progress_disabled(progress))


def sample_ddpm(model_fn: ModelFn, schedule: Schedule, *, shape=None, x_T=None, steps: int | None = None,
                generator: torch.Generator | None = None, callback: Callback | None = None, clip_x0: bool = True,
                progress: bool = True, device=None, dtype: torch.dtype | None = None,
                spacing: str = "linspace") -> torch.Tensor:
    """Ancestral sampling (DDPM Algorithm 2), optionally on a coarser grid of ``steps`` time steps.

    shape: (B, C, H, W) to draw x_T ~ N(0, I) with ``generator`` (on its device), moved to ``device``
    (default: the schedule's device, e.g. after ``schedule.to('cuda')``) in ``dtype`` (default: torch's default,
    float32; give the model's, e.g. torch.bfloat16, for a model with such weights); or pass x_T. The model sees
    x_t in x_T's dtype; float16 and bfloat16 chains are updated in float32 between model calls.
    callback(dict(i, t, t_next, x_t, x0_hat)) is called after every step: x0_hat is the prediction made at t, x_t
    the new, less noisy state at t_next (-1 after the last step, where x_t is the sample). spacing: the time grid,
    "linspace" or "logsnr" (``timesteps``).
    Returns x_0 of shape (B, C, H, W), roughly in [-1, 1].

    The added noise has the posterior variance beta_tilde (Ho et al.'s sigma_t^2 = beta_tilde_t). On a coarse
    grid this under-disperses a little even with the exact noise prediction: for data N(0.3, 0.5^2) and
    ``clip_x0=False`` (about 8% of that data lies above 1, so the default clip would distort it), the cosine
    schedule gives samples of std 0.467 / 0.482 / 0.498 with 50 / 100 / 1000 steps (linear: 0.443 / 0.468 /
    0.496; exact, propagated through the chain's linear steps). Nichol & Dhariwal (2021) learn the variance,
    which (among other gains) makes sampling with fewer steps work better. ``sample_ddim`` with eta = 1 takes
    the same steps.
    """
    steps = schedule.T if steps is None else steps
    return _loop(step_function("ddpm", schedule, clip_x0=clip_x0), model_fn, schedule, shape, x_T, steps, generator,
                 callback, progress, device, dtype, "DDPM", spacing)


def sample_ddim(model_fn: ModelFn, schedule: Schedule, *, shape=None, x_T=None, steps: int = 50, eta: float = 0.0,
                generator: torch.Generator | None = None, callback: Callback | None = None, clip_x0: bool = True,
                progress: bool = True, device=None, dtype: torch.dtype | None = None,
                spacing: str = "linspace") -> torch.Tensor:
    """DDIM sampling (Song et al. 2021) over ``steps`` time steps (evenly spaced by default); sample_ddpm's
    signature plus eta.

    eta in [0, 1]: 0 is deterministic, 1 has DDPM's posterior variance (eq. 16); beyond 1 the update of
    eq. 12 has no real solution.
    """
    return _loop(step_function("ddim", schedule, eta=eta, clip_x0=clip_x0), model_fn, schedule, shape, x_T, steps,
                 generator, callback, progress, device, dtype, "DDIM", spacing)


SAMPLERS = ("ddpm", "ddim", "dpm++2m")  # the names sample() takes; DPM-Solver++(2M) lives in dpm_solver.py


def step_function(sampler: str, schedule: Schedule, *, eta: float = 0.0, clip_x0: bool = True):
    """The update of the sampler named ``sampler`` (one of SAMPLERS) as ``fn(x_t, t, t_prev, eps_hat, noise) ->
    (x_prev, x0_hat)``, what its sample_* function runs at each step; DPM-Solver++'s keeps the previous step's
    x0_hat, so make a new one per chain. eta: DDIM's, in [0, 1]."""
    if sampler not in SAMPLERS:
        raise ValueError(f"unknown sampler {sampler!r}; expected one of {', '.join(SAMPLERS)}")
    if sampler == "ddim" and not 0.0 <= eta <= 1.0:
        raise ValueError(f"DDIM eta must be in [0, 1] (0: deterministic, 1: DDPM-like), got {eta}")
    if sampler != "ddim" and eta != 0.0:
        raise ValueError(f"eta is DDIM's noise setting, not the {sampler!r} sampler's")
    if sampler == "ddpm":
        return lambda x, t, tp, e, n: ddpm_step(schedule, x, t, tp, e, n, clip_x0)
    if sampler == "ddim":
        return lambda x, t, tp, e, n: ddim_step(schedule, x, t, tp, e, n, eta, clip_x0)
    from .dpm_solver import dpmpp_2m_stepper  # it builds on this module
    return dpmpp_2m_stepper(schedule, clip_x0)


def sample(model_fn: ModelFn, schedule: Schedule, *, sampler: str = "ddim", **kwargs) -> torch.Tensor:
    """Dispatch by name: ``sample(model_fn, schedule, sampler="ddpm", shape=..., steps=...)``; one of SAMPLERS."""
    from .dpm_solver import sample_dpmpp_2m  # it builds on this module

    samplers = {"ddpm": sample_ddpm, "ddim": sample_ddim, "dpm++2m": sample_dpmpp_2m}
    if sampler not in samplers:
        raise ValueError(f"unknown sampler {sampler!r}; expected one of {', '.join(SAMPLERS)}")
    return samplers[sampler](model_fn, schedule, **kwargs)


def eps_model_fn(model: torch.nn.Module, schedule: Schedule, prediction: str = "eps", **cond) -> ModelFn:
    """Wrap a network into ``model_fn(x_t, t) -> eps_hat``, converting v- or x0-predictions to eps.

    Extra keyword arguments (e.g. ``context=..., context_mask=...``) are passed to every call.
    """
    from .schedules import eps_from_v

    def fn(x_t, t):
        out = model(x_t, t, **cond)
        if prediction == "eps":
            return out
        if prediction == "v":
            return eps_from_v(schedule, x_t, t, out)
        if prediction == "x0":
            return predict_eps_from_x0(schedule, x_t, t, out)
        raise ValueError(f"unknown prediction {prediction!r}")

    return fn
