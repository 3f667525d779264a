import math

import pytest
import torch

from diffusion_lite.config import ScheduleConfig
from diffusion_lite.guidance import CADS, cads_gamma, cads_noise, classifier_free_guidance
from diffusion_lite.sampling import ddim_step, sample, sample_ddim, sample_ddpm, timesteps
from diffusion_lite.schedules import Schedule, q_sample


def oracle_eps_fn(schedule, x0):
    """A perfect denoiser for a single known x0: eps = (x_t - sqrt(ab) x0) / sqrt(1 - ab)."""
    from diffusion_lite.schedules import predict_eps_from_x0

    return lambda x_t, t: predict_eps_from_x0(schedule, x_t, t, x0)


@pytest.mark.parametrize("steps", [2, 10, 50])
def test_ddim_with_oracle_recovers_x0(gen, steps):
    s = Schedule.from_config(ScheduleConfig("cosine", T=1000))
    x0 = torch.rand(4, 1, 8, 8, generator=gen) * 2 - 1
    out = sample_ddim(oracle_eps_fn(s, x0), s, shape=x0.shape, steps=steps, generator=gen, progress=False)
    torch.testing.assert_close(out, x0, atol=1e-3, rtol=0)


def test_ddim_inverts_q_sample_with_true_noise(gen):
    """One DDIM step from t to -1 with the true noise returns x_0 exactly (DDIM eq. 12)."""
    s = Schedule.from_config()
    x0 = torch.rand(2, 1, 6, 6, generator=gen) * 2 - 1
    eps = torch.randn(x0.shape, generator=gen)
    t = torch.tensor([700, 700])
    x_t = q_sample(s, x0, t, noise=eps)
    x_prev, x0_hat = ddim_step(s, x_t, t, torch.tensor([-1, -1]), eps, clip_x0=False)
    torch.testing.assert_close(x0_hat, x0, atol=1e-4, rtol=0)


def test_ddpm_with_oracle_recovers_x0(gen):
    s = Schedule.from_config(ScheduleConfig("linear", T=200))
    x0 = torch.rand(3, 1, 5, 5, generator=gen) * 2 - 1
    out = sample_ddpm(oracle_eps_fn(s, x0), s, shape=x0.shape, generator=gen, progress=False)
    torch.testing.assert_close(out, x0, atol=1e-3, rtol=0)


def _toy_gaussian_eps_fn(schedule, mu, sigma):
    """Exact eps for data x0 ~ N(mu, sigma^2): x_t ~ N(sqrt(ab) mu, ab sigma^2 + 1 - ab)."""
    def fn(x_t, t):
        ab = schedule.alpha_bar[t].view(-1, 1, 1, 1)
        var = ab * sigma**2 + 1 - ab
        # E[eps | x_t] = sqrt(1 - ab) (x_t - sqrt(ab) mu) / var
        return (1 - ab).sqrt() * (x_t - ab.sqrt() * mu) / var
    return fn


def test_ddim_eta1_close_to_ddpm_in_distribution(gen):
    s = Schedule.from_config(ScheduleConfig("cosine", T=200))
    mu, sigma = 0.3, 0.2
    fn = _toy_gaussian_eps_fn(s, mu, sigma)
    shape = (6000, 1, 1, 1)
    a = sample_ddpm(fn, s, shape=shape, generator=torch.Generator().manual_seed(1), progress=False, clip_x0=False)
    b = sample_ddim(fn, s, shape=shape, steps=200, eta=1.0, generator=torch.Generator().manual_seed(2),
                    progress=False, clip_x0=False)
    c = sample_ddim(fn, s, shape=shape, steps=50, eta=0.0, generator=gen, progress=False, clip_x0=False)
    for x in (a, b, c):  # all three recover the data distribution N(0.3, 0.2^2) (to discretisation error)
        assert abs(x.mean().item() - mu) < 0.02
        assert abs(x.std().item() - sigma) < 0.02
    assert abs(a.std() - b.std()) < 0.01 and abs(a.mean() - b.mean()) < 0.01
    # with the same noise, DDIM at eta = 1 over all steps *is* DDPM (Song et al. 2021, sec. 4.1)
    a2 = sample_ddpm(fn, s, shape=(50, 1, 1, 1), generator=torch.Generator().manual_seed(5), progress=False)
    b2 = sample_ddim(fn, s, shape=(50, 1, 1, 1), steps=200, eta=1.0, generator=torch.Generator().manual_seed(5),
                     progress=False)
    torch.testing.assert_close(a2, b2, atol=1e-3, rtol=0)


def _exact_ddpm_std(s: Schedule, m: float, sd: float, steps: int) -> float:
    """The std of DDPM samples for N(m, sd^2) data with the exact eps and no clip: every step is linear in x_t
    plus Gaussian noise, so mean and variance propagate exactly (DDPM eq. 7 on the strided grid)."""
    ab_all, mu, v = s.alpha_bar.double().tolist(), 0.0, 1.0
    ts = timesteps(s, steps)
    for i, t in enumerate(ts):
        ab = ab_all[t]
        var_t = ab * sd**2 + 1 - ab
        a_e, b_e = math.sqrt(1 - ab) / var_t, -math.sqrt(1 - ab) * math.sqrt(ab) * m / var_t  # eps = a_e x + b_e
        a_0, b_0 = (1 - math.sqrt(1 - ab) * a_e) / math.sqrt(ab), -math.sqrt(1 - ab) * b_e / math.sqrt(ab)  # x0_hat
        if i == len(ts) - 1:
            return a_0 * math.sqrt(v)
        ab_prev = ab_all[ts[i + 1]]
        beta = 1 - ab / ab_prev
        c0, ct = math.sqrt(ab_prev) * beta / (1 - ab), math.sqrt(1 - beta) * (1 - ab_prev) / (1 - ab)
        a = c0 * a_0 + ct
        mu, v = a * mu + c0 * b_0, a * a * v + beta * (1 - ab_prev) / (1 - ab)


def test_ddpm_under_disperses_on_a_coarse_grid_as_its_docstring_says():
    """sample_ddpm's docstring: with the exact noise prediction for N(0.3, 0.5^2) data and no clip, the cosine
    schedule gives std 0.467 / 0.482 / 0.498 with 50 / 100 / 1000 steps, linear 0.443 / 0.468 / 0.496."""
    for kind, quoted in (("cosine", (0.467, 0.482, 0.498)), ("linear", (0.443, 0.468, 0.496))):
        s = Schedule.from_config(ScheduleConfig(kind, T=1000))
        exact = [_exact_ddpm_std(s, 0.3, 0.5, k) for k in (50, 100, 1000)]
        assert [round(e, 3) for e in exact] == list(quoted), (kind, exact)
    fn = _toy_gaussian_eps_fn(s, 0.3, 0.5)  # the sampler itself, on the linear schedule: within 4 standard errors
    n = 20000
    for k, want in zip((50, 100, 1000), exact):
        got = sample_ddpm(fn, s, shape=(n, 1, 1, 1), steps=k, generator=torch.Generator().manual_seed(0),
                          progress=False, clip_x0=False).std().item()
        assert abs(got - want) < 4 * want / math.sqrt(2 * n), (k, got, want)


def test_float64_sampling_sees_the_same_noise_as_float32():
    """torch.randn draws other numbers in float64 than in float32 from the same generator; the samplers' noise must
    not, or a float64 run (a precision reference) gives different images. Also the training loss's noise."""
    s = Schedule.from_config(ScheduleConfig("cosine", T=100))
    fn = _toy_gaussian_eps_fn(s, 0.0, 0.5)
    x_T = torch.randn(64, 1, 2, 2, generator=torch.Generator().manual_seed(0))
    for sampler, eta in (("ddpm", None), ("ddim", 1.0)):
        kw = {} if eta is None else {"eta": eta}
        out = {dt: sample(fn, s, sampler=sampler, x_T=x_T.to(dt), steps=20, generator=torch.Generator().manual_seed(1),
                          progress=False, **kw) for dt in (torch.float32, torch.float64)}
        assert out[torch.float64].dtype == torch.float64
        torch.testing.assert_close(out[torch.float64].float(), out[torch.float32], atol=1e-4, rtol=0)
    x0 = torch.zeros(64, 1, 2, 2)
    noise = {dt: q_sample(s, x0.to(dt), torch.full((64,), 50), generator=torch.Generator().manual_seed(2))
             for dt in (torch.float32, torch.float64)}
    torch.testing.assert_close(noise[torch.float64].float(), noise[torch.float32], atol=1e-6, rtol=0)


def test_timesteps_and_callback(gen):
    s = Schedule.from_config()
    ts = timesteps(s, 10)
    assert ts[0] == 999 and ts[-1] == 0 and len(ts) == 10 and ts == sorted(ts, reverse=True)
    long = Schedule.from_config(ScheduleConfig("linear", T=10000))
    assert len(timesteps(long, 9999)) == 9999  # as many steps as asked (a float32 grid merged two of them)
    seen = []
    sample(lambda x, t: torch.zeros_like(x), s, sampler="ddpm", shape=(2, 1, 4, 4), steps=5, generator=gen,
           callback=seen.append, progress=False)
    assert [d["i"] for d in seen] == list(range(5))
    assert all(set(d) == {"i", "t", "t_next", "x_t", "x0_hat"} for d in seen)
    assert [d["t_next"] for d in seen[:-1]] == [d["t"] for d in seen[1:]] and seen[-1]["t_next"] == -1
    assert seen[-1]["x0_hat"].shape == (2, 1, 4, 4)


@pytest.mark.parametrize("kind", ["linear", "cosine"])
def test_log_snr_timesteps_are_even_in_lambda_and_always_distinct(kind):
    """spacing="logsnr": T-1 first, 0 last, strictly decreasing, as many as asked (up to every step), and the
    steps between the first and the last are even in lambda = log(alpha_bar / (1 - alpha_bar)) / 2."""
    s = Schedule.from_config(ScheduleConfig(kind, T=1000))
    lam = 0.5 * torch.log(s.alpha_bar.double() / (1 - s.alpha_bar.double()))
    for steps in (1, 2, 3, 10, 50, 200, 999, 1000):
        ts = timesteps(s, steps, "logsnr")
        assert len(ts) == steps and ts[0] == 999 and all(a > b for a, b in zip(ts, ts[1:])), steps
        assert ts[-1] == (0 if steps > 1 else 999)
    ts = timesteps(s, 10, "logsnr")
    h = (lam[ts[2:]] - lam[ts[1:-1]]).numpy()  # the steps after the first, in lambda
    assert h.min() > 0 and h.max() / h.min() < 1.2, h
    h_t = (lam[timesteps(s, 10)[2:]] - lam[timesteps(s, 10)[1:-1]]).numpy()  # DDIM's grid, even in t
    assert h_t.max() / h_t.min() > 3
    with pytest.raises(ValueError, match="unknown spacing 'karras'; expected one of linspace, logsnr"):
        timesteps(s, 10, "karras")


def test_sampler_errors(gen):
    s = Schedule.from_config(ScheduleConfig("linear", T=100))
    with pytest.raises(ValueError, match="unknown sampler"):
        sample(lambda x, t: x, s, sampler="euler", shape=(1, 1, 2, 2))
    with pytest.raises(ValueError, match=r"steps must be an integer in \[1, 100\]"):
        sample_ddim(lambda x, t: x, s, shape=(1, 1, 2, 2), steps=1000)
    with pytest.raises(ValueError, match="model_fn returned shape"):
        sample_ddim(lambda x, t: x[:, :, :1], s, shape=(1, 1, 2, 2), steps=2, progress=False)
    with pytest.raises(TypeError, match=r"generator must be a torch.Generator .* got int 0"):  # a seed is not one
        sample_ddpm(lambda x, t: x, s, shape=(1, 1, 2, 2), steps=2, generator=0, progress=False)


def test_same_seed_same_samples():
    s = Schedule.from_config()
    fn = lambda x, t: 0.1 * x
    a = sample_ddpm(fn, s, shape=(2, 1, 4, 4), steps=20, generator=torch.Generator().manual_seed(3), progress=False)
    b = sample_ddpm(fn, s, shape=(2, 1, 4, 4), steps=20, generator=torch.Generator().manual_seed(3), progress=False)
    assert torch.equal(a, b)


def _toy_text_eps(x_t, t, context, context_mask):
    m = context_mask.float()[..., None]
    pooled = (context * m).sum(1) / m.sum(1)  # (B, D)
    return x_t * 0.5 + pooled[:, :1, None, None]


def test_cfg_scale_one_is_conditional_and_zero_unconditional(gen):
    x = torch.randn(3, 1, 4, 4, generator=gen)
    t = torch.tensor([5, 6, 7])
    c = (torch.randn(3, 5, 8, generator=gen), torch.ones(3, 5, dtype=torch.bool))
    u = (torch.randn(1, 2, 8, generator=gen), torch.ones(1, 2, dtype=torch.bool))
    cond = _toy_text_eps(x, t, c[0], c[1])
    uncond = _toy_text_eps(x, t, u[0].expand(3, -1, -1), u[1].expand(3, -1))
    torch.testing.assert_close(classifier_free_guidance(_toy_text_eps, c, u, 1.0)(x, t), cond)
    torch.testing.assert_close(classifier_free_guidance(_toy_text_eps, c, u, 0.0)(x, t), uncond)
    # the batched 2B pass (with padding of the shorter context) gives the guidance formula
    torch.testing.assert_close(classifier_free_guidance(_toy_text_eps, c, u, 3.0)(x, t),
                               uncond + 3.0 * (cond - uncond))
    torch.testing.assert_close(classifier_free_guidance(_toy_text_eps, c, u, 1.0 + 1e-9)(x, t), cond)


def test_cfg_guidance_interval_guides_only_inside(gen):
    x = torch.randn(4, 1, 4, 4, generator=gen)
    c = (torch.randn(4, 5, 8, generator=gen), torch.ones(4, 5, dtype=torch.bool))
    u = (torch.randn(1, 2, 8, generator=gen), torch.ones(1, 2, dtype=torch.bool))
    t = torch.tensor([10, 100, 500, 900])  # per-sample timesteps: only 100 and 500 lie in [100, 500]
    cond = _toy_text_eps(x, t, c[0], c[1])
    uncond = _toy_text_eps(x, t, u[0].expand(4, -1, -1), u[1].expand(4, -1))
    guided = uncond + 3.0 * (cond - uncond)
    out = classifier_free_guidance(_toy_text_eps, c, u, 3.0, interval=(100, 500))(x, t)
    torch.testing.assert_close(out[1:3], guided[1:3])
    torch.testing.assert_close(out[[0, 3]], cond[[0, 3]])  # outside: purely conditional (s = 1)
    full = classifier_free_guidance(_toy_text_eps, c, u, 3.0, interval=(0, 999))(x, t)
    torch.testing.assert_close(full, guided)
    # s = 0 inside the interval is the unconditional model, and still s = 1 (conditional) outside it
    out0 = classifier_free_guidance(_toy_text_eps, c, u, 0.0, interval=(100, 500))(x, t)
    torch.testing.assert_close(out0[1:3], uncond[1:3])
    torch.testing.assert_close(out0[[0, 3]], cond[[0, 3]])
    with pytest.raises(ValueError, match="t_lo <= t_hi"):
        classifier_free_guidance(_toy_text_eps, c, u, 3.0, interval=(500, 100))
    for bad in ((0.5, 999.9), (0, float("nan")), (0, float("inf")), (100,), (0, 5, 9), (True, 5)):
        with pytest.raises(ValueError, match="interval must be two whole timesteps"):  # not truncated to (0, 999)
            classifier_free_guidance(_toy_text_eps, c, u, 3.0, interval=bad)
    torch.testing.assert_close(classifier_free_guidance(_toy_text_eps, c, u, 3.0, interval=(100.0, 500.0))(x, t), out)
    for bad in (-1.0, float("nan"), float("inf")):
        with pytest.raises(ValueError, match="guidance scale s must be finite and >= 0"):
            classifier_free_guidance(_toy_text_eps, c, u, bad)


@pytest.mark.parametrize("eta", [-0.1, 1.5])
def test_ddim_eta_outside_0_1_is_an_error(eta):
    schedule = Schedule.from_config(ScheduleConfig(T=100))
    with pytest.raises(ValueError, match=r"eta must be in \[0, 1\]"):
        sample_ddim(lambda x, t: torch.zeros_like(x), schedule, shape=(1, 1, 4, 4), steps=2, eta=eta, progress=False)


def test_cads_gamma_anneals_from_the_prompt_to_noise():
    t = torch.tensor([0.0, 0.6, 0.75, 0.9, 1.0])
    torch.testing.assert_close(cads_gamma(t, 0.6, 0.9), torch.tensor([1.0, 1.0, 0.5, 0.0, 0.0]))


def test_cads_noise_keeps_clean_prompts_and_rescales_noisy_ones(gen):
    y = torch.randn(3, 6, 8, generator=gen) * 2 + 1
    mask = torch.ones(3, 6, dtype=torch.bool)
    mask[1, 4:] = False  # a shorter prompt: two padding tokens
    y = y * mask[..., None]
    cfg = CADS(noise_scale=0.5)
    same = cads_noise(y, mask, torch.ones(3), cfg, torch.Generator().manual_seed(0))
    assert torch.equal(same, y)  # gamma = 1: the prompt itself
    out = cads_noise(y, mask, torch.tensor([1.0, 0.0, 0.5]), cfg, torch.Generator().manual_seed(7))
    assert torch.equal(out[0], y[0])
    assert torch.equal(out[1, 4:], torch.zeros(2, 8))  # padding stays empty
    for b in (1, 2):  # eq. 4 with psi = 1: back to the prompt's mean and std over its real tokens
        real, noisy = y[b][mask[b]], out[b][mask[b]]
        torch.testing.assert_close(noisy.mean(), real.mean())
        torch.testing.assert_close(noisy.std(unbiased=False), real.std(unbiased=False))
    assert not torch.allclose(out[2], y[2])
    # gamma = 0: nothing of the prompt is left, only noise with its statistics
    a = cads_noise(y, mask, torch.zeros(3), cfg, torch.Generator().manual_seed(8))
    b = cads_noise(-y, mask, torch.zeros(3), cfg, torch.Generator().manual_seed(8))
    a, b = a[[0, 2]], b[[0, 2]]  # the prompts without padding
    torch.testing.assert_close((a - a.mean((1, 2), keepdim=True)) / a.std((1, 2), keepdim=True),
                               (b - b.mean((1, 2), keepdim=True)) / b.std((1, 2), keepdim=True))
    for bad in (dict(noise_scale=-1.0), dict(tau1=0.9, tau2=0.6), dict(psi=2.0)):
        with pytest.raises(ValueError, match="CADS"):
            CADS(**bad)


def test_cfg_with_cads_changes_only_the_noisy_steps(gen):
    x = torch.randn(2, 1, 4, 4, generator=gen)
    c = (torch.randn(2, 5, 8, generator=gen), torch.ones(2, 5, dtype=torch.bool))
    u = (torch.randn(1, 2, 8, generator=gen), torch.ones(1, 2, dtype=torch.bool))
    plain = classifier_free_guidance(_toy_text_eps, c, u, 3.0)
    cads = classifier_free_guidance(_toy_text_eps, c, u, 3.0, cads=CADS(0.5, 0.6, 0.9), T=1000,
                                    generator=torch.Generator().manual_seed(0))
    late, early = torch.tensor([100, 500]), torch.tensor([950, 990])
    torch.testing.assert_close(cads(x, late), plain(x, late))  # t/(T-1) <= tau1: the real prompt
    assert not torch.allclose(cads(x, early), plain(x, early))  # t/(T-1) >= tau2: a noised prompt
    with pytest.raises(ValueError, match="needs T"):
        classifier_free_guidance(_toy_text_eps, c, u, 3.0, cads=CADS())
    # a number is CADS's noise_scale (the CLI's --cads 0.5); anything else is a clear TypeError
    number = classifier_free_guidance(_toy_text_eps, c, u, 3.0, cads=0.5, T=1000,
                                      generator=torch.Generator().manual_seed(0))
    again = classifier_free_guidance(_toy_text_eps, c, u, 3.0, cads=CADS(0.5), T=1000,
                                     generator=torch.Generator().manual_seed(0))
    torch.testing.assert_close(number(x, early), again(x, early))
    with pytest.raises(TypeError, match="cads must be a guidance.CADS or a number"):
        classifier_free_guidance(_toy_text_eps, c, u, 3.0, cads="0.5", T=1000)


def test_cfg_refuses_a_prompt_mask_without_real_tokens(gen):
    c = (torch.randn(2, 5, 8, generator=gen), torch.ones(2, 5, dtype=torch.bool))
    u = (torch.randn(1, 2, 8, generator=gen), torch.zeros(1, 2, dtype=torch.bool))  # an all-padding prompt
    with pytest.raises(ValueError, match="uncond mask needs at least one True"):
        classifier_free_guidance(_toy_text_eps, c, u, 3.0)


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
@pytest.mark.parametrize("step", ["ddim", "ddpm"])
def test_step_functions_update_half_precision_inputs_in_float32(dtype, step):
    """Called directly (as chapter 05 does), a step from t = 20 to 0 in bfloat16 met alpha_bar rounded to 1 and
    (1 - ab_prev) / (1 - ab_t) = 0/0: NaN images. The steps run in float32 and hand back the input's dtype."""
    from diffusion_lite.sampling import ddpm_step

    s = Schedule.from_config(ScheduleConfig("cosine", T=1000))
    g = torch.Generator().manual_seed(0)
    x, eps, noise = (torch.randn(2, 1, 4, 4, generator=g) for _ in range(3))
    for t0, tp0 in [(20, 0), (10, 5), (1, 0), (3, 2)]:
        t, tp = torch.full((2,), t0), torch.full((2,), tp0)
        fn, kw = (ddim_step, {"eta": 1.0}) if step == "ddim" else (ddpm_step, {})
        ref = fn(s, x, t, tp, eps, noise, **kw)
        got = fn(s, x.to(dtype), t, tp, eps.to(dtype), noise.to(dtype), **kw)
        for r, o in zip(ref, got):
            assert o.dtype == dtype and torch.isfinite(o).all(), (t0, tp0)
            torch.testing.assert_close(o.float(), r, atol=0.02, rtol=0.02)  # the inputs' rounding, no more


def test_samplers_draw_x_T_in_the_dtype_given(gen):
    """shape= with dtype= drives a model with bfloat16 weights (x_T was drawn in float32 only)."""
    s = Schedule.from_config(ScheduleConfig("cosine", T=100))
    seen = []
    fn = lambda x, t: seen.append(x.dtype) or 0.1 * x
    for sampler in (sample_ddim, sample_ddpm):
        out = sampler(fn, s, shape=(2, 1, 4, 4), steps=5, generator=torch.Generator().manual_seed(0),
                      dtype=torch.bfloat16, progress=False)
        assert out.dtype == torch.bfloat16 and torch.isfinite(out).all() and set(seen) == {torch.bfloat16}
        ref = sampler(lambda x, t: 0.1 * x, s, shape=(2, 1, 4, 4), steps=5,
                      generator=torch.Generator().manual_seed(0), progress=False)
        torch.testing.assert_close(out.float(), ref, atol=0.05, rtol=0.05)  # the same noise, up to rounding
    with pytest.raises(ValueError, match="x_T is torch.float32 but dtype=torch.bfloat16"):
        sample_ddim(fn, s, x_T=torch.zeros(1, 1, 2, 2), dtype=torch.bfloat16, steps=2, progress=False)
    with pytest.raises(TypeError, match="dtype must be a floating-point torch.dtype"):
        sample_ddim(fn, s, shape=(1, 1, 2, 2), dtype=torch.long, steps=2, progress=False)


def test_cads_noise_of_a_wide_float16_prompt_is_finite():
    """A Hugging Face encoder's 77 x 1024 tokens in float16: the statistics' sum of squares overflowed 65504."""
    g = torch.Generator().manual_seed(0)
    y = torch.randn(2, 77, 1024, generator=g)
    mask = torch.ones(2, 77, dtype=torch.bool)
    gamma = torch.tensor([0.3, 0.7])
    ref = cads_noise(y, mask, gamma, CADS(noise_scale=0.5), torch.Generator().manual_seed(1))
    got = cads_noise(y.half(), mask, gamma, CADS(noise_scale=0.5), torch.Generator().manual_seed(1))
    assert got.dtype == torch.float16 and torch.isfinite(got).all()
    torch.testing.assert_close(got.float(), ref, atol=0.01, rtol=0.01)
