"""Bad input gets a clear error (or is handled as documented) instead of a silently wrong result."""

import math
import warnings

import numpy as np
import pytest
import torch

from diffusion_lite import Schedule, ScheduleConfig, UNet, UNetConfig, q_sample, sample_ddim, sample_ddpm
from diffusion_lite.classifier import Classifier, ClassifierConfig, accuracy
from diffusion_lite.clip import CLIPModel, retrieval_recall, zero_shot_accuracy
from diffusion_lite.clip_train import train_clip
from diffusion_lite.layers import attention
from diffusion_lite.metrics import conditional_accuracy, extract_features
from diffusion_lite.sampling import ddim_step, ddpm_step
from diffusion_lite.viz import make_grid

TEXT_CFG = UNetConfig(image_size=8, base_channels=16, channel_mults=(1, 2), attn_resolutions=(),
                      cross_attn_resolutions=(4,), context_dim=8)
TINY_CLIP = dict(width=32, layers=1, heads=4, embed_dim=16, cnn_channels=(8, 16))


@pytest.fixture(scope="module")
def text_unet():
    torch.manual_seed(0)
    net = UNet(TEXT_CFG).eval()
    with torch.no_grad():  # conv_out starts at zero: give the output something to show
        for p in net.parameters():
            p.add_(0.05 * torch.randn_like(p))
    return net


@pytest.fixture(scope="module")
def schedule():
    return Schedule.from_config(ScheduleConfig("linear", T=50))


def _inputs(B=2, L=5):
    g = torch.Generator().manual_seed(1)
    x = torch.randn(B, 1, 8, 8, generator=g)
    ctx = torch.randn(B, L, 8, generator=g)
    mask = torch.tensor([[True, True, True, False, False], [True, True, False, False, False]])
    return x, torch.tensor([3, 40]), ctx, mask


# ------------------------------------------------------------------------------------------- U-Net
def test_unet_refuses_a_non_bool_or_mis_shaped_context_mask(text_unet):
    x, t, ctx, mask = _inputs()
    with pytest.raises(TypeError, match="bool"):
        text_unet(x, t, ctx, mask.float())  # would be an additive bias: padding not masked
    with pytest.raises(TypeError, match="bool"):
        text_unet(x, t, ctx, mask.long())
    with pytest.raises(ValueError, match="context_mask must have shape"):
        text_unet(x, t, ctx, mask[:, :4])


def test_capture_attention_gives_the_plain_output_and_an_empty_mask_row_is_refused(text_unet):
    x, t, ctx, mask = _inputs()
    with torch.no_grad():
        plain = text_unet(x, t, ctx, mask)
        with text_unet.capture_attention() as maps:
            captured = text_unet(x, t, ctx, mask)
    torch.testing.assert_close(captured, plain)
    assert maps[0]["probs"][1, :, :, 2:].abs().max() == 0  # padding gets no attention
    q, k, v = torch.randn(2, 2, 6, 4), torch.randn(2, 2, 5, 4), torch.randn(2, 2, 5, 4)
    torch.testing.assert_close(attention(q, k, v, mask), attention(q, k, v, mask, return_probs=True)[0])
    empty = mask.clone()
    empty[1] = False
    with pytest.raises(ValueError, match="at least one True"):
        text_unet(x, t, ctx, empty)


def test_unet_names_the_expected_dtype_and_accepts_an_int_step(text_unet):
    x, t, ctx, mask = _inputs()
    with pytest.raises(TypeError, match="float32"):
        text_unet(x.double(), t, ctx, mask)
    with pytest.raises(TypeError, match="from_uint8"):
        text_unet(x.to(torch.uint8), t, ctx, mask)
    with torch.no_grad():
        torch.testing.assert_close(text_unet(x, 7, ctx, mask), text_unet(x, torch.tensor([7, 7]), ctx, mask))


# -------------------------------------------------------------------------------------- schedules
def test_q_sample_refuses_misshaped_noise_integer_images_and_float_steps(schedule):
    x0 = torch.rand(2, 1, 8, 8) * 2 - 1
    with pytest.raises(ValueError, match="noise must have x0's shape"):
        q_sample(schedule, x0, 5, noise=torch.randn(1, 1, 8, 8))  # would reuse one noise for both
    with pytest.raises(ValueError, match="noise must have x0's shape"):
        q_sample(schedule, x0, 5, noise=torch.randn(3, 2, 1, 8, 8))
    with pytest.raises(TypeError, match="from_uint8"):
        q_sample(schedule, torch.full((2, 1, 8, 8), 200, dtype=torch.uint8), 5, noise=torch.randn(2, 1, 8, 8))
    with pytest.raises(TypeError, match="integer"):
        q_sample(schedule, x0, torch.tensor([1.0, 2.0]))
    with pytest.raises(TypeError, match="integer"):
        q_sample(schedule, x0, 2.5)
    assert torch.equal(q_sample(schedule, x0, np.int64(5), noise=torch.ones_like(x0)),
                       q_sample(schedule, x0, 5, noise=torch.ones_like(x0)))


def test_schedule_from_config_refuses_a_config_and_conflicting_keywords():
    with pytest.raises(TypeError, match="not both"):
        Schedule.from_config(ScheduleConfig(T=100), T=50)


# --------------------------------------------------------------------------------------- sampling
def test_samplers_refuse_zero_steps_conflicting_shape_and_integer_noise(schedule):
    zero = lambda x, t: torch.zeros_like(x)
    calls = []
    with pytest.raises(ValueError, match="steps must be an integer in"):
        sample_ddpm(zero, schedule, shape=(1, 1, 4, 4), steps=0, progress=False,
                    callback=lambda d: calls.append(d))
    assert calls == []
    with pytest.raises(ValueError, match="disagree"):
        sample_ddim(zero, schedule, shape=(3, 1, 4, 4), x_T=torch.randn(2, 1, 4, 4), steps=3, progress=False)
    with pytest.raises(TypeError, match="floating-point"):
        sample_ddim(zero, schedule, x_T=torch.zeros(1, 1, 4, 4, dtype=torch.uint8), steps=3, progress=False)


def test_step_functions_refuse_a_batch_at_different_steps(schedule):
    x_t, eps = torch.full((2, 1, 2, 2), 0.3), torch.zeros(2, 1, 2, 2)
    t, t_prev = torch.tensor([1, 1]), torch.tensor([0, -1])  # one sample would come out NaN
    with pytest.raises(ValueError, match="same step"):
        ddim_step(schedule, x_t, t, t_prev, eps)
    with pytest.raises(ValueError, match="same step"):
        ddpm_step(schedule, x_t, t, t_prev, eps, torch.zeros_like(x_t))
    with pytest.raises(ValueError, match="same step"):
        ddim_step(schedule, x_t, torch.tensor([2, 1]), torch.tensor([0, 0]), eps)


# ------------------------------------------------------------------------------------ CLIP, metrics
@pytest.fixture
def tiny_clip():
    torch.manual_seed(0)
    return CLIPModel.for_dataset("mnist", **TINY_CLIP).eval()


def _digits(n=8):
    return torch.rand(n, 1, 28, 28, generator=torch.Generator().manual_seed(2)) * 2 - 1, torch.arange(n) % 10


def test_label_counts_must_match_the_images(tiny_clip):
    images, labels = _digits()
    with pytest.raises(ValueError, match="one label per image"):
        zero_shot_accuracy(tiny_clip, images, labels[:1], [f"the digit {i}" for i in range(10)])
    clf = Classifier(ClassifierConfig(channels=(8, 8), feature_dim=8)).eval()
    with pytest.raises(ValueError, match="one label per image"):
        accuracy(clf, images, labels[:1])
    with pytest.raises(ValueError, match="k must be in"):
        retrieval_recall(tiny_clip, images, ["a seven"] * 8, ks=(1, 10))


def test_image_checks_refuse_nan_and_integers_and_warn_about_0_1(tiny_clip):
    images, labels = _digits()
    clf = Classifier(ClassifierConfig(channels=(8, 8), feature_dim=8)).eval()
    nan = images.clone()
    nan[0, 0, 0, 0] = float("nan")
    with pytest.raises(ValueError, match="NaN"):
        extract_features(clf, nan)
    with pytest.raises(ValueError, match="NaN"):
        tiny_clip.encode_image(nan)
    with pytest.raises(ValueError, match="from_uint8"):
        tiny_clip.encode_image(((images + 1) * 127.5).to(torch.uint8))
    for fn in (lambda x: conditional_accuracy(clf, x, labels), tiny_clip.encode_image):
        with pytest.warns(UserWarning, match=r"\[0, 1\]"):
            fn((images + 1) / 2)
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            fn(images)  # valid images: no warning


def test_train_clip_refuses_zero_steps_and_large_batches_and_keeps_the_temperature_free(tiny_clip):
    images, labels = _digits(16)
    kw = dict(dataset_name="mnist", progress=False, generator=torch.Generator().manual_seed(0))
    with pytest.raises(ValueError, match="steps >= 1"):
        train_clip(tiny_clip, (images, labels), steps=0, batch_size=8, **kw)
    with pytest.raises(ValueError, match="batch_size <= N"):
        train_clip(tiny_clip, (images, labels), steps=1, batch_size=32, **kw)
    with torch.no_grad():
        tiny_clip.logit_scale.fill_(5.0)  # past ln 100, where the clamp in forward has no gradient
    train_clip(tiny_clip, (images, labels), steps=2, batch_size=8, **kw)
    assert tiny_clip.logit_scale.item() <= math.log(100) + 1e-6


# ------------------------------------------------------------------------------------------- viz
def test_make_grid_shows_uint8_images_as_they_are():
    images, _ = _digits(4)
    as_bytes = ((images + 1) * 127.5).round().to(torch.uint8)
    np.testing.assert_array_equal(make_grid(as_bytes), make_grid(images))
    with pytest.raises(ValueError, match="uint8"):
        make_grid(as_bytes.long())


def test_range_warning_points_at_the_callers_line():
    """The [0, 1] warning names the user's line, not torch's no_grad wrapper or the package's internals."""
    from diffusion_lite import metrics

    clf = metrics.load_eval_classifier()
    with pytest.warns(UserWarning, match="no pixel of images is below 0") as record:
        metrics.conditional_accuracy(clf, torch.rand(4, 1, 28, 28), torch.zeros(4, dtype=torch.long))
    assert record[0].filename == __file__


def test_image_grids_refuse_what_they_would_draw_wrong(tmp_path):
    """From a tinkerer's review: 0-255 floats came out as an almost white image, and numpy or channels-last
    input failed inside numpy or PIL."""
    from diffusion_lite.viz import make_grid, save_grid

    x = torch.rand(4, 3, 16, 16) * 2 - 1
    with pytest.raises(ValueError, match=r"in \[0, 255\]\? use images / 127.5 - 1"):
        save_grid((x + 1) * 127.5, tmp_path / "g.png")
    with pytest.raises(ValueError, match=r"got ndarray \(torch.from_numpy"):
        make_grid(x.numpy())
    with pytest.raises(ValueError, match=r"C = 1, 3 or 4 channels, got shape \(4, 16, 16, 3\) \(channels last\?"):
        make_grid(x.permute(0, 2, 3, 1))
    assert not (tmp_path / "g.png").exists()
    assert make_grid(torch.randn(4, 1, 8, 8) * 3).shape == (22, 22)  # noise beyond [-1, 1] is drawn, clipped
    assert make_grid(((x + 1) * 127.5).to(torch.uint8)).shape == (38, 38, 3)  # uint8 is [0, 255]
