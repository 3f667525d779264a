"""(c) Time to quality: training wall time until samples reach a target FID, both implementations from scratch.

    python -m benchmarks.time_to_quality --threads 2 --minutes 15          # CPU, ~35 min in all
    python -m benchmarks.time_to_quality --gpu --minutes 10 --batch-size 128

Same data (MNIST train), same recipe (eps-MSE loss of train.diffusion_loss, cosine schedule T=1000,
AdamW lr ``--lr`` with 100 warm-up steps then constant, grad-norm clip 1, EMA 0.999 with warm-up,
batch ``--batch-size``, the same seeded batches and noise) and the same budget of training wall time
for the unconditional U-Net of each side (models.py, matched size). The two trainings alternate step
by step (or in turns of ``--slice`` seconds), so changes in the machine's load hit both alike. Every
``--eval-every`` minutes of a side's training time, its EMA weights draw ``--n-eval`` samples (DDIM ``--eval-steps``,
the same starting noise every time) and FID against as many MNIST test images is taken, next to the
real-vs-real floor at that n; evaluation time is not counted. Reported: FID/floor over training time,
and the training time at which each side first reaches every target FID/floor ratio (resolution: one
evaluation interval). Writes results/time_to_quality.json and time_to_quality.png.
"""

from __future__ import annotations

import argparse
import time

import torch

from diffusion_lite.config import ScheduleConfig
from diffusion_lite.sampling import eps_model_fn, sample_ddim
from diffusion_lite.schedules import Schedule
from diffusion_lite.train import EMA, diffusion_loss

from . import common, models

NAME = "time_to_quality"
WARMUP_STEPS = 100


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog=f"python -m benchmarks.{NAME}", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    common.add_common_args(p)
    p.add_argument("--minutes", type=float, default=None, help="training budget per side (default 15, quick 0.05)")
    p.add_argument("--eval-every", type=float, default=None, help="minutes of training between FID checks "
                   "(default 1.5, quick 0.025)")
    p.add_argument("--slice", type=float, default=0.0, help="seconds of training per turn (default 0: the two "
                   "sides alternate step by step)")
    p.add_argument("--n-eval", type=int, default=None, help="samples per FID check (default 200, quick 20)")
    p.add_argument("--eval-steps", type=int, default=None, help="DDIM steps per FID check (default 20, quick 2)")
    p.add_argument("--batch-size", type=int, default=None, help="default 64 (quick 8)")
    p.add_argument("--lr", type=float, default=2e-3)
    p.add_argument("--targets", type=float, nargs="+", default=[50.0, 30.0, 20.0, 10.0, 5.0, 3.0, 2.0],
                   help="FID/floor ratios to reach")
    p.add_argument("--subset", type=int, default=None, help="train on the first K images (default all, quick 1000)")
    p.add_argument("--seed", type=int, default=0)
    return p


def _defaults(args) -> dict:
    q = args.quick
    pick = lambda v, full, quick: v if v is not None else (quick if q else full)
    return {"minutes": pick(args.minutes, 15.0, 0.05), "eval_every_min": pick(args.eval_every, 1.5, 0.025),
            "slice_s": args.slice, "n_eval": pick(args.n_eval, 200, 20),
            "eval_steps": pick(args.eval_steps, 20, 2), "batch_size": pick(args.batch_size, 64, 8), "lr": args.lr,
            "warmup_steps": WARMUP_STEPS, "ema_decay": 0.999, "grad_clip": 1.0,
            "targets": sorted((float(t) for t in args.targets), reverse=True), "seed": args.seed,
            "subset": pick(args.subset, None, 1000), "sampler": "ddim", "model": "uncond (models.py)"}


class Side:
    """One implementation's training state: model, EMA, optimizer, generator, clock and evaluations."""

    def __init__(self, name: str, net: torch.nn.Module, rt: common.Runtime, s: dict):
        self.name, self.net, self.rt, self.s = name, net, rt, s
        self.run = rt.prepare(net)
        net.train()
        self.ema = EMA(net, s["ema_decay"], warmup=True)
        self.opt = torch.optim.AdamW(net.parameters(), lr=s["lr"])
        self.gen = torch.Generator().manual_seed(s["seed"])  # the same batches and noise on both sides
        self.step, self.train_seconds, self.loss, self.evals = 0, 0.0, None, []

    def train_for(self, seconds: float, images: torch.Tensor, schedule: Schedule, budget: float) -> None:
        """At least one step, then more until ``seconds`` of training time have passed (or the budget)."""
        end = min(self.train_seconds + seconds, budget)
        B = self.s["batch_size"]
        first = True
        while first or self.train_seconds < end:
            first = False
            t0 = time.perf_counter()
            x0 = self.rt.input(images[torch.randint(0, images.shape[0], (B,), generator=self.gen)])
            for grp in self.opt.param_groups:
                grp["lr"] = self.s["lr"] * min(1.0, (self.step + 1) / WARMUP_STEPS)
            with self.rt.autocast():
                loss = diffusion_loss(self.run, schedule, x0, generator=self.gen)
            self.opt.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(self.net.parameters(), self.s["grad_clip"])
            self.opt.step()
            self.ema.update(self.net)
            self.rt.sync()
            self.step += 1
            self.train_seconds += time.perf_counter() - t0
            v = loss.item()
            self.loss = v if self.loss is None else 0.98 * self.loss + 0.02 * v


def _evaluate(side: Side, schedule, x_T, classifier, ref) -> dict:
    from diffusion_lite.evaluation import score_samples

    t0 = time.perf_counter()
    fn = eps_model_fn(side.ema.model, schedule)
    with torch.no_grad(), side.rt.autocast():
        x = sample_ddim(fn, schedule, x_T=x_T.to(side.rt.torch_device), steps=side.s["eval_steps"], progress=False)
    r = score_samples(classifier, x.float().clamp(-1, 1).cpu(), ref)
    return {"step": side.step, "train_seconds": round(side.train_seconds, 2), "loss": side.loss, "fid": r["fid"],
            "fid_ratio": r["fid_ratio"], "kid_mean": r["kid_mean"], "eval_seconds": round(time.perf_counter() - t0, 2)}


def run(args) -> dict:
    from diffusion_lite import metrics
    from diffusion_lite.data import load_dataset
    from diffusion_lite.evaluation import prepare_reference
    from diffusion_lite.metrics import load_eval_classifier

    rt = common.runtime_from_args(args)
    path = common.out_dir(args) / f"{common.result_name(NAME, args)}.json"
    if rt is None:
        return common.no_gpu_result(NAME, args, path)
    s = _defaults(args)
    result = common.header(NAME, rt, args, s)
    images = load_dataset("mnist", "train", subset=s["subset"]).images
    s["data"] = f"MNIST train ({images.shape[0]:,} images)"
    schedule = Schedule.from_config(ScheduleConfig()).to(rt.torch_device)
    classifier = load_eval_classifier("cpu")
    ref = prepare_reference(classifier, "mnist-test", s["n_eval"], None, s["seed"])
    x_T = torch.randn(s["n_eval"], 1, 28, 28, generator=torch.Generator().manual_seed(s["seed"] + 7))
    nets = models.build("uncond", s["seed"])
    sides = [Side(name, net, rt, s) for name, net in nets.items()]
    budget, every = 60 * s["minutes"], 60 * s["eval_every_min"]
    print(f"[{NAME}] {budget / 60:.1f} min of training per side, FID check every {every / 60:.2f} min "
          f"(n={s['n_eval']}, DDIM {s['eval_steps']}), turns of {s['slice_s']:g} s (0: one step)", flush=True)
    next_eval = {sd.name: every for sd in sides}
    r = 0
    while any(sd.train_seconds < budget for sd in sides):
        for sd in (sides if r % 2 == 0 else sides[::-1]):
            if sd.train_seconds >= budget:
                continue
            sd.train_for(min(s["slice_s"], next_eval[sd.name] - sd.train_seconds), images, schedule, budget)
            if sd.train_seconds >= min(next_eval[sd.name], budget) - 1e-9:
                e = _evaluate(sd, schedule, x_T, classifier, ref)
                sd.evals.append(e)
                next_eval[sd.name] += every
                print(f"  {sd.name:<15} {e['train_seconds'] / 60:5.2f} min, step {e['step']:>5}: loss {e['loss']:.4f}, "
                      f"FID {e['fid']:.3f} (ratio {e['fid_ratio']:.2f})", flush=True)
        r += 1
    result["fid_floor"] = metrics.fid(ref.floor_feats, ref.feats)  # real vs real at n_eval, same for both sides
    result["sides"] = {}
    for sd in sides:
        reached = {}
        for target in s["targets"]:
            hit = next((e for e in sd.evals if e["fid_ratio"] is not None and e["fid_ratio"] <= target), None)
            reached[str(target)] = None if hit is None else {"train_seconds": hit["train_seconds"], "step": hit["step"]}
        result["sides"][sd.name] = {"parameters": models.num_parameters(sd.net), "steps": sd.step,
                                    "train_seconds": round(sd.train_seconds, 2),
                                    "images_per_s": sd.step * s["batch_size"] / max(sd.train_seconds, 1e-9),
                                    "final": sd.evals[-1] if sd.evals else None, "time_to_target": reached,
                                    "evals": sd.evals}
    result["summary"] = _summary(result, s)
    result["machine_end"] = {"load_average_1_5_15min": common.load_average()}
    common.write_result(path, result)
    print(result["summary"]["text"])
    if not args.no_plot:
        from . import plots
        plots.plot_time_to_quality(result, path.with_suffix(".png"))
    return result


def _summary(result: dict, s: dict) -> dict:
    """The headline: the strictest target both sides reached, and the ratio of their times."""
    ours, hf = result["sides"]["diffusion_lite"], result["sides"]["diffusers"]
    both = [t for t in s["targets"] if ours["time_to_target"][str(t)] and hf["time_to_target"][str(t)]]
    out = {"target": None, "time_ratio_diffusers_over_ours": None}
    lines = []
    if both:
        t = min(both)
        a, b = ours["time_to_target"][str(t)]["train_seconds"], hf["time_to_target"][str(t)]["train_seconds"]
        out.update(target=t, seconds_diffusion_lite=a, seconds_diffusers=b, time_ratio_diffusers_over_ours=b / a)
        lines.append(f"FID/floor <= {t}: diffusion_lite after {a / 60:.2f} min, diffusers after {b / 60:.2f} min "
                     f"({b / a:.2f}x)")
    else:
        lines.append("no target was reached by both sides within the budget")
    for name, sd in result["sides"].items():
        if sd["final"]:
            lines.append(f"{name}: {sd['steps']} steps, {sd['images_per_s']:.1f} img/s, final FID/floor "
                         f"{sd['final']['fid_ratio']:.2f}")
    out["text"] = "\n".join(lines)
    return out


def main(argv: list[str] | None = None) -> dict:
    return run(common.parse(build_parser(), argv))


if __name__ == "__main__":
    main()
