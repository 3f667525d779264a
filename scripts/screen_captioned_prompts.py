"""Screen (BENCHMARKS section 4): the issue-3 protocol with prompts that are captions of real test digits.

    python scripts/screen_captioned_prompts.py --p-attribute 1.0 --out benchmarks/results/experiments/captioned_p1.json

Text-to-image FID is usually measured COCO-style: the prompts are captions of held-out real images, so the
prompts carry the variety of the reference set. The issue-3 protocol instead asks for each digit in eight
fixed phrasings that name only the digit, so everything a prompt leaves unsaid (thickness, slant, size) is left
to the model, and guidance at s = 3 pushes it towards the most class-evident digits (thick and large; BENCHMARKS
section 4, "Are the captions to blame?").

This screen keeps everything else of the issue-3 protocol (evaluation.py: n samples, n/10 per digit, the same
x_T, reference and floor draws, DDIM 50, s = 3) and only changes the prompts: the k-th sample of digit c is
prompted with a caption (captions.make_captions, the generator the model was trained with) of a third draw of
mnist-test digits of class c, disjoint from the reference and floor draws. Every caption names its digit; with
probability ``--p-attribute`` it also names one to three of the digit's measured attributes that captions
speak ("a thin seven slanting left"; middling values, "regular" and "medium", are never said). It also reports
the share of thin / thick and small / large digits among the samples and the reference. Not a package feature.
"""

from __future__ import annotations

import argparse
import datetime
import json

import torch

from diffusion_lite import captions, load_pretrained
from diffusion_lite.data import load_dataset
from diffusion_lite.evaluation import NUM_CLASSES, _setup, eval_prompts, generate, score_samples


def third_draw(ref_labels: torch.Tensor, labels: torch.Tensor, seed: int) -> torch.Tensor:
    """Indices into mnist-test, per digit the k images after the 2k that prepare_reference draws (same generator)."""
    g = torch.Generator().manual_seed(seed + 1_000_003)  # as evaluation.prepare_reference
    idx = []
    for c in range(NUM_CLASSES):
        k = int((labels == c).sum())
        pool = torch.nonzero(ref_labels == c).flatten()
        pool = pool[torch.randperm(pool.numel(), generator=g)]
        idx.append(pool[2 * k:3 * k])
    return torch.cat(idx)  # (n,) ordered digit by digit


def shares(images: torch.Tensor, labels: torch.Tensor) -> dict[str, float]:
    b = captions.attribute_buckets(images, labels)
    return {f"{a}_{w}": round(float((b[a] == i).double().mean()), 3)
            for a, words in (("thickness", ("thin", "thick")), ("size", ("small", "large")))
            for i, w in zip((0, 2), words)}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--p-attribute", type=float, default=1.0, help="chance that a caption names attributes")
    p.add_argument("--fixed-phrasings", action="store_true", help="the issue-3 prompts instead (a control)")
    p.add_argument("--guidance", type=float, default=3.0)
    p.add_argument("--guidance-interval", type=int, nargs=2, default=None)
    p.add_argument("--n", type=int, default=1000)
    p.add_argument("--steps", type=int, default=50)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--out", required=True)
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    pipe = load_pretrained("mnist-text2img")
    classifier, labels, ref = _setup(pipe, None, "mnist-test", args.n, args.seed)
    test = load_dataset("mnist", "test")
    idx = third_draw(test.labels, labels, args.seed)
    if args.fixed_phrasings:
        prompts = eval_prompts(labels)
    else:
        order = torch.cat([torch.nonzero(labels == c).flatten() for c in range(NUM_CLASSES)])  # sample slots by digit
        caps = captions.make_captions(test.images[idx], test.labels[idx], "mnist",
                                      torch.Generator().manual_seed(args.seed), args.p_attribute)
        prompts = [""] * args.n
        for slot, caption in zip(order.tolist(), caps):
            prompts[slot] = caption
        assert all(test.labels[idx][order.argsort()].eq(labels).tolist())  # each caption is of the asked digit
    samples = generate(pipe, args.n, prompts, guidance=args.guidance, steps=args.steps, seed=args.seed,
                       guidance_interval=tuple(args.guidance_interval) if args.guidance_interval else None,
                       progress=True)
    r = score_samples(classifier, samples, ref, labels, seed=args.seed)
    r["attribute_shares"] = {"samples": shares(samples, labels),  # and the captioned real digits
                             "real": shares(test.images[idx], test.labels[idx])}
    r["settings"] = {k: v for k, v in vars(args).items() if k != "out"}
    r["prompt_examples"] = prompts[:20]
    r["date_utc"] = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M")
    with open(args.out, "w", encoding="utf-8") as f:
        json.dump(r, f, indent=1)
    print({k: round(r[k], 4) for k in ("accuracy", "fid", "fid_floor", "fid_ratio", "diversity_ratio")},
          r["attribute_shares"])


if __name__ == "__main__":
    main()
