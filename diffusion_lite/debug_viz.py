"""Figures for chapter 10 (debugging): the symptoms of a bug, side by side with a working model.

A symptom has two faces, both measured by the chapter with the package's own tools:

- the loss at fixed time steps t on held-out images (``train.loss_per_timestep``): a bug that breaks the
  model's view of x_t or of t shows up at the steps it breaks, long before anyone looks at samples;
- samples from pure noise, with their FID / floor (evaluation.score_samples) as one number.

    fig = symptoms_figure(ts, curves, samples, scores)   # one row per variant
    w = symptoms_widget(ts, curves, samples, scores)      # a drop-down over the same variants

``curves``: {name: [loss at each t of ts]}; ``samples``: {name: (B, C, H, W) in [-1, 1]};
``scores``: {name: FID / floor (or None)} or None. The first name is the reference (the working model) and is
drawn in every row's loss plot for comparison. A variant with nothing to show in one panel (a bug that only
affects the loss measurement has no samples of its own; a simulated model has no measured loss) gives a string
instead of its curve or its samples: that panel then shows the string, so the figure never draws data from
one variant in another's row.
"""

from __future__ import annotations

from typing import Mapping, Sequence

import numpy as np
import torch

from .viz import make_grid


def _figure(figsize, **kw):
    import matplotlib.pyplot as plt  # pyplot registers the figure, so the inline backend shows it

    return plt.figure(figsize=figsize, **kw)


def _check(ts: Sequence[int], curves: Mapping[str, Sequence[float]], samples: Mapping[str, torch.Tensor],
           scores: Mapping[str, float] | None) -> list[str]:
    names = list(curves)
    if not names:
        raise ValueError("no variants: curves is empty")
    if set(samples) != set(names) or (scores is not None and set(scores) != set(names)):
        raise ValueError(f"curves, samples and scores must name the same variants; got {names}, {list(samples)}, "
                         f"{list(scores) if scores is not None else None}")
    bad = [n for n in names if not isinstance(curves[n], str) and len(curves[n]) != len(ts)]
    if bad:
        raise ValueError(f"each curve needs one loss per time step ({len(ts)}); wrong length: {bad}")
    bad = [n for n in names if not isinstance(samples[n], str) and samples[n].dim() != 4]
    if bad:
        raise ValueError(f"samples must be (B, C, H, W); not for {bad}")
    return names


def _note(ax, text):
    """A panel with nothing to plot: ``text`` in its middle, in place of the data."""
    ax.text(0.5, 0.5, text, ha="center", va="center", fontsize=9, color="0.3", wrap=True, transform=ax.transAxes)


def _row(fig, gs_row, ts, curves, samples, scores, name, reference, nrow):
    ax_loss = fig.add_subplot(gs_row[0])
    if isinstance(curves[name], str):  # no loss of its own: the panel says why, and shows no other curve
        ax_loss.set(xticks=[], yticks=[], xlabel="time step t", ylabel="loss at t")
        _note(ax_loss, curves[name])
    else:
        if name != reference and not isinstance(curves[reference], str):
            ax_loss.plot(ts, curves[reference], marker="o", ms=3, color="0.6", ls="--", label=reference)
        ax_loss.plot(ts, curves[name], marker="o", ms=3, color="C3" if name != reference else "C0", label=name)
        ax_loss.set(yscale="log", xlabel="time step t", ylabel="loss at t")
        ax_loss.grid(alpha=0.3)
        ax_loss.legend(fontsize=8)
    ax_img = fig.add_subplot(gs_row[1])
    if isinstance(samples[name], str):
        _note(ax_img, samples[name])
    else:
        ax_img.imshow(make_grid(samples[name].detach().cpu(), nrow=nrow), cmap="gray", vmin=0, vmax=255)
    ax_img.set_xticks([])
    ax_img.set_yticks([])
    score = f": FID / floor {scores[name]:.1f}" if scores is not None and scores[name] is not None else ""
    ax_img.set_title(f"{name}{score}", fontsize=10)


PANEL_INCHES = 1.6  # height of one variant's panels
ROW_GAP = 0.55  # space between rows (titles, axis labels), as a fraction of PANEL_INCHES
MARGIN_INCHES = (0.35, 0.55)  # above the first row (its titles) and below the last (the axis labels)


def symptoms_figure(ts: Sequence[int], curves: Mapping[str, Sequence[float]], samples: Mapping[str, torch.Tensor],
                    scores: Mapping[str, float] | None = None, names: Sequence[str] | None = None, nrow: int = 8,
                    n_show: int = 16):
    """One row per variant: left, its loss at each t against the reference (the first variant, grey);
    right, its first ``n_show`` samples with FID / floor in the title. ``names`` picks and orders rows. A string
    in place of a variant's curve or samples is shown as a note in that panel (see the module docstring).
    Every panel is PANEL_INCHES tall and the margins are a fixed MARGIN_INCHES, so one row alone (the widget's
    figure) is as readable as a row of the full figure."""
    all_names = _check(ts, curves, samples, scores)
    names = all_names if names is None else list(names)
    unknown = [n for n in names if n not in curves]
    if unknown or not names:
        raise ValueError(f"unknown variant(s) {unknown}; known: {all_names}")
    top, bottom = MARGIN_INCHES  # in inches, whatever the number of rows
    height = top + bottom + PANEL_INCHES * (len(names) + ROW_GAP * (len(names) - 1))
    fig = _figure((10, height))
    gs = fig.add_gridspec(len(names), 2, width_ratios=(1, 1.6), hspace=ROW_GAP, wspace=0.15,
                          top=1 - top / height, bottom=bottom / height)
    for i, name in enumerate(names):
        _row(fig, [gs[i, 0], gs[i, 1]], ts, curves, {k: v if isinstance(v, str) else v[:n_show] for k, v in
                                                     samples.items()}, scores, name, all_names[0], nrow)
    return fig


def symptoms_widget(ts: Sequence[int], curves: Mapping[str, Sequence[float]], samples: Mapping[str, torch.Tensor],
                    scores: Mapping[str, float] | None = None, value: str | None = None):
    """``interactive`` with a drop-down over the variants for :func:`symptoms_figure` (one row)."""
    from ipywidgets import Dropdown, interactive

    names = _check(ts, curves, samples, scores)
    drop = Dropdown(options=names, value=value if value is not None else names[-1], description="variant")
    return interactive(lambda name: symptoms_figure(ts, curves, samples, scores, [name]), name=drop)


def grey_background_fraction(images: torch.Tensor, tol: float = 0.25) -> float:
    """Fraction of border pixels (the outer 2-pixel frame, where MNIST digits have no ink) that are neither
    black (-1) nor white (1) within ``tol``: near 0 for well-formed digits, near 1 when the background is
    grey, the mark of images made in [0, 1] but shown as [-1, 1]. images: (B, C, H, W)."""
    x = images.detach().cpu().float()
    frame = torch.ones(x.shape[-2:], dtype=torch.bool)
    frame[2:-2, 2:-2] = False
    border = x[..., frame]  # (B, C, n_border)
    grey = ((border + 1).abs() > tol) & ((border - 1).abs() > tol)
    return float(np.mean(grey.numpy()))
