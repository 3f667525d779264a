"""The explorer of chapter 09: how FID and classifier accuracy respond to the strength of a distortion of
real digits, and to the number of samples n they are computed from.

Feature extraction is the expensive part, so it happens once: :func:`distortion_sweep` distorts a set of
real digits at a few strengths per kind of distortion and keeps the classifier features and predictions.
Level 0 of every kind is the undistorted set, so its FID against the reference is the real-vs-real floor.
The figure and the widget only subsample the stored features (the first n of each set) and compute FIDs,
which takes milliseconds in 128 dimensions.

FID: Heusel et al. 2017, as ``metrics.fid``; the features are those of the evaluation classifier
(``metrics.load_eval_classifier``). Images are (N, 1, H, W) in [-1, 1].
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable, NamedTuple

import numpy as np
import torch
import torch.nn.functional as F

from . import metrics
from .utils import randn
from .viz import DARK_ORANGE, make_grid, plain_log_ticks

N_OPTIONS = (50, 100, 200, 500)  # sample counts offered by the widget


def shift(images: torch.Tensor, px: int) -> torch.Tensor:
    """``images`` (N, C, H, W) in [-1, 1] moved ``px`` pixels right and down; background (-1) fills the strip they
    leave, and what crosses the right or bottom edge is gone (not wrapped round, as torch.roll would)."""
    H, W = images.shape[-2:]
    return F.pad(images, (px, 0, px, 0), value=-1.0)[..., :H, :W]


def _blur(x: torch.Tensor, sigma: float, noise: torch.Tensor) -> torch.Tensor:
    """Gaussian blur with standard deviation ``sigma`` pixels; the background (-1) stays black."""
    if sigma <= 0:
        return x
    r = math.ceil(3 * sigma)
    k = torch.exp(-torch.arange(-r, r + 1, dtype=x.dtype, device=x.device) ** 2 / (2 * sigma ** 2))
    k = k / k.sum()
    y = F.conv2d(x + 1, k.view(1, 1, 1, -1), padding=(0, r))
    return F.conv2d(y, k.view(1, 1, -1, 1), padding=(r, 0)) - 1


def _thicken(x: torch.Tensor, px: float, noise: torch.Tensor) -> torch.Tensor:
    """Make every stroke ``px`` pixels wider: px dilations with a 2x2 maximum, alternately towards the
    bottom-right and the top-left, so the digit stays centred to within half a pixel."""
    for i in range(int(px)):
        x = F.max_pool2d(F.pad(x, (0, 1, 0, 1) if i % 2 == 0 else (1, 0, 1, 0), value=-1.0), 2, stride=1)
    return x


def _rotate(x: torch.Tensor, degrees: float, noise: torch.Tensor) -> torch.Tensor:
    """Rotate by ``degrees`` about the image centre (bilinear); uncovered corners are background."""
    if degrees == 0:
        return x
    a = math.radians(degrees)
    theta = torch.tensor([[math.cos(a), math.sin(a), 0.0], [-math.sin(a), math.cos(a), 0.0]], dtype=x.dtype,
                         device=x.device)
    grid = F.affine_grid(theta.expand(x.shape[0], 2, 3), list(x.shape), align_corners=False)
    return F.grid_sample(x + 1, grid, align_corners=False) - 1


class Distortion(NamedTuple):
    fn: Callable  # fn(x, value, noise) -> distorted x
    values: tuple  # the value at each level; level 0 leaves the images unchanged
    fmt: str  # how to print one value
    axis: str  # what the value measures, for an axis label


DISTORTIONS = {
    "Gaussian noise": Distortion(lambda x, sd, noise: (x + sd * noise).clamp(-1, 1), (0.0, 0.1, 0.2, 0.3, 0.5),
                                 "sd {:g}", "noise standard deviation"),
    "blur": Distortion(_blur, (0.0, 0.5, 0.75, 1.0, 1.5), "sigma {:g} px", "blur sigma (pixels)"),
    "shift": Distortion(lambda x, px, noise: shift(x, int(px)), (0, 1, 2, 3, 4),
                        "{:g} px right and down", "shift right and down (pixels)"),
    "thicker strokes": Distortion(_thicken, (0, 1, 2, 3, 4), "+{:g} px", "strokes thicker by (pixels)"),
    "rotation": Distortion(_rotate, (0, 10, 20, 30, 45), "{:g} degrees", "rotation (degrees)"),
}


def distort(kind: str, images: torch.Tensor, level: int, noise: torch.Tensor | None = None) -> torch.Tensor:
    """``images`` (N, 1, H, W) in [-1, 1] distorted by ``kind`` at ``level`` (0 = unchanged); stays in
    [-1, 1]. ``noise`` (same shape, standard normal) is only used by "Gaussian noise"."""
    if kind not in DISTORTIONS:
        raise ValueError(f"unknown distortion {kind!r}; choose from {list(DISTORTIONS)}")
    fn, values = DISTORTIONS[kind][:2]
    if not 0 <= level < len(values):
        raise ValueError(f"level must be in [0, {len(values)}), got {level}")
    if noise is None:
        noise = torch.zeros_like(images)
    return fn(images, values[level], noise).clamp(-1, 1)


def level_label(kind: str, level: int) -> str:
    """'blur, sigma 1 px'; level 0 is 'none'."""
    d = DISTORTIONS[kind]
    return "none" if level == 0 else f"{kind}, {d.fmt.format(d.values[level])}"


@dataclass(frozen=True, eq=False)
class DistortionSweep:
    """Stored results of :func:`distortion_sweep` for the kinds ``kinds``.

    feats[kind]: (L, N, F) float64 features of the N distorted images at each of the L levels;
    correct[kind]: (L, N) bool, the classifier's prediction equals the true label; examples[kind]:
    (L, m, 1, H, W) the first m distorted images; ref_feats: (N_ref, F) features of a *different* set of
    real digits (the reference).
    """

    kinds: tuple[str, ...]
    feats: dict
    correct: dict
    examples: dict
    ref_feats: torch.Tensor

    @property
    def n_max(self) -> int:
        """The largest usable sample count: both sets need n features."""
        return min(self.ref_feats.shape[0], next(iter(self.feats.values())).shape[1])

    def scores(self, kind: str, n: int) -> list[dict]:
        """One dict per level of ``kind``: {"level", "value", "fid", "accuracy"}, FID between the first n
        distorted and the first n reference features, accuracy over the first n distorted images."""
        if kind not in self.kinds:
            raise ValueError(f"the sweep holds {list(self.kinds)}, not {kind!r}")
        if not 2 <= n <= self.n_max:
            raise ValueError(f"n must be in [2, {self.n_max}], got {n}")
        values = DISTORTIONS[kind].values
        return [{"level": k, "value": values[k], "fid": metrics.fid(self.feats[kind][k, :n], self.ref_feats[:n]),
                 "accuracy": float(self.correct[kind][k, :n].double().mean())} for k in range(len(values))]


@torch.no_grad()
def distortion_sweep(classifier, images: torch.Tensor, labels: torch.Tensor, ref_feats: torch.Tensor,
                     kinds=tuple(DISTORTIONS), generator: torch.Generator | None = None,
                     n_examples: int = 4) -> DistortionSweep:
    """Distort ``images`` (N, 1, H, W) in [-1, 1] with true ``labels`` (N,) at every level of every kind,
    and keep the classifier's features and whether it still reads the right digit. ``ref_feats`` (N_ref, F)
    are features of other real digits (e.g. chapter 09's pool). One noise draw (from ``generator``) is
    shared by all noise levels. Cost: one feature extraction of N images per (kind, level > 0)."""
    kinds = tuple(kinds)
    unknown = [k for k in kinds if k not in DISTORTIONS]
    if unknown or not kinds:
        raise ValueError(f"unknown distortion(s) {unknown}; choose from {list(DISTORTIONS)}")
    labels = torch.as_tensor(labels).cpu()
    if images.dim() != 4 or labels.shape != (images.shape[0],):
        raise ValueError(f"expected images (N, 1, H, W) and labels (N,), got {tuple(images.shape)}, "
                         f"{tuple(labels.shape)}")
    noise = randn(images.shape, generator, images.device)
    clean_feats, clean_logits = metrics._features_and_logits(classifier, images)
    feats, correct, examples = {}, {}, {}
    for kind in kinds:
        f_k, c_k, e_k = [], [], []
        for level in range(len(DISTORTIONS[kind].values)):
            x = distort(kind, images, level, noise)
            f, logits = (clean_feats, clean_logits) if level == 0 else metrics._features_and_logits(classifier, x)
            f_k.append(f)
            c_k.append(logits.argmax(1) == labels)
            e_k.append(x[:n_examples].cpu())
        feats[kind], correct[kind], examples[kind] = torch.stack(f_k), torch.stack(c_k), torch.stack(e_k)
    return DistortionSweep(kinds, feats, correct, examples, torch.as_tensor(ref_feats).cpu().double())


def distortion_figure(sweep: DistortionSweep, kind: str | None = None, level: int = 2, n: int | None = None,
                      n_options=N_OPTIONS):
    """Left: example digits at this level. Right: FID (log scale) against the distortion strength, computed
    from n samples per set (thick line; the other sample counts in ``n_options`` thin and grey), the level
    shown circled, the real-vs-real floor at n (level 0) dashed, and classifier accuracy on the right axis."""
    import matplotlib.pyplot as plt
    from matplotlib.patheffects import withStroke

    kind = sweep.kinds[0] if kind is None else kind
    n = sweep.n_max if n is None else int(n)
    rows = sweep.scores(kind, n)
    if not 0 <= level < len(rows):
        raise ValueError(f"level must be in [0, {len(rows)}), got {level}")
    values = [r["value"] for r in rows]
    fig = plt.figure(figsize=(10.5, 3.9))
    ax_img, ax = fig.subplots(1, 2, gridspec_kw={"width_ratios": (1, 2.6)})
    ex = sweep.examples[kind][level]
    img = make_grid(ex, nrow=int(np.ceil(np.sqrt(ex.shape[0]))))
    ax_img.imshow(img, cmap="gray", vmin=0, vmax=255)
    ax_img.set_axis_off()
    ax_img.set_title(level_label(kind, level), fontsize=9)
    for m in n_options:
        if m != n and 2 <= m <= sweep.n_max:
            other = [r["fid"] for r in sweep.scores(kind, m)]
            ax.plot(values, other, "-", color="0.7", lw=1)
            ax.annotate(f"n={m}", (values[0], other[0]), textcoords="offset points", xytext=(4, 3), fontsize=8,
                        color="0.3", path_effects=[withStroke(linewidth=2.5, foreground="white")])  # over its line
    fids = [r["fid"] for r in rows]
    (fid_line,) = ax.plot(values, fids, "-o", color="C0", lw=2, label=f"FID, n = {n}")
    floor_line = ax.axhline(fids[0], color="C0", ls="--", lw=1, label=f"real-vs-real floor at n = {n}")
    ax.plot(values[level], fids[level], "o", ms=13, mfc="none", mec="C3", mew=2)
    ax.set(xlabel=DISTORTIONS[kind].axis, ylabel="FID (log scale; lower = closer to real)", xticks=values,
           yscale="log")
    plain_log_ticks(ax.yaxis)  # ticks at 1, 2, 5, 10, 20, ...
    ax.grid(alpha=0.3)
    ax_acc = ax.twinx()
    (acc_line,) = ax_acc.plot(values, [100 * r["accuracy"] for r in rows], "-s", color="C1", ms=4,
                              label="classifier accuracy")
    ax_acc.set_ylim(0, 102)
    ax_acc.set_ylabel("accuracy (%)", color=DARK_ORANGE)
    lines = [fid_line, floor_line, acc_line]
    ax.legend(lines, [ln.get_label() for ln in lines], fontsize=8, loc="upper center", bbox_to_anchor=(0.5, -0.17),
              ncol=3, frameon=False)
    ax.set_title(f"{kind}: FID {fids[level]:.2f} (floor {fids[0]:.2f}), accuracy {rows[level]['accuracy']:.0%}",
                 fontsize=10)
    fig.tight_layout()
    return fig


def distortion_widget(sweep: DistortionSweep, kind: str | None = None, level: int = 2, n: int | None = None,
                      n_options=N_OPTIONS):
    """``interactive`` around :func:`distortion_figure`: a drop-down for the kind of distortion, a slider
    for its level and one for the sample count n. Nothing is re-extracted; only FIDs are recomputed."""
    from ipywidgets import Dropdown, IntSlider, SelectionSlider, interactive

    kind = sweep.kinds[0] if kind is None else kind
    ns = [m for m in n_options if 2 <= m <= sweep.n_max] or [sweep.n_max]
    n = ns[-1] if n is None else int(n)
    if kind not in sweep.kinds or n not in ns:
        raise ValueError(f"kind must be one of {list(sweep.kinds)} and n one of {ns}")
    levels = len(DISTORTIONS[kind].values)
    return interactive(lambda kind, level, n: distortion_figure(sweep, kind, level, n, n_options),
                       kind=Dropdown(options=list(sweep.kinds), value=kind, description="distortion"),
                       level=IntSlider(value=level, min=0, max=levels - 1, description="strength",
                                       continuous_update=False),
                       n=SelectionSlider(options=ns, value=n, description="samples n", continuous_update=False))
