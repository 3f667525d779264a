"""Screen (BENCHMARKS section 4): classifier-free guidance with a separate unconditional model.

    python scripts/screen_separate_uncond.py --guidance 3 --out benchmarks/results/experiments/sep_uncond_s3.json

Ho & Salimans (2022, sec. 3.2) note that the unconditional model of classifier-free guidance may be a separate
network. Here the conditional branch is the shipped mnist-text2img and the unconditional branch the shipped
mnist-uncond (same cosine schedule, T = 1000, eps prediction):

    eps = eps_uncond_model(x_t, t) + s (eps_text2img(x_t, t, prompt) - eps_uncond_model(x_t, t))

scored with the issue-3 protocol (evaluation.evaluate_pipeline: n = 1,000, DDIM 50, same noise, prompts and
reference as `diffusion-lite evaluate`). Not a package feature: it asks how much of plain guidance's FID
comes from the text model's own, weaker unconditional branch.
"""

from __future__ import annotations

import argparse
import datetime
import json

import torch

from diffusion_lite import load_pretrained
from diffusion_lite.evaluation import evaluate_pipeline


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--guidance", type=float, default=3.0)
    p.add_argument("--n", type=int, default=1000)
    p.add_argument("--steps", type=int, default=50)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--out", required=True)
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    pipe, uncond = load_pretrained("mnist-text2img"), load_pretrained("mnist-uncond")
    conditional = pipe.model_fn

    def model_fn(prompts, *, guidance=3.0, **_):  # replaces pipe.model_fn: same call as the pipeline makes
        eps_c_fn, eps_u_fn = conditional(prompts, guidance=1.0), uncond.model_fn()

        def fn(x_t: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
            eps_c, eps_u = eps_c_fn(x_t, t), eps_u_fn(x_t, t)  # (B, 1, 28, 28) each
            return eps_u + guidance * (eps_c - eps_u)
        return fn

    pipe.model_fn = model_fn
    r = evaluate_pipeline(pipe, n=args.n, guidance=args.guidance, steps=args.steps)
    r["screen"] = f"guidance {args.guidance} with the shipped mnist-uncond as the unconditional branch"
    r["date_utc"] = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M")
    with open(args.out, "w", encoding="utf-8") as f:
        json.dump(r, f, indent=1)
    print({k: round(r[k], 4) for k in ("accuracy", "fid", "fid_floor", "fid_ratio", "diversity_ratio")})


if __name__ == "__main__":
    main()
