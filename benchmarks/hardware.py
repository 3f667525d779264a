"""The machine's limit and a model's work: measured matmul peak and FLOPs per training step.

hardware efficiency = FLOPs per training step x steps/s / matmul peak FLOP/s

- FLOPs come from ``torch.utils.flop_counter.FlopCounterMode`` over one real step (forward + backward
  of the loss). It counts matmuls, convolutions and attention (2 FLOPs per multiply-add) and ignores
  elementwise work (norms, activations, the optimizer), so the fraction is the *useful-math* share of
  the limit, the usual "model FLOPs utilisation".
- The peak is the rate of big fp32 matmuls (n x n, 2 n^3 FLOPs each) on the same threads, timed as a
  third contender *inside* the same interleaved repetitions as the training steps, so that on a shared
  machine numerator and denominator see the same load (the fraction is the median over repetitions of
  achieved / peak in that repetition). On a GPU in bf16 mode the matmul is bf16. The best matmul rate
  of a separate measurement at the start and end of the run is reported too.
"""

from __future__ import annotations

import time
from typing import Callable

import torch
from torch.utils.flop_counter import FlopCounterMode


def matmul_peak(n: int = 2048, reps: int = 5, dtype: torch.dtype = torch.float32, device: str = "cpu") -> dict:
    """GFLOP/s of an (n, n) @ (n, n) matmul: best and median of ``reps`` timed runs after one warm-up."""
    a = torch.randn(n, n, device=device, dtype=dtype)
    b = torch.randn(n, n, device=device, dtype=dtype)
    sync = (lambda: torch.cuda.synchronize(device)) if torch.device(device).type == "cuda" else (lambda: None)
    a @ b
    sync()
    rates = []
    for _ in range(reps):
        t0 = time.perf_counter()
        a @ b
        sync()
        rates.append(2 * n**3 / (time.perf_counter() - t0) / 1e9)
    rates.sort()
    return {"n": n, "dtype": str(dtype).replace("torch.", ""), "gflops_peak": rates[-1],
            "gflops_median": rates[len(rates) // 2], "values": [round(r, 2) for r in rates],
            "threads": torch.get_num_threads()}


def matmul_step(n: int = 2048, dtype: torch.dtype = torch.float32, device: str = "cpu") -> Callable[[], int]:
    """One (n, n) @ (n, n) matmul per call, returning its FLOPs (2 n^3): a contender for
    common.time_interleaved, so the peak is measured in the same repetitions as the training steps."""
    a = torch.randn(n, n, device=device, dtype=dtype)
    b = torch.randn(n, n, device=device, dtype=dtype)

    def step() -> int:
        a @ b
        return 2 * n**3

    return step


def count_flops(fn: Callable[[], object]) -> dict:
    """Run ``fn`` once under FlopCounterMode -> {"total": FLOPs, "by_op": {op: FLOPs}}."""
    with FlopCounterMode(display=False) as fc:
        fn()
    return {"total": int(fc.get_total_flops()),
            "by_op": {str(k): int(v) for k, v in fc.get_flop_counts().get("Global", {}).items()}}


def efficiency(flops_per_step: float, steps_per_s: float, peak_gflops: float) -> float:
    """Fraction of the measured matmul peak reached: FLOPs/step x steps/s / peak."""
    return flops_per_step * steps_per_s / (peak_gflops * 1e9)
