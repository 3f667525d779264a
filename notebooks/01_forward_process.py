# %% [markdown]
# # 01 · The forward process: turning images into noise
#
# In [chapter 00](00_introduction.ipynb) we saw that a diffusion model generates an image by starting from pure
# Gaussian noise and removing the noise a little at a time. To *learn* to remove noise, a network needs
# examples: noisy images together with the clean images they came from. The **forward process** makes those
# examples. It is a fixed recipe, with nothing to learn, that destroys an image by adding Gaussian noise
# in many small steps until nothing of the image is left.
#
# This chapter takes the recipe apart. It is the foundation for everything after it: the training objective
# ([chapter 04](04_training.ipynb)) and the samplers ([chapter 05](05_sampling.ipynb)) are built from the
# formulas derived here.
#
# ## Learning goals
#
# - Write down one step of the forward process, $q(x_t \mid x_{t-1})$, and explain why it scales the image
#   down by $\sqrt{1-\beta_t}$ as well as adding noise.
# - Explain why diffusion uses *many small* steps: undoing a small step is easy (one Gaussian), undoing a
#   big jump is not.
# - Derive the closed form $q(x_t \mid x_0)$ by induction, and use it to jump to any $t$ in one go.
# - Check by simulation that the step-by-step chain and the closed form give the same distribution.
# - Use `diffusion_lite.schedules`: `Schedule`, `q_step`, `forward_chain`, `q_sample`.
#
# You need Python and a little PyTorch; no diffusion background is assumed.

# %%
import inspect
import os

import matplotlib.pyplot as plt
import numpy as np
import torch

from diffusion_lite.config import ScheduleConfig
from diffusion_lite.data import load_dataset
from diffusion_lite.schedules import Schedule, forward_chain, q_sample, q_step
from diffusion_lite.utils import get_device, seed_everything
from diffusion_lite.viz import show_grid
from diffusion_lite.widgets import (
    forward_process_figure,
    forward_process_widget,
    reverse_density_1d,
    reverse_jump_figure,
)

FULL = os.environ.get("DIFFUSION_LITE_FULL") == "1"  # no big runs in this chapter; kept for uniformity
torch.set_num_threads(1)  # small tensors: one thread is as fast, and safe on a shared CPU
g = seed_everything(0)  # one generator for every random draw below
device = get_device()  # everything here is cheap; the chapter runs on the CPU
plt.rcParams["image.interpolation"] = "nearest"  # draw pixels as crisp squares
test = load_dataset("mnist", "test", subset=1000, balanced=True)  # 100 test digits per class
one_of_each = torch.stack([test.images[test.labels == k][0] for k in range(10)])  # digits 0-9, (10, 1, 28, 28)
print(test)

# %% [markdown]
# ## 1. One step: a little less image, a little more noise
#
# Write $x_0$ for a clean image (28×28 pixels in $[-1, 1]$) and $x_1, x_2, \dots, x_T$ for increasingly noisy
# versions of it. Each step draws the next image from a Gaussian centred on a slightly shrunk copy of the
# previous one (Ho, Jain & Abbeel 2020, DDPM eq. 2):
#
# $$q(x_t \mid x_{t-1}) = \mathcal N\!\left(x_t;\ \sqrt{1-\beta_t}\,x_{t-1},\ \beta_t I\right)
# \qquad\Longleftrightarrow\qquad
# x_t = \sqrt{1-\beta_t}\,x_{t-1} + \sqrt{\beta_t}\,\epsilon_t,\quad \epsilon_t \sim \mathcal N(0, I).$$
#
# The numbers $\beta_1, \dots, \beta_T$ (small, between about $10^{-4}$ and $0.02$) are the **noise schedule**;
# [chapter 02](02_noise_schedules.ipynb) is about choosing them. Each pixel gets its own independent noise.
# The chain is **Markov**: $x_t$ depends only on $x_{t-1}$, not on the earlier history.
#
# **Why shrink by $\sqrt{1-\beta_t}$?** If we only added noise, the variance would grow by $\beta_t$ at every
# step (to about 11 after 1,000 steps of the usual schedule, whose $\beta_t$ add up to about 10), and the image
# would never fade: $x_0$ would still be in $x_T$ at full strength, under the noise, so where the chain ends
# would depend on the image we started from. With the shrink, if $x_{t-1}$ has variance 1
# then $\operatorname{Var}(x_t) = (1-\beta_t)\cdot 1 + \beta_t = 1$: the total variance is *preserved*, and the
# chain heads towards a fixed, known distribution, the standard Gaussian $\mathcal N(0, I)$. That is where
# generation will start.
#
# Here is the package's implementation of one step:

# %%
# NBVAL_CHECK_OUTPUT
print(inspect.getsource(q_step))

# %% [markdown]
# **A note on numbering.** The paper counts steps $t = 1, \dots, T$. Python arrays start at 0, so the package
# stores step $t$'s constants at index $t-1$: `schedule.betas[0]` is $\beta_1$, and `q_step(schedule, x, 0)`
# produces the paper's $x_1$. Plots in this course use the code's index, from 0 to $T-1$; nothing else changes.
#
# We use DDPM's original **linear** schedule with $T = 1000$ steps here (the package's default is the cosine
# schedule, which [chapter 02](02_noise_schedules.ipynb) motivates).

# %%
# NBVAL_CHECK_OUTPUT
schedule = Schedule.from_config(ScheduleConfig(kind="linear", T=1000))
print(f"T = {schedule.T}")
print(f"beta at t = 0, 500, 999: {schedule.betas[0]:.5f}, {schedule.betas[500]:.5f}, {schedule.betas[999]:.5f}")

# %% [markdown]
# Let's run the chain on a few digits, one step at a time, with `forward_chain`. It applies `q_step` for
# $t = 0, 1, \dots$ and keeps the states we ask for.

# %%
x0 = one_of_each[:6]  # digits 0-5, (6, 1, 28, 28) in [-1, 1]
keep = [0, 50, 100, 200, 300, 400, 600, 999]
chain = forward_chain(schedule, x0, generator=g, keep=keep)  # {t: x_t (6, 1, 28, 28)}
strip = torch.stack([x0] + [chain[t] for t in keep], dim=1)  # (6 digits, 9 columns, 1, 28, 28)
show_grid(strip.flatten(0, 1), nrow=len(keep) + 1, figsize=(9, 6.5),
          title="Forward chain, left to right: x_0, then t = " + ", ".join(map(str, keep)))
plt.show()

# %% [markdown]
# The digit fades into static. Around $t = 300$ it is hard to read; by $t = 600$ we cannot see it at all, and
# at $t = 999$ the image is (almost exactly) a sample of $\mathcal N(0, I)$. (The grid clips pixels to
# $[-1, 1]$ for display; noisy images have values outside that range.)
#
# ## 2. Why many small steps?
#
# Generating means running this film backwards: start from noise at $t = T$ and step towards $t = 0$. Why not
# undo everything in a single step? Because of what the reverse of a step looks like.
#
# When a step adds only a little noise ($\beta_t$ small), the image before the step is pinned down closely by
# the image after it: the reverse step $q(x_{t-1} \mid x_t)$ is itself very nearly a Gaussian, with a small
# variance. That was already known for diffusion processes in physics (Feller 1949) and is what
# Sohl-Dickstein et al. (2015) built on: a network only has to predict the *mean* of a narrow Gaussian at each
# step, which is an easy regression problem. Undoing a *big* jump is different: from pure noise, many very
# different clean images are plausible, and the reverse distribution has many separate modes, which no single
# Gaussian describes.
#
# We can see this exactly in a toy model: a single "pixel" whose clean value is either $-1$ (black) or
# $+1$ (white), with equal probability. By Bayes' rule the reverse density is
# $q(x_s \mid x_t) \propto q(x_t \mid x_s)\, q(x_s)$ for an earlier step $s < t$, and both factors are
# Gaussians (mixtures) we can write down with the closed form derived in section 3. A preview of that section:
# after $t$ steps, $x_t = \sqrt{\bar\alpha_t}\, x_0 + \sqrt{1-\bar\alpha_t}\, \epsilon$, where
# $\bar\alpha_t$ (alpha-bar, a number falling from almost 1 at $t = 0$ to almost 0 at $t = T$) is the fraction
# of the signal's variance that is left; the same argument started at $s$ instead of 0 gives
# $q(x_t \mid x_s) = \mathcal N(\sqrt{\bar\alpha_t/\bar\alpha_s}\, x_s,\ 1 - \bar\alpha_t/\bar\alpha_s)$, and
# $q(x_s)$ is the same formula applied to the two clean values. Below, $\bar\alpha_s$ says how far back we jump:
# $\bar\alpha_s = 0.25$ is a point where a quarter of the signal variance is left. `reverse_density_1d`
# evaluates the reverse density on a grid:

# %%
# NBVAL_CHECK_OUTPUT
print(inspect.getsource(reverse_density_1d))

# %% [markdown]
# Start from $x_t = 0.5$ at $t = 999$ (pure noise) and go back by different amounts:

# %%
fig = reverse_jump_figure(schedule, x_t=0.5)
plt.show()
fig = reverse_jump_figure(schedule, x_t=0.5, t=200)  # from a point where much of the signal is still there
plt.show()

# %% [markdown]
# One step back (left), the exact reverse density and a Gaussian with the same mean and variance are
# indistinguishable. (At $t = 999$ that is partly because $x_{998}$ is pure noise too. The second figure
# starts at $t = 200$, where two thirds of the signal variance is left: one step back is still a single
# Gaussian there, while the jump back to the data is two spikes.) Going back to $\bar\alpha_s = 0.25$ (where a quarter
# of the signal variance has returned) is still roughly Gaussian, but going back to $\bar\alpha_s = 0.75$ the density
# has split into two bumps, and all the way back to the data it is two spikes at $-1$ and $+1$. A Gaussian with the same
# mean and variance puts its peak at $0$, a value the data never takes.
#
# This is exactly what happens with images. A network that predicts the clean image from pure noise in one
# step, trained with a squared error, learns the *mean* of all clean images that could have produced the
# noise, which is the average digit: a grey blur.

# %%
show_grid(test.images.mean(0, keepdim=True), figsize=(2.2, 2.2), title="mean of 1000 digits")
plt.show()

# %% [markdown]
# Many small steps avoid that: each step only has to resolve a little uncertainty, and the sequence of easy
# decisions (is this blob going to be a loop or a stroke?) adds up to a sharp sample.
#
# ## 3. Jumping to any $t$ at once: the closed form $q(x_t \mid x_0)$
#
# To train the network (chapter 04) we need noisy images at random time steps, millions of times. Running the
# chain for hundreds of steps each time would be wasteful. Fortunately we can jump straight from $x_0$ to
# $x_t$. Define
#
# $$\alpha_t = 1 - \beta_t, \qquad \bar\alpha_t = \prod_{i=1}^{t} \alpha_i .$$
#
# **Claim** (DDPM eq. 4):
#
# $$q(x_t \mid x_0) = \mathcal N\!\left(x_t;\ \sqrt{\bar\alpha_t}\,x_0,\ (1-\bar\alpha_t) I\right),$$
#
# that is $x_t = \sqrt{\bar\alpha_t}\,x_0 + \sqrt{1-\bar\alpha_t}\,\epsilon$ with
# $\epsilon \sim \mathcal N(0, I)$.
#
# **Proof by induction on $t$.** For $t = 1$ this is the one-step formula, since $\bar\alpha_1 = \alpha_1$.
# Suppose it holds for $t-1$: $x_{t-1} = \sqrt{\bar\alpha_{t-1}}\,x_0 + \sqrt{1-\bar\alpha_{t-1}}\,\bar\epsilon$.
# Substitute into one step:
#
# $$x_t = \sqrt{\alpha_t}\,x_{t-1} + \sqrt{1-\alpha_t}\,\epsilon_t
#       = \sqrt{\alpha_t\bar\alpha_{t-1}}\,x_0
#       + \underbrace{\sqrt{\alpha_t(1-\bar\alpha_{t-1})}\,\bar\epsilon
#                     + \sqrt{1-\alpha_t}\,\epsilon_t}_{\text{two independent Gaussians}} .$$
#
# The first term is $\sqrt{\bar\alpha_t}\,x_0$. The noise terms are independent, zero-mean Gaussians, and **a
# sum of independent Gaussians is a Gaussian whose variance is the sum of the variances**:
#
# $$\alpha_t(1-\bar\alpha_{t-1}) + (1-\alpha_t) = 1 - \alpha_t\bar\alpha_{t-1} = 1 - \bar\alpha_t .$$
#
# So $x_t = \sqrt{\bar\alpha_t}\,x_0 + \sqrt{1-\bar\alpha_t}\,\epsilon$ with a single
# $\epsilon \sim \mathcal N(0, I)$, which is the claim for $t$. $\blacksquare$
#
# Read it as a mixing dial: $x_t$ is a blend of the image and fresh noise, with weights
# $\sqrt{\bar\alpha_t}$ ("how much signal is left") and $\sqrt{1-\bar\alpha_t}$ ("how much noise"), whose
# squares add to one. The package precomputes these (in float64, stored as float32) in `Schedule`:

# %%
# NBVAL_CHECK_OUTPUT
print(inspect.getsource(q_sample))

# %%
# NBVAL_CHECK_OUTPUT
for t in [0, 99, 249, 499, 999]:
    ab = schedule.alpha_bar[t].item()
    print(f"t = {t:3d}   alpha_bar = {ab:.3g}   signal sqrt(alpha_bar) = {ab ** 0.5:.4f}   "
          f"noise sqrt(1 - alpha_bar) = {(1 - ab) ** 0.5:.4f}")

# %% [markdown]
# At the last step $\bar\alpha$ is $4\times10^{-5}$: the signal weight is under 1%, so $x_{T}$ is, for all
# practical purposes, pure noise and independent of $x_0$, which is what lets generation start from
# $\mathcal N(0, I)$ without knowing anything about the image.
#
# ## 4. Checking the closed form by simulation
#
# The derivation says that the chain (1,000 little Gaussian steps, up to code index 999) and the closed form
# (one Gaussian) produce the **same distribution** of $x_t$. Not the same images: they use different random
# numbers. Let's test that claim numerically, in two ways.
#
# **Per pixel, for one fixed digit.** Take 300 copies of the same digit and push each through the chain
# with its own noise. For every pixel, the 300 values of $x_t$ should have mean $\sqrt{\bar\alpha_t}\,x_0$
# and variance $1-\bar\alpha_t$. We compare both the chain and `q_sample` against those formulas.

# %%
n_copies = 300
ts = [49, 249, 499, 999]
digit = one_of_each[7:8]  # a "7", (1, 1, 28, 28)
copies = digit.expand(n_copies, -1, -1, -1)  # (300, 1, 28, 28), same digit
by_chain = forward_chain(schedule, copies, generator=g, keep=ts)  # {t: (300, 1, 28, 28)}
by_formula = {t: q_sample(schedule, copies, t, generator=g) for t in ts}

# For each pixel, the error of the empirical mean in units of its standard error sqrt((1 - alpha_bar) / n).
# If the theory is right these 784 numbers are draws from N(0, 1): their mean is ~0 and their std ~1.
print("   t  1-alpha_bar |  chain: z mean  z std  var/theory | q_sample: z mean  z std  var/theory")
stats = {}
for t in ts:
    ab = schedule.alpha_bar[t].item()
    mean_theory, var_theory = ab**0.5 * digit[0], 1 - ab  # (1, 28, 28) and a number
    row = [t, var_theory]
    for xs in (by_chain[t], by_formula[t]):
        z = (xs.mean(0) - mean_theory) / (var_theory / n_copies) ** 0.5  # (1, 28, 28)
        row += [z.mean().item(), z.std().item(), xs.var(0).mean().item() / var_theory]
    stats[t] = row
    print("{:4d}  {:11.4f} | {:14.3f} {:6.3f} {:11.3f} | {:15.3f} {:6.3f} {:11.3f}".format(*row))

# %% [markdown]
# Both methods pass: the standardised errors of the per-pixel means have mean near 0 and standard deviation
# near 1 (pure sampling noise, no bias), and the per-pixel variances match $1-\bar\alpha_t$ to within about
# 1%. (A *standard error* is the standard deviation of an estimate over repeated experiments: the mean of $n$
# independent draws with standard deviation $\sigma$ has standard error $\sigma/\sqrt n$, and a sample
# variance from $n$ draws has relative standard error about $\sqrt{2/(n-1)}$. With 16 such statistics, one
# landing 3 standard errors out, as the chain's z std at $t = 249$ does, is ordinary luck: other seeds give
# 0.97 to 1.07.) The same check as assertions, with tolerances of about four standard errors (the mean of 784
# standard normals has standard error $1/\sqrt{784} \approx 0.036$, their std about 0.025, and the mean of 784
# variance ratios, each from 300 copies, about $\sqrt{2/299}/\sqrt{784} \approx 0.003$):

# %%
for t, (_, _, *results) in stats.items():
    for z_mean, z_std, var_ratio in (results[:3], results[3:]):
        assert abs(z_mean) < 0.15 and abs(z_std - 1) < 0.1 and abs(var_ratio - 1) < 0.012, (t, results)
print("chain and closed form agree with q(x_t | x_0) at t =", ts)

# %% [markdown]
# **Over many digits.** Now push 300 *different* digits through the chain and compare the histogram
# of all their pixel values with that of `q_sample`. At $t=0$ the pixels are mostly black ($-1$), some white
# ($+1$) and a few grey; each pixel value $x_0$ becomes a Gaussian around $\sqrt{\bar\alpha_t}\,x_0$, so the
# histogram is a blurred, shrunk copy of the data's, which widens and merges into a single $\mathcal N(0,1)$
# as $t$ grows.

# %%
x_many = test.images[::3][:300]  # 300 different digits
hist_ts = [0, 99, 249, 999]
chain_many = forward_chain(schedule, x_many, generator=g, keep=hist_ts)
bins = np.linspace(-4, 4, 101)
fig, axes = plt.subplots(1, len(hist_ts), figsize=(12, 3.2), sharey=True)
for ax, t in zip(axes, hist_ts):
    ax.hist(chain_many[t].flatten().numpy(), bins=bins, density=True, histtype="step", lw=1.5,
            label="chain, step by step")
    ax.hist(q_sample(schedule, x_many, t, generator=g).flatten().numpy(), bins=bins, density=True,
            histtype="step", lw=1.5, ls="--", label="closed form")
    ax.plot(bins, np.exp(-bins**2 / 2) / np.sqrt(2 * np.pi), color="gray", lw=0.8, label="N(0, 1)")
    ax.set(title=f"t = {t}, alpha_bar = {schedule.alpha_bar[t]:.3f}", xlabel="pixel value", yscale="log",
           ylim=(1e-3, 30))
axes[0].set_ylabel("density (log scale)")
axes[-1].legend(fontsize=9, loc="upper center")  # N(0, 1)'s tails leave the top of this panel free
fig.suptitle("Pixel values of 300 digits: step-by-step chain vs closed form", y=1.03)
plt.show()

# %% [markdown]
# The two histograms lie on top of each other at every $t$ (the log scale shows the tails too). At $t = 0$ the
# two spikes at $\pm1$ have width $\sqrt{\beta_1} = 0.01$; by $t = 999$ both methods give the standard normal.
# From now on we use the closed form whenever we need $x_t$.
#
# ## 5. Exploring $t$
#
# Below, the same digits are noised to chosen time steps with the closed form, using **one fixed noise draw**
# $\epsilon$, so only $t$ changes between columns. This is how training will see the data: one
# $(x_0, \epsilon, t)$ triple at a time.

# %%
eps = torch.randn(x0.shape, generator=g)  # one fixed noise image per digit
cols = [0, 50, 100, 200, 300, 400, 600, 999]
grid = torch.stack([q_sample(schedule, x0, t, noise=eps) for t in cols], dim=1)  # (6, 8, 1, 28, 28)
show_grid(grid.flatten(0, 1), nrow=len(cols), figsize=(8, 6),
          title="q_sample with fixed noise; columns t = " + ", ".join(map(str, cols)))
plt.show()

# %% [markdown]
# With a kernel you can move the slider below; the figure shows $x_t$ for eight digits, the two mixing
# weights $\sqrt{\bar\alpha_t}$ and $\sqrt{1-\bar\alpha_t}$ with a marker at $t$, and the histogram of
# $x_t$'s pixels against $\mathcal N(0,1)$. (The code is `diffusion_lite.widgets.forward_process_figure`.)
# Here is the figure at $t = 250$, just before the signal and noise weights cross (at $t \approx 258$):

# %%
x_w, eps_w = one_of_each[:8], torch.randn(8, 1, 28, 28, generator=g)  # digits 0-7, fixed noise
fig = forward_process_figure(schedule, x_w, 250, eps_w)
plt.show()

# %%
# NBVAL_IGNORE_OUTPUT
forward_process_widget(schedule, x_w, eps_w, t=250)

# %% [markdown]
# Things to try: find the $t$ where you can no longer read the digits (and compare it with where the
# histogram stops having two humps); look at how quickly the signal weight falls in the first 300 steps
# compared with the last 300. The linear schedule spends its last few hundred steps on images that are
# already pure noise, which is one motivation for the cosine schedule of
# [chapter 02](02_noise_schedules.ipynb).
#
# ## Exercise: write `q_sample` yourself
#
# Define a function `my_q_sample(schedule, x0, t, noise)` that implements the closed form
# $x_t = \sqrt{\bar\alpha_t}\,x_0 + \sqrt{1-\bar\alpha_t}\,\epsilon$ for a batch of images `x0` (B, 1, 28, 28)
# with **one time step per image**, `t` of shape (B,), and the noise $\epsilon$ given as `noise` (B, 1, 28, 28),
# using only `schedule.alpha_bar`; it returns $x_t$, shape (B, 1, 28, 28). Hint: indexing `alpha_bar[t]` gives
# shape (B,); reshape it to (B, 1, 1, 1) so it broadcasts over the pixels. Write it in the next cell and run it,
# then run the **check** cell below the collapsed solution: it compares your `my_q_sample` with the package's
# `q_sample` on the batch `x_batch`, `t_batch`, `noise` of the next cell (16 test digits, a different $t$ for
# each). Skip the collapsed cell unless you want to see a solution: running it replaces your function with the
# solution's.

# %%
# Your turn: define my_q_sample here, run this cell, then run the check cell below the collapsed solution.
# The batch the check uses:
t_batch = torch.randint(0, schedule.T, (16,), generator=g)  # a different t for each image
x_batch, noise = test.images[:16], torch.randn(16, 1, 28, 28, generator=g)
# def my_q_sample(schedule, x0: torch.Tensor, t: torch.Tensor, noise: torch.Tensor) -> torch.Tensor:
#     """x0 (B, 1, 28, 28), t (B,), noise (B, 1, 28, 28) -> x_t (B, 1, 28, 28)."""
#     ...


# %% jupyter={"source_hidden": true} tags=["solution"]
# Solution (running this cell replaces your my_q_sample with this one)
def my_q_sample(schedule, x0, t, noise):
    ab = schedule.alpha_bar[t].reshape(-1, 1, 1, 1)  # (B,) -> (B, 1, 1, 1)
    return ab.sqrt() * x0 + (1 - ab).sqrt() * noise


# %% tags=["check"]
# Check: your my_q_sample against the package's q_sample, on the batch above (one t per image)
assert x_batch.shape == noise.shape == (16, 1, 28, 28) and t_batch.shape == (16,), "re-run the Your turn cell's batch"
assert torch.equal(x_batch, test.images[:16]) and len(set(t_batch.tolist())) > 8, "the batch above, as handed out"
mine, ref = my_q_sample(schedule, x_batch, t_batch, noise), q_sample(schedule, x_batch, t_batch, noise)
assert mine.shape == ref.shape, f"my_q_sample returned shape {tuple(mine.shape)}, expected {tuple(ref.shape)}"
torch.testing.assert_close(mine, ref, msg=lambda m: f"my_q_sample differs from q_sample:\n{m}")
print("my_q_sample matches diffusion_lite.schedules.q_sample")

# %% [markdown]
# *Going further:* (1) Check that at $t = T-1$ your $x_t$ barely depends on $x_0$: compute the correlation
# between `x_batch` and `my_q_sample(...)` at $t=999$ and at $t=0$. (2) Write the chain yourself with a
# Python loop over `q_step` and time it against `q_sample` for $t = 999$.
#
# ## Summary
#
# - The forward process adds Gaussian noise in $T$ small steps:
#   $x_t = \sqrt{1-\beta_t}\,x_{t-1} + \sqrt{\beta_t}\,\epsilon_t$. The shrink factor makes the variance tend
#   to one (and keeps it there once reached), so the chain ends at the standard Gaussian, where generation
#   will start.
# - Small steps matter because the reverse of a small step is (nearly) a single Gaussian, easy to learn; the
#   reverse of a big jump is multi-modal, and a squared-error guess of it is a blurry average.
# - Sums of independent Gaussians are Gaussian, so the chain has a closed form:
#   $q(x_t \mid x_0) = \mathcal N(\sqrt{\bar\alpha_t}\,x_0, (1-\bar\alpha_t)I)$ with
#   $\bar\alpha_t = \prod_{i\le t}(1-\beta_i)$. `q_sample` implements it; simulation confirms that it matches
#   the step-by-step chain in distribution (means, variances, histograms).
# - $\sqrt{\bar\alpha_t}$ and $\sqrt{1-\bar\alpha_t}$ are the signal and noise weights; how they move with $t$
#   is set by the schedule $\beta_t$, the subject of [chapter 02](02_noise_schedules.ipynb).
#
# ## References
#
# - Ho, Jain & Abbeel 2020, "Denoising Diffusion Probabilistic Models" (NeurIPS): eqs. 2 and 4, the linear
#   schedule.
# - Sohl-Dickstein, Weiss, Maheswaranathan & Ganguli 2015, "Deep Unsupervised Learning using Nonequilibrium
#   Thermodynamics" (ICML): the forward/reverse diffusion framework and why small steps make the reverse
#   Gaussian.
# - Feller 1949, "On the Theory of Stochastic Processes, with Particular Reference to Applications"
#   (Berkeley Symposium): the reverse of a diffusion with small steps has the same functional form.
# - Weng 2021, "What are Diffusion Models?" (blog post, lilianweng.github.io): a readable derivation of the
#   same formulas.
