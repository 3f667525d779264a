"""Figures and widgets for chapters 00-02: the forward process and noise schedules.

Every figure is a plain function returning a matplotlib ``Figure``; it is unit-tested (tests/test_widgets.py)
and a notebook calls it once with default values for the static copy that reads without a kernel. Every
``*_widget`` wraps one figure in ``ipywidgets.interactive``; ``widget.result`` is the Figure on show.

Images are (B, C, H, W) in [-1, 1]. ``noise`` (same shape) is drawn once by the caller, so moving a slider
changes only the time step, not the random draw. Time steps are 0-indexed as in schedules.py.
"""

from __future__ import annotations

import math

import numpy as np
import torch

from .config import ScheduleConfig
from .schedules import Schedule, q_sample
from .viz import make_grid

_trapz = getattr(np, "trapezoid", None) or np.trapz  # numpy >= 2 renamed trapz

KINDS = ("linear", "cosine", "sigmoid")
# line style per schedule kind, so the curves differ in more than colour (cosine's orange and sigmoid's green look
# alike to red-green colour-blind readers)
KIND_STYLES = {"linear": "-", "cosine": "--", "sigmoid": "-."}
T_OPTIONS = (10, 50, 100, 250, 1000)


def _check_pair(x0: torch.Tensor, noise: torch.Tensor) -> None:
    if not isinstance(x0, torch.Tensor) or x0.dim() != 4:
        raise ValueError(f"x0 must be a (B, C, H, W) tensor in [-1, 1], got {getattr(x0, 'shape', type(x0))}")
    if not isinstance(noise, torch.Tensor) or noise.shape != x0.shape:
        raise ValueError(f"noise must be a tensor shaped like x0 {tuple(x0.shape)}, "
                         f"got {getattr(noise, 'shape', type(noise))}")


def _check_t(schedule: Schedule, t: int) -> int:
    if not 0 <= int(t) < schedule.T:
        raise ValueError(f"t must be in [0, {schedule.T}), got {t}")
    return int(t)


def _figure(figsize, **kw):
    import matplotlib.pyplot as plt  # pyplot registers the figure, so the inline backend shows it

    return plt.figure(figsize=figsize, **kw)


# ---------------------------------------------------------------------------------------------
# chapter 01: the forward process at one time step
# ---------------------------------------------------------------------------------------------


def forward_process_figure(schedule: Schedule, x0: torch.Tensor, t: int, noise: torch.Tensor):
    """x_t = q_sample(schedule, x0, t, noise) (DDPM eq. 4) in three panels: the images (clipped to [-1, 1]
    for display), the signal and noise coefficients sqrt(alpha_bar) and sqrt(1 - alpha_bar) over t with a
    marker at t, and the histogram of x_t's pixel values next to the N(0, 1) density.

    x0, noise: (B, C, H, W); t: int in [0, T). Returns the Figure.
    """
    _check_pair(x0, noise)
    t = _check_t(schedule, t)
    x_t = q_sample(schedule, x0, t, noise=noise)
    ab = float(schedule.alpha_bar[t])
    fig = _figure((12, 3.9))
    gs = fig.add_gridspec(1, 3, width_ratios=(1.2, 1, 1), wspace=0.3, top=0.8)
    ax_img, ax_coef, ax_hist = (fig.add_subplot(gs[0, i]) for i in range(3))

    grid = make_grid(x_t.cpu(), nrow=int(math.ceil(math.sqrt(x0.shape[0]))))
    ax_img.imshow(grid, cmap="gray", vmin=0, vmax=255, interpolation="nearest")
    ax_img.set_axis_off()
    ax_img.set_title("x_t (display clips to [-1, 1])")

    ts = np.arange(schedule.T)
    ax_coef.plot(ts, schedule.sqrt_alpha_bar.cpu().numpy(), label=r"signal $\sqrt{\bar\alpha_t}$")
    ax_coef.plot(ts, schedule.sqrt_one_minus_alpha_bar.cpu().numpy(), label=r"noise $\sqrt{1-\bar\alpha_t}$")
    ax_coef.axvline(t, color="k", ls=":", lw=1)
    ax_coef.set(xlabel="time step t", ylabel="coefficient", ylim=(-0.02, 1.02), title="what x_t is made of")
    ax_coef.legend(loc="center right", fontsize=8)

    bins = np.linspace(-4, 4, 81)
    ax_hist.hist(x_t.flatten().cpu().numpy(), bins=bins, density=True, color="C2", alpha=0.7, label="pixels of x_t")
    ax_hist.plot(bins, np.exp(-bins**2 / 2) / math.sqrt(2 * math.pi), "k--", lw=1, label="N(0, 1)")
    ax_hist.set(xlabel="pixel value", ylabel="density", title="pixel histogram", ylim=(0, 2.0))
    ax_hist.legend(fontsize=8)
    snr = ab / (1 - ab)
    fig.suptitle(f"{schedule.config.kind} schedule, T = {schedule.T}:  t = {t},  alpha_bar = {ab:.3f},  "
                 f"SNR = {snr:.3g}")
    return fig


def forward_process_widget(schedule: Schedule, x0: torch.Tensor, noise: torch.Tensor, t: int | None = None):
    """``interactive`` with a time-step slider over [0, T) for :func:`forward_process_figure`."""
    from ipywidgets import IntSlider, interactive

    _check_pair(x0, noise)
    t = schedule.T // 4 if t is None else _check_t(schedule, t)
    slider = IntSlider(value=t, min=0, max=schedule.T - 1, step=1, description="t", continuous_update=False)
    return interactive(lambda t: forward_process_figure(schedule, x0, t, noise), t=slider)


# ---------------------------------------------------------------------------------------------
# chapter 01: why many small steps -- a 1-D toy whose reverse process we can compute exactly
# ---------------------------------------------------------------------------------------------


def reverse_density_1d(schedule: Schedule, x_t: float, t: int, s: int, grid: np.ndarray,
                       data: tuple[float, ...] = (-1.0, 1.0)) -> np.ndarray:
    """The exact reverse density q(x_s | x_t) on ``grid`` for a toy "pixel" whose clean value x_0 is one of
    ``data`` (equally likely), for 0 <= s < t < T.

    Bayes: q(x_s | x_t) is proportional to q(x_t | x_s) q(x_s), with
      q(x_s)       = mean over d in data of N(sqrt(alpha_bar_s) d, 1 - alpha_bar_s)          (DDPM eq. 4)
      q(x_t | x_s) = N(sqrt(alpha_bar_t / alpha_bar_s) x_s, 1 - alpha_bar_t / alpha_bar_s)   (eq. 2, s..t)
    grid: (G,) increasing, fine enough to resolve a std of sqrt(1 - alpha_bar_s). Returns (G,) float64,
    normalised to integrate to 1 (trapezoid rule).
    """
    t, s = _check_t(schedule, t), _check_t(schedule, s)
    if s >= t:
        raise ValueError(f"need s < t (a step back in time), got s={s}, t={t}")
    grid = np.asarray(grid, dtype=np.float64)
    if grid.ndim != 1 or grid.size < 3 or np.any(np.diff(grid) <= 0):
        raise ValueError("grid must be a 1-D increasing array of at least 3 points")
    ab = schedule.alpha_bar.cpu().double().numpy()
    ab_s, ab_ts = ab[s], ab[t] / ab[s]

    def log_normal(x, mean, var):
        return -0.5 * (x - mean) ** 2 / var - 0.5 * np.log(2 * np.pi * var)

    log_prior = np.logaddexp.reduce([log_normal(grid, math.sqrt(ab_s) * d, 1 - ab_s) for d in data], axis=0)
    log_post = log_normal(x_t, math.sqrt(ab_ts) * grid, 1 - ab_ts) + log_prior
    p = np.exp(log_post - log_post.max())
    return p / _trapz(p, grid)


def reverse_jump_figure(schedule: Schedule, x_t: float = 0.5, t: int | None = None,
                        s_values: tuple[int, ...] | None = None, grid: np.ndarray | None = None):
    """One panel per s: the exact q(x_s | x_t) of :func:`reverse_density_1d` (data at -1 and +1) next to the
    Gaussian with the same mean and variance, the best a single Gaussian reverse step could do.

    t defaults to T - 1 (pure noise); s_values default to one step back (t - 1), back to where alpha_bar is
    0.25 and where it is 0.75, and all the way to s = 0.
    """
    T = schedule.T
    t = T - 1 if t is None else _check_t(schedule, t)
    if t < 1:
        raise ValueError(f"t must be >= 1 for a reverse jump to an earlier s < t, got {t}")
    if s_values is None:  # one step back, back to where alpha_bar is 0.25 and 0.75, and back to the data
        ab = schedule.alpha_bar.cpu().numpy()
        middle = [int(np.argmin(np.abs(ab - a))) for a in (0.25, 0.75)]
        s_values = tuple(dict.fromkeys([t - 1] + [s for s in middle if s < t - 1] + [0]))
    grid = np.linspace(-2.5, 2.5, 5001) if grid is None else grid
    fig = _figure((3.2 * len(s_values), 3.2))
    axes = fig.subplots(1, len(s_values))
    axes = np.atleast_1d(axes)
    for ax, s in zip(axes, s_values):
        p = reverse_density_1d(schedule, x_t, t, s, grid)
        mean = _trapz(grid * p, grid)
        var = _trapz((grid - mean) ** 2 * p, grid)
        gauss = np.exp(-(grid - mean) ** 2 / (2 * var)) / np.sqrt(2 * np.pi * var)
        ax.plot(grid, p, lw=1.5, label=r"exact $q(x_s \mid x_t)$")
        ax.plot(grid, gauss, "--", lw=1.2, label="Gaussian, same mean/var")
        ab_s = float(schedule.alpha_bar[s])
        ax.set(title=f"{t - s} step(s) back: s = {s}\n" + r"$\bar\alpha_s$" + f" = {ab_s:.3f}", xlabel="$x_s$",
               yticks=[])
        ax.set_ylim(0, 1.15 * max(p.max(), gauss.max()))
    axes[0].set_ylabel("density")
    axes[-1].legend(fontsize=9, loc="upper left", bbox_to_anchor=(1.02, 1))  # beside the panels, over no curve
    fig.suptitle(f"Undoing noise from x_t = {x_t} at t = {t} ({schedule.config.kind}, T = {T}); "
                 "clean values are -1 or +1", y=1.02)
    fig.tight_layout()
    return fig


# ---------------------------------------------------------------------------------------------
# chapter 02: schedules side by side
# ---------------------------------------------------------------------------------------------


def schedules_for(T: int, kinds: tuple[str, ...] = KINDS) -> dict[str, Schedule]:
    """{kind: Schedule.from_config(ScheduleConfig(kind, T))} for each kind."""
    return {k: Schedule.from_config(ScheduleConfig(kind=k, T=int(T))) for k in kinds}


def schedule_comparison_figure(x0: torch.Tensor, noise: torch.Tensor, T: int = 1000, t_frac: float = 0.5,
                               kinds: tuple[str, ...] = KINDS):
    """alpha_bar and log10 SNR against (t + 1) / T for each schedule kind at this T (one colour and line style,
    KIND_STYLES, per kind), and x0 noised to the same t = round(t_frac * (T - 1)) under each schedule (one row
    of images per kind, the same noise).

    x0, noise: (B, C, H, W); t_frac in [0, 1]. Returns the Figure.
    """
    _check_pair(x0, noise)
    if not 0.0 <= t_frac <= 1.0:
        raise ValueError(f"t_frac must be in [0, 1], got {t_frac}")
    if not kinds:
        raise ValueError("kinds must name at least one schedule")
    scheds = schedules_for(T, kinds)
    t = int(round(t_frac * (T - 1)))
    fig = _figure((13, 1.4 + 1.1 * max(len(kinds), 3)))
    gs = fig.add_gridspec(len(kinds), 3, width_ratios=(1, 1, 1.5), wspace=0.3, hspace=0.4, top=0.85)
    ax_ab, ax_snr = fig.add_subplot(gs[:, 0]), fig.add_subplot(gs[:, 1])
    u = (np.arange(T) + 1) / T  # index t holds alpha_bar after t + 1 of the T steps
    for i, (k, sch) in enumerate(scheds.items()):
        style = dict(color=f"C{i}", ls=KIND_STYLES.get(k, ":"), lw=1.8, label=k)
        ax_ab.plot(u, sch.alpha_bar.numpy(), **style)
        ax_snr.plot(u, np.log10(sch.snr.double().numpy()), **style)
        ax_img = fig.add_subplot(gs[i, 2])
        x_t = q_sample(sch, x0, t, noise=noise)
        ax_img.imshow(make_grid(x_t.cpu(), nrow=x0.shape[0]), cmap="gray", vmin=0, vmax=255, interpolation="nearest")
        ax_img.set_xticks([])
        ax_img.set_yticks([])
        ax_img.set_ylabel(k, color=f"C{i}")
        ax_img.set_title(f"alpha_bar = {float(sch.alpha_bar[t]):.3f}", fontsize=9)
    for ax in (ax_ab, ax_snr):
        ax.axvline((t + 1) / T, color="k", ls=":", lw=1)
        ax.set_xlabel("(t + 1) / T")
        ax.legend(fontsize=9)
    ax_ab.set(ylabel=r"$\bar\alpha_t$", title="signal kept", ylim=(-0.02, 1.02))
    ax_snr.set(ylabel=r"$\log_{10}$ SNR", title=r"SNR $=\bar\alpha_t/(1-\bar\alpha_t)$")
    ax_snr.axhline(0.0, color="gray", lw=0.8)
    fig.suptitle(f"Schedules at T = {T}; images at t = {t}")
    return fig


def schedule_widget(x0: torch.Tensor, noise: torch.Tensor, T: int = 1000, t_frac: float = 0.5,
                    T_options: tuple[int, ...] = T_OPTIONS, kinds: tuple[str, ...] = KINDS):
    """``interactive`` with a T drop-down and a t / T slider for :func:`schedule_comparison_figure`."""
    from ipywidgets import Dropdown, FloatSlider, interactive

    _check_pair(x0, noise)
    if T not in T_options:
        raise ValueError(f"T={T} is not one of T_options={T_options}")
    drop = Dropdown(options=list(T_options), value=T, description="T")
    slider = FloatSlider(value=t_frac, min=0.0, max=1.0, step=0.01, description="t / T", continuous_update=False)
    return interactive(lambda T, t_frac: schedule_comparison_figure(x0, noise, T, t_frac, kinds), T=drop,
                       t_frac=slider)
