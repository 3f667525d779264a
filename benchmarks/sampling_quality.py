"""(b) Sampling throughput against diffusers, and the quality/steps curve of the shipped models.

    python -m benchmarks.sampling_quality --threads 2                 # both parts, full configuration
    python -m benchmarks.sampling_quality --skip-sweep                # only the throughput comparison
    python -m benchmarks.sampling_quality --skip-throughput --models text --n 500 --n-1000 200

Throughput: a DDIM loop over ``--throughput-steps`` steps on a batch, diffusion_lite (sampling.sample_ddim
with the pipeline's model_fn; classifier-free guidance for text) against diffusers (DDIMScheduler with
the cosine schedule, "trailing" spacing (999, 979, ..., 19, against our 999, 979, ..., 0: the same number
of steps), x0 clipping, and the matched U-Net of models.py; for text the same guidance formula on a doubled
batch). Random weights: speed does not depend on them.

Quality (float32, also in GPU mode): evaluation.steps_sweep on the shipped models (FID/floor, KID,
diversity, and for the text model conditional accuracy at guidance ``--guidance``), for every sampler
and step count; ``--n-1000`` sets a smaller n for the 1000-step points.
Writes results/sampling_quality.json and sampling_quality.png.
"""

from __future__ import annotations

import argparse
import json

import torch

from diffusion_lite.config import ScheduleConfig
from diffusion_lite.guidance import classifier_free_guidance
from diffusion_lite.sampling import eps_model_fn, sample_ddim
from diffusion_lite.schedules import Schedule

from . import common, models

NAME = "sampling_quality"
DEFAULT_CHECKPOINTS = {"uncond": "mnist-uncond", "text": "mnist-text2img"}


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog=f"python -m benchmarks.{NAME}", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    common.add_common_args(p)
    p.add_argument("--models", nargs="+", choices=models.KINDS, default=list(models.KINDS))
    p.add_argument("--uncond", default=DEFAULT_CHECKPOINTS["uncond"], help="unconditional checkpoint (name or path)")
    p.add_argument("--text", default=DEFAULT_CHECKPOINTS["text"], help="text-to-image checkpoint (name or path)")
    p.add_argument("--steps", type=int, nargs="+", default=None, help="default 10 20 50 100 1000 (quick: 2 4)")
    p.add_argument("--samplers", nargs="+", choices=["ddpm", "ddim", "dpm++2m"], default=["ddpm", "ddim"])
    p.add_argument("--n", type=int, default=None, help="samples per point (default 500, quick 20)")
    p.add_argument("--n-1000", type=int, default=None, help="samples for the 1000-step points (default 200)")
    p.add_argument("--guidance", type=float, default=3.0)
    p.add_argument("--batch-size", type=int, default=250)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--throughput-batch", type=int, default=None, help="default 64 (quick 4)")
    p.add_argument("--throughput-steps", type=int, default=None, help="default 20 (quick 2)")
    p.add_argument("--reps", type=int, default=None, help="timed repetitions (default 3, quick 2)")
    p.add_argument("--skip-throughput", action="store_true")
    p.add_argument("--skip-sweep", action="store_true")
    p.add_argument("--update", action="store_true", help="keep the other models' results already in the results "
                   "file and replace only those of --models (the file then lists every command that wrote it)")
    return p


def _defaults(args) -> dict:
    q = args.quick
    pick = lambda v, full, quick: v if v is not None else (quick if q else full)
    steps = args.steps or ([2, 4] if q else [10, 20, 50, 100, 1000])
    return {"models": list(args.models), "steps": steps, "samplers": list(args.samplers), "n": pick(args.n, 500, 20),
            "n_1000": pick(args.n_1000, 200, 20), "guidance": args.guidance, "batch_size": args.batch_size,
            "seed": args.seed, "throughput_batch": pick(args.throughput_batch, 64, 4),
            "throughput_steps": pick(args.throughput_steps, 20, 2), "reps": pick(args.reps, 3, 2),
            "checkpoints": {"uncond": args.uncond, "text": args.text}}


# ------------------------------------------------------------------------------------ throughput
def _ours_sampler(net, kind, rt, batch, steps, ctx):
    schedule = Schedule.from_config(ScheduleConfig()).to(rt.torch_device)
    run = rt.prepare(net).eval()
    base = lambda x, t, **c: eps_model_fn(run, schedule, "eps", **c)(x, t)
    if kind == "text":
        (c, m), (u, um) = ctx
        fn = classifier_free_guidance(base, (c, m), (u, um), 3.0)
    else:
        fn = base
    g = torch.Generator().manual_seed(0)

    def go() -> int:
        with torch.no_grad(), rt.autocast():
            sample_ddim(fn, schedule, x_T=rt.input(torch.randn(batch, 1, 28, 28, generator=g)), steps=steps,
                        progress=False)
        return batch

    return go


def _diffusers_sampler(net, kind, rt, batch, steps, ctx):
    from diffusers import DDIMScheduler

    sched = DDIMScheduler(num_train_timesteps=1000, beta_schedule="squaredcos_cap_v2", clip_sample=True,
                          set_alpha_to_one=True, timestep_spacing="trailing")
    run = rt.prepare(net).eval()
    g = torch.Generator().manual_seed(0)
    if kind == "text":
        (c, m), (u, um) = ctx
        both_ctx, both_mask = torch.cat([c, u]), torch.cat([m, um])

    def go() -> int:
        x = rt.input(torch.randn(batch, 1, 28, 28, generator=g))
        sched.set_timesteps(steps)
        with torch.no_grad(), rt.autocast():
            for t in sched.timesteps:
                tt = t.expand(x.shape[0] * (2 if kind == "text" else 1)).to(rt.torch_device)
                if kind == "text":
                    eps_c, eps_u = run(torch.cat([x, x]), tt, both_ctx, both_mask).chunk(2)
                    eps = eps_u + 3.0 * (eps_c - eps_u)
                else:
                    eps = run(x, tt)
                x = sched.step(eps.float(), t, x).prev_sample
        return batch

    return go


def throughput(s: dict, rt: common.Runtime) -> dict:
    out = {}
    for kind in s["models"]:
        nets = models.build(kind, s["seed"])
        B = s["throughput_batch"]
        ctx = None
        if kind == "text":
            g = torch.Generator().manual_seed(1)
            c, m = models.random_context(B, g)
            u, um = torch.zeros_like(c), torch.zeros_like(m)
            um[:, :2] = True  # the empty prompt: start/end tokens only
            ctx = ((c.to(rt.torch_device), m.to(rt.torch_device)), (u.to(rt.torch_device), um.to(rt.torch_device)))
        runs = {"diffusion_lite": _ours_sampler(nets["diffusion_lite"], kind, rt, B, s["throughput_steps"], ctx),
                "diffusers": _diffusers_sampler(nets["diffusers"], kind, rt, B, s["throughput_steps"], ctx)}
        print(f"[{NAME}] sampling throughput, {kind}: batch {B}, DDIM {s['throughput_steps']} steps", flush=True)
        ips = common.time_interleaved(runs, warmup=1, reps=s["reps"], iters=1, sync=rt.sync)
        out[kind] = {"images_per_s": ips, "ratio_images_per_s": common.ratio_summary(ips["diffusion_lite"],
                                                                                     ips["diffusers"]),
                     "parameters": {k: models.num_parameters(v) for k, v in nets.items()},
                     "guidance": 3.0 if kind == "text" else None}
    return out


# ---------------------------------------------------------------------------------- quality sweep
def sweep(s: dict, rt: common.Runtime, progress: bool = True) -> dict:
    """Quality is measured in float32 on the runtime's device (no autocast, no compile), so that GPU and CPU
    runs give the same numbers up to floating-point noise."""
    from diffusion_lite.checkpoints import load
    from diffusion_lite.evaluation import steps_sweep
    from diffusion_lite.metrics import load_eval_classifier

    classifier = load_eval_classifier(rt.device)
    out = {}
    for kind in s["models"]:
        name = s["checkpoints"][kind]
        try:
            pipe = load(name, rt.device)
        except (FileNotFoundError, ValueError) as e:
            print(f"[{NAME}] skipping {kind}: cannot load {name!r} ({e})")
            out[kind] = {"checkpoint": name, "error": str(e), "sweep": None}
            continue
        n_for = {k: s["n_1000"] for k in s["steps"] if k >= 1000}
        print(f"[{NAME}] quality sweep of {name}: steps {s['steps']}, samplers {s['samplers']}, n {s['n']} "
              f"({n_for or 'same for all'})", flush=True)
        rows = steps_sweep(pipe, s["steps"], s["samplers"], n=s["n"], n_for_steps=n_for, guidance=s["guidance"],
                           seed=s["seed"], batch_size=s["batch_size"], classifier=classifier, progress=progress)
        for r in rows:
            print(f"  {r['sampler']} {r['steps']:>4} steps n={r['n']}: FID {r['fid']:.3f} (floor {r['fid_floor']:.3f}, "
                  f"ratio {r['fid_ratio']:.2f}), accuracy {r['accuracy']}, {r['images_per_s']:.1f} img/s", flush=True)
        out[kind] = {"checkpoint": name, "parameters": sum(p.numel() for p in pipe.unet.parameters()), "sweep": rows}
    return out


def run(args) -> dict:
    rt = common.runtime_from_args(args)
    path = common.out_dir(args) / f"{common.result_name(NAME, args)}.json"
    if rt is None:
        return common.no_gpu_result(NAME, args, path)
    s = _defaults(args)
    result = common.header(NAME, rt, args, s)
    if not args.skip_throughput:
        result["throughput"] = throughput(s, rt)
        for kind, r in result["throughput"].items():
            print(f"  {kind}: ours/diffusers sampling images/s {r['ratio_images_per_s']['median']:.2f}x "
                  f"(range {r['ratio_images_per_s']['low']:.2f}-{r['ratio_images_per_s']['high']:.2f})")
    if not args.skip_sweep:
        result["models"] = sweep(s, rt, progress=not args.quick)
    result["machine_end"] = {"load_average_1_5_15min": common.load_average()}
    if args.update and path.exists():
        result = _merge(json.loads(path.read_text(encoding="utf-8")), result)
    common.write_result(path, result)
    if not args.no_plot and any(r.get("sweep") for r in result.get("models", {}).values()):
        from . import plots
        plots.plot_sampling_quality(result, path.with_suffix(".png"))
    return result


def _sources(result: dict, run_index: int) -> dict:
    """Which run (index into ``runs``) measured each model's throughput and quality sweep."""
    return {part: {kind: run_index for kind in (result.get(part) or {})} for part in ("throughput", "models")}


def _merge(old: dict, new: dict) -> dict:
    """``new`` with the per-model parts (throughput, models) of ``old`` that ``new`` did not measure; each run's
    command, machine and settings are kept under ``runs``, and ``sources[part][model]`` says which run
    measured what the merged file shows (so the report can give each table its own machine line)."""
    runs = old.get("runs") or [{k: old.get(k) for k in ("command", "machine", "machine_end", "settings")}]
    merged = {**new, "runs": runs + [{k: new.get(k) for k in ("command", "machine", "machine_end", "settings")}]}
    old_sources = old.get("sources") or _sources(old, len(runs) - 1)
    new_sources = _sources(new, len(runs))
    for part in ("throughput", "models"):
        merged[part] = {**(old.get(part) or {}), **(new.get(part) or {})}
        merged.setdefault("sources", {})[part] = {**old_sources.get(part, {}), **new_sources[part]}
    merged["command"] = " && ".join(r["command"] for r in merged["runs"])
    return merged


def main(argv: list[str] | None = None) -> dict:
    return run(common.parse(build_parser(), argv))


if __name__ == "__main__":
    main()
