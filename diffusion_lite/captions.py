"""Captions from labels and from attributes measured on the pixels (chapter 06).

A class label becomes varied natural language ("a handwritten 7", "the digit seven", "a photo of a seven",
...), and sometimes carries words for attributes measured from the image itself (attributes.py, whose names
this module re-exports, so ``captions.thickness`` works too): for MNIST thickness, slant and size, "a thick
seven slanting right"; for Fashion-MNIST brightness and pattern, "a dark patterned t-shirt". The
tokenizer's vocabulary is every word these captions can say (``all_vocabulary``).
"""

from __future__ import annotations

import numbers
import re
from collections.abc import Sequence

import torch

from .attributes import (  # noqa: F401  (re-exported: captions.thickness, captions.WORDS, ...)
    ATTRIBUTES,
    CLASS_THRESHOLDS,
    DATASET_ATTRIBUTES,
    MEASURES,
    QUANTILES,
    THRESHOLDS,
    WORDS,
    attribute_buckets,
    attribute_words,
    brightness,
    compute_thresholds,
    measure,
    pattern,
    size,
    slant,
    thickness,
)
from .tokenizer import split_words
from .utils import generator_device

SYNONYMS = {"thin": ("thin", "slim"), "thick": ("thick", "bold", "heavy"), "small": ("small", "little"),
            "large": ("large", "big"), "slanting left": ("slanting left", "leaning left", "tilted left"),
            "slanting right": ("slanting right", "leaning right", "tilted right"),
            "dark": ("dark", "black"), "light": ("light", "white", "pale"), "plain": ("plain", "simple"),
            "patterned": ("patterned", "printed", "textured")}
_POST_NOUN = ("slanting left", "slanting right")  # phrases that follow the noun: "a seven slanting right"

# ------------------------------------------------------------------------------------ class names
_DIGITS = ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine")
# per class: the noun phrases that name it; the first is the canonical name used by class_prompts
NOUNS = {
    "mnist": [(w, str(d), f"digit {w}", f"digit {d}", f"number {w}", f"number {d}", f"handwritten {w}",
               f"handwritten {d}") for d, w in enumerate(_DIGITS)],
    "fashion-mnist": [("t-shirt", "top", "tee"), ("pair of trousers", "pair of pants", "trouser"),
                      ("pullover", "sweater", "jumper"), ("dress", "gown", "frock"), ("coat", "jacket", "overcoat"),
                      ("sandal", "summer sandal", "open shoe"), ("shirt", "button-up shirt", "blouse"),
                      ("sneaker", "running shoe", "trainer"), ("bag", "handbag", "purse"),
                      ("ankle boot", "boot", "short boot")],
    "cifar10": [("airplane", "aeroplane", "plane"), ("automobile", "car"), ("bird",), ("cat", "kitten"),
                ("deer",), ("dog", "puppy"), ("frog", "toad"), ("horse", "pony"), ("ship", "boat"),
                ("truck", "lorry")],
}
# "{np}" is a noun phrase with its article, e.g. "a thick seven"; bare templates take no article
TEMPLATES = {
    "mnist": ("{np}", "a photo of {np}", "a drawing of {np}", "an image of {np}", "a picture of {np}",
              "a sketch of {np}", "{np} written by hand", "a scan of {np}"),
    "fashion-mnist": ("{np}", "a photo of {np}", "a picture of {np}", "an image of {np}",
                      "a product photo of {np}", "a grayscale photo of {np}", "a small photo of {np}"),
    "cifar10": ("{np}", "a photo of {np}", "a picture of {np}", "an image of {np}", "a blurry photo of {np}",
                "a low resolution photo of {np}", "a small photo of {np}"),
}
DEFAULT_PROMPT = {"mnist": "the digit {name}", "fashion-mnist": "a photo of a {name}",
                  "cifar10": "a photo of a {name}"}


def _check_dataset(dataset: str) -> None:
    if dataset not in NOUNS:
        raise ValueError(f"unknown dataset {dataset!r}; expected one of {sorted(NOUNS)}")


def fix_articles(text: str) -> str:
    """'a' -> 'an' before a vowel sound ('an eight', 'an 8', 'an 11', 'an upright seven', 'an ankle boot'), but
    not before words that start with a consonant sound ('a one', 'a uniform', 'a 1')."""
    return re.sub(r"\b([Aa]) (?=[aeiouAEIOU8]|1[18]\b)(?!one\b|uni)", r"\1n ", text)


# ----------------------------------------------------------------------------------------- captions
def _pick(seq: Sequence, generator: torch.Generator | None):
    return seq[int(torch.randint(len(seq), (1,), generator=generator, device=generator_device(generator)))]


# per dataset, in adjective order: "a small thick upright seven", "a dark patterned t-shirt"
_IN_CAPTIONS = {"mnist": ("size", "thickness", "slant"), "fashion-mnist": ("brightness", "pattern")}
_SILENT = ("regular", "medium")  # middle words left out of captions ("a regular medium seven" reads badly)


def _caption(noun: str, words: list[str], template: str, determiner: str,
             generator: torch.Generator | None) -> str:
    """words: canonical attribute words in _IN_CAPTIONS order; synonyms are drawn here."""
    if "written by hand" in template and noun.startswith("handwritten "):
        noun = noun.removeprefix("handwritten ")  # not "a handwritten 7 written by hand"; no extra random draw
    pre = [_pick(SYNONYMS.get(w, (w,)), generator) for w in words if w not in _POST_NOUN]
    post = [_pick(SYNONYMS.get(w, (w,)), generator) for w in words if w in _POST_NOUN]
    np_ = " ".join([determiner, *pre, noun, *post]).strip()
    return fix_articles(template.format(np=np_))


def default_p_attribute(dataset: str) -> float:
    """make_captions' default share of captions with attribute words: 0.5 where the dataset has attribute
    thresholds (MNIST, Fashion-MNIST), else 0."""
    return 0.5 if dataset in THRESHOLDS else 0.0


def check_p_attribute(p_attribute: float | None, dataset: str) -> float:
    """p_attribute, or the dataset's default for None; a ValueError unless it is in [0, 1], and 0 for a dataset
    without attribute thresholds."""
    if p_attribute is None:
        return default_p_attribute(dataset)
    number = isinstance(p_attribute, numbers.Real) and not isinstance(p_attribute, bool)  # Python or numpy
    number = number or (torch.is_tensor(p_attribute) and p_attribute.numel() == 1)  # a 0-d tensor
    p = float(p_attribute) if number else float("nan")
    if not 0.0 <= p <= 1.0:  # NaN fails both comparisons
        raise ValueError(f"p_attribute must be a number in [0, 1], got {p_attribute!r}")
    if p > 0 and dataset not in THRESHOLDS:
        raise ValueError(f"{dataset!r} has no attribute thresholds (its captions name only the class); use "
                         "p_attribute=0")
    return p


def make_captions(images: torch.Tensor, labels: torch.Tensor, dataset: str = "mnist",
                  generator: torch.Generator | None = None, p_attribute: float | None = None) -> list[str]:
    """One random caption per image: (N, C, H, W) in [-1, 1], labels (N,) long -> list of N strings.

    A template, a name for the class, a determiner (a / the / none) are drawn at random; with
    probability ``p_attribute`` (default 0.5 for datasets with attribute thresholds, else 0) one to
    three (garments: two) measured attribute words are added ("a thick seven slanting right", "a dark patterned
    t-shirt"), drawn among the words a caption speaks (not "regular" or "medium"). Every image thus gets an
    attribute-free caption with the same probability 1 - p_attribute, whatever its attributes: the text-to-image
    model learns p(x | "a seven") = p(x | the class is seven), not a distribution tilted towards the digits whose
    attributes go unsaid (before 2026-12-02 a caption drew its attributes first and then left out the silent ones,
    so middling digits got attribute-free captions more often: 67% for a regular, medium, upright digit against 50%
    for a thin, small one).
    """
    _check_dataset(dataset)
    if labels.dim() != 1 or labels.shape[0] != images.shape[0]:
        raise ValueError(f"labels must be (N,) with N={images.shape[0]}, got {tuple(labels.shape)}")
    p_attribute = check_p_attribute(p_attribute, dataset)
    nouns, templates = NOUNS[dataset], TEMPLATES[dataset]
    if len(labels) == 0:
        return []
    if int(labels.min()) < 0 or int(labels.max()) >= len(nouns):
        raise ValueError(f"labels must be in [0, {len(nouns)}) for {dataset!r}")
    gd = generator_device(generator)  # draws happen on the generator's device (a CUDA generator works too)
    with_attr = (torch.rand(len(labels), generator=generator, device=gd) < p_attribute).tolist()
    words = attribute_words(images, labels, dataset) if any(with_attr) else None
    captions = []
    for i, label in enumerate(labels.tolist()):
        template = _pick(templates, generator)
        determiner = _pick(("a", "the") if template != "{np}" else ("a", "the", ""), generator)
        chosen = []
        if with_attr[i]:
            # draw among the spoken words only, so that every image gets an attribute-free caption with the
            # same probability 1 - p_attribute (slant and brightness always have a spoken word: "upright", "grey")
            spoken = [a for a in _IN_CAPTIONS[dataset] if words[i][a] not in _SILENT]
            k = int(torch.randint(1, len(spoken) + 1, (1,), generator=generator, device=gd))
            keep = torch.randperm(len(spoken), generator=generator, device=gd)[:k].tolist()
            chosen = [words[i][a] for j, a in enumerate(spoken) if j in keep]
            determiner = determiner or "a"
        captions.append(_caption(_pick(nouns[label], generator), chosen, template, determiner, generator))
    return captions


def caption_fn(dataset: str = "mnist", p_attribute: float | None = None):
    """make_captions bound to a dataset: a callable (images, labels, generator) -> list[str], the shape
    that train_clip and the diffusion training's text conditioning take."""
    _check_dataset(dataset)
    check_p_attribute(p_attribute, dataset)  # now, not at the first batch
    return lambda images, labels, generator=None: make_captions(images, labels, dataset, generator, p_attribute)


def class_names(dataset: str) -> list[str]:
    """The canonical name of each class: "zero" ... "nine", "t-shirt" ..., "airplane" ..."""
    _check_dataset(dataset)
    return [n[0] for n in NOUNS[dataset]]


def class_prompts(dataset: str, template: str | None = None) -> list[str]:
    """One prompt per class from ``template`` with {name} (canonical name) and, for MNIST, {digit}:
    class_prompts("mnist", "a {digit}") -> ["a 0", ..., "an 8", ...]."""
    _check_dataset(dataset)
    template = template or DEFAULT_PROMPT[dataset]
    try:
        return [fix_articles(template.format(name=name, digit=i)) for i, name in enumerate(class_names(dataset))]
    except (IndexError, KeyError) as e:  # "{}" or "{label}": the fields are named
        raise ValueError(f"template {template!r}: use {{name}} for the class name (and, for MNIST, {{digit}} "
                         f"for its digit), e.g. 'a photo of a {{name}}' ({type(e).__name__}: {e})") from None


def all_vocabulary(dataset: str) -> list[str]:
    """Every word any caption or class prompt of ``dataset`` can contain (sorted); the tokenizer's vocab."""
    _check_dataset(dataset)
    texts = [t.replace("{np}", "") for t in TEMPLATES[dataset]] + ["a an the"]
    texts += [n for names in NOUNS[dataset] for n in names] + class_prompts(dataset)
    if dataset in THRESHOLDS:
        words = [w for a in DATASET_ATTRIBUTES[dataset] for w in WORDS[a]]
        texts += words + [s for w in words for s in SYNONYMS.get(w, ())]
    return sorted({w for t in texts for w in split_words(t)})
