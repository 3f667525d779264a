"""Is the Fashion-MNIST evaluator sound, and where does a first model stand on it?

    python -m benchmarks.fashion_evaluator --threads 1        # about 10 min on one CPU thread
    python -m benchmarks.fashion_evaluator --quick            # seconds, numbers meaningless

Part 1 scores, as if they were samples, 1,000 Fashion-MNIST *training* images (100 per class: a "copier")
with the evaluation protocol (evaluation.score_samples against the class-balanced draw of the test split,
fashion-mnist-classifier's features), then the same images with Gaussian noise (sd 0.2) and with a 3x3
blur: a sound evaluator puts the copier at about the floor and the damaged sets far above it. Part 2 trains
the `tiny` U-Net unconditionally with the CLI (`diffusion-lite train --dataset fashion-mnist --model tiny`)
and scores it as `diffusion-lite evaluate` does. Writes results/fashion_evaluator.json.
"""

from __future__ import annotations

import argparse
import shlex
import subprocess
import sys
import tempfile
import time

from . import common

NAME = "fashion_evaluator"
KEYS = ("fid", "fid_floor", "fid_ratio", "accuracy", "diversity_ratio")


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog=f"python -m benchmarks.{NAME}", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    common.add_common_args(p)
    p.add_argument("--n", type=int, default=None, help="images per set (default 1000, quick 20)")
    p.add_argument("--train-steps", type=int, default=None, help="steps of the tiny model (default 1500, quick 2)")
    p.add_argument("--seed", type=int, default=7)
    return p


def copier_rows(n: int, seed: int) -> dict[str, dict]:
    import torch
    import torch.nn.functional as F

    from diffusion_lite import evaluation as ev
    from diffusion_lite import metrics
    from diffusion_lite.data import load_dataset

    classifier = metrics.load_eval_classifier("cpu", "fashion-mnist")
    train = load_dataset("fashion-mnist", "train")
    labels = ev.balanced_labels(n)  # 0, 1, ..., 9, 0, 1, ...: the protocol's order of prompts
    ref = ev.prepare_reference(classifier, "fashion-mnist-test", n, labels, seed=0)
    g = torch.Generator().manual_seed(seed)
    copier = torch.empty(n, 1, 28, 28)
    for c in range(ev.NUM_CLASSES):  # the training images of class c go where the protocol asks for class c
        pool = torch.nonzero(train.labels == c).flatten()
        copier[labels == c] = train.images[pool[torch.randperm(pool.numel(), generator=g)[: int((labels == c).sum())]]]
    sets = {"copied training images": copier,
            "copier + noise sd 0.2": (copier + 0.2 * torch.randn(copier.shape, generator=g)).clamp(-1, 1),
            "copier blurred 3x3": F.avg_pool2d(copier, 3, 1, 1)}
    rows = {}
    for name, x in sets.items():
        report = ev.score_samples(classifier, x, ref, labels, seed=0)
        rows[name] = {k: report[k] for k in KEYS}
    return rows


def run(args) -> dict:
    import torch

    from diffusion_lite.checkpoints import load
    from diffusion_lite.evaluation import evaluate_pipeline

    if args.threads:
        torch.set_num_threads(args.threads)
    n = args.n or (20 if args.quick else 1000)
    steps = args.train_steps or (2 if args.quick else 1500)
    path = common.out_dir(args) / f"{NAME}.json"
    eval_steps = 2 if args.quick else 50
    settings = {"n": n, "train_steps": steps, "eval_steps": eval_steps, "seed": args.seed}
    result = common.header(NAME, None, args, settings)
    t0 = time.perf_counter()
    result["copier"] = copier_rows(n, args.seed)
    result["copier_seconds"] = round(time.perf_counter() - t0, 1)
    with tempfile.TemporaryDirectory() as tmp:
        train = ["diffusion-lite", "train", "--dataset", "fashion-mnist", "--model", "tiny", "--steps", str(steps),
                 "--batch-size", "64", "--threads", str(args.threads or 1), "--quiet", "--out", f"{tmp}/run"]
        t0 = time.perf_counter()
        subprocess.run([sys.executable, "-m", "diffusion_lite", *train[1:]], check=True)
        result["model"] = {"command": shlex.join(train).replace(tmp, "runs"),
                           "train_seconds": round(time.perf_counter() - t0, 1)}
        report = evaluate_pipeline(load(f"{tmp}/run"), n=n, steps=eval_steps)
    result["model"].update({k: report[k] for k in KEYS if report.get(k) is not None},
                           evaluate=f"diffusion-lite evaluate --checkpoint runs/run --n {n} --steps {eval_steps}")
    return common.finish(path, result)


def render(r: dict | None) -> str:
    """The BENCHMARKS.md section for a result of this benchmark."""
    if r is None:
        return common.not_run(NAME)
    n, m = r["settings"]["n"], r["model"]
    out = [f"Command: `{r['command']}`  \n{n:,} images per set, class-balanced, against the protocol's draw of the "
           f"Fashion-MNIST test split in `fashion-mnist-classifier`'s features (91.3% test accuracy; its card).\n",
           "| images scored | FID | floor | FID / floor | accuracy | diversity / real |",
           "|---|---:|---:|---:|---:|---:|"]
    for name, row in r["copier"].items():
        out.append(f"| {name} | {row['fid']:.3f} | {row['fid_floor']:.3f} | {row['fid_ratio']:.2f} | "
                   f"{row['accuracy']:.3f} | {row['diversity_ratio']:.2f} |")
    s = r["settings"]
    out.append(f"| samples of the `tiny` U-Net after {s['train_steps']:,} steps ({m['train_seconds'] / 60:.1f} min), "
               f"unconditional, DDIM {s['eval_steps']} | {m['fid']:.3f} | {m['fid_floor']:.3f} | "
               f"{m['fid_ratio']:.2f} | - | {m['diversity_ratio']:.2f} |")
    out.append(f"\nThe model: `{m['command']}`, then `{m['evaluate']}` (an unconditional model's floor uses random, "
               "not class-balanced, draws).\n")
    return "\n".join(out)


def render_shipped(reports: dict[str, dict]) -> str:
    """Rows for the shipped fashion-text2img from its `diffusion-lite evaluate` reports (results/eval_fashion-*)."""
    if not reports:
        return "*Not run yet.* Command: `diffusion-lite evaluate --checkpoint fashion-text2img --n 1000 --out r.json`\n"
    out = ["| `diffusion-lite evaluate --checkpoint fashion-text2img --n 1000 --steps 50` with | conditional "
           "accuracy | FID | floor | FID / floor | diversity / real |", "|---|---:|---:|---:|---:|---:|"]
    for r in sorted(reports.values(), key=lambda r: (r["settings"]["guidance_interval"] is not None,
                                                    r["settings"]["guidance"])):
        s = r["settings"]
        opts = f"--guidance {s['guidance']:g}" + (
            f" --guidance-interval {s['guidance_interval'][0]} {s['guidance_interval'][1]}"
            if s["guidance_interval"] else "")
        out.append(f"| `{opts}` | {r['accuracy']:.1%} | {r['fid']:.3f} | {r['fid_floor']:.3f} | "
                   f"{r['fid_ratio']:.2f} | {r['diversity_ratio']:.2f} |")
    for r in reports.values():  # `--attributes N`: paired "a dark coat" / "a light coat" samples from the same noise
        a = r.get("attribute_adherence")
        if not a:
            continue
        s = a["settings"]
        out += ["", f"Attribute adherence (`--attributes {s['n_per_digit']}`: {s['n_per_digit']} pairs per garment "
                f"and attribute, guidance {s['guidance']:g}, each pair from the same noise; 0.5 = the word is "
                "ignored, 1 = always obeyed):", "",
                "| attribute | prompts (e.g.) | adherence | mean low | mean high | garment accuracy |",
                "|---|---|---:|---:|---:|---:|"]
        for name, x in a["attributes"].items():
            out.append(f"| {name} | {x['example_prompts'][0]!r} / {x['example_prompts'][1]!r} | "
                       f"{x['adherence']:.3f} | {x['mean_low']:.3f} | {x['mean_high']:.3f} | {x['accuracy']:.3f} |")
        note = common.recognised_note(a["attributes"]).strip()
        out += ["", note] if note else []  # a paragraph after the table, not a row of it
    return "\n".join(out) + "\n"


def main(argv: list[str] | None = None) -> dict:
    return run(common.parse(build_parser(), argv))


if __name__ == "__main__":
    main()
