"""Evaluation protocols for trained pipelines, built on metrics.py (evaluation chapter).

    report = evaluate_pipeline(load_pretrained("mnist-text2img"), n=500, guidance=3.0, steps=50)
    report["fid"], report["fid_floor"], report["fid_ratio"], report["accuracy"]

The protocol (stated in every report's ``settings``), for models of MNIST or Fashion-MNIST (``EVAL_DATASETS``;
the dataset the checkpoint records decides the classifier, ``metrics.load_eval_classifier(device, dataset)``,
the prompts and the reference, by default its test split: "mnist-test" or "fashion-mnist-test"):

- text-conditional pipelines: n samples, n/10 per digit (class); the k-th prompt of a digit uses template
  k mod 8 of ``EVAL_TEMPLATES`` ("the digit seven", "a handwritten 7", ...; for Fashion-MNIST
  ``TEMPLATES["fashion-mnist"]``), so every class is asked for in the same varied phrasings. accuracy =
  fraction the evaluation classifier assigns to the asked class.
- unconditional pipelines: n samples; no accuracy, but the predicted-class histogram shows dropped modes.
- FID and KID in the evaluation classifier's 128-d features (metrics.py) against n real images of the
  reference split, drawn at random (for text models: the same number per digit as the samples); the
  floor is FID/KID between a second, disjoint real draw of the same size and that reference, so
  ``fid_ratio = fid / fid_floor`` is ~1 for a perfect generator at any n. For an imperfect one it grows
  with n (the floor shrinks like 1/n, the model's own distance to the data does not): compare at equal n.
  For text models ``kid_excess = kid_mean - kid_floor`` is ~0 for a perfect generator (class-balanced draws
  put KID itself near -4.3 / n; see ``score_samples``); for unconditional ones KID itself is.
- diversity: mean pairwise feature distance within a prompted digit (text) or over all samples
  (unconditional); ``diversity_real`` is the same statistic on the reference draw (ratio < 1: less
  varied than the data, 0: one image per prompt).

The starting noise x_T of sample i is the same for every guidance scale, step count and sampler with the
same seed (drawn once for all n), so sweeps compare like with like. Samples depend on ``batch_size`` only
through the per-batch sampler noise: the stochastic samplers' (DDPM, DDIM with eta > 0) and CADS's prompt
noise. Attribute adherence ("a thick seven" against
"a thin seven"): attribute_eval.py.
"""

from __future__ import annotations

import time
from dataclasses import asdict
from typing import Any, Sequence

import torch

from . import captions, metrics
from .checkpoints import dataset_name
from .classifier import Classifier
from .eval_reference import EVAL_DATASETS, NUM_CLASSES, REFERENCES, Reference, prepare_reference  # noqa: F401
from .guidance import CADS
from .sampling import batches_bar

EVAL_TEMPLATES = ("the digit {name}", "a handwritten {digit}", "a photo of a {name}", "a drawing of the number {digit}",
                  "{name}", "a picture of the digit {digit}", "a sketch of a {name}", "the number {digit}")
TEMPLATES = {"mnist": EVAL_TEMPLATES,  # per dataset, in the words of its captions (captions.TEMPLATES)
             "fashion-mnist": ("a photo of a {name}", "a {name}", "a picture of the {name}", "an image of a {name}",
                               "a product photo of a {name}", "a grayscale photo of the {name}", "the {name}",
                               "a small photo of a {name}")}
IMAGE_SHAPE = (1, 28, 28)  # the evaluation classifiers' input: MNIST and Fashion-MNIST


def eval_prompts(labels: torch.Tensor, dataset: str = "mnist") -> list[str]:
    """One prompt per label (N,) long in [0, 10): the k-th occurrence of a class uses template k % 8 of
    ``TEMPLATES[dataset]`` (for MNIST: EVAL_TEMPLATES)."""
    if dataset not in TEMPLATES:
        raise ValueError(f"no evaluation prompts for {dataset!r}; expected one of {sorted(TEMPLATES)}")
    bad = [y for y in labels.tolist() if not 0 <= y < NUM_CLASSES]
    if bad:
        raise ValueError(f"labels must be digits in [0, {NUM_CLASSES}), got {sorted(set(bad))[:5]}")
    table = [captions.class_prompts(dataset, t) for t in TEMPLATES[dataset]]  # (templates, 10)
    seen = [0] * NUM_CLASSES
    out = []
    for y in labels.tolist():
        out.append(table[seen[y] % len(table)][y])
        seen[y] += 1
    return out


def balanced_labels(n: int) -> torch.Tensor:
    """(n,) long: 0, 1, ..., 9, 0, 1, ... (n/10 per digit); n must be a multiple of 10 and >= 20."""
    if n < 2 * NUM_CLASSES or n % NUM_CLASSES:
        raise ValueError(f"text-conditional evaluation needs n a multiple of {NUM_CLASSES} and >= "
                         f"{2 * NUM_CLASSES} (n/10 samples per digit, >= 2 for diversity), got n={n}")
    return torch.arange(n) % NUM_CLASSES


# --------------------------------------------------------------------------------------- sampling
_OTHER_DATA = ("; for other data, metrics.fid and metrics.kid score samples in the features of a classifier "
               "trained on that data (scripts/train_classifier.py, for MNIST and Fashion-MNIST, is an example to "
               "adapt: CIFAR-10 needs ClassifierConfig(in_channels=3, image_size=32))")


def _check_pipe(pipe) -> str:
    """The dataset the pipeline was trained on ("mnist" when its meta does not say), if it has an evaluation
    classifier; ValueError otherwise."""
    c = pipe.unet.cfg
    name = dataset_name(getattr(pipe, "meta", None)) or "mnist"
    if name not in EVAL_DATASETS:  # class prompts, a classifier and references of that dataset
        raise ValueError(f"this evaluation scores {' and '.join(EVAL_DATASETS)} models (their classifiers, class "
                         f"prompts and references); the model was trained on {name!r}{_OTHER_DATA}")
    if (c.in_channels, c.image_size, c.image_size) != IMAGE_SHAPE:
        shown = {"mnist": "MNIST", "fashion-mnist": "Fashion-MNIST"}[name]
        raise ValueError(f"the evaluation classifier is for {shown} images {IMAGE_SHAPE}; this pipeline makes "
                         f"{(c.in_channels, c.image_size, c.image_size)}{_OTHER_DATA}")
    return name


def generate(pipe, n: int, prompts: Sequence[str] | None = None, *, guidance: float = 3.0, steps: int = 50,
             sampler: str = "ddim", eta: float = 0.0, seed: int = 0, batch_size: int = 250,
             x_T: torch.Tensor | None = None, progress: bool = False,
             guidance_interval: tuple[int, int] | None = None, cads: CADS | None = None,
             spacing: str = "linspace") -> torch.Tensor:
    """n samples (n, 1, 28, 28) in [-1, 1], in batches. x_T (n, C, H, W) defaults to randn from ``seed``
    (drawn once, so it does not depend on batch_size); batch i's sampler noise uses seed + 1 + i."""
    if prompts is not None and len(prompts) != n:
        raise ValueError(f"got {len(prompts)} prompts for n={n}")
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    c = pipe.unet.cfg
    if x_T is None:
        x_T = torch.randn((n, c.in_channels, c.image_size, c.image_size),
                          generator=torch.Generator().manual_seed(seed)).to(pipe.dtype)  # drawn in float32
    out = []
    starts = range(0, n, batch_size)
    bar = batches_bar(pipe.schedule, sampler, steps, len(starts), batch_size, progress)
    for i, s in enumerate(starts):
        g = torch.Generator().manual_seed(seed + 1 + i)
        kw = dict(steps=steps, sampler=sampler, generator=g, progress=False, x_T=x_T[s:s + batch_size],
                  callback=lambda info: bar.update(1), eta=eta,  # pipe.sample refuses eta with DDPM, DPM++
                  spacing=spacing)
        if pipe.is_text_conditional:
            out.append(pipe.sample(list(prompts[s:s + batch_size]), guidance=guidance,
                                   guidance_interval=guidance_interval, cads=cads, **kw).cpu())
        elif cads is not None:
            raise ValueError("CADS noises the prompt; this pipeline is unconditional")
        else:
            out.append(pipe.sample(n=x_T[s:s + batch_size].shape[0], **kw).cpu())
    bar.close()
    return torch.cat(out).clamp(-1, 1)


# ------------------------------------------------------------------------------------- evaluation
@torch.no_grad()
def score_samples(classifier: Classifier, samples: torch.Tensor, ref: Reference, labels: torch.Tensor | None = None,
                  kid_subsets: int = 50, seed: int = 0) -> dict[str, Any]:
    """Metrics of samples (n, 1, 28, 28) in [-1, 1] against a prepared Reference of the same n.

    FID and KID come with floors: the same metric for the Reference's second real draw, taken the same
    way. With ``labels`` the draws are class-balanced, which puts a perfect generator's KID near -4.3 / n,
    not 0 (``metrics.kid``), with a floor that varies little between draws (sd about 0.0015 at n = 100,
    0.0001 at n = 1,000): read kid_excess = kid_mean - kid_floor then. Without labels the draws are random,
    KID itself is centred on 0 and its floor is just as noisy, so kid_excess is None (subtracting would
    only add noise). kid_std is None when n <= 1000 (one subset, the whole set; see ``metrics.kid``).
    """
    feats = metrics.extract_features(classifier, samples)
    labels = None if labels is None else torch.as_tensor(labels).cpu()  # the classifier's predictions are on the CPU
    n = feats.shape[0]
    if ref.feats.shape[0] != n:
        raise ValueError(f"the reference holds {ref.feats.shape[0]} images, the samples {n}: FID needs equal n")
    device = next(classifier.parameters()).device
    was_training = classifier.training
    classifier.eval()
    pred = classifier.classify_features(feats.float().to(device)).argmax(1).cpu()
    classifier.train(was_training)
    g = torch.Generator().manual_seed(seed)
    size = min(1000, n)
    fid, floor = metrics.fid(feats, ref.feats), metrics.fid(ref.floor_feats, ref.feats)
    kid_mean, kid_std = metrics.kid(feats, ref.feats, kid_subsets, size, g)
    kid_floor = metrics.kid(ref.floor_feats, ref.feats, kid_subsets, size, g)[0]
    div = metrics.diversity(feats, labels)
    div_real = metrics.diversity(ref.feats, ref.labels if labels is not None else None)
    out = {"n": n, "fid": fid, "fid_floor": floor, "fid_ratio": fid / floor if floor > 0 else None,
           "kid_mean": kid_mean, "kid_std": kid_std, "kid_floor": kid_floor,
           "kid_excess": kid_mean - kid_floor if labels is not None else None,
           "kid_subset_size": size,
           "diversity": div, "diversity_real": div_real, "diversity_ratio": div / div_real if div_real > 0 else None,
           "predicted_class_fraction": (torch.bincount(pred, minlength=NUM_CLASSES) / n).tolist(),
           "accuracy": None, "accuracy_per_class": None}
    if labels is not None:
        hit = (pred == labels).double()
        out["accuracy"] = float(hit.mean())
        out["accuracy_per_class"] = [float(hit[labels == c].mean()) for c in range(NUM_CLASSES)]
    return out


def _run(pipe, classifier: Classifier, ref: Reference, labels: torch.Tensor | None, *, n: int, guidance: float,
         steps: int, sampler: str, eta: float, seed: int, batch_size: int, progress: bool,
         guidance_interval: tuple[int, int] | None = None, cads: CADS | None = None,
         spacing: str = "linspace") -> dict[str, Any]:
    prompts = eval_prompts(labels, _check_pipe(pipe)) if labels is not None else None
    t0 = time.perf_counter()
    samples = generate(pipe, n, prompts, guidance=guidance, steps=steps, sampler=sampler, eta=eta, seed=seed,
                       batch_size=batch_size, progress=progress, guidance_interval=guidance_interval, cads=cads,
                       spacing=spacing)
    t_sample = time.perf_counter() - t0
    report = score_samples(classifier, samples, ref, labels, seed=seed)
    report.update(sample_seconds=round(t_sample, 3), images_per_s=n / t_sample,
                  eval_seconds=round(time.perf_counter() - t0 - t_sample, 3))
    return report


def _reference(pipe, reference) -> tuple[str, Any]:
    """(the pipeline's dataset, the reference: its test split when None); a named split of another dataset is
    refused."""
    dataset = _check_pipe(pipe)
    if reference is None:
        return dataset, f"{dataset}-test"
    if isinstance(reference, str) and reference not in REFERENCES:
        raise ValueError(f"reference must be one of {list(REFERENCES)} or a dataset with .images and .labels, got "
                         f"{reference!r}")
    ref_data = reference.rsplit("-", 1)[0] if isinstance(reference, str) else getattr(reference, "name", None)
    if ref_data in EVAL_DATASETS and ref_data != dataset:  # a split of the other dataset (a name or an ImageDataset)
        raise ValueError(f"reference {reference!r} is not {dataset}'s, the data this model was trained on; use "
                         f"'{dataset}-test' or '{dataset}-train'")
    return dataset, reference


def _classifier_for(pipe, classifier: Classifier | None, dataset: str) -> Classifier:
    """The given classifier if it was trained on ``dataset`` (ValueError otherwise), else the shipped one."""
    classifier = classifier if classifier is not None else metrics.load_eval_classifier(pipe.device, dataset)
    if getattr(classifier, "dataset", None) not in (None, dataset):  # e.g. load_eval_classifier()'s MNIST one
        raise ValueError(f"the classifier was trained on {classifier.dataset!r}, this model on {dataset!r}: pass "
                         f"metrics.load_eval_classifier(device, {dataset!r}), or no classifier")
    return classifier


def _setup(pipe, classifier, reference, n, seed):
    dataset, reference = _reference(pipe, reference)
    if not pipe.is_text_conditional and not (isinstance(n, int) and n >= 2):
        raise ValueError(f"evaluation needs n >= 2 samples (FID and diversity compare pairs), got n={n!r}")
    classifier = _classifier_for(pipe, classifier, dataset)
    labels = balanced_labels(n) if pipe.is_text_conditional else None
    return classifier, labels, prepare_reference(classifier, reference, n, labels, seed)


def _settings(pipe, reference, **kw) -> dict[str, Any]:
    dataset, reference = _reference(pipe, reference)
    s = {"model": "text-conditional" if pipe.is_text_conditional else "unconditional",
         "parameters": sum(p.numel() for p in pipe.unet.parameters()),
         "reference": reference if isinstance(reference, str) else type(reference).__name__,
         "classifier": f"{dataset}-classifier", "torch_threads": torch.get_num_threads(), **kw}
    if pipe.is_text_conditional:
        s["prompt_templates"] = list(TEMPLATES[dataset])
    else:
        s.pop("guidance", None)
    return s


def evaluate_pipeline(pipe, *, n: int, guidance: float = 3.0, steps: int = 50, sampler: str = "ddim",
                      eta: float = 0.0, seed: int = 0, batch_size: int = 250, classifier: Classifier | None = None,
                      reference: Any = None, progress: bool = False,
                      guidance_interval: tuple[int, int] | None = None,
                      cads: CADS | None = None, spacing: str = "linspace") -> dict[str, Any]:
    """Generate n samples and score them (the protocol in the module docstring). Returns a JSON-able dict:
    settings, n, fid, fid_floor, fid_ratio, kid_mean/std, kid_floor, kid_excess, diversity(_real, _ratio),
    predicted_class_fraction (10,), accuracy and accuracy_per_class (None if unconditional), and
    sample_seconds, images_per_s, eval_seconds, wall_time_s. guidance is ignored by unconditional models.
    spacing: the sampler's time grid (``sampling.timesteps``).
    """
    t0 = time.perf_counter()
    classifier, labels, ref = _setup(pipe, classifier, reference, n, seed)
    report = {"settings": _settings(pipe, reference, n=n, guidance=guidance, steps=steps, sampler=sampler, eta=eta,
                                    seed=seed, batch_size=batch_size,
                                    guidance_interval=list(guidance_interval) if guidance_interval else None,
                                    cads=asdict(cads) if cads else None, spacing=spacing)}
    report.update(_run(pipe, classifier, ref, labels, n=n, guidance=guidance, steps=steps, sampler=sampler, eta=eta,
                       seed=seed, batch_size=batch_size, progress=progress, guidance_interval=guidance_interval,
                       cads=cads, spacing=spacing))
    report["wall_time_s"] = round(time.perf_counter() - t0, 3)
    return report


_SUMMARY = ("n", "accuracy", "fid", "fid_floor", "fid_ratio", "kid_mean", "kid_floor", "kid_excess", "diversity",
            "diversity_real",
            "diversity_ratio", "sample_seconds", "images_per_s")


def guidance_sweep(pipe, scales: Sequence[float] = (0, 1, 2, 3, 5, 8), *, n: int = 500, steps: int = 50,
                   sampler: str = "ddim", seed: int = 0, batch_size: int = 250, classifier: Classifier | None = None,
                   reference: Any = None, progress: bool = False,
                   guidance_interval: tuple[int, int] | None = None,
                   cads: CADS | None = None, spacing: str = "linspace") -> list[dict[str, Any]]:
    """evaluate_pipeline at each guidance scale s (same x_T, prompts and reference draw for every s).
    Returns one dict per scale: guidance, accuracy, fid, fid_floor, fid_ratio, kid, diversity, timing."""
    if not pipe.is_text_conditional:
        raise ValueError("guidance_sweep needs a text-conditional pipeline; this one is unconditional")
    classifier, labels, ref = _setup(pipe, classifier, reference, n, seed)
    rows = []
    for s in scales:
        r = _run(pipe, classifier, ref, labels, n=n, guidance=float(s), steps=steps, sampler=sampler, eta=0.0,
                 seed=seed, batch_size=batch_size, progress=progress, guidance_interval=guidance_interval,
                 cads=cads, spacing=spacing)
        rows.append({"guidance": float(s), "steps": steps, "sampler": sampler, "spacing": spacing,
                     **{k: r[k] for k in _SUMMARY}})
    return rows


def steps_sweep(pipe, steps: Sequence[int] = (10, 20, 50, 100, 1000), samplers: Sequence[str] = ("ddpm", "ddim"), *,
                n: int = 500, n_for_steps: dict[int, int] | None = None, guidance: float = 3.0, seed: int = 0,
                batch_size: int = 250, classifier: Classifier | None = None, reference: Any = None,
                progress: bool = False, spacing: str = "linspace") -> list[dict[str, Any]]:
    """Quality and sampling throughput versus the number of sampler steps, for each sampler.

    ``n_for_steps`` overrides n for some step counts (e.g. {1000: 200}); each point has its own floor at its
    own n, but neither FID nor fid_ratio is comparable across n (the ratio of an imperfect model grows with
    n). images_per_s is n / sampling seconds
    (with guidance != 0, 1 a text model evaluates the network twice per step). One dict per point.
    """
    n_for_steps = dict(n_for_steps or {})
    classifier = classifier if classifier is not None else metrics.load_eval_classifier(pipe.device, _check_pipe(pipe))
    refs: dict[int, tuple] = {}
    rows = []
    for k in steps:
        m = n_for_steps.get(k, n)
        if m not in refs:
            refs[m] = _setup(pipe, classifier, reference, m, seed)[1:]
        labels, ref = refs[m]
        for sampler in samplers:
            r = _run(pipe, classifier, ref, labels, n=m, guidance=guidance, steps=k, sampler=sampler, eta=0.0,
                     seed=seed, batch_size=batch_size, progress=progress, spacing=spacing)
            rows.append({"sampler": sampler, "steps": k, "spacing": spacing,
                         "guidance": guidance if pipe.is_text_conditional else None,
                         **{key: r[key] for key in _SUMMARY}})
    return rows
