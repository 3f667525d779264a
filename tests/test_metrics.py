"""Evaluation metrics and the shipped MNIST classifier (diffusion_lite.metrics, diffusion_lite.classifier)."""

from __future__ import annotations

import json
import math

import pytest
import torch

from diffusion_lite import checkpoints, metrics
from diffusion_lite.classifier import Classifier, ClassifierConfig, random_shift, save_classifier, train_classifier
from diffusion_lite.data import load_dataset


@pytest.fixture(scope="module")
def mnist_test():
    """(images (10000, 1, 28, 28) in [-1, 1], labels (10000,))."""
    ds = load_dataset("mnist", "test")
    return ds.images, ds.labels


@pytest.fixture(scope="module")
def clf():
    return metrics.load_eval_classifier()


# --- Frechet distance: closed forms -------------------------------------------------------------------

def test_frechet_distance_1d_closed_form():
    # N(m1, v1) vs N(m2, v2): (m1 - m2)^2 + (sqrt(v1) - sqrt(v2))^2
    m1, v1, m2, v2 = 0.3, 2.0, -1.2, 0.5
    t = lambda v: torch.tensor(v, dtype=torch.float64)
    got = metrics.frechet_distance(t([m1]), t([[v1]]), t([m2]), t([[v2]]))
    assert got == pytest.approx((m1 - m2) ** 2 + (math.sqrt(v1) - math.sqrt(v2)) ** 2, rel=1e-10)


def test_frechet_distance_diagonal_closed_form():
    g = torch.Generator().manual_seed(0)
    mu1, mu2 = torch.randn(16, generator=g), torch.randn(16, generator=g)
    v1, v2 = torch.rand(16, generator=g) + 0.1, torch.rand(16, generator=g) + 0.1
    got = metrics.frechet_distance(mu1, torch.diag(v1), mu2, torch.diag(v2))  # float32 inputs, float64 inside
    mu1, mu2, v1, v2 = (a.double() for a in (mu1, mu2, v1, v2))  # the reference in float64 too
    want = ((mu1 - mu2) ** 2).sum() + ((v1.sqrt() - v2.sqrt()) ** 2).sum()
    assert got == pytest.approx(float(want), rel=1e-8)


def test_frechet_distance_full_covariance_is_symmetric_and_zero_on_itself():
    g = torch.Generator().manual_seed(1)
    a, b = torch.randn(8, 8, generator=g, dtype=torch.float64), torch.randn(8, 8, generator=g, dtype=torch.float64)
    s1, s2 = a @ a.T, b @ b.T + 0.1 * torch.eye(8, dtype=torch.float64)
    mu = torch.zeros(8)
    assert metrics.frechet_distance(mu, s1, mu, s2) == pytest.approx(metrics.frechet_distance(mu, s2, mu, s1),
                                                                     rel=1e-8)
    assert metrics.frechet_distance(mu, s1, mu, s1) == pytest.approx(0.0, abs=1e-8)
    # commuting case S2 = c S1: Tr(S1)(1 - sqrt(c))^2
    assert metrics.frechet_distance(mu, s1, mu, 4 * s1) == pytest.approx(float(torch.trace(s1)), rel=1e-8)


def test_frechet_distance_singular_covariance_is_finite():
    # N = 10 < F = 64: rank-deficient covariances, where a naive matrix square root goes complex or NaN
    f = torch.randn(10, 64, generator=torch.Generator().manual_seed(2), dtype=torch.float64)
    d = metrics.fid(f, f + 0.01)
    assert math.isfinite(d) and d == pytest.approx(64 * 0.01**2, rel=1e-6)


def test_frechet_distance_rejects_mismatched_shapes():
    with pytest.raises(ValueError, match="expected mu1"):
        metrics.frechet_distance(torch.zeros(3), torch.eye(3), torch.zeros(4), torch.eye(4))


# --- FID / KID on features and images -----------------------------------------------------------------

def test_fid_zero_on_itself_and_grows_with_noise(clf, mnist_test):
    images = mnist_test[0][:1000]
    feats = metrics.extract_features(clf, images)
    assert feats.shape == (1000, clf.cfg.feature_dim) and feats.dtype == torch.float64
    assert metrics.fid(feats, feats) == pytest.approx(0.0, abs=1e-6)
    g = torch.Generator().manual_seed(0)
    noise = torch.randn(images.shape, generator=g)
    fids = [metrics.fid(feats, metrics.extract_features(clf, (images + s * noise).clamp(-1, 1)))
            for s in (0.1, 0.3, 0.6, 1.0)]
    assert all(a < b for a, b in zip(fids, fids[1:])), fids
    assert fids[0] > 0


def test_kid_near_zero_for_same_distribution():
    g = torch.Generator().manual_seed(0)
    a, b = torch.randn(600, 32, generator=g), torch.randn(600, 32, generator=g)
    same, same_std = metrics.kid(a, b, subsets=20, subset_size=300, generator=g)
    shifted, _ = metrics.kid(a, b + 0.5, subsets=20, subset_size=300, generator=g)
    assert abs(same) < 3 * same_std + 1e-3
    assert shifted > 20 * abs(same) and shifted > 0.05


def test_kid_is_reproducible_and_checks_subset_size():
    f = torch.randn(50, 4, generator=torch.Generator().manual_seed(0))
    r1 = metrics.kid(f, f + 1, 5, 20, torch.Generator().manual_seed(3))
    r2 = metrics.kid(f, f + 1, 5, 20, torch.Generator().manual_seed(3))
    assert r1 == r2
    with pytest.raises(ValueError, match="subset_size"):
        metrics.kid(f, f, subsets=2, subset_size=51)


def test_kid_over_whole_sets_is_computed_once_without_a_made_up_spread():
    g = torch.Generator().manual_seed(0)
    a, b = torch.randn(40, 8, generator=g), torch.randn(40, 8, generator=g) + 0.3
    mean, std = metrics.kid(a, b, subsets=10, subset_size=40, generator=g)
    assert std is None and mean == metrics._poly_mmd2_unbiased(a.double(), b.double())
    assert metrics.kid(a, b, subsets=10, subset_size=39, generator=g)[1] > 0


# --- the shipped classifier ---------------------------------------------------------------------------

def test_shipped_classifier_accuracy_on_mnist_test(clf, mnist_test):
    images, labels = mnist_test
    assert images.shape[0] == 10000
    assert metrics.conditional_accuracy(clf, images, labels) >= 0.99


def test_train_classifier_leaves_out_a_last_batch_of_one_image():
    """N = 9 with batches of 4: 4 + 4 + 1, and BatchNorm cannot train on one image; the 1 is left out, not fatal."""
    ds = load_dataset("mnist", "test", subset=9)
    record = train_classifier(Classifier(ClassifierConfig()), ds, epochs=1, batch_size=4,
                              generator=torch.Generator().manual_seed(0), progress=False)
    assert record["steps"] == 2
    with pytest.raises(ValueError, match="batch_size >= 2"):
        train_classifier(Classifier(ClassifierConfig()), ds, batch_size=1, progress=False)
    from diffusion_lite.classifier import accuracy
    with pytest.raises(ValueError, match="accuracy of 0 images is undefined"):
        accuracy(Classifier(ClassifierConfig()), ds.images[:0], ds.labels[:0])


def test_classifier_checkpoint_round_trip(tmp_path):
    torch.manual_seed(0)
    model = Classifier(ClassifierConfig(channels=(8, 16), feature_dim=16)).eval()
    save_classifier(tmp_path / "clf", model, {"note": "test"})
    loaded = checkpoints.load(tmp_path / "clf")
    assert isinstance(loaded, Classifier) and loaded.cfg == model.cfg and not loaded.training
    x = torch.rand(4, 1, 28, 28) * 2 - 1
    torch.testing.assert_close(loaded(x), model(x))
    torch.testing.assert_close(loaded.features(x), model.features(x))


def test_shipped_classifier_card_and_size():
    stem = checkpoints.PRETRAINED_DIR / "mnist-classifier"
    assert stem.with_suffix(".safetensors").stat().st_size < 3_000_000
    meta = json.loads(stem.with_suffix(".json").read_text(encoding="utf-8"))
    assert meta["kind"] == "classifier" and meta["test_accuracy"] >= 0.99
    assert "Test accuracy" in stem.with_suffix(".md").read_text(encoding="utf-8")


def test_classifier_rejects_wrong_input(clf):
    with pytest.raises(ValueError, match=r"\(N, 1, 28, 28\)"):
        clf(torch.zeros(2, 3, 28, 28))
    with pytest.raises(ValueError, match="from_uint8"):
        metrics.extract_features(clf, torch.zeros(2, 1, 28, 28, dtype=torch.uint8))
    with pytest.raises(ValueError, match=r"\[-1, 1\]"):
        metrics.extract_features(clf, torch.full((2, 1, 28, 28), 2.0))


def test_random_shift_moves_digits_and_keeps_background():
    x = -torch.ones(64, 1, 28, 28)
    x[:, :, 13:15, 13:15] = 1.0
    y = random_shift(x, 2, torch.Generator().manual_seed(0))
    assert y.shape == x.shape and (y == 1).sum(dim=(1, 2, 3)).eq(4).all()  # whole blob kept, only moved
    assert not torch.equal(y, x)


# --- diversity, attribute adherence, report ------------------------------------------------------------

def test_diversity_larger_for_varied_set_than_for_copies(clf, mnist_test):
    images, labels = mnist_test[0][:200], mnist_test[1][:200]
    varied = metrics.extract_features(clf, images)
    copies = metrics.extract_features(clf, images[:1].repeat(200, 1, 1, 1))
    assert metrics.diversity(copies) == pytest.approx(0.0, abs=1e-6)
    assert metrics.diversity(varied) > 1.0
    assert metrics.diversity(varied, labels) < metrics.diversity(varied)  # within a class < across classes
    with pytest.raises(ValueError, match="at least 2"):
        metrics.diversity(varied[:3], [0, 0, 1])


def test_attribute_adherence_direction():
    g = torch.Generator().manual_seed(0)
    low = torch.rand(20, 1, 28, 28, generator=g) - 1  # in [-1, 0]
    high = torch.rand(20, 1, 28, 28, generator=g) * 1.5 - 0.5  # in [-0.5, 1], brighter on average
    brightness = lambda x: x.mean(dim=(1, 2, 3))
    r = metrics.attribute_adherence(brightness, low, high)
    assert r["adherence"] == 1.0 and r["mean_shift"] > 0
    assert metrics.attribute_adherence(brightness, high, low, paired=True)["adherence"] == 0.0
    assert metrics.attribute_adherence(brightness, low, low, paired=True)["adherence"] == 0.5  # ties: 1/2
    with pytest.raises(ValueError, match="paired"):
        metrics.attribute_adherence(brightness, low, high[:5], paired=True)


def test_evaluate_samples_report(clf, mnist_test):
    images, labels = mnist_test
    real, ref = images[:500], images[500:1500]
    report = metrics.evaluate_samples(clf, real, labels[:500], reference=ref, kid_subsets=10,
                                      generator=torch.Generator().manual_seed(0))
    json.dumps(report)  # JSON-able
    assert report["n"] == 500 and report["n_reference"] == 500 and report["accuracy"] >= 0.98
    assert report["fid_floor"] is not None and report["fid"] < 3 * report["fid_floor"] + 0.5
    noisy = (real + 0.5 * torch.randn(real.shape, generator=torch.Generator().manual_seed(1))).clamp(-1, 1)
    bad = metrics.evaluate_samples(clf, noisy, labels[:500], reference=ref, kid_subsets=10)
    assert bad["fid"] > 3 * report["fid"] and bad["kid_mean"] > report["kid_mean"]
    small_ref = metrics.evaluate_samples(clf, real, reference=images[500:800], kid_subsets=2)
    assert small_ref["fid_floor"] is None and small_ref["n_reference"] == 300 and small_ref["accuracy"] is None
    one_ref = metrics.evaluate_samples(clf, real[:4], labels[:4], reference=images[500:501], kid_subsets=2)
    assert one_ref["accuracy"] == 1.0 and (one_ref["fid"], one_ref["kid_mean"]) == (None, None)  # not computable


def test_fid_of_one_feature_is_the_1d_formula():
    """F = 1: (mu1 - mu2)^2 + (sigma1 - sigma2)^2, the closed form for two 1-D Gaussians."""
    a = torch.randn(200, 1, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    b = 2 + 3 * torch.randn(300, 1, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    want = (a.mean() - b.mean()) ** 2 + (a.std() - b.std()) ** 2
    assert metrics.fid(a, b) == pytest.approx(float(want), rel=1e-9)


def test_kid_bias_script_draws_disjoint_class_balanced_sets(capsys):
    import importlib.util
    from pathlib import Path

    path = Path(__file__).parents[1] / "scripts" / "measure_kid_bias.py"
    spec = importlib.util.spec_from_file_location("measure_kid_bias", path)
    script = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(script)
    labels = torch.arange(10).repeat(30)  # 30 images of every digit
    ia, ib = script.balanced_pair(labels, 100, torch.Generator().manual_seed(0))
    assert not set(ia.tolist()) & set(ib.tolist())
    assert torch.equal(torch.bincount(labels[ia]), torch.full((10,), 10))
    assert torch.equal(torch.bincount(labels[ib]), torch.full((10,), 10))
    script.main(["--sizes", "20", "--repeats", "2"])
    out = capsys.readouterr().out
    assert "balanced" in out and "random" in out and out.count("n =    20") == 2


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float64])
def test_a_classifier_in_another_dtype_scores_float32_images(clf, mnist_test, dtype):
    """The images take the classifier's dtype (they were cast to float32, which a bfloat16 classifier refused)."""
    import copy

    images = mnist_test[0][:64]
    other = copy.deepcopy(clf).to(dtype)
    feats, ref = metrics.extract_features(other, images), metrics.extract_features(clf, images)
    assert feats.dtype == torch.float64 and feats.shape == ref.shape
    tol = 0.05 if dtype == torch.bfloat16 else 1e-4
    assert (feats - ref).abs().max() <= tol * ref.abs().max()
