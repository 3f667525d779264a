"""Evaluation metrics in the feature space of a small MNIST classifier (evaluation chapter).

All image arguments are (N, 1, 28, 28) float in [-1, 1]; features are (N, F) float64 on the CPU, taken
from the penultimate layer of the shipped classifier (``load_eval_classifier()``, see classifier.py).

- FID (Heusel et al. 2017, eq. 6): Frechet distance between Gaussians fitted to two feature sets.
- KID (Binkowski et al. 2018, sec. 3 / appendix D): unbiased MMD^2 with the cubic polynomial kernel,
  averaged over random subsets; unbiased in N, so small sample counts compare fairly.
- FID floor: FID between two disjoint *real* sets of the same size. FID is biased upwards at small N, so
  a model's FID is only meaningful next to the floor at its own sample count.
- conditional accuracy, diversity (within-prompt spread), attribute adherence (does "thick" come out
  thicker than "thin").

These numbers are comparable only with the same classifier and the same sample count; say both.
"""

from __future__ import annotations

import math
import warnings
from typing import Any, Callable, Hashable, Sequence

import numpy as np
import torch

from .checkpoints import load_pretrained
from .classifier import Classifier, classifier_from_checkpoint  # noqa: F401  (checkpoints.BUILDERS)
from .utils import caller_stacklevel, generator_device

Features = torch.Tensor | np.ndarray


def load_eval_classifier(device: str | torch.device = "cpu", dataset: str = "mnist") -> Classifier:
    """The shipped evaluation classifier of ``dataset`` (``pretrained/mnist-classifier`` or
    ``fashion-mnist-classifier``), in eval mode."""
    from .eval_reference import EVAL_DATASETS

    if dataset not in EVAL_DATASETS:
        raise ValueError(f"no evaluation classifier is shipped for {dataset!r}; there is one for {list(EVAL_DATASETS)} "
                         "(scripts/train_classifier.py is an example to adapt)")
    return load_pretrained(f"{dataset}-classifier", device)


def check_images(images: torch.Tensor, name: str = "images", tol: float = 1e-3, stacklevel: int | None = None) -> None:
    """Images for the package's networks: a (N, C, H, W) float tensor, N >= 1, finite, in [-1, 1] (ValueError
    otherwise); warns once when no pixel is below 0 (images in [0, 1]?), at the user's line unless
    ``stacklevel`` is given. One pass and one sync per call."""
    if not isinstance(images, torch.Tensor) or images.ndim != 4:
        got = tuple(images.shape) if isinstance(images, torch.Tensor) else type(images).__name__
        raise ValueError(f"expected {name} as a (N, C, H, W) tensor, got {got}")
    if not images.is_floating_point():
        raise ValueError(f"expected float {name} in [-1, 1], got {images.dtype} (see utils.from_uint8)")
    if images.shape[0] == 0:
        raise ValueError(f"expected at least one image in {name}, got an empty batch")
    lo, hi = torch.stack([images.min(), images.max()]).tolist()  # NaN propagates to both
    if not (math.isfinite(lo) and math.isfinite(hi)):
        raise ValueError(f"{name} contain NaN or inf (values in [{lo}, {hi}])")
    if lo < -1 - tol or hi > 1 + tol:
        raise ValueError(f"expected {name} in [-1, 1], got values in [{lo:.3f}, {hi:.3f}]; clamp the "
                         "samples yourself if that is intended")
    if lo >= 0:
        warnings.warn(f"no pixel of {name} is below 0 (values in [{lo:.3g}, {hi:.3g}]): are they in [0, 1]? "
                      "The package expects [-1, 1] (x * 2 - 1)",
                      stacklevel=caller_stacklevel() if stacklevel is None else stacklevel)


@torch.no_grad()
def _features_and_logits(classifier: Classifier, images: torch.Tensor, batch_size: int = 500):
    """One pass: features (N, F) float64 and logits (N, K) float32, both on the CPU."""
    check_images(images)
    was_training = classifier.training
    classifier.eval()
    p = next(classifier.parameters())  # the images take the classifier's device and dtype
    feats, logits = [], []
    for i in range(0, images.shape[0], batch_size):
        f = classifier.features(images[i:i + batch_size].to(p.device, p.dtype))
        feats.append(f.cpu().double())  # .cpu() first: MPS has no float64
        logits.append(classifier.classify_features(f).float().cpu())
    classifier.train(was_training)
    return torch.cat(feats), torch.cat(logits)


def extract_features(classifier: Classifier, images: torch.Tensor, batch_size: int = 500) -> torch.Tensor:
    """Penultimate classifier features of images (N, 1, 28, 28) in [-1, 1] -> (N, F) float64, CPU."""
    return _features_and_logits(classifier, images, batch_size)[0]


def _as_float64(x: Features, name: str) -> torch.Tensor:
    t = torch.as_tensor(np.asarray(x) if not isinstance(x, torch.Tensor) else x).detach().cpu().double()
    if not torch.isfinite(t).all():
        raise ValueError(f"{name} contains NaN or inf")
    return t


def _psd_eigvals(s: torch.Tensor, vectors: bool = False):
    """Eigenvalues (and vectors) of a symmetric PSD matrix, with those at round-off level set to 0.

    Eigenvalues below d * eps * max|w| are numerically zero (their sign and size are noise); left in,
    their square roots would add up to ~sqrt(eps) each, which matters for rank-deficient covariances.
    """
    s = (s + s.T) / 2
    w, v = torch.linalg.eigh(s) if vectors else (torch.linalg.eigvalsh(s), None)
    tol = s.shape[0] * torch.finfo(s.dtype).eps * w.abs().max().clamp(min=1e-300)
    w = torch.where(w > tol, w, torch.zeros_like(w))
    return (w, v) if vectors else w


def _sqrtm_psd(s: torch.Tensor) -> torch.Tensor:
    """Symmetric square root V diag(sqrt(w)) V^T of a symmetric PSD matrix (round-off eigenvalues -> 0)."""
    w, v = _psd_eigvals(s, vectors=True)
    return (v * w.sqrt()) @ v.T


def frechet_distance(mu1: Features, sigma1: Features, mu2: Features, sigma2: Features) -> float:
    """Squared Frechet (2-Wasserstein) distance between N(mu1, sigma1) and N(mu2, sigma2).

    d^2 = ||mu1 - mu2||^2 + Tr(sigma1 + sigma2 - 2 (sigma1 sigma2)^(1/2))   (Heusel et al. 2017, eq. 6)

    mu: (F,), sigma: (F, F) symmetric PSD. Computed in float64 without scipy: since
    Tr((S1 S2)^(1/2)) = Tr((S1^(1/2) S2 S1^(1/2))^(1/2)) and the inner matrix is symmetric PSD, the trace
    is the sum of the square roots of its eigenvalues (round-off-level ones set to 0). This is stable
    for the singular covariances that small sample counts give, where scipy.linalg.sqrtm can go complex.
    """
    mu1, mu2 = _as_float64(mu1, "mu1").flatten(), _as_float64(mu2, "mu2").flatten()
    s1, s2 = _as_float64(sigma1, "sigma1"), _as_float64(sigma2, "sigma2")
    d = mu1.shape[0]
    if mu2.shape[0] != d or s1.shape != (d, d) or s2.shape != (d, d):
        raise ValueError(f"expected mu1, mu2 of shape ({d},) and sigmas ({d}, {d}); got {tuple(mu2.shape)}, "
                         f"{tuple(s1.shape)}, {tuple(s2.shape)}")
    root1 = _sqrtm_psd(s1)
    m = root1 @ s2 @ root1
    tr_covmean = _psd_eigvals(m).sqrt().sum()
    fd = (mu1 - mu2).pow(2).sum() + torch.trace(s1) + torch.trace(s2) - 2 * tr_covmean
    return max(float(fd), 0.0)  # a tiny negative value is round-off (the distance is >= 0)


def feature_statistics(feats: Features) -> tuple[torch.Tensor, torch.Tensor]:
    """Mean (F,) and unbiased covariance (F, F) of features (N, F), N >= 2, float64."""
    f = _as_float64(feats, "features")
    if f.ndim != 2 or f.shape[0] < 2:
        raise ValueError(f"expected features of shape (N, F) with N >= 2, got {tuple(f.shape)}")
    return f.mean(0), torch.cov(f.T).reshape(f.shape[1], f.shape[1])  # torch.cov gives a 0-d tensor for F = 1


def fid(feats_a: Features, feats_b: Features) -> float:
    """FID between two feature sets (Na, F) and (Nb, F). Biased upwards at small N: compare at equal N."""
    return frechet_distance(*feature_statistics(feats_a), *feature_statistics(feats_b))


def _poly_mmd2_unbiased(x: torch.Tensor, y: torch.Tensor) -> float:
    """Unbiased MMD^2 with k(a, b) = (a.b / d + 1)^3 (Binkowski et al. 2018, eq. 4 with KID's kernel)."""
    m, d = x.shape
    k_xx, k_yy, k_xy = ((x @ x.T) / d + 1) ** 3, ((y @ y.T) / d + 1) ** 3, ((x @ y.T) / d + 1) ** 3
    off = lambda k: (k.sum() - k.diagonal().sum()) / (m * (m - 1))  # mean over i != j
    return float(off(k_xx) + off(k_yy) - 2 * k_xy.mean())


def kid(feats_a: Features, feats_b: Features, subsets: int = 100, subset_size: int = 1000,
        generator: torch.Generator | None = None) -> tuple[float, float | None]:
    """Kernel Inception Distance: (mean, std) of unbiased MMD^2 over ``subsets`` random subset pairs.

    Each subset draws ``subset_size`` rows without replacement from each set (as in Binkowski et al. 2018
    and torch-fidelity). ``subset_size`` must not exceed either set's size. When it equals both sizes every
    subset is the whole of both sets: the MMD^2 is computed once and std is None (there is no spread to
    measure), as it is with ``subsets=1``. Centred on 0 (so it can be slightly negative) when both sets are
    independent random draws from the same distribution. Draws that are not independent rows break that:
    two class-balanced draws (exactly k images of every digit in each) share their class proportions, and
    for MNIST in mnist-classifier features land at about -4.3 / n instead of 0 (n = set size; measured over
    30 pairs of draws of 100 and 8 of 1,000: scripts/measure_kid_bias.py). Compare such a KID with a
    real-vs-real floor drawn the same way (``evaluation.score_samples`` reports both and their difference).
    """
    a, b = _as_float64(feats_a, "feats_a"), _as_float64(feats_b, "feats_b")
    if a.ndim != 2 or b.ndim != 2 or a.shape[1] != b.shape[1]:
        raise ValueError(f"expected features (Na, F) and (Nb, F), got {tuple(a.shape)} and {tuple(b.shape)}")
    if not 2 <= subset_size <= min(a.shape[0], b.shape[0]) or subsets < 1:
        raise ValueError(f"need subsets >= 1 and 2 <= subset_size <= min(Na, Nb) = "
                         f"{min(a.shape[0], b.shape[0])}, got subsets={subsets}, subset_size={subset_size} "
                         "(for small sets pass a smaller subset_size)")
    if subset_size == a.shape[0] == b.shape[0]:  # every subset pair would be (a, b) itself
        return _poly_mmd2_unbiased(a, b), None
    vals = []
    for _ in range(subsets):
        ia = torch.randperm(a.shape[0], generator=generator, device=generator_device(generator))[:subset_size].cpu()
        ib = torch.randperm(b.shape[0], generator=generator, device=generator_device(generator))[:subset_size].cpu()
        vals.append(_poly_mmd2_unbiased(a[ia], b[ib]))
    v = torch.tensor(vals, dtype=torch.float64)
    return float(v.mean()), float(v.std()) if subsets > 1 else None


def fid_floor(classifier: Classifier, real_images_a: torch.Tensor, real_images_b: torch.Tensor,
              batch_size: int = 500) -> float:
    """Real-vs-real FID between two disjoint real sets of the same size N (e.g. test vs train subsets).

    The best FID a perfect generator could score at sample count N: report a model's FID next to it.
    """
    if real_images_a.shape[0] != real_images_b.shape[0]:
        raise ValueError(f"the floor needs equal sample counts, got {real_images_a.shape[0]} and "
                         f"{real_images_b.shape[0]}")
    return fid(extract_features(classifier, real_images_a, batch_size),
               extract_features(classifier, real_images_b, batch_size))


def conditional_accuracy(classifier: Classifier, images: torch.Tensor, target_labels: torch.Tensor,
                         batch_size: int = 500) -> float:
    """Fraction of images (N, 1, 28, 28) in [-1, 1] that the classifier assigns to target_labels (N,)."""
    target = torch.as_tensor(target_labels).cpu()
    if target.shape != (images.shape[0],):
        raise ValueError(f"expected target_labels of shape ({images.shape[0]},), got {tuple(target.shape)}")
    logits = _features_and_logits(classifier, images, batch_size)[1]
    return float((logits.argmax(1) == target).double().mean())


def _group_indices(groups: Sequence[Hashable] | torch.Tensor, n: int) -> dict[Hashable, list[int]]:
    keys = groups.tolist() if isinstance(groups, (torch.Tensor, np.ndarray)) else list(groups)
    if len(keys) != n:
        raise ValueError(f"expected one group key per sample ({n}), got {len(keys)}")
    out: dict[Hashable, list[int]] = {}
    for i, k in enumerate(keys):
        out.setdefault(k, []).append(i)
    return out


def diversity(feats: Features, groups: Sequence[Hashable] | torch.Tensor | None = None) -> float:
    """Mean pairwise Euclidean feature distance within each group, averaged over groups (unweighted).

    feats: (N, F). groups: one key per sample (a label, a prompt string); None = one group. Every group
    needs >= 2 samples. 0 means every sample of a prompt is the same image (mode collapse); compare with
    the same statistic on real images of the same classes.
    """
    f = _as_float64(feats, "features")
    if f.ndim != 2:
        raise ValueError(f"expected features of shape (N, F), got {tuple(f.shape)}")
    index = _group_indices(groups, f.shape[0]) if groups is not None else {None: list(range(f.shape[0]))}
    small = [k for k, idx in index.items() if len(idx) < 2]
    if small:
        raise ValueError(f"every group needs at least 2 samples; too few in groups {small[:5]}")
    per_group = []
    for idx in index.values():
        d = torch.cdist(f[idx], f[idx])  # (n, n), zero diagonal
        per_group.append(d.sum() / (len(idx) * (len(idx) - 1)))
    return float(torch.stack(per_group).mean())


def attribute_adherence(attribute_fn: Callable[[torch.Tensor], torch.Tensor], images_low: torch.Tensor,
                        images_high: torch.Tensor, *, paired: bool = False) -> dict[str, float]:
    """Does asking for more of an attribute give more of it? E.g. images_low for "a thin 3", images_high
    for "a thick 3", attribute_fn = attributes.thickness (any (N, 1, H, W) -> (N,) measure; larger = more).

    adherence: with ``paired=False`` the probability that a random high-prompt image measures more than a
    random low-prompt image, over all Nl x Nh pairs, ties counting 1/2 (the Mann-Whitney U / AUC
    statistic); with ``paired=True`` (same initial noise for both prompts, Nl == Nh) the fraction of
    pairs i with attr(high_i) > attr(low_i), ties 1/2. 0.5 = the word is ignored, 1.0 = always obeyed.
    Also returns the means and ``mean_shift`` = mean_high - mean_low (in the measure's units).
    """
    check_images(images_low, "images_low")
    check_images(images_high, "images_high")
    lo, hi = attribute_fn(images_low).cpu().double(), attribute_fn(images_high).cpu().double()
    if lo.shape != (images_low.shape[0],) or hi.shape != (images_high.shape[0],):
        raise ValueError("attribute_fn must return one value per image (N,), "
                         f"got {tuple(lo.shape)} and {tuple(hi.shape)}")
    if paired:
        if lo.shape != hi.shape:
            raise ValueError(f"paired=True needs as many low as high images, got {lo.numel()}, {hi.numel()}")
        diff = hi - lo  # (N,)
    else:
        diff = hi[None, :] - lo[:, None]  # (Nl, Nh) every cross pair
    adherence = ((diff > 0).double() + 0.5 * (diff == 0).double()).mean()
    return {"adherence": float(adherence), "mean_low": float(lo.mean()), "mean_high": float(hi.mean()),
            "mean_shift": float(hi.mean() - lo.mean()), "n_low": lo.numel(), "n_high": hi.numel()}


def evaluate_samples(classifier: Classifier, samples: torch.Tensor, labels: torch.Tensor | None = None,
                     reference: torch.Tensor | None = None, *, kid_subsets: int = 50,
                     generator: torch.Generator | None = None, batch_size: int = 500) -> dict[str, Any]:
    """A JSON-able report on generated samples (N, 1, 28, 28) in [-1, 1].

    labels (N,): the classes the samples were asked to be -> "accuracy"; also groups "diversity" per
    class (else the whole set is one group). reference: real images (M, 1, 28, 28), ideally a random
    random draw -> "fid", "kid_mean", "kid_std". If M >= 2N, FID is taken against reference[:N] and
    "fid_floor" = FID(reference[N:2N], reference[:N]), the same comparison for real data at the same N;
    otherwise FID uses all M reference images and "fid_floor" is None. KID uses ``kid_subsets`` subsets of
    min(1000, N, M_used) rows; kid_std is their spread, None when a subset is the whole of both sets (N =
    M_used <= 1000). A class-balanced reference shifts KID below 0 (see ``kid``): for samples generated
    class by class, ``evaluation.score_samples`` compares against a floor drawn the same way. Values that
    cannot be computed are None.
    """
    feats, logits = _features_and_logits(classifier, samples, batch_size)
    n = feats.shape[0]
    report: dict[str, Any] = {"n": n, "accuracy": None, "fid": None, "fid_floor": None, "kid_mean": None,
                              "kid_std": None, "kid_subset_size": None, "n_reference": None}
    if labels is not None:
        target = torch.as_tensor(labels).cpu()
        if target.shape != (n,):
            raise ValueError(f"expected labels of shape ({n},), got {tuple(target.shape)}")
        report["accuracy"] = float((logits.argmax(1) == target).double().mean())
        counts = torch.unique(target, return_counts=True)[1]
        report["diversity"] = diversity(feats, target) if counts.min() >= 2 else None
    else:
        report["diversity"] = diversity(feats) if n >= 2 else None
    if reference is not None:
        check_images(reference, "reference")
        ref = extract_features(classifier, reference[:2 * n], batch_size)  # only the rows used
        ref_cmp = ref[:n] if ref.shape[0] >= 2 * n else ref
        report["n_reference"] = ref_cmp.shape[0]
        if n >= 2 and ref_cmp.shape[0] >= 2:  # a covariance (and KID's unbiased estimate) needs two of each
            report["fid"] = fid(feats, ref_cmp)
            size = min(1000, n, ref_cmp.shape[0])
            report["kid_mean"], report["kid_std"] = kid(feats, ref_cmp, kid_subsets, size, generator)
            report["kid_subset_size"] = size
        if ref.shape[0] >= 2 * n and n >= 2:
            report["fid_floor"] = fid(ref[n:2 * n], ref_cmp)
    return report
