"""Tests for tgo.geometry.information: KSG against the Gaussian truth -1/2 log(1 - rho^2)
and a brute-force O(n^2) implementation, distance profiles of planted Gaussian random
fields, kurtosis of known distributions and row-normalised conditional histograms."""

import math

import numpy as np
import pytest
from scipy import stats
from scipy.special import digamma

from tgo.geometry import information as im
from tgo.geometry import stats as ci


def _gaussian_pair(rho, n, seed):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal(n)
    y = rho * x + np.sqrt(1.0 - rho**2) * rng.standard_normal(n)
    return x, y


def _truth(rho):
    return -0.5 * np.log(1.0 - rho**2)


def _brute_ksg(x, y, k=3, standardise=True):
    """KSG estimator 1 written out directly: all pairwise max-norm distances (of the standardised
    values, or of x and y as given)."""
    if standardise:
        x = (x - x.mean()) / x.std()
        y = (y - y.mean()) / y.std()
    dx = np.abs(x[:, None] - x[None, :])
    dy = np.abs(y[:, None] - y[None, :])
    d = np.maximum(dx, dy)
    np.fill_diagonal(d, np.inf)
    eps = np.sort(d, axis=1)[:, k - 1]
    nx = (dx < eps[:, None]).sum(axis=1) - 1  # minus self
    ny = (dy < eps[:, None]).sum(axis=1) - 1
    return digamma(k) + digamma(x.size) - np.mean(digamma(nx + 1) + digamma(ny + 1))


# --- estimators ---------------------------------------------------------------------


@pytest.mark.parametrize("rho", [0.0, 0.3, 0.6, 0.9])
def test_ksg_minus_shuffle_matches_gaussian_truth(rho):
    # One sample, seed 0. Over 200 seeds the error (KSG minus one shuffle) has mean
    # |bias| < 0.006 and sd 0.023-0.030 nats (scikit-learn's estimator scatters alike;
    # even the Gaussian MLE of the sample scatters by 0.021 at rho = 0.9), so 20-30% of
    # single samples miss 0.03; the mean over seeds is tested below.
    x, y = _gaussian_pair(rho, 2000, 0)
    mi = im.ksg_mi(x, y) - im.shuffle_baseline(x, y, seed=0)
    assert abs(mi - _truth(rho)) < 0.03


@pytest.mark.parametrize("rho", [0.0, 0.9])
def test_ksg_minus_shuffle_is_unbiased_over_samples(rho):
    errors = []
    for seed in range(1, 21):
        x, y = _gaussian_pair(rho, 2000, seed)
        errors.append(im.ksg_mi(x, y) - im.shuffle_baseline(x, y, seed=seed) - _truth(rho))
    # 20 samples with sd <= 0.03: the mean's standard error is <= 0.007.
    assert abs(np.mean(errors)) < 0.015


def test_binned_mi_is_the_plug_in_mi_of_equal_frequency_bins():
    """The definition computed another way: each sample's bin from its position in sorted order
    (distinct values) or its average rank (ties share a bin), and scikit-learn's plug-in MI of the
    two labelings."""
    from sklearn.metrics import mutual_info_score
    rng = np.random.default_rng(7)
    x = rng.standard_normal(103)
    y = x + rng.standard_normal(103)
    bins_x = np.argsort(np.argsort(x)) * 8 // 103
    bins_y = np.argsort(np.argsort(y)) * 8 // 103
    assert im.binned_mi(x, y, bins=8) == pytest.approx(mutual_info_score(bins_x, bins_y), rel=1e-12)
    ties = np.repeat(np.arange(4.0), 25)  # 4 values, 25 each: average ranks 13, 38, 63, 88 -> bins 0, 2, 4, 6
    y = ties + rng.standard_normal(100)
    bins_y = np.argsort(np.argsort(y)) * 8 // 100
    assert im.binned_mi(ties, y, bins=8) == pytest.approx(mutual_info_score(ties, bins_y), rel=1e-12)
    assert im.binned_mi(np.arange(10.0), np.arange(10.0), bins=4) == pytest.approx(mutual_info_score(
        np.arange(10) * 4 // 10, np.arange(10) * 4 // 10), rel=1e-12)


def test_binned_mi_defaults_to_16_bins():
    x = np.random.default_rng(8).standard_normal(160)  # 10 per bin: MI = log 16
    assert im.binned_mi(x, x ** 3) == im.binned_mi(x, x ** 3, bins=16) == pytest.approx(np.log(16))


def test_binned_mi_approaches_gaussian_truth():
    # 16 quantile bins, n = 200000: discretisation loses ~0.01-0.02 nats and the
    # plug-in bias adds (16-1)^2 / (2n) ~ 0.0006, so the tolerance is 0.04 nats.
    x, y = _gaussian_pair(0.6, 200_000, 5)
    assert abs(im.binned_mi(x, y, bins=16) - _truth(0.6)) < 0.04
    xi, yi = _gaussian_pair(0.0, 200_000, 6)
    assert im.binned_mi(xi, yi, bins=16) < 0.002


@pytest.mark.parametrize("rho,transform", [(0.0, None), (0.5, np.exp), (0.9, np.sinh)])
def test_ksg_equals_brute_force(rho, transform):
    x, y = _gaussian_pair(rho, 200, 11)
    if transform is not None:
        y = transform(y)
    assert abs(im.ksg_mi(x, y) - _brute_ksg(x, y)) < 1e-10


@pytest.mark.parametrize("k", [1, 5])
def test_ksg_equals_brute_force_for_other_k(k):
    # Each k is its own compiled kernel (k is a constant of the code).
    x, y = _gaussian_pair(0.5, 300, 12)
    assert abs(im.ksg_mi(x, y, k=k) - _brute_ksg(x, y, k=k)) < 1e-10


def test_batch_equals_single():
    rng = np.random.default_rng(3)
    x = rng.standard_normal((5, 300))
    y = 0.5 * x + rng.standard_normal((5, 300))
    batch = im.ksg_mi_batch(x, y)
    single = [im.ksg_mi(a, b) for a, b in zip(x, y)]
    np.testing.assert_allclose(batch, single, atol=1e-12)
    shared = im.ksg_mi_batch(x[0], y)
    np.testing.assert_allclose(shared, [im.ksg_mi(x[0], b) for b in y], atol=1e-12)


def test_ksg_invariant_to_positive_affine_maps():
    x, y = _gaussian_pair(0.7, 500, 4)
    base = im.ksg_mi(x, y)
    assert abs(im.ksg_mi(3.0 * x - 7.0, 0.01 * y + 2.0) - base) < 1e-9
    assert abs(im.ksg_mi(y, x) - base) < 1e-9  # symmetric


def test_ksg_handles_float16_ties():
    x, y = _gaussian_pair(0.6, 2000, 8)
    x16, y16 = x.astype(np.float16), y.astype(np.float16)
    mi = im.ksg_mi(x16, y16)
    assert abs(mi - im.ksg_mi(x, y)) < 0.01
    # float16 values are standardised in float64: exactly the result of their float64 copies
    assert mi == im.ksg_mi(x16.astype(np.float64), y16.astype(np.float64))
    np.testing.assert_array_equal(im.conditional_histogram(x16, y16)[1],
                                  im.conditional_histogram(x16.astype(np.float64), y16.astype(np.float64))[1])


def test_ksg_breaks_ties_with_the_documented_jitter():
    """Tied values, and values 1e-10 apart (the jitter's size), make KSG depend on how ties are broken:
    it is the brute-force KSG of the standardised values plus 1e-10 * max(1, mean|v|) * N(0, 1), the
    normal draws from numpy default_rng(0), x's the first n and y's the next n."""
    rng = np.random.default_rng(13)
    n = 200
    x = rng.integers(0, 4, n) + 1e-10 * rng.integers(0, 3, n)
    y = x // 2 + rng.integers(0, 2, n) + 1e-10 * rng.integers(0, 3, n)
    z = np.random.default_rng(0).standard_normal(2 * n)

    def jittered(v, draws):
        v = v - v.mean()
        v = v / v.std()
        return v + 1e-10 * max(1.0, np.abs(v).mean()) * draws
    want = _brute_ksg(jittered(x, z[:n]), jittered(y, z[n:]), standardise=False)
    assert abs(im.ksg_mi(x, y) - want) < 1e-12


def test_batch_rows_are_standardised_alone():
    """Rows of tied values at very different levels (where the size of each row's tie-breaking jitter
    decides the neighbour counts): each row of the batch equals ksg_mi of that row alone."""
    rng = np.random.default_rng(17)
    x = rng.integers(0, 4, (3, 150)) + 100.0 * np.arange(3)[:, None]
    y = x // 2 + rng.integers(0, 2, (3, 150)) - 50.0 * np.arange(3)[:, None]
    np.testing.assert_allclose(im.ksg_mi_batch(x, y), [im.ksg_mi(a, b) for a, b in zip(x, y)], atol=1e-12)


def test_batch_of_many_rows_computes_every_row():
    """600 rows, more than two tasks of 256 rows: every row equals ksg_mi of that row alone."""
    rng = np.random.default_rng(16)
    x = rng.standard_normal(40)
    y = 0.6 * x + rng.standard_normal((600, 40))
    np.testing.assert_allclose(im.ksg_mi_batch(x, y), [im.ksg_mi(x, b) for b in y], atol=1e-12)


def test_a_constant_neuron_carries_no_information():
    """A constant neuron standardises to 0 (its zero spread is not divided by): KSG sees only the
    tie-breaking jitter, independent of the other neuron (about 0 nats), and the conditional histogram
    puts every sample in the middle x bin."""
    _, y = _gaussian_pair(0.0, 1000, 15)
    const = np.full(1000, 2.5)
    assert abs(im.ksg_mi(const, y)) < 0.05 and abs(im.ksg_mi(y, const)) < 0.05
    edges, H = im.conditional_histogram(const, y, bins=5)
    want = np.histogram(np.clip((y - y.mean()) / y.std(), -3, 3), bins=edges)[0] / 1000
    np.testing.assert_allclose(H[2], want, rtol=1e-12)
    assert not H[[0, 1, 3, 4]].any()


def test_shuffle_baseline_is_the_mean_ksg_of_permuted_copies():
    """The definition computed another way: the mean of ksg_mi(x, y[perm]) over n_shuffles permutations
    drawn in turn from default_rng(seed); by default k = 3, one shuffle, seed 0."""
    x, y = _gaussian_pair(0.5, 300, 14)

    def by_hand(k, n_shuffles, seed):
        rng = np.random.default_rng(seed)
        return np.mean([im.ksg_mi(x, y[rng.permutation(300)], k=k) for _ in range(n_shuffles)])
    assert abs(im.shuffle_baseline(x, y) - by_hand(3, 1, 0)) < 1e-12
    assert abs(im.shuffle_baseline(x, y, k=5, n_shuffles=3, seed=9) - by_hand(5, 3, 9)) < 1e-12


# --- distance profiles --------------------------------------------------------------


def _field(n, grid, n_channels, length, seed):
    """(n, P, C) Gaussian random field: cov(p, q) = exp(-|p - q| / length), channels iid."""
    rows, cols = grid
    r, c = np.divmod(np.arange(rows * cols), cols)
    dist = np.hypot(r[:, None] - r[None, :], c[:, None] - c[None, :])
    chol = np.linalg.cholesky(np.exp(-dist / length) if length > 0 else np.eye(rows * cols))
    z = np.random.default_rng(seed).standard_normal((n, n_channels, rows * cols))
    return np.ascontiguousarray((z @ chol.T).transpose(0, 2, 1))


def _bin_truth(grid, references, length, distances):
    """Per distance bin, the Gaussian truth -1/2 log(1 - rho^2), rho = exp(-|p - a| / length), averaged
    over every (reference a, patch p) pair whose rounded grid distance is the bin's: loops, not
    ``distance_bins``."""
    rows, cols = grid
    truth = {d: [] for d in distances}
    for a in references:
        for r in range(rows):
            for c in range(cols):
                exact = math.hypot(r - a[0], c - a[1])
                if (r, c) != tuple(a) and round(exact) in truth:
                    truth[round(exact)].append(_truth(math.exp(-exact / length)))
    return np.array([np.mean(truth[d]) for d in distances])


@pytest.fixture(scope="module")
def field_profile():
    acts = _field(2000, (7, 7), 6, 2.0, 21)
    return im.mi_vs_distance(acts, (7, 7), channels=range(6))


def test_mi_vs_distance_decays_and_matches_truth(field_profile):
    res = field_profile
    assert res["references"] == [(3, 3)] and res["n_channels"] == 6 and res["dropped"] == []
    np.testing.assert_array_equal(res["distances"], [1, 2, 3, 4])
    assert np.all(np.diff(res["mi"]) < 0)
    np.testing.assert_allclose(res["mi"], _bin_truth((7, 7), [(3, 3)], 2.0, [1, 2, 3, 4]), atol=0.03)
    assert res["mi_std"].shape == res["mi"].shape
    assert im.mi_decay_rate(res["distances"], res["mi"]) > 0


def test_mi_vs_distance_averages_the_four_centre_references():
    """An even grid: MI(d) averages the pairs from all four central patches, each bin's truth too."""
    acts = _field(1500, (6, 6), 4, 1.5, 23)
    res = im.mi_vs_distance(acts, (6, 6), channels=range(4), n_shuffles=3)
    assert res["references"] == [(2, 2), (2, 3), (3, 2), (3, 3)] and res["n_shuffles"] == 3
    np.testing.assert_array_equal(res["distances"], [1, 2, 3, 4])
    np.testing.assert_allclose(res["mi"], _bin_truth((6, 6), res["references"], 1.5, [1, 2, 3, 4]), atol=0.02)


def test_mi_vs_distance_defaults_to_ksg_with_3_neighbours_and_one_shuffle_from_seed_0():
    acts = _field(300, (5, 5), 2, 1.0, 26)
    got = im.mi_vs_distance(acts, (5, 5), channels=[0, 1])
    want = im.mi_vs_distance(acts, (5, 5), channels=[0, 1], k=3, estimator="ksg", n_shuffles=1, seed=0)
    np.testing.assert_array_equal(got["mi"], want["mi"])
    assert got["estimator"] == "ksg"
    for other in ({"k": 4}, {"n_shuffles": 2}, {"seed": 1}):
        assert not np.array_equal(im.mi_vs_distance(acts, (5, 5), channels=[0, 1], **other)["mi"], got["mi"]), other


def test_mi_vs_distance_with_the_binned_estimator():
    """The binned estimator less its shuffle baseline: about 0 for independent patches, falling with
    distance near the Gaussian truth for a correlated field (binning loses a little of it)."""
    none = im.mi_vs_distance(_field(1000, (5, 5), 2, 0.0, 24), (5, 5), channels=[0, 1], estimator="binned",
                             n_shuffles=2, min_patches=1)
    assert np.all(np.abs(none["mi"]) < 0.02)
    some = im.mi_vs_distance(_field(1500, (5, 5), 2, 2.0, 25), (5, 5), channels=[0, 1], estimator="binned",
                             n_shuffles=2)
    truth = _bin_truth((5, 5), some["references"], 2.0, some["distances"])
    assert np.all(np.diff(some["mi"]) < 0) and np.all(some["mi"] < truth + 0.03) and np.all(some["mi"] > truth / 2)


def test_mi_vs_distance_takes_plain_python_data():
    """Activations as nested lists and channel numbers as integral floats (as read from a text file):
    the same curve as from arrays."""
    acts = _field(100, (3, 3), 2, 1.0, 27)
    want = im.mi_vs_distance(acts, (3, 3), channels=[0, 1])
    got = im.mi_vs_distance(acts.tolist(), (3, 3), channels=[0.0, 1.0])
    np.testing.assert_array_equal(got["mi"], want["mi"])
    np.testing.assert_array_equal(got["distances"], want["distances"])


def test_mi_vs_distance_averages_each_pairs_own_shuffle_corrected_mi(monkeypatch):
    """The bookkeeping around the estimator, with a stand-in for it whose values are known: pair
    (channel c, patch p) has MI value(c, p, -1) less the mean of value(c, p, s) over its own shuffles s;
    a channel's MI at distance d is the mean over its patches at d from its reference (channel i of
    the list from centre reference i mod 4); mi and mi_std are the mean and standard deviation of that
    over the channels. Computed with loops over the grid."""
    grid, channels, n_shuffles = (4, 4), [5, 2, 7], 2

    def value(c, p, s):
        return np.sin(1.3 * c + 0.7 * p * (s + 2)) + 0.05 * p

    def stand_in(xs, order, xrow, y, k, perms):  # y row = 100 c + p in every image
        c, p = np.divmod(np.rint(y[:, 0]).astype(int), 100)
        return np.stack([value(c, p, s) for s in range(-1, perms.shape[1])], axis=1)
    monkeypatch.setattr(im, "_ksg", stand_in)
    acts = np.broadcast_to(100.0 * np.arange(8) + np.arange(16)[:, None], (20, 16, 8))
    res = im.mi_vs_distance(acts, grid, channels, n_shuffles=n_shuffles)
    refs = im.centre_references(grid)
    per_channel = np.zeros((len(channels), res["distances"].size))
    for i, c in enumerate(channels):
        a = refs[i % len(refs)]
        for b, d in enumerate(res["distances"]):
            at_d = [r * 4 + q for r in range(4) for q in range(4)
                    if (r, q) != a and round(math.hypot(r - a[0], q - a[1])) == d]
            per_channel[i, b] = np.mean([value(c, p, -1) - np.mean([value(c, p, s) for s in range(n_shuffles)])
                                         for p in at_d])
    np.testing.assert_allclose(res["mi"], per_channel.mean(axis=0), rtol=1e-12)
    np.testing.assert_allclose(res["mi_std"], per_channel.std(axis=0), rtol=1e-12)


def _sparse(n, n_patches, n_channels, seed):
    """(n, P, C) independent values, each 0 with probability 0.7 (ties, as after a ReLU), else |N(0, 1)|."""
    rng = np.random.default_rng(seed)
    v = np.abs(rng.standard_normal((n, n_patches, n_channels)))
    return np.where(rng.random(v.shape) < 0.7, 0.0, v)


def test_mi_vs_distance_shuffles_the_values_and_jitters_them_as_shuffle_baseline_does():
    """The definition computed another way, on tied values (where the tie-breaking jitter decides the
    neighbours): each pair's MI is ksg_mi(x, y) less the mean of ksg_mi(x, y[perm]) over its shuffles,
    the permutations drawn as documented (default_rng(seed), n_shuffles per pair, pair by pair)."""
    n, n_shuffles, seed = 40, 2, 3
    acts = _sparse(n, 9, 1, 5)
    res = im.mi_vs_distance(acts, (3, 3), channels=[0], reference=(1, 1), n_shuffles=n_shuffles, seed=seed,
                            min_patches=1)
    others = [p for p in range(9) if p != 4]
    perms = np.random.default_rng(seed).permuted(np.broadcast_to(np.arange(n), (len(others), n_shuffles, n)), axis=2)
    x = acts[:, 4, 0]
    mi = {p: im.ksg_mi(x, acts[:, p, 0]) - np.mean([im.ksg_mi(x, acts[perm, p, 0]) for perm in perms[j]])
          for j, p in enumerate(others)}
    want = [np.mean([mi[p] for p in others if round(math.hypot(*np.subtract(divmod(p, 3), (1, 1)))) == d])
            for d in res["distances"]]
    np.testing.assert_allclose(res["mi"], want, rtol=1e-12, atol=1e-15)


def test_mi_vs_distance_of_independent_tied_values_is_zero_on_average():
    """Independent values, 70% of them tied at 0: the shuffle-corrected MI is 0 up to its noise (the
    shuffles must keep the jitter's own dependence on position, which the estimator sees in the ties)."""
    res = im.mi_vs_distance(_sparse(40, 25, 200, 8), (5, 5), channels=range(200), reference=(2, 2), min_patches=1)
    per_channel_se = res["mi_std"] / math.sqrt(res["n_channels"])
    assert np.all(np.abs(res["mi"]) < 4 * per_channel_se), (res["mi"], per_channel_se)


def test_mi_vs_distance_independent_patches():
    acts = _field(1000, (5, 5), 4, 0.0, 22)
    res = im.mi_vs_distance(acts, (5, 5), channels=[0, 2, 3], reference=(1, 2))
    assert res["references"] == [(1, 2)]
    assert np.all(np.abs(res["mi"]) < 0.02)
    # From (1, 2) only (4, 0) and (4, 4) lie at distance 4 (hypot(3, 2) = 3.6): the bin is dropped.
    np.testing.assert_array_equal(res["distances"], [1, 2, 3])
    assert res["dropped"] == [{"distance": 4, "patches_per_reference": 2.0,
                               "reason": "fewer than 4 patches per reference"}]


@pytest.mark.parametrize("grid, expected", [
    ((8, 8), [(3, 3), (3, 4), (4, 3), (4, 4)]), ((7, 7), [(3, 3)]), ((7, 8), [(3, 3), (3, 4)]),
    ((8, 7), [(3, 3), (4, 3)]), ((14, 14), [(6, 6), (6, 7), (7, 6), (7, 7)])])
def test_centre_references(grid, expected):
    refs = im.centre_references(grid)
    assert refs == expected
    # The centre: each reference's mirror image through the grid centre is a reference too.
    assert {(grid[0] - 1 - r, grid[1] - 1 - c) for r, c in refs} == set(refs)


def test_distance_bins_drop_the_sparse_corners():
    """8x8 from its four centre patches, counted with loops: distance 6 holds one patch per reference
    (the far corner, hypot(4, 4) = 5.66), every other bin at least 4."""
    refs = im.centre_references((8, 8))
    counts = {}
    for a in refs:
        for r in range(8):
            for c in range(8):
                if (r, c) != a:
                    d = round(math.hypot(r - a[0], c - a[1]))
                    counts[d] = counts.get(d, 0) + 1
    dist, kept, dropped = im.distance_bins((8, 8), refs)
    assert list(kept) == [d for d in sorted(counts) if counts[d] / 4 >= 4] == [1, 2, 3, 4, 5]
    assert dropped == [{"distance": 6, "patches_per_reference": counts[6] / 4,
                        "reason": "fewer than 4 patches per reference"}] and counts[6] == 4
    assert dist.shape == (4, 64) and all(dist[i, r * 8 + c] == -1 for i, (r, c) in enumerate(refs))
    assert dist.dtype.kind == kept.dtype.kind == "i"  # whole patches of distance


@pytest.fixture(scope="module")
def halves_profile():
    acts = _field(120, (4, 4), 2, 2.0, 24).astype(np.float16)
    halves = ci.half_samples(120, 4, seed=5)
    kw = dict(grid=(4, 4), channels=[0, 1], n_shuffles=2, seed=7)
    return acts, halves, kw, im.mi_vs_distance(acts, half_samples=halves, **kw)


def test_half_sample_replicates_are_the_curve_of_each_half_alone(halves_profile):
    acts, halves, kw, res = halves_profile
    assert res["mi_halves"].shape == (4, res["distances"].size)
    for replicate, h, s in zip(res["mi_halves"], halves, np.random.SeedSequence(7).spawn(4)):
        np.testing.assert_array_equal(replicate, im.mi_vs_distance(acts[h], **{**kw, "seed": s})["mi"])


def test_mi_vs_distance_is_deterministic_and_its_halves_leave_the_curve_alone(halves_profile):
    acts, halves, kw, res = halves_profile
    again = im.mi_vs_distance(acts, half_samples=halves, **kw)
    np.testing.assert_array_equal(again["mi"], res["mi"])
    np.testing.assert_array_equal(again["mi_halves"], res["mi_halves"])
    np.testing.assert_array_equal(im.mi_vs_distance(acts, **kw)["mi"], res["mi"])
    assert not np.array_equal(res["mi_halves"][0], res["mi_halves"][1])
    with pytest.raises(ValueError, match="outside"):
        im.mi_vs_distance(acts, half_samples=halves + 60, **kw)


# --- the decay rate -------------------------------------------------------------------


def test_mi_decay_rate_of_a_line():
    """MI(d) = a - b d: the slope is -b exactly, so the rate is b / (a - b d_min)."""
    d = np.array([1, 2, 3, 4, 5])
    assert im.mi_decay_rate(d, 0.5 - 0.08 * d) == pytest.approx(0.08 / 0.42, rel=1e-12)
    # Past zero: far distances with negative MI stay in the fit (a log-MI slope would drop them).
    assert im.mi_decay_rate(d, 0.1 - 0.04 * d) == pytest.approx(0.04 / 0.06, rel=1e-12)
    assert im.mi_decay_rate(np.array([2, 3, 5]), 0.3 + 0.01 * np.array([2, 3, 5])) == pytest.approx(-0.01 / 0.32)
    # The nearest distance, wherever it stands in the list.
    assert im.mi_decay_rate([3, 1, 2], 0.5 - 0.08 * np.array([3, 1, 2])) == pytest.approx(0.08 / 0.42, rel=1e-12)


@pytest.mark.parametrize("lam", [0.1, 0.7, 2.0])
def test_mi_decay_rate_of_an_exponential(lam):
    """MI = A exp(-lam d): at d = 1, 2 the slope is A (e^-2lam - e^-lam), the rate 1 - e^-lam; at
    d = 1, 2, 3 the slope is (MI_3 - MI_1) / 2, the rate (1 - e^-2lam) / 2; unchanged by A."""
    for amplitude in (0.02, 3.0):
        assert im.mi_decay_rate([1, 2], amplitude * np.exp(-lam * np.array([1, 2]))) == \
            pytest.approx(1 - np.exp(-lam), rel=1e-12)
        assert im.mi_decay_rate([1, 2, 3], amplitude * np.exp(-lam * np.array([1, 2, 3]))) == \
            pytest.approx((1 - np.exp(-2 * lam)) / 2, rel=1e-12)


def test_mi_decay_rate_is_vectorised_and_nan_where_undefined():
    rng = np.random.default_rng(25)
    d = np.array([1, 2, 3, 4])
    curves = rng.uniform(0.01, 0.3, size=(3, 5, 4))
    rates = im.mi_decay_rate(d, curves)
    assert rates.shape == (3, 5)
    for idx in np.ndindex(3, 5):
        assert rates[idx] == pytest.approx(-np.polyfit(d, curves[idx], 1)[0] / curves[idx][0], rel=1e-10)
    one = im.mi_decay_rate([1], [0.2])  # one distance
    assert np.isnan(one) and isinstance(one, float)
    assert im.mi_decay_rate([1], np.ones((3, 1))).shape == (3,)  # ... for each curve
    assert im.mi_decay_rate([2, 2], np.ones((3, 5, 2))).shape == (3, 5)  # one distinct distance, every curve
    # float16 curves (as stored) are computed in float64
    c16, d16 = curves.astype(np.float16), (d * 1.1).astype(np.float16)
    np.testing.assert_array_equal(im.mi_decay_rate(d16, c16), im.mi_decay_rate(d16.astype(np.float64),
                                                                               c16.astype(np.float64)))
    assert np.isnan(im.mi_decay_rate([1, 2], [0.0, -0.1]))  # nothing at the nearest distance to lose
    assert np.isnan(im.mi_decay_rate([1, 2], [-0.01, -0.02]))
    assert np.isnan(im.mi_decay_rate([1, 2], [0.2, np.nan]))
    assert isinstance(im.mi_decay_rate([1, 2], [0.2, 0.1]), float)


# --- kurtosis and conditional histograms --------------------------------------------


def test_excess_kurtosis():
    rng = np.random.default_rng(7)
    v = np.column_stack([rng.standard_normal(400_000), rng.laplace(size=400_000)])
    k = im.excess_kurtosis(v)
    assert abs(k[0]) < 0.05 and abs(k[1] - 3.0) < 0.15


def test_excess_kurtosis_equals_scipy_across_blocks_and_axes():
    rng = np.random.default_rng(8)
    v = rng.standard_t(5, size=(300, 5000)).astype(np.float16)  # several 512-neuron blocks
    np.testing.assert_allclose(im.excess_kurtosis(v), stats.kurtosis(v.astype(np.float64), axis=0), atol=1e-10)
    np.testing.assert_allclose(im.excess_kurtosis(v.T, axis=1), stats.kurtosis(v.T.astype(np.float64), axis=1),
                               atol=1e-10)
    v3 = v.reshape(300, 50, 100)
    assert im.excess_kurtosis(v3).shape == (50, 100)
    assert np.isnan(im.excess_kurtosis(np.ones((10, 1)))[0])  # a constant neuron has no kurtosis


def test_conditional_histogram_is_p_of_y_given_x_with_the_tails_in_the_edge_bins():
    """The definition computed another way: each standardised sample's bin, values beyond +-range_sd
    in the first or last bin, counted per x bin and divided by the row's total."""
    rng = np.random.default_rng(11)
    x, y = rng.standard_normal(400), rng.standard_normal(400)
    x[:4], y[:4] = [30.0, -30.0, 30.0, -30.0], [-30.0, 30.0, 30.0, -30.0]  # beyond 3 SD, every corner
    edges, H = im.conditional_histogram(x, y, bins=6, range_sd=2)

    def bin_of(v):
        z = (v - v.mean()) / v.std()
        return np.clip(np.floor((z + 2) / (4 / 6)).astype(int), 0, 5)
    joint = np.zeros((6, 6))
    np.add.at(joint, (bin_of(x), bin_of(y)), 1.0)
    np.testing.assert_allclose(edges, np.linspace(-2, 2, 7))
    np.testing.assert_allclose(H, joint / joint.sum(axis=1, keepdims=True), rtol=1e-12)
    assert H[5, 0] > 0 and H[0, 5] > 0 and H[5, 5] > 0 and H[0, 0] > 0


def test_conditional_histogram_rows():
    x, y = _gaussian_pair(0.5, 5000, 9)
    edges, H = im.conditional_histogram(x, y, bins=21, range_sd=3)
    assert edges.shape == (22,) and H.shape == (21, 21)
    sums = H.sum(axis=1)
    assert np.all(np.isclose(sums, 1.0) | (sums == 0))
    assert np.isclose(sums[10], 1.0)
    _, Hc = im.conditional_histogram(np.r_[np.zeros(10), 1.0], np.arange(11.0), bins=5)
    assert np.all(np.isclose(Hc.sum(axis=1), 1.0) | (Hc.sum(axis=1) == 0))
    assert np.any(Hc.sum(axis=1) == 0)
    assert Hc[-1].sum() == 1.0  # the one sample at x = 1 (clipped to 3 SD) is a row of its own
    np.testing.assert_array_equal(im.conditional_histogram(x, y)[1], im.conditional_histogram(x, y, 21, 3)[1])
