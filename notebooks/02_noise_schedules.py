# %% [markdown]
# # 02 · Noise schedules: how fast to destroy an image
#
# In [chapter 01](01_forward_process.ipynb) the forward process mixed an image with noise,
# $x_t = \sqrt{\bar\alpha_t}\,x_0 + \sqrt{1-\bar\alpha_t}\,\epsilon$, and we took the numbers $\beta_t$ (and
# hence $\bar\alpha_t = \prod_{i\le t}(1-\beta_i)$) as given. They are a design choice, the **noise schedule**,
# and a consequential one. Training picks $t$ uniformly at random ([chapter 04](04_training.ipynb)), and
# sampling walks through the steps ([chapter 05](05_sampling.ipynb)), so the schedule decides how the model's
# effort is spread over noise levels. A schedule that turns the image into pure noise in the first quarter of
# the steps wastes the other three quarters.
#
# ## Learning goals
#
# - Know the three common schedules, **linear**, **cosine** and **sigmoid**, and read their $\beta_t$,
#   $\bar\alpha_t$ and signal-to-noise ratio curves.
# - Use the **signal-to-noise ratio** $\mathrm{SNR}(t) = \bar\alpha_t / (1-\bar\alpha_t)$ to compare
#   schedules, and see that a noisy image depends on the schedule only through it.
# - Measure how long image information survives: the accuracy of a digit classifier on $x_t$ against $t$.
# - Understand what the number of steps $T$ changes, and what it does not.
#
# Background: chapter 01 (the closed form $q(x_t \mid x_0)$); Python and a little PyTorch.

# %%
import inspect
import os

import matplotlib.pyplot as plt
import numpy as np
import torch

from diffusion_lite.classifier import accuracy
from diffusion_lite.config import ScheduleConfig
from diffusion_lite.data import load_dataset
from diffusion_lite.metrics import load_eval_classifier
from diffusion_lite.schedules import Schedule, cosine_betas, linear_betas, q_sample, sigmoid_betas
from diffusion_lite.utils import get_device, seed_everything
from diffusion_lite.viz import show_grid
from diffusion_lite.widgets import KIND_STYLES, schedule_comparison_figure, schedule_widget, schedules_for

FULL = os.environ.get("DIFFUSION_LITE_FULL") == "1"  # full mode: more images and time steps in section 4
torch.set_num_threads(1)  # small tensors: one thread is as fast, and safe on a shared CPU
g = seed_everything(0)
device = get_device()  # only the classifier in section 4 uses it
plt.rcParams["image.interpolation"] = "nearest"  # draw pixels as crisp squares
test = load_dataset("mnist", "test", subset=2000 if FULL else 500, balanced=True)
one_of_each = torch.stack([test.images[test.labels == k][0] for k in range(10)])  # digits 0-9, (10, 1, 28, 28)
print(test)

# %% [markdown]
# ## 1. Three schedules
#
# **Linear** (Ho, Jain & Abbeel 2020). $\beta_t$ grows linearly from $\beta_1 = 10^{-4}$ to
# $\beta_T = 0.02$ over $T = 1000$ steps. Simple, and what DDPM used; its weakness, as we saw in chapter 01,
# is that $\bar\alpha_t$ is nearly zero long before the end.
#
# **Cosine** (Nichol & Dhariwal 2021). Instead of choosing $\beta_t$, choose $\bar\alpha_t$ directly, as a
# curve that falls slowly at the start, roughly linearly in the middle and slowly at the end:
#
# $$\bar\alpha_t = \frac{f(t)}{f(0)},\qquad f(t) = \cos^2\!\left(\frac{t/T + s}{1+s}\cdot\frac{\pi}{2}\right),
# \qquad s = 0.008,$$
#
# and recover $\beta_t = 1 - \bar\alpha_t/\bar\alpha_{t-1}$, clipped at 0.999 (near $t = T$ the ratio goes to
# zero; the small offset $s$ keeps $\beta$ from being tiny near $t = 0$).
#
# **Sigmoid.** $\beta_t$ follows a sigmoid in $t$ (as in GeoDiff, Xu et al. 2022): small for a long time,
# then a fast rise, then flat. Chen (2023) and Jabri, Fleet & Chen (2023) shape $\bar\alpha_t$ itself with a
# sigmoid instead; the spirit is the same: spend few steps where little happens.
#
# Here is the package's code for all three (pure functions returning float64 tensors of shape (T,)):

# %%
# NBVAL_CHECK_OUTPUT
for fn in (linear_betas, cosine_betas, sigmoid_betas):
    print(inspect.getsource(fn))

# %% [markdown]
# `Schedule.from_config` turns the betas into every derived quantity ($\alpha_t$, $\bar\alpha_t$, the SNR,
# and the posterior coefficients that chapter 05 needs). `schedules_for(T)` builds one schedule of each kind.

# %%
scheds = schedules_for(1000)  # {"linear": Schedule, "cosine": Schedule, "sigmoid": Schedule}
t_axis = np.arange(1000)
fig, axes = plt.subplots(1, 3, figsize=(15, 4))
for kind, sch in scheds.items():
    style = dict(ls=KIND_STYLES[kind], lw=1.8, label=kind)  # a line style per schedule: not told apart by colour only
    axes[0].plot(t_axis, sch.betas.numpy(), **style)
    axes[1].plot(t_axis, sch.alpha_bar.numpy(), **style)
    axes[2].plot(t_axis, np.log10(sch.snr.double().numpy()), **style)
axes[0].set(yscale="log", title=r"$\beta_t$ (noise added per step)", ylabel=r"$\beta_t$ (log scale)")
axes[1].set(title=r"$\bar\alpha_t$ (fraction of signal variance left)", ylabel=r"$\bar\alpha_t$")
axes[2].axhline(0, color="gray", lw=0.8)
axes[2].set(title=r"$\log_{10}\,\mathrm{SNR}(t)$", ylabel=r"$\log_{10}\,\bar\alpha_t/(1-\bar\alpha_t)$")
for ax in axes:
    ax.set_xlabel("time step t")
    ax.legend()
fig.suptitle("Three noise schedules, T = 1000", y=1.02)
plt.show()

# %% [markdown]
# Read the middle panel first. The linear schedule's $\bar\alpha_t$ is below 0.05 from $t \approx 540$ on:
# almost half of its steps see (nearly) pure noise. The cosine curve comes down steadily over the whole
# range. The sigmoid is like the linear schedule, but delayed: it keeps most of the image ($\bar\alpha_t \approx 0.9$)
# for the first quarter, then destroys it over somewhat fewer steps than the linear one does (from
# $\bar\alpha_t = 0.9$ to 0.05: 378 steps against 444). The betas (left, log scale) show the price of the
# cosine's shape: tiny steps at the start and a few huge ones at the very end ($\beta_t > 0.1$ for the last 19
# steps, and the last one is clipped at 0.999).
#
# ## 2. One number per step: the signal-to-noise ratio
#
# Divide the closed form by $\sqrt{\bar\alpha_t}$:
#
# $$\frac{x_t}{\sqrt{\bar\alpha_t}} = x_0 + \frac{\epsilon}{\sqrt{\mathrm{SNR}(t)}},\qquad
# \mathrm{SNR}(t) = \frac{\bar\alpha_t}{1-\bar\alpha_t}.$$
#
# So, up to a rescaling that any network can undo, *a noisy image is the clean image plus noise of standard
# deviation $1/\sqrt{\mathrm{SNR}}$*, and the schedule matters only through how $\mathrm{SNR}(t)$ moves with
# $t$ (Kingma, Salimans, Poole & Ho 2021). At $\mathrm{SNR} = 1$ (that is $\bar\alpha_t = \tfrac12$) signal and
# noise enter with equal weights $\sqrt{\bar\alpha_t} = \sqrt{1 - \bar\alpha_t}$ (equal variance only if $x_0$ had
# unit variance; MNIST's pixels have a standard deviation of about 0.62). The right panel above shows
# $\log_{10}\mathrm{SNR}$: every schedule starts high (about $10^4$) and ends low, and they differ in how they spend the
# steps in between. The numbers:

# %%
# NBVAL_CHECK_OUTPUT
print(f"{'':8s}" + "".join(f"{f'alpha_bar(t={t})':>18s}" for t in (249, 499, 749, 999)) + f"{'log10 SNR(999)':>16s}")
for kind, sch in scheds.items():
    row = "".join(f"{sch.alpha_bar[t].item():18.4f}" for t in (249, 499, 749, 999))
    print(f"{kind:8s}{row}{np.log10(sch.snr[999].item()):16.2f}")

# %% [markdown]
# None of them reaches exactly zero signal at $t = T-1$, so the model never trains on *pure* noise although
# sampling starts from it. For 28×28 digits the leftover signal is negligible; for large images Lin, Liu, Li
# & Yang (2024) showed it visibly limits brightness, and proposed rescaling schedules to zero terminal SNR.
#
# ## 3. The same digit, the same noise, three schedules
#
# Because $x_t$ depends only on $\bar\alpha_t$, using the same $x_0$ and the same $\epsilon$ under each
# schedule isolates the schedule's effect:

# %%
eps = torch.randn(one_of_each.shape, generator=g)  # one fixed noise draw per digit
cols = [0, 100, 200, 300, 400, 500, 600, 700, 800, 999]
three = test.images[test.labels == 3][2:3]  # a plainly written 3 (the first one is loopy, close to an 8)
fig, axes = plt.subplots(3, 1, figsize=(10, 4.2))
for ax, (kind, sch) in zip(axes, scheds.items()):
    row = torch.cat([q_sample(sch, three, t, noise=eps[3:4]) for t in cols])  # (10, 1, 28, 28)
    show_grid(row, nrow=len(cols), ax=ax, title=f"{kind}")
fig.suptitle("A '3' under each schedule; columns t = " + ", ".join(map(str, cols)), y=1.02)
plt.show()

# %% [markdown]
# With the linear schedule the 3 is hard to make out by $t = 400$; with the cosine it is still visible at
# $t = 500$ and faintly at $t = 600$; with the sigmoid it is clear until $t = 400$ and gone by $t = 600$.
#
# ## 4. How long does the image survive? Ask a classifier
#
# "Still visible" is subjective. A sharper question: **at which $t$ can you still tell which digit it
# was?** We answer it with the course's evaluation classifier (a small CNN with 99.6% accuracy on the 10,000 clean MNIST
# test digits, a little less on the subset below, introduced in [chapter 09](09_evaluation.ipynb)), fed $x_t$ for 500
# test digits (50 per class; 2,000 in full mode) at 20 time steps, under the linear and the cosine schedule. Chance
# level is 10%.

# %%
classifier = load_eval_classifier(device)
x0, labels = test.images, test.labels  # (500, 1, 28, 28), (500,)
noise = torch.randn(x0.shape, generator=g)  # the same noise for every t and schedule
t_grid = torch.linspace(0, 500, 40 if FULL else 20).round().long().tolist()  # beyond t = 500: chance level
acc = {kind: np.array([accuracy(classifier, q_sample(scheds[kind], x0, t, noise=noise).to(device), labels)
                       for t in t_grid])
       for kind in ("linear", "cosine")}
print(f"accuracy on clean digits: {accuracy(classifier, x0.to(device), labels):.3f}")


def t_at(acc_curve, level=0.5):
    """First t on t_grid where the accuracy has fallen below `level`, linearly interpolated."""
    if acc_curve[0] < level or not (acc_curve < level).any():
        raise ValueError(f"the accuracy does not fall below {level} between t = {t_grid[0]} and t = {t_grid[-1]}")
    i = int(np.argmax(acc_curve < level))
    t0, t1, a0, a1 = t_grid[i - 1], t_grid[i], acc_curve[i - 1], acc_curve[i]
    return t0 + (a0 - level) / (a0 - a1) * (t1 - t0)


t_half = {kind: t_at(a) for kind, a in acc.items()}
print("accuracy falls below 50% at t =", {k: round(v) for k, v in t_half.items()})

# %%
fig, axes = plt.subplots(1, 2, figsize=(13, 4))
for kind, a in acc.items():
    axes[0].plot(t_grid, a, "o-", ms=4, label=f"{kind} (50% at t = {t_half[kind]:.0f})")
    axes[1].plot(np.log10(scheds[kind].snr[t_grid].double().numpy()), a, "o-", ms=4, label=kind)
axes[0].set(xlabel="time step t", title="classifier accuracy on x_t, against t")
axes[1].set(xlabel=r"$\log_{10}\,\mathrm{SNR}(t)$", title="the same points against log SNR")
axes[1].invert_xaxis()  # noisier to the right, as on the left
for ax in axes:
    ax.axhline(0.1, color="gray", ls=":", lw=1, label="chance")
    ax.set(ylabel=f"accuracy ({len(labels)} test digits)", ylim=(0, 1.02))
    ax.legend()
plt.show()

# %% [markdown]
# Under the linear schedule the classifier loses the digit (accuracy below 50%) after about 14% of the
# chain, and is at chance by $t \approx 250$; under the cosine schedule it lasts about twice as long. With the
# linear schedule most of the 1000 steps are spent on images from which the digit can no longer be read.
# That is Nichol & Dhariwal's argument for the cosine schedule, measured.
#
# The right panel shows the two curves fall on top of each other when plotted against $\log\mathrm{SNR}$:
# with the same $x_0$ and noise, $x_t$ depends on the schedule only through $\bar\alpha_t$. A schedule is
# therefore nothing more than a choice of *which SNRs to visit, and how many steps to spend at each*.
#
# **A caveat: this classifier is a pessimist.** It was trained on clean digits, and noise throws it off long
# before the digit is unreadable to us: at $t = 150$ of the linear schedule (SNR $\approx 3.7$, between the
# $t = 100$ and $t = 200$ columns of section 3) the digits are still legible, yet the accuracy is far lower. Give it a
# fair chance with the simplest possible denoiser, undoing the shrink (divide by $\sqrt{\bar\alpha_t}$, section 2) and
# averaging each pixel with its 3×3 neighbourhood:

# %%
def fair(x_t, alpha_bar):
    """Undo the signal shrink and average out some noise with a 3x3 box blur; (N, 1, 28, 28) -> same."""
    return torch.nn.functional.avg_pool2d(x_t / alpha_bar**0.5, 3, stride=1, padding=1, count_include_pad=False)


lin = scheds["linear"]
for t in (150, 250):
    x_t = q_sample(lin, x0, t, noise=noise)
    raw, helped = accuracy(classifier, x_t, labels), accuracy(classifier, fair(x_t, lin.alpha_bar[t]), labels)
    print(f"linear, t = {t} (SNR {lin.snr[t]:.2f}): accuracy on x_t {raw:.2f}, after rescale + blur {helped:.2f}")

# %% [markdown]
# Much of the digit's identity is still in $x_t$; the raw curves above measure when *this classifier* can
# no longer read it, a lower bound on the information left. A network trained on noisy images, as the
# denoiser of chapter 04 is, can be expected to do better (chapter 04, section 5, shows its guess of the clean
# digit from a heavily noised one). The comparison between schedules is fair either way:
# the same classifier sees the same digits with the same noise.

# %%
assert acc["linear"][0] > 0.95 and acc["cosine"][0] > 0.95, "clean digits are easy"
assert acc["linear"][-1] < 0.2 and acc["cosine"][-1] < 0.2, "at t = 500 the classifier is at chance"
assert 100 < t_half["linear"] < 200 and 220 < t_half["cosine"] < 340, t_half
assert t_half["cosine"] > 1.5 * t_half["linear"], t_half  # information survives longer under the cosine

# %% [markdown]
# ## 5. What does the number of steps $T$ change?
#
# The package's linear schedule multiplies its betas by $1000/T$ (as Nichol & Dhariwal's code, improved-diffusion,
# does), and the cosine is defined on $t/T$, so as a function of the *fraction* of the chain both schedules look nearly
# the same for any $T$:

# %%
fig, axes = plt.subplots(1, 2, figsize=(12, 3.8), sharey=True)
# the curves lie on top of each other: the largest T is drawn first, widest and pale, the smaller ones thinner on
# top of it, with a marker per step for T = 10 and 50
T_styles = {1000: dict(lw=6, color="0.75"), 100: dict(ls="--", lw=2.2, color="C0"),
            50: dict(ls=":", marker=".", lw=1.5, color="C1"), 10: dict(marker="o", lw=1, color="k")}
for ax, kind in zip(axes, ("linear", "cosine")):
    for T, style in T_styles.items():
        sch = Schedule.from_config(ScheduleConfig(kind=kind, T=T))
        frac = (np.arange(T) + 1) / T  # code index t holds alpha_bar after t + 1 of the T steps
        ax.plot(frac, sch.alpha_bar.numpy(), ms=4, label=f"T = {T}", **style)
    ax.set(title=f"{kind}", xlabel="fraction of the steps applied, (t + 1) / T")
    ax.legend()
axes[0].set_ylabel(r"$\bar\alpha_t$")
fig.suptitle(r"$\bar\alpha$ against the fraction of the chain, for several T", y=1.02)
plt.show()

# %% [markdown]
# The curves for $T = 50$, $100$ and $1000$ lie on top of each other (the wide grey band is $T = 1000$), and for
# the cosine schedule so does $T = 10$. The exception is very small $T$ for the linear schedule: with $T = 10$
# the scaled betas would run from 0.01 to 2 and are capped at 0.999 from the sixth step on, so the curve is a
# coarse version of the others and the signal is gone ($\bar\alpha < 0.02$) after half of the chain. Without the
# rescaling, on the other hand, DDPM's betas over only 50 steps would destroy far too little:

# %%
# NBVAL_CHECK_OUTPUT
unscaled = torch.linspace(1e-4, 0.02, 50, dtype=torch.float64)  # DDPM's betas squeezed into T = 50 steps
print(f"alpha_bar at the last step, T = 50: unscaled betas {torch.prod(1 - unscaled):.3f}, "
      f"package's linear schedule {Schedule.from_config(ScheduleConfig('linear', T=50)).alpha_bar[-1]:.1e}")

# %% [markdown]
# With the unscaled betas 60% of the signal variance would be left at the end, and a sampler starting from
# pure noise would start from a distribution the model never saw.
#
# What $T$ does change is the **size of each step**: with $T = 10$ the cosine schedule's $\bar\alpha$ drops by
# about 0.1 per step on average, instead of 0.001. Chapter 01 showed why that hurts: the reverse of a big step is not
# Gaussian. DDPM therefore trains with $T = 1000$, and faster samplers skip steps only at sampling time with a
# model trained on fine steps ([chapter 05](05_sampling.ipynb)). Later work even takes $T \to \infty$, with $t$
# continuous (Kingma et al. 2021; Song et al. 2021); then the schedule is simply a function
# $\mathrm{SNR}(t)$ on $[0, 1]$.
#
# ## 6. Explore: schedules and $T$
#
# The figure shows $\bar\alpha$ and $\log_{10}\mathrm{SNR}$ against the fraction of the chain for the three
# schedules at the chosen $T$, and four digits noised to the same $t$ under each (same noise). Below is the
# figure at $T = 1000$, $t/T = 0.4$; with a kernel, the widget after it lets you change both.

# %%
fig = schedule_comparison_figure(one_of_each[:4], eps[:4], T=1000, t_frac=0.4)
plt.show()

# %%
# NBVAL_IGNORE_OUTPUT
schedule_widget(one_of_each[:4], eps[:4], T=1000, t_frac=0.4)

# %% [markdown]
# Things to try: at which $t/T$ does each schedule make the digits unreadable? Does that fraction change
# with $T$? Look at the $\bar\alpha$ printed above each row at $T = 10$: how much of the signal does a single
# step remove?
#
# ## Exercise 1: $\bar\alpha$ from the betas
#
# Compute $\bar\alpha_t = \prod_{i \le t}(1-\beta_i)$ for the cosine schedule with `torch.cumprod`, from its
# betas `betas = cosine_betas(1000)` (float64, shape (1000,), in the next cell); store the result as
# **`my_alpha_bar`**, shape (1000,). Then run the **check** cell below the collapsed solution: it compares
# `my_alpha_bar` with the package's `Schedule.alpha_bar` of the cosine schedule (`scheds["cosine"]`). Skip the
# collapsed cell unless you want to see a solution: running it replaces your `my_alpha_bar` with the solution's.

# %%
# Your turn: compute my_alpha_bar (1000,) in this cell, run it, then run the check cell below the collapsed
# solution. The input:
betas = cosine_betas(1000)  # float64, (1000,)
# my_alpha_bar = ...


# %% jupyter={"source_hidden": true} tags=["solution"]
# Solution (running this cell replaces your my_alpha_bar with this one)
my_alpha_bar = torch.cumprod(1 - betas, dim=0)

# %% tags=["check"]
# Check: your my_alpha_bar against the cosine schedule's Schedule.alpha_bar
ref = scheds["cosine"].alpha_bar  # float32, (1000,)
assert my_alpha_bar.shape == ref.shape, f"my_alpha_bar has shape {tuple(my_alpha_bar.shape)}, expected (1000,)"
torch.testing.assert_close(my_alpha_bar.float(), ref, msg=lambda m: f"my_alpha_bar differs from alpha_bar:\n{m}")
print("my alpha_bar matches Schedule.alpha_bar")

# %% [markdown]
# ## Exercise 2: where does the SNR cross 1?
#
# Define a function **`my_snr_crossing(betas)`** that takes a schedule's betas, shape (T,), and returns, as a
# Python `int`, the first time step $t$ (the code's 0-based index, as in the plots) at which $\mathrm{SNR}(t) =
# \bar\alpha_t/(1-\bar\alpha_t) < 1$, using only the betas. Then run the **check** cell below the collapsed solution:
# for each schedule of `schedules_for(1000)` (`scheds`) it calls `my_snr_crossing(sch.betas)` and compares the answer
# with the first step where the package's `Schedule.snr` is below 1. Why is it also the first step where
# $\bar\alpha_t < 1/2$? Skip the collapsed cell unless you want to see a solution: running it replaces your
# function with the solution's.

# %%
# Your turn: define my_snr_crossing here, run this cell, then run the check cell below the collapsed solution.
# def my_snr_crossing(betas: torch.Tensor) -> int:
#     """The first t at which SNR(t) = alpha_bar_t / (1 - alpha_bar_t) < 1, from the betas (T,) alone."""
#     ...


# %% jupyter={"source_hidden": true} tags=["solution"]
# Solution (running this cell replaces your my_snr_crossing with this one)
def my_snr_crossing(betas):
    ab = torch.cumprod(1 - betas.double(), dim=0)
    return int(torch.nonzero(ab / (1 - ab) < 1)[0])


# %% tags=["check"]
# Check: your my_snr_crossing against the package's Schedule.snr, one schedule at a time
for kind, sch in scheds.items():
    my_t, ref_t = int(my_snr_crossing(sch.betas)), int(torch.nonzero(sch.snr < 1)[0])
    assert my_t == ref_t, f"{kind}: my_snr_crossing gives t = {my_t}, but the SNR first falls below 1 at t = {ref_t}"
    assert ref_t == int(torch.nonzero(sch.alpha_bar < 0.5)[0]), kind  # SNR < 1  <=>  alpha_bar < 1/2
    print(f"{kind:8s} SNR crosses 1 at t = {my_t}")

# %% [markdown]
# ## Summary
#
# - A noise schedule fixes $\beta_t$, hence $\bar\alpha_t$ and $\mathrm{SNR}(t) = \bar\alpha_t/(1-\bar\alpha_t)$.
#   Linear (DDPM) adds noise fast and spends many steps on pure noise; cosine (Nichol & Dhariwal) lowers
#   $\bar\alpha$ evenly; sigmoid is a delayed linear: it keeps the image for the first quarter.
# - $x_t/\sqrt{\bar\alpha_t} = x_0 + \epsilon/\sqrt{\mathrm{SNR}(t)}$: noisy images depend on the schedule only
#   through the SNR, so classifier accuracy against $\log\mathrm{SNR}$ is the same curve for every schedule.
# - Measured with the evaluation classifier, digits stay recognisable about twice as long under the cosine
#   schedule as under the linear one. A classifier
#   trained on clean digits underestimates what is left: a trivial denoiser recovers much more.
# - $T$ sets the step size, not the shape: the package scales the linear betas by $1000/T$ so $\bar\alpha$ as
#   a function of $t/T$ barely depends on $T$. Small $T$ means big, hard-to-reverse steps.
# - The package default, and the shipped models, use the cosine schedule with $T = 1000$
#   (`ScheduleConfig()`).
#
# ## References
#
# - Ho, Jain & Abbeel 2020, "Denoising Diffusion Probabilistic Models" (NeurIPS): the linear schedule.
# - Nichol & Dhariwal 2021, "Improved Denoising Diffusion Probabilistic Models" (ICML): the cosine schedule,
#   eq. 17, and the observation that the linear schedule wastes its last steps.
# - Kingma, Salimans, Poole & Ho 2021, "Variational Diffusion Models" (NeurIPS): the schedule enters only
#   through the SNR; continuous time.
# - Song, Sohl-Dickstein, Kingma, Kumar, Ermon & Poole 2021, "Score-Based Generative Modeling through
#   Stochastic Differential Equations" (ICLR): the continuous-time view.
# - Xu, Yu, Song, Shi, Ermon & Tang 2022, "GeoDiff: A Geometric Diffusion Model for Molecular Conformation
#   Generation" (ICLR): a sigmoid beta schedule.
# - Chen 2023, "On the Importance of Noise Scheduling for Diffusion Models" (arXiv 2301.10972); Jabri, Fleet &
#   Chen 2023, "Scalable Adaptive Computation for Iterative Generation" (ICML): sigmoid schedules, and why the
#   best schedule depends on image size.
# - Lin, Liu, Li & Yang 2024, "Common Diffusion Noise Schedules and Sample Steps are Flawed" (WACV): zero
#   terminal SNR.
