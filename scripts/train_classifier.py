"""Train an evaluation classifier and ship it as diffusion_lite/pretrained/DATASET-classifier.*

    .venv/bin/python scripts/train_classifier.py --replace-shipped   # the shipped MNIST one (single CPU thread)
    .venv/bin/python scripts/train_classifier.py --dataset fashion-mnist --replace-shipped   # Fashion-MNIST's
    .venv/bin/python scripts/train_classifier.py --epochs 1 --out /tmp/clf   # a quick try

Writes NAME.safetensors + NAME.json (checkpoints.save_checkpoint) and a model card NAME.md with the
command, steps, wall time, test accuracy and the real-vs-real FID floors in the classifier's features.
"""

from __future__ import annotations

import argparse
import platform
import shlex
import sys
import time
from pathlib import Path

import torch

from diffusion_lite import classifier as C
from diffusion_lite.cli import CLIError, check_not_shipped
from diffusion_lite.data import load_dataset
from diffusion_lite.metrics import extract_features, fid

DEFAULT_OUT = Path(__file__).resolve().parents[1] / "diffusion_lite" / "pretrained" / "mnist-classifier"
NAMES = {"mnist": "MNIST", "fashion-mnist": "Fashion-MNIST"}


def fid_floors(model: C.Classifier, train, test, sizes=(1000, 5000), seed: int = 0) -> dict[int, float]:
    """FID(test subset of n, disjoint train subset of n) for each n: the real-vs-real floor."""
    g = torch.Generator().manual_seed(seed)
    out = {}
    for n in sizes:
        it = torch.randperm(test.images.shape[0], generator=g)[:n]
        ir = torch.randperm(train.images.shape[0], generator=g)[:n]
        out[n] = fid(extract_features(model, test.images[it]), extract_features(model, train.images[ir]))
    return out


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--dataset", choices=sorted(NAMES), default="mnist")
    p.add_argument("--epochs", type=float, default=3.0)
    p.add_argument("--batch-size", type=int, default=128)
    p.add_argument("--lr", type=float, default=3e-3)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--device", default="cpu")
    p.add_argument("--out", type=Path, default=None, help="default: the shipped DATASET-classifier")
    p.add_argument("--replace-shipped", action="store_true",
                   help="allow --out inside the package's pretrained folder (the default --out): re-training the "
                   "shipped model regenerates its card, so re-apply the card's hand-written sections from git")
    args = p.parse_args(argv)
    if args.out is None:
        args.out = DEFAULT_OUT.parent / f"{args.dataset}-classifier"
    try:  # before training, not after: the same guard as every diffusion-lite command
        check_not_shipped(str(args.out), replace_shipped=args.replace_shipped, can_replace=True,
                          how_to_replace="add --replace-shipped", source_pretrained=DEFAULT_OUT.parent)
    except CLIError as e:
        p.error(str(e))

    torch.set_num_threads(args.threads)
    g = torch.Generator().manual_seed(args.seed)
    torch.manual_seed(args.seed)  # weight initialisation
    train, test = load_dataset(args.dataset, "train"), load_dataset(args.dataset, "test")
    model = C.Classifier(C.ClassifierConfig())
    n_params = sum(p.numel() for p in model.parameters())
    record = C.train_classifier(model, train, epochs=args.epochs, batch_size=args.batch_size, lr=args.lr,
                              generator=g, device=args.device)
    model.cpu().eval()
    t0 = time.time()
    test_acc = C.accuracy(model, test.images, test.labels)
    train_acc = C.accuracy(model, train.images[:10000], train.labels[:10000])
    floors = fid_floors(model, train, test)
    command = "python scripts/train_classifier.py " + shlex.join(sys.argv[1:] if argv is None else argv)
    meta = {"dataset": args.dataset, "train": record, "test_accuracy": test_acc, "n_params": n_params,
            "fid_floor": {str(k): v for k, v in floors.items()}, "command": command.strip(),
            "torch": torch.__version__, "threads": args.threads}
    stem = C.save_classifier(args.out, model, meta)
    print(f"test accuracy {test_acc:.4f}, train[:10k] {train_acc:.4f}, training {record['wall_time_s']} s, "
          f"floors {floors} (eval {time.time() - t0:.0f} s) -> {stem}")

    name = NAMES[args.dataset]
    card = f"""# {args.dataset}-classifier

The evaluation classifier for {name} (diffusion_lite.classifier.Classifier, {n_params:,} parameters). Its
{model.cfg.feature_dim}-d penultimate features are the feature space of FID/KID in diffusion_lite.metrics;
its predictions give the conditional accuracy of generated images.

- Command: `{command.strip()}` (from the repository root, with `.venv/bin/python`)
- Data: {name} train (60,000 images), random shifts of up to {record['max_shift']} px;
  test = {name} test (10,000)
- Training: {record['steps']} steps ({record['epochs']} epochs) of batch {record['batch_size']}, AdamW
  (lr {record['lr']}, one-cycle, weight decay {record['weight_decay']}), label smoothing
  {record['label_smoothing']}, seed {args.seed}
- Wall time: {record['wall_time_s']} s on {args.threads} CPU thread(s)
  ({platform.processor() or platform.machine()}, torch {torch.__version__})
- **Test accuracy: {100 * test_acc:.2f}%** (train subset of 10k: {100 * train_acc:.2f}%)

## Real-vs-real FID floor in this feature space

FID between a random {name}-test subset and a disjoint random {name}-train subset of the same size
(the best score a perfect generator can expect at that sample count; FID is biased upward at small n):

| n vs n | FID floor |
|---|---|
""" + "".join(f"| {k} vs {k} | {v:.3f} |\n" for k, v in floors.items()) + """
These numbers are comparable only to FIDs computed with this classifier at the same sample count.
"""
    stem.with_suffix(".md").write_text(card, encoding="utf-8")


if __name__ == "__main__":
    main()
