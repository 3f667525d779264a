"""The package's schedules and sampler steps against an independent implementation: diffusers' DDPMScheduler and
DDIMScheduler. The same betas and alpha_bar (to float32 precision, in which both keep them); then, with diffusers
given the exact (float64) alpha_bar and both float64 inputs, so that the step formulas are compared rather than
float32 round-off of 1 - alpha_bar near t = 0, the same x0_hat and x_{t_prev} from the same x_t, eps_hat and noise
(DDPM's ancestral step, respaced DDPM, DDIM with eta 0 and 1, with and without clipping x0_hat) and the same
q_sample. diffusers is optional (the bench extra): without it these tests are skipped."""

import pytest
import torch

from diffusion_lite.config import ScheduleConfig
from diffusion_lite.sampling import ddim_step, ddpm_step
from diffusion_lite.schedules import Schedule, make_betas, q_sample

diffusers = pytest.importorskip("diffusers")

# diffusers' names for the two schedules both libraries have (their defaults: DDPM's beta 1e-4 .. 0.02, T = 1000)
KINDS = {"linear": "linear", "cosine": "squaredcos_cap_v2"}
# the package keeps its per-step constants in float32 (computed in float64): relative differences up to ~1e-7
# in them, ~1e-3 in 1 - alpha_bar near t = 0, where re-deriving eps from a clipped x0_hat divides by its root
TOL = dict(atol=1e-4, rtol=1e-4)


def _pair(kind: str, scheduler_cls, same_alpha_bar: bool = True, **kw):
    ours = Schedule.from_config(ScheduleConfig(kind=kind, T=1000))
    theirs = scheduler_cls(num_train_timesteps=1000, beta_schedule=KINDS[kind], **kw)
    if same_alpha_bar:  # the exact alpha_bar, as Schedule computes it before rounding to float32
        theirs.alphas_cumprod = torch.cumprod(1 - make_betas(ours.config), 0)  # (T,) float64
    return ours, theirs


def _batch(seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    x_t = torch.randn(4, 1, 28, 28, generator=g, dtype=torch.float64)
    eps_hat = torch.randn(4, 1, 28, 28, generator=g, dtype=torch.float64) * 0.9 + 0.1 * x_t  # an imperfect network
    noise = torch.randn(4, 1, 28, 28, generator=g, dtype=torch.float64)
    return x_t, eps_hat, noise


def _t(value: int, n: int = 4) -> torch.Tensor:
    return torch.full((n,), value, dtype=torch.long)


@pytest.mark.parametrize("kind", list(KINDS))
def test_betas_and_alpha_bar_match_diffusers(kind):
    ours, theirs = _pair(kind, diffusers.DDPMScheduler, same_alpha_bar=False)
    torch.testing.assert_close(ours.betas.float(), theirs.betas, atol=1e-7, rtol=1e-5)
    torch.testing.assert_close(ours.alpha_bar.float(), theirs.alphas_cumprod, atol=1e-7, rtol=1e-5)


@pytest.mark.parametrize("kind", list(KINDS))
def test_q_sample_matches_add_noise(kind):
    ours, theirs = _pair(kind, diffusers.DDPMScheduler)
    x0, eps, _ = _batch(1)
    t = torch.tensor([0, 250, 600, 999])
    torch.testing.assert_close(q_sample(ours, x0, t, eps), theirs.add_noise(x0, eps, t), **TOL)


@pytest.mark.parametrize("kind", list(KINDS))
@pytest.mark.parametrize("clip", [True, False])
@pytest.mark.parametrize("t", [999, 600, 30, 1, 0])
def test_ddpm_step_matches_diffusers_ddpm_scheduler(kind, clip, t):
    """The full chain (t -> t - 1): diffusers' default DDPMScheduler, variance 'fixed_small' (beta tilde)."""
    ours, theirs = _pair(kind, diffusers.DDPMScheduler, clip_sample=clip)
    x_t, eps_hat, noise = _batch()
    x_prev, x0_hat = ddpm_step(ours, x_t, _t(t), _t(t - 1), eps_hat, noise, clip_x0=clip)
    # diffusers draws its noise with torch.randn from the generator: the same draw as `noise` when seeded alike
    out = theirs.step(eps_hat, t, x_t, generator=torch.Generator().manual_seed(7))
    same_noise = torch.randn(x_t.shape, generator=torch.Generator().manual_seed(7), dtype=torch.float64)
    ours_same_noise, _ = ddpm_step(ours, x_t, _t(t), _t(t - 1), eps_hat, same_noise, clip_x0=clip)
    torch.testing.assert_close(x0_hat, out.pred_original_sample, **TOL)
    torch.testing.assert_close(ours_same_noise, out.prev_sample, **TOL)
    if t > 0:
        assert not torch.allclose(x_prev, ours_same_noise)  # the noise is used at every step but the last


@pytest.mark.parametrize("kind", list(KINDS))
def test_respaced_ddpm_step_matches_diffusers_on_its_own_grid(kind):
    """Respaced DDPM (Nichol & Dhariwal): diffusers' DDPMScheduler after set_timesteps(50) steps 980 -> 960 -> ...
    -> 0, with the posterior between alpha_bar_t and alpha_bar_{t_prev}; ours takes the same jumps."""
    ours, theirs = _pair(kind, diffusers.DDPMScheduler)
    theirs.set_timesteps(50)
    grid = theirs.timesteps.tolist()
    x_t, eps_hat, _ = _batch(2)
    for t, t_prev in [(grid[0], grid[1]), (grid[25], grid[26]), (grid[-2], grid[-1]), (grid[-1], -1)]:
        out = theirs.step(eps_hat, t, x_t, generator=torch.Generator().manual_seed(t))
        noise = torch.randn(x_t.shape, generator=torch.Generator().manual_seed(t), dtype=torch.float64)
        x_prev, x0_hat = ddpm_step(ours, x_t, _t(t), _t(t_prev), eps_hat, noise)
        torch.testing.assert_close(x0_hat, out.pred_original_sample, **TOL)
        torch.testing.assert_close(x_prev, out.prev_sample, **TOL, msg=f"step {t} -> {t_prev}")


@pytest.mark.parametrize("kind", list(KINDS))
@pytest.mark.parametrize("eta", [0.0, 1.0])
@pytest.mark.parametrize("clip", [True, False])
def test_ddim_step_matches_diffusers_ddim_scheduler(kind, eta, clip):
    """DDIM (eq. 12, sigma of eq. 16) with 50 steps of 20: diffusers' DDIMScheduler with
    use_clipped_model_output=True, which re-derives eps_hat from the clipped x0_hat as this package does."""
    ours, theirs = _pair(kind, diffusers.DDIMScheduler, clip_sample=clip, set_alpha_to_one=True)
    theirs.set_timesteps(50)
    x_t, eps_hat, noise = _batch(3)
    for t in (980, 600, 20, 0):
        out = theirs.step(eps_hat, t, x_t, eta=eta, use_clipped_model_output=True,
                          variance_noise=noise if eta > 0 else None)
        x_prev, x0_hat = ddim_step(ours, x_t, _t(t), _t(t - 20 if t >= 20 else -1), eps_hat, noise, eta=eta,
                                   clip_x0=clip)
        torch.testing.assert_close(x0_hat, out.pred_original_sample, **TOL)
        torch.testing.assert_close(x_prev, out.prev_sample, **TOL, msg=lambda m, t=t: f"t = {t}: {m}")


@pytest.mark.parametrize("kind", list(KINDS))
@pytest.mark.parametrize("clip", [True, False])
def test_dpmpp_2m_matches_diffusers_dpm_solver_multistep(kind, clip):
    """DPM-Solver++(2M) over diffusers' own 10-step grid (999, 899, ..., 100, then sigma = 0), step by step from the
    same x_t and eps_hat: DPMSolverMultistepScheduler with algorithm_type="dpmsolver++", solver_order=2 and the
    midpoint form; clip_x0 is its thresholding with sample_max_value=1 (which clamps x0_hat to [-1, 1])."""
    from diffusion_lite.dpm_solver import dpmpp_2m_step

    ours, theirs = _pair(kind, diffusers.DPMSolverMultistepScheduler, algorithm_type="dpmsolver++", solver_order=2,
                         solver_type="midpoint", lower_order_final=False, final_sigmas_type="zero",
                         thresholding=clip, sample_max_value=1.0)
    theirs.set_timesteps(10)
    ts = [int(t) for t in theirs.timesteps]
    assert ts[0] == 999 and ts[-1] <= 100
    x_t, _, _ = _batch(4)
    g = torch.Generator().manual_seed(5)
    x0_last = t_last = None
    for i, t in enumerate(ts):
        eps_hat = torch.randn(x_t.shape, generator=g, dtype=torch.float64) * 0.9 + 0.1 * x_t  # an imperfect network
        theirs_prev = theirs.step(eps_hat, t, x_t).prev_sample
        t_prev = ts[i + 1] if i + 1 < len(ts) else -1
        x_prev, x0_hat = dpmpp_2m_step(ours, x_t, _t(t), _t(t_prev), eps_hat, x0_last, t_last, clip_x0=clip)
        torch.testing.assert_close(x_prev, theirs_prev, **TOL, msg=lambda m, t=t: f"t = {t}: {m}")
        x0_last, t_last, x_t = x0_hat, _t(t), theirs_prev
