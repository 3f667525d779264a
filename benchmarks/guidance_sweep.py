"""Guidance sweep and attribute adherence of the shipped text-to-image model.

    python -m benchmarks.guidance_sweep --threads 2
    python -m benchmarks.guidance_sweep --text /work/runs/text2img --n 500 --scales 0 1 2 3 5 8

evaluation.guidance_sweep: accuracy, FID/floor, KID and diversity at each classifier-free guidance
scale s (same starting noise, prompts and reference draw for every s); then
attribute_eval.attribute_adherence_report at ``--attribute-guidance``: paired samples for "a thin seven" /
"a thick seven", "... slanting left / right", "a small / large ..." from the same noise.
Writes results/guidance_sweep.json and guidance_sweep.png.
"""

from __future__ import annotations

import argparse

from . import common

NAME = "guidance_sweep"


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog=f"python -m benchmarks.{NAME}", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    common.add_common_args(p)
    p.add_argument("--text", default="mnist-text2img", help="text-to-image checkpoint (name or path)")
    p.add_argument("--scales", type=float, nargs="+", default=[0, 1, 2, 3, 5, 8])
    p.add_argument("--n", type=int, default=None, help="samples per scale (default 500, quick 20)")
    p.add_argument("--steps", type=int, default=None, help="DDIM steps (default 50, quick 2)")
    p.add_argument("--attribute-n", type=int, default=None, help="pairs per digit and attribute (default 20, quick 1)")
    p.add_argument("--attribute-guidance", type=float, default=3.0)
    p.add_argument("--batch-size", type=int, default=250)
    p.add_argument("--seed", type=int, default=0)
    return p


def run(args) -> dict:
    from diffusion_lite.attribute_eval import attribute_adherence_report
    from diffusion_lite.checkpoints import load
    from diffusion_lite.evaluation import guidance_sweep
    from diffusion_lite.metrics import load_eval_classifier

    rt = common.runtime_from_args(args)
    path = common.out_dir(args) / f"{common.result_name(NAME, args)}.json"
    if rt is None:
        return common.no_gpu_result(NAME, args, path)
    q = args.quick
    s = {"checkpoint": args.text, "scales": args.scales, "n": args.n or (20 if q else 500),
         "steps": args.steps or (2 if q else 50), "sampler": "ddim", "seed": args.seed, "batch_size": args.batch_size,
         "attribute_n_per_digit": args.attribute_n or (1 if q else 20), "attribute_guidance": args.attribute_guidance}
    result = common.header(NAME, rt, args, s)
    pipe = load(args.text, rt.device)
    classifier = load_eval_classifier(rt.device)
    kw = dict(steps=s["steps"], sampler="ddim", seed=s["seed"], batch_size=s["batch_size"], classifier=classifier,
              progress=not q)
    print(f"[{NAME}] guidance sweep of {args.text}: scales {args.scales}, n {s['n']}, DDIM {s['steps']} steps",
          flush=True)
    result["sweep"] = guidance_sweep(pipe, args.scales, n=s["n"], **kw)  # float32 on rt.device, as all quality
    for r in result["sweep"]:
        print(f"  s={r['guidance']:<4} accuracy {r['accuracy']:.3f}, FID {r['fid']:.3f} "
              f"(ratio {r['fid_ratio']:.2f}), diversity {r['diversity']:.2f} / real {r['diversity_real']:.2f}",
              flush=True)
    result["attribute_adherence"] = attribute_adherence_report(
        pipe, n_per_digit=s["attribute_n_per_digit"], guidance=s["attribute_guidance"], **kw)
    for a, r in result["attribute_adherence"]["attributes"].items():
        print(f"  {a}: adherence {r['adherence']:.3f} ({r['example_prompts'][0]!r} vs {r['example_prompts'][1]!r}), "
              f"mean shift {r['mean_shift']:+.3f}, accuracy {r['accuracy']:.3f}")
    result["machine_end"] = {"load_average_1_5_15min": common.load_average()}
    common.write_result(path, result)
    if not args.no_plot:
        from . import plots
        plots.plot_guidance(result, path.with_suffix(".png"))
    return result


def main(argv: list[str] | None = None) -> dict:
    return run(common.parse(build_parser(), argv))


if __name__ == "__main__":
    main()
