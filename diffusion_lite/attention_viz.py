"""Cross-attention maps for chapter 07: where each prompt token is looked at during denoising.

    images, frames = sample_with_attention(pipe, ["a thick seven"], steps=20, generator=g)
    fig = attention_steps_figure(frames, token_labels(pipe.text.tokenizer, "a thick seven"))

``sample_with_attention`` records the cross-attention probabilities of every layer at every sampler step
(``UNet.capture_attention``), ``token_maps`` averages them over heads and layers into one map per token,
and the figures overlay those maps on the step's prediction x0_hat. Images are (B, C, H, W) in [-1, 1].
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from .text_viz import _figure, _gray
from .tokenizer import PAD


def token_labels(tokenizer, prompt: str) -> list[str]:
    """The real tokens of a prompt as the model sees them: ["<bos>", "a", "thick", "seven", "<eos>"]."""
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
                          size: int | None = None) -> tuple[torch.Tensor, list[dict]]:
    """Sample with a text pipeline while recording its cross-attention maps at every step.

    Returns (images (B, C, H, W) in [-1, 1], frames): one frame per denoising step, {"i", "t",
    "x0_hat": (B, C, H, W), "maps": (B, L, S, S)} with the maps of the *conditional* branch (the first
    B rows of the guided batch; at guidance 0 only the empty prompt is run, and its maps are returned).
    """
    if isinstance(prompts, str):
        raise ValueError("prompts must be a list of strings (one image each)")
    B, frames = len(prompts), []
    with pipe.unet.capture_attention() as records:
        def callback(d: dict) -> None:
            frames.append({"i": d["i"], "t": d["t"], "x0_hat": d["x0_hat"].cpu(),
                           "maps": token_maps(records, size, slice(0, B)).cpu()})
            records.clear()  # the layers keep appending to this same list

        images = pipe.sample(prompts, guidance=guidance, steps=steps, generator=generator, x_T=x_T,
                             callback=callback, progress=False)
    return images, frames


def token_mass(frames: list[dict], index: int = 0) -> torch.Tensor:
    """(steps, L): the attention each token receives, averaged over pixels, for image ``index``."""
    return torch.stack([f["maps"][index].mean((1, 2)) for f in frames])


def attention_steps_figure(frames: list[dict], tokens: list[str], show_steps: list[int] | None = None,
                           index: int = 0, alpha: float = 0.55):
    """Rows: denoising steps; columns: the prediction x0_hat of that step, then one panel per token with
    its attention map (heads and layers averaged, upsampled bilinearly) overlaid on x0_hat.

    Each map is scaled to its own maximum, so the panels show *where* a token is attended; the number in
    the corner is *how much*: the token's share of all attention, averaged over pixels (a row sums to 1
    over all tokens).
    """
    show_steps = list(range(len(frames))) if show_steps is None else list(show_steps)
    if any(not 0 <= s < len(frames) for s in show_steps):
        raise ValueError(f"show_steps must be in [0, {len(frames)})")
    L = len(tokens)
    if frames[0]["maps"].shape[1] < L:
        raise ValueError(f"{len(tokens)} tokens but maps hold {frames[0]['maps'].shape[1]}")
    fig = _figure((1.45 * (L + 1), 1.55 * len(show_steps)))
    for row, s in enumerate(show_steps):
        f = frames[s]
        img = _gray(f["x0_hat"][index].clamp(-1, 1))
        H = img.shape[0]
        m = F.interpolate(f["maps"][index:index + 1, :L], size=(H, H), mode="bilinear", align_corners=False)[0]
        mass = f["maps"][index, :L].mean((1, 2))  # (L,)
        for col in range(L + 1):
            ax = fig.add_subplot(len(show_steps), L + 1, row * (L + 1) + col + 1)
            ax.imshow(img, cmap="gray", vmin=0, vmax=255)
            if col:
                ax.imshow(m[col - 1].numpy(), cmap="jet", alpha=alpha, vmin=0, vmax=float(m[col - 1].max()) + 1e-12)
                ax.text(1, 3, f"{mass[col - 1]:.0%}", color="white", fontsize=8, fontweight="bold",
                        bbox=dict(facecolor="black", alpha=0.6, pad=1, lw=0))
            ax.set_xticks([]), ax.set_yticks([])
            if row == 0:
                ax.set_title("x0_hat" if col == 0 else tokens[col - 1], fontsize=10)
            if col == 0:
                ax.set_ylabel(f"t = {f['t']}", fontsize=9)
    fig.tight_layout(pad=0.3)
    return fig


def attention_widget(frames: list[dict], tokens: list[str], index: int = 0):
    """``interactive`` with a denoising-step slider for :func:`attention_steps_figure` (one row)."""
    from ipywidgets import IntSlider, interactive

    slider = IntSlider(value=len(frames) // 2, min=0, max=len(frames) - 1, description="step",
                       continuous_update=False)
    return interactive(lambda step: attention_steps_figure(frames, tokens, [step], index), step=slider)
