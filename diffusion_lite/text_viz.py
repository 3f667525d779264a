"""Figures and helpers for the text chapters: a prompt explorer (chapter 00) and CLIP (chapter 06);
chapter 07's cross-attention maps are in attention_viz.py.

Chapter 00: samples of a text-to-image pipeline for one prompt and one seed, sampled live in a few DDIM
steps, with the digit the evaluation classifier reads under each image.
Chapter 06: captions under images, image-vs-text similarity matrices, the temperature's effect on the
softmax, a 2-D PCA of the joint embedding space, zero-shot accuracy per prompt wording.

Every figure is a plain function returning a matplotlib ``Figure``; every ``*_widget`` wraps one in
``ipywidgets.interactive`` (``widget.result`` is the Figure on show). Images are (B, C, H, W) in [-1, 1].
"""

from __future__ import annotations

import math
import operator
import textwrap

import numpy as np
import torch

from .utils import to_uint8


def _figure(figsize, **kw):
    import matplotlib.pyplot as plt  # pyplot registers the figure, so the inline backend shows it

    return plt.figure(figsize=figsize, **kw)


def _gray(image: torch.Tensor) -> np.ndarray:
    """(C, H, W) in [-1, 1] -> (H, W) uint8 (channels averaged)."""
    return to_uint8(image[None].float().mean(1, keepdim=True))[0, 0].numpy()


# ------------------------------------------------------------------------------------ chapter 00
EXAMPLE_PROMPTS = ("the digit seven", "a thick seven", "a thin seven", "a seven slanting right",
                   "a seven slanting left", "a large zero", "a small zero", "a handwritten 4", "the number two",
                   "a bold three", "")  # "" is the empty prompt: what the model draws when told nothing


@torch.no_grad()
def prompt_samples(pipe, prompt: str, seed: int = 0, n: int = 8, steps: int = 10, guidance: float = 3.0):
    """n samples (n, C, H, W) in [-1, 1], on the CPU, of one prompt: DDIM with ``steps`` steps, starting
    noise drawn from ``torch.Generator().manual_seed(seed)``, so (prompt, seed) always gives the same images
    and sample i of every prompt starts from the same noise."""
    if not isinstance(prompt, str):
        raise ValueError(f"prompt must be a string, got {type(prompt).__name__}")
    generator = torch.Generator().manual_seed(int(seed))
    return pipe.sample([prompt] * n, guidance=guidance, steps=steps, generator=generator,
                       progress=False).cpu().clamp(-1, 1)


def prompt_samples_figure(pipe, prompt: str = "a thick seven", seed: int = 0, n: int = 8, steps: int = 10,
                          guidance: float = 3.0, classifier=None):
    """One row of :func:`prompt_samples`; with an evaluation ``classifier`` (metrics.load_eval_classifier),
    the digit it reads is written under each image. Returns the Figure."""
    images = prompt_samples(pipe, prompt, seed, n, steps, guidance)
    reads = None
    if classifier is not None:
        from .metrics import _features_and_logits

        reads = _features_and_logits(classifier, images)[1].argmax(1).tolist()
    fig = _figure((1.05 * n + 0.3, 1.75 if reads else 1.5))
    axes = np.atleast_1d(fig.subplots(1, n))
    for i, ax in enumerate(axes):
        ax.imshow(_gray(images[i]), cmap="gray", vmin=0, vmax=255, interpolation="nearest")
        ax.set_xticks([]), ax.set_yticks([])
        if reads:
            ax.set_xlabel(f"reads as {reads[i]}", fontsize=8)
    shown = f'"{prompt}"' if prompt else '"" (empty prompt)'
    fig.suptitle(f"{shown}, seed {seed}: {steps} DDIM steps, guidance scale {guidance:g}", fontsize=10)
    fig.tight_layout(pad=0.4)
    return fig


def prompt_widget(pipe, prompts=EXAMPLE_PROMPTS, prompt: str = "a thick seven", seed: int = 0, n: int = 8,
                  steps: int = 10, guidance: float = 3.0, classifier=None):
    """``interactive`` around :func:`prompt_samples_figure`: a text box with the example prompts as
    suggestions (any prompt can be typed; it is sampled when you press Enter or leave the box), a seed
    slider and a guidance-scale slider. Every change samples n images live (about a second on a CPU)."""
    from ipywidgets import Combobox, IntSlider, SelectionSlider, interactive

    box = Combobox(value=prompt, options=list(prompts), ensure_option=False, description="prompt",
                   continuous_update=False)
    seeds = IntSlider(value=seed, min=0, max=99, description="seed", continuous_update=False)
    scales = sorted({0.0, 1.0, 2.0, 3.0, 5.0, 8.0, float(guidance)})
    scale = SelectionSlider(options=[(f"{s:g}", s) for s in scales], value=float(guidance),
                            description="guidance", continuous_update=False)
    return interactive(lambda prompt, seed, guidance: prompt_samples_figure(pipe, prompt, seed, n, steps, guidance,
                                                                            classifier),
                       prompt=box, seed=seeds, guidance=scale)


# ------------------------------------------------------------------------------------ chapter 06
def caption_grid_figure(images: torch.Tensor, captions: list[str], ncols: int = 4, width: int = 22):
    """Each image with its caption underneath: images (B, C, H, W), captions B strings."""
    if images.dim() != 4 or len(captions) != images.shape[0]:
        raise ValueError(f"expected images (B, C, H, W) and B captions, got {tuple(images.shape)} and {len(captions)}")
    rows = math.ceil(len(captions) / ncols)
    wrapped = ["\n".join(textwrap.wrap(f'"{cap}"', width)) for cap in captions]
    lines = max(w.count("\n") + 1 for w in wrapped)  # room for the longest caption under every row
    fig = _figure((2.2 * ncols, (2.3 + 0.22 * lines) * rows))
    for i, (img, cap) in enumerate(zip(images, wrapped)):
        ax = fig.add_subplot(rows, ncols, i + 1)
        ax.imshow(_gray(img), cmap="gray", vmin=0, vmax=255, interpolation="nearest")
        ax.set_xticks([]), ax.set_yticks([])
        ax.set_xlabel(cap, fontsize=9)
    fig.tight_layout()
    return fig


def similarity_matrix_figure(similarity: torch.Tensor, images: torch.Tensor, captions: list[str],
                             title: str = "cosine similarity, image i vs caption j"):
    """Heatmap of similarity (B, K) (rows: images, shown as thumbnails; columns: captions), values printed,
    the best caption of every row outlined in white edged with black (visible on every viridis colour)."""
    from matplotlib import patheffects
    from matplotlib.patches import Rectangle

    B, K = similarity.shape
    if images.shape[0] != B or len(captions) != K:
        raise ValueError(f"similarity {tuple(similarity.shape)} needs {B} images and {K} captions")
    s = similarity.detach().cpu().float().numpy()
    fig = _figure((1.0 * K + 2.5, 0.8 * B + 2.0))
    grid = fig.add_gridspec(1, 2, width_ratios=(1, K), wspace=0.02)
    thumbs = fig.add_subplot(grid[0])
    thumbs.imshow(np.concatenate([_gray(x) for x in images], 0), cmap="gray", vmin=0, vmax=255, aspect="auto")
    thumbs.set_axis_off()
    ax = fig.add_subplot(grid[1])
    im = ax.imshow(s, cmap="viridis", aspect="auto")
    for i in range(B):
        for j in range(K):
            ax.text(j, i, f"{s[i, j]:.2f}", ha="center", va="center", fontsize=8,
                    color="black" if s[i, j] > (s.min() + s.max()) / 2 else "white")
        j = int(s[i].argmax())
        box = ax.add_patch(Rectangle((j - .45, i - .45), 0.9, 0.9, fill=False, ec="white", lw=2.5))
        box.set_path_effects([patheffects.withStroke(linewidth=5, foreground="black")])
    ax.set_xticks(range(K), ["\n".join(textwrap.wrap(c, 12)) for c in captions], rotation=90, fontsize=9)
    ax.set_yticks([])
    ax.set_xlabel("caption j")
    ax.set_title(title + " (outlined: best caption per image)", fontsize=10)
    fig.colorbar(im, ax=ax, fraction=0.04)
    return fig


def _check_target(target, K: int) -> int | None:
    """None, or target as an int in [0, K) (Python, NumPy or 0-d torch integer); else a ValueError."""
    if target is None:
        return None
    try:
        i = operator.index(target)
    except TypeError:
        i = None
    if i is None or isinstance(target, bool) or not 0 <= i < K:
        raise ValueError(f"target must be the index of the right caption, an int in [0, {K}), got {target!r}")
    return i


def softmax_temperature_figure(similarity: torch.Tensor, labels: list[str], temperatures=(1.0, 0.1, 0.01),
                               target: int | None = None):
    """softmax(s / tau) over one row of similarities s (K,) (cosines in [-1, 1]), one panel per temperature
    tau (CLIP learns the logit scale 1 / tau = exp(t)): large tau -> nearly uniform, small tau -> nearly
    one-hot. labels: K strings. The most probable caption's bar is red.

    target: index in [0, K) of the right caption (the image's own caption), or None. When given, its row is
    highlighted in gold, a legend tells it from the most probable caption (which may be another one), and
    each panel's title gives both probabilities, "own caption p, top p". Returns the Figure.
    """
    from matplotlib.patches import Patch

    s = similarity.detach().cpu().float().reshape(-1)
    if len(labels) != len(s):
        raise ValueError(f"{len(s)} similarities but {len(labels)} labels")
    target = _check_target(target, len(s))
    ncol = 3 if len(temperatures) > 1 else 1  # legend entries side by side, or stacked under one panel
    legend = 0.0 if target is None else 0.4 if ncol == 3 else 0.8  # inches below the panels for the legend
    fig = _figure((2.6 * len(temperatures) + 2.6, 0.32 * len(s) + 1.2 + legend))
    for k, tau in enumerate(temperatures):
        ax = fig.add_subplot(1, len(temperatures), k + 1)
        p = (s / tau).softmax(0).numpy()
        if target is not None:
            ax.axhspan(target - 0.5, target + 0.5, color="gold", alpha=0.4, lw=0, zorder=0)
        ax.barh(range(len(s)), p, color=["C3" if i == p.argmax() else "C0" for i in range(len(s))])
        ax.set_yticks(range(len(s)), labels if k == 0 else [], fontsize=8)
        ax.set_ylim(len(s) - 0.5, -0.5)  # the first caption at the top
        ax.set_xlim(0, 1)
        ax.set_xlabel("softmax probability")
        probs = f"max p = {p.max():.2f}" if target is None else f"own caption {p[target]:.2f}, top {p.max():.2f}"
        ax.set_title(f"tau = {tau:.2g} (1/tau = {1 / tau:.3g})\n{probs}", fontsize=10)
    if target is None:
        fig.tight_layout()
        return fig
    fig.legend(handles=[Patch(color="gold", alpha=0.4, label=f"own caption ({target}): the right answer"),
                        Patch(color="C3", label="most probable caption"), Patch(color="C0", label="other captions")],
               loc="lower center", ncol=ncol, fontsize=9, frameon=False)
    fig.tight_layout(rect=(0, legend / fig.get_figheight(), 1, 1))
    return fig


def temperature_widget(similarity: torch.Tensor, labels: list[str], tau: float = 1 / 24,
                       target: int | None = None):
    """``interactive`` with a log-scale temperature slider for :func:`softmax_temperature_figure` (one
    panel); ``target`` (the right caption's index, or None) is marked as there."""
    from ipywidgets import FloatLogSlider, interactive

    if len(labels) != similarity.numel():  # check here: interactive would only print the error
        raise ValueError(f"{similarity.numel()} similarities but {len(labels)} labels")
    target = _check_target(target, len(labels))
    slider = FloatLogSlider(value=tau, base=10, min=-2.5, max=1, step=0.05, description="tau",
                            continuous_update=False)
    return interactive(lambda tau: softmax_temperature_figure(similarity, labels, (tau,), target), tau=slider)


def pca_2d(*embeddings: torch.Tensor) -> tuple[list[torch.Tensor], torch.Tensor]:
    """One PCA fitted on all given embeddings (N_i, E) together; returns ([(N_i, 2) projections],
    explained variance ratio (2,)). The projections share one centre and one pair of axes."""
    if not embeddings or any(e.dim() != 2 or e.shape[1] != embeddings[0].shape[1] for e in embeddings):
        raise ValueError("expected one or more (N, E) tensors with the same E")
    X = torch.cat([e.detach().cpu().double() for e in embeddings])
    Xc = X - X.mean(0)
    _, S, Vh = torch.linalg.svd(Xc, full_matrices=False)
    var = S.square()
    ratio = (var[:2] / var.sum()).float()
    proj = (Xc @ Vh[:2].T).float()  # (N, 2)
    return list(proj.split([e.shape[0] for e in embeddings])), ratio


def embedding_space_figure(image_emb: torch.Tensor, image_labels: torch.Tensor, text_emb: torch.Tensor,
                           text_labels: list[int], text_names: list[str], title: str = "joint embedding space"):
    """2-D PCA (fitted on images and texts together) of image embeddings (N, E), dots coloured by class with
    the class number written at the centre (median) of its dots, and text embeddings (K, E), stars with their
    text, in the same colours. A star's text goes outwards from the stars' centre, or, where it would cover
    another text or sit nearer another star than its own, to the first free side."""
    import matplotlib
    from matplotlib import patheffects

    (pi, pt), ratio = pca_2d(image_emb, text_emb)
    fig = _figure((7.5, 6))
    ax = fig.add_subplot(1, 1, 1)
    cmap = matplotlib.colormaps["tab10"]
    halo = [patheffects.withStroke(linewidth=2.5, foreground="white")]  # text readable on the dots
    classes = sorted(set(image_labels.tolist()) | set(text_labels))
    for c in classes:
        k = image_labels.cpu() == c
        ax.scatter(pi[k, 0], pi[k, 1], s=6, alpha=0.5, color=cmap(c % 10), label=f"images of {c}")
    for (x, y), c in zip(pt.tolist(), text_labels):
        ax.scatter([x], [y], marker="*", s=220, color=cmap(c % 10), edgecolor="black", zorder=3)
    renderer = fig.canvas.get_renderer()
    ax.get_xlim()  # settle the autoscaled limits: the data-to-pixel transform is final from here on
    taken = []  # pixel boxes of the texts placed so far
    for c in classes:  # each class's number at the median of its dots: colour is not needed to tell them apart
        k = image_labels.cpu() == c
        if k.any():
            x, y = pi[k].median(0).values.tolist()
            num = ax.text(x, y, str(c), fontsize=13, fontweight="bold", ha="center", va="center", zorder=4,
                          path_effects=[patheffects.withStroke(linewidth=3, foreground="white")])
            taken.append(num.get_window_extent(renderer))
    stars = ax.transData.transform(pt.numpy())  # (K, 2) in pixels
    centre = pt.mean(0)
    for i, ((x, y), name) in enumerate(zip(pt.tolist(), text_names)):
        d = torch.tensor([x, y]) - centre
        out = math.atan2(d[1], d[0]) if d.norm() > 1e-8 else 0.0
        for turn in (0, 1, -1, 2, -2, 3, -3, 4):  # outwards first, then round the star in steps of 45 degrees
            a = out + turn * math.pi / 4
            dx, dy = 10 * math.cos(a), 10 * math.sin(a)
            label = ax.annotate(name, (x, y), xytext=(dx, dy), textcoords="offset points", fontsize=8, zorder=4,
                                ha="left" if dx > 3 else "right" if dx < -3 else "center",
                                va="bottom" if dy > 3 else "top" if dy < -3 else "center", path_effects=halo)
            box = label.get_window_extent(renderer)
            gap = [math.dist(st, (min(max(st[0], box.x0), box.x1), min(max(st[1], box.y0), box.y1)))
                   for st in stars]  # pixels from each star to the text's box
            covers = any(gap[j] < max(gap[i], 6) for j in range(len(stars)) if j != i)  # another star is nearer
            if not covers and not any(box.overlaps(b) for b in taken) or turn == 4:
                break
            label.remove()
        taken.append(box)
    ax.set_xlabel(f"PC 1 ({100 * ratio[0]:.0f}% of variance)")
    ax.set_ylabel(f"PC 2 ({100 * ratio[1]:.0f}% of variance)")
    ax.set_title(title + " (dots: images, stars: prompts)")
    ax.legend(fontsize=9, markerscale=2, loc="best", ncol=2)
    return fig


@torch.no_grad()
def zero_shot_by_wording(model, images: torch.Tensor, labels: torch.Tensor, prompts: dict[str, list[str]],
                         batch_size: int = 500) -> dict[str, float]:
    """Zero-shot accuracy for several sets of class prompts, the images encoded once.

    model: a CLIPModel; prompts: {name: [one prompt per class]}; returns {name: accuracy in [0, 1]}.
    Same numbers as clip.zero_shot_accuracy for each set, at the cost of one image pass.
    """
    img = torch.cat([model.encode_image(x) for x in images.split(batch_size)])  # (N, E)
    return {name: ((img @ model.encode_text(p).T).argmax(1).cpu() == labels.cpu()).float().mean().item()
            for name, p in prompts.items()}
