"""Tests for tgo.geometry.information: KSG against the Gaussian truth -1/2 log(1 - rho^2)
and a brute-force O(n^2) implementation, distance profiles of planted Gaussian random
fields, kurtosis of known distributions and row-normalised conditional histograms."""

import numpy as np
import pytest
from scipy import stats
from scipy.special import digamma

from tgo.geometry import information as im


def _gaussian_pair(rho, n, seed):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal(n)
    y = rho * x + np.sqrt(1.0 - rho**2) * rng.standard_normal(n)
    return x, y


def _truth(rho):
    return -0.5 * np.log(1.0 - rho**2)


def _brute_ksg(x, y, k=3):
    """KSG estimator 1 written out directly: all pairwise max-norm distances."""
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
    mi = im.ksg_mi(x.astype(np.float16), y.astype(np.float16))
    assert abs(mi - im.ksg_mi(x, y)) < 0.01


# --- distance profiles --------------------------------------------------------------


def _field(n, grid, n_channels, length, seed):
    """(n, P, C) Gaussian random field: cov(p, q) = exp(-|p - q| / length), channels iid."""
    rows, cols = grid
    r, c = np.divmod(np.arange(rows * cols), cols)
    dist = np.hypot(r[:, None] - r[None, :], c[:, None] - c[None, :])
    chol = np.linalg.cholesky(np.exp(-dist / length) if length > 0 else np.eye(rows * cols))
    z = np.random.default_rng(seed).standard_normal((n, n_channels, rows * cols))
    return np.ascontiguousarray((z @ chol.T).transpose(0, 2, 1))


@pytest.fixture(scope="module")
def field_profile():
    acts = _field(2000, (7, 7), 6, 2.0, 21)
    return im.mi_vs_distance(acts, (7, 7), channels=range(6))


def test_mi_vs_distance_decays_and_matches_truth(field_profile):
    res = field_profile
    assert res["reference"] == (3, 3) and res["n_channels"] == 6
    np.testing.assert_array_equal(res["distances"], [1, 2, 3, 4])
    assert np.all(np.diff(res["mi"]) < 0)
    assert abs(res["mi"][0] - _truth(np.exp(-1 / 2.0))) < 0.05
    assert res["mi_std"].shape == res["mi"].shape
    assert im.log_mi_slope(res["distances"], res["mi"]) < 0


def test_mi_vs_distance_independent_patches():
    acts = _field(1000, (5, 5), 4, 0.0, 22)
    res = im.mi_vs_distance(acts, (5, 5), channels=[0, 2, 3], reference=(1, 2))
    assert res["reference"] == (1, 2)
    assert np.all(np.abs(res["mi"]) < 0.02)


def test_log_mi_slope():
    d = np.arange(1, 6)
    assert im.log_mi_slope(d, 2.0 * np.exp(-0.4 * d)) == pytest.approx(-0.4)
    assert np.isnan(im.log_mi_slope([1, 2], [0.1, -0.1]))


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
