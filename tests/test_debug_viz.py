"""Chapter 10's symptom figures (debug_viz): they show what they claim, and bad input is a clear error."""

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402

from diffusion_lite.debug_viz import grey_background_fraction, symptoms_figure, symptoms_widget  # noqa: E402

TS = [0, 500, 999]


def _variants():
    g = torch.Generator().manual_seed(0)
    digits = -torch.ones(4, 1, 28, 28)
    digits[:, :, 8:20, 12:16] = 1  # a bar on a black background
    curves = {"working": [0.2, 0.03, 0.002], "bug": [2.0, 0.4, 0.004]}
    samples = {"working": digits, "bug": torch.randn(4, 1, 28, 28, generator=g).clamp(-1, 1)}
    return curves, samples, {"working": 3.0, "bug": 80.0}


def test_symptoms_figure_rows_and_reference():
    curves, samples, scores = _variants()
    fig = symptoms_figure(TS, curves, samples, scores)
    assert len(fig.axes) == 4  # two rows: loss plot + sample grid
    loss_bug = fig.axes[2]
    labels = [line.get_label() for line in loss_bug.get_lines()]
    assert labels == ["working", "bug"]  # the reference is drawn in every other row
    assert list(loss_bug.get_lines()[1].get_ydata()) == curves["bug"]
    assert "FID / floor 80.0" in fig.axes[3].get_title()
    plt.close(fig)
    fig = symptoms_figure(TS, curves, samples, None, names=["bug"])
    assert len(fig.axes) == 2 and fig.axes[1].get_title() == "bug"
    plt.close(fig)


def test_one_row_alone_is_as_tall_as_a_row_of_the_full_figure():
    """The widget shows one variant: its loss panel must not be squashed (it was ~0.6 inch tall)."""
    curves, samples, scores = _variants()
    curves.update({f"bug {k}": curves["bug"] for k in range(4)})
    samples.update({f"bug {k}": samples["bug"] for k in range(4)})
    scores.update({f"bug {k}": 80.0 for k in range(4)})
    heights = []
    for names in (["bug"], None):  # one row, six rows
        fig = symptoms_figure(TS, curves, samples, scores, names=names)
        heights.append(fig.axes[0].get_position().height * fig.get_figheight())  # the loss panel, in inches
        plt.close(fig)
    assert heights[0] >= 1.5 and heights[1] >= 1.2, heights
    assert heights[0] == pytest.approx(heights[1], rel=0.1)


def test_a_note_replaces_a_panel_without_data_and_no_other_variant_is_drawn_there():
    curves, samples, scores = _variants()
    curves["eval only"], samples["eval only"] = [0.3, 0.05, 0.01], "samples are the working model's"
    curves["simulated"], samples["simulated"] = "no loss measured", samples["bug"]
    scores.update({"eval only": None, "simulated": 83.9})
    fig = symptoms_figure(TS, curves, samples, scores, names=["eval only", "simulated"])
    loss_eval, img_eval, loss_sim, img_sim = fig.axes
    assert [line.get_label() for line in loss_eval.get_lines()] == ["working", "eval only"]
    assert not img_eval.get_images() and img_eval.texts[0].get_text() == "samples are the working model's"
    assert img_eval.get_title() == "eval only"  # a None score adds nothing to the title
    assert not loss_sim.get_lines() and loss_sim.texts[0].get_text() == "no loss measured"
    assert len(img_sim.get_images()) == 1 and "FID / floor 83.9" in img_sim.get_title()
    plt.close(fig)


def test_symptoms_widget_shows_the_chosen_variant():
    curves, samples, scores = _variants()
    w = symptoms_widget(TS, curves, samples, scores, value="working")
    assert w.result.axes[1].get_title().startswith("working")
    w.children[0].value = "bug"
    assert w.result.axes[1].get_title().startswith("bug")
    plt.close("all")


@pytest.mark.parametrize("change, message", [
    (lambda c, s, sc: c.update(bug=[1.0]), "one loss per time step"),
    (lambda c, s, sc: s.pop("bug"), "name the same variants"),
    (lambda c, s, sc: s.update(bug=torch.zeros(28, 28)), r"\(B, C, H, W\)"),
])
def test_bad_input_is_a_clear_error(change, message):
    curves, samples, scores = _variants()
    change(curves, samples, scores)
    with pytest.raises(ValueError, match=message):
        symptoms_figure(TS, curves, samples, scores)
    curves, samples, scores = _variants()
    with pytest.raises(ValueError, match="unknown variant"):
        symptoms_figure(TS, curves, samples, scores, names=["nope"])


def test_grey_background_fraction():
    curves, samples, _ = _variants()
    assert grey_background_fraction(samples["working"]) == 0.0
    assert grey_background_fraction((samples["working"] + 1) / 2) == 1.0  # [0, 1] shown as [-1, 1]
