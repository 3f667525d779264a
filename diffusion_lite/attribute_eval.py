"""Attribute adherence of a text-to-image pipeline: does "a thick seven" come out thicker than "a thin seven"?

    report = attribute_adherence_report(load_pretrained("mnist-text2img"), n_per_digit=20, guidance=3.0)
    report["attributes"]["thickness"]["adherence"]  # 0.5: the word is ignored, 1: always obeyed

For each attribute of the model's dataset (attributes.DATASET_ATTRIBUTES: thickness, slant and size of digits;
brightness and pattern of garments) and each class, pairs of samples are drawn from the same starting noise
x_T with the low and the high word ("a thin seven" / "a thick seven", "a seven slanting left" / "a seven
slanting right", "a small seven" / "a large seven"; "a dark coat" / "a light coat", "a plain coat" / "a
patterned coat"), and measured on the pixels with the same functions that wrote the training captions
(attributes.MEASURES). Adherence is the fraction of pairs where the high word measures more
(metrics.attribute_adherence, paired). The report's "per_digit" holds it per class (digit or garment).
"""

from __future__ import annotations

import time
from dataclasses import asdict
from typing import Any, Sequence

import torch

from . import attributes as A
from . import captions, metrics
from .classifier import Classifier
from .evaluation import IMAGE_SHAPE, _check_pipe, _classifier_for, generate
from .guidance import CADS

ATTRIBUTE_PAIRS = {a: (A.WORDS[a][0], A.WORDS[a][2]) for a in A.MEASURES}


def attribute_prompt(word: str, digit: int, dataset: str = "mnist") -> str:
    """'a thick seven', 'a seven slanting right', 'a dark coat': the attribute word before the noun, slant
    phrases after; ``digit`` is the class index (for Fashion-MNIST 4 is the coat)."""
    name = captions.class_names(dataset)[digit]
    return captions.fix_articles(f"a {name} {word}" if word.startswith("slanting") else f"a {word} {name}")


def check_attribute_words(pipe, attributes: Sequence[str]) -> None:
    """ValueError if the pipeline's tokenizer has never seen the low or high word of an attribute (a model
    trained on captions without them; a Hugging Face tokenizer knows every word, so it always passes)."""
    tok = getattr(getattr(pipe, "text", None), "tokenizer", None)
    if not hasattr(tok, "unknown_words"):
        return
    unknown = [w for a in attributes for w in ATTRIBUTE_PAIRS[a] if tok.unknown_words(w)]
    if unknown:
        raise ValueError(f"this model's text encoder never saw the attribute words {', '.join(map(repr, unknown))} "
                         "(it was trained on captions without them), so there is no adherence to measure")


def attribute_adherence_report(pipe, *, n_per_digit: int = 10, digits: Sequence[int] = tuple(range(10)),
                               attributes: Sequence[str] | None = None, guidance: float = 3.0, steps: int = 50,
                               sampler: str = "ddim", seed: int = 0, batch_size: int = 250,
                               classifier: Classifier | None = None, progress: bool = False,
                               guidance_interval: tuple[int, int] | None = None,
                               cads: CADS | None = None, spacing: str = "linspace") -> dict[str, Any]:
    """Paired samples for "a thin seven" / "a thick seven" (and slant, size; for a Fashion-MNIST model "a dark
    coat" / "a light coat" and plain / patterned) from the same x_T, measured with attributes.MEASURES;
    adherence = fraction of pairs where the high word measures more (metrics.attribute_adherence, paired; 0.5 =
    the word is ignored). ``attributes``: default all of the dataset's; ``digits``: class indices. Per
    attribute: adherence, means, mean_shift, per-class adherence ("per_digit"), the classifier accuracy of
    the attribute samples for their class, and "adherence_recognised": adherence over the "recognised_pairs"
    only, those whose two samples the classifier both assigns to the asked class (None if there are none). A
    blank or broken sample measures 0 on every attribute (the low end of each but slant, where 0 is upright), so
    a pair with one can count as obeyed ("a thin seven" drawn blank); this second number leaves such pairs out.
    spacing: the sampler's time grid (``sampling.timesteps``)."""
    dataset = _check_pipe(pipe)
    if not pipe.is_text_conditional:
        raise ValueError("attribute adherence needs a text-conditional pipeline; this one is unconditional")
    own = A.DATASET_ATTRIBUTES[dataset]
    attributes = own if attributes is None else (attributes,) if isinstance(attributes, str) else tuple(attributes)
    classes = len(captions.class_names(dataset))
    unknown = [a for a in attributes if a not in own]
    if unknown or not attributes or n_per_digit < 1 or not digits or not all(0 <= d < classes for d in digits):
        raise ValueError(f"expected attributes from {list(own)} (this {dataset} model's), n_per_digit >= 1 and "
                         f"classes in [0, {classes}); got {list(attributes)}, {n_per_digit}, {list(digits)}")
    check_attribute_words(pipe, attributes)
    classifier = _classifier_for(pipe, classifier, dataset)
    t0 = time.perf_counter()
    labels = torch.tensor([d for d in digits for _ in range(n_per_digit)])
    n = labels.numel()
    x_T = torch.randn((n, *IMAGE_SHAPE), generator=torch.Generator().manual_seed(seed)).to(pipe.dtype)
    kw = dict(guidance=guidance, steps=steps, sampler=sampler, seed=seed, batch_size=batch_size, x_T=x_T,
              progress=progress, guidance_interval=guidance_interval, cads=cads, spacing=spacing)
    out: dict[str, Any] = {"settings": {"n_per_digit": n_per_digit, "digits": list(digits), "guidance": guidance,
                                        "steps": steps, "sampler": sampler, "spacing": spacing, "seed": seed,
                                        "guidance_interval": list(guidance_interval) if guidance_interval else None,
                                        "cads": asdict(cads) if cads else None,
                                        "dataset": dataset,
                                        "pairs": {a: list(ATTRIBUTE_PAIRS[a]) for a in attributes}},
                           "attributes": {}}
    for a in attributes:
        low, high = ATTRIBUTE_PAIRS[a]
        imgs = {w: generate(pipe, n, [attribute_prompt(w, int(d), dataset) for d in labels], **kw)
                for w in (low, high)}
        fn = A.MEASURES[a]
        res = metrics.attribute_adherence(fn, imgs[low], imgs[high], paired=True)
        res["per_digit"] = {int(d): metrics.attribute_adherence(fn, imgs[low][labels == d], imgs[high][labels == d],
                                                                paired=True)["adherence"] for d in digits}
        pred = {w: metrics._features_and_logits(classifier, imgs[w])[1].argmax(1) for w in (low, high)}  # (n,)
        ok = (pred[low] == labels) & (pred[high] == labels)  # (n,) both samples of the pair are the asked class
        res["accuracy"] = float(torch.cat([pred[low] == labels, pred[high] == labels]).double().mean())
        res["recognised_pairs"] = int(ok.sum())
        res["adherence_recognised"] = (metrics.attribute_adherence(fn, imgs[low][ok], imgs[high][ok], paired=True)
                                       ["adherence"] if ok.any() else None)
        res["example_prompts"] = [attribute_prompt(w, int(digits[0]), dataset) for w in (low, high)]
        out["attributes"][a] = res
    out["wall_time_s"] = round(time.perf_counter() - t0, 3)
    return out
