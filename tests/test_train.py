import json

import pytest
import torch

from diffusion_lite.checkpoints import CheckpointError, load, load_checkpoint, save_checkpoint
from diffusion_lite.config import ScheduleConfig, TrainConfig, UNetConfig
from diffusion_lite.data import load_dataset
from diffusion_lite.pipeline import DiffusionPipeline
from diffusion_lite.schedules import Schedule
from diffusion_lite.train import diffusion_loss, fit
from diffusion_lite.unet import UNet

TINY = UNetConfig(base_channels=8, channel_mults=(1, 2), attn_resolutions=(), groups=4)


def _meta(unet, schedule):
    return {"unet": unet.cfg.to_dict(), "schedule": schedule.config.to_dict(), "prediction": "eps"}


@pytest.fixture(scope="module")
def mnist_small():
    return load_dataset("mnist", "train", subset=510, balanced=True).images


def test_training_lowers_the_loss(mnist_small):
    torch.manual_seed(0)
    unet = UNet(TINY)
    s = Schedule.from_config(ScheduleConfig("cosine"))
    g = torch.Generator().manual_seed(1)
    x0 = mnist_small[:256]
    before = diffusion_loss(unet, s, x0, generator=g).item()
    res = fit(unet, s, mnist_small, TrainConfig(steps=150, batch_size=32, lr=3e-3, warmup_steps=20, log_every=10),
              progress=False)
    g = torch.Generator().manual_seed(1)
    after = diffusion_loss(unet, s, x0, generator=g).item()
    ema_after = diffusion_loss(res["ema"].model, s, x0, generator=torch.Generator().manual_seed(1)).item()
    assert before > 0.9, "an untrained network predicts ~0 noise: MSE ~ 1"
    assert after < 0.5 * before and ema_after < 0.6 * before
    assert res["loss"][-1][1] < res["loss"][0][1]


@pytest.mark.parametrize("prediction", ["v", "x0"])
def test_other_predictions_train(mnist_small, prediction):
    unet = UNet(TINY)
    s = Schedule.from_config()
    res = fit(unet, s, mnist_small, TrainConfig(steps=40, batch_size=16, prediction=prediction, log_every=10,
                                                loss_weighting="min_snr"), progress=False)
    assert res["loss"][-1][1] < res["loss"][0][1]


class Crash(Exception):
    pass


def test_resume_continues_exactly(tmp_path, mnist_small):
    s = Schedule.from_config()
    cfg = TrainConfig(steps=12, batch_size=8, checkpoint_every=5, log_every=1, seed=3)
    torch.manual_seed(0)
    ref = UNet(TINY)
    init = {k: v.clone() for k, v in ref.state_dict().items()}
    full = fit(ref, s, mnist_small, cfg, run_dir=tmp_path / "a", meta=_meta(ref, s), progress=False)

    def crash_at_7(info):
        if info["step"] == 7:
            raise Crash

    part = UNet(TINY)
    part.load_state_dict(init)
    with pytest.raises(Crash):  # the run dies after step 7; its last checkpoint is from step 5
        fit(part, s, mnist_small, cfg, run_dir=tmp_path / "b", meta=_meta(part, s), progress=False,
            callback=crash_at_7)
    assert json.loads((tmp_path / "b" / "checkpoint.json").read_text(encoding="utf-8"))["train_state"]["step"] == 5
    fresh = UNet(TINY)  # a new process: weights come from the checkpoint, not from this initialisation
    resumed = fit(fresh, s, mnist_small, cfg, run_dir=tmp_path / "b", meta=_meta(fresh, s), progress=False)
    assert resumed["step"] == 12
    for k, v in ref.state_dict().items():
        torch.testing.assert_close(fresh.state_dict()[k], v, rtol=1e-5, atol=1e-6)
    for k, v in full["ema"].model.state_dict().items():
        torch.testing.assert_close(resumed["ema"].model.state_dict()[k], v, rtol=1e-5, atol=1e-6)
    assert resumed["loss"] == full["loss"]
    # a finished run is not trained further
    again = fit(UNet(TINY), s, mnist_small, cfg, run_dir=tmp_path / "b", meta=_meta(fresh, s), progress=False)
    assert again["step"] == 12


def test_checkpoint_roundtrip_and_sampling(tmp_path):
    unet = UNet(TINY)
    s = Schedule.from_config(ScheduleConfig("linear", T=100))
    pipe = DiffusionPipeline(unet, s)
    stem = pipe.save(tmp_path / "m")
    assert (tmp_path / "m.safetensors").exists() and (tmp_path / "m.json").exists()
    loaded = load(tmp_path / "m.json")
    for k, v in unet.state_dict().items():
        assert torch.equal(loaded.unet.state_dict()[k], v)
    assert loaded.schedule.T == 100 and loaded.unet.cfg == TINY
    g1, g2 = torch.Generator().manual_seed(0), torch.Generator().manual_seed(0)
    assert torch.equal(pipe.sample(n=2, steps=3, generator=g1, progress=False),
                       loaded.sample(n=2, steps=3, generator=g2, progress=False))
    assert stem == tmp_path / "m"


def test_bad_checkpoints_give_clear_errors(tmp_path):
    with pytest.raises(CheckpointError, match="no checkpoint at"):
        load(tmp_path / "missing")
    save_checkpoint(tmp_path / "x", {"w": torch.zeros(3)}, {"kind": "diffusion"})
    (tmp_path / "x.safetensors").write_bytes(b"garbage" * 10)
    with pytest.raises(CheckpointError, match="does not match the sha256") as e:
        load_checkpoint(tmp_path / "x")
    assert str(tmp_path / "x.safetensors") in str(e.value)  # the folder too: run folders all hold checkpoint.*
    with pytest.raises(CheckpointError, match="corrupt"):
        load_checkpoint(tmp_path / "x", verify=False)
    (tmp_path / "x.json").write_text("{not json", encoding="utf-8")
    with pytest.raises(CheckpointError, match="not valid JSON"):
        load_checkpoint(tmp_path / "x")
    # weights that do not fit the config
    unet = UNet(TINY)
    pipe = DiffusionPipeline(unet, Schedule.from_config())
    pipe.save(tmp_path / "m")
    meta = json.loads((tmp_path / "m.json").read_text(encoding="utf-8"))
    meta["unet"]["base_channels"] = 16
    (tmp_path / "m.json").write_text(json.dumps(meta), encoding="utf-8")
    with pytest.raises(CheckpointError, match="do not fit"):
        load(tmp_path / "m")


def test_fit_checks_the_pixel_range(mnist_small):
    """Images in [0, 1] (ToTensor without x * 2 - 1) warn, uint8-range floats and ints are errors: the
    first loss is 1 whatever the range, so nothing else would notice (chapter 10)."""
    s = Schedule.from_config(ScheduleConfig("cosine"))
    cfg = TrainConfig(steps=1, batch_size=4, log_every=1, checkpoint_every=0, warmup_steps=0)
    with pytest.warns(UserWarning, match=r"are the images in \[0, 1\]") as record:
        fit(UNet(TINY), s, (mnist_small[:16] + 1) / 2, cfg, progress=False)
    assert record[0].filename == __file__  # the warning names the caller's line, not fit's internals
    nan_images = mnist_small[:16].clone()
    nan_images[3, 0, 5, 5] = float("nan")
    with pytest.raises(ValueError, match="images contain NaN or inf"):  # not "loss became nan ... lower the lr"
        fit(UNet(TINY), s, nan_images, cfg, progress=False)
    with pytest.raises(ValueError, match=r"got values in \[0, 255\] \(uint8 range: use utils.from_uint8\)"):
        fit(UNet(TINY), s, (mnist_small[:16] + 1) * 127.5, cfg, progress=False)
    with pytest.raises(ValueError, match="must be floats"):
        fit(UNet(TINY), s, ((mnist_small[:16] + 1) * 127.5).to(torch.uint8), cfg, progress=False)
    import warnings
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # data in [-1, 1]: silent
        fit(UNet(TINY), s, mnist_small[:16], cfg, progress=False)


def test_amp_off_cuda_is_a_warning_not_silence(mnist_small):
    s = Schedule.from_config(ScheduleConfig("cosine"))
    cfg = TrainConfig(steps=1, batch_size=4, checkpoint_every=0, amp=True)
    with pytest.warns(UserWarning, match="amp .* is for CUDA GPUs; training in float32 on cpu") as record:
        fit(UNet(TINY), s, mnist_small[:16], cfg, progress=False)
    assert record[0].filename == __file__  # the caller's line, not the decorator around fit


def test_the_logged_loss_is_a_bias_corrected_average_of_the_batch_losses(mnist_small):
    """The curve must not lag behind training: no weight left on the untrained first batch (Adam-style correction)."""
    s = Schedule.from_config(ScheduleConfig("cosine"))
    torch.manual_seed(0)
    cfg = TrainConfig(steps=30, batch_size=8, log_every=10, checkpoint_every=0)
    seen = []
    res = fit(UNet(TINY), s, mnist_small[:64], cfg, progress=False, callback=lambda info: seen.append(info["loss"]))
    r, expected = 0.0, {}
    for n, loss in enumerate(seen, start=1):
        r = 0.98 * r + 0.02 * loss
        expected[n] = r / (1 - 0.98 ** n)
    assert [h[0] for h in res["loss"]] == [10, 20, 30]
    for step, logged in res["loss"]:
        assert logged == pytest.approx(expected[step], rel=1e-5, abs=1e-6)
        assert min(seen[:step]) <= logged <= max(seen[:step])


def test_a_diverging_loss_is_reported(mnist_small):
    """A learning rate far too high gives a finite but exploding loss: one warning, not silence."""
    import warnings

    s = Schedule.from_config(ScheduleConfig("cosine"))
    torch.manual_seed(0)
    cfg = TrainConfig(steps=40, batch_size=8, lr=1e12, warmup_steps=1, log_every=5, checkpoint_every=0)
    with pytest.warns(UserWarning, match="training is diverging; lower the learning rate") as record:
        fit(UNet(TINY), s, mnist_small[:64], cfg, progress=False)
    assert record[0].filename == __file__
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # the default learning rate: the loss falls, no warning
        fit(UNet(TINY), s, mnist_small[:64], cfg.replace(lr=2e-3), progress=False)


def test_fit_does_not_overwrite_weights_that_lost_their_json(tmp_path, mnist_small):
    """A run folder holding checkpoint.safetensors but no checkpoint.json cannot be resumed, and starting afresh
    there would overwrite the weights: fit refuses and leaves them as they are."""
    run = tmp_path / "run"
    run.mkdir()
    (run / "checkpoint.safetensors").write_bytes(b"weights whose JSON was lost")
    with pytest.raises(CheckpointError, match="has no checkpoint.json beside it, so the run cannot be resumed"):
        fit(UNet(TINY), Schedule.from_config(ScheduleConfig("linear", T=100)), mnist_small[:16],
            TrainConfig(steps=1, batch_size=4), run_dir=run, progress=False)
    assert (run / "checkpoint.safetensors").read_bytes() == b"weights whose JSON was lost"


def test_channels_last_reaches_the_ema_copy_and_a_resumed_optimizer(tmp_path):
    """foreach updates (EMA's lerp, AdamW) take one kernel launch only when paired tensors share strides: the EMA
    copy and the optimizer state restored on resume must have the channels-last layout of the parameters."""
    from diffusion_lite.train_state import load_optimizer, optimizer_tensors

    images = load_dataset("mnist", "train", subset=16).images
    torch.manual_seed(0)
    model = UNet(TINY)
    cfg = TrainConfig(steps=2, batch_size=4, checkpoint_every=1, channels_last=True)
    res = fit(model, Schedule.from_config(ScheduleConfig()), images, cfg, run_dir=tmp_path / "run")
    convs = [(n, p) for n, p in model.named_parameters() if p.dim() == 4 and p.shape[1] > 1 and p.shape[2] > 1]
    assert convs and all(p.is_contiguous(memory_format=torch.channels_last) for _, p in convs)
    ema = dict(res["ema"].model.named_parameters())
    assert all(ema[n].stride() == p.stride() for n, p in convs)
    # the optimizer state as a checkpoint stores it (contiguous), loaded back into an optimizer of those parameters
    opt = torch.optim.AdamW(model.parameters())
    model(images[:2].contiguous(memory_format=torch.channels_last), torch.tensor([1, 2])).square().mean().backward()
    opt.step()
    tensors, meta = optimizer_tensors(opt)
    tensors = {k: v.contiguous() for k, v in tensors.items()}
    fresh = torch.optim.AdamW(model.parameters())
    load_optimizer(fresh, tensors, meta)
    for _, p in convs:
        st = fresh.state[p]
        assert st["exp_avg"].stride() == p.stride() and torch.equal(st["exp_avg"], opt.state[p]["exp_avg"])
