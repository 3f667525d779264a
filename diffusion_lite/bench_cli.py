"""``diffusion-lite bench``: run the benchmark suite of the repository's benchmarks/ folder.

    diffusion-lite bench --quick                 # seconds: every benchmark in a tiny configuration
    diffusion-lite bench --threads 2             # the full CPU suite, results in benchmarks/results/
    diffusion-lite bench --device cuda           # GPU mode (bf16 autocast, channels_last, torch.compile)

The benchmarks live next to the package in a source checkout (they need diffusers: ``pip install -e
".[bench]"`` in the checkout, which ``make install`` does); each can also be run alone with
``python -m benchmarks.NAME``.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys
from pathlib import Path

from .utils import DEVICE_ENV, source_checkout

REPO_ROOT = source_checkout()  # None in a wheel install: the benchmarks are not part of the package
ORDER = ("train_throughput", "sampling_quality", "guidance_sweep", "guidance_interval", "cfg_oracle",
         "time_to_quality")


def _import_suite():
    from .cli import CLIError

    if REPO_ROOT is None or not (REPO_ROOT / "benchmarks" / "suite.py").exists():
        where = "this is a wheel install" if REPO_ROOT is None else f"no {REPO_ROOT / 'benchmarks' / 'suite.py'}"
        raise CLIError(f"the benchmarks are not installed with the package ({where}); run bench from a git "
                       "checkout of the diffusion-lite source repository, installed with `pip install -e '.[bench]'`")
    try:
        import diffusers  # noqa: F401
    except ImportError:
        raise CLIError("the benchmarks compare against diffusers: pip install -e '.[bench]' in the source "
                       "checkout") from None
    if str(REPO_ROOT) not in sys.path:
        sys.path.insert(0, str(REPO_ROOT))
    return importlib.import_module("benchmarks.suite")


def cmd_bench(args) -> None:
    from .cli import CLIError

    device, given = args.device, f"--device {args.device}"
    env = os.environ.get(DEVICE_ENV, "").strip()
    if device is None and not args.gpu and env not in ("", "auto"):  # as every other command (auto: the default)
        device, given = env, f"{DEVICE_ENV}={env}"
    gpu = args.gpu or (device or "").startswith("cuda")
    if device and not device.startswith(("cuda", "cpu")):
        raise CLIError(f"bench runs on cpu or cuda (GPU mode), got {given}")
    if device and device.startswith("cuda:") and device != "cuda:0":
        raise CLIError(f"bench runs on the default GPU (cuda:0), got {given}; choose the GPU with "
                       f"CUDA_VISIBLE_DEVICES={device.split(':', 1)[1]} diffusion-lite bench --device cuda")
    from .checkpoints import load_checkpoint

    for option, given, text in (("--uncond", args.uncond, False), ("--text", args.text, True)):
        if given is None:
            continue
        meta = load_checkpoint(given)[1]  # a typo or a corrupt file is an error now, not a benchmark skipped later
        if meta.get("kind") != "diffusion" or (meta.get("text") is not None) != text:
            kind = ("a text-to-image" if meta.get("text") is not None else "an unconditional") \
                if meta.get("kind") == "diffusion" else f"a {meta.get('kind')!r}"
            raise CLIError(f"{option} {given} is {kind} checkpoint; {option} expects "
                           f"{'a text-to-image' if text else 'an unconditional'} diffusion model")
    suite = _import_suite()
    results = suite.run_suite(args.only, quick=args.quick, out=args.out, threads=args.threads, gpu=gpu,
                              uncond=args.uncond, text=args.text, minutes=args.minutes)
    failed = [name for name, r in results.items() if "error" in r]
    if failed:
        raise CLIError(f"benchmark(s) {', '.join(failed)} could not run: "
                       + "; ".join(results[n]["error"] for n in failed))


def add_parser(subparsers, common) -> argparse.ArgumentParser:
    """Register ``bench`` on cli.py's subparsers; ``common(sp)`` adds --device, --threads and --quiet."""
    b = subparsers.add_parser("bench", help="benchmarks against diffusers: throughput, quality vs steps, guidance, "
                              "exact-denoiser oracle, time to quality, hardware efficiency (source checkout only)")
    b.add_argument("--quick", action="store_true", help="tiny configuration (seconds; checks that all runs)")
    b.add_argument("--out", type=Path, default=None, help="results folder (default benchmarks/results/, "
                   "with --quick benchmarks/results/quick/)")
    b.add_argument("--only", nargs="+", choices=ORDER, default=None, metavar="NAME",
                   help=f"run only these benchmarks ({', '.join(ORDER)})")
    b.add_argument("--gpu", action="store_true", help="GPU mode (same as --device cuda)")
    b.add_argument("--uncond", default=None, help="unconditional checkpoint (default mnist-uncond)")
    b.add_argument("--text", default=None, help="text-to-image checkpoint (default mnist-text2img)")
    from .cli import _positive

    b.add_argument("--minutes", type=_positive(float), default=None, help="time-to-quality training budget per side")
    common(b)
    for a in b._actions:  # bench runs on the CPU or the default GPU only (cmd_bench explains other choices)
        if a.dest == "device":
            a.help = ("cpu or cuda (GPU mode; the default GPU, choose it with CUDA_VISIBLE_DEVICES); default "
                      "$DIFFUSION_LITE_DEVICE if set, else cpu")
    b.set_defaults(func=cmd_bench)
    return b
