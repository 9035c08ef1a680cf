"""How sure a number is: confidence intervals over the probe images, by the delete-a-group jackknife.

Every headline number is a statistic of one probe set of N images. Its interval comes from
resampling those images:

  1. partition the images at random (``seed``) into G groups of near-equal size (``image_groups``);
  2. recompute the statistic with each group left out: theta_(1) .. theta_(G);
  3. se^2 = (G - 1) / G * sum_g (theta_(g) - mean_g theta_(g))^2, the delete-a-group jackknife
     variance (Quenouille 1956; Tukey 1958; the grouped form as in Efron & Tibshirani 1993,
     "An Introduction to the Bootstrap", ch. 11);
  4. interval theta +- t_{G-1, (1 + level)/2} * se (Student t with G - 1 degrees of freedom, as the
     variance comes from G replicates).

Why not the percentile bootstrap: resampling images WITH replacement duplicates rows, which lowers
a covariance spectrum's tail. On Gaussian data with a known spectrum (D = 64, N = 400) its 95%
interval for effective rank covers the estimator's own sampling median only about 60% of the time.
The jackknife deletes rows and never duplicates them; tests/test_stats.py measures its coverage and
width against the sampling distribution (effective rank, participation ratio, anisotropy, alpha and a
paired difference). Rows that come from one image (e.g. its patch tokens) share a `unit` and are
left out together.

Paired intervals (the same images at two checkpoints, two blocks or two distances) take the
replicates of both statistics with the same groups left out and use their differences, so what the
two have in common cancels. ``bonferroni`` gives the per-comparison level for a claim judged on m
cases at once.

Half-samples, for the KSG mutual-information statistics (tgo.geometry.information), whose
k-nearest-neighbour estimates the delete-a-group jackknife overstates (tests/test_stats.py): draw
count / 2 random permutations of the images; each splits them into a half (its first N // 2) and the
complement (the next N // 2), ``half_samples``. The statistic is recomputed on each half alone
(theta_h,j and theta_c,j for permutation j = 1 .. J = count / 2) and

    se^2 = 1/J sum_j ((theta_h,j - theta_c,j) / 2)^2,  interval theta -+ t_{J, (1 + level)/2} * se.

For a mean this is exactly unbiased: over random halves E((theta_h - theta_c) / 2)^2 = s^2 / n (the
delete-d jackknife with d = n / 2, whose factor (n - d) / d is 1, Shao & Wu 1989, Ann. Statist. 17,
1176; a half-sample and its complement, McCarthy 1969, Rev. Int. Statist. Inst. 37, 239; Wolter 2007,
"Introduction to Variance Estimation", ch. 3). Given the data each permutation gives one independent
squared difference, hence J degrees of freedom. The difference of complements rather than the
spread about the full estimate or about the replicates' mean: KSG adds noise of its own to each half
(the neighbour configuration, the shuffle baseline), twice the full sample's at n / 2; in
(theta_h - theta_c) / 2 the two halves' noises add and are quartered, which is the full sample's
share exactly, while the spread about the replicates' mean counts it about twice and about the full
estimate three times. Measured on Gaussian fields with known MI (tests/test_stats.py: 5x5 grid,
3 channels, N = 256, count = 20, 3 shuffles, 80 trials; and 6x6 grids with 4 references) for MI at
the nearest distance, MI(nearest) - MI(farthest) and the decay rate: coverage of the sampling median
0.93-0.975 for 95% intervals, half-width 1.01-1.10 x 1.96 sampling sd; about the replicates' mean
1.16-1.41 x, about the full estimate 1.27-1.63 x. The mean excess kurtosis over neurons (Laplace,
N = 512) is covered 91-95% with half-width 0.93-0.97 x.
"""
import numpy as np
from scipy.stats import t as student_t

GROUPS = 20


def image_groups(n_images, groups=GROUPS, seed=0):
    """Group label (0..G-1) of each of n images: a random partition into G = min(groups, n)
    groups of near-equal size (numpy default_rng(seed)). The same (n, groups, seed) always gives
    the same partition, so replicates of different statistics of one probe set are paired."""
    n_images, groups = int(n_images), int(groups)
    if n_images < 2:
        raise ValueError(f"need at least 2 images for an interval, got {n_images}")
    if groups < 2:
        raise ValueError(f"need at least 2 groups, got {groups}")
    g = min(groups, n_images)
    return np.random.default_rng(seed).permutation(n_images) % g


def row_groups(image_labels, units):
    """Group label of each row from the group of its image: rows with the same unit (image index)
    are left out together."""
    return np.asarray(image_labels)[np.asarray(units)]


def replicates(statistic, X, groups=GROUPS, seed=0, units=None):
    """(estimate, replicates): statistic(X) and statistic(X without group g) for g = 1..G.

    X is (N, ...) with rows as samples; units (N,) names the image each row comes from (default:
    each row its own), and the images are partitioned by ``image_groups``."""
    X = np.asarray(X)
    units = np.arange(len(X)) if units is None else np.asarray(units)
    _, image = np.unique(units, return_inverse=True)
    labels = row_groups(image_groups(image.max() + 1, groups, seed), image)
    reps = np.array([statistic(X[labels != g]) for g in range(labels.max() + 1)], dtype=np.float64)
    return float(statistic(X)), reps


def mean_replicates(values, labels):
    """Replicates of the mean of per-image values (N,) or (N, ...): the mean without each group."""
    values, labels = np.asarray(values, dtype=np.float64), np.asarray(labels)
    g = labels.max() + 1
    sums = np.stack([values[labels == k].sum(axis=0) for k in range(g)])
    counts = np.bincount(labels, minlength=g).reshape((g,) + (1,) * (values.ndim - 1))
    return (values.sum(axis=0) - sums) / (len(values) - counts)


def standard_error(reps):
    """Delete-a-group jackknife standard error from G replicates (last axis):
    sqrt((G - 1) / G * sum_g (theta_(g) - mean)^2)."""
    reps = np.asarray(reps, dtype=np.float64)
    g = reps.shape[-1]
    dev = reps - reps.mean(axis=-1, keepdims=True)
    return np.sqrt((g - 1) / g * np.sum(dev * dev, axis=-1))


def interval(estimate, reps, level=0.95):
    """(low, high) = estimate -+ t_{G-1, (1+level)/2} * ``standard_error(reps)``, vectorised over
    leading axes; nan where the estimate or any replicate is nan (no interval without every
    replicate)."""
    if not 0 < level < 1:
        raise ValueError(f"level must lie in (0, 1), got {level}")
    reps = np.asarray(reps, dtype=np.float64)
    half = student_t.ppf((1 + level) / 2, reps.shape[-1] - 1) * standard_error(reps)
    low, high = np.asarray(estimate, dtype=np.float64) - half, np.asarray(estimate, dtype=np.float64) + half
    return (float(low), float(high)) if low.ndim == 0 else (low, high)


def confidence_interval(statistic, X, level=0.95, seed=0, groups=GROUPS, units=None):
    """(estimate, low, high): statistic(X) and its delete-a-group jackknife interval over the rows
    of X (N, D), rows of one unit (image) left out together; see the module docstring."""
    est, reps = replicates(statistic, X, groups, seed, units)
    low, high = interval(est, reps, level)
    return est, float(low), float(high)


def paired_interval(statistic, X, Y, level=0.95, seed=0, groups=GROUPS, units=None):
    """(estimate, low, high) of statistic(X) - statistic(Y) where row i of X and of Y come from the
    same image (same N): both are recomputed with the same groups left out."""
    X, Y = np.asarray(X), np.asarray(Y)
    if len(X) != len(Y):
        raise ValueError(f"paired samples need the same rows, got {len(X)} and {len(Y)}")
    ex, rx = replicates(statistic, X, groups, seed, units)
    ey, ry = replicates(statistic, Y, groups, seed, units)
    low, high = interval(ex - ey, rx - ry, level)
    return ex - ey, float(low), float(high)


def bonferroni(level, m):
    """Per-comparison level for m intervals that hold together at `level`: 1 - (1 - level) / m."""
    return 1 - (1 - level) / max(int(m), 1)


def nested_sizes(n_images, fractions=(1 / 8, 1 / 4, 1 / 2, 1)):
    """Sizes of nested subsets of the probe set, floor(f * N) for each fraction (at least 2)."""
    return [max(2, int(f * n_images)) for f in fractions]


def subset_order(n_images, seed=0):
    """A random order of the images; its first n form the nested subset of size n."""
    return np.random.default_rng(seed).permutation(int(n_images))


# Relative half-width below which an interval is zero but for floating-point rounding.
ROUNDING = 1e-9


def still_moving(value_n, value_half, ci_low, ci_high):
    """Whether a statistic still moves at N images: going from N/2 to N images changes it by more
    than the half-width of its interval at N,
        |value(N) - value(N/2)| > (high - low) / 2,
    so that its value still depends on how many images were probed, beyond what the interval
    accounts for. An interval of zero width up to rounding (a statistic the images do not change,
    such as the CLS token's at the embedding) never flags, nor does nan anywhere."""
    half = (ci_high - ci_low) / 2
    return bool(half > ROUNDING * abs(value_n) and abs(value_n - value_half) > half)


def half_samples(n_images, count=20, seed=0):
    """(count, n_images // 2) sorted image indices: count / 2 random permutations of the images
    (numpy default_rng(seed)), permutation j giving row 2j (its first n // 2 images) and row 2j + 1
    (the next n // 2, the complement; with an odd n its last image is in neither). The same
    (n_images, count, seed) always gives the same rows, so replicates of different statistics of one
    probe set are paired."""
    n_images, count = int(n_images), int(count)
    if n_images < 2:
        raise ValueError(f"need at least 2 images for half-samples, got {n_images}")
    if count < 4 or count % 2:
        raise ValueError(f"the number of half-samples must be even and >= 4, got {count}")
    rng = np.random.default_rng(seed)
    half = n_images // 2
    out = np.empty((count, half), np.intp)
    for j in range(count // 2):
        order = rng.permutation(n_images)
        out[2 * j], out[2 * j + 1] = np.sort(order[:half]), np.sort(order[half:2 * half])
    return out


def half_sample_se(reps):
    """Half-sample standard error from replicates (last axis, count) in the order of ``half_samples``
    (complementary halves at 2j, 2j + 1): sqrt(mean_j ((theta_2j - theta_2j+1) / 2)^2)."""
    reps = np.asarray(reps, dtype=np.float64)
    if reps.shape[-1] < 4 or reps.shape[-1] % 2:
        raise ValueError(f"need an even number >= 4 of half-sample replicates, got {reps.shape[-1]}")
    diff = (reps[..., 0::2] - reps[..., 1::2]) / 2
    return np.sqrt(np.mean(diff * diff, axis=-1))


def half_sample_interval(estimate, reps, level=0.95):
    """(low, high) = estimate -+ t_{count/2, (1+level)/2} * ``half_sample_se(reps)``, vectorised over
    leading axes; nan where the estimate or any replicate is nan. See the module docstring."""
    if not 0 < level < 1:
        raise ValueError(f"level must lie in (0, 1), got {level}")
    reps = np.asarray(reps, dtype=np.float64)
    half = student_t.ppf((1 + level) / 2, reps.shape[-1] // 2) * half_sample_se(reps)
    estimate = np.asarray(estimate, dtype=np.float64)
    low, high = estimate - half, estimate + half
    return (float(low), float(high)) if low.ndim == 0 else (low, high)
