# %% [markdown]
# # 05 · Sampling: running the process backwards
#
# Chapter 04 trained a network $\epsilon_\theta(x_t, t)$ that looks at a noisy image and estimates the noise in
# it. This chapter turns that estimate into new images. The idea: start from pure noise $x_T \sim \mathcal
# N(0, I)$ and repeatedly take a small step towards "less noisy", using the network's guess of the clean image
# at every step, until $t = 0$. How exactly to take the step is the choice of **sampler**, and it matters a
# lot for quality and speed.
#
# ## Learning goals
#
# * Derive DDPM's reverse step from the posterior $q(x_{t-1} \mid x_t, x_0)$ and the network's estimate of
#   $x_0$ (Ho et al. 2020, Algorithm 2).
# * Watch a sample being made: the noisy state $x_t$ and the predicted clean image $\hat x_0$, step by step.
# * Explain why samplers clip $\hat x_0$ to $[-1, 1]$ and re-derive $\hat\epsilon$, and what happens without.
# * Use DDIM (Song et al. 2021): a deterministic sampler that skips steps, with a knob $\eta$ for how much fresh
#   noise to add.
# * Measure the speed/quality trade-off with FID in a classifier's feature space, next to the real-vs-real floor.
# * See what a second-order solver (DPM-Solver++) changes at the same number of network calls, and why the time
#   grid it steps on matters as much as its update.
#
# You need chapters 01 (the forward process) and 04 (what the trained network predicts). Section 5 introduces
# FID briefly; chapter 09 explains it in depth, and you do not need chapter 09 for this one.

# %%
import inspect
import os
import time

import matplotlib.pyplot as plt
import torch

from diffusion_lite.checkpoints import load_pretrained
from diffusion_lite.data import load_dataset
from diffusion_lite.dpm_solver import dpmpp_2m_step
from diffusion_lite.metrics import evaluate_samples, load_eval_classifier
from diffusion_lite.model_widgets import trajectory_distances, trajectory_step_figure, trajectory_widget
from diffusion_lite.sampling import ddim_step, ddpm_step, sample_ddim, sample_ddpm, timesteps
from diffusion_lite.schedules import predict_eps_from_x0, q_sample
from diffusion_lite.trajectory_viz import TrajectoryRecorder, animate_trajectory, show_trajectory
from diffusion_lite.utils import get_device, seed_everything
from diffusion_lite.viz import plain_log_ticks, show_grid

FULL = os.environ.get("DIFFUSION_LITE_FULL") == "1"
torch.set_num_threads(1)  # small models: one thread is nearly as fast, and robust on a busy machine
g = seed_everything(0)
device = get_device()

pipe = load_pretrained("mnist-uncond", device)  # shipped: chapter 04's recipe, trained with the CLI (model card)
schedule, model_fn = pipe.schedule, pipe.model_fn()  # model_fn(x_t, t) -> eps_hat
print(f"device {device}; U-Net with {pipe.unet.num_parameters():,} parameters; schedule {schedule.config}")

# %% [markdown]
# ## 1. The reverse step
#
# The forward process adds a little Gaussian noise per step. For small steps, the reverse of a Gaussian step is
# approximately Gaussian too (Feller 1949; Sohl-Dickstein et al. 2015), so the model's reverse step is
# $p_\theta(x_{t-1} \mid x_t) = \mathcal N(\mu_\theta(x_t, t), \sigma_t^2 I)$. Which mean? If we *knew* the
# clean image $x_0$, the reverse step would be exactly computable. By Bayes' rule, the **posterior**
# (DDPM eqs. 6-7) is
# $$
# q(x_{t-1} \mid x_t, x_0) = \mathcal N\big(\tilde\mu_t(x_t, x_0),\, \tilde\beta_t I\big), \qquad
# \tilde\mu_t = \frac{\sqrt{\bar\alpha_{t-1}}\,\beta_t}{1-\bar\alpha_t}\,x_0
#             + \frac{\sqrt{\alpha_t}\,(1-\bar\alpha_{t-1})}{1-\bar\alpha_t}\,x_t, \qquad
# \tilde\beta_t = \frac{1-\bar\alpha_{t-1}}{1-\bar\alpha_t}\,\beta_t .
# $$
# The mean is a weighted average of "where the clean image is" and "where we are now". We do not know $x_0$,
# but the network gives us its best estimate (chapter 04, section 2b):
# $$\hat x_0 = \frac{x_t - \sqrt{1-\bar\alpha_t}\;\epsilon_\theta(x_t, t)}{\sqrt{\bar\alpha_t}} .$$
# Plugging $\hat x_0$ into the posterior and adding fresh noise of variance $\sigma_t^2 = \tilde\beta_t$ is one
# step of **ancestral sampling** (without the clipping of section 3, Algorithm 2 is the same update written
# directly in terms of $\epsilon_\theta$):
# $$x_{t-1} = \tilde\mu_t(x_t, \hat x_0) + \sqrt{\tilde\beta_t}\; z, \qquad z \sim \mathcal N(0, I),$$
# with no noise added at the last step. The package's step function, a pure function of tensors:

# %%
# NBVAL_CHECK_OUTPUT
print(inspect.getsource(ddpm_step))

# %% [markdown]
# Three remarks on the code. `_x0_and_eps` computes $\hat x_0$ and optionally *clips* it (section 3). The
# decorator `@float32_update` only matters for half-precision tensors (float16, bfloat16, common on GPUs): it does
# the update in float32, because in bfloat16 $\bar\alpha_t$ of the first 10 (linear schedule) to 21 (cosine)
# steps rounds to exactly 1 and $1-\bar\alpha_t$ to 0, so the posterior's ratios would be $0/0$. And the step
# allows **jumps**: going from $t$ straight to an earlier $t'$ with the posterior between those two steps
# ("respacing", Nichol & Dhariwal 2021), so we can sample with 100 of the 1,000 steps. For a jump the formulas
# above hold with $\beta_t$ replaced by $1 - \bar\alpha_t/\bar\alpha_{t'}$, $\alpha_t$ by
# $\bar\alpha_t/\bar\alpha_{t'}$ and $\bar\alpha_{t-1}$ by $\bar\alpha_{t'}$ (the code's
# `beta = 1 - ab_t / ab_prev`). (The schedule printed above also lists `beta_start` and `beta_end`: they
# belong to the linear schedule, and the cosine one ignores them.) All samplers here use
# `sampling.timesteps(schedule, steps)`, an evenly spaced grid from $T-1$ down to 0:

# %%
# NBVAL_CHECK_OUTPUT
print("5 steps :", timesteps(schedule, 5))
print("10 steps:", timesteps(schedule, 10))

# %% [markdown]
# ## 2. Watching a sample being made
#
# We run DDPM with 100 steps on 8 starting noises (section 4 reuses them) and record every step of the first
# 4 with `trajectory_viz.TrajectoryRecorder` (a callback that the sampler calls after each step with the new
# state $x_t$ and the prediction $\hat x_0$).
# Ten steps in two pairs of rows; in each pair, top: the state $x_t$, bottom: the network's current guess
# $\hat x_0$ of where it is heading. Each column is one step: a column titled "t = 999 → 989" shows the guess
# $\hat x_0$ made at $t = 999$ and the state the step moved to, $x_{989}$ ("end": the finished sample).

# %%
recorder = TrajectoryRecorder(max_images=4)
x_T = torch.randn((8, 1, 28, 28), generator=g).to(device)
_ = sample_ddpm(model_fn, schedule, x_T=x_T, steps=100, generator=g, callback=recorder, progress=False)
fig = show_trajectory(recorder.records, num_frames=10, n_images=4, ncols=5, title="DDPM, 100 steps: 4 samples, "
                      "time flows left to right, then on to the next pair of rows")
plt.show()
assert len(recorder.records) == 100 and recorder.records[-1]["t"] == 0

# %% [markdown]
# Read the $\hat x_0$ rows (second, then fourth) from left to right. At the very first step ($t = 999$)
# $\hat x_0$ is salt and pepper: its raw values are huge and have been clipped to $[-1, 1]$ (section 3 explains
# why). Soon after, $\hat x_0$ is a blurry average: from almost pure noise, the best guess of the clean image is
# "some digit, roughly here" (chapter 04: the network predicts the conditional mean $\mathbb E[x_0 \mid x_t]$).
# Within the first half of the steps (here by $t \approx 555$) the identity and rough shape of each digit are
# decided; the remaining steps only sharpen strokes. On the way the guess can change its mind: the lower-right
# digit is a 3 at $t = 777$ and a 1 from $t = 666$ on, and the lower-left one wavers between a 7 and a 9. The
# state $x_t$ (first and third rows) lags behind: it is the guess plus the noise that remains at that step. The
# same as an animation (press play). The player is JavaScript: it runs in Jupyter with a live kernel or on
# nbviewer, but GitHub's notebook view strips its script and shows nothing here; the static figure above shows
# the same run.

# %%
# NBVAL_IGNORE_OUTPUT
animate_trajectory(recorder.records, num_frames=16, n_images=4)

# %% [markdown]
# ### Step through the run yourself
#
# "The shape is decided early" can be measured. For every step we compute the root-mean-square pixel distance
# of the state $x_t$ and of the prediction $\hat x_0$ to the *final* sample (`model_widgets.trajectory_distances`).
# The figure below shows one step of the same run: the state after the step, the prediction the network made
# at that step, and both distances over the whole run with a marker at this step. Here it is at step 30 of 100;
# with a running kernel, the slider after it moves through all 100 steps.

# %%
fig = trajectory_step_figure(recorder.records, step=30, n_images=4)
plt.show()
dist = trajectory_distances(recorder.records, n_images=4)
for step in (1, 10, 30, 50, 80):
    print(f"step {step:3d} (t = {recorder.records[step - 1]['t']:3d}): RMS distance to the final sample "
          f"x_t {dist['x_t'][step - 1]:.2f}, x0_hat {dist['x0_hat'][step - 1]:.2f}")
assert dist["x0_hat"][29] < 0.5 * dist["x_t"][29]  # the prediction is much closer to the end than the state

# %%
# NBVAL_IGNORE_OUTPUT
trajectory_widget(recorder.records, step=30, n_images=4)

# %% [markdown]
# The distances put numbers on the pictures. The state $x_t$ (blue) closes in on the final sample at an almost
# steady pace: every step removes a slice of the remaining noise, and after 30 steps it has covered only a
# quarter of its way (1.38 to 1.04; pixels span $[-1, 1]$). The prediction $\hat x_0$ (orange) covers most of
# its way in the first ten steps (1.22 to 0.45) and is within 0.27 after 30. A small distance can still hide a
# change of mind, though: at step 30 the lower-left guess is a 7 that still carries the faint loop of a 9, and
# only later does it settle as a clean 7 (the two differ by a few pixels). Things to try with the slider: find
# the step where you can first name each digit in the $\hat x_0$ panel, and the step where you can first name it
# in $x_t$.

# %% [markdown]
# ## 3. Clipping the predicted $x_0$
#
# Pixels of real images lie in $[-1, 1]$, but nothing forces $\hat x_0$ to. Look at the formula for $\hat x_0$:
# it divides by $\sqrt{\bar\alpha_t}$. With the cosine schedule, at the first step $t = 999$,

# %%
# NBVAL_CHECK_OUTPUT
for t_val in (999, 979, 900, 500):
    ab = schedule.alpha_bar[t_val].item()
    print(f"t = {t_val}: sqrt(alpha_bar) = {ab ** 0.5:.1e}  ->  an error of 0.01 in eps_hat moves x0_hat by "
          f"{0.01 * ((1 - ab) / ab) ** 0.5:.3g}")

# %% [markdown]
# So at the start of sampling, a noise estimate that is off by a hair implies a clean image with pixel values
# in the hundreds. That is why samplers **clip** $\hat x_0$ to $[-1, 1]$ and then re-derive the noise estimate
# that is consistent with the clipped image,
# $\hat\epsilon \leftarrow (x_t - \sqrt{\bar\alpha_t}\,\hat x_0)/\sqrt{1-\bar\alpha_t}$ (this is what
# `_x0_and_eps` does, and what `clip_x0=True`, the default, switches on). It uses knowledge the network lacks:
# valid images live in a box. Let us run the same sampler from the same noise with and without it:

# %%
x_T16 = torch.randn((16, 1, 28, 28), generator=g).to(device)
runs = {}
for clip in (True, False):
    rec = TrajectoryRecorder(max_images=16)
    out = sample_ddpm(model_fn, schedule, x_T=x_T16, steps=50, generator=torch.Generator().manual_seed(5),
                      clip_x0=clip, callback=rec, progress=False)
    runs[clip] = (out, rec.records)

fig, axes = plt.subplots(1, 3, figsize=(13, 4), gridspec_kw={"width_ratios": [1, 1, 1.3]})
show_grid(runs[True][0], nrow=4, ax=axes[0], title="DDPM 50 steps, clip_x0=True")
show_grid(runs[False][0], nrow=4, ax=axes[1], title="same noise, clip_x0=False\n(shown clipped to [-1, 1])")
for clip, style in ((True, "-"), (False, "--")):
    recs = runs[clip][1]
    axes[2].plot([max(r["t_next"], 0) for r in recs], [r["x_t"].abs().max().item() for r in recs], style,
                 label=f"clip_x0={clip}")  # the state after each step, at the step's end time
axes[2].set(xlabel="time step t of the state (sampling runs left to right)", ylabel=r"max $|x_t|$", yscale="log",
            title="size of the state during sampling")
axes[2].invert_xaxis()
axes[2].legend()
axes[2].grid(alpha=0.3)
fig.tight_layout()
plt.show()
print(f"final pixel range: clipped [{runs[True][0].min():.2f}, {runs[True][0].max():.2f}], "
      f"unclipped [{runs[False][0].min():.3g}, {runs[False][0].max():.3g}]")
assert runs[False][0].abs().max() > 10 * runs[True][0].abs().max()

# %% [markdown]
# Without clipping, the first step already throws the state far outside the range of noisy images (whose values
# are a few units at most), and the error keeps growing from there: the samples end up with pixel values in
# the thousands. With clipping, the state stays at the scale of noise and shrinks smoothly towards an image.
# Clipping is crude (the network's $\hat x_0$ is bent into the box); Imagen's *dynamic thresholding* (Saharia
# et al. 2022) is a softer variant for strongly guided models.
#
# ## 4. DDIM: a deterministic sampler with fewer steps
#
# DDPM's step adds fresh noise every time, and it needs many steps because each posterior step is small. Song,
# Meng & Ermon (2021) noticed that the training loss only ever sees the marginals $q(x_t \mid x_0)$, never the
# individual forward steps, so the *same* trained network can drive other processes with the same marginals.
# One family of them, *non-Markovian* processes (each noisy image depends on $x_0$ as well as on the previous
# one), gives the **DDIM** update (their eq. 12), from step $t$ to any earlier step $s$:
# $$
# x_s = \sqrt{\bar\alpha_s}\,\hat x_0
#     + \sqrt{1 - \bar\alpha_s - \sigma^2}\;\hat\epsilon
#     + \sigma\, z, \qquad
# \sigma = \eta\,\sqrt{\frac{1-\bar\alpha_s}{1-\bar\alpha_t}}\,\sqrt{1-\frac{\bar\alpha_t}{\bar\alpha_s}} .
# $$
# Read it as: "go to where the clean image is, scaled to step $s$, and put back the noise we believe is in
# $x_t$, scaled to step $s$". With $\eta = 1$ this is DDPM's posterior step again; with $\eta = 0$ no fresh
# noise enters, and sampling becomes a **deterministic** map from $x_T$ to $x_0$, whose steps can be large.
#
# Large steps? Chapter 01 argued that undoing a big jump is not a Gaussian: from pure noise, the earlier image
# could be many very different things. DDIM does not try to *sample* that many-peaked distribution in one go.
# Each step asks the network afresh for $\hat x_0$ given the current image and moves the image a deterministic
# distance along the path that the marginals define; with $\eta = 0$ this is a discretisation of an ordinary
# differential equation (the "probability-flow ODE" of Song, Sohl-Dickstein, Kingma, Kumar, Ermon & Poole
# 2021), and the choice between the digits is
# made gradually, over many such moves. Large steps therefore only add approximation error (the path is
# followed less exactly); they do not force a single Gaussian onto a distribution with many peaks. Section 5
# measures what that error costs at 5, 10, 25 and 50 steps.

# %%
# NBVAL_CHECK_OUTPUT
print(inspect.getsource(ddim_step))

# %% [markdown]
# Deterministic means: the same starting noise always gives the same image, whatever the random generator:

# %%
a = sample_ddim(model_fn, schedule, x_T=x_T, steps=25, eta=0.0, generator=torch.Generator().manual_seed(1),
                progress=False)
b = sample_ddim(model_fn, schedule, x_T=x_T, steps=25, eta=0.0, generator=torch.Generator().manual_seed(2),
                progress=False)
torch.testing.assert_close(a, b)
print("DDIM (eta = 0): same x_T, different generators -> identical samples")

# %% [markdown]
# The knob $\eta$ moves between the two samplers. Same starting noise, 25 steps:

# %%
fig, axes = plt.subplots(3, 1, figsize=(8, 3.9))
for ax, eta in zip(axes, (0.0, 0.5, 1.0)):
    imgs = sample_ddim(model_fn, schedule, x_T=x_T, steps=25, eta=eta, generator=torch.Generator().manual_seed(3),
                       progress=False)
    show_grid(imgs, nrow=8, ax=ax, title=f"eta = {eta}")
fig.suptitle("DDIM, 25 steps, the same 8 starting noises in every row")
fig.tight_layout()
plt.show()

# %% [markdown]
# Compare the rows column by column. With $\eta = 0.5$ some digits (three of the eight: the first three
# columns) keep the layout they have at $\eta = 0$; with $\eta = 1$ the fresh noise has changed every one of
# them, so the starting noise no longer determines the image. And the deterministic
# sampler leaves a few more blobs than the stochastic ones. That is a property of *this* model more
# than of DDIM: the shipped model was trained only briefly, its noise estimates have small systematic errors,
# and a deterministic sampler carries every error to the end, while fresh noise at each step gives later steps
# a chance to correct it (Karras et al. 2022 discuss this trade-off). For well-trained models, DDIM with
# $\eta = 0$ and 50 steps comes close to DDPM with 1,000 (Song et al. 2021). Next we measure how large the
# differences are here.
#
# ## 5. Fewer steps or better images? Measuring with FID
#
# Each step costs one network evaluation, so the number of steps is the price of a sample. To compare samplers
# we need a number for "how much do the samples look like MNIST". We use the **Fréchet distance** (FID, Heusel
# et al. 2017) between the samples and real test digits, computed in the 128-dimensional feature space of a
# small MNIST classifier shipped with the package (`diffusion_lite.metrics`; the evaluation chapter explains
# it in detail). FID is biased upwards at small sample counts, so we also compute the **floor**: the FID
# between two disjoint sets of *real* test digits of the same size: what real digits score at this sample
# count, and so what a perfect generator would score (up to chance: at a small n a generator can land slightly
# below it, and one that copied the reference images would score about 0). All
# settings start from the same noises $x_T$. The printout also shows KID (kernel inception distance), a
# relative of FID without its small-sample bias: about 0 for two sets of real digits, so it can come out
# slightly negative; chapter 09 explains both.

# %%
n = 1000 if FULL else 200
settings = [("ddim", 5), ("ddim", 10), ("ddim", 25), ("ddim", 50), ("ddpm", 50)]
if FULL:
    settings += [("ddim", 100), ("ddpm", 10), ("ddpm", 25), ("ddpm", 100), ("ddpm", 1000)]

classifier = load_eval_classifier(device)
test = load_dataset("mnist", "test")
reference = test.images[torch.randperm(len(test.images), generator=g)[:2 * n]]  # 2n random test digits
x_T_eval = torch.randn((n, 1, 28, 28), generator=g).to(device)
results, grids = {}, {}


def run_setting(sampler, steps, spacing="linspace"):
    """Sample n images from x_T_eval, score them against the reference, keep 16 of them for the figures.
    Stored under (sampler, steps), or (sampler, steps, spacing) on another time grid (section 6)."""
    imgs = pipe.sample(n=n, x_T=x_T_eval, steps=steps, sampler=sampler, generator=torch.Generator().manual_seed(4),
                       progress=False, spacing=spacing)
    key = (sampler, steps) if spacing == "linspace" else (sampler, steps, spacing)
    results[key] = evaluate_samples(classifier, imgs, reference=reference, generator=torch.Generator().manual_seed(0))
    grids[key] = imgs[:16]


t0 = time.perf_counter()
for sampler, steps in settings:
    run_setting(sampler, steps)
print(f"{len(settings)} settings x {n} samples in {time.perf_counter() - t0:.0f} s")
floor = results[settings[0]]["fid_floor"]
print(f"n = {n} samples per setting; FID floor (real vs real, n = {n}): {floor:.2f}")
for (sampler, steps), r in results.items():
    print(f"  {sampler.upper():4} {steps:>4} steps: FID {r['fid']:6.2f}   KID {r['kid_mean']:.4f}")

# %%
fig, axes = plt.subplots(1, len(settings[:5]), figsize=(13, 3))
for ax, key in zip(axes, settings[:5]):
    show_grid(grids[key], nrow=4, ax=ax, title=f"{key[0].upper()}, {key[1]} steps\nFID {results[key]['fid']:.1f}")
fig.tight_layout()
plt.show()

fig, ax = plt.subplots(figsize=(7, 3.8))
for sampler, style, label in (("ddim", dict(marker="o"), "DDIM (eta = 0)"),
                              ("ddpm", dict(marker="s", ms=9, mfc="none"), "DDPM (stochastic)")):  # hollow: both show
    pts = sorted((steps, r["fid"]) for (s, steps), r in results.items() if s == sampler)
    ax.plot(*zip(*pts), **style, label=label)
ax.axhline(floor, color="gray", ls="--", label=f"real vs real floor (n = {n})")
ax.set(xscale="log", yscale="log", xlabel="sampling steps = network evaluations", ylabel="FID (classifier features)",
       title=f"speed vs quality, mnist-uncond, n = {n} samples per point")
all_steps = sorted({steps for _, steps in settings})
ax.set_xticks(all_steps, [str(v) for v in all_steps])
ax.set_xticks([], minor=True)
y_ticks = [v for v in (1, 2, 5, 10, 20, 50, 100, 200) if floor / 2 < v < 2 * max(r["fid"] for r in results.values())]
ax.set_yticks(y_ticks, [str(v) for v in y_ticks])
ax.set_yticks([], minor=True)
ax.legend()
ax.grid(alpha=0.3)
plt.show()

fids = {k: r["fid"] for k, r in results.items()}
assert fids[("ddim", 5)] > fids[("ddim", 50)] and fids[("ddpm", 50)] < fids[("ddim", 5)]
assert all(f > floor for f in fids.values())

# %% [markdown]
# What the measurement says (with $n = 200$, another draw of starting noises and reference digits moves the
# FIDs by 10-20% and the floor by more, so read the trends, not the decimals):
#
# * **More steps, better samples, with diminishing returns.** DDIM improves a lot from 5 to 10 to 25 steps and
#   much less after that. Five steps give blobs with the layout of a digit, ten steps many recognisable ones:
#   the deterministic sampler takes large steps gracefully.
# * **At 50 steps, DDPM and DDIM cannot be told apart for this model at $n = 200$** (both under twice the
#   floor; their gap is smaller than the 10-20% that another draw moves them). Section 4's idea, that the fresh
#   noise of the stochastic sampler corrects some errors of an imperfect network, is a hypothesis this run
#   cannot test; the `DIFFUSION_LITE_FULL=1` run with 1,000 samples per point can. It did (2026-12-07, 111 min
#   on a 2-core CPU): at $n = 1000$ (floor 0.46), DDPM with 50 steps scored FID 1.06 against DDIM's 1.82, and
#   DDPM with 25 steps (1.16) beat DDIM with 100 (1.73), so for this model the fresh noise does help. (An
#   earlier, shorter-trained version of this model showed a wider gap, about 3 against 8 times the floor.)
# * The floor is not 0: even two sets of real digits differ at $n = 200$. Compare every FID to it, and only
#   compare FIDs computed with the same feature extractor and the same $n$.
#
# In practice: use DDIM with few steps for quick previews and interactive work, and more steps or a stochastic
# sampler for the final images. Run with `DIFFUSION_LITE_FULL=1` to add more settings (including the full
# 1,000-step DDPM) and 1,000 samples per point.
#
# ## 6. Going further: a second-order solver, and its time grid
#
# With $\eta = 0$, DDIM follows the probability-flow ODE by the simplest possible rule: over each step it holds
# $\hat x_0$ at the value predicted at the step's start, as Euler's method does for any differential equation,
# so its error shrinks only in proportion to the step size (it is *first order*). Lu, Zhou, Bao, Chen, Li & Zhu
# (2022) wrote the same ODE in terms of $\lambda_t = \log\left(\alpha_t / \sigma_t\right)$, half the log
# signal-to-noise ratio, which grows as $t$ falls. **In this section only**, $\alpha_t = \sqrt{\bar\alpha_t}$ and
# $\sigma_t = \sqrt{1 - \bar\alpha_t}$ (so $x_t = \alpha_t x_0 + \sigma_t \epsilon$), not section 1's
# $\alpha_t = 1 - \beta_t$ nor section 4's DDIM noise level. Section 4's step with $\eta = 0$ is
# $x_s = \alpha_s \hat x_0 + \sigma_s \hat\epsilon$ with $\hat\epsilon = (x_t - \alpha_t \hat x_0) / \sigma_t$;
# since $\alpha_t \sigma_s / \sigma_t = \alpha_s e^{-h}$, it reads
# $$
# x_s = \frac{\sigma_s}{\sigma_t}\, x_t - \alpha_s \left(e^{-h} - 1\right) \hat x_0,
# \qquad h = \lambda_s - \lambda_t > 0 .
# $$
# **DPM-Solver++(2M)** (second order, multistep) replaces $\hat x_0$ there by a straight-line extrapolation
# from this step's prediction and the previous step's,
# $D = \left(1 + \frac{1}{2r}\right) \hat x_0 - \frac{1}{2r}\, \hat x_0^{\text{prev}}$, with $r$ the previous
# step's $h$ divided by this one's. That costs nothing: the previous prediction is already at hand, and each step
# is still one network call. (In Stable Diffusion's user interfaces it is the sampler called "DPM++ 2M".) The
# package has it as `sampler="dpm++2m"`, in `diffusion_lite/dpm_solver.py`. Each $\hat x_0$ is clipped as before;
# $D$, an extrapolation, is not. Its first step, which has no previous prediction, is DDIM's, and so is its step
# into $t = 0$: here $t = 0$ is the last *noisy* state ($\bar\alpha_0 = 0.99996$), and the step after it, to
# "$t = -1$", returns $\hat x_0$ as the image, as DDIM's last step does. On DDIM's grid the step into $t = 0$ is the
# longest after the first (with 10 steps, $h = 3.4$ against 0.35-0.72 for the steps between), and on Gaussian test
# data, N(0.3, 0.5²), extrapolating across it made the error worse; that choice is this package's (k-diffusion's
# and diffusers' only first-order final step is the one that returns $\hat x_0$).

# %%
# NBVAL_CHECK_OUTPUT
print(inspect.getsource(dpmpp_2m_step))

t_a = torch.full((8,), 999, device=device)
with torch.no_grad():
    eps_a = model_fn(x_T, t_a)
torch.testing.assert_close(dpmpp_2m_step(schedule, x_T, t_a, t_a - 40, eps_a),
                           ddim_step(schedule, x_T, t_a, t_a - 40, eps_a))
print("first step: DPM-Solver++(2M) = DDIM (eta = 0)")

# %% [markdown]
# **The grid matters as much as the update.** DDIM's 10 steps are even in $t$, but look at them in $\lambda$:

# %%
# NBVAL_CHECK_OUTPUT
ab64 = schedule.alpha_bar.double().cpu()
lam = 0.5 * torch.log(ab64 / (1 - ab64))  # lambda_t, (T,)
for spacing in ("linspace", "logsnr"):
    ts_grid = timesteps(schedule, 10, spacing)
    h = [float(lam[b] - lam[a]) for a, b in zip(ts_grid, ts_grid[1:])]
    print(f"{spacing:8s} t: {ts_grid}")
    print(f"{'':8s} h: {[round(v, 2) for v in h]}")

# %% [markdown]
# On the grid even in $t$ (`"linspace"`), the first step covers 8.2 of the 15 units of $\lambda$ between pure
# noise and $t = 0$, the middle steps are short, and the last is 3.4. The second step's extrapolation then has
# $r = 8.2 / 0.72 \approx 11$, so $D$ is $\hat x_0$ plus 4% of a difference: almost DDIM again. The grid **even in
# $\lambda$** (`"logsnr"`, `sampling.timesteps(schedule, steps, "logsnr")`) is the one Lu et al. (2022, DPM-Solver)
# recommend for small pixel-space images; every sampler takes it as `spacing="logsnr"` (the default stays the
# grid even in $t$, as in diffusers). After a first step that also crosses the cosine schedule's last, clipped
# $\beta$ (it alone takes $\lambda$ from -9.9 to -6.5), every step is 1.2-1.3 long. How close does each choice
# get to the ODE's own solution? We solve it once with 400 steps (twice, with DDIM and with DPM-Solver++, to
# check that 400 is enough) for 32 starting noises, and measure the root-mean-square pixel distance of
# fewer-step solutions from it:

# %%
n_ode = 32
x_T_ode = torch.randn((n_ode, 1, 28, 28), generator=g).to(device)
ode = lambda sampler, steps, spacing="linspace": pipe.sample(n=n_ode, x_T=x_T_ode, steps=steps, sampler=sampler,  # noqa: E731
                                                       spacing=spacing, progress=False).cpu()
t0 = time.perf_counter()
reference_ode = ode("dpm++2m", 400, "linspace")
check = (ode("ddim", 400) - reference_ode).pow(2).mean().sqrt().item()
print(f"two 400-step solutions differ by {check:.3f} RMS ({time.perf_counter() - t0:.0f} s)")
assert check < 0.02

# %%
solvers = {"DDIM, even in t": ("ddim", "linspace"), "DPM++ 2M, even in t": ("dpm++2m", "linspace"),
           "DPM++ 2M, even in lambda": ("dpm++2m", "logsnr")}
step_counts = [5, 10, 20, 50]
distance = {name: [(ode(sampler, k, spacing) - reference_ode).pow(2).mean().sqrt().item() for k in step_counts]
            for name, (sampler, spacing) in solvers.items()}
for name, d in distance.items():
    print(f"{name:36s}" + "".join(f"{k:>4} steps {v:.3f}  " for k, v in zip(step_counts, d)))

fig, ax = plt.subplots(figsize=(6.5, 4))
for (name, d), style in zip(distance.items(), (dict(ls="-", marker="o"), dict(ls="--", marker="s"),
                                                dict(ls="-", marker="^", lw=2.5))):
    ax.plot(step_counts, d, label=name, **style)
ax.plot(step_counts, [distance["DDIM, even in t"][1] * 10 / k for k in step_counts], ":", color="gray",
        label="slope of a first-order method (1 / steps)")
ax.set(xscale="log", yscale="log", xlabel="network calls (steps)", ylabel="RMS distance to the 400-step solution",
       title="How closely each sampler follows the ODE")
ax.set_xticks(step_counts, [str(k) for k in step_counts])
ax.xaxis.set_minor_formatter(plt.NullFormatter())
plain_log_ticks(ax.yaxis)  # ticks at 0.01, 0.02, 0.05, 0.1, ... written 0.1, not 10^-1
ax.legend(fontsize=9)
ax.grid(alpha=0.3, which="both")
plt.show()
d_t, d_lam = distance["DPM++ 2M, even in t"], distance["DPM++ 2M, even in lambda"]
assert d_lam[1] < 0.8 * d_t[1] and d_lam[2] < 0.6 * d_t[2]  # the grid even in lambda is closer at 10, 20 steps

# %% [markdown]
# On the grid even in $t$, DPM-Solver++ is no closer to the ODE's solution than DDIM at 5-20 steps (0.31 against
# 0.30 at 10 steps), and only a little closer at 50. On the grid even in $\lambda$ it is closer at every step count
# (0.21 at 10 steps, 0.10 at 20), and from 10 steps on its distance falls faster than the first-order slope.
# (On made-up Gaussian data the package's tests show the same for narrow distributions; for a wide one,
# N(0.3, 0.5²) with this schedule, the even-$t$ grid does better: which grid wins depends on the data.)
#
# Does following the ODE more closely give better digits? The same starting noises and reference digits as
# section 5, now with DPM-Solver++ on both grids:

# %%
solver_steps = [5, 10, 25] + ([50] if FULL else [])
for steps in solver_steps:
    for spacing in ("linspace", "logsnr"):
        run_setting("dpm++2m", steps, spacing)
print(f"n = {n}; floor {floor:.2f}; FID of")
print(f"{'steps':>7} {'DDIM':>8} {'DPM++ 2M':>10} {'DPM++ 2M, even in lambda':>26}")
for steps in solver_steps:
    print(f"{steps:>7} {results[('ddim', steps)]['fid']:8.2f} {results[('dpm++2m', steps)]['fid']:10.2f} "
          f"{results[('dpm++2m', steps, 'logsnr')]['fid']:26.2f}")

fig, axes = plt.subplots(1, 3, figsize=(9, 3.3))
for ax, key, label in zip(axes, (("ddim", 10), ("dpm++2m", 10), ("dpm++2m", 10, "logsnr")),
                          ("DDIM", "DPM++ 2M", "DPM++ 2M, even in lambda")):
    show_grid(grids[key], nrow=4, ax=ax, title=f"{label}, 10 steps\nFID {results[key]['fid']:.1f}")
fig.tight_layout()
plt.show()
fid_lam = {k: results[("dpm++2m", k, "logsnr")]["fid"] for k in solver_steps}
assert fid_lam[10] < results[("ddim", 10)]["fid"] and fid_lam[5] < results[("ddim", 5)]["fid"]
assert all(v > floor for v in fid_lam.values())

# %% [markdown]
# In the default mode ($n = 200$, floor 1.78), DPM-Solver++ on DDIM's grid is a little ahead of DDIM (FID 6.53
# against 7.36 at 10 steps, within what another draw of 200 samples could move); on the grid even in $\lambda$ it
# is far ahead: with 10 steps it does what DDIM does with 25 (3.67 against 3.63), and with 5 steps better than
# DDIM with 10 (6.82 against 7.36). With 1,000 samples (BENCHMARKS.md, section 3: separate `evaluate` runs, with
# their own reference draw and floor, so their numbers are not this section's) the picture holds: FID / floor
# 4.89 at 10 steps on the even-$\lambda$ grid, against 10.98 on the even-$t$ grid and DDIM's 10.82; 3.19 against
# 4.68 and 5.24 at 20 steps.
#
# **Not with guidance, though.** For the text model at guidance 3 (chapter 08), the even-$\lambda$ grid scores
# worse at 10 steps (5.05 against 3.90 times the floor, with less variety), probably because four of its ten
# steps sit at $t \ge 953$, where guidance costs the most variety; at 50 steps the two grids are equal. So the
# package keeps the grid even in $t$ as every sampler's default, and offers `spacing="logsnr"` (`--spacing logsnr`
# on the command line) for unguided sampling with few steps. More steps help less and less once the samples
# follow the network's ODE closely, because that ODE is not exactly the data's: what is left is the network's
# own error, which no solver removes. DDPM at 50 steps, whose fresh noise corrects some of that error (section 5),
# still scores better than every deterministic solver at $n = 1000$ (2.20 times the floor).
#
# ## Exercise
#
# 1. **One DDIM step by hand.** For the batch $x_t$ below at $t = 600$, going to $s = 400$ with $\eta = 0$:
#    compute $\hat x_0$ from the network's $\hat\epsilon$ (`model_fn(x_t, t_cur)`), clip it to $[-1, 1]$,
#    re-derive $\hat\epsilon$ from the clipped $\hat x_0$, and apply the DDIM update (section 4; Song et al.'s
#    eq. 12). Store the clipped $\hat x_0$ as **`x0_hat`** and the new state $x_s$ as **`my_x_s`**, both (8, 1,
#    28, 28). The check cell compares them with what `sampling.ddim_step` returns for the same $x_t$ and
#    $\hat\epsilon$.
# 2. **DDIM with an oracle retraces the forward process.** If the "network" returned the *true* noise
#    $\epsilon$ that made $x_T$ from a real image $x_0$, then $\hat x_0 = x_0$ at every step and DDIM ($\eta = 0$)
#    should pass exactly through $q$'s points $\sqrt{\bar\alpha_s}\,x_0 + \sqrt{1-\bar\alpha_s}\,\epsilon$ and end
#    at $x_0$. Sample it and record the path with a callback. (This is also how to test a sampler when samples
#    look wrong: take the network out of the equation.) Tools: $x_T$ is `q_sample` of `x0_real` at $t = T - 1$
#    with `noise=eps_true` (the next cells); the oracle is a `model_fn(x_t, t)` that returns
#    `schedules.predict_eps_from_x0(schedule, x_t, t, x0_real)`, the noise consistent with $x_t$ and the known
#    $x_0$; `sample_ddim(..., callback=f)` calls `f(info)` after every step with a dict holding `info["i"]` (the
#    step's index), `info["t"]`, `info["t_next"]` (the time the new state is at; $-1$ after the last step),
#    `info["x_t"]` (the new state) and `info["x0_hat"]`; `sampling.timesteps(schedule, 20)` lists the times
#    DDIM visits. Run `sample_ddim` with 20 steps and $\eta = 0$; store the final sample as **`x0_rec`** and,
#    from the callback, the intermediate states as **`my_path`**, a dict `{info["t_next"]: info["x_t"]}` over
#    the 19 steps whose `t_next` is $\ge 0$. The check cell compares every state in `my_path` with $q$'s point
#    at its time (`q_sample` with the same noise) and `x0_rec` with `x0_real`.
#
# For each, write your answer in its "Your turn" cell and run it, then run the **check** cell below the
# collapsed solution. Skip the collapsed cells unless you want to see a solution: running one replaces your
# answers with the solution's.

# %%
# Your turn 1: compute x0_hat and my_x_s (both (8, 1, 28, 28)) in this cell, run it, then run the check cell
# below the collapsed solution. The batch (used by exercise 2 too):
x0_real = test.images[:8].to(device)  # (8, 1, 28, 28): real digits
t_cur = torch.full((8,), 600, device=device)
t_next = torch.full((8,), 400, device=device)
x_t = q_sample(schedule, x0_real, t_cur, generator=g)  # the batch x_t at t = 600
# x0_hat = ...
# my_x_s = ...


# %% jupyter={"source_hidden": true} tags=["solution"]
# Solution 1 (running this cell replaces your x0_hat and my_x_s with these)
with torch.no_grad():
    eps_hat = model_fn(x_t, t_cur)
ab_t, ab_s = schedule.alpha_bar[600], schedule.alpha_bar[400]
x0_hat = ((x_t - (1 - ab_t).sqrt() * eps_hat) / ab_t.sqrt()).clamp(-1, 1)
eps_clipped = (x_t - ab_t.sqrt() * x0_hat) / (1 - ab_t).sqrt()
my_x_s = ab_s.sqrt() * x0_hat + (1 - ab_s).sqrt() * eps_clipped  # eta = 0: sigma = 0

# %% tags=["check"]
# Check 1: your x0_hat and my_x_s against sampling.ddim_step
assert torch.equal(x0_real, test.images[:8].to(device)) and x_t.shape == (8, 1, 28, 28), "the batch handed out"
assert t_cur.tolist() == [600] * 8 and t_next.tolist() == [400] * 8, "t_cur = 600 and t_next = 400, as handed out"
with torch.no_grad():
    eps_ref = model_fn(x_t, t_cur)  # the network's eps_hat at t = 600
ref_x_s, ref_x0 = ddim_step(schedule, x_t, t_cur, t_next, eps_ref, eta=0.0)
torch.testing.assert_close(x0_hat, ref_x0, msg=lambda m: f"x0_hat differs from ddim_step's (clipped?):\n{m}")
torch.testing.assert_close(my_x_s, ref_x_s, msg=lambda m: f"my_x_s differs from ddim_step's x_s:\n{m}")
print("one DDIM step matches sampling.ddim_step")

# %%
# Your turn 2: compute x0_rec and my_path in this cell, run it, then run the check cell below the collapsed
# solution. The true noise, and x_T made from x0_real with it:
eps_true = torch.randn(x0_real.shape, generator=g).to(device)  # makes x_T from x0_real
x_T_oracle = q_sample(schedule, x0_real, torch.full((8,), schedule.T - 1, device=device), noise=eps_true)
# my_path = {}  # filled by your callback: {t_next: x_t} for every step with t_next >= 0
# x0_rec = sample_ddim(..., x_T=x_T_oracle, steps=20, eta=0.0, callback=...)


# %% jupyter={"source_hidden": true} tags=["solution"]
# Solution 2 (running this cell replaces your x0_rec and my_path with these)
oracle = lambda x_t, t: predict_eps_from_x0(schedule, x_t, t, x0_real)  # knows x0, hence the true noise
my_path = {}


def record_path(info):
    if info["t_next"] >= 0:  # the state after this step, at t_next (-1 after the last step: the sample)
        my_path[info["t_next"]] = info["x_t"]


x0_rec = sample_ddim(oracle, schedule, x_T=x_T_oracle, steps=20, eta=0.0, callback=record_path, progress=False)

# %% tags=["check"]
# Check 2: your path against q's points at the same times, with the same noise, and your x0_rec against x0_real
assert torch.equal(x0_real, test.images[:8].to(device)) and eps_true.shape == (8, 1, 28, 28), "the batch handed out"
grid_ts = timesteps(schedule, 20)  # the 20 times DDIM visits, from T - 1 down to 0
path = {s: x for s, x in my_path.items() if s != -1}  # the final sample (t_next = -1), if recorded, is x0_rec
assert sorted(path, reverse=True) == grid_ts[1:], (
    f"my_path should hold the states at the times {grid_ts[1:]}, got {sorted(path, reverse=True)}")
for s in grid_ts[1:]:
    on_q = q_sample(schedule, x0_real, torch.full((8,), s, device=device), noise=eps_true)  # q's point at s
    gap = (path[s] - on_q).abs().max().item()
    assert gap < 2e-3, f"at t = {s} your state is {gap:.3g} off q's point: an oracle, x_T = x_T_oracle, eta = 0?"
torch.testing.assert_close(x0_rec, x0_real, atol=1e-4, rtol=0,
                           msg=lambda m: f"x0_rec is not x0_real: the oracle DDIM should end at x0:\n{m}")
print(f"oracle DDIM stayed on the forward path at {len(path)} intermediate steps and recovered x0")

# %% [markdown]
# ## Summary
#
# * A reverse step plugs the network's estimate $\hat x_0$ into the Gaussian posterior
#   $q(x_{t-1} \mid x_t, x_0)$ and, for DDPM, adds fresh noise of variance $\tilde\beta_t$ (Algorithm 2). Steps can
#   be respaced to use a subset of the 1,000 time steps.
# * During sampling, $\hat x_0$ goes from a blurry average to a sharp digit; the coarse shape is settled early,
#   the detail late.
# * $\hat x_0$ divides by $\sqrt{\bar\alpha_t}$, which is tiny at the start: **clip** $\hat x_0$ to $[-1, 1]$ and
#   re-derive $\hat\epsilon$, or the samples explode.
# * **DDIM** reuses the same network for a non-Markovian process: with $\eta = 0$ sampling is deterministic and
#   works with few steps; $\eta = 1$ recovers DDPM's stochastic step.
# * **Speed vs quality**: FID falls quickly with the first steps and then flattens; for the shipped model,
#   DDPM and DDIM at 50 steps are indistinguishable at $n = 200$ (both under twice the floor; whether DDPM's
#   fresh noise corrects a less trained network's errors needs more samples to tell). Report FID with its
#   sample count and next to the real-vs-real floor.
# * A **second-order solver** (DPM-Solver++(2M)) extrapolates $\hat x_0$ from the previous step at no extra
#   network calls. It follows the ODE more closely only on a grid that suits it: even in log-SNR $\lambda$, not
#   in $t$. There, unguided, 10 steps do about as well as DDIM's 25; with strong guidance that grid costs variety.
#   More steps cannot remove the network's own error.
# * Next: chapter 06 trains a text encoder (CLIP), the first ingredient of text-to-image generation.
#
# ## References
#
# * Ho, Jain & Abbeel 2020, "Denoising Diffusion Probabilistic Models" (eqs. 6-7, 11, Algorithm 2).
# * Sohl-Dickstein, Weiss, Maheswaranathan & Ganguli 2015, "Deep Unsupervised Learning using Nonequilibrium
#   Thermodynamics".
# * Feller 1949, "On the Theory of Stochastic Processes, with Particular Reference to Applications".
# * Song, Meng & Ermon 2021, "Denoising Diffusion Implicit Models" (eqs. 12 and 16).
# * Song, Sohl-Dickstein, Kingma, Kumar, Ermon & Poole 2021, "Score-Based Generative Modeling through Stochastic
#   Differential Equations" (the probability-flow ODE).
# * Lu, Zhou, Bao, Chen, Li & Zhu 2022, "DPM-Solver++: Fast Solver for Guided Sampling of Diffusion Probabilistic
#   Models" (Algorithm 2, the multistep second-order solver).
# * Lu, Zhou, Bao, Chen, Li & Zhu 2022, "DPM-Solver: A Fast ODE Solver for Diffusion Probabilistic Model Sampling in
#   Around 10 Steps" (NeurIPS 2022; the solver's first form, and time steps even in log-SNR for small images).
# * Nichol & Dhariwal 2021, "Improved Denoising Diffusion Probabilistic Models" (respacing, the cosine schedule).
# * Saharia et al. 2022, "Photorealistic Text-to-Image Diffusion Models with Deep Language Understanding"
#   (Imagen; dynamic thresholding).
# * Karras, Aittala, Aila & Laine 2022, "Elucidating the Design Space of Diffusion-Based Generative Models".
# * Heusel, Ramsauer, Unterthiner, Nessler & Hochreiter 2017, "GANs Trained by a Two Time-Scale Update Rule
#   Converge to a Local Nash Equilibrium" (FID).
