"""guidance_viz (chapter 08): the precomputed guidance grid holds what the pipeline samples, and the figures and
the widget show the images and numbers they claim to show.

A tiny random text-conditional U-Net with a toy word-embedding "text encoder" stands in for the shipped
model: what is tested is the bookkeeping (same x_T across scales, prompt-major order, lookups), not quality.
"""

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402

from diffusion_lite.config import ScheduleConfig, UNetConfig  # noqa: E402
from diffusion_lite.guidance_viz import (  # noqa: E402
    GuidanceGrid,
    guidance_figure,
    guidance_grid,
    guidance_sweep_figure,
    guidance_widget,
    scale_label,
    tradeoff_figure,
)
from diffusion_lite.pipeline import DiffusionPipeline  # noqa: E402
from diffusion_lite.schedules import Schedule  # noqa: E402
from diffusion_lite.unet import UNet  # noqa: E402
from diffusion_lite.viz import make_grid  # noqa: E402

D = 8


class ToyText:
    """text_tokens(prompts) -> (context (B, L, D), mask (B, L) bool): a start token plus one fixed random
    vector per word, so different prompts give different conditioning and "" gives the start token only."""

    def __init__(self):
        self.table = torch.randn(64, D, generator=torch.Generator().manual_seed(1))

    def text_tokens(self, prompts):
        L = 1 + max(len(p.split()) for p in prompts)
        ctx, mask = torch.zeros(len(prompts), L, D), torch.zeros(len(prompts), L, dtype=torch.bool)
        for b, p in enumerate(prompts):
            ids = [0] + [1 + sum(map(ord, w)) % 63 for w in p.split()]
            ctx[b, :len(ids)], mask[b, :len(ids)] = self.table[ids], True
        return ctx, mask


@pytest.fixture(autouse=True)
def _close_figures():
    yield
    plt.close("all")


@pytest.fixture(scope="module")
def pipe():
    torch.manual_seed(0)
    cfg = UNetConfig(base_channels=8, channel_mults=(1, 2), attn_resolutions=(), cross_attn_resolutions=(14,),
                     context_dim=D, groups=4)
    unet = UNet(cfg)
    with torch.no_grad():  # a random U-Net whose output depends visibly on the text
        for p in unet.parameters():
            p.add_(0.05 * torch.randn(p.shape, generator=torch.Generator().manual_seed(p.numel())))
    return DiffusionPipeline(unet, Schedule.from_config(ScheduleConfig(T=100)), text=ToyText())


PROMPTS, SCALES = ["a seven", "a thick one"], [0.0, 1.0, 3.0]


@pytest.fixture(scope="module")
def grid(pipe):
    return guidance_grid(pipe, PROMPTS, SCALES, n=3, steps=3, generator=torch.Generator().manual_seed(0))


def _shown(fig, index=0):
    return np.asarray([ax for ax in fig.axes if ax.images][index].images[0].get_array())


def test_grid_matches_pipeline_samples_from_the_same_noise(pipe, grid):
    assert grid.images.shape == (2, 3, 3, 1, 28, 28) and grid.n == 3  # below: atol for batch-size round-off
    assert grid.images.min() >= -1 and grid.images.max() <= 1
    x_T = torch.randn(3, 1, 28, 28, generator=torch.Generator().manual_seed(0))  # what the grid drew first
    for p in PROMPTS:
        for s in SCALES:
            expected = pipe.sample([p] * 3, guidance=s, steps=3, x_T=x_T, progress=False).clamp(-1, 1)
            torch.testing.assert_close(grid.images_for(p, s), expected, atol=2e-3, rtol=0)
    # the scale matters and so does the prompt (otherwise the figures would show nothing)
    assert (grid.images_for("a seven", 0.0) - grid.images_for("a seven", 3.0)).abs().max() > 1e-3
    assert (grid.images_for("a seven", 3.0) - grid.images_for("a thick one", 3.0)).abs().max() > 1e-3


def test_grid_does_not_depend_on_batch_size(pipe, grid):
    small = guidance_grid(pipe, PROMPTS, SCALES, n=3, steps=3, generator=torch.Generator().manual_seed(0),
                          batch_size=2)
    torch.testing.assert_close(small.images, grid.images, atol=2e-3, rtol=0)


def test_at_scale_is_prompt_major(grid):
    flat = grid.at_scale(3.0)
    assert flat.shape == (6, 1, 28, 28)
    torch.testing.assert_close(flat[3:], grid.images_for("a thick one", 3.0))


def test_negative_prompt_replaces_the_unconditional_branch(pipe):
    x_T = torch.randn(2, 1, 28, 28, generator=torch.Generator().manual_seed(5))
    g = guidance_grid(pipe, ["a seven"], [3.0], n=2, steps=3, negative_prompt="thick", x_T=x_T)
    plain = guidance_grid(pipe, ["a seven"], [3.0], n=2, steps=3, x_T=x_T)
    expected = pipe.sample(["a seven"] * 2, guidance=3.0, negative_prompt="thick", steps=3, x_T=x_T, progress=False)
    torch.testing.assert_close(g.images[0, 0], expected.clamp(-1, 1), atol=2e-3, rtol=0)
    assert g.negative_prompt == "thick" and (g.images - plain.images).abs().max() > 1e-3


def test_grid_rejects_bad_input(pipe, grid):
    uncond = DiffusionPipeline(UNet(UNetConfig(base_channels=8, channel_mults=(1, 2), attn_resolutions=(), groups=4)),
                               Schedule.from_config(ScheduleConfig(T=100)))
    with pytest.raises(ValueError, match="text-conditional"):
        guidance_grid(uncond, ["a seven"], [1.0], n=1)
    with pytest.raises(ValueError, match="x_T must have shape"):
        guidance_grid(pipe, ["a seven"], [1.0], n=2, x_T=torch.randn(3, 1, 28, 28))
    with pytest.raises(ValueError, match="at least one prompt"):
        guidance_grid(pipe, [], [1.0], n=2)
    with pytest.raises(ValueError, match="not in the grid"):
        grid.images_for("a nine", 1.0)
    with pytest.raises(ValueError, match="scale 2"):
        grid.images_for("a seven", 2.0)
    with pytest.raises(ValueError, match=r"\(P=2, S=3"):
        GuidanceGrid(grid.images[:, :2], grid.prompts, grid.scales)


def test_sweep_figure_has_a_panel_per_scale(grid):
    fig = guidance_sweep_figure(grid, n_show=2)
    assert len([ax for ax in fig.axes if ax.images]) == 3
    for j in range(3):
        np.testing.assert_array_equal(_shown(fig, j), make_grid(grid.images[:, j, :2].flatten(0, 1), nrow=2))
    assert [ax.get_title() for ax in fig.axes][:2] == ["s = 0\n(unconditional)", "s = 1\n(conditional)"]
    assert [t.get_text() for t in fig.axes[0].get_yticklabels()] == ['"a seven"', '"a thick one"']
    with pytest.raises(ValueError, match="n_show"):
        guidance_sweep_figure(grid, n_show=4)


ROWS = [{"guidance": 3.0, "accuracy": 0.97, "diversity": 4.0, "diversity_real": 6.0},
        {"guidance": 0.0, "accuracy": 0.12, "diversity": 7.0, "diversity_real": 6.0},
        {"guidance": 1.0, "accuracy": 0.85, "diversity": 6.0, "diversity_real": 6.0}]


def test_tradeoff_figure_plots_the_rows_in_order_of_scale():
    fig = tradeoff_figure(ROWS)
    ax_s, ax_t = fig.axes[0], fig.axes[1]
    x, y = ax_s.get_lines()[0].get_data()
    np.testing.assert_allclose(x, [0, 1, 3])
    np.testing.assert_allclose(y, [12, 85, 97])
    x, y = ax_t.get_lines()[0].get_data()
    np.testing.assert_allclose(x, [12, 85, 97])
    np.testing.assert_allclose(y, [7, 6, 4])
    assert [t.get_text() for t in ax_t.texts] == ["s=0", "s=1", "s=3"]
    crowded = ROWS + [{"guidance": 5.0, "accuracy": 0.97, "diversity": 3.98},
                      {"guidance": 8.0, "accuracy": 0.98, "diversity": 3.9}]
    ax_t = tradeoff_figure(crowded).axes[1]
    assert [t.get_text() for t in ax_t.texts] == ["s=0", "s=1", "s=3, 5, 8"]  # coinciding points share a label
    with pytest.raises(ValueError, match="accuracy"):
        tradeoff_figure([{"guidance": 1.0, "diversity": 3.0}])


def test_guidance_figure_shows_the_chosen_samples(grid):
    fig = guidance_figure(grid, "a thick one", 1.0)
    np.testing.assert_array_equal(_shown(fig), make_grid(grid.images_for("a thick one", 1.0), nrow=2))
    assert fig.axes[0].get_title() == '"a thick one", s = 1 (conditional)'
    fig = guidance_figure(grid, rows=ROWS)  # defaults: first prompt, s nearest 3; the curve marks s = 3
    assert '"a seven", s = 3' == fig.axes[0].get_title()
    marker = fig.axes[1].get_lines()[-1]
    assert marker.get_xdata()[0] == pytest.approx(97) and marker.get_ydata()[0] == pytest.approx(4)
    # a circle cannot pick one of several coinciding points (s = 2, 3, 5, 8 in chapter 08): the point is named
    note = fig.axes[1].texts[-1]
    assert note.get_text().startswith("this s = 3\n") and note.xy == pytest.approx((97, 4))
    fig = guidance_figure(grid, rows=ROWS, scale=1.0)
    assert fig.axes[1].texts[-1].get_text().startswith("this s = 1\n")


def test_widget_looks_up_the_grid(grid):
    w = guidance_widget(grid, rows=ROWS)
    drop, slider = w.children[:2]
    assert list(drop.options) == PROMPTS and slider.value == 3.0
    assert w.result.axes[0].get_title() == '"a seven", s = 3'
    drop.value = "a thick one"
    slider.value = 0.0
    assert w.result.axes[0].get_title() == '"a thick one", s = 0 (unconditional)'
    np.testing.assert_array_equal(_shown(w.result), make_grid(grid.images_for("a thick one", 0.0), nrow=2))
    with pytest.raises(ValueError, match="not in the grid"):
        guidance_widget(grid, prompt="a nine")


def test_scale_label():
    assert scale_label(0) == "s = 0 (unconditional)" and scale_label(1.0) == "s = 1 (conditional)"
    assert scale_label(7.5) == "s = 7.5"
