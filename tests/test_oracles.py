"""Exact-value checks that a plausible-looking mistake would break: identities between samplers and
parameterisations, the EMA and learning-rate formulas, loss weights, prompt dropout and seeding."""

import random

import numpy as np
import pytest
import torch

from diffusion_lite.config import ScheduleConfig, TrainConfig
from diffusion_lite.pipeline import DEFAULT_GUIDANCE, text_cond_fn
from diffusion_lite.sampling import sample_ddim, sample_ddpm
from diffusion_lite.schedules import Schedule, eps_from_v, predict_eps_from_x0, q_sample, v_target
from diffusion_lite.train import EMA, diffusion_loss, lr_at
from diffusion_lite.utils import seed_everything


@pytest.fixture(params=["linear", "cosine"])
def schedule(request):
    return Schedule.from_config(ScheduleConfig(request.param, T=1000))


def test_eps_is_recovered_from_v_and_x_t(schedule):
    g = torch.Generator().manual_seed(0)
    x0, eps = torch.rand(8, 1, 6, 6, generator=g) * 2 - 1, torch.randn(8, 1, 6, 6, generator=g)
    t = torch.tensor([0, 1, 10, 100, 400, 700, 900, 990])
    x_t = q_sample(schedule, x0, t, noise=eps)
    assert torch.allclose(eps_from_v(schedule, x_t, t, v_target(schedule, x0, t, eps)), eps, atol=1e-4)


def test_respaced_ddpm_is_ddim_with_eta_one(schedule):
    """Both draw the same noise from the same generator; with eta = 1 DDIM's sigma is the respaced posterior's
    standard deviation and its mean is the posterior mean (Song et al. 2021, eq. 16), so the chains coincide."""
    model_fn = lambda x_t, t: 0.5 * torch.tanh(x_t) + 0.001 * t.float().view(-1, 1, 1, 1)
    kw = dict(shape=(4, 1, 8, 8), steps=20, progress=False)
    a = sample_ddpm(model_fn, schedule, generator=torch.Generator().manual_seed(3), **kw)
    b = sample_ddim(model_fn, schedule, eta=1.0, generator=torch.Generator().manual_seed(3), **kw)
    c = sample_ddim(model_fn, schedule, eta=0.0, generator=torch.Generator().manual_seed(3), **kw)
    assert torch.allclose(a, b, atol=1e-5)
    assert (a - c).abs().max() > 0.1  # and the noise is really there


def test_ema_update_is_the_weighted_average():
    model = torch.nn.Linear(3, 2)
    p0 = [p.detach().clone() for p in model.parameters()]
    ema = EMA(model, decay=0.9, warmup=False)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(1.0)
    ema.update(model)
    for p_ema, a in zip(ema.model.parameters(), p0):
        assert torch.allclose(p_ema, 0.9 * a + 0.1 * (a + 1.0), atol=1e-6)
    # with warm-up the first update uses decay (1 + 1) / (10 + 1) = 2/11
    warm = EMA(torch.nn.Linear(3, 2), decay=0.999)
    start = [p.detach().clone() for p in warm.model.parameters()]
    warm.update(model)
    for p_ema, a, b in zip(warm.model.parameters(), start, model.parameters()):
        assert torch.allclose(p_ema, 2 / 11 * a + 9 / 11 * b, atol=1e-6)


def test_learning_rate_warms_up_linearly_then_decays_by_cosine_to_a_tenth():
    cfg = TrainConfig(lr=1e-3, steps=1100, warmup_steps=100)
    assert lr_at(0, cfg) == pytest.approx(1e-5)
    assert lr_at(49, cfg) == pytest.approx(5e-4)
    assert lr_at(100, cfg) == pytest.approx(1e-3)
    assert lr_at(600, cfg) == pytest.approx(1e-3 * (0.1 + 0.9 * 0.5))  # half-way through the cosine
    assert lr_at(1100, cfg) == pytest.approx(1e-4)
    assert lr_at(5000, cfg) == pytest.approx(1e-4)  # past the end it stays at the floor
    lrs = [lr_at(s, cfg) for s in range(100, 1101)]
    assert all(a >= b for a, b in zip(lrs, lrs[1:]))


class _Zero(torch.nn.Module):
    def forward(self, x_t, t):
        return torch.zeros_like(x_t)


@pytest.mark.parametrize("prediction", ["eps", "v", "x0"])
def test_min_snr_weights_are_min_snr_5_over_the_targets_snr_factor(schedule, prediction):
    """Hang et al. 2023: weight min(SNR, 5) / SNR for eps, min(SNR, 5) / (SNR + 1) for v, min(SNR, 5) for x0."""
    x0 = torch.rand(6, 1, 4, 4, generator=torch.Generator().manual_seed(0)) * 2 - 1
    t = torch.tensor([0, 50, 200, 500, 800, 999])
    kw = dict(prediction=prediction, t=t, reduce=False)
    plain = diffusion_loss(_Zero(), schedule, x0, generator=torch.Generator().manual_seed(1), **kw)
    weighted = diffusion_loss(_Zero(), schedule, x0, generator=torch.Generator().manual_seed(1),
                              loss_weighting="min_snr", **kw)
    snr = (schedule.alpha_bar / (1 - schedule.alpha_bar))[t]
    w = {"eps": snr.clamp(max=5) / snr, "v": snr.clamp(max=5) / (snr + 1), "x0": snr.clamp(max=5)}[prediction]
    assert torch.allclose(weighted, plain * w, rtol=1e-3)  # 1 - alpha_bar_0 rounds in float32


class _Oracle(torch.nn.Module):
    """Knows the clean batch x0, so it returns the exact target of ``prediction`` for any x_t (eq. 4 inverted)."""

    def __init__(self, schedule, x0, prediction):
        super().__init__()
        self.schedule, self.x0, self.prediction = schedule, x0, prediction

    def forward(self, x_t, t):
        eps = predict_eps_from_x0(self.schedule, x_t, t, self.x0)
        return {"eps": eps, "x0": self.x0, "v": v_target(self.schedule, self.x0, t, eps)}[self.prediction]


@pytest.mark.parametrize("prediction", ["eps", "v", "x0"])
def test_a_network_that_outputs_the_exact_target_has_zero_loss(schedule, prediction):
    """The loss compares the output with the target of its own parametrisation, not with another one."""
    x0 = torch.rand(8, 1, 4, 4, generator=torch.Generator().manual_seed(0)) * 2 - 1
    t = torch.tensor([1, 10, 100, 300, 500, 700, 900, 990])  # away from t=0, where eps is ill-conditioned
    for weighting in ("none", "min_snr"):
        kw = dict(t=t, loss_weighting=weighting, generator=torch.Generator().manual_seed(1))
        assert diffusion_loss(_Oracle(schedule, x0, prediction), schedule, x0, prediction=prediction, **kw) < 1e-4
    for other in {"eps", "v", "x0"} - {prediction}:  # the right answer to another question scores badly
        kw = dict(t=t, generator=torch.Generator().manual_seed(1))
        assert diffusion_loss(_Oracle(schedule, x0, other), schedule, x0, prediction=prediction, **kw) > 0.1


class _FakeText:
    """Records the captions it is asked to encode."""

    def __init__(self):
        self.seen = []

    def text_tokens(self, captions):
        self.seen += captions
        return torch.zeros(len(captions), 3, 4), torch.ones(len(captions), 3, dtype=torch.bool)


@pytest.mark.parametrize("p_uncond", [0.0, 0.1, 0.5, 1.0])
def test_prompt_dropout_replaces_captions_by_the_empty_prompt_at_rate_p_uncond(p_uncond):
    text = _FakeText()
    cond_fn = text_cond_fn(text, lambda x0, labels, g: ["a seven"] * len(labels), p_uncond)
    g = torch.Generator().manual_seed(0)
    for _ in range(20):
        out = cond_fn(torch.zeros(200, 1, 2, 2), torch.zeros(200, dtype=torch.long), g)
    assert out["context"].shape == (200, 3, 4) and out["context_mask"].shape == (200, 3)
    assert set(text.seen) <= {"", "a seven"}
    rate = text.seen.count("") / len(text.seen)  # 4000 draws: binomial sd <= 0.008
    assert rate == pytest.approx(p_uncond, abs=0.03)


def test_a_negative_prompt_is_what_guidance_steers_away_from(text2img):
    """eps = eps(neg) + s (eps(prompt) - eps(neg)): at s = 0 the result is the negative prompt's own conditional
    sample, at s = 1 the prompt's, whatever the negative; a swapped branch or an ignored negative fails."""
    x_T = torch.randn(2, 1, 28, 28, generator=torch.Generator().manual_seed(0))
    kw = dict(steps=3, x_T=x_T, progress=False)
    prompt, negative = "a thin seven", "zero"  # of different lengths: the batched pass pads the shorter one
    at_0 = text2img.sample(prompt, n=2, guidance=0.0, negative_prompt=negative, **kw)
    torch.testing.assert_close(at_0, text2img.sample(negative, n=2, guidance=1.0, **kw), atol=1e-4, rtol=0)
    at_1 = text2img.sample(prompt, n=2, guidance=1.0, negative_prompt=negative, **kw)
    torch.testing.assert_close(at_1, text2img.sample(prompt, n=2, guidance=1.0, **kw), atol=1e-4, rtol=0)
    at_3 = text2img.sample(prompt, n=2, guidance=3.0, negative_prompt=negative, **kw)
    assert (at_3 - text2img.sample(prompt, n=2, guidance=3.0, **kw)).abs().max() > 0.05  # the negative matters
    # s = 0 and 1 take one branch; in between both run as one padded batch of 2B, which must give the formula
    t = torch.tensor([900, 300])
    guided = text2img.model_fn([prompt] * 2, guidance=2.0, negative_prompt=negative)(x_T, t)
    eps_p = text2img.model_fn([prompt] * 2, guidance=1.0)(x_T, t)
    eps_n = text2img.model_fn([negative] * 2, guidance=1.0)(x_T, t)
    torch.testing.assert_close(guided, eps_n + 2.0 * (eps_p - eps_n), atol=1e-4, rtol=0)


def test_default_guidance_scale_is_3():
    assert DEFAULT_GUIDANCE == 3.0


def test_seed_everything_seeds_python_numpy_torch_and_returns_a_seeded_generator():
    def draws():
        g = seed_everything(7)
        return random.random(), float(np.random.rand()), float(torch.rand(1)), float(torch.rand(1, generator=g))

    first, second = draws(), draws()
    assert first == second
    seed_everything(8)
    other = random.random(), float(np.random.rand()), float(torch.rand(1))
    assert all(a != b for a, b in zip(first, other))
