"""Figures and the widget of chapter 08 (classifier-free guidance): a precomputed grid of samples over
prompts x guidance scales, a slider over prompt and scale that indexes it, and the fidelity/diversity plot.

Sampling is the expensive part, so it happens once: :func:`guidance_grid` samples every prompt at every
scale s from the *same* starting noise x_T, so a column of the grid differs only in s (and a row only in
the prompt). The figures and the widget only read the stored images. Guidance convention (guidance.py):
eps = eps_u + s (eps_c - eps_u); s = 0 unconditional, s = 1 conditional, Ho & Salimans' w = s - 1.

Images are (..., C, H, W) in [-1, 1]. Every figure function returns a matplotlib Figure; the notebook calls
it once with default values for the static copy, and ``guidance_widget`` wraps it in ``interactive``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Sequence

import numpy as np
import torch

from .utils import randn
from .viz import DARK_ORANGE, make_grid

TRADEOFF_KEYS = ("guidance", "accuracy", "diversity")  # what a trade-off row needs (evaluation.py's names)


@dataclass(frozen=True, eq=False)
class GuidanceGrid:
    """Samples for every (prompt, scale): ``images`` (P, S, n, C, H, W) in [-1, 1].

    ``images[p, s, i]`` starts from the same x_T[i] for every p and s. ``negative_prompt`` is what the
    unconditional branch saw (None = the empty prompt); ``steps``/``sampler`` how the samples were made.
    """

    images: torch.Tensor
    prompts: tuple[str, ...]
    scales: tuple[float, ...]
    negative_prompt: str | None = None
    steps: int | None = None
    sampler: str = "ddim"

    def __post_init__(self):
        P, S = len(self.prompts), len(self.scales)
        if self.images.dim() != 6 or tuple(self.images.shape[:2]) != (P, S):
            raise ValueError(f"images must be (P={P}, S={S}, n, C, H, W), got {tuple(self.images.shape)}")
        if len(set(self.prompts)) != P or len(set(self.scales)) != S:
            raise ValueError("prompts and scales must not repeat")

    @property
    def n(self) -> int:
        """Samples per (prompt, scale)."""
        return self.images.shape[2]

    def index(self, prompt: str, scale: float) -> tuple[int, int]:
        """(p, s) positions of ``prompt`` and ``scale``; ValueError if the grid does not hold them."""
        if prompt not in self.prompts:
            raise ValueError(f"prompt {prompt!r} is not in the grid; it holds {list(self.prompts)}")
        matches = [j for j, s in enumerate(self.scales) if abs(s - float(scale)) < 1e-9]
        if not matches:
            raise ValueError(f"scale {scale} is not in the grid; it holds {list(self.scales)}")
        return self.prompts.index(prompt), matches[0]

    def images_for(self, prompt: str, scale: float) -> torch.Tensor:
        """The n samples (n, C, H, W) of one prompt at one scale."""
        p, s = self.index(prompt, scale)
        return self.images[p, s]

    def at_scale(self, scale: float) -> torch.Tensor:
        """All samples at one scale, prompt-major: (P * n, C, H, W); sample k is prompt k // n."""
        s = self.index(self.prompts[0], scale)[1]
        return self.images[:, s].flatten(0, 1)


@torch.no_grad()
def guidance_grid(pipe, prompts: Sequence[str], scales: Sequence[float], n: int, *, steps: int = 20,
                  sampler: str = "ddim", negative_prompt: str | None = None,
                  generator: torch.Generator | None = None, x_T: torch.Tensor | None = None,
                  batch_size: int = 200) -> GuidanceGrid:
    """Sample n images for every prompt at every guidance scale, all from the same x_T (n, C, H, W).

    pipe: a text-conditional DiffusionPipeline. x_T is drawn on the CPU with ``generator`` unless given.
    Each scale is one ``pipe.sample`` call per batch of ``batch_size`` images (prompt-major order); with
    a deterministic sampler (DDIM, eta = 0) the result does not depend on batch_size. Cost: P n steps
    network evaluations per scale, twice that for s not in {0, 1} (both branches run); at s = 0 the
    prompt is ignored, so n images are sampled once and shared by every prompt.
    Returns a :class:`GuidanceGrid` with images (P, S, n, C, H, W) on the CPU, clamped to [-1, 1].
    """
    if not getattr(pipe, "is_text_conditional", False):
        raise ValueError("guidance needs a text-conditional pipeline (e.g. load_pretrained('mnist-text2img'))")
    prompts, scales = [str(p) for p in prompts], [float(s) for s in scales]
    if not prompts or not scales or n < 1 or batch_size < 1:
        raise ValueError(f"need at least one prompt and scale, n >= 1 and batch_size >= 1; got {len(prompts)} "
                         f"prompts, {len(scales)} scales, n={n}, batch_size={batch_size}")
    c = pipe.unet.cfg
    shape = (n, c.in_channels, c.image_size, c.image_size)
    if x_T is None:
        x_T = randn(shape, generator).to(pipe.dtype)
    elif tuple(x_T.shape) != shape:
        raise ValueError(f"x_T must have shape {shape}, got {tuple(x_T.shape)}")
    P = len(prompts)
    all_prompts = [p for p in prompts for _ in range(n)]  # prompt-major, P * n
    all_x_T = x_T.repeat(P, 1, 1, 1)  # (P * n, C, H, W): sample i of every prompt starts from x_T[i]
    per_scale = []
    for s in scales:
        # at s = 0 only the unconditional branch counts, which is the same for every prompt: sample it once
        m = n if s == 0.0 else P * n
        chunks = [pipe.sample(all_prompts[i:min(i + batch_size, m)], guidance=s, negative_prompt=negative_prompt,
                              steps=steps, sampler=sampler, generator=generator, progress=False,
                              x_T=all_x_T[i:min(i + batch_size, m)]).cpu()
                  for i in range(0, m, batch_size)]
        out = torch.cat(chunks).clamp(-1, 1)
        per_scale.append(out.repeat(P, 1, 1, 1).unflatten(0, (P, n)) if s == 0.0 else out.unflatten(0, (P, n)))
    images = torch.stack(per_scale, dim=1)  # (P, S, n, C, H, W)
    return GuidanceGrid(images, tuple(prompts), tuple(scales), negative_prompt, steps, sampler)


# ------------------------------------------------------------------------------------------ figures
def _figure(figsize):
    import matplotlib.pyplot as plt  # pyplot registers the figure, so the inline backend shows it

    return plt.figure(figsize=figsize)


def scale_label(s: float) -> str:
    """'s = 0 (unconditional)', 's = 1 (conditional)', 's = 3'."""
    name = {0.0: " (unconditional)", 1.0: " (conditional)"}.get(float(s), "")
    return f"s = {s:g}{name}"


def guidance_sweep_figure(grid: GuidanceGrid, n_show: int = 3, prompts: Sequence[str] | None = None):
    """One panel per scale; in each, one row per prompt showing its first ``n_show`` samples.

    The same position in every panel starts from the same noise, so left to right only s changes.
    prompts: a subset (default all). Returns the Figure.
    """
    prompts = list(prompts) if prompts is not None else list(grid.prompts)
    if not 1 <= n_show <= grid.n:
        raise ValueError(f"n_show must be in [1, {grid.n}], got {n_show}")
    rows = [grid.index(p, grid.scales[0])[0] for p in prompts]
    S = len(grid.scales)
    fig = _figure((1.0 + S * 0.62 * n_show, 0.9 + 0.62 * len(rows)))
    axes = np.atleast_1d(fig.subplots(1, S))
    for j, (ax, s) in enumerate(zip(axes, grid.scales)):
        block = grid.images[rows, j, :n_show].flatten(0, 1)  # (len(rows) * n_show, C, H, W)
        img = make_grid(block, nrow=n_show)
        ax.imshow(img, cmap="gray" if img.ndim == 2 else None, vmin=0, vmax=255)
        ax.set_xticks([])
        ax.set_yticks([])
        ax.set_title(scale_label(s).replace(" (", "\n("), fontsize=9)
    h = grid.images.shape[-2] + 2  # grid pitch: image height + padding
    axes[0].set_yticks([2 + h * k + h / 2 - 1 for k in range(len(rows))])
    axes[0].set_yticklabels([f'"{p}"' for p in prompts], fontsize=9)
    neg = f', negative prompt "{grid.negative_prompt}"' if grid.negative_prompt else ""
    fig.suptitle(f"Guidance scale sweep: same noise in every panel{neg}")
    fig.tight_layout()
    return fig


def _check_rows(rows: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    rows = sorted(rows, key=lambda r: r["guidance"] if isinstance(r, dict) and "guidance" in r else 0)
    if not rows or any(not isinstance(r, dict) or any(r.get(k) is None for k in TRADEOFF_KEYS) for r in rows):
        raise ValueError(f"expected a non-empty list of dicts with numeric {TRADEOFF_KEYS} (as evaluation."
                         "guidance_sweep or score_samples plus 'guidance' give)")
    return rows


def _plot_tradeoff(ax, rows: list[dict[str, Any]], mark: float | None = None) -> None:
    """Diversity against conditional accuracy, one point per scale, joined in order of s."""
    acc = [100 * r["accuracy"] for r in rows]
    div = [r["diversity"] for r in rows]
    ax.plot(acc, div, "-o", color="C0", ms=5)
    # points that (nearly) coincide share one label, "s=3, 5, 8"; labels go left of points near the right
    # edge (accuracy near 100%) and otherwise alternate sides, so that labels of nearby points do not collide
    span_a, span_d = max(np.ptp(acc), 1e-9), max(np.ptp(div), 1e-9)
    groups: list[list[int]] = []
    for k in range(len(rows)):  # rows are sorted by s: compare with the previous point
        if groups and abs(acc[groups[-1][-1]] - acc[k]) < 0.03 * span_a \
                and abs(div[groups[-1][-1]] - div[k]) < 0.05 * span_d:
            groups[-1].append(k)
        else:
            groups.append([k])
    pad = 7 if mark is None else 12  # points; the circle drawn around the marked point has a ~8 pt radius
    for j, grp in enumerate(groups):
        a, d = float(np.mean([acc[k] for k in grp])), float(np.mean([div[k] for k in grp]))
        edge = a > max(acc) - 0.15 * span_a
        left = edge or j % 2 == 1
        ax.annotate("s=" + ", ".join(f"{rows[k]['guidance']:g}" for k in grp), (a, d), textcoords="offset points",
                    xytext=(-pad if left else pad, 0 if edge else 4 if j % 4 < 2 else -10),
                    ha="right" if left else "left", va="center" if edge else "baseline", fontsize=8)
    real = [r.get("diversity_real") for r in rows if r.get("diversity_real") is not None]
    if real:
        ax.axhline(float(np.mean(real)), color="gray", ls="--", lw=1, label="diversity of real digits")
        ax.legend(fontsize=8, loc="lower left")
    if mark is not None:
        hit = [k for k, r in enumerate(rows) if abs(r["guidance"] - mark) < 1e-9]
        if hit:
            a, d = acc[hit[0]], div[hit[0]]
            ax.plot(a, d, "o", ms=13, mfc="none", mec="C3", mew=2)
            # the circle alone cannot single out one of several coinciding points: name the scale and its numbers
            ax.annotate(f"this s = {mark:g}\n{a:.1f}%, diversity {d:.2f}", (a, d), xytext=(0.62, 0.62),
                        textcoords="axes fraction", ha="center", va="center", fontsize=9, color="C3",
                        arrowprops=dict(arrowstyle="->", color="C3", lw=1.2, shrinkB=8),
                        bbox=dict(boxstyle="round,pad=0.3", fc="white", ec="C3", lw=1))
    ax.set_xlabel("conditional accuracy (%)  [fidelity]")
    ax.set_ylabel("mean pairwise feature distance  [diversity]")
    ax.grid(alpha=0.3)


def tradeoff_figure(rows: Sequence[dict[str, Any]], title: str | None = None):
    """The fidelity/diversity trade-off of a guidance sweep.

    rows: one dict per scale with "guidance", "accuracy" (fraction in [0, 1]), "diversity" and optionally
    "diversity_real" (evaluation.guidance_sweep's rows have these). Left: accuracy and diversity against
    s; right: diversity against accuracy, one point per s (cf. Ho & Salimans 2022, fig. 4). Returns the Figure.
    """
    rows = _check_rows(rows)
    s = [r["guidance"] for r in rows]
    fig = _figure((11, 3.9))
    ax_s, ax_t = fig.subplots(1, 2)
    ax_s.plot(s, [100 * r["accuracy"] for r in rows], "-o", color="C0", label="conditional accuracy")
    ax_s.set_xlabel("guidance scale s")
    ax_s.set_ylabel("conditional accuracy (%)", color="C0")
    ax_s.set_ylim(0, 102)
    ax_d = ax_s.twinx()
    ax_d.plot(s, [r["diversity"] for r in rows], "-s", color="C1", label="diversity")
    real = [r.get("diversity_real") for r in rows if r.get("diversity_real") is not None]
    if real:
        ax_d.axhline(float(np.mean(real)), color="C1", ls="--", lw=1, label="diversity of real digits")
    ax_d.set_ylabel("mean pairwise feature distance", color=DARK_ORANGE)
    ax_d.set_ylim(0, None)
    lines = ax_s.get_lines()[:1] + ax_d.get_lines()
    ax_s.legend(lines, [ln.get_label() for ln in lines], fontsize=8, loc="center right")
    ax_s.set_title("Both against the guidance scale")
    ax_s.grid(alpha=0.3)
    _plot_tradeoff(ax_t, rows)
    ax_t.set_title("Trade-off: each point one scale")
    fig.suptitle(title or "Classifier-free guidance: fidelity vs diversity")
    fig.tight_layout()
    return fig


def guidance_figure(grid: GuidanceGrid, prompt: str | None = None, scale: float | None = None,
                    rows: Sequence[dict[str, Any]] | None = None):
    """The widget's picture: the n samples of ``prompt`` at ``scale`` (defaults: first prompt, s closest to 3)
    and, if trade-off ``rows`` are given, the diversity-vs-accuracy curve with this scale circled."""
    prompt = grid.prompts[0] if prompt is None else prompt
    scale = min(grid.scales, key=lambda s: abs(s - 3.0)) if scale is None else scale
    images = grid.images_for(prompt, scale)
    rows = _check_rows(rows) if rows is not None else None
    fig = _figure((10.5, 3.6) if rows else (5.2, 3.6))
    axes = fig.subplots(1, 2 if rows else 1, gridspec_kw={"width_ratios": (1.25, 1)} if rows else None)
    ax_img = axes[0] if rows else axes
    img = make_grid(images, nrow=int(np.ceil(np.sqrt(images.shape[0]))))
    ax_img.imshow(img, cmap="gray" if img.ndim == 2 else None, vmin=0, vmax=255)
    ax_img.set_axis_off()
    ax_img.set_title(f'"{prompt}", {scale_label(scale)}', fontsize=10)
    if rows:
        _plot_tradeoff(axes[1], rows, mark=scale)
        axes[1].set_title("all prompts: circled = this s", fontsize=10)
    fig.tight_layout()
    return fig


def guidance_widget(grid: GuidanceGrid, prompt: str | None = None, scale: float | None = None,
                    rows: Sequence[dict[str, Any]] | None = None):
    """``interactive`` with a prompt drop-down and a guidance-scale slider over a precomputed grid
    (:func:`guidance_figure`); moving them only looks images up, nothing is sampled."""
    from ipywidgets import Dropdown, SelectionSlider, interactive

    prompt = grid.prompts[0] if prompt is None else prompt
    scale = min(grid.scales, key=lambda s: abs(s - 3.0)) if scale is None else float(scale)
    grid.index(prompt, scale)  # ValueError now rather than inside the callback
    drop = Dropdown(options=list(grid.prompts), value=prompt, description="prompt")
    slider = SelectionSlider(options=[(f"{s:g}", s) for s in grid.scales], value=grid.scales[grid.index(prompt,
                             scale)[1]], description="scale s", continuous_update=False)
    return interactive(lambda prompt, scale: guidance_figure(grid, prompt, scale, rows), prompt=drop, scale=slider)
