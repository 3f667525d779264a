# %% [markdown]
# # 04 · Training: teaching the U-Net to predict the noise
#
# Chapter 03 built a U-Net $\epsilon_\theta(x_t, t)$ with the right input and output shapes; untrained, it
# predicts $\hat\epsilon = 0$ everywhere. This chapter trains it. The recipe of Ho et al. (2020, Algorithm 1)
# fits in four lines:
#
# > **repeat**
# > &nbsp;&nbsp; take a real image $x_0$, a random step $t \sim \mathrm{Uniform}\{0, \dots, T-1\}$ and noise
# > $\epsilon \sim \mathcal N(0, I)$ (the paper's steps $1, \dots, T$ as code indices, chapter 01)
# > &nbsp;&nbsp; make the noisy image $x_t = \sqrt{\bar\alpha_t}\,x_0 + \sqrt{1-\bar\alpha_t}\,\epsilon$ (chapter 01)
# > &nbsp;&nbsp; take a gradient step on $\lVert \epsilon - \epsilon_\theta(x_t, t) \rVert^2$
# > **until** the samples look good
#
# That is all: a regression problem with an unlimited supply of (input, target) pairs that we make ourselves.
# The surprising part is *why* predicting noise is the right thing to learn, and we start there.
#
# ## Learning goals
#
# * State DDPM's training objective $L_\text{simple}$ (eq. 14) and explain two ways why it works: as a
#   re-weighted evidence lower bound (ELBO), and as denoising score matching (the network learns the average
#   noise given $x_t$).
# * Run the training loop, read its loss curve, and see which time steps are hard.
# * Look at a trained network's predictions image by image: the noise it predicts at a step $t$, its error, and
#   the clean image that prediction implies.
# * Explain why diffusion models are sampled with an exponential moving average (EMA) of the weights.
# * Load the shipped pretrained model, read its model card, and look at its samples.
#
# You need chapters 01 (the closed form $q(x_t \mid x_0)$) and 03 (the U-Net); chapter 02 (the cosine
# schedule) helps but is not required.

# %%
import inspect
import os
import time

import matplotlib.pyplot as plt
import torch

from diffusion_lite.checkpoints import load_pretrained
from diffusion_lite.config import ScheduleConfig, TrainConfig, UNetConfig
from diffusion_lite.data import load_dataset
from diffusion_lite.model_widgets import noise_prediction_figure, noise_prediction_widget, predict_noise
from diffusion_lite.sampling import eps_model_fn, sample_ddim
from diffusion_lite.schedules import Schedule, q_sample
from diffusion_lite.train import EMA, diffusion_loss, fit, loss_per_timestep
from diffusion_lite.unet import UNet
from diffusion_lite.utils import get_device, seed_everything
from diffusion_lite.viz import plot_loss_curve, show_grid

FULL = os.environ.get("DIFFUSION_LITE_FULL") == "1"
torch.set_num_threads(1)  # small models: one thread is nearly as fast, and robust on a busy machine
g = seed_everything(0)
device = get_device()

schedule = Schedule.from_config(ScheduleConfig("cosine", T=1000)).to(device)
train_set = load_dataset("mnist", "train", subset=None if FULL else 2000, balanced=not FULL)
test_set = load_dataset("mnist", "test", subset=1000, balanced=True)
x_test = test_set.images[torch.randperm(1000, generator=g)[:256]].to(device)  # a fixed held-out batch
print(f"device {device}; training images {tuple(train_set.images.shape)}; held-out batch {tuple(x_test.shape)}")

# %% [markdown]
# ## 1. What the network is asked to do
#
# Here is one training batch the way the loss function builds it: real digits $x_0$, a random step $t$ for
# each, fresh noise $\epsilon$, and the noisy input $x_t$. The network sees the third row and the number $t$,
# and must output the second row.

# %%
x0 = train_set.images[:8].to(device)
t = torch.tensor([0, 50, 150, 300, 450, 600, 800, 999], device=device)
eps = torch.randn(x0.shape, generator=g).to(device)
x_t = q_sample(schedule, x0, t, noise=eps)
fig, axes = plt.subplots(3, 1, figsize=(9, 4.3))
show_grid(x0, nrow=8, ax=axes[0], title="clean digits $x_0$")
show_grid(eps.clamp(-3, 3) / 3, nrow=8, ax=axes[1], title=r"the target: noise $\epsilon$ (shown on [-3, 3])")
show_grid(x_t, nrow=8, ax=axes[2], title="the input: $x_t$ at t = " + ", ".join(str(v) for v in t.tolist()))
fig.tight_layout()
plt.show()

# %% [markdown]
# At $t = 999$ the input *is* the noise, so the target is easy to read off; at $t = 0$ the noise is so faint
# that it is hard to separate from the digit. Keep that in mind for section 5.
#
# ## 2. Why predicting the noise is the right objective
#
# ### 2a. A bound on the likelihood, re-weighted
#
# A generative model should give the data high probability $p_\theta(x_0)$. For a diffusion model with reverse
# steps $p_\theta(x_{t-1} \mid x_t)$, that probability is an intractable integral over all paths
# $x_1, \dots, x_T$, but it has a lower bound (the ELBO, as in a variational autoencoder; Sohl-Dickstein et
# al. 2015). DDPM writes the negative bound as a sum of one term per step (eq. 5):
# $$
# L_\text{VLB} = \mathbb E_q\Big[
#   \underbrace{D_\text{KL}\big(q(x_T \mid x_0)\,\Vert\,p(x_T)\big)}_{\text{no parameters}}
#   + \sum_{t > 1} \underbrace{D_\text{KL}\big(q(x_{t-1} \mid x_t, x_0)\,\Vert\,
#     p_\theta(x_{t-1} \mid x_t)\big)}_{L_{t-1}}
#   - \log p_\theta(x_0 \mid x_1)\Big].
# $$
# Here $D_\text{KL}(q \Vert p) = \mathbb E_q[\log q - \log p]$ is the Kullback-Leibler divergence, a measure of
# how different two distributions are (zero when they are equal, positive otherwise).
# Each $L_{t-1}$ compares the model's reverse step with the *true* reverse step for this particular $x_0$,
# the posterior $q(x_{t-1} \mid x_t, x_0) = \mathcal N(\tilde\mu_t(x_t, x_0), \tilde\beta_t I)$, which is a
# Gaussian with a closed form (eqs. 6-7; chapter 05 uses it for sampling):
# $$
# \tilde\mu_t(x_t, x_0) = \frac{\sqrt{\bar\alpha_{t-1}}\,\beta_t}{1-\bar\alpha_t}\,x_0
#   + \frac{\sqrt{\alpha_t}\,(1-\bar\alpha_{t-1})}{1-\bar\alpha_t}\,x_t,
# \qquad
# \tilde\beta_t = \frac{1-\bar\alpha_{t-1}}{1-\bar\alpha_t}\,\beta_t .
# $$
# DDPM makes each reverse step of the model a Gaussian too, with a learned mean and a fixed variance:
# $p_\theta(x_{t-1} \mid x_t) = \mathcal N(\mu_\theta(x_t, t), \sigma_t^2 I)$ with $\sigma_t^2 = \beta_t$ or
# $\tilde\beta_t$ (chapter 05 samples with it). The KL of two Gaussians with fixed variances is then just a
# squared distance of their means (eq. 8):
# $$L_{t-1} = \frac{1}{2\sigma_t^2}\,\big\lVert \tilde\mu_t(x_t, x_0) - \mu_\theta(x_t, t) \big\rVert^2 + C.$$
# Now put $x_0 = (x_t - \sqrt{1-\bar\alpha_t}\,\epsilon)/\sqrt{\bar\alpha_t}$ into $\tilde\mu_t$ to write the true
# mean in terms of the noise. With $\bar\alpha_t = \alpha_t\bar\alpha_{t-1}$, the coefficient of $x_t$ becomes
# $\frac{\beta_t + \alpha_t - \bar\alpha_t}{\sqrt{\alpha_t}\,(1-\bar\alpha_t)} = \frac{1}{\sqrt{\alpha_t}}$ (as
# $\beta_t = 1 - \alpha_t$), and that of $\epsilon$ is $-\frac{\beta_t}{\sqrt{\alpha_t}\sqrt{1-\bar\alpha_t}}$, so
# $\tilde\mu_t = \frac{1}{\sqrt{\alpha_t}}\big(x_t - \frac{\beta_t}{\sqrt{1-\bar\alpha_t}}\epsilon\big)$.
# Give the model the same form with a noise *prediction* in place of $\epsilon$ (eq. 11),
# $\mu_\theta(x_t, t) = \frac{1}{\sqrt{\alpha_t}}\big(x_t - \frac{\beta_t}{\sqrt{1-\bar\alpha_t}}\,
# \epsilon_\theta(x_t, t)\big)$. In the difference of the two means the $x_t$ terms cancel and only the noise
# terms remain (eq. 12):
# $$
# L_{t-1} = \frac{\beta_t^2}{2\sigma_t^2\,\alpha_t\,(1-\bar\alpha_t)}\;
#   \mathbb E_{x_0, \epsilon}\big\lVert \epsilon - \epsilon_\theta(x_t, t) \big\rVert^2 + C .
# $$
# So the likelihood bound *is* a weighted sum of noise-prediction errors. Ho et al. found that dropping the
# weight gives better samples, and trained on (eq. 14)
# $$
# \boxed{L_\text{simple}(\theta) = \mathbb E_{t, x_0, \epsilon}\,\big\lVert \epsilon
#   - \epsilon_\theta\big(\sqrt{\bar\alpha_t}\,x_0 + \sqrt{1-\bar\alpha_t}\,\epsilon,\; t\big)\big\rVert^2}
# $$
# The dropped weight is large at small $t$, so $L_\text{simple}$ spends less effort on the almost-clean steps
# (whose errors are invisible in a sample) and more on the noisy ones, where the digit's shape is decided.
# (That is for DDPM's linear schedule. With the cosine schedule this chapter trains with, the weight also
# rises over the last few steps as $\beta_t \to 1$ and $\alpha_t \to 0$, and explodes at $t = 999$, where
# $\beta_t$ is clipped at 0.999; $L_\text{simple}$ down-weights those too.)
#
# ### 2b. Regression to the average noise, and the score
#
# A second view explains what the trained network actually outputs. Many different pairs $(x_0, \epsilon)$
# produce the same $x_t$, so no network can recover $\epsilon$ exactly. The function that minimises a squared
# error is the **conditional mean**:
# $$\epsilon^*(x_t, t) = \mathbb E[\epsilon \mid x_t], \qquad
#   \hat x_0 = \frac{x_t - \sqrt{1-\bar\alpha_t}\,\epsilon^*(x_t, t)}{\sqrt{\bar\alpha_t}} = \mathbb E[x_0 \mid x_t].$$
# At large $t$ the predicted clean image is therefore the *average* of all digits compatible with $x_t$, a
# blur, which sharpens as $t$ falls (you will watch this in chapter 05). And by Tweedie's formula the average
# noise is, up to a factor, the **score** (the direction in which the density of noisy images grows fastest):
# $$\nabla_{x_t} \log q_t(x_t) = -\frac{\mathbb E[\epsilon \mid x_t]}{\sqrt{1-\bar\alpha_t}} .$$
# Training on $L_\text{simple}$ is thus *denoising score matching* (Vincent 2011) at all noise levels at once,
# which is how Song & Ermon (2019) arrived at the same models from a different direction. The loss can never
# reach 0: what remains is the noise that is genuinely unpredictable from $x_t$.
#
# ## 3. The loss in code
#
# `diffusion_lite.train.diffusion_loss` is the boxed formula. It draws $t$ and $\epsilon$ from the generator
# you pass (so the loss of a batch is reproducible), noises the batch with `q_sample`, and averages the squared
# error. It also supports the other prediction targets ("x0", and "v" $= \sqrt{\bar\alpha_t}\,\epsilon -
# \sqrt{1-\bar\alpha_t}\,x_0$ of Salimans & Ho 2022) and a re-weighting ("min_snr", which the shipped
# text-to-image model was trained with), selectable in `TrainConfig` and on the command line.

# %%
# NBVAL_CHECK_OUTPUT
print(inspect.getsource(diffusion_loss))

# %% [markdown]
# A fresh U-Net predicts zeros (its last layer starts at zero, chapter 03), so its loss is
# $\mathbb E[\epsilon^2] = 1$: the first sanity check of any training run.

# %%
tiny_cfg = (UNetConfig() if FULL
            else UNetConfig(base_channels=8, channel_mults=(1, 2), attn_resolutions=(), groups=4))
model_name = "default U-Net" if FULL else "tiny U-Net"  # for the figures' labels
torch.manual_seed(0)
model = UNet(tiny_cfg).to(device)
loss0 = diffusion_loss(model, schedule, x_test, generator=torch.Generator().manual_seed(1)).item()
print(f"U-Net with {model.num_parameters():,} parameters; loss before training: {loss0:.3f}")
assert abs(loss0 - 1.0) < 0.1

# %% [markdown]
# ## 4. The training loop, live
#
# `train.fit` wraps the loss in a standard PyTorch loop. Its core, for one step: draw a batch, set the
# learning rate (linear warm-up, then cosine decay), compute the loss, back-propagate, clip the gradient norm,
# take an AdamW step (Loshchilov & Hutter 2019), and update the EMA copy of the weights (section 6). All
# randomness comes from one seeded generator whose state is checkpointed, so a run can be stopped and resumed
# exactly: given a `run_dir` (the command line always passes one), Ctrl-C (or Jupyter's interrupt button)
# stops it between two steps after saving the run. This chapter passes none, so an interrupt here just stops
# training; re-run the cell before going on.

# %%
# NBVAL_CHECK_OUTPUT
src = inspect.getsource(fit)
print(src[src.index("    while step < cfg.steps:"):src.index("\n    bar.close()") + 1])  # the loop, to its end

# %% [markdown]
# Now a short live run. To keep this chapter at a few minutes on a laptop CPU we train a *tiny* U-Net (8 base
# channels, two levels, no attention; about 44k parameters) on 2,000 MNIST digits for a few hundred steps. We
# also pass a `callback` that, every 25 steps, measures the loss of the raw and of the EMA weights on the same
# held-out batch with the same $t$ and $\epsilon$ (a fixed generator seed), for section 6. The shipped model
# was trained the same way, only bigger and longer (section 7). Set `DIFFUSION_LITE_FULL=1` to train the
# default U-Net on all 60,000 digits instead (meant for a GPU); the numbers quoted in this chapter's text are
# those of the default (non-full) mode, with the tiny U-Net.

# %%
train_cfg = TrainConfig(steps=2000 if FULL else 300, batch_size=128 if FULL else 32, lr=3e-3, warmup_steps=20,
                        ema_decay=0.999 if FULL else 0.99, log_every=10, seed=0)
held_out = {"step": [], "raw": [], "ema": []}
batch_losses = []  # the loss of every training batch, as the callback sees it


@torch.no_grad()
def track_held_out(info):
    batch_losses.append(info["loss"])
    if info["step"] % 25:
        return
    held_out["step"].append(info["step"])
    for key, net in (("raw", info["model"]), ("ema", info["ema"].model)):
        was_training = net.training
        net.eval()
        loss = diffusion_loss(net, schedule, x_test[:128], generator=torch.Generator().manual_seed(1)).item()
        net.train(was_training)
        held_out[key].append(loss)


t0 = time.perf_counter()
result = fit(model, schedule, train_set.images, train_cfg, callback=track_held_out)
print(f"{result['step']} steps of batch {train_cfg.batch_size} in {time.perf_counter() - t0:.0f} s "
      f"({result['images_per_s']:.0f} images/s)")

# %%
ax = plot_loss_curve({"moving average (what fit logs)": result["loss"]},
                     title=f"{model_name} on {len(train_set):,} MNIST digits: training loss")
ax.plot(range(1, len(batch_losses) + 1), batch_losses, color="C0", alpha=0.25, lw=0.8, label="each batch")
ax.axhline(1.0, color="gray", ls="--", lw=1, label="untrained (predicts 0)")
ax.set_ylabel("loss (MSE)")
ax.legend()
plt.show()
first, last = result["loss"][0][1], result["loss"][-1][1]
print("smoothed loss:", ", ".join(f"step {step}: {value:.3f}" for step, value in result["loss"]
                                  if step in (10, 50, 100, 200) or step == result["step"]))
assert last < 0.5 * first, (first, last)

# %% [markdown]
# The loss starts at 1 (the zero prediction), and the loss of the current weights (each batch's, the faint
# line) falls by a factor of ten within about 100 steps (the smoothed line lags behind, see below), as the network
# learns the easy part, "at large $t$, the noise is roughly $x_t$ itself". After that, progress is slow: the
# remaining error is concentrated at the small-noise steps, as the next section shows.
#
# The faint line is the loss of each batch. It is noisy because every batch draws different $t$ and $\epsilon$,
# so `fit` logs (and its progress bar shows) a moving average over roughly the last 50 steps, the solid line,
# with the same bias correction Adam uses so that the untrained first batches do not linger in it. While the
# loss falls fast, any such average trails the current value: at step 100 the average is 0.178, while the
# held-out loss of the current weights (section 6) is about 0.105.
#
# ## 5. Which time steps are hard?
#
# `train.loss_per_timestep` evaluates the loss at fixed $t$ on the held-out batch. We compare the tiny model we
# just trained with the shipped model `mnist-uncond` (section 7), and plot the error twice: as the noise error
# the network is trained on, and converted into the error of the implied clean image $\hat x_0$, using
# $x_0 - \hat x_0 = \sqrt{(1-\bar\alpha_t)/\bar\alpha_t}\,(\hat\epsilon - \epsilon)$, i.e.
# $\lVert x_0 - \hat x_0\rVert^2 = \mathrm{SNR}(t)^{-1}\,\lVert \epsilon - \hat\epsilon\rVert^2$.

# %%
pipe = load_pretrained("mnist-uncond", device)
assert pipe.schedule.config == schedule.config  # the same cosine schedule, T = 1000
ts = [0, 5, 20, 50, 100, 200, 350, 500, 650, 800, 950, 999]
x_eval = x_test[:128]
this_run = f"{model_name} (this chapter)"
curves = {this_run: loss_per_timestep(model, schedule, x_eval, ts,
                                      generator=torch.Generator().manual_seed(2)),
          "mnist-uncond (pretrained)": loss_per_timestep(pipe.unet, pipe.schedule, x_eval, ts,
                                                          generator=torch.Generator().manual_seed(2))}
snr = schedule.snr.cpu()[ts]
inner = [i for i, t_val in enumerate(ts) if t_val < schedule.T - 1]  # see below for t = T - 1

fig, axes = plt.subplots(1, 2, figsize=(12, 3.8))
for name, losses in curves.items():
    axes[0].plot(ts, losses, marker="o", label=name)
    axes[1].plot([ts[i] for i in inner], [losses[i] / snr[i] for i in inner], marker="o", label=name)
axes[0].set(xlabel="time step t", ylabel=r"$\|\epsilon - \hat\epsilon\|^2$ (mean per pixel)",
            title="noise-prediction error (what we train)", yscale="log")
axes[1].set(xlabel="time step t", ylabel=r"$\|x_0 - \hat x_0\|^2$ (mean per pixel)",
            title=r"implied clean-image error = noise error / SNR(t)", yscale="log")
for ax in axes:
    ax.legend()
    ax.grid(alpha=0.3)
fig.tight_layout()
plt.show()
print("t     :", " ".join(f"{t:>7}" for t in ts))
for name, losses in curves.items():
    print(f"{name[:6]}:", " ".join(f"{v:7.1e}" for v in losses))
assert all(a > b for a, b in zip(curves[this_run][:3], curves[this_run][-3:]))

# %% [markdown]
# Two different answers to "which steps are hard":
#
# * **In the noise-prediction loss (left), small $t$ is hard and large $t$ is easy.** At $t = 999$,
#   $x_t \approx \epsilon$, so copying the input is almost perfect. At $t = 0$ the noise is faint next to the
#   digit, and picking it out pixel by pixel is hard, but it also hardly matters: turned into an image error it
#   is multiplied by $1/\mathrm{SNR}(t)$, which is tiny at small $t$.
# * **In the clean-image error (right), large $t$ is hard.** From almost pure noise nobody can tell which digit
#   $x_0$ was; the best guess is an average, and its error is large. This is the uncertainty the sampler
#   resolves step by step in chapter 05. (At the very last step, $t = 999$, the cosine schedule has
#   $\bar\alpha_t$ close to 0, so $1/\mathrm{SNR}$ is astronomically large and even a tiny noise error implies
#   a wild $\hat x_0$; we left that point out of the right plot. Chapter 05 shows why samplers therefore clip
#   $\hat x_0$ to the valid pixel range.)
#
# In the default mode (tiny U-Net), the pretrained model is better at every $t$, by a factor of 1.5 to 3.6
# over $t = 0$-$800$ and by much more at the last, easiest ones: it has 16× more parameters and took about 24×
# more training steps (7,100 against 300) of twice the batch, drawn from 30× more distinct images.
# Re-weightings of the loss (e.g. "min-SNR", Hang et al. 2023, available as
# `TrainConfig(loss_weighting="min_snr")`) move the training effort between these ranges.
#
# ### The same story, image by image
#
# The curves are averages over 128 digits. The figure below opens them up for four held-out digits at a single
# step $t$, with the pretrained model. Each row shows the clean digit $x_0$, the network's input $x_t$, the noise
# $\epsilon$ that was really mixed in, the network's answer $\hat\epsilon$, their difference (drawn with three
# times the contrast of the noise panels), and the clean image the answer implies,
# $\hat x_0 = (x_t - \sqrt{1-\bar\alpha_t}\,\hat\epsilon)/\sqrt{\bar\alpha_t}$. The titles give each image's
# mean squared error per pixel. (The code is `diffusion_lite.model_widgets.noise_prediction_figure`.) Here is
# $t = 750$; with a running kernel, the slider after it lets you choose $t$.

# %%
x_four = x_test[:4]  # four held-out digits, (4, 1, 28, 28)
eps_four = torch.randn(x_four.shape, generator=torch.Generator().manual_seed(7)).to(device)  # fixed noise
fig = noise_prediction_figure(pipe.model_fn(), pipe.schedule, x_four, eps_four, t=750)
plt.show()

# %%
# NBVAL_IGNORE_OUTPUT
noise_prediction_widget(pipe.model_fn(), pipe.schedule, x_four, eps_four, t=750)

# %% [markdown]
# At $t = 750$ ($\bar\alpha_t = 0.14$) the predicted noise is hard to tell from the true noise by eye: its MSE
# is between 0.002 and 0.02 per pixel, against 1 for a network that predicts zeros. Yet the implied clean
# images are blurred, and one is wrong: the network reads the first 1 as a 7. Two things are at work.
#
# * **What the network gets wrong is the digit.** The error panels show the shape of the digit, not random
#   speckle: the noise itself is predicted well, but the part of $x_t$ that is *not* noise is faint, and the
#   network has to guess it. Its guess is the conditional mean of section 2b, a blend of the digits that are
#   plausible under this much noise, hence the blur.
# * **Converting to $\hat x_0$ amplifies the error.** $x_0 - \hat x_0 = \sqrt{(1-\bar\alpha_t)/\bar\alpha_t}\,
#   (\hat\epsilon - \epsilon)$, so the squared error is multiplied by $1/\mathrm{SNR}(t) = 6.0$ here: in every
#   row the MSE of $\hat x_0$ is six times that of $\hat\epsilon$.
#
# Things to try with the slider: find the $t$ at which the network starts to misread digits, and look at how
# the error panel changes between $t = 50$ and $t = 950$.
#
# The same four digits and noise at a small and a large step, averaged over the four:

# %%
pred = {t_val: predict_noise(pipe.model_fn(), pipe.schedule, x_four, eps_four, t_val) for t_val in (50, 750)}
for t_val, r in pred.items():
    print(f"t = {t_val:3d}: MSE of eps_hat {r['mse_eps'].mean():.3f}, MSE of x0_hat {r['mse_x0'].mean():.4f}")
assert pred[50]["mse_eps"].mean() > pred[750]["mse_eps"].mean()  # noise: hard at small t
assert pred[50]["mse_x0"].mean() < pred[750]["mse_x0"].mean()  # clean image: hard at large t

# %% [markdown]
# At the small step the noise prediction is about six times *worse* (0.070 against 0.012), yet the implied clean
# image is over a hundred times *better* (0.0006 against 0.070): the two panels of the plot above, for four
# digits.
#
# ## 6. EMA: sample with the average of recent weights
#
# Stochastic gradient descent does not settle at a minimum; with a fixed-size batch the weights keep jittering
# around it. Averaging the weights over the recent past (Polyak & Juditsky 1992) cancels much of that jitter.
# Diffusion models keep such an average alongside the trained weights and use it for sampling
# (Song & Ermon 2020; Ho et al. 2020):
# $$\theta_\text{EMA} \leftarrow d\,\theta_\text{EMA} + (1 - d)\,\theta \qquad\text{after every step.}$$
# The decay $d$ sets the length of the memory: roughly the last $1/(1-d)$ steps count (1,000 steps for
# $d = 0.999$, this package's default; DDPM and Stable Diffusion, trained for hundreds of thousands of steps, use
# $0.9999$, about 10,000 steps; for this short run we ask for $d = 0.99$, about 100 steps). A warm-up uses a
# smaller decay for the first updates, so the average does not stay stuck near the random initialisation: after
# $n$ updates the decay is $d_n = \min(d, (1 + n)/(10 + n))$, which reaches $0.99$ only after 890 updates. In a
# run as short as this one the warm-up is the whole story, as the cell below prints: in the default mode the
# memory grows from a few steps to a few dozen.

# %%
# NBVAL_CHECK_OUTPUT
print(inspect.getsource(EMA))
for n in (25, 100, train_cfg.steps):
    d_n = min(train_cfg.ema_decay, (1 + n) / (10 + n))
    print(f"after {n:4d} updates: d_n = {d_n:.3f}, memory about 1 / (1 - d_n) = {1 / (1 - d_n):.0f} steps")

# %% [markdown]
# The callback recorded the held-out loss of both weight sets during training, always on the same images with
# the same $t$ and $\epsilon$, so the curves differ only through the weights:

# %%
fig, ax = plt.subplots(figsize=(7, 3.5))
ax.plot(held_out["step"], held_out["raw"], marker="o", label="raw weights")
ax.plot(held_out["step"], held_out["ema"], marker="s", label=f"EMA weights (d = {train_cfg.ema_decay}, with warm-up)")
ax.set(xlabel="training step", ylabel="held-out loss (same t, eps)", yscale="log",
       title="held-out loss of the raw and the EMA weights")
ax.set_yticks([0.07, 0.1, 0.15, 0.2, 0.3, 0.4], ["0.07", "0.1", "0.15", "0.2", "0.3", "0.4"])
ax.set_yticks([], minor=True)
ax.grid(alpha=0.3)
ax.legend()
plt.show()
raw_final, ema_final = held_out["raw"][-1], held_out["ema"][-1]
print("held-out loss of the raw weights:", ", ".join(f"step {step}: {loss:.3f}" for step, loss in
                                                   zip(held_out["step"], held_out["raw"]) if step in (50, 100)))
print(f"held-out loss after {held_out['step'][-1]} steps: raw {raw_final:.4f}, EMA {ema_final:.4f}")
assert ema_final < 1.2 * raw_final

# %% [markdown]
# At the first measurement the EMA is behind: it still remembers the worse weights of the steps before. It
# catches up quickly (here by step 50, while the loss is still falling), and in this short run the two then
# stay close, because the learning rate decays (cosine schedule, to 10% at the end), which damps the jitter
# as well. In this run the samples below look the same with both weight sets. The average is expected to pay
# off in long runs, where the jitter is the limiting factor, and in the *samples*: sampling chains 25 to 1,000
# network calls, and small errors that vary from one weight set to the next add up along the chain (a claim
# from the literature, Song & Ermon 2020, not measured here). That is why the shipped models store only their
# EMA weights. Here are samples of both weight sets of the tiny model
# from the same starting noise (DDIM, 25 steps; chapter 05 explains the sampler):

# %%
x_T = torch.randn((16, 1, 28, 28), generator=g).to(device)
samples = {name: sample_ddim(eps_model_fn(net.eval(), schedule), schedule, x_T=x_T, steps=25, progress=False)
           for name, net in (("raw weights", model), ("EMA weights", result["ema"].model))}
fig, axes = plt.subplots(1, 2, figsize=(8, 4.2))
for ax, (name, imgs) in zip(axes, samples.items()):
    show_grid(imgs, nrow=4, ax=ax, title=f"{model_name}, {name}")
plt.show()

# %% [markdown]
# After a few hundred steps on a tiny network the samples are digit-like strokes at best: this run shows the
# *mechanism*. For real samples we load a model that has been trained for longer.
#
# ## 7. The shipped pretrained model
#
# `load_pretrained("mnist-uncond")` (already loaded above as `pipe`) rebuilds an unconditional
# `DiffusionPipeline` from the files in `diffusion_lite/pretrained/`: the weights (the EMA ones) in
# `mnist-uncond.safetensors`, and the configs in `mnist-uncond.json`, so the model is rebuilt from the file
# alone. Its model card `mnist-uncond.md` records the exact command, wall time and final loss; the key facts
# are also stored with the weights, in `pipe.meta`:

# %%
# NBVAL_CHECK_OUTPUT
meta = pipe.meta
print("U-Net    :", pipe.unet.cfg)
print(f"params   : {pipe.unet.num_parameters():,}")
print("schedule :", pipe.schedule.config)
print("predicts :", pipe.prediction)
print("dataset  :", meta["dataset"])
print("training :", {k: meta["train"][k] for k in ("steps", "batch_size", "lr", "warmup_steps", "ema_decay", "seed")})
print("model card:")
for key, value in meta["card"].items():
    print(f"  {key:<13} {value}")

# %% [markdown]
# And its samples: 36 digits drawn with the DDPM sampler on 100 of the 1,000 steps, the setting its model
# card recommends (chapter 05 explains samplers and step counts). Most are recognisable digits, some with
# malformed strokes: the model is small and trained for about an hour on a CPU (1,600 steps, then 5,500 more
# from there, as `init_from` above says). Chapter 05 measures their quality.

# %%
samples = pipe.sample(n=36, steps=100, sampler="ddpm", generator=torch.Generator().manual_seed(0), progress=False)
show_grid(samples, nrow=9, title="mnist-uncond: 36 samples (DDPM, 100 steps)", figsize=(6, 4.2))
plt.show()
assert samples.shape == (36, 1, 28, 28) and samples.min() >= -1 and samples.max() <= 1

# %% [markdown]
# ### When the loss falls but the samples are noise: a checklist
#
# * The first loss should be close to 1: the untrained U-Net's output layer starts at zero, so it predicts
#   $\hat\epsilon = 0$ and the loss is $\mathbb E[\epsilon^2] = 1$. Much larger: the target is not the noise. (It
#   is 1 whatever the pixel range, so it does not catch images in $[0, 1]$; `fit` checks the range itself.)
# * The loss at $t$ near $T$ should be small (left plot of section 5); if not, the network receives a wrong
#   $t$ (for example $t / T$ or a reversed $t$; chapter 10 shows the symptoms), or $\bar\alpha_{T-1}$ is not
#   close to 0.
# * Sample with the **same schedule** the model was trained with (the checkpoint stores it), and with the EMA
#   weights once training is long enough for the average to have caught up.
# * Check the sampler separately, with an "oracle" that knows the true noise: chapter 05's exercise.
# * [Chapter 10](10_debugging.ipynb) breaks a working model in each of these ways and shows what each bug does
#   to the loss at each $t$ and to the samples.
#
# ## Exercise
#
# Write the loss of one batch yourself, without calling `diffusion_loss`, and get exactly the same number:
# store it as **`my_loss`**, a scalar tensor, for the network `net` and the batch `batch` (32 test digits,
# (32, 1, 28, 28)) of the next cell. Build $x_t$ from `pipe.schedule.sqrt_alpha_bar` and
# `pipe.schedule.sqrt_one_minus_alpha_bar` (the schedule the network was trained with), call the network, and
# average the squared error over every pixel of every image. The **check** cell below the collapsed solution
# compares `my_loss` with `diffusion_loss(net, pipe.schedule, batch, generator=torch.Generator().manual_seed(123))`,
# so your random draws must be the ones it makes, in the same order, from the same generator:
#
# 1. `gen = torch.Generator().manual_seed(123)` (a new generator on the CPU, not the notebook's `g`);
# 2. first $t$: `torch.randint(0, pipe.schedule.T, (32,), generator=gen)`, one per image, then `.to(device)`;
# 3. then $\epsilon$: `torch.randn(batch.shape, generator=gen)`, then `.to(device)`.
#
# Drawing $\epsilon$ first, or from `g`, gives another loss and the check fails. Skip the collapsed cell unless
# you want to see a solution: running it replaces your `my_loss` with the solution's.

# %%
# Your turn: compute my_loss (a scalar tensor) in this cell, run it, then run the check cell below the
# collapsed solution. The network and the batch:
net = pipe.unet  # the shipped model of section 7
batch = x_test[:32]  # (32, 1, 28, 28), in [-1, 1]
# gen = torch.Generator().manual_seed(123)
# my_loss = ...


# %% jupyter={"source_hidden": true} tags=["solution"]
# Solution (running this cell replaces your my_loss with this one)
gen = torch.Generator().manual_seed(123)
t_ex = torch.randint(0, pipe.schedule.T, (batch.shape[0],), generator=gen).to(device)  # (B,)
eps_ex = torch.randn(batch.shape, generator=gen).to(device)  # (B, 1, 28, 28)
a = pipe.schedule.sqrt_alpha_bar[t_ex].view(-1, 1, 1, 1)
s = pipe.schedule.sqrt_one_minus_alpha_bar[t_ex].view(-1, 1, 1, 1)
x_t_ex = a * batch + s * eps_ex
with torch.no_grad():
    my_loss = (net(x_t_ex, t_ex) - eps_ex).pow(2).mean()

# %% tags=["check"]
# Check: your my_loss against diffusion_loss, which draws t, then eps, from a CPU generator seeded with 123
assert net is pipe.unet and torch.equal(batch, x_test[:32]), "net and batch should be those handed out above"
with torch.no_grad():
    ref = diffusion_loss(net, pipe.schedule, batch, generator=torch.Generator().manual_seed(123))
assert abs(float(my_loss) - float(ref)) <= 1e-5 * (1 + float(ref)), (
    f"my_loss {float(my_loss):.6f}, diffusion_loss {float(ref):.6f}: a new CPU generator seeded with 123, t drawn "
    "before eps, x_t from pipe.schedule, and the mean over all pixels?")
print(f"my loss {float(my_loss):.4f} == diffusion_loss {ref:.4f}")

# %% [markdown]
# ## Summary
#
# * DDPM trains $\epsilon_\theta$ by plain regression: noise a real image to a random step $t$ and predict the
#   noise, $L_\text{simple} = \mathbb E\lVert\epsilon - \epsilon_\theta(x_t, t)\rVert^2$ (eq. 14).
# * It works because (a) the likelihood bound is a weighted sum of exactly these errors (eq. 12), and dropping
#   the weights shifts effort to the noisy steps that decide the image; and (b) the MSE minimiser is the average
#   noise $\mathbb E[\epsilon \mid x_t]$, which gives the average clean image $\mathbb E[x_0 \mid x_t]$ and the
#   score of the noisy data: denoising score matching.
# * An untrained network scores 1.0; the loss falls fast and then slowly. Noise prediction is hardest at small
#   $t$, clean-image prediction at large $t$: there the noise error is small, but it sits on the digit and is
#   multiplied by $1/\mathrm{SNR}(t)$, and the implied $\hat x_0$ is a blurred guess.
# * Sample with an **EMA** of the weights: it averages out the jitter of SGD; its memory is about $1/(1-d)$
#   steps.
# * The shipped `mnist-uncond` pipeline carries its configs and a model card; chapter 05 turns its noise
#   predictions into images.
#
# ## References
#
# * Sohl-Dickstein, Weiss, Maheswaranathan & Ganguli 2015, "Deep Unsupervised Learning using Nonequilibrium
#   Thermodynamics".
# * Ho, Jain & Abbeel 2020, "Denoising Diffusion Probabilistic Models" (eqs. 5-14, Algorithm 1).
# * Vincent 2011, "A Connection Between Score Matching and Denoising Autoencoders".
# * Song & Ermon 2019, "Generative Modeling by Estimating Gradients of the Data Distribution"; Song & Ermon
#   2020, "Improved Techniques for Training Score-Based Generative Models" (EMA).
# * Efron 2011, "Tweedie's Formula and Selection Bias".
# * Polyak & Juditsky 1992, "Acceleration of Stochastic Approximation by Averaging".
# * Loshchilov & Hutter 2019, "Decoupled Weight Decay Regularization" (AdamW).
# * Hang et al. 2023, "Efficient Diffusion Training via Min-SNR Weighting Strategy".
# * Salimans & Ho 2022, "Progressive Distillation for Fast Sampling of Diffusion Models" (the "v" target).
