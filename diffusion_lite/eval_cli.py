"""``diffusion-lite evaluate``: score a checkpoint with the evaluation protocol of evaluation.py.

    diffusion-lite evaluate --checkpoint mnist-text2img --n 500 --guidance 3 --steps 50 --out report.json

Writes the JSON report and prints a short table. Registered on cli.py's subparsers by ``add_parser``.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path


def _fmt(v) -> str:
    if v is None:
        return "-"
    return f"{v:.4g}" if isinstance(v, float) else str(v)


def _kid_excess(report: dict):
    """KID - floor, or why an unconditional model's report has none (evaluation.score_samples): its draws are
    random, not class-balanced, so KID itself is centred on 0 and subtracting the floor would only add noise."""
    v = report.get("kid_excess")
    if v is None and (report.get("settings") or {}).get("model") == "unconditional":
        return "n/a (unconditional model: read KID itself, ~0 for a perfect one)"
    return v


def format_report(report: dict) -> str:
    """A short two-column table of the headline numbers of an evaluate_pipeline report."""
    acc = report.get("accuracy")
    rows = [("n", report["n"]), ("conditional accuracy", None if acc is None else f"{acc:.1%}"), ("FID", report["fid"]),
            ("FID floor (real vs real)", report["fid_floor"]), ("FID / floor", report["fid_ratio"]),
            ("KID", report["kid_mean"]), ("KID floor", report["kid_floor"]),
            ("KID - floor", _kid_excess(report)), ("diversity", report["diversity"]),
            ("diversity of real data", report["diversity_real"]), ("images/s (sampling)", report["images_per_s"]),
            ("wall time (s)", report["wall_time_s"])]
    for a, r in report.get("attribute_adherence", {}).get("attributes", {}).items():
        rows.append((f"attribute adherence: {a}", r["adherence"]))
        if "recognised_pairs" in r:  # pairs whose two samples are both the asked class
            rows.append((f"  over {r['recognised_pairs']} recognised pairs", r["adherence_recognised"]))
    width = max(len(k) for k, _ in rows)
    return "\n".join(f"{k:<{width}}  {_fmt(v)}" for k, v in rows)


def cmd_evaluate(args) -> None:
    from .attribute_eval import attribute_adherence_report
    from .checkpoints import load
    from .cli import CLIError, _setup
    from .evaluation import _check_pipe, evaluate_pipeline
    from .files import atomic_write
    from .guidance_cli import _cads, check_guidance_args
    from .metrics import load_eval_classifier

    device = _setup(args)
    out = Path(args.out)
    if out.suffix.lower() != ".json":
        raise CLIError(f"--out must end in .json, got {out.name!r}")
    pipe = load(args.checkpoint, device)
    if not hasattr(pipe, "sample"):
        raise CLIError(f"{args.checkpoint} is not a diffusion model checkpoint")
    if args.attributes and not pipe.is_text_conditional:
        raise CLIError("--attributes needs a text-conditional checkpoint")
    if args.n < 2:
        raise CLIError(f"--n must be >= 2 (FID and diversity need two samples or more), got {args.n}")
    check_guidance_args(args, pipe)
    try:
        dataset = _check_pipe(pipe)  # mnist or fashion-mnist: its classifier, class prompts and reference split
    except ValueError as e:
        raise CLIError(str(e)) from None
    reference = args.reference or f"{dataset}-test"
    if reference.rsplit("-", 1)[0] != dataset:
        raise CLIError(f"--reference {reference} is not {dataset}'s, the data this model was trained on; use "
                       f"{dataset}-test or {dataset}-train")
    if args.attributes:  # before the long sampling: a model whose encoder never learned the attribute words
        from .attribute_eval import check_attribute_words
        from .attributes import DATASET_ATTRIBUTES
        try:
            check_attribute_words(pipe, DATASET_ATTRIBUTES[dataset])
        except ValueError as e:
            raise CLIError(f"--attributes: {args.checkpoint}: {e}") from None
    if args.download:  # the reference images; a pip install has no data/ folder
        from .data import load_dataset
        load_dataset(dataset, reference.rsplit("-", 1)[1], download=True)
    classifier = load_eval_classifier(device, dataset)
    kw = dict(guidance=3.0 if args.guidance is None else args.guidance, steps=args.steps, sampler=args.sampler,
              seed=args.seed, batch_size=args.batch_size, classifier=classifier, progress=not args.quiet,
              guidance_interval=tuple(args.guidance_interval) if args.guidance_interval else None,
              cads=_cads(args, pipe))
    report = evaluate_pipeline(pipe, n=args.n, eta=args.eta, reference=reference, spacing=args.spacing, **kw)
    report["settings"]["checkpoint"] = str(args.checkpoint)
    if args.attributes:
        report["attribute_adherence"] = attribute_adherence_report(pipe, n_per_digit=args.attributes,
                                                                   spacing=args.spacing, **kw)
    text = json.dumps(report, indent=2) + "\n"
    # an older report is replaced whole or kept
    atomic_write(out, lambda tmp: Path(tmp).write_text(text, encoding="utf-8"))
    print(format_report(report))
    print(f"wrote {out}")


def add_parser(subparsers, common) -> argparse.ArgumentParser:
    """Register ``evaluate`` on cli.py's subparsers; ``common(sp)`` adds --device, --threads and --quiet."""
    from .cli import _positive, _seed
    from .eval_reference import REFERENCES
    from .guidance_cli import add_guidance_args
    from .sampling import SAMPLERS, SPACINGS
    e = subparsers.add_parser("evaluate", help="FID/KID (with the real-vs-real floor), accuracy, diversity of an "
                              "MNIST or Fashion-MNIST model")
    e.add_argument("--checkpoint", required=True, help="checkpoint path, run folder, or pretrained name")
    e.add_argument("--n", type=_positive(), required=True,
                   help="samples (text models: a multiple of 10, at least 20; n/10 per class)")
    add_guidance_args(e)
    e.add_argument("--steps", type=_positive(), default=50, help="sampler steps")
    e.add_argument("--sampler", choices=SAMPLERS, default="ddim", help="ddim, ddpm or dpm++2m (as for sample)")
    e.add_argument("--spacing", choices=SPACINGS, default="linspace", help="the time grid (as for sample)")
    e.add_argument("--eta", type=float, default=0.0, help="DDIM noise (0 deterministic)")
    e.add_argument("--seed", type=_seed, default=0, help="seed of the samples' noise and of the real reference draw")
    e.add_argument("--batch-size", type=_positive(), default=250)
    e.add_argument("--reference", choices=list(REFERENCES), default=None,
                   help="the real images compared with (default: the test split of the model's dataset)")
    e.add_argument("--attributes", type=_positive(), default=None, metavar="N_PER_DIGIT",
                   help="also measure attribute adherence with N paired samples per class and attribute "
                        "(MNIST: thickness, slant, size; Fashion-MNIST: brightness, pattern)")
    e.add_argument("--download", action="store_true",
                   help="fetch the reference images with torchvision if they are not found (online)")
    e.add_argument("--out", required=True, help="report.json")
    common(e)
    e.set_defaults(func=cmd_evaluate)
    return e
