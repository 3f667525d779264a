"""Cross-attention maps for chapter 07: where each prompt token is looked at during denoising.

    images, frames = sample_with_attention(pipe, ["a thick seven"], steps=20, generator=g)
    fig = attention_steps_figure(frames, token_labels(pipe.text.tokenizer, "a thick seven"))

``sample_with_attention`` records the cross-attention probabilities of every layer at every sampler step
(``UNet.capture_attention``), ``token_maps`` averages them over heads and layers into one map per token,
and the figures draw those maps opaque in viridis (perceptually uniform, colour-blind safe), with the outline of
the step's prediction x0_hat on top as contour lines, every panel of a figure on one colour scale (0 to the
largest attention shown or in the run) with a colour bar: scaled panel by panel, a token read by 2% of the
attention would look as hot as one read by 59%. Images are (B, C, H, W) in [-1, 1].
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from .text_viz import _figure, _gray
from .tokenizer import PAD


def token_labels(tokenizer, prompt: str) -> list[str]:
    """The real tokens of a prompt as the model sees them: ["<bos>", "a", "thick", "seven", "<eos>"]; also for a
    Hugging Face CLIP tokenizer (an HFTextEncoder's ``.tokenizer``): ["<|startoftext|>", "a</w>", ...]."""
    if hasattr(tokenizer, "convert_ids_to_tokens"):  # transformers: its own special tokens, no padding here
        return tokenizer.convert_ids_to_tokens(tokenizer([prompt])["input_ids"][0])
    ids = tokenizer.encode([prompt], on_unknown="unk")[0][0]
    return [tokenizer.vocab[i] for i in ids.tolist() if i != PAD]


def token_maps(records: list[dict], size: int | None = None, batch: slice | list[int] | None = None) -> torch.Tensor:
    """Average the cross-attention probabilities of one forward pass over heads and layers.

    records: from ``UNet.capture_attention`` ({"probs": (B, h, N, L), "resolution": r} with N = r * r);
    layers of different resolutions are resized (bilinear) to ``size`` (default: the largest r).
    batch: which rows to keep (e.g. ``slice(0, B)``, the conditional half of a guided batch).
    Returns (B', L, size, size): for token l, how much each pixel attends to it (sums to 1 over L).
    """
    if not records:
        raise ValueError("no attention records: run the U-Net inside `with unet.capture_attention() as records:`")
    size = size or max(r["resolution"] for r in records)
    maps = []
    for r in records:
        p = r["probs"] if batch is None else r["probs"][batch]
        B, h, N, L = p.shape
        res = r["resolution"]
        if res * res != N:
            raise ValueError(f"record {r.get('layer')!r}: {N} queries is not {res}x{res}")
        m = p.float().mean(1).transpose(1, 2).reshape(B, L, res, res)  # (B, L, r, r), heads averaged
        maps.append(F.interpolate(m, size=(size, size), mode="bilinear", align_corners=False) if res != size else m)
    return torch.stack(maps).mean(0)  # (B, L, size, size)


@torch.no_grad()
def sample_with_attention(pipe, prompts: list[str], *, guidance: float = 3.0, steps: int = 50,
                          generator: torch.Generator | None = None, x_T: torch.Tensor | None = None,
                          size: int | None = None, branch: str = "prompt") -> tuple[torch.Tensor, list[dict]]:
    """Sample with a text pipeline while recording its cross-attention maps at every step.

    Returns (images (B, C, H, W) in [-1, 1], frames): one frame per denoising step, {"i", "t",
    "x0_hat": (B, C, H, W), "maps": (B, L, S, S)} with the maps of one branch of the guided batch:
    ``branch="prompt"`` the conditional one (its first B rows), ``"empty"`` the unconditional one (its last
    B rows: the empty prompt's). Guidance 1 runs only the prompt and guidance 0 only the empty prompt: asking
    there for the branch that is not run is a ValueError.
    """
    if isinstance(prompts, str):
        raise ValueError("prompts must be a list of strings (one image each)")
    if branch not in ("prompt", "empty"):
        raise ValueError(f"branch must be 'prompt' or 'empty', got {branch!r}")
    if (branch, guidance) in (("prompt", 0.0), ("empty", 1.0)):
        runs, other = ("only the empty prompt", "empty") if guidance == 0 else ("only the prompt", "prompt")
        raise ValueError(f"guidance {guidance:g} runs {runs}: there are no maps of branch {branch!r} (use "
                         f"branch={other!r})")
    B, frames = len(prompts), []
    rows = slice(B, 2 * B) if branch == "empty" and guidance != 0 else slice(0, B)
    with pipe.unet.capture_attention() as records:
        def callback(d: dict) -> None:
            frames.append({"i": d["i"], "t": d["t"], "x0_hat": d["x0_hat"].cpu(),
                           "maps": token_maps(records, size, rows).cpu()})
            records.clear()  # the layers keep appending to this same list

        images = pipe.sample(prompts, guidance=guidance, steps=steps, generator=generator, x_T=x_T,
                             callback=callback, progress=False)
    return images, frames


def token_mass(frames: list[dict], index: int = 0) -> torch.Tensor:
    """(steps, L): the attention each token receives, averaged over pixels, for image ``index``."""
    return torch.stack([f["maps"][index].mean((1, 2)) for f in frames])


def attention_max(frames: list[dict], n_tokens: int | None = None, index: int = 0) -> float:
    """The largest attention of one pixel to one token in a run: the maximum, over all frames, of the maps
    (B, L, S, S) of image ``index`` and its first ``n_tokens`` tokens (default all), a value in (0, 1]."""
    return float(torch.stack([f["maps"][index, :n_tokens] for f in frames]).max())


def _check_tokens(frames: list[dict], tokens: list[str]) -> int:
    if not frames or not 1 <= len(tokens) <= frames[0]["maps"].shape[1]:
        raise ValueError(f"{len(tokens)} tokens but maps hold {frames[0]['maps'].shape[1] if frames else 0}")
    return len(tokens)


def _check_vmax(vmax) -> float:
    if not vmax > 0:
        raise ValueError(f"vmax must be > 0 (the top of the colour scale), got {vmax}")
    return float(vmax)


ATTENTION_CMAP = "viridis"  # perceptually uniform: the colour bar reads true, also for colour-blind readers
INK_LEVEL = 128  # the outline of x0_hat: where its uint8 pixels cross mid-grey (0 in [-1, 1])


def _overlay(ax, img, amap, vmax: float):
    """amap None: x0_hat (H, W) uint8 in gray. Else the attention map (H, W), opaque, in ATTENTION_CMAP on the
    scale [0, vmax], and x0_hat's outline (its contour at INK_LEVEL) over it in white lines edged in black."""
    from matplotlib import patheffects

    ax.set_xticks([]), ax.set_yticks([])
    if amap is None:
        return ax.imshow(img, cmap="gray", vmin=0, vmax=255)
    im = ax.imshow(amap.numpy(), cmap=ATTENTION_CMAP, vmin=0, vmax=vmax)
    if img.min() < INK_LEVEL < img.max():  # a blank x0_hat has no outline
        cs = ax.contour(img, levels=[INK_LEVEL], colors="white", linewidths=0.9)
        cs.set_path_effects([patheffects.withStroke(linewidth=2.0, foreground="black")])
    return im


def _upsampled(maps: torch.Tensor, size: int) -> torch.Tensor:
    """(L, S, S) -> (L, size, size), bilinear."""
    return F.interpolate(maps[None], size=(size, size), mode="bilinear", align_corners=False)[0]


def attention_steps_figure(frames: list[dict], tokens: list[str], show_steps: list[int] | None = None,
                           index: int = 0, vmax: float | None = None):
    """Rows: denoising steps (indices into frames); columns: the prediction x0_hat of that step, then one
    panel per token with its attention map (heads and layers averaged, upsampled bilinearly) and the outline
    of x0_hat drawn over it (white lines). frames: from :func:`sample_with_attention`; tokens: the first L
    token labels; image ``index``.

    Every map is drawn on one colour scale, from 0 to ``vmax``, shown by a colour bar, so a brighter panel
    is a token read more. vmax=None takes :func:`attention_max` of the whole run (not only of the steps
    shown), so every figure and widget of one run shares its scale. The number in the corner is the
    token's share of all attention, the map averaged over pixels (a row sums to 1 over all tokens).
    """
    show_steps = list(range(len(frames))) if show_steps is None else list(show_steps)
    if not show_steps or any(not 0 <= s < len(frames) for s in show_steps):
        raise ValueError(f"show_steps must be one or more steps in [0, {len(frames)})")
    L = _check_tokens(frames, tokens)
    vmax = _check_vmax(attention_max(frames, L, index) if vmax is None else vmax)
    fig = _figure((1.45 * (L + 1) + 1, 1.55 * len(show_steps) + 0.3), layout="constrained")
    axes = fig.subplots(len(show_steps), L + 1, squeeze=False)
    for row, s in enumerate(show_steps):
        f = frames[s]
        img = _gray(f["x0_hat"][index].clamp(-1, 1))
        m = _upsampled(f["maps"][index, :L], img.shape[0])
        mass = f["maps"][index, :L].mean((1, 2))  # (L,)
        for col, ax in enumerate(axes[row]):
            if col == 0:
                _overlay(ax, img, None, vmax)
            else:
                im = _overlay(ax, img, m[col - 1], vmax)
                ax.text(1, 3, f"{mass[col - 1]:.0%}", color="white", fontsize=8, fontweight="bold",
                        bbox=dict(facecolor="black", alpha=0.6, pad=1, lw=0))
            if row == 0:
                ax.set_title("x0_hat" if col == 0 else tokens[col - 1], fontsize=10)
        axes[row, 0].set_ylabel(f"t = {f['t']}", fontsize=9)
    fig.colorbar(im, ax=axes, shrink=0.9, aspect=8 * len(show_steps), label="attention to the token")
    return fig


def attention_widget(frames: list[dict], tokens: list[str], index: int = 0, vmax: float | None = None):
    """``interactive`` with a denoising-step slider for :func:`attention_steps_figure` (one row), on one
    colour scale for every step (vmax=None: :func:`attention_max` of the run)."""
    from ipywidgets import IntSlider, interactive

    vmax = _check_vmax(attention_max(frames, _check_tokens(frames, tokens), index) if vmax is None else vmax)
    slider = IntSlider(value=len(frames) // 2, min=0, max=len(frames) - 1, description="step",
                       continuous_update=False)
    return interactive(lambda step: attention_steps_figure(frames, tokens, [step], index, vmax=vmax), step=slider)


def token_comparison_figure(runs: list[list[dict]], prompts: list[str], tokens: list[list[str]], position: int,
                            step: int, index: int = 0, vmax: float | None = None, title: str = ""):
    """Several runs side by side, e.g. prompts that differ in one word, sampled from the same x_T: for each
    run (its frames from :func:`sample_with_attention`), x0_hat at ``step`` and the attention map of the
    token at ``position`` with the outline of x0_hat over it. tokens: the token labels of each prompt
    (:func:`token_labels`).

    All maps share one colour scale, 0 to ``vmax`` (None: the largest value of the maps shown), with a
    colour bar; each title gives the token's share of all attention. ``title`` is added to the suptitle.
    """
    if not runs or not len(runs) == len(prompts) == len(tokens):
        raise ValueError(f"need one prompt and one token list per run: {len(runs)} runs, {len(prompts)} prompts, "
                         f"{len(tokens)} token lists")
    if any(not 0 <= step < len(fr) for fr in runs):
        raise ValueError(f"step must be in [0, {min(len(fr) for fr in runs)})")
    if any(not 0 <= position < len(tok) for tok in tokens):
        raise ValueError(f"position must be in [0, {min(len(tok) for tok in tokens)})")
    frames = [fr[step] for fr in runs]
    vmax = _check_vmax(max(float(f["maps"][index, position].max()) for f in frames) if vmax is None else vmax)
    fig = _figure((4.1 * len(runs) + 0.6, 2.3), layout="constrained")
    axes = fig.subplots(1, 2 * len(runs), squeeze=False)[0]
    for k, (f, p, tok) in enumerate(zip(frames, prompts, tokens)):
        img = _gray(f["x0_hat"][index].clamp(-1, 1))
        m = _upsampled(f["maps"][index, position:position + 1], img.shape[0])[0]
        _overlay(axes[2 * k], img, None, vmax)
        axes[2 * k].set_title(f'"{p}": x0_hat', fontsize=9)
        im = _overlay(axes[2 * k + 1], img, m, vmax)
        share = f["maps"][index, position].mean()
        axes[2 * k + 1].set_title(f'attention to "{tok[position]}" ({share:.0%})', fontsize=9)
    for ax in axes:
        ax.set_axis_off()
    fig.colorbar(im, ax=axes, label="attention")
    fig.suptitle(f"step {step + 1} of {len(runs[0])} (t = {frames[0]['t']})" + (f", {title}" if title else ""),
                 fontsize=10)
    return fig
