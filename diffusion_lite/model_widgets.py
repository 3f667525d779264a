"""Figures and widgets for chapters 03-05: inside the U-Net, what the trained network predicts, and a
sampling run step by step.

As in widgets.py (chapters 01-02), every figure is a plain function returning a matplotlib ``Figure``,
unit-tested in tests/test_model_widgets.py; a notebook calls it once for the static copy, and the matching
``*_widget`` wraps it in ``ipywidgets.interactive`` (``widget.result`` is the Figure on show).

Images are (B, C, H, W) in [-1, 1]; ``noise`` (same shape) is drawn once by the caller, so a slider changes
only what it names. ``model_fn(x_t, t) -> eps_hat`` is any noise predictor (``pipe.model_fn()``, a bare
U-Net, an oracle); t is a 0-indexed time step in [0, T).
"""

from __future__ import annotations

import re

import numpy as np
import torch

from .schedules import Schedule, predict_x0_from_eps, q_sample
from .viz import make_grid
from .widgets import _check_pair, _check_t, _figure

# ---------------------------------------------------------------------------------------------
# chapter 04: what the trained network predicts at one time step
# ---------------------------------------------------------------------------------------------


@torch.no_grad()
def predict_noise(model_fn, schedule: Schedule, x0: torch.Tensor, noise: torch.Tensor, t: int) -> dict:
    """Noise x0 to step t with ``noise`` (DDPM eq. 4), ask the network for eps_hat, and undo the mixing:
    x0_hat = (x_t - sqrt(1 - alpha_bar_t) eps_hat) / sqrt(alpha_bar_t) (DDPM eq. 15), not clipped.

    x0, noise: (B, C, H, W). Returns {"x_t", "eps_hat", "x0_hat": (B, C, H, W); "mse_eps", "mse_x0": (B,)
    per-image mean squared errors of eps_hat against noise and of x0_hat against x0}.
    """
    _check_pair(x0, noise)
    t = _check_t(schedule, t)
    tt = torch.full((x0.shape[0],), t, dtype=torch.long, device=x0.device)
    x_t = q_sample(schedule, x0, tt, noise=noise)
    eps_hat = model_fn(x_t, tt)
    if eps_hat.shape != x0.shape:
        raise ValueError(f"model_fn returned shape {tuple(eps_hat.shape)}, expected {tuple(x0.shape)}")
    x0_hat = predict_x0_from_eps(schedule, x_t, tt, eps_hat)
    return {"x_t": x_t, "eps_hat": eps_hat, "x0_hat": x0_hat,
            "mse_eps": (eps_hat - noise).pow(2).flatten(1).mean(1), "mse_x0": (x0_hat - x0).pow(2).flatten(1).mean(1)}


def _noise_img(e: torch.Tensor) -> torch.Tensor:
    return (e / 3).clamp(-1, 1)  # noise is shown clipped to +-3 and scaled into [-1, 1]


def noise_prediction_figure(model_fn, schedule: Schedule, x0: torch.Tensor, noise: torch.Tensor, t: int):
    """One row per image: x_0, x_t, the true noise, the predicted noise eps_hat, the error eps_hat - eps and
    the implied clean image x0_hat (see :func:`predict_noise`); eps_hat and x0_hat carry their per-image MSE
    in the title.

    Noise panels show [-3, 3] as black..white, the error panel [-1, 1] (three times the contrast); x0_hat is
    clipped to [-1, 1] for display (its MSE is not).
    """
    r = predict_noise(model_fn, schedule, x0, noise, t)
    ab = float(schedule.alpha_bar[int(t)])
    B = x0.shape[0]
    cols = [("clean $x_0$", x0, None), ("input $x_t$", r["x_t"], None),
            (r"true noise $\epsilon$" + "\n(shown on [-3, 3])", _noise_img(noise), None),
            (r"predicted $\hat\epsilon$" + "\n(shown on [-3, 3])", _noise_img(r["eps_hat"]), r["mse_eps"]),
            (r"error $\hat\epsilon - \epsilon$" + "\n(shown on [-1, 1])", r["eps_hat"] - noise, None),
            (r"implied $\hat x_0$", r["x0_hat"], r["mse_x0"])]
    fig = _figure((1.9 * len(cols), 0.5 + 1.75 * B))
    axes = np.atleast_2d(fig.subplots(B, len(cols)))
    for j, (name, imgs, mse) in enumerate(cols):
        for i in range(B):
            ax = axes[i, j]
            ax.imshow(make_grid(imgs[i:i + 1].detach().cpu(), padding=0), cmap="gray", vmin=0, vmax=255,
                      interpolation="nearest")
            ax.set_xticks([])
            ax.set_yticks([])
            title = name if i == 0 else ""
            if mse is not None:
                title += ("\n" if title else "") + f"MSE {float(mse[i]):.3g}"
            ax.set_title(title, fontsize=9)
    fig.suptitle(f"t = {int(t)}, alpha_bar = {ab:.3g}:  mean MSE of eps_hat {float(r['mse_eps'].mean()):.3g}, "
                 f"of x0_hat {float(r['mse_x0'].mean()):.3g}", fontsize=10)
    fig.tight_layout()
    return fig


def noise_prediction_widget(model_fn, schedule: Schedule, x0: torch.Tensor, noise: torch.Tensor,
                            t: int | None = None):
    """``interactive`` with a time-step slider over [0, T) for :func:`noise_prediction_figure`."""
    from ipywidgets import IntSlider, interactive

    _check_pair(x0, noise)
    t = schedule.T // 2 if t is None else _check_t(schedule, t)
    slider = IntSlider(value=t, min=0, max=schedule.T - 1, step=1, description="t", continuous_update=False)
    return interactive(lambda t: noise_prediction_figure(model_fn, schedule, x0, noise, t), t=slider)


# ---------------------------------------------------------------------------------------------
# chapter 03: feature maps at every resolution of the U-Net
# ---------------------------------------------------------------------------------------------

_BLOCK = re.compile(r"^(conv_in|conv_out|mid\.\d+|(down|up)\.\d+\.\d+)$")


@torch.no_grad()
def unet_features(unet: torch.nn.Module, x_t: torch.Tensor, t: torch.Tensor) -> list[dict]:
    """Run ``unet(x_t, t)`` once and keep the output of every block, captured with forward hooks.

    Blocks are conv_in, every layer of the ``down``, ``mid`` and ``up`` lists (ResBlock, attention,
    Down/Upsample; named as in ``viz.shape_trace``, e.g. "down.2.0") and conv_out, in call order. Returns
    [{"name", "type", "out": (B, C, H, W) tensor on the CPU}]. x_t and t are moved to the U-Net's device.
    Hooks are removed afterwards.
    """
    if getattr(getattr(unet, "cfg", None), "context_dim", None):
        raise ValueError("unet_features handles unconditional U-Nets (cfg.context_dim is None)")
    records: list[dict] = []
    handles = []
    try:
        for name, mod in unet.named_modules():
            if _BLOCK.match(name):
                hook = (lambda n: lambda m, i, o: records.append(
                    {"name": n, "type": type(m).__name__, "out": o.detach().cpu()}))(name)
                handles.append(mod.register_forward_hook(hook))
        device = next(unet.parameters()).device
        unet(x_t.to(device), t.to(device))
    finally:
        for h in handles:
            h.remove()
    return records


def default_stages(records: list[dict]) -> list[tuple[str, str]]:
    """The blocks worth showing, as (name, label): for each resolution the last encoder block (no
    Downsample), the end of the middle, and for each resolution the last decoder block (no Upsample)."""
    enc: dict[int, str] = {}
    dec: dict[int, str] = {}
    mid = None
    for r in records:
        part, res = r["name"].split(".")[0], r["out"].shape[-1]
        if part == "down" and r["type"] != "Downsample":
            enc[res] = r["name"]
        elif part == "mid":
            mid = r["name"]
        elif part == "up" and r["type"] != "Upsample":
            dec[res] = r["name"]
    stages = [(n, f"encoder {res}x{res}") for res, n in sorted(enc.items(), reverse=True)]
    stages += [(mid, "middle")] if mid else []
    return stages + [(n, f"decoder {res}x{res}") for res, n in sorted(dec.items())]


def feature_maps_figure(unet: torch.nn.Module, schedule: Schedule, x0: torch.Tensor, noise: torch.Tensor, t: int,
                        n_channels: int = 6, stages: list[tuple[str, str]] | None = None):
    """A digit's trip through the U-Net at step t. Top row: x_0, the input x_t, the output eps_hat and the
    true noise. Then one row per stage (default :func:`default_stages`: down the encoder, the middle, up the
    decoder) with its first ``n_channels`` feature maps, drawn red > 0 > blue on one colour scale per row.

    x0, noise: (1, C, H, W), one image. Returns the Figure.
    """
    _check_pair(x0, noise)
    if x0.shape[0] != 1:
        raise ValueError(f"feature_maps_figure shows one image, got a batch of {x0.shape[0]}")
    t = _check_t(schedule, t)
    tt = torch.full((1,), t, dtype=torch.long, device=x0.device)
    x_t = q_sample(schedule, x0, tt, noise=noise)
    records = unet_features(unet, x_t, tt)
    by_name = {r["name"]: r for r in records}
    stages = default_stages(records) if stages is None else stages
    unknown = [n for n, _ in stages if n not in by_name]
    if unknown:
        raise ValueError(f"unknown blocks {unknown}; known: {list(by_name)}")
    ncol = max(n_channels, 4)
    fig = _figure((1.3 * ncol + 1.4, 0.6 + 1.3 * (len(stages) + 1)))
    axes = np.atleast_2d(fig.subplots(len(stages) + 1, ncol))
    for ax in axes.flat:
        ax.set_xticks([])
        ax.set_yticks([])
        ax.set_frame_on(False)
    top = [("clean $x_0$", x0.cpu()), (f"input $x_t$, t = {t}", x_t.cpu()),
           (r"output $\hat\epsilon$", (by_name["conv_out"]["out"] / 3).clamp(-1, 1)),
           (r"true noise $\epsilon$", (noise.cpu() / 3).clamp(-1, 1))]
    for ax, (title, img) in zip(axes[0], top):
        ax.imshow(make_grid(img, padding=0), cmap="gray", vmin=0, vmax=255, interpolation="nearest")
        ax.set_title(title, fontsize=9)
    for row, (name, label) in enumerate(stages, start=1):
        h = by_name[name]["out"][0]  # (C, H, W)
        shown = h[:n_channels]
        vmax = float(shown.abs().max()) or 1.0
        for k in range(min(n_channels, h.shape[0])):
            ax = axes[row, k]
            ax.imshow(shown[k].numpy(), cmap="RdBu_r", vmin=-vmax, vmax=vmax, interpolation="nearest")
            ax.set_frame_on(True)
            ax.set_title(f"ch {k}", fontsize=9, pad=2)
        axes[row, 0].set_ylabel(f"{label}\n{name} ({by_name[name]['type']})\n{h.shape[0]} ch, |h| <= {vmax:.2g}",
                                fontsize=8, rotation=0, ha="right", va="center")
    fig.suptitle(f"Inside the U-Net at t = {t} (alpha_bar = {float(schedule.alpha_bar[t]):.3g}); "
                 "noise panels show [-3, 3], feature maps red > 0 > blue", fontsize=10)
    fig.tight_layout()
    return fig


def feature_maps_widget(unet: torch.nn.Module, schedule: Schedule, digits: torch.Tensor, noise: torch.Tensor,
                        t: int = 500, index: int = 0, labels=None, n_channels: int = 6):
    """``interactive`` with a digit drop-down (``digits`` (N, C, H, W), ``labels`` optional names) and a
    time-step slider for :func:`feature_maps_figure`."""
    from ipywidgets import Dropdown, IntSlider, interactive

    _check_pair(digits, noise)
    t = _check_t(schedule, t)
    names = [f"digit {int(v)}" for v in labels] if labels is not None else [f"image {i}" for i in range(len(digits))]
    if len(names) != len(digits):
        raise ValueError(f"got {len(names)} labels for {len(digits)} digits")
    drop = Dropdown(options=list(zip(names, range(len(digits)))), value=index, description="digit")
    slider = IntSlider(value=t, min=0, max=schedule.T - 1, step=1, description="t", continuous_update=False)
    return interactive(lambda index, t: feature_maps_figure(unet, schedule, digits[index:index + 1],
                                                            noise[index:index + 1], t, n_channels),
                       index=drop, t=slider)


# ---------------------------------------------------------------------------------------------
# chapter 05: one step of a recorded sampling run
# ---------------------------------------------------------------------------------------------


def trajectory_distances(records: list[dict], n_images: int | None = None) -> dict[str, np.ndarray]:
    """Root-mean-square distance of x_t and of x0_hat to the final sample, after each step of a run recorded
    by ``trajectory_viz.TrajectoryRecorder``. Returns {"x_t": (S,), "x0_hat": (S,)} for S steps."""
    if not records:
        raise ValueError("no records: pass TrajectoryRecorder().records after a sampling run")
    final = records[-1]["x_t"][:n_images]
    rms = lambda key: np.array([float((r[key][:n_images] - final).pow(2).mean().sqrt()) for r in records])
    return {"x_t": rms("x_t"), "x0_hat": rms("x0_hat")}


def trajectory_step_figure(records: list[dict], step: int, n_images: int = 4, nrow: int | None = None):
    """Step ``step`` (1 = first, len(records) = last) of a recorded sampling run: the state x_t after the
    step, the network's prediction x0_hat at that step, and both their RMS distances to the final sample over
    the whole run, with a marker at this step. Returns the Figure."""
    if not records:
        raise ValueError("no records: pass TrajectoryRecorder().records after a sampling run")
    S = len(records)
    if not 1 <= int(step) <= S:
        raise ValueError(f"step must be in [1, {S}], got {step}")
    step = int(step)
    rec = records[step - 1]
    dist = trajectory_distances(records, n_images)
    fig = _figure((12, 3.6))
    gs = fig.add_gridspec(1, 3, width_ratios=(1, 1, 1.5), wspace=0.25, top=0.82, bottom=0.16)
    for j, (key, title) in enumerate((("x_t", "state $x_t$ after the step"),
                                      ("x0_hat", r"prediction $\hat x_0$ at this step"))):
        ax = fig.add_subplot(gs[0, j])
        ax.imshow(make_grid(rec[key][:n_images], nrow), cmap="gray", vmin=0, vmax=255, interpolation="nearest")
        ax.set_axis_off()
        ax.set_title(title, fontsize=10)
    ax = fig.add_subplot(gs[0, 2])
    steps = np.arange(1, S + 1)
    ax.plot(steps, dist["x_t"], label="$x_t$")
    ax.plot(steps, dist["x0_hat"], label=r"$\hat x_0$")
    ax.axvline(step, color="k", ls=":", lw=1)
    ax.plot([step, step], [dist["x_t"][step - 1], dist["x0_hat"][step - 1]], "ko", ms=4)
    ax.set(xlabel="sampling step", ylabel="RMS distance to final sample", xlim=(0, S + 1), ylim=(0, None),
           title="how far from the end result?")
    ax.legend(fontsize=8)
    ax.grid(alpha=0.3)
    after = f"t = {records[step]['t']}" if step < S else "the final image"
    fig.suptitle(f"step {step}/{S}: the network looks at t = {rec['t']}, the state moves on to {after}")
    return fig


def trajectory_widget(records: list[dict], step: int | None = None, n_images: int = 4, nrow: int | None = None):
    """``interactive`` with a step slider over [1, len(records)] for :func:`trajectory_step_figure`."""
    from ipywidgets import IntSlider, interactive

    if not records:
        raise ValueError("no records: pass TrajectoryRecorder().records after a sampling run")
    S = len(records)
    step = (S + 1) // 2 if step is None else int(step)
    if not 1 <= step <= S:
        raise ValueError(f"step must be in [1, {S}], got {step}")
    slider = IntSlider(value=step, min=1, max=S, step=1, description="step", continuous_update=False)
    return interactive(lambda step: trajectory_step_figure(records, step, n_images, nrow), step=slider)
