"""Configuration dataclasses reject values that would only fail (or silently misbehave) later."""

import pytest

from diffusion_lite.config import ScheduleConfig, TrainConfig, UNetConfig


@pytest.mark.parametrize("bad, match", [
    (dict(kind="cosinus"), "unknown schedule kind 'cosinus'"),
    (dict(T=0), "T must be an integer >= 2"),
    (dict(T=100.0), "T must be an integer"),
    (dict(kind="linear", beta_start=-1e-4), "0 < beta_start < beta_end < 1"),
    (dict(kind="linear", beta_start=0.02, beta_end=1e-4), "0 < beta_start < beta_end < 1"),
])
def test_schedule_config_rejects_bad_values(bad, match):
    with pytest.raises(ValueError, match=match):
        ScheduleConfig(**bad)


@pytest.mark.parametrize("bad, match", [
    (dict(batch_size=0), "batch_size must be an integer >= 1"),
    (dict(steps=0), "steps must be an integer >= 1"),
    (dict(log_every=0), "log_every must be an integer >= 1"),
    (dict(checkpoint_every=-1), "checkpoint_every must be an integer >= 0"),
    (dict(lr=-1.0), "lr must be a finite number > 0"),
    (dict(lr=float("nan")), "lr must be a finite number > 0"),
    (dict(grad_clip=-1.0), "grad_clip must be finite and >= 0"),
])
def test_train_config_rejects_bad_values(bad, match):
    with pytest.raises(ValueError, match=match):
        TrainConfig(**bad)


@pytest.mark.parametrize("bad, match", [
    (dict(dropout=2.0), r"dropout must be in \[0, 1\)"),
    (dict(in_channels=0), "in_channels must be an integer >= 1"),
    (dict(channel_mults=()), "channel_mults must be a non-empty tuple"),
    (dict(channel_mults=(1, 0)), "channel_mults must be a non-empty tuple"),
    (dict(context_dim=0), "context_dim must be an integer >= 1"),
    (dict(base_channels=24, num_heads=5), "attn_resolutions includes 7, where the U-Net has 48 channels, which "
                                          "num_heads=5 does not divide"),
    (dict(base_channels=24, num_heads=5, attn_resolutions=(), cross_attn_resolutions=(7,), context_dim=8),
     "cross_attn_resolutions includes 7, where the U-Net has 48 channels"),
])
def test_unet_config_rejects_bad_values(bad, match):
    with pytest.raises(ValueError, match=match):
        UNetConfig(**bad)


def test_unet_config_given_lists_stays_hashable_and_equal_to_tuples():
    cfg = UNetConfig(channel_mults=[1, 2, 2], attn_resolutions=[7])
    assert hash(cfg) == hash(UNetConfig(channel_mults=(1, 2, 2), attn_resolutions=(7,)))
    assert cfg == UNetConfig.from_dict(cfg.to_dict())
    assert TrainConfig(grad_clip=0.0, checkpoint_every=0).grad_clip == 0.0  # 0 = off, still valid


def test_configs_accept_what_worked_before_validation():
    import numpy as np

    cfg = ScheduleConfig(T=np.int64(100))
    assert cfg.T == 100 and type(cfg.T) is int  # stored as int: the JSON stays plain
    assert UNetConfig(image_size=np.int64(28)).image_size == 28
    assert TrainConfig(steps=np.int64(10), seed=-1).steps == 10
    assert TrainConfig(grad_clip=None).grad_clip is None  # no clipping, as grad_clip=0
    assert ScheduleConfig("cosine", beta_start=0.0).kind == "cosine"  # the cosine schedule ignores the betas
