# %% [markdown]
# # 10 · Debugging: when the loss falls but the samples are noise
#
# A diffusion model fails quietly. The training loss falls (it is a regression, and almost any network learns
# *something*), no error is raised, and only the samples, made hundreds of steps later, come out as grey
# smears or static. The bug can sit in four places: the data, the noise schedule, how the network is told the
# time step, or the sampler. This chapter breaks a working model on purpose, once in each place, and looks at
# what each bug does to two instruments you already have:
#
# * the **loss at fixed time steps** on held-out images (`train.loss_per_timestep`, chapter 04), which
#   shows *where in t* a model goes wrong, without sampling at all;
# * **samples with FID / floor** (chapter 09's evaluator), which show *whether* it goes wrong.
#
# One rule makes the first instrument work: compute the loss curve through the *same* network call
# `net(x_t, t)` and the same `Schedule` that your sampler uses. A bug that lives only in the sampling script
# (a hard-coded schedule, a rescaled `t`) leaves the training loss perfectly healthy.
#
# ## Learning goals
#
# * Recognise the symptoms of four classic bugs: images in $[0, 1]$ instead of $[-1, 1]$, sampling with
#   another schedule than the one trained, a time step the network cannot read, and an unclipped sampler.
# * Read a loss-per-timestep curve against a working model's, and tell which range of $t$ a bug breaks.
# * Know which bugs the loss cannot see (the sampler's), and the checks that find them.
# * Use the package's own guards (`fit` checks the pixel range; checkpoints carry their schedule).
#
# You need chapters 04 (the loss per timestep) and 05 (the samplers, and the FID / floor ratio its section 5
# introduces); chapters 02 and 03 help with the schedule and time-step bugs, and chapter 09 with FID.

# %%
import hashlib
import math
import os
import random
import warnings

import matplotlib.pyplot as plt
import torch

from diffusion_lite.checkpoints import load_pretrained
from diffusion_lite.config import ScheduleConfig
from diffusion_lite.data import load_dataset
from diffusion_lite.debug_viz import grey_background_fraction, symptoms_figure, symptoms_widget
from diffusion_lite.evaluation import prepare_reference, score_samples
from diffusion_lite.metrics import load_eval_classifier
from diffusion_lite.sampling import sample_ddim
from diffusion_lite.schedules import Schedule
from diffusion_lite.train import check_image_range, loss_per_timestep
from diffusion_lite.utils import get_device, seed_everything

FULL = os.environ.get("DIFFUSION_LITE_FULL") == "1"  # full mode: more samples per variant
torch.set_num_threads(1)  # small models: one thread is nearly as fast, and robust on a busy machine
g = seed_everything(0)
device = get_device()

pipe = load_pretrained("mnist-uncond", device)  # the working model of chapters 04-05
unet, schedule = pipe.unet, pipe.schedule
test_set = load_dataset("mnist", "test", subset=1000, balanced=True)
x_held = test_set.images[torch.randperm(1000, generator=g)[:128]].to(device)  # held-out digits in [-1, 1]
classifier = load_eval_classifier(device)
N = 1000 if FULL else 200  # samples per variant (FID against as many test images)
reference = prepare_reference(classifier, "mnist-test", N)
ts = [0, 20, 100, 200, 350, 500, 650, 800, 950]
print(f"device {device}; schedule {schedule.config.kind}, T = {schedule.T}; held-out batch {tuple(x_held.shape)}; "
      f"{N} samples per variant")

# %% [markdown]
# ## 1. The working model: what "healthy" looks like
#
# Every variant below is measured the same way: the loss at the nine time steps `ts` on the same 128 held-out
# digits with the same noise (a generator seeded with 1), and `N` samples from the same starting noise with
# DDIM in 20 steps, scored with FID in the evaluation classifier's features, divided by the real-vs-real floor
# (chapter 09; about 1 for a perfect generator, and the shipped model is near 3 at this sample count and step
# count). `measure` does both for any network `net(x_t, t)` and schedule.

# %%
# NBVAL_CHECK_OUTPUT
@torch.no_grad()
def loss_curve(net, sched, images=x_held):
    """Loss at each t of ts on the held-out images, with the same noise every time."""
    return loss_per_timestep(net, sched, images, ts, generator=torch.Generator().manual_seed(1))


@torch.no_grad()
def measure(net, sched, clip_x0=True):
    """(loss at each t of ts, N samples in [-1, 1], FID / floor) for a network net(x_t, t) -> eps_hat."""
    losses = loss_curve(net, sched)
    samples = sample_ddim(lambda x_t, t: net(x_t, t), sched, shape=(N, 1, 28, 28), steps=20, clip_x0=clip_x0,
                          generator=torch.Generator().manual_seed(0), progress=False, device=device).clamp(-1, 1)
    return losses, samples.cpu(), score_samples(classifier, samples, reference)["fid_ratio"]


curves, samples, scores = {}, {}, {}
name = "working model"
curves[name], samples[name], scores[name] = measure(unet, schedule)
print("t        :", " ".join(f"{t:>6}" for t in ts))
print("loss at t:", " ".join(f"{v:6.3f}" for v in curves[name]), f"  FID / floor {scores[name]:.1f}")
assert curves[name][0] > curves[name][-1] and scores[name] < 6

# %% [markdown]
# The healthy curve falls from about 0.2 at $t = 0$ to almost 0 at $t = 950$: picking faint noise out of a clear
# digit is hard, and near $t = T$ the input *is* the noise (chapter 04, section 5). Keep its shape in mind.
#
# ## 2. Bug one: images in $[0, 1]$
#
# DDPM scales pixels to $[-1, 1]$ (Ho et al. 2020, sec. 3.3), so that the data has roughly the variance of the
# noise and the schedule's signal-to-noise ratios mean what they were designed to mean. `torchvision`'s
# `ToTensor()` gives $[0, 1]$; forgetting the `x * 2 - 1` is the most common bug of all. It shows in two different
# places, depending on where the range is wrong, so it gets two names below. First at evaluation time: the working
# network (trained on $[-1, 1]$), shown held-out digits in $[0, 1]$.

# %%
# NBVAL_CHECK_OUTPUT
EVAL01, TRAIN01 = "images in [0, 1] (evaluation)", "images in [0, 1] (training, simulated)"  # the bug's two faces
name = EVAL01
curves[name] = loss_curve(unet, schedule, (x_held + 1) / 2)
print("loss at t:", " ".join(f"{v:6.3f}" for v in curves[name]))
print("ratio to the working model:", " ".join(f"{a / b:6.1f}" for a, b in zip(curves[name], curves["working model"])))
assert curves[name][1] > 5 * curves["working model"][1]  # small t: the background is 0, not -1

# %% [markdown]
# The loss is too high at every step: 9 times at $t = 0$, up to 28 times at $t = 100$-$200$, and only 2.6 times
# at $t = 950$. The network sees a grey background (0) where it learned black (-1) and takes the difference
# for noise. That offset of 1 enters $x_t$ scaled by $\sqrt{\bar\alpha_t}$; in units of the noise,
# $\sqrt{1 - \bar\alpha_t}$, it is $\sqrt{\mathrm{SNR}(t)}$: huge at small $t$ (more than the network can
# explain away), negligible near $T$, where the noise dominates. The ratio is not largest at $t = 0$ because the
# error saturates (the network's $\hat\epsilon$ has about unit scale, whatever the offset) while the working
# model's own loss is highest there (0.2). **A loss too high almost everywhere but
# close to the working curve near $T$ points to the data**: here a range at evaluation that differs from the
# range in training. The samples do not show this bug at all: sampling starts from noise and never reads the
# data, so this network's samples are the working model's.
#
# The other face: a model *trained* on $[0, 1]$ (the training loader forgot `x * 2 - 1`) has a normal-looking
# loss on its own $[0, 1]$ data, so the loss cannot flag it; it learns that range and its samples come out in it.
# Shown as $[-1, 1]$ images (as `show_grid` and every figure here assume), their background is mid-grey. We do
# not train a broken model here: we *simulate* its samples by mapping the working model's samples to $[0, 1]$, and
# call this variant "images in $[0, 1]$ (training, simulated)"; it has samples but no measured loss curve. `fit`
# guards against the bug: images outside $[-1, 1]$ are an error, and images with no pixel below 0 get a warning;
# the evaluator, `score_samples`, warns about such samples too.

# %%
name = TRAIN01
samples[name] = (samples["working model"] + 1) / 2  # what a model trained on [0, 1] would produce
with warnings.catch_warnings(record=True) as scored:
    warnings.simplefilter("always")
    scores[name] = score_samples(classifier, samples[name], reference)["fid_ratio"]
grey = {k: grey_background_fraction(samples[k]) for k in ("working model", name)}
print(f"grey border pixels: working {grey['working model']:.0%}, [0, 1] {grey[name]:.0%};"
      f" FID / floor {scores[name]:.0f}")
with warnings.catch_warnings(record=True) as caught:
    warnings.simplefilter("always")
    check_image_range((x_held + 1) / 2)  # what fit() calls on its training images
print("score_samples warns:", scored[0].message)
print("fit would warn:", caught[0].message)
try:
    check_image_range(x_held * 127.5 + 127.5)  # uint8-range floats
except ValueError as e:
    print("fit would refuse:", e)
assert grey[name] > 0.9 > 0.1 > grey["working model"] and len(caught) == len(scored) == 1

# %% [markdown]
# ## 3. Bug two: sampling with another schedule than the one trained
#
# The network learned to undo the noise of *its* schedule: at step $t$ it expects $x_t$ with signal
# $\sqrt{\bar\alpha_t}$ and noise $\sqrt{1 - \bar\alpha_t}$. Rebuild the schedule from a hard-coded default in the
# sampling script (here: linear instead of the cosine schedule it was trained with) and every step is off. This is why
# the package's checkpoints store the schedule's config and `load_pretrained` rebuilds it from the file.

# %%
name = "linear schedule"
linear = Schedule.from_config(ScheduleConfig("linear", T=1000)).to(device)
curves[name], samples[name], scores[name] = measure(unet, linear)
print("loss at t:", " ".join(f"{v:6.3f}" for v in curves[name]), f"  FID / floor {scores[name]:.1f}")
ab_cos, ab_lin = schedule.alpha_bar.cpu()[ts], linear.alpha_bar.cpu()[ts]
print("alpha_bar, cosine:", " ".join(f"{v:6.3f}" for v in ab_cos))
print("alpha_bar, linear:", " ".join(f"{v:6.3f}" for v in ab_lin))
assert scores[name] > 2 * scores["working model"]

# %% [markdown]
# The loss is close at both ends of the chain and off in the middle (up to 7
# times at $t = 350$-$500$), where their $\bar\alpha_t$ differ most (at $t = 350$: 0.28 instead of 0.72). Near $t = 0$
# both keep $\bar\alpha_t \approx 1$; near $T$ their SNRs differ by a factor of 50 or more, but $x_t$ is almost pure
# noise under either, so $\hat\epsilon \approx x_t$ is right whatever the network believes. Some
# samples are still digits, many are malformed: FID / floor 9.5 against 3.2. A mismatch this mild does not
# look broken, it looks like an under-trained model. **Check the schedule before training longer.**
#
# ## 4. Bug three: a time step the network cannot read
#
# The U-Net reads $t$ through a sinusoidal embedding of the *integer* step (chapter 03). Passing $t / T$ (a
# habit from continuous-time code) squeezes every step into $[0, 1)$: to the network, every input looks like
# $t \approx 0$. Reversing the index ($T - 1 - t$, an off-by-direction when building a sampler's time grid)
# tells it the opposite of the truth.

# %%
def t_over_T(x_t, t):
    return unet(x_t, t.float() / schedule.T)  # the bug: t in [0, 1) instead of the integer step


def reversed_t(x_t, t):
    return unet(x_t, schedule.T - 1 - t)  # the bug: the index counted from the other end


for name, net in {"t / T instead of t": t_over_T, "reversed t": reversed_t}.items():
    curves[name], samples[name], scores[name] = measure(net, schedule)
    print(f"{name:20}", " ".join(f"{v:6.3f}" for v in curves[name]), f"  FID / floor {scores[name]:.0f}")
assert curves["t / T instead of t"][-1] > 10 * curves["working model"][-1]
assert curves["reversed t"][0] > 5 * curves["working model"][0] and scores["reversed t"] > 10

# %% [markdown]
# Two different signatures. With $t / T$ the loss is right at $t = 0$ (that is where the network believes it
# is) and grows with $t$ to about 0.8 and stays near it: the network predicts $\epsilon$ as if $x_t$ were a nearly
# clean image, so $\hat\epsilon$ is wrong about what is digit and what is noise,
# and the samples stay noise. With
# the reversed index the loss is right only in the middle ($t \approx 500$, where $t$ and $T - 1 - t$ meet) and
# wrong at both ends. Both end far above the working curve near $T$, where the data bugs end close to it.
# **A curve that is right at one $t$ only and far off near $T$ points to the time step** (chapter 04's
# checklist: near $T$ the loss must be small, since $x_t$ is almost pure noise).
#
# ## 5. Bug four: the sampler
#
# Some bugs do not touch the network, and the loss cannot see them. The classic one: no clipping of the
# predicted $\hat x_0$. The first step, at $t = 999$, divides by $\sqrt{\bar\alpha_t} \approx 5 \cdot 10^{-5}$, and
# the unclipped guess explodes (chapter 05, section 3). How much depends on the schedule: the damage grows
# like $1/\sqrt{\bar\alpha_T}$, which is $2 \cdot 10^4$ for this cosine schedule with $\beta$ clipped at 0.999 but
# only about 15 for Stable Diffusion's schedule, whose latent samplers run unclipped. Clipping is a pixel-space
# tool for data with a known range.

# %%
name = "no x0 clipping"
curves[name], samples[name], scores[name] = measure(unet, schedule, clip_x0=False)
print("loss at t:", " ".join(f"{v:6.3f}" for v in curves[name]), f"  FID / floor {scores[name]:.0f}")
assert curves[name] == curves["working model"] and scores[name] > 10

# %% [markdown]
# The loss is *identical* to the working model's (same network, same data), and the samples are ruined (shown
# and scored clamped to $[-1, 1]$). Two checks find sampler bugs:
#
# * the **oracle**: give the sampler the *true* noise instead of a network, and it must recover $x_0$ exactly
#   (chapter 05's exercise; the package's tests run it for DDPM and DDIM). It catches wrong coefficients, a
#   wrong index or step order, but not a missing clip: with the true noise, $\hat x_0$ *is* $x_0$, already in
#   range;
# * **watching the state**: record the size of $x_t$ at every step with the sampler's `callback`. A healthy
#   chain stays at the scale of the data; an unclipped one jumps at the first step and keeps growing.

# %%
# NBVAL_CHECK_OUTPUT
@torch.no_grad()
def state_sizes(clip_x0):
    """Standard deviation of x_t after each of 20 DDIM steps, for 16 samples."""
    sizes = []
    sample_ddim(lambda x_t, t: unet(x_t, t), schedule, shape=(16, 1, 28, 28), steps=20, clip_x0=clip_x0,
                generator=torch.Generator().manual_seed(0), progress=False, device=device,
                callback=lambda d: sizes.append(float(d["x_t"].std())))
    return sizes


sizes = {"clipped": state_sizes(True), "unclipped": state_sizes(False)}
print("std of x_t after step:", " ".join(f"{i:>7}" for i in (1, 2, 5, 10, 20)))
for label, sz in sizes.items():
    print(f"  {label:19}", " ".join(f"{sz[i - 1]:7.2f}" for i in (1, 2, 5, 10, 20)))
assert max(sizes["clipped"]) < 1.5 and sizes["unclipped"][0] > 10

# %% [markdown]
# ## 6. All the symptoms side by side
#
# Each row: the loss at each $t$ against the working model's (grey), and 16 samples with their FID / floor. In the
# "no x0 clipping" row the red curve covers the grey one: the two losses are the same, the bug is in the sampler.
# The $[0, 1]$ bug has two rows, and each shows only what was measured: at evaluation, a wrong loss and no samples
# of its own (they are the working model's); in training (simulated), grey samples and no loss curve (a real
# model trained on $[0, 1]$ would have a normal-looking one).

# %%
variants = ["working model", EVAL01, TRAIN01, "linear schedule", "t / T instead of t", "reversed t", "no x0 clipping"]
notes = {  # what a panel shows for a variant with nothing measured there
    "curves": {TRAIN01: "not measured: no model is\ntrained on [0, 1] here (on its\n"
                        "own [0, 1] data, its loss\nwould look normal)"},
    "samples": {EVAL01: "no samples of its own: sampling starts\nfrom noise and never reads the data,\n"
                        "so they are the working model's"},
}
fig_curves = {v: notes["curves"].get(v, curves.get(v)) for v in variants}
fig_samples = {v: notes["samples"].get(v, samples.get(v)) for v in variants}
fig_scores = {v: scores.get(v) for v in variants}
fig = symptoms_figure(ts, fig_curves, fig_samples, fig_scores)
plt.show()

# %% [markdown]
# The same figure one variant at a time (the drop-down picks it, with a running kernel; the figure above is its
# static twin):

# %%
# NBVAL_IGNORE_OUTPUT
symptoms_widget(ts, fig_curves, fig_samples, fig_scores)

# %% [markdown]
# ### A checklist
#
# | symptom | likely cause | check |
# | --- | --- | --- |
# | loss too high almost everywhere, close near $T$ | data range differs from training | `x.min(), x.max()`: -1, 1 |
# | loss close at both ends, off in the middle | another schedule when sampling | `schedule.config` == checkpoint's |
# | loss right only at $t = 0$ or $T/2$, far off near $T$ | time step scaled or reversed | print the `t` it receives |
# | loss healthy, samples ruined | sampler | oracle (arithmetic); size of $x_t$ per step |
# | samples with a grey background | images in $[0, 1]$ at training | `fit`'s warning; the "training" row above |
# | samples malformed but digit-like | under-trained, or a mild mismatch | the schedule row first, then train longer |
#
# Three more that this chapter does not stage: sampling with the EMA weights before the average has caught up
# (early in training, especially without warm-up), or with the raw weights instead of the EMA later (chapter
# 04, section 6); a network trained to predict $v$ or $x_0$ sampled as if it predicted $\epsilon$ (checkpoints
# store `prediction`, and the pipeline converts); and for text models, a guidance scale with a network trained
# without prompt dropout (it has no unconditional branch to extrapolate from; chapter 08).
#
# ## Exercise
#
# Below, `mystery` holds four loss curves at `ts`, labelled A to D: the working network with each of the four bugs
# of sections 2-4 that change its loss (the $[0, 1]$ one at evaluation), in a shuffled order, measured on a
# different draw of held-out digits with other noise, so they match none of the curves above exactly. Define a
# function **`diagnose(curve)`** that takes a list of losses at `ts` and returns the name (a key of `curves`) of
# the variant whose curve is closest (we suggest comparing $\log$ losses: the curves span two orders of magnitude,
# and on raw losses the largest values mostly decide the distance; these four bugs differ so much that most
# distances agree, but the log is the one that still works when two curves are close), and store your answers as
# **`diagnosis`** `= {"A": name, ..., "D": name}`. Write them in the "Your turn" cell and run it, then run the **check**
# cell below the collapsed solution. It passes `diagnosis` to `check_diagnosis`, which compares it with a SHA-256 hash
# of the right answer, so it says whether all four are right without telling you which are; and it checks that
# `diagnose` finds each curve of this chapter under its own name, and that `diagnosis` is what `diagnose` says.
# Skip the collapsed cell unless you want to see a solution: running it replaces your `diagnose` and
# `diagnosis` with the solution's.

# %%
@torch.no_grad()
def mystery_curves():
    """{letter: loss at each t of ts} for the four bugs, shuffled, on other digits and noise than above."""
    bugs = {EVAL01: (unet, schedule, lambda x: (x + 1) / 2),
            "linear schedule": (unet, linear, lambda x: x),
            "t / T instead of t": (t_over_T, schedule, lambda x: x),
            "reversed t": (reversed_t, schedule, lambda x: x)}
    order = random.Random(5).sample(sorted(bugs), len(bugs))  # shuffled, and kept inside: diagnose, do not peek
    other = test_set.images[torch.randperm(1000, generator=torch.Generator().manual_seed(5))[:128]].to(device)
    return {letter: loss_per_timestep(bugs[bug][0], bugs[bug][1], bugs[bug][2](other), ts,
                                      generator=torch.Generator().manual_seed(9)) for letter, bug in zip("ABCD", order)}


ANSWER_SHA256 = "2934314327dd77b9452bc9e638b1218cdb7f9a99acc70fd2ce88ad75990e2bbc"  # the right answer, hashed


def check_diagnosis(answers):
    """True if answers = {"A": variant name, ..., "D": ...} names all four mystery curves correctly."""
    normalised = "|".join(" ".join(str(answers.get(letter, "")).lower().split()) for letter in "ABCD")
    return hashlib.sha256(normalised.encode()).hexdigest() == ANSWER_SHA256


mystery = mystery_curves()


# %%
# Your turn: define diagnose and diagnosis here, run this cell, then run the check cell below the collapsed
# solution. The inputs: mystery = {"A": losses at ts, ..., "D": ...}, curves = {variant name: losses at ts}.
# def diagnose(curve: list[float]) -> str:
#     """The name in curves of the variant whose loss curve is closest to curve (e.g. comparing log losses)."""
#     ...
#
#
# diagnosis = {letter: diagnose(curve) for letter, curve in mystery.items()}


# %% jupyter={"source_hidden": true} tags=["solution"]
# Solution (running this cell replaces your diagnose and diagnosis with these)
def diagnose(curve):
    """Name of the variant in `curves` whose loss curve is closest in log space."""
    def distance(name):
        return sum((math.log(a) - math.log(b)) ** 2 for a, b in zip(curve, curves[name]))
    return min(curves, key=distance)


diagnosis = {letter: diagnose(curve) for letter, curve in mystery.items()}

# %% tags=["check"]
# Check: your diagnose on this chapter's own curves, then your diagnosis against the hash of the right answer
for name in curves:  # each curve of this chapter finds itself, or a variant with the very same curve
    same = [other for other in curves if curves[other] == curves[name]]  # "no x0 clipping" = "working model"
    assert diagnose(curves[name]) in same, (
        f"diagnose(curves[{name!r}]) returned {diagnose(curves[name])!r}, expected {' or '.join(map(repr, same))}")
assert sorted(diagnosis) == list("ABCD"), f"diagnosis needs the keys A, B, C, D, got {sorted(diagnosis)}"
assert diagnosis == {letter: diagnose(curve) for letter, curve in mystery.items()}, (
    "diagnosis should be what your diagnose says of each mystery curve")
assert check_diagnosis(diagnosis), "not all four of A-D are named correctly (the hash does not say which)"
assert not check_diagnosis({**diagnosis, "A": diagnosis["B"], "B": diagnosis["A"]})  # two swapped: rejected
print("diagnosis of A-D: all four correct")

# %% [markdown]
# (The check's loop allows one exception: "no x0 clipping" has the working model's curve, so the loss cannot tell it
# apart; that is section 5's point.)
#
# ## Summary
#
# * A falling loss only says the network learns *something*. Compare the **loss at each $t$** with a working
#   model's: *where* in $t$ it is wrong points to the bug.
# * Compute that curve through the same network call and schedule as the sampler. Wrong almost everywhere but
#   close near $T$: the **pixel range** differs between training and evaluation (use $[-1, 1]$; `fit` checks it).
#   A model trained *and* measured on $[0, 1]$ has a normal-looking loss: there only the samples show it, on a grey
#   background. Close at both ends, wrong in the middle:
#   the **schedule** differs between training and sampling (checkpoints carry theirs). Right only at one $t$ and
#   far off near $T$: the **time step** the network reads is scaled or reversed.
# * Healthy loss, ruined samples: the **sampler**. Check its arithmetic with an oracle that knows the true
#   noise, and its state with a callback; clip $\hat x_0$.
# * Mild bugs look like under-training; measure (FID / floor, chapter 09) before training longer.
#
# ## References
#
# * Ho, Jain & Abbeel 2020, "Denoising Diffusion Probabilistic Models" (sec. 3.3: data scaled to $[-1, 1]$).
# * Nichol & Dhariwal 2021, "Improved Denoising Diffusion Probabilistic Models" (the cosine schedule).
# * Song, Meng & Ermon 2021, "Denoising Diffusion Implicit Models".
# * Lin, Liu, Li & Yang 2024, "Common Diffusion Noise Schedules and Sample Steps are Flawed" (schedules whose
#   last step is not pure noise, and samplers that do not start at $t = T$: gaps between training and
#   sampling in widely used code; `sampling.timesteps` uses what their table 2 calls "linspace" spacing,
#   which, like their recommended "trailing", starts at $t = T - 1$).
# * Karpathy 2019, "A Recipe for Training Neural Networks" (blog post: become one with the data; compare with
#   a known-good baseline).
