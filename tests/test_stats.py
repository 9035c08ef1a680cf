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


def check_calibrated(intervals, sampling, widths=(0.7, 1.3)):
    """The 95% intervals cover the estimator's sampling median in 85-99% of the trials, and their
    mean half-width / (1.96 x its sampling standard deviation) lies in `widths` (default: within 30%)."""
    intervals = np.asarray(intervals)
    median, sd = np.median(sampling), np.std(sampling, ddof=1)
    coverage = np.mean((intervals[:, 0] <= median) & (median <= intervals[:, 1]))
    width = np.mean(np.diff(intervals, axis=1)) / 2 / (1.96 * sd)
    print(f"coverage {coverage:.3f} of {len(intervals)} trials, half-width / (1.96 sd) {width:.3f}")
    assert 0.85 <= coverage <= 0.99, f"coverage {coverage:.2f}"
    assert widths[0] <= width <= widths[1], f"half-width / (1.96 sd) = {width:.2f}"
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
    """Why MI's interval is not the jackknife's: KSG is a k-nearest-neighbour statistic, and leaving
    images out moves the neighbours of the rest, so the jackknife's half-width is far above 1.96 x the
    estimator's sampling standard deviation (MI of a Gaussian pair with rho = 0.5, N = 256). MI uses
    half-samples instead (below)."""
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


def test_alpha_window_comes_down_to_what_every_replicate_holds():
    # 101 images in 20 groups: the largest group holds 6, so a replicate keeps 95 (rank 94).
    assert spectral.fitted_alpha_window((11, 94), 101, 384, 20) == ((11, 94), None)
    window, note = spectral.fitted_alpha_window((11, 100), 101, 384, 20)
    assert window == (11, 94) and "95 in a jackknife replicate" in note and "11..94" in note
    assert spectral.fitted_alpha_window((11, 100), 1000, 64, 20)[0] == (11, 64)  # the width D caps it too
    with pytest.raises(ValueError, match="fewer than 3 from rank 11"):
        spectral.fitted_alpha_window((11, 100), 14, 384, 20)  # 14 groups of 1: 13 images, rank 12


@pytest.mark.parametrize("n_images, groups", [(40, 20), (41, 20), (57, 8), (200, 20), (15, 30)])
def test_the_fitted_window_fits_every_actual_replicate(n_images, groups):
    """Against the partition the stages use (stats.image_groups): every delete-a-group replicate's
    rank holds the fitted window, and one more rank would not fit the smallest replicate."""
    (lo, hi), _ = spectral.fitted_alpha_window((3, 10_000), n_images, 10_000, groups)
    labels = stats.image_groups(n_images, groups, seed=0)
    remaining = [n_images - np.sum(labels == g) for g in np.unique(labels)]
    assert all(spectral.alpha_window_error((lo, hi), n, 10_000) is None for n in remaining)
    assert spectral.alpha_window_error((lo, hi + 1), min(remaining), 10_000) is not None


# --- half-samples (the interval of the KSG mutual-information statistics) -------------------------

MI_GRID, MI_CHANNELS, MI_N, MI_LENGTH = (5, 5), 3, 256, 2.0
MI_DRAWS, MI_TRIALS, MI_HALVES, MI_SHUFFLES = 200, 80, 20, 3
MI_STATISTICS = ("mi_nearest", "nearest_minus_farthest", "decay_rate")


def mi_field(rng):
    """(MI_N, 25, MI_CHANNELS) images of a 5x5 patch grid with independent channels, each a Gaussian
    random field with correlation rho(d) = exp(-d / MI_LENGTH) between patches at distance d, so that
    two patches share MI = -1/2 log(1 - rho^2)."""
    rows, cols = MI_GRID
    r, c = np.divmod(np.arange(rows * cols), cols)
    chol = np.linalg.cholesky(np.exp(-np.hypot(r[:, None] - r, c[:, None] - c) / MI_LENGTH))
    z = rng.standard_normal((MI_N, MI_CHANNELS, rows * cols))
    return np.ascontiguousarray((z @ chol.T).transpose(0, 2, 1))


def mi_statistics(distances, mi):
    """(..., 3): MI at the nearest distance, MI(nearest) - MI(farthest), the decay rate."""
    from tgo.geometry.information import mi_decay_rate
    return np.stack([mi[..., 0], mi[..., 0] - mi[..., -1], mi_decay_rate(distances, mi)], axis=-1)


@pytest.fixture(scope="module")
def mi_trials():
    """The three statistics through ``mi_vs_distance`` (KSG, 3 shuffles, the centre reference (2, 2),
    distances 1, 2, 3) on MI_DRAWS independent fields, and their half-sample intervals (20 halves)
    on MI_TRIALS further ones: 5x5 grid, 3 channels, N = 256, 200 draws, 80 trials; about 15 s on
    two cores."""
    from tgo.geometry.information import mi_vs_distance
    rng = np.random.default_rng(9)
    kw = dict(grid=MI_GRID, channels=range(MI_CHANNELS), n_shuffles=MI_SHUFFLES)
    sampling = []
    for i in range(MI_DRAWS):
        res = mi_vs_distance(mi_field(rng), seed=i, **kw)
        sampling.append(mi_statistics(res["distances"], res["mi"]))
    intervals = []
    for t in range(MI_TRIALS):
        res = mi_vs_distance(mi_field(rng), seed=MI_DRAWS + t, half_samples=stats.half_samples(MI_N, MI_HALVES, t),
                             **kw)
        est = mi_statistics(res["distances"], res["mi"])
        reps = mi_statistics(res["distances"], res["mi_halves"])
        intervals.append(np.stack(stats.half_sample_interval(est, reps.T), axis=1))
    return res, np.array(sampling), np.array(intervals)


@pytest.mark.slow_setup
@pytest.mark.parametrize("index, name", list(enumerate(MI_STATISTICS)))
def test_half_sample_interval_of_mi_is_calibrated(mi_trials, index, name):
    """Measured here: coverage 0.975, 0.950, 0.975 and half-width 1.02, 1.01, 1.05 x 1.96 sd (other
    seeds: 0.94-0.975, 1.03-1.10; 6x6 grids with the 4 centre references, 3 channels, N = 300,
    100 trials: 0.93-0.95, 1.05-1.06). The same replicates' spread about their mean (half-width
    1.15-1.41 over those runs, coverage up to 1.0) or about the full estimate (1.27-1.63) fails the
    coverage bound or the width bound 0.8-1.2."""
    _, sampling, intervals = mi_trials
    check_calibrated(intervals[:, index], sampling[:, index], widths=(0.8, 1.2))


@pytest.mark.slow_setup
def test_mi_of_the_fields_is_the_gaussian_truth(mi_trials):
    """The sampling median of MI at distance 1 is the Gaussian truth averaged over that bin's
    patches (4 at distance 1, 4 diagonal ones at sqrt 2), within KSG's small-sample bias."""
    res, sampling, _ = mi_trials
    rho = np.exp(-np.array([1.0, np.sqrt(2)]) / MI_LENGTH)
    assert res["references"] == [(2, 2)] and list(res["distances"]) == [1, 2, 3]
    assert np.median(sampling[:, 0]) == pytest.approx(np.mean(-0.5 * np.log(1 - rho**2)), abs=0.01)


def test_half_sample_variance_of_a_mean_is_s2_over_n():
    """For a mean, E((mean of a half - mean of its complement) / 2)^2 over random halves is s^2 / n
    exactly (the finite-population factor halves the variance of a half's mean): the average over
    10000 halves lies within 4% (its standard error is about 1.4%)."""
    x = np.random.default_rng(10).standard_normal(40)
    halves = stats.half_samples(40, 20_000, seed=1)
    se = stats.half_sample_se(x[halves].mean(axis=1))
    assert se**2 == pytest.approx(np.var(x, ddof=1) / 40, rel=0.04)
    # The t quantile has count / 2 degrees of freedom.
    low, high = stats.half_sample_interval(x.mean(), x[halves[:8]].mean(axis=1), level=0.9)
    expected = stats.student_t.ppf(0.95, 4) * stats.half_sample_se(x[halves[:8]].mean(axis=1))
    assert (high - low) / 2 == pytest.approx(expected, rel=1e-12)


def test_half_sample_interval_of_mean_kurtosis():
    """The stage's kurtosis_mean (mean excess kurtosis of 20 correlated Laplace neurons, N = 512):
    coverage 0.95 and half-width 0.97 x 1.96 sd over 150 trials here (0.91 and 0.93 with another
    seed; at N = 256: 0.86 and 0.81, the delete-a-group jackknife 0.93 and 0.86, for kurtosis's
    sampling distribution is skewed); under a second."""
    from tgo.geometry.information import excess_kurtosis
    rng = np.random.default_rng(11)

    def draw():
        return 0.6 * rng.laplace(size=(512, 1)) + rng.laplace(size=(512, 20))

    def kurtosis_mean(x):
        return np.nanmean(excess_kurtosis(x))
    sampling = [kurtosis_mean(draw()) for _ in range(400)]
    intervals = []
    for t in range(150):
        x = draw()
        reps = [kurtosis_mean(x[h]) for h in stats.half_samples(512, 20, t)]
        intervals.append(stats.half_sample_interval(kurtosis_mean(x), reps))
    check_calibrated(intervals, sampling)


def test_half_samples_are_complementary_and_reproducible():
    h = stats.half_samples(11, 6, seed=3)
    assert h.shape == (6, 5)
    assert np.array_equal(h, stats.half_samples(11, 6, seed=3))
    assert not np.array_equal(h, stats.half_samples(11, 6, seed=4))
    for a, b in zip(h[0::2], h[1::2]):
        assert np.all(np.diff(a) > 0) and np.all(np.diff(b) > 0)  # sorted, no repeats
        assert not set(a) & set(b) and len(set(a) | set(b)) == 10  # disjoint; one image left out
    for bad in (5, 2):
        with pytest.raises(ValueError, match="even and >= 4"):
            stats.half_samples(10, bad)


def test_half_sample_interval_is_nan_without_every_replicate():
    reps = np.array([[1.0, 2.0, 3.0, 5.0], [1.0, np.nan, 3.0, 5.0]])
    low, high = stats.half_sample_interval([2.0, 2.0], reps)
    assert np.isfinite(low[0]) and np.isfinite(high[0]) and np.isnan(low[1]) and np.isnan(high[1])
    # se from the complement differences (1 - 2) / 2 and (3 - 5) / 2: sqrt((0.25 + 1) / 2)
    assert stats.half_sample_se(reps[0]) == pytest.approx(np.sqrt(0.625))


def test_still_moving_is_a_step_beyond_the_half_width():
    # Interval [0.9, 1.1] at N: half-width 0.1. A step of 0.15 from N/2 moves, 0.05 does not.
    assert stats.still_moving(1.0, 0.85, 0.9, 1.1) and stats.still_moving(1.0, 1.15, 0.9, 1.1)
    assert not stats.still_moving(1.0, 0.95, 0.9, 1.1) and not stats.still_moving(1.0, 1.0, 0.9, 1.1)
    # A statistic the images do not change: an interval of zero width (up to rounding) never flags.
    assert not stats.still_moving(5.0, 4.0, 5.0 - 1e-12, 5.0 + 1e-12)
    assert not stats.still_moving(float("nan"), 1.0, 0.9, 1.1) and not stats.still_moving(1.0, 0.5, float("nan"), 1.1)
    # At the edges, exactly: a step of exactly the half-width does not move; a half-width of exactly
    # the rounding (1e-9 of the value) is zero width.
    assert not stats.still_moving(1.0, 1.5, 0.5, 1.5) and stats.still_moving(1.0, 1.5 + 1e-9, 0.5, 1.5)
    assert not stats.still_moving(1e9, 0.0, 1e9 - 1.0, 1e9 + 1.0) and stats.still_moving(1e9, 0.0, 1e9 - 2.0, 1e9 + 2.0)


def test_a_metric_converging_as_one_over_n_moves_at_small_n_only():
    """value(N) = 1 + 1/N with an interval of half-width 1/sqrt(N) around it (what a jackknife gives
    a mean): the step from N/2 to N is 1/N, below the half-width for N > 1: never moving; with a
    bias of 10/N (a small-sample bias larger than the noise) it moves until 100/N < sqrt(N)."""
    for n in (8, 32, 128, 512):
        half = n ** -0.5
        assert not stats.still_moving(1 + 1 / n, 1 + 2 / n, 1 + 1 / n - half, 1 + 1 / n + half)
        biased = stats.still_moving(1 + 10 / n, 1 + 20 / n, 1 + 10 / n - half, 1 + 10 / n + half)
        assert biased == (10 / n > half)


def test_replicates_leave_each_group_of_images_out_with_all_their_rows():
    rng = np.random.default_rng(7)
    units = np.repeat(np.arange(12), 3)  # 3 rows per image
    X = rng.standard_normal((36, 2))
    est, reps = stats.replicates(lambda x: x[:, 0].sum(), X, groups=4, seed=1, units=units)
    image_group = stats.image_groups(12, 4, 1)
    labels = stats.row_groups(image_group, units)
    np.testing.assert_array_equal(labels, [image_group[u] for u in units])
    assert est == pytest.approx(X[:, 0].sum(), rel=1e-12)
    np.testing.assert_allclose(reps, [X[labels != g, 0].sum() for g in range(4)], rtol=1e-12)


def test_standard_error_of_delete_one_means_is_s_over_sqrt_n():
    x = np.random.default_rng(8).standard_normal((3, 25))
    reps = (x.sum(axis=-1, keepdims=True) - x) / 24  # the mean without each value, per row
    np.testing.assert_allclose(stats.standard_error(reps), x.std(axis=-1, ddof=1) / 5, rtol=1e-12)


def test_nested_subsets_are_prefixes_of_one_reproducible_order():
    assert stats.nested_sizes(100) == [12, 25, 50, 100]
    assert stats.nested_sizes(10) == [2, 2, 5, 10]  # never fewer than 2 images
    order = stats.subset_order(50, seed=3)
    assert sorted(order) == list(range(50))
    np.testing.assert_array_equal(order, stats.subset_order(50, seed=3))
    np.testing.assert_array_equal(stats.subset_order(50), stats.subset_order(50, seed=0))  # the documented default
    assert not np.array_equal(order, stats.subset_order(50, seed=4))


@pytest.mark.parametrize("units", [None, np.repeat(np.arange(20), 3)])
def test_paired_interval_is_the_interval_of_the_paired_replicates(units):
    """By definition: statistic(X) - statistic(Y), and the jackknife interval of the differences of
    replicates with the same images (units: rows of one image leave together) left out of both."""
    rng = np.random.default_rng(12)
    X, Y = rng.standard_normal(60), rng.standard_normal(60) + 0.3
    est, low, high = stats.paired_interval(np.mean, X, Y, 0.9, 4, 8, units)
    ex, rx = stats.replicates(np.mean, X, 8, 4, units)
    ey, ry = stats.replicates(np.mean, Y, 8, 4, units)
    assert est == pytest.approx(np.mean(X) - np.mean(Y), rel=1e-12)
    assert (low, high) == pytest.approx(stats.interval(ex - ey, rx - ry, 0.9), rel=1e-12)
    assert isinstance(low, float) and isinstance(high, float)
    assert all(isinstance(x, float) for x in stats.half_sample_interval(0.1, rx[:8], 0.9))
    labels = stats.row_groups(stats.image_groups(60 if units is None else 20, 8, 4),
                              np.arange(60) if units is None else units)
    np.testing.assert_allclose(rx, [X[labels != g].mean() for g in range(8)], rtol=1e-12)
    assert stats.paired_interval(np.mean, X, Y) == stats.paired_interval(np.mean, X, Y, 0.95, 0)


def test_half_samples_default_to_20_from_seed_0():
    np.testing.assert_array_equal(stats.half_samples(30), stats.half_samples(30, 20, 0))
    assert stats.half_samples(30).shape == (20, 15)


def test_mean_replicates_of_float16_values_are_computed_in_float64():
    values = (np.random.default_rng(6).standard_normal((300, 2)) * 100).astype(np.float16)
    labels = stats.image_groups(300)
    np.testing.assert_array_equal(stats.mean_replicates(values, labels),
                                  stats.mean_replicates(values.astype(np.float64), labels))


@pytest.mark.parametrize("shape", [(23,), (23, 3)])
def test_mean_replicates_are_the_means_without_each_group(shape):
    """By definition, over uneven groups: replicate g is the mean of the values outside group g."""
    values = np.random.default_rng(5).standard_normal(shape)
    labels = stats.image_groups(23, groups=5)
    want = np.stack([values[labels != g].mean(axis=0) for g in range(5)])
    assert np.bincount(labels).min() < np.bincount(labels).max()
    np.testing.assert_allclose(stats.mean_replicates(values, labels), want, rtol=1e-12)


def test_bonferroni_of_one_comparison_is_the_level_itself():
    """m = 1 (and m = 0, no comparison): nothing to share, the level as given."""
    assert stats.bonferroni(0.95, 1) == pytest.approx(0.95, abs=1e-15)
    assert stats.bonferroni(0.95, 0) == pytest.approx(0.95, abs=1e-15)
    assert stats.bonferroni(0.9, 4) == pytest.approx(0.975, abs=1e-15)


def test_confidence_interval_is_the_t_interval_of_its_group_replicates():
    """By definition, with 6 uneven groups of 45 values: the estimate, the replicates without each
    group of ``image_groups(45, 6, seed)`` and estimate -+ t_{5, 0.95} sqrt(5/6 sum (theta_g - mean)^2);
    the defaults are level 0.95, seed 0 and 20 groups."""
    x = np.random.default_rng(13).standard_normal(45)
    est, low, high = stats.confidence_interval(np.mean, x, level=0.9, seed=3, groups=6)
    labels = stats.image_groups(45, 6, 3)
    reps = np.array([x[labels != g].mean() for g in range(6)])
    half = stats.student_t.ppf(0.95, 5) * np.sqrt(5 / 6 * np.sum((reps - reps.mean()) ** 2))
    assert (est, low, high) == pytest.approx((x.mean(), x.mean() - half, x.mean() + half), rel=1e-12)
    assert stats.confidence_interval(np.mean, x) == stats.confidence_interval(np.mean, x, 0.95, 0, 20)
    default = stats.image_groups(45, 20, 0)
    est, reps = stats.replicates(np.mean, x)
    np.testing.assert_allclose(reps, [x[default != g].mean() for g in range(20)], rtol=1e-12)


def test_interval_is_floats_for_a_scalar_and_arrays_for_a_vector():
    """A scalar estimate gives two plain Python floats, a vector of estimates (replicates on the last
    axis) two float64 arrays, row i the interval of estimate i: for both the jackknife and the
    half-sample interval."""
    reps = np.random.default_rng(14).standard_normal((3, 8))
    est = np.array([0.5, -1.0, 2.0])
    for fn, se, dof in ((stats.interval, stats.standard_error, 7),
                        (stats.half_sample_interval, stats.half_sample_se, 4)):
        low, high = fn(est, reps, 0.9)
        assert isinstance(low, np.ndarray) and low.dtype == high.dtype == np.float64 and low.shape == (3,)
        half = stats.student_t.ppf(0.95, dof) * np.array([se(r) for r in reps])
        np.testing.assert_allclose(np.c_[low, high], np.c_[est - half, est + half], rtol=1e-12)
        one = fn(est[1], reps[1], 0.9)
        assert type(one[0]) is float and type(one[1]) is float
        assert one == pytest.approx((low[1], high[1]), rel=1e-12)


def test_a_missing_estimate_reads_as_nan():
    """None as the estimate, or an entry of it, is a missing value: cast to float64 it is nan, so
    its interval is nan (as for a nan estimate), not a TypeError."""
    reps = [[1.0, 2.0, 3.0, 5.0], [1.0, 2.0, 4.0, 4.0]]
    for fn in (stats.interval, stats.half_sample_interval):
        assert all(np.isnan(v) for v in fn(None, reps[0]))
        low, high = fn([None, 2.0], reps)
        assert np.isnan(low[0]) and np.isnan(high[0]) and np.isfinite(low[1]) and np.isfinite(high[1])


def test_standard_errors_of_float32_replicates_are_computed_in_float64():
    """Replicates stored in float32: both standard errors equal those of the same values in float64,
    and the replicates of a statistic returning float32 are float64, so a paired interval takes the
    differences of the replicates in float64 (a float32 difference of 10.x - 0.1x rounds at 1e-6)."""
    reps32 = (np.random.default_rng(15).standard_normal((4, 20)) * 1e3 + 1e4).astype(np.float32)
    for se in (stats.standard_error, stats.half_sample_se):
        got, want = se(reps32), se(reps32.astype(np.float64))
        assert got.dtype == np.float64
        np.testing.assert_allclose(got, want, rtol=1e-13)

    def mean32(x):
        return np.float32(x.mean())
    rng = np.random.default_rng(16)
    X, Y = rng.standard_normal(60) + 10, rng.standard_normal(60) * 0.1
    est, low, high = stats.paired_interval(mean32, X, Y, 0.9, 4, 8)
    labels = stats.image_groups(60, 8, 4)
    diff = np.array([float(mean32(X[labels != g])) - float(mean32(Y[labels != g])) for g in range(8)])
    assert stats.replicates(mean32, X, 8, 4)[1].dtype == np.float64
    assert (low, high) == pytest.approx(stats.interval(est, diff, 0.9), rel=1e-13)
