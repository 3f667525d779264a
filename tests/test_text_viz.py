"""Figures and helpers of chapters 06-07 (text_viz, attention_viz): they show and compute what they claim."""

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402
from matplotlib.colors import to_rgb  # noqa: E402
from matplotlib.patches import Rectangle  # noqa: E402

from diffusion_lite.attention_viz import (  # noqa: E402
    attention_max,
    attention_steps_figure,
    attention_widget,
    sample_with_attention,
    token_comparison_figure,
    token_labels,
    token_maps,
    token_mass,
)
from diffusion_lite.captions import class_prompts  # noqa: E402
from diffusion_lite.classifier import Classifier, ClassifierConfig  # noqa: E402
from diffusion_lite.clip import CLIPModel, zero_shot_accuracy  # noqa: E402
from diffusion_lite.config import ScheduleConfig, UNetConfig  # noqa: E402
from diffusion_lite.pipeline import DiffusionPipeline  # noqa: E402
from diffusion_lite.schedules import Schedule  # noqa: E402
from diffusion_lite.text_viz import (  # noqa: E402
    EXAMPLE_PROMPTS,
    caption_grid_figure,
    embedding_space_figure,
    pca_2d,
    prompt_samples,
    prompt_samples_figure,
    prompt_widget,
    similarity_matrix_figure,
    softmax_temperature_figure,
    temperature_widget,
    zero_shot_by_wording,
)
from diffusion_lite.tokenizer import Tokenizer  # noqa: E402
from diffusion_lite.unet import UNet  # noqa: E402
from diffusion_lite.utils import to_uint8  # noqa: E402


@pytest.fixture(autouse=True)
def _close_figures():
    yield
    plt.close("all")


@pytest.fixture(scope="module")
def tiny_clip():
    torch.manual_seed(0)
    return CLIPModel.for_dataset("mnist", width=16, layers=1, heads=2, embed_dim=16, cnn_channels=(8, 8, 8)).eval()


@pytest.fixture(scope="module")
def tiny_pipe(tiny_clip):
    """A random text-to-image pipeline with cross-attention at 28x28 and 14x14 (output layers un-zeroed)."""
    torch.manual_seed(0)
    unet = UNet(UNetConfig(base_channels=8, channel_mults=(1, 2), attn_resolutions=(), cross_attn_resolutions=(28, 14),
                           context_dim=16))
    with torch.no_grad():
        for p in unet.parameters():
            if not p.any():
                p.copy_(0.05 * torch.randn(p.shape))
    return DiffusionPipeline(unet, Schedule.from_config(ScheduleConfig(T=100)), text=tiny_clip)


# ------------------------------------------------------------------------------------ chapter 06
def test_caption_grid_labels_every_image(gen):
    images = torch.rand(5, 1, 28, 28, generator=gen) * 2 - 1
    caps = [f"caption number {i}" for i in range(5)]
    fig = caption_grid_figure(images, caps, ncols=3)
    labels = [ax.get_xlabel() for ax in fig.axes]
    assert len(fig.axes) == 5 and all(f"number {i}" in lab for i, lab in enumerate(labels))
    with pytest.raises(ValueError, match="captions"):
        caption_grid_figure(images, caps[:4])


def test_similarity_matrix_outlines_the_best_caption_of_each_row(gen):
    sim = torch.rand(4, 3, generator=gen)
    fig = similarity_matrix_figure(sim, torch.zeros(4, 1, 28, 28), ["a", "b", "c"])
    heat = fig.axes[1]
    boxes = [p for p in heat.patches if isinstance(p, Rectangle)]
    assert [(round(b.get_x() + 0.5), round(b.get_y() + 0.5)) for b in boxes] == \
        [(int(sim[i].argmax()), i) for i in range(4)]
    assert {t.get_text() for t in heat.texts} >= {f"{v:.2f}" for v in sim.flatten().tolist()}
    # white edged with black reads on every viridis colour (red on viridis hardly does for deuteranopes)
    assert all(to_rgb(b.get_edgecolor()) == to_rgb("white") and b.get_linewidth() >= 2 for b in boxes)
    assert all(to_rgb(b.get_path_effects()[0]._gc["foreground"]) == to_rgb("black") for b in boxes)
    with pytest.raises(ValueError, match="captions"):
        similarity_matrix_figure(sim, torch.zeros(4, 1, 28, 28), ["a", "b"])


def _bar_heights(ax):
    return [b.get_width() for b in ax.containers[0]]


def _red_rows(ax):
    return [i for i, b in enumerate(ax.containers[0]) if b.get_facecolor()[:3] == to_rgb("C3")]


def _highlighted_rows(ax):
    """Rows covered by a patch that is not a bar (the target's highlight), with its colour."""
    bars = set(ax.containers[0])
    return [(round(p.get_y() + p.get_height() / 2), p.get_facecolor()[:3]) for p in ax.patches if p not in bars]


def test_softmax_sharpens_as_the_temperature_falls():
    s = torch.tensor([0.5, 0.4, 0.1, -0.2])
    fig = softmax_temperature_figure(s, list("abcd"), temperatures=(1.0, 0.1, 0.01))
    heights = [_bar_heights(ax) for ax in fig.axes]
    for h, tau in zip(heights, (1.0, 0.1, 0.01)):
        assert sum(h) == pytest.approx(1.0, abs=1e-6)
        assert h == pytest.approx((s / tau).softmax(0).tolist(), abs=1e-6)
    assert max(heights[0]) < max(heights[1]) < max(heights[2])
    with pytest.raises(ValueError, match="labels"):
        softmax_temperature_figure(s, ["a"])


def test_softmax_figure_marks_the_right_caption_apart_from_the_most_probable_one():
    s = torch.tensor([0.5, 0.4, 0.45, -0.2])  # the right caption (2) is not the most similar one (0)
    fig = softmax_temperature_figure(s, list("abcd"), temperatures=(1.0, 0.1, 0.01), target=2)
    for ax, tau in zip(fig.axes, (1.0, 0.1, 0.01)):
        p = (s / tau).softmax(0)
        assert _red_rows(ax) == [0]  # red is still the most probable caption...
        assert _highlighted_rows(ax) == [(2, to_rgb("gold"))]  # ...and the right one is marked in gold
        assert f"own caption {p[2]:.2f}, top {p[0]:.2f}" in ax.get_title()
        assert _bar_heights(ax) == pytest.approx(p.tolist(), abs=1e-6)
    assert [t.get_text() for t in fig.legends[0].get_texts()] == \
        ["own caption (2): the right answer", "most probable caption", "other captions"]
    plain = softmax_temperature_figure(s, list("abcd"))  # no target: nothing highlighted, no legend
    assert all(_highlighted_rows(ax) == [] and "own caption" not in ax.get_title() for ax in plain.axes)
    assert not plain.legends
    right = softmax_temperature_figure(s, list("abcd"), target=0)  # the right caption is also the top one
    assert _red_rows(right.axes[0]) == [0] and _highlighted_rows(right.axes[0]) == [(0, to_rgb("gold"))]
    for index in (np.int64(3), torch.tensor(3)):  # any integer index will do
        assert _highlighted_rows(softmax_temperature_figure(s, list("abcd"), target=index).axes[0])[0][0] == 3


@pytest.mark.parametrize("bad", [4, -1, 1.0, True, "0", torch.tensor(0.0)])
def test_a_bad_target_index_is_a_clear_error(bad):
    s = torch.tensor([0.5, 0.4, 0.45, -0.2])
    with pytest.raises(ValueError, match=r"target must be the index of the right caption, an int in \[0, 4\)"):
        softmax_temperature_figure(s, list("abcd"), target=bad)
    with pytest.raises(ValueError, match="target must be"):  # at once, not printed later by the widget
        temperature_widget(s, list("abcd"), target=bad)


def test_temperature_widget_redraws_with_the_new_tau():
    s = torch.tensor([0.5, 0.4, 0.1])
    w = temperature_widget(s, list("abc"), tau=1.0)
    before = max(_bar_heights(w.result.axes[0]))
    w.children[0].value = 0.01
    after = max(_bar_heights(w.result.axes[0]))
    assert after > before and after == pytest.approx(float((s / 0.01).softmax(0).max()), rel=1e-4)
    w = temperature_widget(s, list("abc"), tau=1.0, target=2)
    w.children[0].value = 0.01
    ax = w.result.axes[0]
    assert _highlighted_rows(ax) == [(2, to_rgb("gold"))] and _red_rows(ax) == [0] and "own caption" in ax.get_title()


def test_pca_2d_recovers_a_plane_and_shares_axes(gen):
    basis = torch.linalg.qr(torch.randn(8, 2, generator=gen))[0]  # (8, 2) orthonormal
    a = torch.randn(30, 2, generator=gen) * torch.tensor([3.0, 1.0]) @ basis.T + 5  # points in a shifted plane
    b = torch.randn(10, 2, generator=gen) @ basis.T + 5
    (pa, pb), ratio = pca_2d(a, b)
    assert pa.shape == (30, 2) and pb.shape == (10, 2)
    assert ratio.sum() == pytest.approx(1.0, abs=1e-5) and ratio[0] >= ratio[1]
    x, p = torch.cat([a, b]), torch.cat([pa, pb])
    dist = lambda z: (z[:, None] - z[None]).norm(dim=-1)  # (N, N) pairwise distances
    torch.testing.assert_close(dist(p), dist(x), atol=1e-3, rtol=1e-4)  # a projection onto the plane keeps them
    with pytest.raises(ValueError, match="same E"):
        pca_2d(a, torch.zeros(3, 7))


def test_embedding_space_figure_draws_one_star_per_prompt(gen):
    img, txt = torch.randn(40, 6, generator=gen), torch.randn(3, 6, generator=gen)
    labels = torch.arange(40) % 3
    fig = embedding_space_figure(img, labels, txt, [0, 1, 2], ["zero", "one", "two"])
    ax = fig.axes[0]
    assert [t.get_text() for t in ax.texts] == ["0", "1", "2", "zero", "one", "two"]
    assert "%" in ax.get_xlabel() and "%" in ax.get_ylabel()
    # each class's number sits at the median of its dots (told apart without colour)
    (pi, _), _ = pca_2d(img, txt)
    for c, t in enumerate(ax.texts[:3]):
        assert t.get_position() == pytest.approx(tuple(pi[labels == c].median(0).values.tolist()))


def test_embedding_space_figure_keeps_a_prompt_text_off_the_other_stars():
    """Two stars side by side: the left one's text, pushed outwards (left, from the stars' centre) would be
    fine, but the right one's text must not cover the left star; every text is clear of the other stars."""
    img = torch.zeros(30, 3)
    img[:, 2] = torch.linspace(-1, 1, 30)  # the dots, off to the side
    txt = torch.tensor([[0.0, 0.0, 0.0], [0.08, -0.02, 0.0], [1.0, 0.0, 0.0], [-1.0, 0.0, 0.0]])
    names = ["the digit zero", "the digit four", "a", "b"]
    fig = embedding_space_figure(img, torch.zeros(30, dtype=torch.long), txt, [0, 4, 1, 2], names)
    ax = fig.axes[0]
    renderer = fig.canvas.get_renderer()
    stars = [ax.transData.transform(c.get_offsets()[0]) for c in ax.collections[-4:]]  # after the dots
    texts = {t.get_text(): t.get_window_extent(renderer) for t in ax.texts}
    for i, name in enumerate(names):
        assert not any(texts[name].contains(*p) for j, p in enumerate(stars) if j != i), name


def test_zero_shot_by_wording_matches_zero_shot_accuracy(tiny_clip, gen):
    images = torch.rand(30, 1, 28, 28, generator=gen) * 2 - 1
    labels = torch.arange(30) % 10
    sets = {"a": class_prompts("mnist"), "b": class_prompts("mnist", "a handwritten {digit}")}
    accs = zero_shot_by_wording(tiny_clip, images, labels, sets, batch_size=7)
    for name, prompts in sets.items():
        assert accs[name] == pytest.approx(zero_shot_accuracy(tiny_clip, images, labels, prompts))


# ------------------------------------------------------------------------------------ chapter 07
def test_token_labels_show_the_real_tokens():
    tok = Tokenizer.for_dataset("mnist")
    assert token_labels(tok, "a thick seven") == ["<bos>", "a", "thick", "seven", "<eos>"]
    assert token_labels(tok, "") == ["<bos>", "<eos>"]
    assert token_labels(tok, "a skinny seven") == ["<bos>", "a", "<unk>", "seven", "<eos>"]


def test_token_maps_average_heads_and_layers(gen):
    p_fine = torch.rand(3, 2, 16, 5, generator=gen).softmax(-1)  # (B, h, N = 4x4, L)
    p_coarse = torch.rand(3, 2, 4, 5, generator=gen).softmax(-1)  # 2x2
    maps = token_maps([{"probs": p_fine, "resolution": 4}, {"probs": p_coarse, "resolution": 2}])
    assert maps.shape == (3, 5, 4, 4)
    torch.testing.assert_close(maps.sum(1), torch.ones(3, 4, 4))  # still a distribution over the tokens
    fine_only = token_maps([{"probs": p_fine, "resolution": 4}], batch=slice(0, 2))
    assert fine_only.shape == (2, 5, 4, 4)
    # pixel (row 1, col 2) of the 4x4 map is query 1 * 4 + 2; token 3; heads averaged
    assert fine_only[1, 3, 1, 2] == pytest.approx(float(p_fine[1, :, 6, 3].mean()))
    with pytest.raises(ValueError, match="no attention records"):
        token_maps([])
    with pytest.raises(ValueError, match="not 3x3"):
        token_maps([{"probs": p_fine, "resolution": 3}])


def test_sample_with_attention_records_every_step_without_changing_the_samples(tiny_pipe):
    prompts = ["a thick seven", "the digit one"]
    x_T = torch.randn(2, 1, 28, 28, generator=torch.Generator().manual_seed(3))
    images, frames = sample_with_attention(tiny_pipe, prompts, guidance=3.0, steps=4, x_T=x_T)
    plain = tiny_pipe.sample(prompts, guidance=3.0, steps=4, x_T=x_T, progress=False)
    torch.testing.assert_close(images, plain)
    assert len(frames) == 4 and [f["i"] for f in frames] == [0, 1, 2, 3]
    assert frames[0]["t"] > frames[-1]["t"]
    assert frames[0]["maps"].shape == (2, 16, 28, 28) and frames[0]["x0_hat"].shape == (2, 1, 28, 28)
    torch.testing.assert_close(frames[2]["maps"].sum(1), torch.ones(2, 28, 28))
    assert (frames[0]["maps"][0, 5:] == 0).all()  # padding of "a thick seven" (5 real tokens) gets nothing
    # the maps are those of the prompt (conditional half): at the first step they equal the unguided run's
    _, cond_only = sample_with_attention(tiny_pipe, prompts, guidance=1.0, steps=4, x_T=x_T)
    torch.testing.assert_close(frames[0]["maps"], cond_only[0]["maps"])
    assert not torch.allclose(frames[0]["maps"][0], frames[0]["maps"][1])  # different prompts, different maps
    assert all(m.capture is None for m in tiny_pipe.unet.modules() if hasattr(m, "capture"))
    mass = token_mass(frames, index=1)
    assert mass.shape == (4, 16)
    torch.testing.assert_close(mass.sum(1), torch.ones(4))
    with pytest.raises(ValueError, match="list of strings"):
        sample_with_attention(tiny_pipe, "a seven", steps=2)
    # the empty prompt's maps: the second half of the guided batch, equal to those of the empty prompt alone
    _, empty = sample_with_attention(tiny_pipe, prompts, guidance=3.0, steps=4, x_T=x_T, branch="empty")
    _, empty_only = sample_with_attention(tiny_pipe, prompts, guidance=0.0, steps=4, x_T=x_T, branch="empty")
    torch.testing.assert_close(empty[0]["maps"], empty_only[0]["maps"])
    assert not torch.allclose(empty[0]["maps"], frames[0]["maps"])
    for guidance, branch in ((1.0, "empty"), (0.0, "prompt")):
        with pytest.raises(ValueError, match=f"guidance {guidance:g} runs only"):
            sample_with_attention(tiny_pipe, prompts, guidance=guidance, steps=2, branch=branch)
    with pytest.raises(ValueError, match="branch must be"):
        sample_with_attention(tiny_pipe, prompts, steps=2, branch="uncond")


def _frames(steps=3, L=5):
    g = torch.Generator().manual_seed(0)
    return [{"i": i, "t": 90 - 30 * i, "x0_hat": torch.rand(2, 1, 28, 28, generator=g) * 2 - 1,
             "maps": torch.rand(2, 16, 7, 7, generator=g).softmax(1)} for i in range(steps)]


def _maps(fig):
    """Every attention map drawn in a figure: the images not drawn in gray (the x0_hat panels)."""
    return [im for ax in fig.axes for im in ax.images if im.get_cmap().name != "gray"]


def _overlays(fig):
    """The colour limits (vmin, vmax), vmax to 6 digits, of every attention map drawn under an x0_hat outline."""
    return [(im.get_clim()[0], round(im.get_clim()[1], 6)) for im in _maps(fig)]


def test_attention_maps_are_opaque_viridis_with_the_digit_as_an_outline():
    """The colour bar reads true only if nothing is blended into the map: no alpha, no grey image under it,
    a perceptually uniform colormap (not jet); the digit x0_hat is drawn as contour lines on top."""
    frames = _frames()
    for f in frames:  # a clear "digit": a bright bar on a black background
        f["x0_hat"] = -torch.ones_like(f["x0_hat"])
        f["x0_hat"][..., 8:20, 12:16] = 1
    fig = attention_steps_figure(frames, ["<bos>", "a", "seven"], [1])
    maps = _maps(fig)
    assert len(maps) == 3 and all(im.get_cmap().name == "viridis" and im.get_alpha() in (None, 1) for im in maps)
    for ax in fig.axes[1:4]:
        assert len(ax.images) == 1, "the map alone, not drawn over a grey x0_hat"
        assert ax.collections, "x0_hat's outline (contour lines) over the map"
    fig = token_comparison_figure([frames, frames], ["a", "b"], [["<bos>", "a"]] * 2, 1, step=0)
    assert [im.get_cmap().name for im in _maps(fig)] == ["viridis"] * 2


def test_attention_steps_figure_has_one_row_per_step_and_one_column_per_token():
    frames, tokens = _frames(), ["<bos>", "a", "thick", "seven", "<eos>"]
    fig = attention_steps_figure(frames, tokens, [0, 2], index=1)
    assert len(fig.axes) == 2 * 6 + 1  # the panels and one colour bar
    assert [ax.get_title() for ax in fig.axes[:6]] == ["x0_hat", *tokens]
    assert [fig.axes[0].get_ylabel(), fig.axes[6].get_ylabel()] == ["t = 90", "t = 30"]
    share = float(frames[2]["maps"][1, 3].mean())
    assert fig.axes[6 + 4].texts[0].get_text() == f"{share:.0%}"  # token "seven" at step 2
    with pytest.raises(ValueError, match="show_steps"):
        attention_steps_figure(frames, tokens, [3])


def test_attention_steps_figure_puts_every_panel_on_one_colour_scale_with_a_colour_bar():
    frames, tokens = _frames(), ["<bos>", "a", "thick", "seven", "<eos>"]
    frames[1]["maps"][1, 3] *= 5  # the hottest map of the run is at a step the figure does not show
    run_max = float(torch.stack([f["maps"][1, :5] for f in frames]).max())
    assert attention_max(frames, 5, index=1) == run_max
    fig = attention_steps_figure(frames, tokens, [0, 2], index=1)
    clims = _overlays(fig)
    assert len(clims) == 2 * 5 and set(clims) == {(0.0, round(run_max, 6))}
    panel_max = [float(frames[s]["maps"][1, j].max()) for s in (0, 2) for j in range(5)]
    assert min(panel_max) < 0.8 * run_max  # so a per-panel scale would have failed the line above
    assert fig.axes[-1].get_ylabel() == "attention to the token"  # the colour bar
    assert fig.axes[-1].get_ylim() == pytest.approx((0, run_max))
    fixed = attention_steps_figure(frames, tokens, [1], index=1, vmax=0.5)
    assert set(_overlays(fixed)) == {(0.0, 0.5)}
    with pytest.raises(ValueError, match="vmax must be > 0"):
        attention_steps_figure(frames, tokens, [1], vmax=0.0)
    with pytest.raises(ValueError, match="17 tokens"):
        attention_steps_figure(frames, ["x"] * 17, [1])


def test_attention_widget_moves_through_the_steps_on_one_colour_scale():
    frames = _frames(steps=4)
    w = attention_widget(frames, ["<bos>", "a", "seven"])
    assert w.result.axes[0].get_ylabel() == "t = 30"  # starts at the middle step (index 2)
    scale = set(_overlays(w.result))
    w.children[0].value = 0
    assert w.result.axes[0].get_ylabel() == "t = 90"
    assert set(_overlays(w.result)) == scale == {(0.0, round(attention_max(frames, 3), 6))}
    w = attention_widget(frames, ["<bos>", "a", "seven"], vmax=0.3)
    assert set(_overlays(w.result)) == {(0.0, 0.3)}
    with pytest.raises(ValueError, match="vmax must be > 0"):
        attention_widget(frames, ["<bos>"], vmax=-1)


def test_token_comparison_figure_shows_one_token_of_each_run_on_one_scale():
    thick, thin = _frames(), _frames()
    for f in thin:  # "thin" gets a third of the attention "thick" gets
        f["maps"] = f["maps"].clone()
        f["maps"][:, 2] /= 3
    tokens = [["<bos>", "a", "thick", "seven", "<eos>"], ["<bos>", "a", "thin", "seven", "<eos>"]]
    fig = token_comparison_figure([thick, thin], ["a thick seven", "a thin seven"], tokens, 2, step=1, title="same x_T")
    share = [float(fr[1]["maps"][0, 2].mean()) for fr in (thick, thin)]
    titles = [ax.get_title() for ax in fig.axes[:4]]
    assert titles == ['"a thick seven": x0_hat', f'attention to "thick" ({share[0]:.0%})',
                      '"a thin seven": x0_hat', f'attention to "thin" ({share[1]:.0%})']
    top = float(thick[1]["maps"][0, 2].max())  # the hotter of the two maps shown
    assert set(_overlays(fig)) == {(0.0, round(top, 6))}  # "thin" is not stretched to its own maximum
    assert fig.axes[-1].get_ylabel() == "attention"
    assert fig._suptitle.get_text() == "step 2 of 3 (t = 60), same x_T"
    with pytest.raises(ValueError, match="step must be in"):
        token_comparison_figure([thick, thin], ["a", "b"], tokens, 2, step=3)
    with pytest.raises(ValueError, match="one prompt and one token list per run"):
        token_comparison_figure([thick, thin], ["a"], tokens, 2, step=0)


# ------------------------------------------------------------------------------------ chapter 00
def test_prompt_samples_are_fixed_by_prompt_and_seed(tiny_pipe):
    a = prompt_samples(tiny_pipe, "a thick seven", seed=3, n=2, steps=2)
    x_T = torch.randn(2, 1, 28, 28, generator=torch.Generator().manual_seed(3))
    plain = tiny_pipe.sample(["a thick seven"] * 2, guidance=3.0, steps=2, x_T=x_T, progress=False)
    torch.testing.assert_close(a, plain.clamp(-1, 1))
    assert not torch.allclose(a, prompt_samples(tiny_pipe, "a thick seven", seed=4, n=2, steps=2))
    assert not torch.allclose(a, prompt_samples(tiny_pipe, "the digit one", seed=3, n=2, steps=2))
    with pytest.raises(ValueError, match="string"):
        prompt_samples(tiny_pipe, ["a seven"])


def _shown_images(fig):
    return [ax.images[0].get_array() for ax in fig.axes]


def test_prompt_samples_figure_shows_the_samples_and_what_the_classifier_reads(tiny_pipe):
    torch.manual_seed(0)
    clf = Classifier(ClassifierConfig(channels=(8, 16), feature_dim=16)).eval()
    fig = prompt_samples_figure(tiny_pipe, "a thin seven", seed=1, n=3, steps=2, guidance=2.0, classifier=clf)
    images = prompt_samples(tiny_pipe, "a thin seven", seed=1, n=3, steps=2, guidance=2.0)
    assert len(fig.axes) == 3
    for shown, img in zip(_shown_images(fig), images):
        assert (shown == to_uint8(img)[0].numpy()).all()
    with torch.no_grad():
        reads = clf(images).argmax(1).tolist()
    assert [ax.get_xlabel() for ax in fig.axes] == [f"reads as {k}" for k in reads]
    assert fig._suptitle.get_text() == '"a thin seven", seed 1: 2 DDIM steps, guidance scale 2'
    fig = prompt_samples_figure(tiny_pipe, "", n=2, steps=2)
    assert fig._suptitle.get_text().startswith('"" (empty prompt), seed 0')
    assert [ax.get_xlabel() for ax in fig.axes] == ["", ""]


def test_prompt_widget_samples_the_chosen_prompt_and_seed(tiny_pipe):
    w = prompt_widget(tiny_pipe, prompt="a thick seven", n=2, steps=2)
    box, seed, scale = w.children[:3]
    assert list(box.options) == list(EXAMPLE_PROMPTS) and seed.value == 0 and scale.value == 3.0
    assert w.result._suptitle.get_text().startswith('"a thick seven", seed 0')
    box.value = "the digit one"
    seed.value = 7
    scale.value = 1.0
    assert w.result._suptitle.get_text() == '"the digit one", seed 7: 2 DDIM steps, guidance scale 1'
    expected = prompt_samples(tiny_pipe, "the digit one", seed=7, n=2, steps=2, guidance=1.0)
    assert (_shown_images(w.result)[1] == to_uint8(expected[1])[0].numpy()).all()
