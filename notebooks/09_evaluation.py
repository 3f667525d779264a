# %% [markdown]
# # 09 · Measuring a generator: FID, KID, accuracy and diversity
#
# Every chapter so far ended by *looking* at samples. Looking is essential, but it does not scale and it does
# not settle arguments: is the model trained for 4,000 steps better than the one trained for 2,000? Does
# guidance scale 3 beat scale 5 ([chapter 08](08_guidance.ipynb))? Did the new noise schedule help? We need
# numbers, and we need to know exactly what those numbers can and cannot tell us.
#
# This chapter builds the standard toolkit for small grayscale data: the **Fréchet distance** between
# feature distributions (FID), its less biased cousin **KID**, **conditional accuracy** for text-to-image
# models, and **diversity**. Along the way we will see how easily these numbers mislead: FID depends on the
# sample count and on the feature extractor, and a model that merely copies its training set scores like a
# perfect one.
#
# ## Learning goals
#
# - Explain why generators are judged by statistics of their samples in a learned feature space, and why we
#   use a small MNIST classifier's features instead of ImageNet's Inception network.
# - Write down FID (Heusel et al. 2017) as the Fréchet distance between two Gaussians, and compute it.
# - Measure the **real-vs-real floor** and show that FID is biased upwards at small sample counts
#   (roughly $\propto 1/n$), so FIDs are only comparable at the same $n$.
# - Use KID (Bińkowski et al. 2018), which is unbiased, to compare at small $n$.
# - Evaluate the shipped models (`mnist-uncond`, `mnist-text2img`) with `diffusion_lite.evaluation`, and
#   read the report: FID next to its floor, KID, accuracy, diversity, class coverage.
# - Know the blind spots: memorisation, and everything the feature extractor ignores; explore how FID and
#   accuracy respond to the strength of a distortion and to the sample count.
#
# You need chapters 04-05 (training and sampling) and, for the text-to-image part, chapters 07-08.

# %%
import inspect
import os
import textwrap
import time

import matplotlib.pyplot as plt
import numpy as np
import torch
import torch.nn.functional as F
from matplotlib import patheffects

from diffusion_lite import evaluation, metrics
from diffusion_lite.checkpoints import load_pretrained
from diffusion_lite.data import load_dataset
from diffusion_lite.eval_widgets import distortion_figure, distortion_sweep, distortion_widget, shift
from diffusion_lite.utils import get_device, seed_everything
from diffusion_lite.viz import show_grid

FULL = os.environ.get("DIFFUSION_LITE_FULL") == "1"  # bigger sample counts (for a GPU)
torch.set_num_threads(1)  # small models: one thread is nearly as fast, and robust on a busy machine
g = seed_everything(0)
device = get_device()
N_EVAL = 1000 if FULL else 100  # generated samples per model in section 6
STEPS = 50 if FULL else 15  # DDIM steps for those samples
POOL = 10000 if FULL else 6000  # real test digits whose features we reuse all chapter

classifier = metrics.load_eval_classifier(device)
test = load_dataset("mnist", "test")
train = load_dataset("mnist", "train")
print(test)
print(train)

# %% [markdown]
# ## 1. What should a number measure?
#
# A good generator of handwritten digits should make samples that
#
# 1. **look like real digits** (fidelity: no blobs, no broken strokes),
# 2. **vary like real digits** (diversity: all ten classes, thin and thick, upright and slanted, not the
#    same "7" every time), and, for a text-to-image model,
# 3. **show what the prompt asks for** (adherence: "a seven" gives a seven).
#
# Diffusion models do have a likelihood (the variational bound of DDPM), but a good likelihood and good
# samples are different things: a model can have excellent likelihood and poor samples, or the other way
# round (Theis, van den Oord & Bethge 2016). So the field judges generators by their **samples**: draw many,
# and compare their *distribution* with the distribution of real images. Comparing distributions of raw
# pixels is hopeless (two perfectly good "7"s can differ in every pixel), so both sets are first mapped to a
# **feature space** in which "looks like the same kind of thing" means "is close".
#
# ## 2. A feature space for digits
#
# Heusel et al. (2017) used the 2048-d penultimate layer of **Inception-v3** (Szegedy et al. 2016), an
# ImageNet classifier, hence *Fréchet Inception Distance*. For MNIST that is a poor ruler: Inception expects
# 299×299 colour photos of objects, so a 28×28 grey digit would be upsampled 10× and copied into three
# channels, and its features describe textures and object parts of ImageNet, not strokes and loops (they are
# also known to be driven by ImageNet class information; Kynkäänniemi et al. 2023). And its weights are a
# 100 MB download this offline course cannot make. The usual practice for small domains is a **domain
# classifier**: we trained a small CNN on MNIST (`mnist-classifier`, 99.58% test accuracy; see its model
# card) and use its 128-d penultimate features. All metrics in `diffusion_lite.metrics` work in that space:

# %%
# NBVAL_CHECK_OUTPUT
print(inspect.getsource(metrics.extract_features))
feats_demo = metrics.extract_features(classifier, test.images[:10])
print("features of 10 digits:", tuple(feats_demo.shape), feats_demo.dtype)

# %% [markdown]
# We extract features of a pool of real test digits once and reuse them all chapter. A 2-D projection (PCA)
# shows what this space is about: each digit forms its own cluster. Two directions of the 128-dimensional space
# (its first two principal components) already separate several of them; others overlap in this view (1 and 4,
# or 2, 5 and 9) but are separate in the full space, where the classifier's last layer tells them apart 99.6% of
# the time. Within a cluster, the spread is the variety of handwriting that the features keep.

# %%
t0 = time.perf_counter()
perm = torch.randperm(len(test), generator=g)
pool_idx = perm[:POOL]
pool_images, pool_labels = test.images[pool_idx], test.labels[pool_idx]
pool_feats = metrics.extract_features(classifier, pool_images.to(device))  # (POOL, 128) float64
print(f"{POOL} test digits -> features {tuple(pool_feats.shape)} in {time.perf_counter() - t0:.1f} s")

centred = pool_feats[:2000] - pool_feats[:2000].mean(0)
_, _, V = torch.linalg.svd(centred, full_matrices=False)
xy = (centred @ V[:2].T).numpy()  # (2000, 2) first two principal components
fig, ax = plt.subplots(figsize=(5.5, 4.5))
sc = ax.scatter(xy[:, 0], xy[:, 1], c=pool_labels[:2000].numpy(), cmap="tab10", s=4)
for k in range(10):  # each digit written at the centre (median) of its cluster: readable without colour
    ax.text(*np.median(xy[pool_labels[:2000].numpy() == k], axis=0), str(k), fontsize=13, fontweight="bold",
            ha="center", va="center", path_effects=[patheffects.withStroke(linewidth=3, foreground="white")])
ax.legend(*sc.legend_elements(), title="digit", fontsize=9, loc="center left", bbox_to_anchor=(1, 0.5))
ax.set(xlabel="principal component 1", ylabel="principal component 2",
       title="Classifier features of 2000 test digits (PCA)")
plt.show()

# %% [markdown]
# *Why the penultimate layer and not the class probabilities?* The softmax output keeps only how sure the
# classifier is of each digit: every confidently drawn 7 lands on nearly the same point, whatever its
# thickness or slant, so a FID there rewards a generator that draws only the most obvious digits. For the
# shipped text model of chapter 08 at guidance 3, which loses much of the handwriting's variety, 1,000
# samples score 1.6 times the real-vs-real floor (the FID between two sets of real digits of the same size;
# section 4) in the softmax space and s = 1 (no guidance) 8.1 times: the reverse
# of the penultimate space (4.0 and 1.6; BENCHMARKS.md, section 4). The layer is part of the metric; state it with
# every number.
#
# ## 3. FID: the Fréchet distance between two Gaussians
#
# FID summarises each set of features by a Gaussian: the mean $\mu$ and covariance $\Sigma$ of the real
# features, and $\mu_g, \Sigma_g$ of the generated ones. The distance between the two Gaussians is the
# **Fréchet (2-Wasserstein) distance** (Heusel et al. 2017, eq. 6; Dowson & Landau 1982):
#
# $$\mathrm{FID} = d^2\big(\mathcal N(\mu, \Sigma), \mathcal N(\mu_g, \Sigma_g)\big)
#   = \lVert \mu - \mu_g \rVert^2 +
#   \operatorname{Tr}\!\Big(\Sigma + \Sigma_g - 2\,\big(\Sigma\,\Sigma_g\big)^{1/2}\Big).$$
#
# The first term compares *where* the features are (fidelity: are the samples in the right place?), the
# second how they *spread* (a generator that makes the same digit every time has a tiny $\Sigma_g$ and pays
# here). In one dimension it is simply $(\mu_1 - \mu_2)^2 + (\sigma_1 - \sigma_2)^2$. The package computes
# the matrix square root through an eigen-decomposition, in float64, without scipy:

# %%
# NBVAL_CHECK_OUTPUT
print(inspect.getsource(metrics.frechet_distance))

# %%
# NBVAL_CHECK_OUTPUT
# 1-D check: N(0, 1) vs N(1, 2^2) -> (0 - 1)^2 + (1 - 2)^2 = 2
one_d = metrics.frechet_distance(torch.zeros(1), torch.ones(1, 1), torch.ones(1), 4 * torch.ones(1, 1))
print(f"FD(N(0, 1), N(1, 4)) = {one_d:.4f}")

# %% [markdown]
# `metrics.fid(feats_a, feats_b)` fits the two Gaussians (`feature_statistics`: mean and unbiased
# covariance) and calls `frechet_distance`. Lower is better; 0 means the two Gaussians are identical.
#
# ## 4. The real-vs-real floor, and why $n$ matters
#
# What FID should a *perfect* generator get? Its samples are just more draws from the data distribution, so
# we can find out by computing FID between two disjoint sets of **real** digits. This is the **floor**.
# It is not zero, because both sets are finite: the estimated means and covariances have sampling noise,
# and the Fréchet distance, being a squared distance, turns noise into a positive bias. With $F = 128$
# features a covariance has $F(F+1)/2 = 8256$ numbers to estimate, so the bias is large at small $n$
# (Chong & Forsyth 2020). Let's measure it for $n$ = 100, 300, 1000 and 3000, repeating each with fresh
# random splits of our pool:

# %%
ns = [100, 300, 1000, 3000] if not FULL else [100, 300, 1000, 3000, 5000]
repeats = {100: 8, 300: 6, 1000: 4, 3000: 2, 5000: 2}
floor = {}  # n -> (FID values, KID values)
for n in ns:
    assert 2 * n <= POOL, f"n = {n} needs two disjoint real sets, 2n <= POOL = {POOL} digits"
    fids, kids = [], []
    for _ in range(repeats.get(n, 2)):
        p = torch.randperm(POOL, generator=g)
        a, b = pool_feats[p[:n]], pool_feats[p[n:2 * n]]  # two disjoint real sets of size n
        fids.append(metrics.fid(a, b))
        kids.append(metrics.kid(a, b, subsets=20, subset_size=min(n, 1000), generator=g)[0])
    floor[n] = (np.array(fids), np.array(kids))
print("    n   real-vs-real FID (mean ± sd)   n x FID   real-vs-real KID (mean ± sd)")
for n, (fids, kids) in floor.items():
    print(f"{n:5d}   {fids.mean():8.3f} ± {fids.std():.3f}          {n * fids.mean():6.0f}    "
          f"{kids.mean():+.5f} ± {kids.std():.5f}")

# %%
fig, (ax_f, ax_k) = plt.subplots(1, 2, figsize=(11, 3.8))
n_arr = np.array(ns)
fid_mean = np.array([floor[n][0].mean() for n in ns])
c = float(np.mean(n_arr * fid_mean))
ax_f.errorbar(n_arr, fid_mean, yerr=[floor[n][0].std() for n in ns], fmt="o", capsize=3,
              label="real vs real (mean ± sd over draws)")
ax_f.plot(n_arr, c / n_arr, "--", color="gray", label=f"{c:.0f} / n")
ax_f.set(xscale="log", yscale="log", xlabel="samples per set n", ylabel="FID",
         title="FID of two real sets: biased, shrinks like 1/n")
ax_f.legend()
ax_k.errorbar(n_arr, [floor[n][1].mean() for n in ns], yerr=[floor[n][1].std() for n in ns], fmt="o",
              capsize=3, color="C1", label="real vs real (mean ± sd over draws)")
ax_k.axhline(0, color="gray", lw=1)
ax_k.set(xscale="log", xlabel="samples per set n", ylabel="KID", title="KID of two real sets: centred on 0")
ax_k.legend()
for ax in (ax_f, ax_k):
    ax.grid(alpha=0.3, which="both")
ax_f.set_yticks([0.2, 0.5, 1, 2, 5], labels=["0.2", "0.5", "1", "2", "5"])  # plain numbers, not 2 x 10^-1
for ax in (ax_f, ax_k):
    ax.minorticks_off()
    ax.set_xticks(ns, labels=[str(n) for n in ns])
fig.tight_layout()
plt.show()

# %%
# the bias is real and large: FID of real-vs-real at n = 100 is many times that at n = 3000
assert floor[100][0].mean() > 10 * floor[3000][0].mean()
# KID: no bias. Its spread shrinks like 1/n, so n x sd is about constant: c_kid, measured where there are at least
# 4 repeats (2 are too few to measure a spread). The mean of r repeats at n has a standard error of about
# c_kid / (n sqrt(r)), and must lie within 5 of them of 0. (A biased KID, keeping the i = j terms, fails this.)
c_kid = np.mean([n * floor[n][1].std() for n in ns if repeats[n] >= 4])
for n in ns:
    assert abs(floor[n][1].mean()) < 5 * c_kid / (n * np.sqrt(repeats[n])), (n, floor[n][1].mean(), c_kid)

# %% [markdown]
# The floor falls like $c/n$ (the dashed line): $n \times \mathrm{FID}$ is nearly constant. The practical
# consequences:
#
# (The $\pm$ above is the spread of only 8, 6, 4 or 2 draws: a rough estimate. A hundred draws at $n = 1000$
# give $0.50 \pm 0.11$, with one draw in twenty above 0.69: the floor's spread has a long upper tail, and
# section 8 meets a floor of 0.93.)
#
# - **An FID is meaningless without its $n$.** A perfect generator scores about 5 at $n = 100$ and about
#   0.15 at $n = 3000$ in this feature space. Against these random draws, a model with FID 2 at $n = 100$ is
#   *better than the floor would allow* (by luck; class-balanced draws have a lower floor, section 7) and a
#   model with FID 2 at $n = 3000$ is far from perfect.
# - **Compare FIDs only at equal $n$**, with the same classifier and the same reference set, and report the
#   floor next to them. `evaluation.py` reports `fid_ratio = fid / fid_floor`, which is ≈ 1 for a perfect
#   generator at any $n$ but *grows* with $n$ for an imperfect one: roughly FID ≈ gap + $c/n$ while the
#   floor ≈ $c/n$, so the ratio ≈ 1 + gap $\cdot\, n / c$. Ratios, too, are compared at equal $n$ (in
#   section 8, digits with noise of sd 0.2 score 1.3 times the floor at $n = 50$ and 5.9 times at $n = 500$).
# - Papers on ImageNet use $n$ = 50,000 for the same reason (the bias is then small), which is out of reach
#   on a CPU; our 128-d features need far fewer samples than Inception's 2048.
#
# ## 5. KID: an unbiased alternative
#
# The **Kernel Inception Distance** (Bińkowski et al. 2018) compares the two feature sets with the squared
# **maximum mean discrepancy** (MMD; Gretton et al. 2012) under the polynomial kernel
# $k(x, y) = (x^\top y / F + 1)^3$ on the $F = 128$ features, estimated on random subsets of $m$ samples from
# each set (`subset_size`, the $x_i$ and $y_j$ below):
#
# $$\mathrm{KID} = \frac{1}{m(m-1)}\sum_{i\ne j} k(x_i, x_j) + \frac{1}{m(m-1)}\sum_{i\ne j} k(y_i, y_j) -
#   \frac{2}{m^2}\sum_{i,j} k(x_i, y_j).$$
#
# Leaving out the $i = j$ terms makes each average an unbiased estimate of its expectation, so KID is
# **unbiased**: for two real sets drawn at random it is centred on 0 at every $n$ (right panel above) and can
# come out slightly negative. Small $n$ makes it *noisier* (wider error bars), not larger, so KIDs at
# different $n$ can be compared, with their standard deviations. `metrics.kid` averages over random subsets:

# %%
# NBVAL_CHECK_OUTPUT
print(inspect.getsource(metrics._poly_mmd2_unbiased))

# %% [markdown]
# ## 6. Conditional accuracy and diversity
#
# FID and KID compare whole distributions. Two simpler numbers are often more telling:
#
# - **Conditional accuracy**: ask a text-to-image model for each digit and count how often the evaluation
#   classifier agrees. The classifier's own accuracy on real digits is the natural reference level, but not
#   a ceiling: a guided model draws especially typical digits ([chapter 08](08_guidance.ipynb)), which the
#   classifier gets right more often than real handwriting, so a generator can score above it.
# - **Diversity**: the mean pairwise distance between the features of samples made for the same digit
#   (all phrasings of its prompt together; `metrics.diversity`). It is an average over pairs, unbiased at
#   any $n \ge 2$. A model that returns the same image for every seed scores 0; compare with the same
#   statistic on real digits of the same class.
#
# On real test digits (our pool):

# %%
@torch.no_grad()
def predict_from_features(feats):
    """Class predictions (N,) from penultimate features (N, 128): only the classifier's last layer runs."""
    return classifier.classify_features(feats.float().to(device)).argmax(1).cpu()


real_acc = (predict_from_features(pool_feats[:2000]) == pool_labels[:2000]).double().mean().item()
real_div = metrics.diversity(pool_feats[:2000], pool_labels[:2000])
print(f"classifier accuracy on 2000 real test digits: {100 * real_acc:.2f}%  (the reference level)")
print(f"diversity of real digits (within class):     {real_div:.2f}")
assert real_acc > 0.98

# %% [markdown]
# ## 7. Evaluating the shipped models
#
# `diffusion_lite.evaluation` packages the protocol: generate $n$ samples (for the text model, $n/10$ per
# digit with eight prompt phrasings, "the digit seven", "a handwritten 7", ...), draw $n$ real reference
# digits (for the text model the same number per class, for the unconditional one a random draw) and a
# second, disjoint real draw for the floor, and score everything
# in the classifier's features. `evaluate_pipeline` does it in one call; here we call its steps
# (`prepare_reference`, `generate`, `score_samples`) so that we keep the samples to look at. With a
# CPU-sized $n$ = 100 and 15 DDIM steps (the full-size run uses 1000 and 50):

# %%
uncond = load_pretrained("mnist-uncond", device)
text2img = load_pretrained("mnist-text2img", device)

t0 = time.perf_counter()
ref_u = evaluation.prepare_reference(classifier, "mnist-test", N_EVAL, seed=0)
samples_u = evaluation.generate(uncond, N_EVAL, steps=STEPS, seed=0)
report_u = evaluation.score_samples(classifier, samples_u, ref_u, seed=0)
print(f"mnist-uncond: {N_EVAL} samples + scores in {time.perf_counter() - t0:.0f} s")

t0 = time.perf_counter()
labels_t = evaluation.balanced_labels(N_EVAL)  # 0, 1, ..., 9, 0, 1, ...
prompts_t = evaluation.eval_prompts(labels_t)
ref_t = evaluation.prepare_reference(classifier, "mnist-test", N_EVAL, labels_t, seed=0)
samples_t = evaluation.generate(text2img, N_EVAL, prompts_t, guidance=3.0, steps=STEPS, seed=0)
report_t = evaluation.score_samples(classifier, samples_t, ref_t, labels_t, seed=0)
print(f"mnist-text2img (guidance 3): {N_EVAL} samples + scores in {time.perf_counter() - t0:.0f} s")
print("first prompts:", prompts_t[:4])

# %%
fig, axes = plt.subplots(1, 2, figsize=(10, 5.2))
show_grid(samples_u[:50], nrow=10, ax=axes[0], title="mnist-uncond (unconditional)")
show_grid(samples_t[:50], nrow=10, ax=axes[1], title="mnist-text2img, s = 3 (columns: digits 0-9)")
plt.show()

# %%
rows = [("FID", "fid"), ("FID floor (real vs real, same n)", "fid_floor"), ("FID / floor", "fid_ratio"),
        ("KID", "kid_mean"), ("KID floor", "kid_floor"), ("KID - floor", "kid_excess"),
        ("conditional accuracy", "accuracy"),
        ("diversity", "diversity"), ("diversity of the real reference", "diversity_real")]
print(f"n = {N_EVAL} samples, {STEPS} DDIM steps, reference: MNIST test, features: mnist-classifier\n")
print(f"{'':34s} {'mnist-uncond':>13s} {'mnist-text2img':>15s}")
for name, key in rows:
    cells = [("-" if r[key] is None else f"{r[key]:.4f}") for r in (report_u, report_t)]
    print(f"{name:34s} {cells[0]:>13s} {cells[1]:>15s}")

# %%
fig, (ax_u, ax_t) = plt.subplots(1, 2, figsize=(11, 3.2))
ax_u.bar(range(10), 100 * np.array(report_u["predicted_class_fraction"]), color="C0")
ax_u.axhline(10, color="gray", ls="--", lw=1, label="10%: every digit equally often")
ax_u.set(xticks=range(10), xlabel="digit the classifier predicts", ylabel="% of samples",
         title=f"mnist-uncond: class coverage (n = {N_EVAL})")
ax_u.legend(fontsize=8)
ax_t.bar(range(10), 100 * np.array(report_t["accuracy_per_class"]), color="C1")
ax_t.set(xticks=range(10), xlabel="digit asked for", ylabel="accuracy (%)", ylim=(0, 105),
         title=f"mnist-text2img, s = 3: accuracy per digit ({N_EVAL // 10} each)")
fig.tight_layout()
plt.show()

# %%
for r in (report_u, report_t):  # sanity bounds, loose enough for any reasonable model at this n
    assert np.isfinite(r["fid"]) and r["fid"] > 0 and r["fid_floor"] > 0
    assert r["diversity"] > 0.3 * r["diversity_real"]
assert report_t["accuracy"] > 0.7

# %% [markdown]
# How to read this table:
#
# - **FID next to its floor.** At $n$ = 100, two sets of real digits score a few points against each other
#   (the floor row; 5.0 ± 1.3 on average in section 4), so only the *ratio* to the floor is interpretable,
#   and a ratio below about 1.5 is within the noise of a single draw. `mnist-uncond` is between two and three
#   times its floor: its sample distribution is measurably different from MNIST, which its grid confirms (some
#   malformed digits). `mnist-text2img` at $s = 3$ scores closer to its floor, but at this $n$ that cannot
#   be told apart from the floor's own noise; with 1,000 samples the same model is 4.0 times its floor
#   (chapter 08 and BENCHMARKS.md): guidance costs variety that 100 samples cannot see.
# - **KID** says the same with less bias, with one catch. "Unbiased" assumes each set is a random draw. For
#   `mnist-uncond` the reference is a random draw of test digits: its KID is centred on 0 for a perfect model, and
#   its floor is just one noisy real-vs-real draw around 0 (sd about 0.02 at $n = 100$, section 4), so read
#   the KID row itself: clearly positive. For `mnist-text2img` both sets are *class-balanced* by design
#   (exactly 10 of each digit), and the estimator, which expects class counts to vary from draw to draw, then
#   sits at about $-4.3/n$ (here $-0.043$) for any two such sets of real digits, with little spread. So for
#   it read the **KID - floor** row (reported only for class-balanced draws), the excess over real data drawn
#   the same way: small but positive (guidance at $s = 3$ costs variety, as its diversity row shows).
# - **Class coverage** (left bars): an unconditional model that had collapsed onto a few digits would show
#   tall and missing bars. With 100 samples each bar has a standard error of about 3 percentage points, so
#   only large deviations from 10% mean anything. The classifier has to call every sample *some* digit, so a
#   bar also counts the malformed samples that happen to look most like that digit (compare the grid): class
#   coverage of a generator also measures its failures.
# - **Conditional accuracy** of the text model (right bars): how often "the digit seven" gives something the
#   classifier reads as 7. Compare it with the classifier's own accuracy on real digits (99.6% on the whole
#   test set, 99.8% on the 2,000 digits of section 6); at $s = 3$ the model matches it (with 100 samples one error
#   would cost a whole point, so "above" or "below" 99.6% cannot be told apart here; BENCHMARKS.md has 99.9% over
#   1,000), plausibly because guidance draws especially typical digits. It depends on the guidance scale
#   ([chapter 08](08_guidance.ipynb)): more guidance, higher accuracy, lower diversity. With 10 samples per
#   digit, one mistake costs a bar 10 points.
# - **Diversity** below the real value means samples per prompt vary less than real handwriting does, as
#   for `mnist-text2img` here (the price of guidance, chapter 08). The two columns measure different
#   spreads: for the text model, within each prompted digit (against real digits of the same class); for the
#   unconditional model, which has no prompts, over all its samples (against all real digits, every class
#   mixed). Compare each with its own real row, never the two columns with each other.
#
# ## 8. What the numbers do *not* say
#
# ### A copy machine scores like a perfect generator
#
# Suppose a "generator" simply returned random images from its training set. It has learned nothing and creates
# nothing new, yet its samples *are* real digits, so its FID should land at the real-vs-real floor. (MNIST's
# training and test digits come from different writers, so perhaps not exactly on it; let's see whether FID can
# tell.) One draw of $n = 1000$ is noisy, so we take five. In each, 1000 copied training images and, for the
# floor, 1000 other real test digits are compared with the same 1000 test digits:

# %%
draws = 5
assert draws <= POOL // 1000 - 1, f"each draw takes two 1000-digit blocks of the pool: at most {POOL // 1000 - 1}"
train_perm = torch.randperm(len(train), generator=g)
fid_copier, fid_floor_1000 = [], []
for k in range(draws):
    ref = pool_feats[1000 * k:1000 * (k + 1)]  # real test digits
    copier = train.images[train_perm[1000 * k:1000 * (k + 1)]]  # "generated" = memorised training images
    fid_copier.append(metrics.fid(metrics.extract_features(classifier, copier.to(device)), ref))
    fid_floor_1000.append(metrics.fid(pool_feats[1000 * (k + 1):1000 * (k + 2)], ref))  # another real set
fid_copier, fid_floor_1000 = np.array(fid_copier), np.array(fid_floor_1000)
print(f"{'n = 1000, draw':34s}" + " ".join(f"{k + 1:>6d}" for k in range(draws)) + "   mean ± sd")
for label, v in (("FID(copied training images)", fid_copier), ("real-vs-real floor", fid_floor_1000)):
    print(f"  {label:32s}" + " ".join(f"{x:6.3f}" for x in v) + f"   {v.mean():.3f} ± {v.std():.3f}")
print(f"  {'FID / floor':32s}" + " ".join(f"{x:6.2f}" for x in fid_copier / fid_floor_1000)
      + f"   {fid_copier.mean() / fid_floor_1000.mean():.2f} (ratio of the means)")
assert abs(fid_copier.mean() - fid_floor_1000.mean()) < 0.5 * fid_floor_1000.mean()  # at the floor, within noise

# %% [markdown]
# Over five draws the copier scores the floor: 0.703 against 0.702, a ratio of 1.00. At this $n$ FID does
# not see the change of writers, and a "generator" that has learned nothing and makes nothing new gets the score
# of a perfect one. (BENCHMARKS.md, section 4, does see it with class-balanced draws, whose floor is lower and
# steadier: samples that are training images score 1.28 times that floor.) Note the first draw on its own: 1.78
# times the floor, which would have suggested a clear gap. The floor itself ranges from 0.44 to 0.93 over these
# five draws, so at $n = 1000$ one ratio can land as far from 1 as 1.78 by chance: average several draws before
# reading one.
#
# FID, KID, accuracy and diversity describe how the samples are distributed, not where they came from: none of
# them can tell memorising from generalising. To check that a model *generalises*, look for
# each sample's **nearest neighbour in the training set** (here in pixel space) and compare those distances
# with the distances from *new real digits* (the test set, which the model never saw) to the training set.
# A model that copies would have many samples much closer to a training image than test digits are.

# %%
train_flat = train.images.flatten(1)  # (60000, 784)


def nearest_train(images):
    """Distance to, and index of, each image's nearest training image (pixel L2)."""
    d = torch.cdist(images.flatten(1).cpu(), train_flat)  # (n, 60000)
    return d.min(1)


d_gen, nn_idx = nearest_train(samples_t)
d_test, _ = nearest_train(pool_images[:N_EVAL])
print(f"median distance to the nearest training image: generated {d_gen.median():.2f}, "
      f"real test digits {d_test.median():.2f}")
print(f"samples closer to a training image than the closest 1% of test digits: "
      f"{(d_gen < d_test.quantile(0.01)).float().mean():.0%}")

fig, axes = plt.subplots(2, 1, figsize=(8, 2.6))
show_grid(samples_t[:10], nrow=10, ax=axes[0], title="generated (mnist-text2img)")
show_grid(train.images[nn_idx[:10]], nrow=10, ax=axes[1], title="nearest training image")
plt.show()

# %% [markdown]
# The generated digits are no closer to their nearest training image than fresh test digits are (at the
# median a little farther): the neighbours are similar digits, but not the same drawings, so no sign of
# copying. (Pixel
# distance is a crude notion of "copy"; for large models one uses feature-space neighbours and checks many
# more samples, as in Carlini et al. 2023.)
#
# ### The metric only sees what the features see
#
# A classifier-based FID is blind to anything the classifier learned to ignore. Our classifier was trained
# with random shifts of up to 2 pixels, and it only needs to tell digits apart. Let's distort 500 real
# digits in different ways and compute FID against 500 other real digits (floor at this $n$: about 1),
# together with how much the pixels changed and whether the classifier still recognises them:

# %%
n_t = 500
clean, ref_feats = pool_images[2000:2000 + n_t], pool_feats[:n_t]
blur_kernel = torch.tensor([[1.0, 2, 1], [2, 4, 2], [1, 2, 1]])[None, None] / 16
distortions = {
    "none (another real set)": lambda x: x,
    "shift 2 px right+down": lambda x: shift(x, 2),
    "thicker strokes": lambda x: F.max_pool2d(x, 3, stride=1, padding=1),
    "blur (3x3)": lambda x: F.conv2d(x + 1, blur_kernel, padding=1) - 1,
    "noise, sd 0.3": lambda x: (x + 0.3 * torch.randn(x.shape, generator=g)).clamp(-1, 1),
    "mirror left-right": lambda x: x.flip(3),
}
results = {}
print(f"{'distortion':26s} {'pixel RMS change':>16s} {'FID (n=500)':>12s} {'accuracy':>9s}")
for name, fn in distortions.items():
    x = fn(clean)
    feats_d = metrics.extract_features(classifier, x.to(device))
    fid_d = metrics.fid(feats_d, ref_feats)
    acc_d = (predict_from_features(feats_d) == pool_labels[2000:2000 + n_t]).double().mean().item()
    rms = (x - clean).pow(2).mean().sqrt().item()
    results[name] = (rms, fid_d, acc_d)
    print(f"{name:26s} {rms:16.2f} {fid_d:12.2f} {acc_d:9.1%}")

fig, axes = plt.subplots(1, len(distortions), figsize=(12, 2.6))
for ax, (name, fn) in zip(axes, distortions.items()):  # names wrapped: six titles side by side must not touch
    show_grid(fn(clean[:4]), nrow=2, ax=ax, title=f"{textwrap.fill(name, 16)}\nFID {results[name][1]:.1f}")
plt.show()
assert results["shift 2 px right+down"][1] < results["noise, sd 0.3"][1]
assert results["shift 2 px right+down"][0] > results["noise, sd 0.3"][0]

# %% [markdown]
# Shifting every digit by two pixels changes the pixels the *most* of all distortions, yet FID barely
# notices: the classifier was trained to ignore exactly that. Mild noise changes the pixels much less and
# costs far more FID, because the classifier never saw noisy digits. Mirrored digits are no longer the
# right digits (accuracy collapses), but FID ranks them close to the noise.
#
# ### Explore: distortion strength and sample count
#
# The table used one strength per distortion and $n = 500$. `distortion_sweep` distorts the same 500 digits
# at five strengths of five kinds (level 0 is undistorted) and keeps their classifier features, once
# (20 feature extractions, a few seconds). The explorer then computes FID from the first $n$ distorted
# digits against the first $n$ reference digits, which takes milliseconds. At level 0 that is the
# real-vs-real floor at this $n$ (dashed line); the thin grey lines are the other sample counts.

# %%
t0 = time.perf_counter()
sweep = distortion_sweep(classifier, clean, pool_labels[2000:2000 + n_t], ref_feats, generator=g)
print(f"{len(sweep.kinds)} kinds x 5 levels of {n_t} digits: features in {time.perf_counter() - t0:.0f} s")
print(f"\nFID (accuracy) at levels 0-4, n = {n_t}; level 0 is the floor")
for kind in sweep.kinds:
    print(f"{kind:16s}" + "".join(f"{r['fid']:7.2f} ({r['accuracy']:4.0%})" for r in sweep.scores(kind, n_t)))
print("\nGaussian noise: FID at sd 0 (the floor), 0.1 and 0.2, from n samples per set")
for n in (50, 100, 200, 500):
    r = sweep.scores("Gaussian noise", n)
    print(f"  n = {n:3d}:  {r[0]['fid']:6.2f}  {r[1]['fid']:6.2f}  {r[2]['fid']:6.2f}")

# %%
fig = distortion_figure(sweep, "Gaussian noise", level=1, n=100)
plt.show()

# %%
noise_100, noise_500 = sweep.scores("Gaussian noise", 100), sweep.scores("Gaussian noise", 500)
assert noise_100[1]["fid"] < 1.3 * noise_100[0]["fid"]  # at n = 100, sd 0.1 hardly rises above the floor ...
assert noise_500[1]["fid"] > 1.5 * noise_500[0]["fid"]  # ... at n = 500 it clearly does
assert noise_500[2]["fid"] > 3 * noise_500[0]["fid"] and noise_100[2]["fid"] < 3 * noise_100[0]["fid"]

# %% [markdown]
# The static figure shows noise of standard deviation 0.1 (circled) measured with $n = 100$ samples per
# set: it adds about one point to a floor of about 9, about as much as the floor itself varies between
# random draws (± 1.3 at $n = 100$ over section 4's eight draws, a rough estimate: the floor's spread has a
# long upper tail). This pair of sets has a floor far above section 4's average of 5.0, itself a reminder that
# the floor is noisy at small $n$. With $n = 500$ the same distortion almost doubles a floor of 1, and
# noise of sd 0.2 goes from less than twice the floor at $n = 100$ to about six times at $n = 500$: small
# differences between distributions need many samples to show. Strong distortions stand out at any $n$.
# Note also that the same distortion has a *lower* FID at larger $n$: FIDs at different $n$ cannot be
# compared. Move the controls (with a running kernel):

# %%
# NBVAL_IGNORE_OUTPUT
distortion_widget(sweep, "Gaussian noise", level=1, n=100)

# %% [markdown]
# Things to look for: shifts of up to 2 pixels were part of the classifier's training augmentation; what
# happens to FID and to accuracy at 3 and 4 pixels? At which $n$ does one pixel of extra stroke width
# rise above the floor? For rotation and blur, where does the accuracy start to drop, and how high is FID
# there already?
#
# So:
#
# - **FID is only as good as its features.** A generator whose digits were all off-centre, or all a bit
#   thicker, would get a good FID here. Look at samples, and use targeted measures for what you care about
#   (chapter 06's thickness/slant/size measures, `attribute_eval.attribute_adherence_report`).
# - **Numbers are comparable only with the same classifier, the same $n$, the same reference set** (we use
#   MNIST test) and the same preprocessing. Quote all of them, as the table in section 7 does.
# - **One number hides the trade-off.** FID mixes fidelity and diversity; guidance (chapter 08) moves them
#   in opposite directions, which is why we also report accuracy and diversity separately (precision and
#   recall for generative models, Kynkäänniemi et al. 2019, make the same split).
# - **For a text model, the prompts are part of the protocol.** Our prompts name only the digit, so
#   everything they leave unsaid (thickness, slant, size) is up to the model, and guidance fills it in with
#   the most typical digits: at $s = 3$ only 4% of the samples are thin, against 19% of real digits.
#   Text-to-image papers measure FID COCO-style instead, prompting with captions of held-out real images, so
#   the prompts carry the reference set's variety. Prompted with captions of held-out test digits that also
#   name their thickness, slant or size, the same model at $s = 3$ drops from 4.0 to 2.2 times the floor at
#   $n$ = 1,000 (`BENCHMARKS.md`, section 4). Two FIDs measured with different prompts are not comparable.
#
# ## Exercise: the Fréchet distance between two Gaussians
#
# Implement $d^2 = \lVert\mu_1-\mu_2\rVert^2 + \operatorname{Tr}(\Sigma_1 + \Sigma_2 - 2(\Sigma_1\Sigma_2)^{1/2})$
# in float64 with `torch.linalg`. Hint: $\Sigma_1\Sigma_2$ is not symmetric, but
# $\operatorname{Tr}\big((\Sigma_1\Sigma_2)^{1/2}\big)
# = \operatorname{Tr}\big((\Sigma_1^{1/2}\Sigma_2\Sigma_1^{1/2})^{1/2}\big)$,
# and the inner matrix is symmetric positive semi-definite: its trace-square-root is the sum of the square
# roots of its eigenvalues (`torch.linalg.eigvalsh`; clamp tiny negative round-off to 0). The symmetric
# square root of $\Sigma_1$ comes from `torch.linalg.eigh`. Define it as a function
# **`my_frechet_distance(mu1, sigma1, mu2, sigma2)`** that takes two means (F,) and two covariance matrices
# (F, F), for $F$ features, and returns $d^2$ as a Python `float`. Write it in the next cell and run it, then
# run the **check** cell below the collapsed solution: it compares your function with the package's
# `metrics.frechet_distance` on the
# statistics `stats_a`, `stats_b` of two sets of 1000 real digits (in the next cell), and on two 1-d Gaussians
# whose distance you can work out by hand, $\mathcal N(0, 1)$ and $\mathcal N(1, 4)$ (variances 1 and 4):
# $(0 - 1)^2 + (1 - 2)^2 = 2$. Skip the collapsed cell unless you want to see a solution: running it replaces
# your function with the solution's.

# %%
# Your turn: define my_frechet_distance here, run this cell, then run the check cell below the collapsed
# solution. The statistics the check uses:
stats_a = metrics.feature_statistics(pool_feats[:1000])  # (mu (128,), sigma (128, 128)), float64
stats_b = metrics.feature_statistics(pool_feats[1000:2000])
# def my_frechet_distance(mu1: torch.Tensor, sigma1: torch.Tensor, mu2: torch.Tensor,
#                         sigma2: torch.Tensor) -> float:
#     """Squared Frechet distance between N(mu1, sigma1) and N(mu2, sigma2), computed in float64."""
#     ...


# %% jupyter={"source_hidden": true} tags=["solution"]
# Solution (running this cell replaces your my_frechet_distance with this one)
def my_frechet_distance(mu1, sigma1, mu2, sigma2):
    w, v = torch.linalg.eigh(sigma1)
    root1 = (v * w.clamp(min=0).sqrt()) @ v.T  # Sigma_1^(1/2), symmetric
    inner = root1 @ sigma2 @ root1  # symmetric PSD, same trace-sqrt as Sigma_1 Sigma_2
    tr_sqrt = torch.linalg.eigvalsh(inner).clamp(min=0).sqrt().sum()
    return float((mu1 - mu2).pow(2).sum() + sigma1.trace() + sigma2.trace() - 2 * tr_sqrt)


# %% tags=["check"]
# Check: your my_frechet_distance against metrics.frechet_distance
mine, package = float(my_frechet_distance(*stats_a, *stats_b)), metrics.frechet_distance(*stats_a, *stats_b)
assert abs(mine - package) < 1e-6 * max(1.0, package), (
    f"real digits: my_frechet_distance {mine:.6f}, metrics.frechet_distance {package:.6f}")
one_d = float(my_frechet_distance(torch.zeros(1, dtype=torch.float64), torch.ones(1, 1, dtype=torch.float64),
                                  torch.ones(1, dtype=torch.float64), 4 * torch.ones(1, 1, dtype=torch.float64)))
assert abs(one_d - 2) < 1e-9, f"N(0, 1) and N(1, 4): my_frechet_distance gives {one_d}, expected 2"
print(f"my_frechet_distance = {mine:.6f}, metrics.frechet_distance = {package:.6f}")

# %% [markdown]
# *Going further:* (1) Replace the $\Sigma$ terms by their diagonals (ignore correlations between features)
# and see how much the real-vs-real floor at $n = 100$ shrinks: most of the bias comes from the off-diagonal
# covariance entries. (2) Compute FID with **pixels** as features (784-d) for real vs real and for real vs
# shifted digits: now the shift is penalised heavily. Which ruler would you rather use?
#
# ## Summary
#
# - Generators are judged by comparing the distribution of their samples with real data, in a learned
#   feature space. For MNIST we use the penultimate features of a small MNIST classifier, not Inception.
# - **FID** is the Fréchet distance between Gaussians fitted to the two feature sets:
#   $\lVert\mu-\mu_g\rVert^2 + \operatorname{Tr}(\Sigma+\Sigma_g-2(\Sigma\Sigma_g)^{1/2})$.
# - FID is **biased upwards at small $n$**, roughly $\propto 1/n$: real-vs-real scores about 5 at
#   $n = 100$ and about 0.15 at $n = 3000$ here. Always report $n$ and the real-vs-real **floor**, and compare
#   at equal $n$: the ratio to the floor is ≈ 1 for a perfect generator at any $n$, but grows with $n$ for an
#   imperfect one.
# - **KID** (unbiased MMD² with a cubic kernel) is centred on 0 for two random real draws at every $n$:
#   better for small sample counts. Class-balanced draws shift it below 0, so compare it with a floor drawn
#   the same way (KID - floor).
# - **Conditional accuracy** and **diversity** separate fidelity to the prompt from variety; guidance
#   trades one for the other.
# - The numbers cannot tell memorising from generalising (a copier of training images, with zero novelty,
#   scores the floor: FID / floor 1.00 over five draws at $n = 1000$, though a single draw can read 1.78) and
#   are blind to whatever the feature extractor ignores (a 2-pixel shift costs almost nothing). Look at
#   samples, check nearest training neighbours, and state classifier, $n$ and reference set with every number.
# - A distortion (or a generator's flaw) is only visible in FID if it exceeds the floor at the $n$ used:
#   mild ones that stand out at $n = 500$ vanish in the floor at $n = 50$.
#
# ## References
#
# - Heusel, Ramsauer, Unterthiner, Nessler & Hochreiter 2017, "GANs Trained by a Two Time-Scale Update
#   Rule Converge to a Local Nash Equilibrium" (NeurIPS): FID, eq. 6.
# - Bińkowski, Sutherland, Arbel & Gretton 2018, "Demystifying MMD GANs" (ICLR): KID and the bias of FID.
# - Gretton, Borgwardt, Rasch, Schölkopf & Smola 2012, "A Kernel Two-Sample Test" (JMLR): MMD.
# - Dowson & Landau 1982, "The Fréchet distance between multivariate normal distributions" (J. Multivariate
#   Analysis).
# - Chong & Forsyth 2020, "Effectively Unbiased FID and Inception Score and Where to Find Them" (CVPR):
#   FID's $1/n$ bias and its extrapolation to $n \to \infty$.
# - Szegedy, Vanhoucke, Ioffe, Shlens & Wojna 2016, "Rethinking the Inception Architecture for Computer
#   Vision" (CVPR): Inception-v3.
# - Theis, van den Oord & Bethge 2016, "A note on the evaluation of generative models" (ICLR).
# - Kynkäänniemi, Karras, Laine, Lehtinen & Aila 2019, "Improved Precision and Recall Metric for Assessing
#   Generative Models" (NeurIPS).
# - Kynkäänniemi, Karras, Aittala, Aila & Lehtinen 2023, "The Role of ImageNet Classes in Fréchet Inception
#   Distance" (ICLR).
# - Carlini, Hayes, Nasr, Jagielski, Sehwag, Tramèr, Balle, Ippolito & Wallace 2023, "Extracting Training
#   Data from Diffusion Models" (USENIX Security).
