"""Run every benchmark in turn (what ``diffusion-lite bench`` calls).

    python -m benchmarks.suite --quick                     # seconds: checks that everything runs
    python -m benchmarks.suite --threads 2                 # the full CPU suite (about 3.5 hours on 2 cores)
    python -m benchmarks.suite --gpu                       # GPU mode of every benchmark

A benchmark that cannot run (e.g. a shipped model is missing) is reported and skipped; the others run.
"""

from __future__ import annotations

import argparse
import importlib
import time
from pathlib import Path

ORDER = ("train_throughput", "sampling_quality", "guidance_sweep", "guidance_interval", "cfg_oracle", "time_to_quality")


def suite_argv(name: str, *, quick: bool = False, out: Path | None = None, threads: int | None = None,
               gpu: bool = False, uncond: str | None = None, text: str | None = None,
               minutes: float | None = None) -> list[str]:
    """The command-line arguments with which the suite runs benchmark ``name``."""
    argv = []
    if out is not None:
        argv += ["--out", str(out)]
    if quick:
        argv.append("--quick")
    if threads:
        argv += ["--threads", str(threads)]
    if gpu:
        argv.append("--gpu")
    if name == "sampling_quality":
        argv += (["--uncond", uncond] if uncond else []) + (["--text", text] if text else [])
    if name in ("guidance_sweep", "guidance_interval") and text:
        argv += ["--text", text]
    if name == "time_to_quality" and minutes is not None:
        argv += ["--minutes", str(minutes)]
    return argv


def run_suite(only: list[str] | None = None, **kw) -> dict:
    """Run the benchmarks in ``only`` (default: all, in ORDER). Returns {name: result or {"error": message}}."""
    names = list(only or ORDER)
    unknown = [n for n in names if n not in ORDER]
    if unknown:
        raise ValueError(f"unknown benchmark(s) {unknown}; expected some of {list(ORDER)}")
    results = {}
    for name in names:
        argv = suite_argv(name, **kw)
        print(f"=== python -m benchmarks.{name} {' '.join(argv)}", flush=True)
        t0 = time.perf_counter()
        module = importlib.import_module(f"benchmarks.{name}")
        try:
            results[name] = module.main(argv)
        except (FileNotFoundError, ValueError) as e:  # a missing checkpoint or dataset: skip, run the rest
            print(f"=== {name} skipped: {e}", flush=True)
            results[name] = {"error": str(e)}
        print(f"=== {name}: {time.perf_counter() - t0:.0f} s", flush=True)
    return results


def main(argv: list[str] | None = None) -> dict:
    p = argparse.ArgumentParser(prog="python -m benchmarks.suite", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--only", nargs="+", choices=ORDER, default=None)
    p.add_argument("--quick", action="store_true")
    p.add_argument("--out", type=Path, default=None)
    p.add_argument("--threads", type=int, default=None)
    p.add_argument("--gpu", action="store_true")
    p.add_argument("--uncond", default=None, help="unconditional checkpoint (default mnist-uncond)")
    p.add_argument("--text", default=None, help="text-to-image checkpoint (default mnist-text2img)")
    p.add_argument("--minutes", type=float, default=None, help="time-to-quality budget per side")
    a = p.parse_args(argv)
    return run_suite(a.only, quick=a.quick, out=a.out, threads=a.threads, gpu=a.gpu, uncond=a.uncond, text=a.text,
                     minutes=a.minutes)


if __name__ == "__main__":
    main()
