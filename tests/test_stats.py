"""Confidence intervals (tgo.geometry.stats): calibrated against the sampling distribution of the
estimator on Gaussian data with a known power-law spectrum, and equal to their definitions."""
import numpy as np
import pytest

from tgo.geometry import spectral, stats

D, N, DRAWS, TRIALS = 64, 400, 240, 100
SPECTRUM = np.arange(1, D + 1, dtype=np.float64) ** -1.0  # lambda_k = 1/k
ALPHA_WINDOW = (5, 40)
STATISTICS = {
    "effective_rank": lambda e: spectral.effective_rank(e),
    "participation_ratio": lambda e: spectral.participation_ratio(e),
    "anisotropy": lambda e: spectral.anisotropy(e),
    "alpha": lambda e: spectral.alpha(e, ALPHA_WINDOW)[0],
}


def gaussian(rng, n=N):
    return rng.standard_normal((n, D)) * np.sqrt(SPECTRUM)


def check_calibrated(intervals, sampling):
    """The 95% intervals cover the estimator's sampling median in 85-99% of the trials, and their
    mean half-width is within 30% of 1.96 x its sampling standard deviation."""
    intervals = np.asarray(intervals)
    median, sd = np.median(sampling), np.std(sampling, ddof=1)
    coverage = np.mean((intervals[:, 0] <= median) & (median <= intervals[:, 1]))
    width = np.mean(np.diff(intervals, axis=1)) / 2 / (1.96 * sd)
    print(f"coverage {coverage:.3f} of {len(intervals)} trials, half-width / (1.96 sd) {width:.3f}")
    assert 0.85 <= coverage <= 0.99, f"coverage {coverage:.2f}"
    assert 0.7 <= width <= 1.3, f"half-width / (1.96 sd) = {width:.2f}"
    return coverage, width


@pytest.fixture(scope="module")
def trials():
    """Per statistic: its value on DRAWS independent data sets, and the interval from the stage's
    jackknife (jackknife_spectral_metrics) on TRIALS further ones."""
    rng = np.random.default_rng(0)
    sampling = {k: [] for k in STATISTICS}
    for _ in range(DRAWS):
        eigs = spectral.eigenspectrum(gaussian(rng))
        for k, f in STATISTICS.items():
            sampling[k].append(f(eigs))
    intervals = {k: [] for k in STATISTICS}
    for t in range(TRIALS):
        X = gaussian(rng)
        m, reps = spectral.jackknife_spectral_metrics(X, stats.image_groups(N, seed=t), ALPHA_WINDOW)
        for k in STATISTICS:
            intervals[k].append(stats.interval(m[k], reps[k]))
    return sampling, intervals


@pytest.mark.parametrize("name", list(STATISTICS))
def test_interval_covers_the_sampling_median(trials, name):
    sampling, intervals = trials
    check_calibrated(intervals[name], sampling[name])


def test_confidence_interval_entry_point_is_calibrated():
    """The public entry point on a statistic of the raw rows (effective rank)."""
    rng = np.random.default_rng(1)
    def erank(X):
        return spectral.effective_rank(spectral.eigenspectrum(X))
    sampling = [erank(gaussian(rng)) for _ in range(DRAWS)]
    intervals = [stats.confidence_interval(erank, gaussian(rng), seed=t)[1:] for t in range(80)]
    check_calibrated(intervals, sampling)


def paired_draw(rng):
    """The same images at two 'checkpoints': Y mixes X with fresh noise, so the two are correlated."""
    X = gaussian(rng)
    Y = 0.8 * X[:, ::-1] + 0.6 * gaussian(rng)
    return X, Y


def test_paired_difference_is_calibrated_and_narrower_than_unpaired():
    rng = np.random.default_rng(2)
    def erank(X):
        return spectral.effective_rank(spectral.eigenspectrum(X))
    sampling = [erank(Y) - erank(X) for X, Y in (paired_draw(rng) for _ in range(DRAWS))]
    paired, unpaired = [], []
    for t in range(80):
        X, Y = paired_draw(rng)
        est, low, high = stats.paired_interval(erank, Y, X, seed=t)
        paired.append((low, high))
        halves = [np.diff(stats.confidence_interval(erank, Z, seed=t)[1:])[0] / 2 for Z in (X, Y)]
        unpaired.append(np.hypot(*halves))
    check_calibrated(paired, sampling)
    # What the two checkpoints share cancels: the paired interval is narrower than independent ones.
    assert np.mean(np.diff(paired, axis=1)) / 2 < 0.9 * np.mean(unpaired)


def test_rows_of_one_image_are_left_out_together():
    """Pooled patch tokens: 8 rows per image share most of their variance. Left out by image the
    interval is calibrated; treating the rows as independent makes it far too narrow."""
    rng = np.random.default_rng(3)
    n_images, per_image = 100, 8
    units = np.repeat(np.arange(n_images), per_image)

    def draw():
        images = gaussian(rng, n_images)
        return np.repeat(images, per_image, axis=0) + 0.3 * rng.standard_normal((n_images * per_image, D))

    def erank(X):
        return spectral.effective_rank(spectral.eigenspectrum(X))
    sampling = [erank(draw()) for _ in range(DRAWS)]
    by_image, by_row = [], []
    for t in range(80):
        X = draw()
        by_image.append(stats.confidence_interval(erank, X, seed=t, units=units)[1:])
        by_row.append(stats.confidence_interval(erank, X, seed=t)[1:])
    check_calibrated(by_image, sampling)
    with pytest.raises(AssertionError, match="coverage"):
        check_calibrated(by_row, sampling)


def test_naive_bootstrap_undercovers():
    """Why not the percentile bootstrap: resampling with replacement duplicates rows and shifts
    the effective rank down, so its 95% interval misses the sampling median far too often."""
    rng = np.random.default_rng(4)
    def erank(X):
        return spectral.effective_rank(spectral.eigenspectrum(X))
    median = np.median([erank(gaussian(rng)) for _ in range(DRAWS)])
    covered = []
    for _ in range(40):
        X = gaussian(rng)
        boot = [erank(X[rng.integers(0, N, N)]) for _ in range(100)]
        low, high = np.percentile(boot, [2.5, 97.5])
        covered.append(low <= median <= high)
    assert np.mean(covered) < 0.8


@pytest.mark.parametrize("n, d, per_image", [(300, 40, 1), (30, 50, 1), (600, 24, 6)])
def test_jackknife_replicates_equal_the_metrics_without_each_group(n, d, per_image):
    """Replicate g from the row-weighted covariance pieces equals spectral_metrics on the rows that
    remain, on both the covariance (N >= D) and the Gram (N < D) path, rows grouped by image."""
    rng = np.random.default_rng(5)
    X = (rng.standard_normal((n, d)) * np.arange(1, d + 1) ** -0.7 + 3).astype(np.float16)
    labels = stats.image_groups(n // per_image, 10, seed=1)[np.arange(n) // per_image]
    full, reps = spectral.jackknife_spectral_metrics(X, labels, (3, 12), cosine_max_samples=None)
    reference = spectral.spectral_metrics(X, (3, 12), cosine_max_samples=None)
    for g in range(10):
        expected = spectral.spectral_metrics(X[labels != g], (3, 12), cosine_max_samples=None)
        for k, values in reps.items():
            np.testing.assert_allclose(values[g], expected[k], rtol=1e-9, err_msg=k)
    for k in reps:
        np.testing.assert_allclose(full[k], reference[k], rtol=1e-12, err_msg=k)


def test_interval_of_a_mean_is_the_t_interval():
    """Delete-one jackknife of a mean: se = s / sqrt(n) exactly, so the interval is Student's."""
    from scipy import stats as scipy_stats
    x = np.random.default_rng(6).standard_normal(30)
    est, low, high = stats.confidence_interval(np.mean, x, level=0.9, groups=30)
    expected = scipy_stats.t.interval(0.9, 29, loc=x.mean(), scale=scipy_stats.sem(x))
    np.testing.assert_allclose((est, low, high), (x.mean(), *expected), rtol=1e-12)


def test_groups_are_balanced_and_reproducible():
    a = stats.image_groups(103, 20, seed=7)
    assert np.array_equal(a, stats.image_groups(103, 20, seed=7))
    assert not np.array_equal(a, stats.image_groups(103, 20, seed=8))
    assert set(np.bincount(a)) == {5, 6}
    assert stats.image_groups(5, 20).max() == 4  # fewer images than groups: delete-one
    assert stats.bonferroni(0.95, 10) == pytest.approx(0.995)


def test_jackknife_overstates_the_ksg_spread():
    """Why MI has no interval: KSG is a k-nearest-neighbour statistic, and leaving images out moves
    the neighbours of the rest, so the jackknife's half-width is far above 1.96 x the estimator's
    sampling standard deviation (MI of a Gaussian pair with rho = 0.5, N = 256)."""
    from tgo.geometry.information import ksg_mi
    rng = np.random.default_rng(7)

    def draw():
        x = rng.standard_normal(256)
        return np.stack([x, 0.5 * x + np.sqrt(0.75) * rng.standard_normal(256)], axis=1)

    def mi(X):
        return ksg_mi(X[:, 0], X[:, 1], k=3)
    sd = np.std([mi(draw()) for _ in range(150)], ddof=1)
    half = [np.diff(stats.confidence_interval(mi, draw(), seed=t)[1:])[0] / 2 for t in range(30)]
    assert np.mean(half) / (1.96 * sd) > 1.3


def test_alpha_interval_needs_the_window_inside_every_replicate():
    # 101 images in 20 groups: the largest group holds 6, so a replicate keeps 95 (rank 94).
    assert spectral.alpha_interval_error((11, 94), 101, 20) is None
    reason = spectral.alpha_interval_error((11, 100), 101, 20)
    assert "95 images remain" in reason and "ci.groups" in reason
    assert spectral.alpha_window_error((11, 100), 101, 384) is None  # the estimate itself fits
