"""``diffusion-lite train-clip``: train the CLIP-style text/image encoder pair (chapter 06)."""

from __future__ import annotations

import time
from pathlib import Path


def cmd_train_clip(args) -> None:
    import torch

    from .captions import class_prompts
    from .cli import CLIError, check_not_shipped, check_stem
    from .clip import CLIPConfig, CLIPModel, save_clip, zero_shot_accuracy
    from .clip_train import train_clip
    from .data import load_dataset
    from .utils import get_device

    stem = check_stem(args.out)
    check_not_shipped(args.out)
    existing = [f"{stem}{s}" for s in (".safetensors", ".json") if Path(stem + s).exists()]
    if existing:
        raise CLIError(f"{' and '.join(existing)} already exist: choose another --out, or delete them first (a "
                       "text-to-image run trained on that encoder would no longer resume)")
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.width % CLIPConfig.heads:  # checked before the data loads; CLIPConfig checks it again
        raise CLIError(f"--width {args.width}: expected a multiple of {CLIPConfig.heads} (the text encoder's "
                       "attention heads)")
    device = get_device(args.device)
    train = load_dataset(args.dataset, "train", subset=args.subset, balanced=args.subset is not None,
                         download=args.download)
    test = load_dataset(args.dataset, "test", subset=2000, download=args.download)
    if args.batch_size > len(train):  # a contrastive batch holds distinct images: none may repeat
        raise CLIError(f"--batch-size {args.batch_size} is larger than the {len(train)} training images; use "
                       f"--batch-size {len(train)} or less (or a larger --subset)")
    torch.manual_seed(args.seed)  # the initial weights too: the same command gives the same model
    model = CLIPModel.for_dataset(args.dataset, width=args.width)
    g = torch.Generator().manual_seed(args.seed)
    t0 = time.perf_counter()
    history = train_clip(model, train, steps=args.steps, batch_size=args.batch_size, lr=args.lr, generator=g,
                         device=device)
    minutes = (time.perf_counter() - t0) / 60
    model.eval()
    with torch.no_grad():
        acc = zero_shot_accuracy(model, test.images.to(device), test.labels.to(device), class_prompts(args.dataset))
    meta = {"dataset": {"name": args.dataset, "subset": args.subset},
            "card": {"steps": args.steps, "batch_size": args.batch_size, "lr": args.lr, "seed": args.seed,
                     "minutes": round(minutes, 2), "final_loss": round(sum(history[-20:]) / min(20, len(history)), 4),
                     "zero_shot_accuracy_test2000": round(acc, 4)}}
    stem = save_clip(stem, model, meta)
    print(f"zero-shot accuracy on 2,000 {args.dataset} test images: {acc:.2%} ({minutes:.1f} min of training)")
    print(f"wrote {stem}.safetensors and {stem}.json; train a text-to-image model on it with:")
    print(f"  diffusion-lite train --dataset {args.dataset} --text {stem} --cross-attn 7 --steps 4000 "
          "--out runs/text2img")


def add_parser(sub, common) -> None:
    from .cli import _positive, _seed

    p = sub.add_parser("train-clip", help="train a CLIP-style text/image encoder pair contrastively")
    p.add_argument("--dataset", default="mnist", help="mnist, fashion-mnist or cifar10")
    p.add_argument("--steps", type=_positive(), default=1500, help="optimizer steps")
    p.add_argument("--batch-size", type=_positive(), default=256)
    p.add_argument("--lr", type=_positive(float), default=2e-3)
    p.add_argument("--width", type=_positive(), default=64, help="text token width D (the U-Net's context_dim)")
    p.add_argument("--subset", type=_positive(), default=None, help="train on K images (balanced)")
    p.add_argument("--seed", type=_seed, default=0, help="seed of the initial weights and the batches")
    p.add_argument("--download", action="store_true", help="fetch the dataset with torchvision if not found (online)")
    p.add_argument("--out", required=True, help="checkpoint path (writes OUT.safetensors + OUT.json)")
    common(p)
    p.set_defaults(func=cmd_train_clip)
