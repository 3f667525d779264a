"""Figures and widgets of chapters 03-05 (diffusion_lite.model_widgets): they show what they claim to show.

As in test_widgets.py, widgets are built outside a kernel (dummy comm), a control is moved and the figure
now on show (``widget.result``) is checked; ``interactive`` only logs exceptions in its callback, so every
widget test checks that the figure really changed.
"""

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402

from diffusion_lite.config import ScheduleConfig, UNetConfig  # noqa: E402
from diffusion_lite.model_widgets import (  # noqa: E402
    default_stages,
    feature_maps_figure,
    feature_maps_widget,
    noise_prediction_figure,
    noise_prediction_widget,
    predict_noise,
    trajectory_distances,
    trajectory_step_figure,
    trajectory_widget,
    unet_features,
)
from diffusion_lite.sampling import sample_ddim  # noqa: E402
from diffusion_lite.schedules import Schedule, predict_eps_from_x0, q_sample  # noqa: E402
from diffusion_lite.trajectory_viz import TrajectoryRecorder  # noqa: E402
from diffusion_lite.unet import UNet  # noqa: E402
from diffusion_lite.viz import make_grid  # noqa: E402

TINY = UNetConfig(base_channels=8, channel_mults=(1, 2), attn_resolutions=(14,), groups=4)


@pytest.fixture(autouse=True)
def _close_figures():
    yield
    plt.close("all")


@pytest.fixture
def schedule():
    return Schedule.from_config(ScheduleConfig("cosine", T=100))


@pytest.fixture
def digits(gen):
    """Four fake 'digits' (4, 1, 28, 28) in [-1, 1] and fixed noise of the same shape."""
    x0 = -torch.ones(4, 1, 28, 28)
    for i in range(4):
        x0[i, 0, 6 + i:20, 10 + i:14 + i] = 1.0
    return x0, torch.randn(x0.shape, generator=gen)


@pytest.fixture
def unet(gen):
    """A tiny U-Net with random (not zero-initialised) weights, so every block computes something."""
    torch.manual_seed(0)
    net = UNet(TINY).eval()
    with torch.no_grad():
        for p in net.parameters():
            p.add_(0.05 * torch.randn(p.shape, generator=gen))
    return net


def _images(fig):
    return [np.asarray(ax.images[0].get_array()) for ax in fig.axes if ax.images]


# --- chapter 04: noise prediction --------------------------------------------------------------


def test_predict_noise_with_an_oracle_and_with_zero(schedule, digits):
    x0, noise = digits
    oracle = lambda x_t, t: predict_eps_from_x0(schedule, x_t, t, x0)
    r = predict_noise(oracle, schedule, x0, noise, 40)
    torch.testing.assert_close(r["x_t"], q_sample(schedule, x0, 40, noise=noise))
    torch.testing.assert_close(r["x0_hat"], x0, atol=1e-4, rtol=0)
    assert r["mse_eps"].shape == (4,) and r["mse_eps"].max() < 1e-8 and r["mse_x0"].max() < 1e-8
    r0 = predict_noise(lambda x_t, t: torch.zeros_like(x_t), schedule, x0, noise, 40)
    torch.testing.assert_close(r0["mse_eps"], noise.pow(2).flatten(1).mean(1))
    torch.testing.assert_close(r0["x0_hat"], r0["x_t"] / schedule.sqrt_alpha_bar[40])
    with pytest.raises(ValueError, match="t must be in"):
        predict_noise(oracle, schedule, x0, noise, 100)
    with pytest.raises(ValueError, match="model_fn returned shape"):
        predict_noise(lambda x_t, t: x_t[:1], schedule, x0, noise, 3)


def test_noise_prediction_figure_shows_each_quantity_with_its_mse(schedule, digits):
    x0, noise = digits
    zero = lambda x_t, t: torch.zeros_like(x_t)
    fig = noise_prediction_figure(zero, schedule, x0[:2], noise[:2], 30)
    imgs = _images(fig)
    assert len(imgs) == 2 * 6  # 2 images x (x0, x_t, eps, eps_hat, error, x0_hat)
    x_t = q_sample(schedule, x0[:2], 30, noise=noise[:2])
    np.testing.assert_array_equal(imgs[1], make_grid(x_t[:1], padding=0))  # row by row: x_t of image 0
    np.testing.assert_array_equal(imgs[6], make_grid(x0[1:2], padding=0))  # x0 of image 1
    titles = [ax.get_title() for ax in fig.axes]
    mse0 = float(noise[0].pow(2).mean())
    assert any(ttl.startswith("predicted") and f"MSE {mse0:.3g}" in ttl for ttl in titles)
    assert "t = 30" in fig._suptitle.get_text()
    # the noise panels say which range runs black..white, and draw that range: eps = +-3 -> white / black
    assert [ttl.split("\n")[1] for ttl in titles[2:5]] == ["(shown on [-3, 3])"] * 2 + ["(shown on [-1, 1])"]
    np.testing.assert_array_equal(imgs[2], make_grid((noise[:1] / 3).clamp(-1, 1), padding=0))
    np.testing.assert_array_equal(imgs[4], make_grid(-noise[:1].clamp(-1, 1), padding=0))  # eps_hat = 0


def test_noise_prediction_widget_follows_slider(schedule, digits):
    x0, noise = digits
    model_fn = lambda x_t, t: 0.5 * x_t
    w = noise_prediction_widget(model_fn, schedule, x0, noise)
    slider = w.children[0]
    assert (slider.min, slider.max, slider.value) == (0, 99, 50)
    assert "t = 50," in w.result._suptitle.get_text()
    slider.value = 90
    assert "t = 90," in w.result._suptitle.get_text()
    np.testing.assert_array_equal(_images(w.result)[1], make_grid(q_sample(schedule, x0[:1], 90, noise=noise[:1]),
                                                                  padding=0))


# --- chapter 03: feature maps ------------------------------------------------------------------


def test_unet_features_records_every_block_and_removes_hooks(unet, digits):
    x0, _ = digits
    t = torch.tensor([5, 60, 99, 0])
    recs = unet_features(unet, x0, t)
    names = [r["name"] for r in recs]
    assert names[0] == "conv_in" and names[-1] == "conv_out"
    assert "mid.0" in names and "down.1.0" in names and "up.0.0" in names
    with torch.no_grad():
        torch.testing.assert_close(recs[-1]["out"], unet(x0, t))
    assert all(not m._forward_hooks for m in unet.modules())
    stages = default_stages(recs)
    assert [label for _, label in stages] == ["encoder 28x28", "encoder 14x14", "middle", "decoder 14x14",
                                              "decoder 28x28"]
    by = {r["name"]: r for r in recs}
    assert all(by[n]["type"] not in ("Downsample", "Upsample") for n, _ in stages)


def test_feature_maps_figure_shows_the_captured_maps(unet, digits, schedule):
    x0, noise = digits
    fig = feature_maps_figure(unet, schedule, x0[:1], noise[:1], 70, n_channels=5)
    tt = torch.tensor([70])
    recs = {r["name"]: r["out"] for r in unet_features(unet, q_sample(schedule, x0[:1], tt, noise=noise[:1]), tt)}
    stages = default_stages([{"name": n, "type": "", "out": v} for n, v in recs.items()])
    imgs = _images(fig)
    assert len(imgs) == 4 + 5 * len(stages)  # top row of 4 images, then 5 channels per stage
    np.testing.assert_array_equal(imgs[4], recs[stages[0][0]][0, 0].numpy())  # first stage, channel 0
    np.testing.assert_array_equal(imgs[-1], recs[stages[-1][0]][0, 4].numpy())  # last stage, channel 4
    ylabels = [ax.get_ylabel() for ax in fig.axes if ax.get_ylabel()]
    assert [lab.split("\n")[0] for lab in ylabels] == [label for _, label in stages]
    assert "t = 70" in fig._suptitle.get_text()
    with pytest.raises(ValueError, match="one image"):
        feature_maps_figure(unet, schedule, x0, noise, 70)
    with pytest.raises(ValueError, match="unknown blocks"):
        feature_maps_figure(unet, schedule, x0[:1], noise[:1], 70, stages=[("nope", "x")])


def test_feature_maps_widget_follows_digit_and_t(unet, digits, schedule):
    x0, noise = digits
    w = feature_maps_widget(unet, schedule, x0, noise, t=20, labels=[7, 1, 2, 3])
    drop, slider = w.children[:2]
    assert drop.label == "digit 7" and slider.value == 20
    drop.value = 2
    np.testing.assert_array_equal(_images(w.result)[0], make_grid(x0[2:3], padding=0))
    slider.value = 80
    assert "t = 80" in w.result._suptitle.get_text()
    np.testing.assert_array_equal(_images(w.result)[1], make_grid(q_sample(schedule, x0[2:3], 80, noise=noise[2:3]),
                                                                  padding=0))


# --- chapter 05: sampling trajectory -----------------------------------------------------------


@pytest.fixture
def records(unet, schedule, gen):
    rec = TrajectoryRecorder(max_images=3)
    sample_ddim(lambda x, t: unet(x, t), schedule, shape=(3, 1, 28, 28), steps=6, generator=gen, callback=rec,
                progress=False)
    return rec.records


def test_trajectory_distances_end_at_zero(records):
    d = trajectory_distances(records)
    assert d["x_t"].shape == d["x0_hat"].shape == (6,)
    assert d["x_t"][-1] == 0 and (d["x_t"][:-1] > 0).all()
    with pytest.raises(ValueError, match="no records"):
        trajectory_distances([])


def test_trajectory_step_figure_shows_that_step(records):
    fig = trajectory_step_figure(records, 2, n_images=3)
    x_t_img, x0_img = _images(fig)
    np.testing.assert_array_equal(x_t_img, make_grid(records[1]["x_t"]))
    np.testing.assert_array_equal(x0_img, make_grid(records[1]["x0_hat"]))
    text = fig._suptitle.get_text()
    assert text.startswith("step 2/6") and f"t = {records[1]['t']}" in text and f"t = {records[2]['t']}" in text
    assert "final image" in trajectory_step_figure(records, 6)._suptitle.get_text()
    with pytest.raises(ValueError, match="step must be in"):
        trajectory_step_figure(records, 0)


def test_trajectory_widget_follows_slider(records):
    w = trajectory_widget(records, n_images=3)
    slider = w.children[0]
    assert (slider.min, slider.max, slider.value) == (1, 6, 3)
    assert w.result._suptitle.get_text().startswith("step 3/6")
    slider.value = 5
    assert w.result._suptitle.get_text().startswith("step 5/6")
    np.testing.assert_array_equal(_images(w.result)[1], make_grid(records[4]["x0_hat"]))
    with pytest.raises(ValueError, match="step must be in"):
        trajectory_widget(records, step=7)
