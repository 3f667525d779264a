"""What train.fit checks before it trains, from a tinkerer's report on the Python API with their own data:
wrong images and labels are errors that say what was expected, a text-conditional run gets its prompt
dropout and stores its text encoder (pipeline.text_training), and a resumed run must see the same images."""

import warnings

import numpy as np
import pytest
import torch
from test_api_roundtrip import TINY, TINY_TEXT, tiny_clip

from diffusion_lite import DiffusionPipeline, TrainConfig, UNet, fit, load, text_training
from diffusion_lite.captions import caption_fn
from diffusion_lite.config import ScheduleConfig
from diffusion_lite.data import load_dataset
from diffusion_lite.schedules import Schedule

CFG = TrainConfig(steps=2, batch_size=4, warmup_steps=1)
RGB16 = TINY.replace(in_channels=3, image_size=16)


@pytest.fixture(scope="module")
def mnist():
    return load_dataset("mnist", "train", subset=30, balanced=True)


@pytest.fixture(scope="module")
def schedule():
    return Schedule.from_config(ScheduleConfig("linear", T=100))


def rgb(n=8):
    return torch.rand(n, 3, 16, 16, generator=torch.Generator().manual_seed(0)) * 2 - 1


@pytest.mark.parametrize("images, match", [
    (np.zeros((8, 3, 16, 16), np.float32), r"torch.Tensor .* got ndarray \(torch.from_numpy"),
    (rgb().permute(0, 2, 3, 1), r"takes images \(N, 3, 16, 16\) .* got \(8, 16, 16, 3\) \(channels last\?"),
    (rgb()[:, :, :12, :12], r"takes images \(N, 3, 16, 16\) .*got \(8, 3, 12, 12\)"),
    (rgb()[:, 0], r"must be \(N, C, H, W\), got shape \(8, 16, 16\) \(add the channel axis"),
    (rgb()[:0], r"no image \(N = 0\)"),
    (rgb().double(), r"images are torch.float64 but the model's parameters torch.float32: .*images.to\(torch.float32"),
])
def test_bad_images_say_what_was_expected(schedule, images, match):
    with pytest.raises(ValueError, match=match):
        fit(UNet(RGB16), schedule, images, CFG, progress=False)


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_16_bit_weights_are_refused_with_the_amp_route(schedule, dtype):
    """The EMA would update in the weights' dtype, where 1 - 0.999 of a step mostly rounds to nothing, so the
    checkpointed (averaged) weights would barely train; TrainConfig(amp=True) is the way to 16-bit arithmetic."""
    with pytest.raises(ValueError, match=rf"weights are {dtype}; fit trains float32 weights.*amp=True"):
        fit(UNet(RGB16).to(dtype), schedule, rgb().to(dtype), CFG, progress=False)


def test_fit_without_amp_never_enters_autocast(schedule, monkeypatch):
    """torch 2.4 refuses autocast("mps", enabled=False) (no MPS autocast before 2.5): on a Mac, fit's first step
    crashed although amp was off. Without amp, fit must not touch torch.autocast at all."""
    def no_autocast(*args, **kwargs):
        raise RuntimeError("User specified an unsupported autocast device_type 'mps'")
    monkeypatch.setattr(torch, "autocast", no_autocast)
    assert fit(UNet(RGB16), schedule, rgb(), CFG, progress=False)["step"] == CFG.steps


def test_fit_without_amp_trains_in_float32_inside_a_callers_autocast(schedule):
    """amp=False means float32: an autocast the caller has switched on around fit is switched off inside it (a
    torch.autocast("cuda") around fit would otherwise train in float16 with no gradient scaling)."""
    dtypes = set()
    model = UNet(RGB16)
    model.register_forward_hook(lambda m, args, out: dtypes.add(out.dtype))
    with torch.autocast("cpu", dtype=torch.bfloat16):
        fit(model, schedule, rgb(), CFG, progress=False)
    assert dtypes == {torch.float32}


def test_autocast_enabled_is_false_where_torch_has_no_autocast(monkeypatch):
    from diffusion_lite.utils import autocast_enabled

    assert autocast_enabled("mps") is False and autocast_enabled("cpu") is False  # torch 2.4 raised for "mps"
    monkeypatch.setattr(torch, "is_autocast_enabled", lambda device_type: (_ for _ in ()).throw(
        RuntimeError("unknown device type for autocast in get_autocast_dispatch_key_from_device_type")))
    assert autocast_enabled("mps") is False


def test_bad_labels_are_errors_and_unused_labels_a_warning(schedule):
    cond = lambda x0, y, g: {}
    with pytest.raises(ValueError, match=r"one entry per image, \(8,\), got \(5,\)"):
        fit(UNet(RGB16), schedule, rgb(), CFG, labels=torch.zeros(5, dtype=torch.long), cond_fn=cond, progress=False)
    with pytest.raises(ValueError, match="one entry per image, .* got list"):
        fit(UNet(RGB16), schedule, rgb(), CFG, labels=["a red square"] * 8, cond_fn=cond, progress=False)
    seen = []  # captions in a numpy array work: cond_fn gets labels[idx]
    fit(UNet(RGB16), schedule, rgb(), CFG, labels=np.array(["a red square"] * 8),
        cond_fn=lambda x0, y, g: seen.append(list(y)) or {}, progress=False)
    assert seen == [["a red square"] * 4] * 2
    with pytest.warns(UserWarning, match="labels are only passed to cond_fn, and there is none"):
        fit(UNet(RGB16), schedule, rgb(), CFG, labels=torch.zeros(8, dtype=torch.long), progress=False)


def test_a_run_shorter_than_its_warmup_warns(schedule):
    with pytest.warns(UserWarning, match="warmup_steps=100 is longer than the run .steps=2.: the learning rate "
                                         "never reaches lr=0.002"):
        fit(UNet(RGB16), schedule, rgb(), TrainConfig(steps=2, batch_size=4), progress=False)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a warm-up as long as the run reaches lr at its last step: silent
        fit(UNet(RGB16), schedule, rgb(), TrainConfig(steps=2, batch_size=4, warmup_steps=2), progress=False)


def test_text_training_drops_prompts_stores_the_encoder_and_loads(tmp_path, mnist, schedule):
    clip, seen = tiny_clip(), []
    captions = caption_fn("mnist")
    spy = lambda x, y, g: seen.extend(captions(x, y, g)) or captions(x, y, g)  # what the text encoder is asked
    cfg = TrainConfig(steps=3, batch_size=4, warmup_steps=1, p_uncond=0.5)
    kw = text_training(clip, spy, cfg.p_uncond)
    assert kw["cond_fn"].p_uncond == 0.5 and set(kw) == {"cond_fn", "meta", "extra_tensors"}
    res = fit(UNet(TINY_TEXT), schedule, mnist.images, cfg, labels=mnist.labels, run_dir=tmp_path, progress=False,
              **kw)
    pipe = load(tmp_path)  # the run folder rebuilds the pipeline with its text encoder
    assert pipe.is_text_conditional and pipe.text.tokenizer.vocab == clip.tokenizer.vocab
    g1, g2 = torch.Generator().manual_seed(0), torch.Generator().manual_seed(0)
    want = DiffusionPipeline(res["ema"].model, schedule, text=clip).sample("a seven", n=2, generator=g1, steps=2,
                                                                           progress=False)
    assert torch.equal(pipe.sample("a seven", n=2, generator=g2, steps=2, progress=False), want)


def test_text_cond_fn_drops_prompts_at_its_rate():
    clip, got = tiny_clip(), []
    kw = text_training(clip, lambda x, y, g: ["the digit seven"] * len(y), 0.3)
    original = clip.text_tokens
    clip.text_tokens = lambda prompts: got.extend(prompts) or original(prompts)
    x, y = torch.zeros(2000, 1, 28, 28), torch.zeros(2000, dtype=torch.long)
    kw["cond_fn"](x, y, torch.Generator().manual_seed(0))
    assert abs(got.count("") / len(got) - 0.3) < 0.04  # 4.4 standard errors at n = 2000


def test_text_runs_without_what_they_need_are_refused_or_warned_before_training(tmp_path, mnist, schedule):
    clip = tiny_clip()
    kw = text_training(clip, caption_fn("mnist"), CFG.p_uncond)
    with pytest.raises(ValueError, match=r"cross-attention \(context_dim 16\), so it needs text"):
        fit(UNet(TINY_TEXT), schedule, mnist.images, CFG, progress=False)
    with pytest.warns(UserWarning, match="does not store its text encoder, so checkpoints.load will not rebuild"):
        fit(UNet(TINY_TEXT), schedule, mnist.images, CFG, labels=mnist.labels, cond_fn=kw["cond_fn"],
            run_dir=tmp_path, progress=False)  # a warning: a class-token or Hugging Face run loads with its own code
    with pytest.raises(ValueError, match="cond_fn drops prompts with p_uncond=0.1, cfg.p_uncond is 0.3"):
        fit(UNet(TINY_TEXT), schedule, mnist.images, CFG.replace(p_uncond=0.3), labels=mnist.labels, progress=False,
            **kw)
    own = lambda x0, y, g: {k: v.to(x0.device) for k, v in zip(("context", "context_mask"),
                                                                  clip.text_tokens(["a seven"] * len(y)))}
    with pytest.warns(UserWarning, match="no cond_fn.p_uncond.*guidance needs the empty prompt's branch"):
        fit(UNet(TINY_TEXT), schedule, mnist.images, CFG, labels=mnist.labels, cond_fn=own, progress=False)


def test_resuming_with_other_images_or_another_unet_names_what_differs(tmp_path, schedule):
    fit(UNet(RGB16), schedule, rgb(8), CFG, run_dir=tmp_path, progress=False)
    mine = UNet(RGB16)
    before = {k: v.clone() for k, v in mine.state_dict().items()}
    rng = torch.get_rng_state()
    with pytest.raises(ValueError, match=r"images \(N\): saved 8, requested 5"):
        fit(mine, schedule, rgb(5), CFG.replace(steps=3, channels_last=True), run_dir=tmp_path, progress=False)
    # a refused resume leaves the caller's model as it was (no channels-last layout change); the global RNG, which
    # keeps_caller_state already restored before the reordering, is checked as a regression guard
    assert all(torch.equal(v, before[k]) and v.is_contiguous() for k, v in mine.state_dict().items())
    assert torch.equal(torch.get_rng_state(), rng)
    with pytest.raises(ValueError, match=r"unet base_channels: saved 8, requested 16\. Pass") as e:
        fit(UNet(RGB16.replace(base_channels=16)), schedule, rgb(8), CFG.replace(steps=3), run_dir=tmp_path,
            progress=False)
    assert "channel_mults" not in str(e.value)  # only what differs


def test_trainconfig_numbers_must_be_numbers():
    with pytest.raises(ValueError, match="TrainConfig.lr must be a number, got '1e-3'"):
        TrainConfig(lr="1e-3")


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the message on a machine without CUDA")
def test_pipeline_to_a_missing_device_says_so(schedule):
    pipe = DiffusionPipeline(UNet(RGB16), schedule)
    for device in ("cuda", 0, torch.device("cuda:0")):  # an int is a CUDA index, as for torch
        with pytest.raises(ValueError, match=r"requested but CUDA is not available; use 'cpu'$"):
            pipe.to(device)
    assert pipe.to("meta").device.type == "meta"  # other device types are torch's to judge
