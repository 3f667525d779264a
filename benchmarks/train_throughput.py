"""(a) Training throughput against diffusers at matched size, and (d) hardware efficiency.

    python -m benchmarks.train_throughput --threads 2            # CPU, full configuration
    python -m benchmarks.train_throughput --gpu                  # GPU mode (bf16, channels_last, compile)

For each model kind (see models.py) both U-Nets run the same training step: a batch of MNIST images,
t ~ U{0..T-1}, eps ~ N(0, I) from the same seeded generator, the eps-MSE loss (train.diffusion_loss),
backward, AdamW. Text models get the same stand-in text tokens. Throughput is images/s over timed
repetitions interleaved between the two sides (common.time_interleaved); FLOPs per step come from
FlopCounterMode on one eager step; the matmul peak is timed as a third contender in the same
interleaved repetitions (and separately at the start and end of the run, for reference).
Writes results/train_throughput.json and train_throughput.png.
"""

from __future__ import annotations

import argparse

import torch

from diffusion_lite.config import ScheduleConfig
from diffusion_lite.schedules import Schedule
from diffusion_lite.train import diffusion_loss

from . import common, hardware, models

NAME = "train_throughput"


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog=f"python -m benchmarks.{NAME}", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    common.add_common_args(p)
    p.add_argument("--kinds", nargs="+", choices=models.KINDS, default=list(models.KINDS))
    p.add_argument("--batch-size", type=int, default=None, help="default 64 (quick: 8)")
    p.add_argument("--warmup", type=int, default=None, help="discarded steps per model (default 3, quick 1)")
    p.add_argument("--reps", type=int, default=None, help="timed repetitions (default 5, quick 2)")
    p.add_argument("--iters", type=int, default=None, help="steps per repetition (default 4, quick 1)")
    p.add_argument("--peak-n", type=int, default=None, help="matmul size for the peak (default 2048, quick 256)")
    p.add_argument("--seed", type=int, default=0)
    return p


def _defaults(args) -> dict:
    q = args.quick
    pick = lambda v, full, quick: v if v is not None else (quick if q else full)
    return {"batch_size": pick(args.batch_size, 64, 8), "warmup": pick(args.warmup, 3, 1),
            "reps": pick(args.reps, 5, 2), "iters": pick(args.iters, 4, 1), "peak_n": pick(args.peak_n, 2048, 256),
            "kinds": list(args.kinds), "seed": args.seed, "optimizer": "AdamW(lr=2e-4)",
            "loss": "eps MSE (train.diffusion_loss)", "schedule": "cosine, T=1000", "image": "1x28x28 MNIST"}


def _training_data(n: int) -> torch.Tensor:
    from diffusion_lite.data import load_dataset

    return load_dataset("mnist", "train", subset=n).images  # (n, 1, 28, 28) in [-1, 1]


def make_step(model: torch.nn.Module, rt: common.Runtime, schedule: Schedule, data: torch.Tensor, batch: int,
              kind: str, seed: int, compiled: bool = True):
    """One training step as a closure returning the batch size; the same batches and noise for every model."""
    run = rt.prepare(model) if compiled else model.to(rt.torch_device)
    opt = torch.optim.AdamW(model.parameters(), lr=2e-4)
    g = torch.Generator().manual_seed(seed)
    model.train()

    def step() -> int:
        x0 = rt.input(data[torch.randint(0, data.shape[0], (batch,), generator=g)])
        cond = {}
        if kind == "text":
            ctx, mask = models.random_context(batch, g)
            cond = {"context": ctx.to(rt.torch_device), "context_mask": mask.to(rt.torch_device)}
        with rt.autocast():
            loss = diffusion_loss(run, schedule, x0, generator=g, **cond)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        return batch

    return step


def run(args) -> dict:
    rt = common.runtime_from_args(args)
    path = common.out_dir(args) / f"{common.result_name(NAME, args)}.json"
    if rt is None:
        return common.no_gpu_result(NAME, args, path)
    s = _defaults(args)
    result = common.header(NAME, rt, args, s)
    peak_dtypes = [torch.float32] + ([torch.bfloat16] if rt.amp and rt.device == "cuda" else [])
    peaks = {"start": [hardware.matmul_peak(s["peak_n"], dtype=d, device=rt.device) for d in peak_dtypes]}
    schedule = Schedule.from_config(ScheduleConfig()).to(rt.torch_device)
    data = _training_data(2048)
    result["kinds"] = {}
    for kind in s["kinds"]:
        print(f"[{NAME}] {kind}: batch {s['batch_size']}, {s['reps']} reps x {s['iters']} steps after "
              f"{s['warmup']} warm-up steps", flush=True)
        nets = models.build(kind, args.seed)
        flops = {}
        for name, net in nets.items():  # FLOPs of one eager step (before any compilation)
            flops[name] = hardware.count_flops(make_step(net, common.Runtime(rt.device), schedule, data,
                                                         s["batch_size"], kind, args.seed, compiled=False))
        steps = {name: make_step(net, rt, schedule, data, s["batch_size"], kind, args.seed)
                 for name, net in nets.items()}
        steps["matmul"] = hardware.matmul_step(s["peak_n"], peak_dtypes[-1], rt.device)  # the peak, same reps
        ips = common.time_interleaved(steps, warmup=s["warmup"], reps=s["reps"], iters=s["iters"], sync=rt.sync)
        result["kinds"][kind] = {name: {"parameters": models.num_parameters(nets[name]), "images_per_s": ips[name],
                                        "flops_per_step": flops[name]["total"],
                                        "flops_per_image": flops[name]["total"] / s["batch_size"],
                                        "flops_by_op": flops[name]["by_op"]} for name in nets}
        result["kinds"][kind]["matmul_gflops"] = common.summarize([v / 1e9 for v in ips["matmul"]["values"]])
    peaks["end"] = [hardware.matmul_peak(s["peak_n"], dtype=d, device=rt.device) for d in peak_dtypes]
    result["matmul_peak"] = peaks
    _derive(result, rt)
    common.write_result(path, result)
    print(format_table(result))
    if not args.no_plot:
        from . import plots
        plots.plot_train_throughput(result, path.with_suffix(".png"))
    return result


def _derive(result: dict, rt: common.Runtime) -> None:
    """Ratios, per-parameter throughput and the hardware efficiency (d) of each side: per repetition,
    achieved GFLOP/s / the matmul GFLOP/s of the same repetition; median [min, max] over repetitions."""
    peaks = result["matmul_peak"]["start"] + result["matmul_peak"]["end"]
    want = "bfloat16" if rt.amp and rt.device == "cuda" else "float32"
    result["peak_dtype"] = want
    result["best_separate_peak_gflops"] = max(p["gflops_peak"] for p in peaks if p["dtype"] == want)
    for r in result["kinds"].values():
        ours, hf = r["diffusion_lite"], r["diffusers"]
        for side in (ours, hf):
            med = side["images_per_s"]["median"]
            side["param_images_per_s"] = med * side["parameters"]  # throughput x size ("per parameter")
            side["achieved_gflops"] = side["flops_per_image"] * med / 1e9
            side["hardware_efficiency"] = common.summarize([side["flops_per_image"] * v / 1e9 / p for v, p in
                                                            zip(side["images_per_s"]["values"],
                                                                r["matmul_gflops"]["values"])])
        r["ratio_images_per_s"] = ratio = common.ratio_summary(ours["images_per_s"], hf["images_per_s"])
        r["ratio_parameters"] = ours["parameters"] / hf["parameters"]
        r["ratio_flops_per_image"] = ours["flops_per_image"] / hf["flops_per_image"]
        r["ratio_per_parameter"] = ratio["median"] * r["ratio_parameters"]  # (images/s x params) ours / theirs
        r["ratio_achieved_gflops"] = ratio["median"] * r["ratio_flops_per_image"]


def format_table(result: dict) -> str:
    lines = [f"{'kind':<7} {'side':<15} {'params':>9} {'img/s (median [min, max])':>27} {'MFLOP/img':>10} "
             f"{'GFLOP/s':>8} {'of peak':>8}"]
    for kind, r in result["kinds"].items():
        for name in ("diffusion_lite", "diffusers"):
            d = r[name]
            i = d["images_per_s"]
            lines.append(f"{kind:<7} {name:<15} {d['parameters']:>9,} {i['median']:>10.1f} [{i['min']:.1f}, "
                         f"{i['max']:.1f}]".ljust(62) + f" {d['flops_per_image'] / 1e6:>10.1f} "
                         f"{d['achieved_gflops']:>8.2f} {d['hardware_efficiency']['median']:>8.1%}")
        lines.append(f"{kind:<7} ratio ours/diffusers: {r['ratio_images_per_s']['median']:.2f}x images/s "
                     f"(range {r['ratio_images_per_s']['low']:.2f}-{r['ratio_images_per_s']['high']:.2f}), "
                     f"{r['ratio_per_parameter']:.2f}x per parameter")
        lines.append(f"{kind:<7} matmul ({result['peak_dtype']}) in the same repetitions: "
                     f"{r['matmul_gflops']['median']:.1f} GFLOP/s")
    lines.append(f"best separate matmul measurement: {result['best_separate_peak_gflops']:.1f} GFLOP/s")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> dict:
    return run(common.parse(build_parser(), argv))


if __name__ == "__main__":
    main()
