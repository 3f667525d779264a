"""eval_widgets (chapter 09's explorer): the distortions do what they say, the sweep stores the features and
scores of every level, and the figure and the widget show the FIDs they claim at the chosen sample count.

A small random classifier stands in for the shipped one: what is tested is the bookkeeping, not the values.
"""

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402

from diffusion_lite import metrics  # noqa: E402
from diffusion_lite.captions import thickness  # noqa: E402
from diffusion_lite.classifier import Classifier, ClassifierConfig  # noqa: E402
from diffusion_lite.eval_widgets import (  # noqa: E402
    DISTORTIONS,
    distort,
    distortion_figure,
    distortion_sweep,
    distortion_widget,
    level_label,
)


@pytest.fixture(autouse=True)
def _close_figures():
    yield
    plt.close("all")


def _digits(n, seed=0):
    """n crude 'digits': a bar of random position and length on a black background, in [-1, 1]."""
    g = torch.Generator().manual_seed(seed)
    x = -torch.ones(n, 1, 28, 28)
    for i in range(n):
        r, c, h = torch.randint(6, 12, (3,), generator=g).tolist()
        x[i, 0, r:r + h + 4, c + 4:c + 7] = 1.0
    return x


@pytest.fixture(scope="module")
def clf():
    torch.manual_seed(0)
    return Classifier(ClassifierConfig(channels=(8, 16), feature_dim=16)).eval()


@pytest.fixture(scope="module")
def sweep(clf):
    images, labels = _digits(40), torch.arange(40) % 10
    ref = metrics.extract_features(clf, _digits(30, seed=1))
    return distortion_sweep(clf, images, labels, ref, kinds=("Gaussian noise", "shift"),
                            generator=torch.Generator().manual_seed(0), n_examples=3)


def test_distortions_keep_the_range_and_level_zero_is_the_identity():
    x, noise = _digits(4), torch.randn(4, 1, 28, 28, generator=torch.Generator().manual_seed(2))
    for kind, d in DISTORTIONS.items():
        assert len(d.values) == 5 and d.values[0] == 0
        torch.testing.assert_close(distort(kind, x, 0, noise), x)
        for level in range(1, 5):
            y = distort(kind, x, level, noise)
            assert y.shape == x.shape and y.min() >= -1 and y.max() <= 1 and not torch.equal(y, x), (kind, level)
    shifted = distort("shift", x, 2)
    torch.testing.assert_close(shifted[..., 2:, 2:], x[..., :-2, :-2])  # moved 2 px right and down
    assert (shifted[..., :2, :] == -1).all() and (shifted[..., :, :2] == -1).all()  # background, not wrapped ink
    torch.testing.assert_close(distort("Gaussian noise", x, 1, noise), (x + 0.1 * noise).clamp(-1, 1))
    bar = -torch.ones(1, 1, 28, 28)
    bar[0, 0, 8:20, 12:15] = 1.0  # a vertical stroke 3 px wide
    widths = [int((distort("thicker strokes", bar, k)[0, 0, 14] > 0).sum()) for k in range(5)]
    assert widths == [3, 4, 5, 6, 7]  # level k: k pixels wider
    thick = [thickness(distort("thicker strokes", x, k)).mean().item() for k in range(5)]
    assert thick == sorted(thick)
    blurred = distort("blur", x, 3)
    assert blurred.max() < 1 and torch.allclose(blurred.mean(), x.mean(), atol=0.02)  # blur keeps the ink
    rot = distort("rotation", x, 4)
    assert torch.allclose((rot + 1).sum(), (x + 1).sum(), rtol=0.1)  # the bar stays inside the frame
    assert level_label("blur", 3) == "blur, sigma 1 px" and level_label("shift", 0) == "none"
    with pytest.raises(ValueError, match="unknown distortion"):
        distort("mirror", x, 1)
    with pytest.raises(ValueError, match="level"):
        distort("blur", x, 5)


def test_sweep_stores_features_and_scores_of_every_level(clf, sweep):
    assert sweep.kinds == ("Gaussian noise", "shift") and sweep.n_max == 30
    assert sweep.feats["shift"].shape == (5, 40, 16) and sweep.correct["shift"].shape == (5, 40)
    assert sweep.examples["shift"].shape == (5, 3, 1, 28, 28)
    images = _digits(40)
    torch.testing.assert_close(sweep.feats["shift"][2], metrics.extract_features(clf, distort("shift", images, 2)))
    torch.testing.assert_close(sweep.feats["shift"][0], sweep.feats["Gaussian noise"][0])  # level 0: clean
    rows = sweep.scores("shift", 20)
    assert [r["value"] for r in rows] == list(DISTORTIONS["shift"].values)
    assert rows[3]["fid"] == pytest.approx(metrics.fid(sweep.feats["shift"][3, :20], sweep.ref_feats[:20]))
    assert rows[1]["accuracy"] == pytest.approx(sweep.correct["shift"][1, :20].double().mean().item())
    with pytest.raises(ValueError, match="n must be"):
        sweep.scores("shift", 31)
    with pytest.raises(ValueError, match="holds"):
        sweep.scores("blur", 20)
    with pytest.raises(ValueError, match="unknown distortion"):
        distortion_sweep(clf, images, torch.zeros(40, dtype=torch.long), sweep.ref_feats, kinds=("mirror",))


def test_figure_plots_fid_at_the_chosen_n_and_marks_the_level(sweep):
    fig = distortion_figure(sweep, "shift", level=3, n=20, n_options=(10, 20, 30))
    ax_img, ax, ax_acc = fig.axes
    rows = sweep.scores("shift", 20)
    fid_line = next(ln for ln in ax.get_lines() if ln.get_label() == "FID, n = 20")
    assert list(fid_line.get_ydata()) == pytest.approx([r["fid"] for r in rows])
    floor = next(ln for ln in ax.get_lines() if ln.get_label() == "real-vs-real floor at n = 20")
    assert floor.get_ydata()[0] == pytest.approx(rows[0]["fid"])
    marker = ax.get_lines()[-1]
    assert marker.get_xdata()[0] == 3 and marker.get_ydata()[0] == pytest.approx(rows[3]["fid"])
    grey = [ln for ln in ax.get_lines() if ln.get_color() == "0.7"]
    assert len(grey) == 2  # n = 10 and n = 30; 20 is the highlighted one
    assert list(grey[0].get_ydata()) == pytest.approx([r["fid"] for r in sweep.scores("shift", 10)])
    assert list(ax_acc.get_lines()[0].get_ydata()) == pytest.approx([100 * r["accuracy"] for r in rows])
    assert ax.get_yscale() == "log" and ax_img.get_title() == "shift, 3 px right and down"


def test_widget_recomputes_for_kind_level_and_n(sweep):
    w = distortion_widget(sweep, n_options=(10, 30))
    kind, level, n = w.children[:3]
    assert kind.value == "Gaussian noise" and level.value == 2 and n.value == 30
    assert w.result.axes[0].get_title() == "Gaussian noise, sd 0.2"
    kind.value, level.value, n.value = "shift", 4, 10
    assert w.result.axes[0].get_title() == "shift, 4 px right and down"
    assert any(ln.get_label() == "FID, n = 10" for ln in w.result.axes[1].get_lines())
    with pytest.raises(ValueError, match="kind must be"):
        distortion_widget(sweep, kind="blur")
