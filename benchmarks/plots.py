"""PNG plots from the results JSON files (matplotlib, Agg backend).

    python -m benchmarks.plots            # redraw every plot from benchmarks/results/*.json
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from diffusion_lite.viz import plain_log_ticks  # noqa: E402

from .common import RESULTS_DIR  # noqa: E402

SIDES = {"diffusion_lite": "tab:blue", "diffusers": "tab:orange"}


def _save(fig, path: Path) -> Path:
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    print(f"wrote {path}")
    return path


def plot_train_throughput(result: dict, path: Path) -> Path:
    """Left: training images/s per side (median, min-max bar); right: ratios ours/diffusers."""
    kinds = list(result["kinds"])
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(10, 3.8))
    w = 0.38
    for j, (side, color) in enumerate(SIDES.items()):
        med = [result["kinds"][k][side]["images_per_s"]["median"] for k in kinds]
        lo = [m - result["kinds"][k][side]["images_per_s"]["min"] for k, m in zip(kinds, med)]
        hi = [result["kinds"][k][side]["images_per_s"]["max"] - m for k, m in zip(kinds, med)]
        ax1.bar([i + (j - 0.5) * w for i in range(len(kinds))], med, w, yerr=[lo, hi], color=color, label=side,
                capsize=3)
    ax1.set_xticks(range(len(kinds)), kinds)
    ax1.set_ylabel("training images/s")
    ax1.set_title(f"training throughput, batch {result['settings']['batch_size']}")
    ax1.legend()
    labels = ["images/s", "per parameter", "GFLOP/s achieved"]
    keys = [lambda r: r["ratio_images_per_s"]["median"], lambda r: r["ratio_per_parameter"],
            lambda r: r["ratio_achieved_gflops"]]
    w2 = 0.8 / len(labels)
    for j, (lab, key) in enumerate(zip(labels, keys)):
        vals = [key(result["kinds"][k]) for k in kinds]
        err = None
        if j == 0:  # the spread of the per-repetition ratios
            rs = [result["kinds"][k]["ratio_images_per_s"] for k in kinds]
            err = [[v - r["low"] for v, r in zip(vals, rs)], [r["high"] - v for v, r in zip(vals, rs)]]
        ax2.bar([i + (j - 1) * w2 for i in range(len(kinds))], vals, w2, label=lab, yerr=err, capsize=3,
                hatch=("", "//", "..")[j], edgecolor="white")  # hatches: the bars differ by more than colour
    ax2.axhline(1.0, color="k", lw=0.8, ls="--")
    ax2.set_xticks(range(len(kinds)), kinds)
    ax2.set_ylabel("diffusion_lite / diffusers")
    ax2.set_title("ratios (> 1: diffusion_lite ahead)")
    ax2.legend(fontsize=8)
    return _save(fig, path)


def _plain_log_ticks(axis) -> None:
    """Ticks at 1, 1.5, 2, 3, 5, 10, 15, ... written as plain numbers on a log axis (not 2x10^0)."""
    plain_log_ticks(axis, subs=(1.0, 1.5, 2.0, 3.0, 5.0))


def plot_sampling_quality(result: dict, path: Path) -> Path:
    """FID/floor and accuracy versus sampler steps, per model and sampler."""
    models = [m for m, r in result["models"].items() if r.get("sweep")]
    fig, axes = plt.subplots(1, 2, figsize=(10, 3.8))
    styles = {"ddpm": ("-", "o"), "ddim": ("--", "s"), "dpm++2m": (":", "^")}  # the sampler: line style and marker
    for i, m in enumerate(models):  # the model: one colour
        for sampler, (ls, marker) in styles.items():
            rows = [r for r in result["models"][m]["sweep"] if r["sampler"] == sampler]
            if not rows:
                continue
            x = [r["steps"] for r in rows]
            kw = dict(ls=ls, marker=marker, color=f"C{i}", label=f"{m} {sampler}")
            axes[0].plot(x, [r["fid_ratio"] for r in rows], **kw)
            if rows[0]["accuracy"] is not None:
                axes[1].plot(x, [r["accuracy"] for r in rows], **kw)
    axes[0].set_ylabel("FID / real-vs-real floor")
    axes[0].set_yscale("log")
    _plain_log_ticks(axes[0].yaxis)
    axes[1].set_ylabel("conditional accuracy")
    for ax in axes:
        ax.set_xscale("log")
        ax.set_xlabel("sampler steps")
        ax.xaxis.set_major_formatter(plt.FuncFormatter(lambda v, _: f"{v:g}"))  # 10, not 10^1
        if ax.lines:
            ax.legend(fontsize=8)
    if not axes[1].lines:
        axes[1].text(0.5, 0.5, "no text model in this run", ha="center", transform=axes[1].transAxes)
    axes[0].set_title("quality versus steps (1 = as close as real data)")
    axes[1].set_title("text model: samples showing the asked digit")
    return _save(fig, path)


def plot_guidance(result: dict, path: Path) -> Path:
    """Accuracy, FID/floor and diversity versus the guidance scale s."""
    rows = result["sweep"]
    s = [r["guidance"] for r in rows]
    fig, axes = plt.subplots(1, 3, figsize=(12, 3.5))
    axes[0].plot(s, [r["accuracy"] for r in rows], marker="o")
    axes[0].set_ylabel("conditional accuracy")
    axes[1].plot(s, [r["fid_ratio"] for r in rows], marker="o", color="tab:red")
    axes[1].set_ylabel("FID / floor")
    axes[2].plot(s, [r["diversity_ratio"] for r in rows], marker="o", color="tab:green")
    axes[2].set_ylabel("diversity / real diversity")
    for ax in axes:
        ax.set_xlabel("guidance scale s")
    fig.suptitle(f"classifier-free guidance sweep (n={rows[0]['n']}, {rows[0]['sampler']} {rows[0]['steps']} steps)")
    return _save(fig, path)


def plot_time_to_quality(result: dict, path: Path) -> Path:
    """FID/floor of EMA samples versus training wall time, both implementations."""
    fig, ax = plt.subplots(figsize=(6.5, 4))
    for side, color in SIDES.items():
        ev = result["sides"][side]["evals"]
        ax.plot([e["train_seconds"] / 60 for e in ev], [e["fid_ratio"] for e in ev], marker="o", color=color,
                label=side)
    for target in result["settings"]["targets"]:
        ax.axhline(target, color="gray", lw=0.6, ls=":")
    ax.set_yscale("log")
    _plain_log_ticks(ax.yaxis)
    ax.set_xlabel("training wall time (min, evaluation excluded)")
    ax.set_ylabel(f"FID / floor (n={result['settings']['n_eval']})")
    ax.set_title("time to quality, same data, recipe and budget")
    ax.legend()
    return _save(fig, path)


PLOTTERS = {"train_throughput": plot_train_throughput, "sampling_quality": plot_sampling_quality,
            "guidance_sweep": plot_guidance, "time_to_quality": plot_time_to_quality}


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(prog="python -m benchmarks.plots", description="redraw the PNGs from the JSON results")
    p.add_argument("--results", type=Path, default=RESULTS_DIR)
    args = p.parse_args(argv)
    for name, fn in PLOTTERS.items():
        f = args.results / f"{name}.json"
        if f.exists():
            data = json.loads(f.read_text(encoding="utf-8"))
            if data.get("gpu") is None or "kinds" in data or "models" in data or "sweep" in data or "sides" in data:
                fn(data, f.with_suffix(".png"))


if __name__ == "__main__":
    main()
