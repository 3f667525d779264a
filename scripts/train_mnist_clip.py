"""Train the small MNIST CLIP and ship it as diffusion_lite/pretrained/mnist-clip.*

    .venv/bin/python scripts/train_mnist_clip.py --replace-shipped        # the shipped model (1 CPU thread)
    .venv/bin/python scripts/train_mnist_clip.py --steps 100 --out /tmp/clip   # a quick try

Writes NAME.safetensors + NAME.json (clip.save_clip) and a model card NAME.md with the command, steps,
wall time, zero-shot accuracy on the 10,000 test digits for several prompt wordings, text-to-image
recall@k, and how often the model prefers the right attribute word.
"""

from __future__ import annotations

import argparse
import json
import platform
import shlex
import sys
import time
from pathlib import Path

import torch

from diffusion_lite import captions as C
from diffusion_lite.cli import CLIError, check_not_shipped
from diffusion_lite.clip import CLIPModel, retrieval_recall, save_clip, zero_shot_accuracy
from diffusion_lite.clip_train import train_clip
from diffusion_lite.data import load_dataset

DEFAULT_OUT = Path(__file__).resolve().parents[1] / "diffusion_lite" / "pretrained" / "mnist-clip"
WORDINGS = ("{digit}", "{name}", "the digit {name}", "the number {digit}", "a handwritten {digit}",
            "a photo of a {name}", "a drawing of the digit {digit}")


def attribute_prompt(word: str, name: str) -> str:
    """"a thick seven", "a seven slanting right"."""
    return C.fix_articles(f"a {name} {word}" if word in C._POST_NOUN else f"a {word} {name}")


@torch.no_grad()
def attribute_preference(model: CLIPModel, images: torch.Tensor, labels: torch.Tensor) -> dict[str, float]:
    """For test images in the low or high bucket of an attribute: how often "a {low} {name}" vs
    "a {high} {name}" (right class name) ranks the right word first. 0.5 is chance."""
    buckets = C.attribute_buckets(images, labels, "mnist")
    names = C.class_names("mnist")
    img = torch.cat([model.encode_image(x) for x in images.split(500)])
    out = {}
    for attr in C.ATTRIBUTES:
        low, _, high = C.WORDS[attr]
        keep = buckets[attr] != 1
        ys = labels[keep].tolist()
        s_low = (img[keep] * model.encode_text([attribute_prompt(low, names[y]) for y in ys])).sum(1)
        s_high = (img[keep] * model.encode_text([attribute_prompt(high, names[y]) for y in ys])).sum(1)
        out[attr] = ((s_high > s_low) == (buckets[attr][keep] == 2)).float().mean().item()
    return out


@torch.no_grad()
def attribute_spearman(model: CLIPModel, images: torch.Tensor, labels: torch.Tensor) -> dict[str, float]:
    """Per digit, the rank correlation between the measured attribute and how much closer each image is
    to "a {high} {name}" than to "a {low} {name}"; averaged over the 10 digits. 1 = same order."""
    values, names = C.measure(images), C.class_names("mnist")
    img = torch.cat([model.encode_image(x) for x in images.split(500)])
    rank = lambda v: v.argsort().argsort().float()
    out = {}
    for attr in C.ATTRIBUTES:
        low, _, high = C.WORDS[attr]
        rs = []
        for c, name in enumerate(names):
            t_low, t_high = model.encode_text([attribute_prompt(low, name), attribute_prompt(high, name)])
            k = labels == c
            rs.append(torch.corrcoef(torch.stack([rank(img[k] @ (t_high - t_low)), rank(values[attr][k])]))[0, 1])
        out[attr] = torch.stack(rs).mean().item()
    return out


def evaluate(model: CLIPModel, test, seed: int = 0) -> dict:
    g = torch.Generator().manual_seed(seed)
    zero_shot = {w: zero_shot_accuracy(model, test.images, test.labels, C.class_prompts("mnist", w))
                 for w in WORDINGS}
    idx = torch.randperm(len(test.labels), generator=g)[:1000]
    x, y = test.images[idx], test.labels[idx]
    caps = C.make_captions(x, y, "mnist", generator=g, p_attribute=1.0)
    recall_instance = retrieval_recall(model, x, caps, ks=(1, 10))
    recall_class = retrieval_recall(model, x, caps, ks=(1, 10), relevant=y[:, None] == y[None])
    return {"zero_shot_accuracy": zero_shot, "recall_instance_1000": recall_instance,
            "recall_class_1000": recall_class, "attribute_preference": attribute_preference(model, x, y),
            "attribute_spearman": attribute_spearman(model, test.images, test.labels)}


def card(args, meta: dict, metrics: dict, n_params: int, size_mb: float) -> str:
    zs = "\n".join(f"| `{C.class_prompts('mnist', w)[7]}` | {100 * a:.2f}% |"
                   for w, a in metrics["zero_shot_accuracy"].items())
    ri, rc, ap = metrics["recall_instance_1000"], metrics["recall_class_1000"], metrics["attribute_preference"]
    sp = metrics["attribute_spearman"]
    cfg = meta["config"]  # added by save_clip
    return f"""# mnist-clip

A small CLIP (Radford et al. 2021) trained on MNIST captions (`diffusion_lite.captions.make_captions`:
varied wordings, half of them with measured thickness / slant / size words). Its text encoder's
per-token outputs (width D = {cfg['width']}, the U-Net's `context_dim`) are the text conditioning of
the text-to-image models.

    from diffusion_lite.checkpoints import load_pretrained
    clip = load_pretrained("mnist-clip")
    context, mask = clip.text_tokens(["a thick seven"])   # (1, {cfg['max_len']}, {cfg['width']}), (1, {cfg['max_len']})

- Command: `{meta['train']['command']}`
- Steps: {args.steps} x batch {args.batch_size} (about {args.steps * args.batch_size / 60000:.1f} epochs of the
  60,000 training digits), AdamW lr {args.lr}, seed {args.seed}, `positives="diagonal"`
- Wall time: {meta['train']['wall_time_s'] / 60:.1f} min on {meta['train']['machine']} ({args.threads} thread)
- Size: {n_params:,} parameters, {size_mb:.2f} MB. Text: {cfg['layers']} causal pre-LN layers, width
  {cfg['width']}, {cfg['heads']} heads, vocabulary {cfg['vocab_size']} words (word-level), max {cfg['max_len']} tokens.
  Image: CNN channels {tuple(cfg['cnn_channels'])}. Joint space E = {cfg['embed_dim']}.
- Final loss {meta['train']['final_loss']:.3f} (mean of the last 50 steps); learned logit scale
  exp(t) = 1 / temperature = {meta['train']['logit_scale']:.1f} (temperature {1 / meta['train']['logit_scale']:.3f})

## Zero-shot accuracy on the 10,000 MNIST test digits

| prompt wording (class 7 shown) | accuracy |
| --- | --- |
{zs}

## Text-to-image retrieval (1,000 test digits, one attribute caption each)

- instance (the caption's own image): recall@1 {100 * ri[1]:.1f}%, recall@10 {100 * ri[10]:.1f}%
  (captions name a class and up to three coarse attributes, so ~100 images fit each caption equally)
- class level (any image of the caption's digit): recall@1 {100 * rc[1]:.1f}%, recall@10 {100 * rc[10]:.1f}%

## Attribute words (same 1,000 digits, those in the lowest or highest 20% of an attribute)

"a thin seven" vs "a thick seven" etc. with the right digit name: the right word wins for
thickness {100 * ap['thickness']:.1f}%, slant {100 * ap['slant']:.1f}%, size {100 * ap['size']:.1f}% (chance 50%).

Finer: over all 10,000 test digits, per digit, the rank correlation (Spearman) between the measured
attribute and (image . text("a thick seven") - image . text("a thin seven")), averaged over digits:
thickness {sp['thickness']:.2f}, slant {sp['slant']:.2f}, size {sp['size']:.2f} (1 = the same order, 0 = unrelated).
"""


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--steps", type=int, default=1500)
    p.add_argument("--batch-size", type=int, default=256)
    p.add_argument("--lr", type=float, default=2e-3)
    p.add_argument("--width", type=int, default=64, help="text token width D (the U-Net's context_dim)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--device", default="cpu")
    p.add_argument("--out", type=Path, default=DEFAULT_OUT)
    p.add_argument("--replace-shipped", action="store_true",
                   help="allow --out inside the package's pretrained folder (the default --out): re-training the "
                   "shipped model regenerates its card, so re-apply the card's hand-written sections from git")
    args = p.parse_args(argv)
    try:  # before training, not after: the same guard as every diffusion-lite command
        check_not_shipped(str(args.out), replace_shipped=args.replace_shipped, can_replace=True,
                          how_to_replace="add --replace-shipped", source_pretrained=DEFAULT_OUT.parent)
    except CLIError as e:
        p.error(str(e))

    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)  # weight initialisation
    g = torch.Generator().manual_seed(args.seed)
    train, test = load_dataset("mnist", "train"), load_dataset("mnist", "test")
    model = CLIPModel.for_dataset("mnist", width=args.width)
    n_params = sum(p.numel() for p in model.parameters())
    t0 = time.time()
    history = train_clip(model, train, steps=args.steps, batch_size=args.batch_size, lr=args.lr, generator=g,
                         device=args.device)
    wall = time.time() - t0
    model.cpu().eval()
    metrics = evaluate(model, test, seed=args.seed)
    command = "python scripts/train_mnist_clip.py " + shlex.join(sys.argv[1:] if argv is None else argv)
    meta = {"dataset": "mnist", "metrics": metrics, "config": model.cfg.to_dict(),
            "train": {"command": command.strip(), "steps": args.steps, "batch_size": args.batch_size, "lr": args.lr,
                      "seed": args.seed, "wall_time_s": round(wall, 1), "machine": platform.machine() + " CPU"
                      if args.device == "cpu" else args.device, "final_loss": sum(history[-50:]) / len(history[-50:]),
                      "logit_scale": model.logit_scale.exp().item()}}
    stem = save_clip(args.out, model, meta)
    size_mb = stem.with_suffix(".safetensors").stat().st_size / 1e6
    stem.with_suffix(".md").write_text(card(args, meta, metrics, n_params, size_mb), encoding="utf-8")
    print(json.dumps(metrics, indent=2))
    print(f"saved {stem}.{{safetensors,json,md}} ({size_mb:.2f} MB) in {wall / 60:.1f} min")


if __name__ == "__main__":
    main()
