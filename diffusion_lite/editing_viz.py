"""The figure and widget of chapter 08, section 6 (editing.py): a few images, edited with a prompt at a strength
and optionally inside a mask, shown above their edits. Unlike the guidance widget, this one samples: each change
of prompt, strength or mask edits the images again (a second or two on a CPU at 15 steps and four images).
Images are (B, C, H, W) in [-1, 1]; the figure function returns a matplotlib Figure, called once with default
values for the page's static copy, and ``edit_widget`` wraps it in ``interactive``."""

from __future__ import annotations

import torch

from .editing import HALVES, edit, edit_timesteps, half_mask
from .viz import make_grid

MASKS = ("none", *HALVES)  # "none": image to image; else the half of the image to regenerate


def _mask(name: str, size: int) -> torch.Tensor | None:
    if name not in MASKS:
        raise ValueError(f"unknown mask {name!r}; expected one of {', '.join(MASKS)}")
    return None if name == "none" else half_mask(name, size)


def edit_figure(pipe, images: torch.Tensor, prompt: str, strength: float = 0.6, mask: str = "none", *,
                steps: int = 15, guidance: float = 3.0, seed: int = 0, classifier=None):
    """Inputs (top row) and their edits under ``prompt`` (bottom row), from the noise of ``seed``; ``mask``: one
    of MASKS (a half of the image to regenerate, "none" for image to image). With an evaluation ``classifier``,
    the title says how many edits it reads as which digit."""
    import matplotlib.pyplot as plt

    m = _mask(mask, images.shape[-1])
    out = edit(pipe, images, prompt, strength=strength, mask=m, steps=steps, guidance=guidance,
               generator=torch.Generator().manual_seed(seed), progress=False).cpu()  # (B, C, H, W)
    t_start = edit_timesteps(pipe.schedule, steps, strength)[0]
    shown = images.cpu() if m is None else images.cpu() * (1 - m)  # the half to regenerate in grey (0)
    fig, ax = plt.subplots(figsize=(1.1 * images.shape[0] + 0.6, 3.0))
    ax.imshow(make_grid(torch.cat([shown, out]), nrow=images.shape[0]), cmap="gray", vmin=0, vmax=255,
              interpolation="nearest")
    ax.set_axis_off()
    where = "image to image" if m is None else f"{mask} half regenerated"
    title = f'"{prompt}", strength {strength:g} (t_start = {t_start}), {where}'
    if classifier is not None:
        with torch.no_grad():
            read = classifier(out.to(next(classifier.parameters()).device)).argmax(1).tolist()
        title += "\nread as: " + ", ".join(map(str, read))
    ax.set_title(title, fontsize=9)
    fig.tight_layout()
    return fig


def edit_widget(pipe, images: torch.Tensor, prompt: str = "the digit eight", strength: float = 0.6,
                mask: str = "none", *, steps: int = 15, classifier=None):
    """``interactive`` over :func:`edit_figure`: a prompt text box, a strength slider (0.1 to 1) and a mask
    drop-down; each change edits the images again (continuous_update off: once per release of the slider).
    Choosing a mask after "none" moves the slider to 1, where inpainting starts (lower keeps the old half as a hint)."""
    from ipywidgets import Dropdown, FloatSlider, Text, interactive

    _mask(mask, images.shape[-1])  # ValueError now rather than inside the callback
    box = Text(value=prompt, description="prompt", continuous_update=False)
    slider = FloatSlider(value=strength, min=0.1, max=1.0, step=0.1, description="strength",
                         continuous_update=False)
    drop = Dropdown(options=list(MASKS), value=mask, description="mask")

    def to_full_strength(change):  # inpainting starts the masked half from noise (the library's default)
        if change["old"] == "none" and change["new"] != "none":
            slider.value = 1.0

    drop.observe(to_full_strength, names="value")
    return interactive(lambda prompt, strength, mask: edit_figure(pipe, images, prompt, strength, mask, steps=steps,
                                                                  classifier=classifier),
                       prompt=box, strength=slider, mask=drop)
