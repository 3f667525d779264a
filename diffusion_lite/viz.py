"""Pictures: image grids (every chapter), U-Net shape traces (03), loss curves (04). Sampling
trajectories (05) are in :mod:`diffusion_lite.trajectory_viz`."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from .utils import to_uint8

GRID_PADDING = 2  # px of white between and around the tiles of make_grid
DARK_ORANGE = "#b35900"  # text labels of a C1 (orange) curve: C1 itself is too light to read as text on white


def plain_log_ticks(axis, subs=(1.0, 2.0, 5.0)) -> None:
    """On a log-scaled matplotlib axis, major ticks at subs x 10^k (default 1, 2, 5, 10, 20, ...) written as plain
    numbers (0.05, 20), not 5x10^-2, and no minor labels."""
    from matplotlib.ticker import FuncFormatter, LogLocator, NullFormatter

    axis.set_major_locator(LogLocator(subs=subs))
    axis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))
    axis.set_minor_formatter(NullFormatter())


def _grid_cols(B: int, nrow: int | None) -> int:
    """Images per grid row: ``nrow``, or ceil(sqrt(B)) by default."""
    return nrow or int(np.ceil(np.sqrt(B)))


def make_grid(images: torch.Tensor, nrow: int | None = None, padding: int = GRID_PADDING,
              pad_value: int = 255) -> np.ndarray:
    """Tile images (B, C, H, W) into one uint8 array (rows*H', cols*W', C) or (.., ..) if C == 1.

    Float images are read as [-1, 1] (clipped outside it, e.g. noise); uint8 images as [0, 255], used unchanged.
    Other dtypes, channels other than 1 (grey), 3 (RGB) or 4 (RGBA), and floats in [0, 255] are errors.
    nrow: images per row (default: ceil(sqrt(B))).
    """
    if not torch.is_tensor(images):
        raise ValueError(f"images must be a torch.Tensor (B, C, H, W), got {type(images).__name__}"
                         + (" (torch.from_numpy(a))" if isinstance(images, np.ndarray) else ""))
    if images.dim() != 4:
        raise ValueError(f"images must be (B, C, H, W), got shape {tuple(images.shape)}")
    if images.shape[1] not in (1, 3, 4):
        last = " (channels last? images.permute(0, 3, 1, 2))" if images.shape[-1] in (1, 3, 4) else ""
        raise ValueError(f"images must be (B, C, H, W) with C = 1, 3 or 4 channels, got shape "
                         f"{tuple(images.shape)}{last}")
    if images.is_floating_point() and images.numel() and float(images.min()) >= 0 and float(images.max()) > 2:
        raise ValueError(f"float images are read as [-1, 1], these are in [{float(images.min()):.3g}, "
                         f"{float(images.max()):.3g}]: pixels in [0, 255]? use images / 127.5 - 1 (or uint8)")
    if images.dtype == torch.uint8:
        x = images.detach().cpu()
    elif images.is_floating_point():
        x = to_uint8(images)
    else:
        raise ValueError(f"images must be float in [-1, 1] or uint8 in [0, 255], got {images.dtype}")
    x = x.permute(0, 2, 3, 1).numpy()  # (B, H, W, C)
    B, H, W, C = x.shape
    if B == 0:
        raise ValueError("no images to show: got a batch of 0")
    nrow = _grid_cols(B, nrow)
    rows = int(np.ceil(B / nrow))
    grid = np.full((rows * (H + padding) + padding, nrow * (W + padding) + padding, C), pad_value, np.uint8)
    for i in range(B):
        r, c = divmod(i, nrow)
        y0, x0 = padding + r * (H + padding), padding + c * (W + padding)
        grid[y0:y0 + H, x0:x0 + W] = x[i]
    return grid[..., 0] if C == 1 else grid


def save_grid(images: torch.Tensor, path: str | Path, nrow: int | None = None, scale: int = 2) -> Path:
    """Write a grid of images (B, C, H, W) in [-1, 1], each pixel enlarged ``scale`` times, to ``path`` (the
    format follows its extension: .png, .jpg, ...). Written atomically: an existing file is replaced whole or
    left as it was."""
    from PIL import Image

    from .files import atomic_write

    path = Path(path)
    fmt = Image.registered_extensions().get(path.suffix.lower())
    if fmt is None:
        raise ValueError(f"cannot tell the image format of {path.name!r}: expected a name ending in .png (or "
                         "another extension Pillow knows, e.g. .jpg)")
    grid = make_grid(images, nrow)
    img = Image.fromarray(grid)
    if scale > 1:
        img = img.resize((img.width * scale, img.height * scale), Image.NEAREST)
    atomic_write(path, lambda tmp: img.save(tmp, format=fmt))
    return path


def show_grid(images: torch.Tensor, nrow: int | None = None, title: str | None = None, ax=None, figsize=None,
              labels: list[str] | None = None, fontsize: float = 8):
    """Show a grid of images (B, C, H, W) in [-1, 1] with matplotlib; returns the Axes. ``labels``: a short
    text above each of the first len(labels) images (e.g. column names over the first row)."""
    import matplotlib.pyplot as plt

    grid = make_grid(images, nrow)
    if ax is None:
        _, ax = plt.subplots(figsize=figsize or (5, 5))
    # nearest neighbour: crisp pixels, and PNGs of noisy images that are ~5x smaller than with smoothing
    ax.imshow(grid, cmap="gray" if grid.ndim == 2 else None, vmin=0, vmax=255, interpolation="nearest")
    ax.set_axis_off()
    H, W, ncol = images.shape[2], images.shape[3], _grid_cols(images.shape[0], nrow)
    pad = GRID_PADDING  # make_grid's layout: tiles of W + pad px, the first starting at pad px
    for i, label in enumerate(labels or []):
        r, c = divmod(i, ncol)
        ax.text(pad + c * (W + pad) + W / 2, r * (H + pad) + pad - 1, label, ha="center", va="bottom",
                fontsize=fontsize)
    if title:
        ax.set_title(title, pad=12 if labels else 6)
    return ax


# ------------------------------------------------------------------------------------------------
# U-Net anatomy (chapter 03): what each block does to the shape of the feature maps
# ------------------------------------------------------------------------------------------------


def _first_tensor(x):
    if isinstance(x, torch.Tensor):
        return x
    if isinstance(x, (tuple, list)):
        for item in x:
            t = _first_tensor(item)
            if t is not None:
                return t
    return None


def _blocks(module: torch.nn.Module, prefix: str, expand: tuple[type, ...]):
    """Children of ``module`` as (dotted name, module), descending into the container types ``expand``."""
    for name, child in module.named_children():
        full = f"{prefix}.{name}" if prefix else name
        if isinstance(child, expand):
            yield from _blocks(child, full, expand)
        else:
            yield full, child


def shape_trace(model: torch.nn.Module, *args, expand: tuple[type, ...] = (torch.nn.ModuleList, torch.nn.ModuleDict),
                **kwargs) -> list[dict]:
    """Run ``model(*args, **kwargs)`` once (no gradients) and record what every block saw and produced.

    Blocks are the model's children, looking inside the containers listed in ``expand`` (for the U-Net:
    its ``down``/``mid``/``up`` ModuleLists, so each ResBlock, attention and Down/Upsample is a block).
    Forward hooks record, in call order, one dict per call::

        {"name": "down.0.0", "type": "ResBlock", "in_shape": (B, C, H, W), "out_shape": (B, C', H', W'),
         "params": number of parameters of the block}

    The hooks are removed afterwards, also when the forward pass raises.
    """
    records: list[dict] = []
    handles = []

    def hook_for(name: str, block: torch.nn.Module):
        params = sum(p.numel() for p in block.parameters())

        def hook(mod, inputs, output):
            t_in, t_out = _first_tensor(inputs), _first_tensor(output)
            records.append({"name": name, "type": type(mod).__name__,
                            "in_shape": tuple(t_in.shape) if t_in is not None else None,
                            "out_shape": tuple(t_out.shape) if t_out is not None else None,
                            "params": params})
        return hook

    try:
        for name, block in _blocks(model, "", expand):
            handles.append(block.register_forward_hook(hook_for(name, block)))
        with torch.no_grad():
            model(*args, **kwargs)
    finally:
        for h in handles:
            h.remove()
    return records


def format_shape_trace(records: list[dict]) -> str:
    """A fixed-width table of :func:`shape_trace` records: name, type, input -> output shape, parameters."""
    fmt = lambda s: "-" if s is None else "(" + ", ".join(str(d) for d in s) + ")"
    rows = [("block", "type", "input", "output", "params")]
    rows += [(r["name"], r["type"], fmt(r["in_shape"]), fmt(r["out_shape"]), f"{r['params']:,}") for r in records]
    widths = [max(len(row[i]) for row in rows) for i in range(5)]
    lines = []
    for j, row in enumerate(rows):
        cells = [row[i].ljust(widths[i]) if i < 4 else row[i].rjust(widths[i]) for i in range(5)]
        lines.append("  ".join(cells).rstrip())
        if j == 0:
            lines.append("  ".join("-" * w for w in widths))
    return "\n".join(lines)


# ------------------------------------------------------------------------------------------------
# Training curves (chapter 04)
# ------------------------------------------------------------------------------------------------


def plot_loss_curve(histories, ax=None, title: str | None = "Training loss", logy: bool = True, figsize=(6, 3.5)):
    """Plot loss histories: a list of (step, loss) pairs (as ``train.fit`` returns in ``["loss"]``), or a
    dict {label: history} for several curves. Returns the Axes."""
    import matplotlib.pyplot as plt

    if not isinstance(histories, dict):
        histories = {None: histories}
    if ax is None:
        _, ax = plt.subplots(figsize=figsize)
    for label, hist in histories.items():
        if len(hist) == 0:
            raise ValueError(f"empty loss history{f' for {label!r}' if label else ''}")
        steps, losses = zip(*hist)
        ax.plot(steps, losses, marker="." if len(hist) < 30 else None, label=label)
    ax.set_xlabel("training step")
    ax.set_ylabel("loss (MSE, smoothed)")
    if logy:
        ax.set_yscale("log")
    if title:
        ax.set_title(title)
    if any(label is not None for label in histories):
        ax.legend()
    ax.grid(alpha=0.3)
    return ax
