"""Guidance interval sweep: the same guidance scale applied only inside a window of timesteps.

    python -m benchmarks.guidance_interval --threads 1
    python -m benchmarks.guidance_interval --text runs/t2i --n 500 --intervals all 0-800 200-700

Classifier-free guidance at the noisiest steps decides every sample's class and layout early and the
same way, which costs variety; at the least noisy steps it does little (Kynkaanniemi et al. 2024,
"Applying guidance in a limited interval improves sample and distribution quality"). For each interval
(t_lo, t_hi) this runs the issue-3 protocol (evaluation.guidance_sweep at one scale, DDIM 50, the same
noise, prompts and reference draw for every row) with s applied for t_lo <= t <= t_hi and s = 1 (the
purely conditional model) elsewhere; "all" is plain guidance, and a row at s = 1 is the conditional model
on its own. A row name may end in "+cads=NOISE" (e.g. "all+cads=0.5"): the same, with condition-annealed
sampling (guidance.CADS, Sadat et al. 2024) noising the prompt early in the chain. Writes
results/guidance_interval.json.
"""

from __future__ import annotations

import argparse

from . import common

NAME = "guidance_interval"
DEFAULT_INTERVALS = ["all", "0-800", "0-700", "200-700", "0-600", "0-400"]


def parse_interval(text: str) -> tuple[int, int] | None:
    """'all' -> None (guidance at every step); 'LO-HI' -> (LO, HI) with 0 <= LO <= HI."""
    if text == "all":
        return None
    try:
        lo, hi = (int(v) for v in text.split("-"))
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"an interval is 'all' or LO-HI timesteps such as 200-700, got {text!r}") from None
    if not 0 <= lo <= hi:
        raise argparse.ArgumentTypeError(f"an interval needs 0 <= LO <= HI, got {text!r}")
    return lo, hi


def parse_row(text: str) -> tuple[tuple[int, int] | None, float | None]:
    """'200-700' -> ((200, 700), None); 'all+cads=0.5' -> (None, 0.5): an interval and a CADS noise scale."""
    interval, _, extra = text.partition("+")
    if not extra:
        return parse_interval(interval), None
    key, _, value = extra.partition("=")
    try:
        noise = float(value)
    except ValueError:
        noise = -1.0
    if key != "cads" or noise < 0:
        raise argparse.ArgumentTypeError(f"a row is an interval with an optional '+cads=NOISE' (NOISE >= 0), "
                                         f"got {text!r}")
    return parse_interval(interval), noise


def _interval_arg(text: str) -> str:
    parse_row(text)  # argparse turns its ArgumentTypeError into a usage error
    return text


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog=f"python -m benchmarks.{NAME}", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    common.add_common_args(p)
    p.add_argument("--text", default="mnist-text2img", help="text-to-image checkpoint (name or path)")
    p.add_argument("--guidance", type=float, default=3.0, help="the scale s inside the interval")
    p.add_argument("--intervals", nargs="+", type=_interval_arg, default=None,
                   help=f"'all' or LO-HI, optionally +cads=NOISE (default {' '.join(DEFAULT_INTERVALS)})")
    p.add_argument("--n", type=int, default=None, help="samples per row (default 1000, quick 20)")
    p.add_argument("--steps", type=int, default=None, help="DDIM steps (default 50, quick 2)")
    p.add_argument("--batch-size", type=int, default=250)
    p.add_argument("--seed", type=int, default=0)
    return p


def run(args) -> dict:
    from diffusion_lite.checkpoints import load
    from diffusion_lite.evaluation import guidance_sweep
    from diffusion_lite.guidance import CADS
    from diffusion_lite.metrics import load_eval_classifier

    names = args.intervals or DEFAULT_INTERVALS
    intervals = [parse_row(v) for v in names]
    rt = common.runtime_from_args(args)
    path = common.out_dir(args) / f"{common.result_name(NAME, args)}.json"
    if rt is None:
        return common.no_gpu_result(NAME, args, path)
    q = args.quick
    s = {"checkpoint": args.text, "guidance": args.guidance, "intervals": names, "n": args.n or (20 if q else 1000),
         "steps": args.steps or (2 if q else 50), "sampler": "ddim", "seed": args.seed, "batch_size": args.batch_size}
    result = common.header(NAME, rt, args, s)
    pipe = load(args.text, rt.device)
    kw = dict(n=s["n"], steps=s["steps"], sampler="ddim", seed=s["seed"], batch_size=s["batch_size"],
              classifier=load_eval_classifier(rt.device), progress=not q)
    rows = [{"interval": "conditional only (s = 1)", **guidance_sweep(pipe, [1.0], **kw)[0]}]
    for name, (iv, noise) in zip(names, intervals):
        print(f"[{NAME}] s = {args.guidance:g} for t in {name}, n {s['n']}", flush=True)
        cads = CADS(noise_scale=noise) if noise is not None else None
        rows.append({"interval": name, "cads": None if cads is None else vars(cads),
                     **guidance_sweep(pipe, [args.guidance], guidance_interval=iv, cads=cads, **kw)[0]})
        r = rows[-1]
        print(f"  accuracy {r['accuracy']:.3f}, FID {r['fid']:.3f} (ratio {r['fid_ratio']:.2f}), "
              f"diversity/real {r['diversity_ratio']:.2f}", flush=True)
    result["rows"] = rows
    return common.finish(path, result)


def render(r: dict | None) -> str:
    """The BENCHMARKS.md table for a result of this benchmark."""
    if r is None:
        return common.not_run(NAME)
    s = r["settings"]
    out = [f"Command: `{r['command']}`  \n`{s['checkpoint']}`, n = {s['n']:,} per row, DDIM {s['steps']} steps, "
           f"s = {s['guidance']:g} inside the interval and 1 outside it; the same noise, prompts and reference for "
           f"every row; real-vs-real floor {r['rows'][0]['fid_floor']:.3f}.\n",
           "| guided timesteps | accuracy | FID | FID / floor | diversity / real |", "|---|---:|---:|---:|---:|"]
    for row in r["rows"]:
        iv, _, extra = row["interval"].partition("+")
        iv = "all (plain guidance)" if iv == "all" else iv
        if extra:
            c = row["cads"]
            iv += f", CADS noise {c['noise_scale']:g} over t/(T-1) {c['tau1']:g}-{c['tau2']:g}"
        out.append(f"| {iv} | {row['accuracy']:.3f} | {row['fid']:.3f} | {row['fid_ratio']:.2f} | "
                   f"{row['diversity_ratio']:.2f} |")
    return "\n".join(out) + "\n"


def main(argv: list[str] | None = None) -> dict:
    return run(common.parse(build_parser(), argv))


if __name__ == "__main__":
    main()
