"""Pictures: image grids (used by the CLI and every chapter)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from .utils import to_uint8


def make_grid(images: torch.Tensor, nrow: int | None = None, padding: int = 2, pad_value: int = 255) -> np.ndarray:
    """Tile images (B, C, H, W) in [-1, 1] into one uint8 array (rows*H', cols*W', C) or (.., ..) if C == 1.

    nrow: images per row (default: ceil(sqrt(B))).
    """
    if images.dim() != 4:
        raise ValueError(f"images must be (B, C, H, W), got shape {tuple(images.shape)}")
    x = to_uint8(images).permute(0, 2, 3, 1).numpy()  # (B, H, W, C)
    B, H, W, C = x.shape
    nrow = nrow or int(np.ceil(np.sqrt(B)))
    rows = int(np.ceil(B / nrow))
    grid = np.full((rows * (H + padding) + padding, nrow * (W + padding) + padding, C), pad_value, np.uint8)
    for i in range(B):
        r, c = divmod(i, nrow)
        y0, x0 = padding + r * (H + padding), padding + c * (W + padding)
        grid[y0:y0 + H, x0:x0 + W] = x[i]
    return grid[..., 0] if C == 1 else grid


def save_grid(images: torch.Tensor, path: str | Path, nrow: int | None = None, scale: int = 2) -> Path:
    """Write a PNG grid of images (B, C, H, W) in [-1, 1], each pixel enlarged ``scale`` times."""
    from PIL import Image

    grid = make_grid(images, nrow)
    img = Image.fromarray(grid)
    if scale > 1:
        img = img.resize((img.width * scale, img.height * scale), Image.NEAREST)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    img.save(path)
    return path


def show_grid(images: torch.Tensor, nrow: int | None = None, title: str | None = None, ax=None, figsize=None):
    """Show a grid of images (B, C, H, W) in [-1, 1] with matplotlib; returns the Axes."""
    import matplotlib.pyplot as plt

    grid = make_grid(images, nrow)
    if ax is None:
        _, ax = plt.subplots(figsize=figsize or (5, 5))
    ax.imshow(grid, cmap="gray" if grid.ndim == 2 else None, vmin=0, vmax=255)
    ax.set_axis_off()
    if title:
        ax.set_title(title)
    return ax
