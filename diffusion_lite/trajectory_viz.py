"""Sampling trajectories (chapter 05): record every step of a sampler, show chosen steps as a static
figure of "x_t | predicted x_0" frames, or play them as an animation."""

from __future__ import annotations

import numpy as np

from .viz import make_grid, show_grid


class TrajectoryRecorder:
    """A sampler callback that keeps every step: ``sample_ddim(..., callback=rec)`` then ``rec.records``.

    Each record is {"i": step index, "t": the step's time step, "t_next": the time step it moves to (-1 after
    the last step), "x_t": the state after the step (at t_next; the sample after the last step) (B, C, H, W),
    "x0_hat": the prediction made at t (B, C, H, W)}, copied to the CPU; ``max_images`` keeps only the first
    images of the batch (to save memory).
    """

    def __init__(self, max_images: int | None = None):
        self.max_images = max_images
        self.records: list[dict] = []

    def __call__(self, info: dict) -> None:
        n = self.max_images
        self.records.append({"i": info["i"], "t": info["t"], "t_next": info.get("t_next"),
                             "x_t": info["x_t"][:n].detach().cpu().clone(),
                             "x0_hat": info["x0_hat"][:n].detach().cpu().clone()})


def select_frames(num_records: int, num_frames: int) -> list[int]:
    """``num_frames`` indices spread evenly over 0..num_records-1, always including the first and last."""
    if num_records < 1 or num_frames < 1:
        raise ValueError(f"need num_records >= 1 and num_frames >= 1, got {num_records}, {num_frames}")
    if num_frames == 1:
        return [num_records - 1]
    idx = np.linspace(0, num_records - 1, min(num_frames, num_records)).round().astype(int)
    return sorted(set(idx.tolist()))


def trajectory_frame(record: dict, n_images: int = 4, nrow: int | None = None, gap: int = 6) -> np.ndarray:
    """One uint8 picture of a sampling step: the grid of x_t, a white gap, the grid of predicted x_0.

    record: a :class:`TrajectoryRecorder` record. Returns (H, W) for grayscale or (H, W, 3).
    """
    a = make_grid(record["x_t"][:n_images], nrow)
    b = make_grid(record["x0_hat"][:n_images], nrow)
    sep = np.full((a.shape[0], gap) + a.shape[2:], 255, np.uint8)
    return np.concatenate([a, sep, b], axis=1)


def _arrow(rec: dict) -> str:
    """" -> 989" for a record of the step to t_next = 989 (" -> end" after the last step; "" if not recorded)."""
    t_next = rec.get("t_next")
    return "" if t_next is None else f" \u2192 {t_next if t_next >= 0 else 'end'}"


def show_trajectory(records: list[dict], num_frames: int = 8, n_images: int = 4, nrow: int | None = None,
                    figsize=None, title: str | None = None, ncols: int | None = None):
    """A static figure of a sampling run: row 1 the noisy states x_t, row 2 the predicted clean images x0_hat,
    at ``num_frames`` steps spread evenly over the run (time flows left to right). A column titled
    "t = 999 -> 989" is the step from t = 999: x0_hat predicted at 999, and the state it moved to, at 989
    ("end": the finished sample). ``ncols`` (default: all frames in one pair of rows) wraps the frames after
    that many columns, e.g. 10 frames as two pairs of rows of 5, to fit a page. Returns the Figure."""
    import matplotlib.pyplot as plt

    if not records:
        raise ValueError("no records: pass TrajectoryRecorder().records after a sampling run")
    idx = select_frames(len(records), num_frames)
    ncols = len(idx) if ncols is None else max(1, min(int(ncols), len(idx)))
    blocks = -(-len(idx) // ncols)  # pairs of rows (x_t, x0_hat)
    fig, axes = plt.subplots(2 * blocks, ncols, figsize=figsize or (1.6 * ncols, 3.6 * blocks), squeeze=False)
    for n in range(len(idx), blocks * ncols):  # the empty places of the last pair of rows
        axes[-2, n % ncols].set_axis_off(), axes[-1, n % ncols].set_axis_off()
    for n, k in enumerate(idx):
        rec, block, col = records[k], n // ncols, n % ncols
        for row, key in enumerate(("x_t", "x0_hat")):
            show_grid(rec[key][:n_images], nrow, ax=axes[2 * block + row, col])
        axes[2 * block, col].set_title(f"t = {rec['t']}{_arrow(rec)}", fontsize=9)
    for block in range(blocks):
        for row, label in enumerate(("$x_t$", r"$\hat{x}_0$")):
            ax = axes[2 * block + row, 0]
            ax.text(-0.15, 0.5, label, transform=ax.transAxes, ha="right", va="center", fontsize=11)
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    return fig


def animation_html(frames: list[np.ndarray], titles: list[str] | None = None, interval: int = 200, scale: int = 2,
                   dpi: int = 72):
    """A JavaScript animation (``IPython.display.HTML``) of uint8 frames (H, W) or (H, W, 3), all one size.

    Built with matplotlib's FuncAnimation(...).to_jshtml(). Each frame pixel becomes a ``scale`` x ``scale``
    block of screen pixels (nearest neighbour, no smoothing), which keeps the embedded PNGs small; still,
    keep it to <= ~20 frames.
    """
    import matplotlib.pyplot as plt
    from IPython.display import HTML
    from matplotlib import animation

    if not frames:
        raise ValueError("no frames to animate")
    if titles is not None and len(titles) != len(frames):
        raise ValueError(f"got {len(titles)} titles for {len(frames)} frames")
    if any(f.shape != frames[0].shape for f in frames):
        raise ValueError("all frames must have the same shape")
    h, w = frames[0].shape[:2]
    title_px = 4 + 13 * max(t.count("\n") + 1 for t in titles) if titles else 0  # 13 px per line at fontsize 8
    fig = plt.figure(figsize=(w * scale / dpi, (h * scale + title_px) / dpi), dpi=dpi)
    ax = fig.add_axes((0, 0, 1, h * scale / (h * scale + title_px)))
    gray = frames[0].ndim == 2
    im = ax.imshow(frames[0], cmap="gray" if gray else None, vmin=0, vmax=255, interpolation="nearest")
    ax.set_axis_off()
    ttl = fig.text(0.5, 1 - 0.5 * title_px / (h * scale + title_px), titles[0] if titles else "", ha="center",
                   va="center", fontsize=8)

    def update(k):
        im.set_data(frames[k])
        if titles:
            ttl.set_text(titles[k])
        return (im, ttl)

    anim = animation.FuncAnimation(fig, update, frames=len(frames), interval=interval, blit=False)
    with plt.rc_context({"savefig.dpi": dpi}):
        html = anim.to_jshtml(default_mode="once")
    plt.close(fig)
    return HTML(html)


def animate_trajectory(records: list[dict], num_frames: int = 16, n_images: int = 4, nrow: int | None = None,
                       interval: int = 250, scale: int = 2):
    """Animation of a sampling run, each frame "x_t | predicted x0_hat" (see :func:`trajectory_frame`), under a
    two-line title: the step and its time steps, then what the two halves show."""
    idx = select_frames(len(records), num_frames)
    frames = [trajectory_frame(records[k], n_images, nrow) for k in idx]
    titles = [f"step {records[k]['i'] + 1}/{len(records)}: t = {records[k]['t']}{_arrow(records[k])}\n"
              r"$x_t$ after the step | $\hat{x}_0$ at t" for k in idx]
    return animation_html(frames, titles, interval=interval, scale=scale)
