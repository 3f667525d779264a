"""Classifier-free guidance with exact denoisers: how far can guidance at s = 3 get on MNIST at all?

    python -m benchmarks.cfg_oracle --threads 1
    python -m benchmarks.cfg_oracle --rows 1 3 3@200-700 --n 1000

A network trained to convergence on the MNIST training set approaches the exact posterior mean of that
set: for the empirical distribution p(x_0) = 1/N sum_i delta(x_0 - x_i) and q(x_t | x_0) = N(sqrt(alpha_bar_t)
x_0, (1 - alpha_bar_t) I) (DDPM eq. 4),

    E[x_0 | x_t]    = sum_i w_i x_i,   w = softmax_i( -||x_t - sqrt(alpha_bar_t) x_i||^2 / (2 (1 - alpha_bar_t)) )
    E[x_0 | x_t, c] = the same softmax over the training images of class c only
    eps_hat = (x_t - sqrt(alpha_bar_t) E[x_0 | ...]) / sqrt(1 - alpha_bar_t)                (DDPM eq. 9, inverted)

(Karras et al. 2022, EDM: the ideal denoiser of a finite training set). Guiding these two with
eps = eps_uncond + s (eps_cond - eps_uncond) and sampling with DDIM 50 as the shipped model is sampled gives
what classifier-free guidance itself does to the issue-3 metrics, with no training error at all. The ideal
denoiser memorises (at s = 1 every sample is a training image), so its s = 1 row is "training images
scored against test images", not the floor; what matters is how each guided row compares with it and with
the trained model. Each row: accuracy, FID / floor, diversity / real, and how many distinct training images
the samples are (nearest neighbour). Same noise, labels (100 per digit), reference and floor as
`diffusion-lite evaluate --n 1000` with seed 0. Writes results/cfg_oracle.json.
"""

from __future__ import annotations

import argparse
import time

import torch

from . import common
from .guidance_interval import parse_interval

NAME = "cfg_oracle"
DEFAULT_ROWS = ["1", "2", "3", "3@200-700"]


class EmpiricalDenoiser:
    """Exact E[x_0 | x_t] and E[x_0 | x_t, c] for a finite image set (module docstring).

    images (N, C, H, W) in [-1, 1], labels (N,) long; alpha_bar (T,) from a Schedule. Distances are computed
    in float64 (at small t, 1 - alpha_bar is ~1e-4 and float32 round-off would reorder near neighbours).
    """

    def __init__(self, images: torch.Tensor, labels: torch.Tensor, alpha_bar: torch.Tensor):
        self.X = images.flatten(1).double()  # (N, D)
        self.X_sq = (self.X * self.X).sum(1)  # (N,)
        self.labels = labels
        self.alpha_bar = alpha_bar.double()

    def x0(self, x_t: torch.Tensor, t: int, labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """x_t (B, C, H, W) at one timestep t, labels (B,) -> (E[x_0 | x_t, c], E[x_0 | x_t]), each (B, D) float64."""
        a = self.alpha_bar[t]
        x = x_t.flatten(1).double()  # (B, D)
        d2 = (x * x).sum(1, keepdim=True) - 2 * a.sqrt() * (x @ self.X.T) + a * self.X_sq[None]  # (B, N)
        logits = -d2 / (2 * (1 - a))
        x0_u = torch.softmax(logits, 1) @ self.X  # (B, D)
        x0_c = torch.empty_like(x0_u)
        for c in labels.unique().tolist():
            rows, cols = labels == c, self.labels == c
            x0_c[rows] = torch.softmax(logits[rows][:, cols], 1) @ self.X[cols]
        return x0_c, x0_u

    def guided_eps_fn(self, labels: torch.Tensor, scale: float, interval: tuple[int, int] | None = None):
        """model_fn(x_t, t) -> eps (B, C, H, W): guidance eq. (guidance.classifier_free_guidance) on the exact
        denoisers; s = 1 outside ``interval`` (t_lo, t_hi). t must hold one timestep for the whole batch."""

        def model_fn(x_t: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
            step = int(t[0])
            if not bool((t == step).all()):
                raise ValueError("the empirical denoiser needs one timestep per batch")
            x0_c, x0_u = self.x0(x_t, step, labels)
            a = self.alpha_bar[step]
            x = x_t.flatten(1).double()
            eps_c, eps_u = ((x - a.sqrt() * x0) / (1 - a).sqrt() for x0 in (x0_c, x0_u))
            s = scale if interval is None or interval[0] <= step <= interval[1] else 1.0
            return (eps_u + s * (eps_c - eps_u)).to(x_t.dtype).view_as(x_t)

        return model_fn

    def nearest(self, samples: torch.Tensor) -> torch.Tensor:
        """(B, C, H, W) -> (B,) index of the nearest image of the set (Euclidean)."""
        x = samples.flatten(1).double()
        return ((x * x).sum(1, keepdim=True) - 2 * x @ self.X.T + self.X_sq[None]).argmin(1)


def parse_row(text: str) -> tuple[float, tuple[int, int] | None]:
    """'3' -> (3.0, None): s = 3 at every step; '3@200-700' -> (3.0, (200, 700))."""
    scale, _, iv = text.partition("@")
    try:
        s = float(scale)
    except ValueError:
        raise argparse.ArgumentTypeError(f"a row is a scale S or S@LO-HI, such as 3 or 3@200-700, got {text!r}") \
            from None
    return s, parse_interval(iv) if iv else None


def _row_arg(text: str) -> str:
    parse_row(text)
    return text


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog=f"python -m benchmarks.{NAME}", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    common.add_common_args(p)
    p.add_argument("--rows", nargs="+", type=_row_arg, default=None,
                   help=f"guidance scale S or S@LO-HI per row (default {' '.join(DEFAULT_ROWS)})")
    p.add_argument("--n", type=int, default=None, help="samples per row (default 1000, quick 20)")
    p.add_argument("--steps", type=int, default=None, help="DDIM steps (default 50, quick 2)")
    p.add_argument("--train-subset", type=int, default=None,
                   help="use the first K training images (default all 60,000; quick 500)")
    p.add_argument("--batch-size", type=int, default=250)
    p.add_argument("--seed", type=int, default=0)
    return p


def run(args) -> dict:
    from diffusion_lite import evaluation as ev
    from diffusion_lite.config import ScheduleConfig
    from diffusion_lite.data import load_dataset
    from diffusion_lite.metrics import load_eval_classifier
    from diffusion_lite.sampling import sample_ddim
    from diffusion_lite.schedules import Schedule

    names = args.rows or DEFAULT_ROWS
    rt = common.runtime_from_args(args)
    path = common.out_dir(args) / f"{common.result_name(NAME, args)}.json"
    if rt is None:
        return common.no_gpu_result(NAME, args, path)
    q = args.quick
    schedule = Schedule.from_config(ScheduleConfig(kind="cosine", T=1000))  # the shipped text model's schedule
    s = {"rows": names, "n": args.n or (20 if q else 1000), "steps": args.steps or (2 if q else 50),
         "sampler": "ddim", "schedule": "cosine, T = 1000", "seed": args.seed, "batch_size": args.batch_size,
         "train_subset": args.train_subset or (500 if q else None), "reference": "mnist-test"}
    result = common.header(NAME, rt, args, s)
    train = load_dataset("mnist", "train", subset=s["train_subset"])
    dev = rt.torch_device  # the exact denoisers run where the benchmark runs (float64: cpu or cuda)
    oracle = EmpiricalDenoiser(train.images.to(dev), train.labels.to(dev), schedule.alpha_bar.to(dev))
    classifier = load_eval_classifier()
    labels = ev.balanced_labels(s["n"])
    ref = ev.prepare_reference(classifier, "mnist-test", s["n"], labels, s["seed"])
    x_T = torch.randn((s["n"], 1, 28, 28), generator=torch.Generator().manual_seed(s["seed"]))  # as evaluate
    rows = []
    for name in names:
        scale, interval = parse_row(name)
        print(f"[{NAME}] exact denoisers, s = {scale:g}" + (f" for t in {interval}" if interval else "")
              + f", n {s['n']}, {oracle.X.shape[0]} training images", flush=True)
        t0, out = time.perf_counter(), []
        for i, start in enumerate(range(0, s["n"], s["batch_size"])):
            stop = start + s["batch_size"]
            out.append(sample_ddim(oracle.guided_eps_fn(labels[start:stop].to(dev), scale, interval), schedule,
                                   x_T=x_T[start:stop].to(dev), steps=s["steps"], progress=False,
                                   generator=torch.Generator().manual_seed(s["seed"] + 1 + i)).cpu())
        samples = torch.cat(out).clamp(-1, 1)  # (n, 1, 28, 28) on the CPU, where the classifier is
        r = ev.score_samples(classifier, samples, ref, labels, seed=s["seed"])
        r.update(row=name, guidance=scale, interval=list(interval) if interval else None,
                 distinct_train_images=int(oracle.nearest(samples.to(dev)).unique().numel()),
                 sample_seconds=round(time.perf_counter() - t0, 1))
        rows.append(r)
        print(f"  accuracy {r['accuracy']:.3f}, FID {r['fid']:.3f} (ratio {r['fid_ratio']:.2f}), diversity/real "
              f"{r['diversity_ratio']:.2f}, {r['distinct_train_images']} distinct training images", flush=True)
    result["rows"] = rows
    return common.finish(path, result)


def render(r: dict | None) -> str:
    """The BENCHMARKS.md table for a result of this benchmark."""
    if r is None:
        return common.not_run(NAME)
    s = r["settings"]
    out = [f"Command: `{r['command']}`  \nExact denoisers of the {s['train_subset'] or 60000:,} MNIST training images, "
           f"n = {s['n']:,} per row, DDIM {s['steps']} steps ({s['schedule']}), the same noise, labels and reference "
           f"as the issue-3 evaluation; real-vs-real floor {r['rows'][0]['fid_floor']:.3f}.\n",
           "| guidance | accuracy | FID | FID / floor | diversity / real | distinct training images |",
           "|---|---:|---:|---:|---:|---:|"]
    for row in r["rows"]:
        iv = row["interval"]
        label = f"s = {row['guidance']:g}" + (f" for {iv[0]} <= t <= {iv[1]}" if iv else "")
        out.append(f"| {label} | {row['accuracy']:.3f} | {row['fid']:.3f} | {row['fid_ratio']:.2f} | "
                   f"{row['diversity_ratio']:.2f} | {row['distinct_train_images']:,} |")
    return "\n".join(out) + "\n"


def main(argv: list[str] | None = None) -> dict:
    return run(common.parse(build_parser(), argv))


if __name__ == "__main__":
    main()
