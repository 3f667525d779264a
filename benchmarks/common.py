"""Shared benchmark plumbing: the machine record, run modes (CPU / GPU), interleaved timing, JSON results.

Timing rules used by every benchmark: warm-up iterations are run and discarded; then ``reps``
repetitions, each timing ``iters`` iterations of every contender *interleaved one iteration at a time*
(A B A B ..., the order flipping every iteration), so changes in a shared machine's load on time scales
longer than one iteration hit both sides alike. Results give median, min, max and std of the
per-repetition throughput; a ratio is the median [min, max] of the per-repetition ratios (each from
one repetition, in which both sides ran under the same conditions).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import statistics
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Callable

import torch

RESULTS_DIR = Path(__file__).resolve().parent / "results"


# ------------------------------------------------------------------------------------ the machine
def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text(encoding="utf-8").splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def load_average() -> list[float] | None:
    try:
        return [round(x, 2) for x in os.getloadavg()]
    except OSError:
        return None


def machine_info() -> dict:
    """CPU model, logical cores (and those usable by this process), torch/diffusers versions, threads, GPU."""
    try:
        import diffusers
        diffusers_version = diffusers.__version__
    except ImportError:
        diffusers_version = None
    usable = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return {"cpu": cpu_model(), "logical_cores": os.cpu_count(), "usable_cores": usable,
            "torch": torch.__version__, "diffusers": diffusers_version, "python": platform.python_version(),
            "torch_threads": torch.get_num_threads(),
            "gpu": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
            "load_average_1_5_15min": load_average(), "date_utc": time.strftime("%Y-%m-%d %H:%M", time.gmtime())}


# ----------------------------------------------------------------------------------------- run modes
@dataclass(frozen=True)
class Runtime:
    """Where and how models run. GPU mode = cuda + bf16 autocast + channels_last + torch.compile."""

    device: str = "cpu"
    amp: bool = False
    channels_last: bool = False
    compile: bool = False

    @property
    def torch_device(self) -> torch.device:
        return torch.device(self.device)

    def autocast(self):
        if not self.amp:
            return contextlib.nullcontext()
        return torch.autocast(self.torch_device.type, dtype=torch.bfloat16)

    def prepare(self, model: torch.nn.Module) -> torch.nn.Module:
        """Move ``model`` (in place) and return the callable to run: channels_last / compiled if asked."""
        model.to(self.torch_device)
        if self.channels_last:
            model.to(memory_format=torch.channels_last)
        return torch.compile(model) if self.compile else model

    def input(self, x: torch.Tensor) -> torch.Tensor:
        x = x.to(self.torch_device)  # not non_blocking: x may be a temporary (unsafe on MPS; no gain unpinned)
        return x.contiguous(memory_format=torch.channels_last) if self.channels_last and x.dim() == 4 else x

    def sync(self) -> None:
        if self.torch_device.type == "cuda":
            torch.cuda.synchronize(self.torch_device)


NO_GPU = "no GPU present (torch.cuda.is_available() is False): GPU mode skipped; run the same command on a GPU machine"


def add_common_args(p: argparse.ArgumentParser, default_out: Path = RESULTS_DIR) -> None:
    p.add_argument("--out", type=Path, default=None, help=f"results folder (default {default_out}, "
                   "or its quick/ subfolder with --quick)")
    p.add_argument("--quick", action="store_true", help="tiny configuration (seconds; for tests, numbers meaningless)")
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's choice)")
    p.add_argument("--gpu", action="store_true", help="GPU mode: cuda, bf16 autocast, channels_last, torch.compile")
    p.add_argument("--amp", action="store_true", help="bf16 autocast (also on CPU)")
    p.add_argument("--channels-last", action="store_true")
    p.add_argument("--compile", action="store_true", help="torch.compile the models")
    p.add_argument("--no-plot", action="store_true", help="write the JSON only")


def runtime_from_args(args) -> Runtime | None:
    """The Runtime the flags ask for; None when --gpu is given and no GPU is present."""
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.gpu:
        if not torch.cuda.is_available():
            return None
        return Runtime("cuda", amp=True, channels_last=True, compile=True)
    return Runtime("cpu", amp=args.amp, channels_last=args.channels_last, compile=args.compile)


def out_dir(args) -> Path:
    d = args.out if args.out is not None else (RESULTS_DIR / "quick" if args.quick else RESULTS_DIR)
    d.mkdir(parents=True, exist_ok=True)
    return d


def result_name(stem: str, args) -> str:
    """Results file stem: GPU-mode runs get their own files (``NAME_gpu.json``)."""
    return f"{stem}_gpu" if args.gpu else stem


def parse(parser: argparse.ArgumentParser, argv: list[str] | None):
    """parse_args, remembering the argument list (for the command recorded in the results)."""
    args = parser.parse_args(argv)
    args.argv = list(sys.argv[1:] if argv is None else argv)
    return args


def write_result(path: Path, payload: dict) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(payload, indent=2) + "\n", encoding="utf-8")
    print(f"wrote {path}")
    return path


def finish(path: Path, result: dict) -> dict:
    """Record the load average at the end of the run, write ``result`` to ``path`` and return it."""
    result["machine_end"] = {"load_average_1_5_15min": load_average()}
    write_result(path, result)
    return result


def not_run(name: str) -> str:
    """The BENCHMARKS.md text of a benchmark whose result file does not exist yet."""
    return f"*Not run yet.* Command: `python -m benchmarks.{name} --threads 1`\n"


def header(name: str, rt: Runtime | None, args, settings: dict) -> dict:
    """The part every result file starts with: benchmark, command, machine, runtime, settings."""
    return {"benchmark": name, "command": " ".join(["python -m benchmarks." + name, *getattr(args, "argv", [])]),
            "machine": machine_info(), "runtime": asdict(rt) if rt is not None else None,
            "quick": bool(args.quick), "settings": settings}


def no_gpu_result(name: str, args, path: Path) -> dict:
    print(NO_GPU)
    payload = {**header(name, None, args, {}), "gpu": NO_GPU}
    write_result(path, payload)
    return payload


# ---------------------------------------------------------------------------------------- timing
def summarize(values: list[float]) -> dict:
    """median, min, max, std (0 for one value) and the raw values of per-repetition measurements."""
    return {"median": statistics.median(values), "min": min(values), "max": max(values),
            "std": statistics.stdev(values) if len(values) > 1 else 0.0, "reps": len(values),
            "values": list(values)}


def time_interleaved(steps: dict[str, Callable[[], int]], *, warmup: int, reps: int, iters: int,
                     sync: Callable[[], None] = lambda: None, progress: bool = True) -> dict[str, dict]:
    """Throughput (items/s) of each contender. steps[name]() runs one iteration and returns the number
    of items (images) it processed. Warm-up first (discarded), then ``reps`` timed repetitions; in each,
    the contenders take turns one iteration at a time (order flipping every iteration) for ``iters``
    iterations each, and each side's items / its own summed time is that repetition's throughput.
    -> {name: summarize(...)}."""
    names = list(steps)
    for name in names:
        for _ in range(warmup):
            steps[name]()
        sync()
    rates: dict[str, list[float]] = {n: [] for n in names}
    k = 0
    for r in range(reps):
        seconds, items = dict.fromkeys(names, 0.0), dict.fromkeys(names, 0)
        for _ in range(iters):
            for name in (names if k % 2 == 0 else names[::-1]):
                sync()
                t0 = time.perf_counter()
                items[name] += steps[name]()
                sync()
                seconds[name] += time.perf_counter() - t0
            k += 1
        for name in names:
            rates[name].append(items[name] / seconds[name])
        if progress:
            print(f"  rep {r + 1}/{reps}: " + ", ".join(f"{n} {rates[n][-1]:.4g}/s" for n in names), flush=True)
    return {n: summarize(v) for n, v in rates.items()}


def ratio_summary(a: dict, b: dict) -> dict:
    """a/b from two summaries of the same repetitions: median, low (min) and high (max) of the per-repetition
    ratios a_i / b_i, and the ratio of the medians."""
    ratios = [x / y for x, y in zip(a["values"], b["values"])]
    return {"median": statistics.median(ratios), "low": min(ratios), "high": max(ratios),
            "of_medians": a["median"] / b["median"]}


def recognised_note(attrs: dict) -> str:
    """' Over only the pairs whose two samples ...: thickness 1.00 (196 of 200), ...' for an attribute_adherence
    report's "attributes", or '' for a report from before attribute_eval counted recognised pairs."""
    rec = {k: x for k, x in attrs.items() if "recognised_pairs" in x}
    if not rec:
        return ""
    cells = [f"{k} {'-' if x['adherence_recognised'] is None else format(x['adherence_recognised'], '.2f')} "
             f"({x['recognised_pairs']} of {x['n_low']} pairs)" for k, x in rec.items()]
    return (" Over only the pairs whose two samples the classifier both assigns to the asked class (a blank or broken"
            " sample measures 0 on every attribute, the low end of all but slant, so a pair with one can count as"
            " obeyed): "
            + ", ".join(cells) + ".")
