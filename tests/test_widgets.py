"""Figures and widgets of chapters 01-02 (diffusion_lite.widgets): they show what they claim to show.

Outside a kernel ipywidgets works with a dummy comm: we build the ``interactive``, move a control and check
the figure it now shows (``widget.result``). ``interactive`` swallows exceptions in its callback (it only
logs them), so every widget test checks that the figure really changed.
"""

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402

from diffusion_lite.schedules import q_sample  # noqa: E402
from diffusion_lite.viz import make_grid  # noqa: E402
from diffusion_lite.widgets import (  # noqa: E402
    forward_process_figure,
    forward_process_widget,
    reverse_density_1d,
    reverse_jump_figure,
    schedule_comparison_figure,
    schedule_widget,
    schedules_for,
)

_trapz = getattr(np, "trapezoid", None) or np.trapz


@pytest.fixture(autouse=True)
def _close_figures():
    yield
    plt.close("all")


@pytest.fixture
def digits(gen):
    """Four fake 'digits' (4, 1, 28, 28) in [-1, 1] and fixed noise of the same shape."""
    x0 = -torch.ones(4, 1, 28, 28)
    for i in range(4):
        x0[i, 0, 6 + i:20, 10 + i:14 + i] = 1.0  # a bar per image, so images differ
    return x0, torch.randn(x0.shape, generator=gen)


@pytest.fixture
def linear100():
    return schedules_for(100, ("linear",))["linear"]


def _shown_image(fig, index=0):
    return np.asarray([ax for ax in fig.axes if ax.images][index].images[0].get_array())


def test_forward_figure_shows_closed_form_sample(digits, linear100):
    x0, noise = digits
    fig = forward_process_figure(linear100, x0, 30, noise)
    expected = make_grid(q_sample(linear100, x0, 30, noise=noise), nrow=2)
    np.testing.assert_array_equal(_shown_image(fig), expected)
    assert "t = 30" in fig._suptitle.get_text()
    assert f"{float(linear100.alpha_bar[30]):.3f}" in fig._suptitle.get_text()


def test_forward_figure_rejects_bad_input(digits, linear100):
    x0, noise = digits
    with pytest.raises(ValueError, match="t must be in"):
        forward_process_figure(linear100, x0, 100, noise)
    with pytest.raises(ValueError, match="noise must be"):
        forward_process_figure(linear100, x0, 3, noise[:2])


def test_forward_widget_follows_slider(digits, linear100):
    x0, noise = digits
    w = forward_process_widget(linear100, x0, noise)
    slider = w.children[0]
    assert (slider.min, slider.max, slider.value) == (0, 99, 25)
    assert "t = 25" in w.result._suptitle.get_text()
    slider.value = 80
    assert "t = 80" in w.result._suptitle.get_text()
    expected = make_grid(q_sample(linear100, x0, 80, noise=noise), nrow=2)
    np.testing.assert_array_equal(_shown_image(w.result), expected)


def test_reverse_density_is_a_density(linear100):
    grid = np.linspace(-2.5, 2.5, 2001)
    p = reverse_density_1d(linear100, 0.3, 60, 20, grid)
    assert p.shape == grid.shape and (p >= 0).all()
    assert _trapz(p, grid) == pytest.approx(1.0, abs=1e-6)


def test_reverse_density_one_step_is_narrow_and_big_jump_is_bimodal(linear100):
    grid = np.linspace(-2.5, 2.5, 5001)
    t = 99
    p1 = reverse_density_1d(linear100, 0.0, t, t - 1, grid)
    mean = _trapz(grid * p1, grid)
    var = _trapz((grid - mean) ** 2 * p1, grid)
    assert var <= float(linear100.betas[t]) * 1.01  # one step back: at most the noise that step added
    assert np.sum((p1[1:-1] > p1[:-2]) & (p1[1:-1] > p1[2:])) == 1  # a single mode
    p0 = reverse_density_1d(linear100, 0.0, t, 0, grid)
    peaks = grid[1:-1][(p0[1:-1] > p0[:-2]) & (p0[1:-1] > p0[2:])]
    np.testing.assert_allclose(sorted(peaks), [-1.0, 1.0], atol=0.01)  # back to the data: the two clean values
    assert _trapz(p0 * (grid < 0), grid) == pytest.approx(0.5, abs=1e-3)  # x_t = 0 favours neither


def test_reverse_density_rejects_forward_jump(linear100):
    with pytest.raises(ValueError, match="s < t"):
        reverse_density_1d(linear100, 0.0, 10, 10, np.linspace(-1, 1, 11))


def test_reverse_jump_figure_default_panels(linear100):
    fig = reverse_jump_figure(linear100)
    titles = [ax.get_title() for ax in fig.axes]
    assert titles[0].startswith("1 step(s) back: s = 98") and "s = 0" in titles[-1]
    with pytest.raises(ValueError, match="t must be >= 1 for a reverse jump"):  # not "got -1", a t never given
        reverse_jump_figure(linear100, t=0)


def test_schedule_comparison_shows_each_schedule_at_same_t(digits):
    x0, noise = digits
    fig = schedule_comparison_figure(x0, noise, T=10, t_frac=1.0)
    scheds = schedules_for(10)
    for i, kind in enumerate(("linear", "cosine", "sigmoid")):
        expected = make_grid(q_sample(scheds[kind], x0, 9, noise=noise), nrow=4)
        np.testing.assert_array_equal(_shown_image(fig, i), expected)
    assert "T = 10" in fig._suptitle.get_text() and "t = 9" in fig._suptitle.get_text()
    with pytest.raises(ValueError, match="t_frac"):
        schedule_comparison_figure(x0, noise, T=10, t_frac=1.5)


def test_schedule_comparison_curves_differ_in_line_style_not_only_colour(digits):
    """Orange (cosine) and green (sigmoid) look alike to red-green colour-blind readers: each kind has its own
    line style, and the legends say which is which."""
    x0, noise = digits
    fig = schedule_comparison_figure(x0, noise, T=10, t_frac=0.5)
    for ax in fig.axes[:2]:  # alpha_bar and log SNR
        lines = {ln.get_label(): ln.get_linestyle() for ln in ax.get_lines() if not ln.get_label().startswith("_")}
        assert list(lines) == ["linear", "cosine", "sigmoid"] and len(set(lines.values())) == 3, lines
        assert [t.get_text() for t in ax.get_legend().get_texts()] == list(lines)


def test_schedule_widget_follows_controls(digits):
    x0, noise = digits
    w = schedule_widget(x0, noise, T=100, t_frac=0.5)
    drop, slider = w.children[:2]
    assert "T = 100" in w.result._suptitle.get_text()
    drop.value = 10
    assert "T = 10;" in w.result._suptitle.get_text() and "t = 4" in w.result._suptitle.get_text()
    slider.value = 0.0
    assert "t = 0" in w.result._suptitle.get_text()
    with pytest.raises(ValueError, match="T_options"):
        schedule_widget(x0, noise, T=7)
