"""Tests for tgo.geometry.spectral: each checks numbers against an independent value
(closed form, random-matrix theory, or a direct numpy computation)."""

import math

import numpy as np
import pytest

from tgo.geometry import spectral as sp
from tgo.io import TGOError
from tgo.runs import SPECTRAL_METRICS


def _rng(seed=0):
    return np.random.default_rng(seed)


def _orthogonal(d, seed):
    q, r = np.linalg.qr(_rng(seed).standard_normal((d, d)))
    return q * np.sign(np.diag(r))


# --- isotropic Gaussian: random-matrix predictions -------------------------------


@pytest.fixture(scope="module")
def isotropic():
    n, d = 20000, 50
    return sp.eigenspectrum(_rng(1).standard_normal((n, d))), n, d


def test_isotropic_gaussian_metrics(isotropic):
    eigs, n, d = isotropic
    gamma = d / n
    # Marchenko-Pastur: the top sample eigenvalue sits near (1 + sqrt(gamma))^2.
    edge = (1 + math.sqrt(gamma)) ** 2
    assert sp.effective_rank(eigs) == pytest.approx(d, rel=0.02)
    # E[sum l^2] / E[sum l]^2 = (1 + gamma) / d for Wishart matrices.
    assert sp.participation_ratio(eigs) == pytest.approx(d / (1 + gamma), rel=0.02)
    assert sp.stable_rank(eigs) == pytest.approx(d / edge, rel=0.02)
    assert d / edge * 0.98 < sp.stable_rank(eigs) <= d
    assert 0.99 < sp.spectral_flatness(eigs) <= 1.0
    assert 1 / d <= sp.anisotropy(eigs) < edge / d * 1.02
    assert sp.spectral_entropy(eigs, normalized=True) == pytest.approx(1.0, abs=2e-3)
    assert sp.spectral_entropy(eigs) == pytest.approx(math.log(d), rel=2e-3)


# --- exact analytic spectra -------------------------------------------------------


def test_two_equal_eigenvalues():
    eigs = [4.0, 4.0, 0.0, 0.0]
    assert sp.effective_rank(eigs) == pytest.approx(2.0, rel=1e-12)
    assert sp.participation_ratio(eigs) == pytest.approx(2.0, rel=1e-12)
    assert sp.stable_rank(eigs) == pytest.approx(2.0, rel=1e-12)
    assert sp.anisotropy(eigs) == pytest.approx(0.5, rel=1e-12)
    assert sp.spectral_entropy(eigs) == pytest.approx(math.log(2), rel=1e-12)
    assert sp.numerical_rank(eigs) == 2
    assert sp.spectral_entropy(eigs, normalized=True) == pytest.approx(1.0, rel=1e-12)
    # Zeros are floored at 1e-12 * 4: GM = (4 * 4 * 4e-12 * 4e-12)^(1/4) = 4e-6, AM ~ 2.
    assert sp.spectral_flatness(eigs) == pytest.approx(4e-6 / ((8 + 8e-12) / 4), rel=1e-9)


def test_unequal_two_eigenvalues_and_order_independence():
    eigs = [1.0, 3.0]
    p = np.array([0.75, 0.25])
    h = -np.sum(p * np.log(p))
    assert sp.spectral_entropy(eigs) == pytest.approx(h, rel=1e-12)
    assert sp.effective_rank(eigs) == pytest.approx(math.exp(h), rel=1e-12)
    assert sp.participation_ratio(eigs) == pytest.approx(16 / 10, rel=1e-12)
    assert sp.stable_rank(eigs) == pytest.approx(4 / 3, rel=1e-12)
    assert sp.anisotropy(eigs) == pytest.approx(3 / 4, rel=1e-12)
    assert sp.spectral_flatness(eigs) == pytest.approx(math.sqrt(3) / 2, rel=1e-12)
    assert sp.spectral_entropy(eigs, normalized=True) == pytest.approx(h / math.log(2), rel=1e-12)


def test_flat_spectrum():
    eigs = np.full(37, 2.5)
    assert sp.spectral_flatness(eigs) == pytest.approx(1.0, rel=1e-12)
    assert sp.effective_rank(eigs) == pytest.approx(37, rel=1e-12)
    assert sp.participation_ratio(eigs) == pytest.approx(37, rel=1e-12)
    assert sp.stable_rank(eigs) == pytest.approx(37, rel=1e-12)
    assert sp.anisotropy(eigs) == pytest.approx(1 / 37, rel=1e-12)
    assert sp.spectral_entropy(eigs, normalized=True) == pytest.approx(1.0, rel=1e-12)


def test_single_direction_and_zero_spectrum():
    eigs = [5.0, 0.0, 0.0]
    assert sp.effective_rank(eigs) == pytest.approx(1.0)
    assert sp.spectral_entropy(eigs, normalized=True) == 0.0
    assert sp.anisotropy(eigs) == 1.0
    for f in (sp.effective_rank, sp.stable_rank, sp.participation_ratio, sp.spectral_entropy,
              sp.spectral_flatness, sp.anisotropy):
        assert math.isnan(f(np.zeros(4)))


def test_rejects_negative_eigenvalues():
    with pytest.raises(ValueError):
        sp.effective_rank([1.0, -0.5])
    # Round-off negatives are clamped rather than rejected.
    assert sp.effective_rank([1.0, 1.0, -1e-17]) == pytest.approx(2.0)


def test_negative_tolerance_is_relative_to_each_spectrums_largest_eigenvalue():
    """The tolerance is sqrt(eps) ~ 1.5e-8 times lambda_1 at any scale: -1e-10 lambda_1 is round-off
    (clamped), -1e-6 lambda_1 is rejected; in a batch each spectrum is judged by its own lambda_1."""
    for scale in (1e-6, 1e6):
        assert sp.effective_rank(scale * np.array([1.0, 1.0, -1e-10])) == pytest.approx(2.0, rel=1e-12)
        with pytest.raises(ValueError, match="clearly negative"):
            sp.effective_rank(scale * np.array([1.0, 1.0, -1e-6]))
    big = [1.0, 0.5, 0.25, 0.125]
    with pytest.raises(ValueError, match="clearly negative"):
        sp.batched_alpha(np.array([big, 1e-6 * np.array([1.0, 1.0, 1.0, -1e-6])]), (1, 4))


def test_unit_single_direction_spectrum():
    """[s, 0, 0] for s = 1 (top eigenvalue, total and sum of squares all exactly 1) and s = 3: one
    direction, so stable rank, participation ratio and anisotropy are 1, and the flatness is the
    closed form with the zeros floored at eps * lambda_1: GM / AM = eps^(2/3) / ((1 + 2 eps) / 3)."""
    eps = 1e-12
    for s in (1.0, 3.0):
        eigs = [s, 0.0, 0.0]
        assert sp.stable_rank(eigs) == 1.0
        assert sp.participation_ratio(eigs) == 1.0
        assert sp.anisotropy(eigs) == 1.0
        assert sp.spectral_flatness(eigs, eps) == pytest.approx(eps ** (2 / 3) / ((1 + 2 * eps) / 3), rel=1e-9)


def test_value_at_the_numerical_rank_tolerance_counts_as_zero():
    """[1, 0.5, 0.25, t] with t = lambda_1 D eps = 2^-50 exactly: a value at the tolerance is round-off
    (strictly greater counts), in numerical_rank and in alpha's window alike; twice it counts. The
    tolerance scales with lambda_1 (with lambda_2 = 0.5 it would be 2^-51 and t would count)."""
    t = 4 * np.finfo(np.float64).eps
    assert t == 2.0 ** -50
    at, above = np.array([1.0, 0.5, 0.25, t]), np.array([1.0, 0.5, 0.25, 2 * t])
    assert sp.numerical_rank(at) == 3 and sp.numerical_rank(above) == 4
    assert all(math.isnan(v) for v in sp.alpha(at, (2, 4)))
    assert all(np.isfinite(sp.alpha(above, (2, 4))))


def test_eigenvalue_functions_compute_in_float64_whatever_the_input_dtype():
    """float32 eigenvalues (as read back from a float32 file) give exactly the metrics of the same
    values converted to float64: nothing is summed or logged in float32."""
    k = np.arange(1, 301)
    eigs32 = (k ** -1.1 * _rng(25).uniform(0.9, 1.1, k.size)).astype(np.float32)
    eigs64 = eigs32.astype(np.float64)
    for f in (sp.effective_rank, sp.stable_rank, sp.participation_ratio, sp.spectral_entropy,
              sp.spectral_flatness, sp.anisotropy, sp.alpha):
        assert f(eigs32) == f(eigs64), f.__name__


# --- power-law spectra and alpha ---------------------------------------------------


@pytest.mark.parametrize("a", [0.5, 1.0, 2.0, 3.0])
def test_alpha_exact_power_law(a):
    k = np.arange(1, 201, dtype=float)
    fit, r2 = sp.alpha(7.3 * k ** (-a))
    assert fit == pytest.approx(a, abs=1e-10)
    assert r2 == pytest.approx(1.0, abs=1e-10)


def test_alpha_matches_direct_weighted_least_squares():
    eigs = np.sort(_rng(3).gamma(2.0, size=150))[::-1] * np.arange(1, 151) ** -1.3
    lo, hi = 5, 60
    k = np.arange(lo, hi + 1)
    x = np.column_stack([-np.log(k), np.ones(k.size)])
    y = np.log(eigs[lo - 1:hi] / eigs.sum())
    sw = np.sqrt(1.0 / k)
    coef, *_ = np.linalg.lstsq(x * sw[:, None], y * sw, rcond=None)
    resid = y - x @ coef
    ybar = np.average(y, weights=1 / k)
    r2 = 1 - np.sum(resid**2 / k) / np.sum((y - ybar) ** 2 / k)
    fit, fit_r2 = sp.alpha(eigs, (lo, hi))
    assert fit == pytest.approx(coef[0], rel=1e-10)
    assert fit_r2 == pytest.approx(r2, rel=1e-10)


@pytest.mark.parametrize("a", [1.0, 2.0])
def test_alpha_recovered_from_sampled_data(a):
    n, d = 10000, 200
    k = np.arange(1, d + 1)
    X = _rng(4).standard_normal((n, d)) * k ** (-a / 2) @ _orthogonal(d, 5)
    fit, r2 = sp.alpha(sp.eigenspectrum(X), (11, 100))
    assert fit == pytest.approx(a, abs=0.05)
    assert r2 > 0.99


def test_alpha_window_validation():
    eigs = np.arange(50, 0, -1, dtype=float)
    for bad in [(11, 51), (0, 10), (10, 10), (12, 10), (10, 11)]:
        with pytest.raises(ValueError, match="length 50"):
            sp.alpha(eigs, bad)
        with pytest.raises(ValueError):
            sp.batched_alpha(eigs[None], bad)
    assert np.isfinite(sp.alpha(eigs, (1, 3))[0])
    assert np.isfinite(sp.alpha(eigs, (48, 50))[0])


def test_alpha_r2_is_nan_for_a_flat_window():
    """A spectrum flat over the window makes y constant: R^2 = 1 - 0/0 is undefined, nan for every
    window and batch row (the weighted mean of a constant y is off by round-off, so the residuals
    alone cannot tell), and alpha is 0 to round-off; a power law in the same batch keeps R^2 = 1."""
    for d, window in ((3, (1, 3)), (4, (1, 4)), (10, (1, 3)), (10, (2, 5)), (37, (1, 37))):
        a, r2 = sp.alpha(np.full(d, 2.5), window)
        assert abs(a) < 1e-12 and math.isnan(r2), (d, window)
    eigs = np.ones((64, 6))
    eigs[0] = np.arange(1, 7) ** -1.5
    a, r2 = sp.batched_alpha(eigs, (1, 4))
    assert np.all(np.isnan(r2[1:])) and np.all(np.abs(a[1:]) < 1e-12)
    assert a[0] == pytest.approx(1.5, rel=1e-12) and r2[0] == pytest.approx(1.0, abs=1e-12)


def test_batched_alpha_takes_one_spectrum_and_names_the_shape_it_needs():
    """A 1-D spectrum is a batch with no leading axes: batched_alpha gives alpha's values as 0-d
    arrays. A scalar is refused with the (..., D) shape named."""
    eigs = 7.3 * np.arange(1, 21, dtype=float) ** -1.5 * _rng(26).uniform(0.9, 1.1, 20)
    a, r2 = sp.batched_alpha(eigs, (2, 15))
    assert a.shape == r2.shape == ()
    assert (float(a), float(r2)) == sp.alpha(eigs, (2, 15))
    with pytest.raises(ValueError, match=r"^expected a \(\.\.\., D\) eigenvalue array, got shape \(\)$"):
        sp.batched_alpha(5.0)


def test_alpha_window_error():
    msg = sp.alpha_window_error((11, 100), 64, 192)
    assert isinstance(msg, str) and "63" in msg and "(11, 100)" in msg
    assert sp.alpha_window_error((11, 100), 512, 192) is None
    assert sp.alpha_window_error((11, 100), 101, 192) is None
    assert isinstance(sp.alpha_window_error((11, 100), 100, 192), str)
    assert isinstance(sp.alpha_window_error((11, 100), 512, 99), str)
    assert isinstance(sp.alpha_window_error((0, 100), 512, 192), str)
    assert isinstance(sp.alpha_window_error((11, 12), 512, 192), str)
    assert sp.alpha_window_error((11, 13), 512, 192) is None  # three ranks, the fewest


def test_alpha_nan_for_rank_deficient_gram_path():
    X = _rng(6).standard_normal((64, 192))
    assert sp.alpha_window_error((11, 100), 64, 192) is not None
    fit, r2 = sp.alpha(sp.eigenspectrum(X), (11, 100))
    assert math.isnan(fit) and math.isnan(r2)


# --- rank-k data ------------------------------------------------------------------


def test_rank_k_data():
    n, k, d = 500, 5, 40
    rng = _rng(7)
    X = rng.standard_normal((n, k)) @ rng.standard_normal((k, d))
    eigs = sp.eigenspectrum(X)
    assert np.all(eigs[:k] > 1e-6 * eigs[0])
    assert np.all(eigs[k:] < 1e-12 * eigs[0])
    assert sp.numerical_rank(eigs) == k
    assert sp.effective_rank(eigs) <= k + 1e-9
    h = sp.spectral_entropy(eigs)
    assert sp.spectral_entropy(eigs, normalized=True) == pytest.approx(h / math.log(k), rel=1e-9)
    assert all(math.isnan(v) for v in sp.alpha(eigs, (2, 20)))
    assert all(math.isnan(v) for v in sp.alpha(eigs, (1, k + 1)))
    assert np.isfinite(sp.alpha(eigs, (1, k))[0])


# --- eigenspectrum paths and input handling ---------------------------------------


def _numpy_cov_eigs(X):
    return np.sort(np.linalg.eigvalsh(np.cov(np.asarray(X, dtype=np.float64), rowvar=False)))[::-1]


@pytest.mark.parametrize("shape", [(30, 100), (300, 40), (50, 50)])
def test_eigenspectrum_matches_numpy_covariance(shape):
    X = _rng(8).standard_normal(shape) * np.linspace(0.1, 3.0, shape[1]) + 2.0
    eigs = sp.eigenspectrum(X)
    ref = _numpy_cov_eigs(X)
    assert eigs.shape == (shape[1],) and eigs.dtype == np.float64
    assert np.all(np.diff(eigs) <= 0) and np.all(eigs >= 0)
    np.testing.assert_allclose(eigs, ref, rtol=1e-10, atol=1e-10 * ref[0])


def test_eigenspectrum_float16_input_and_validation():
    X16 = _rng(9).standard_normal((200, 24)).astype(np.float16)
    np.testing.assert_allclose(sp.eigenspectrum(X16), _numpy_cov_eigs(X16.astype(np.float64)), rtol=1e-10)
    assert sp.eigenspectrum(X16.astype(np.float32)).dtype == np.float64
    with pytest.raises(ValueError):
        sp.eigenspectrum(np.ones((1, 5)))
    with pytest.raises(ValueError):
        sp.eigenspectrum(np.ones((2, 3, 4)))
    with pytest.raises(ValueError):
        sp.eigenspectrum(np.ones(5))


def test_constant_rows_give_zero_spectrum():
    X = np.tile(_rng(10).standard_normal(16) * 0.1, (30, 1))
    assert np.all(sp.eigenspectrum(X) == 0)
    assert math.isnan(sp.effective_rank(sp.eigenspectrum(X)))


def test_singular_values_match_svd_of_centred_x():
    X = _rng(11).standard_normal((80, 20))
    ref = np.linalg.svd(X - X.mean(axis=0), compute_uv=False)
    np.testing.assert_allclose(sp.singular_values(sp.eigenspectrum(X), 80), ref, rtol=1e-10)


# --- RankMe -----------------------------------------------------------------------


@pytest.mark.parametrize("shape", [(3000, 64), (40, 100), (64, 64)])
def test_rankme_matches_svd(shape):
    X = _rng(12).standard_normal(shape) * np.linspace(0.2, 2.0, shape[1]) + 0.5
    s = np.linalg.svd(X, compute_uv=False)
    p = s / s.sum() + 1e-7
    ref = math.exp(-np.sum(p * np.log(p)))
    assert sp.rankme(X) == pytest.approx(ref, rel=1e-10)


def test_spectral_metrics_default_to_2000_cosine_rows():
    X = _rng(14).standard_normal((2100, 3)) + 1.0
    got = sp.spectral_metrics(X, (1, 3))["mean_cosine_similarity"]
    assert got == sp.spectral_metrics(X, (1, 3), 2000)["mean_cosine_similarity"] == sp.mean_cosine_similarity(X, 2000)
    assert got != sp.mean_cosine_similarity(X, 2100)
    assert sp.mean_cosine_similarity(X) == got


def test_jackknife_cosine_rows_default_to_2000():
    """jackknife_spectral_metrics' default cosine_max_samples is 2000, like mean_cosine_similarity's."""
    X = _rng(14).standard_normal((2100, 3)) + 1.0
    labels = np.arange(2100) % 3
    default = sp.jackknife_spectral_metrics(X, labels, (1, 3))
    explicit = sp.jackknife_spectral_metrics(X, labels, (1, 3), 2000)
    assert default[0]["mean_cosine_similarity"] == explicit[0]["mean_cosine_similarity"] == sp.mean_cosine_similarity(X)
    np.testing.assert_array_equal(default[1]["mean_cosine_similarity"], explicit[1]["mean_cosine_similarity"])


@pytest.mark.parametrize("shape", [(50, 8), (8, 50)])
def test_rankme_takes_its_eps(shape):
    X = _rng(13).standard_normal(shape) * np.linspace(0.2, 2.0, shape[1])
    s = np.linalg.svd(X, compute_uv=False)
    p = s / s.sum() + 0.01
    assert sp.rankme(X, eps=0.01) == pytest.approx(math.exp(-np.sum(p * np.log(p))), rel=1e-10)


def test_rankme_is_uncentred():
    X = np.ones((100, 10))
    assert sp.rankme(X) == pytest.approx(1.0, rel=1e-4)


def test_rankme_of_singular_values_summing_to_one():
    """diag(0.25, 0.75) has singular values 0.25 and 0.75 (exact), summing to exactly 1: RankMe is
    the entropy of p = sigma + 1e-7 like any other total."""
    p = np.array([0.25, 0.75]) + 1e-7
    assert sp.rankme(np.diag([0.25, 0.75])) == pytest.approx(math.exp(-np.sum(p * np.log(p))), rel=1e-12)


# --- batched versions -------------------------------------------------------------


@pytest.mark.parametrize("shape", [(3, 4, 60, 20), (5, 12, 30)])
def test_batched_eigenspectra_equal_per_slice(shape):
    X = _rng(13).standard_normal(shape) * np.linspace(0.5, 2.0, shape[-1])
    batched = sp.batched_eigenspectra(X)
    assert batched.shape == shape[:-2] + (shape[-1],)
    for idx in np.ndindex(*shape[:-2]):
        ref = sp.eigenspectrum(X[idx])
        np.testing.assert_allclose(batched[idx], ref, rtol=1e-10, atol=1e-12 * ref[0])


def test_batched_alpha_equal_per_slice():
    k = np.arange(1, 121, dtype=float)
    rng = _rng(14)
    eigs = np.stack([k ** -(1 + 0.2 * i) * rng.uniform(0.9, 1.1, k.size) for i in range(6)]).reshape(2, 3, -1)
    eigs[1, 2, 50:] = 0.0
    a, r2 = sp.batched_alpha(eigs, (11, 100))
    assert a.shape == r2.shape == (2, 3)
    for idx in np.ndindex(2, 3):
        ref_a, ref_r2 = sp.alpha(eigs[idx], (11, 100))
        np.testing.assert_allclose([a[idx], r2[idx]], [ref_a, ref_r2], rtol=1e-12)
    assert np.isnan(a[1, 2]) and np.isnan(r2[1, 2])
    assert np.isfinite(a).sum() == 5


def test_batched_pipeline_matches_eigenspectrum_alpha():
    X = _rng(15).standard_normal((4, 300, 120)) * np.arange(1, 121) ** -0.6
    a, r2 = sp.batched_alpha(sp.batched_eigenspectra(X), (5, 50))
    for i in range(4):
        np.testing.assert_allclose([a[i], r2[i]], sp.alpha(sp.eigenspectrum(X[i]), (5, 50)), rtol=1e-9)


@pytest.mark.parametrize("n", [120, 30])  # the covariance path (N >= D) and the Gram path (N < D)
def test_jackknife_eigenspectra_are_the_spectra_without_each_group(n):
    X = _rng(43).standard_normal((2, n, 40)) * np.arange(1, 41) ** -0.5 + 3.0
    labels = np.arange(n) % 6
    reps = sp.jackknife_eigenspectra(X, labels)
    assert reps.shape == (6, 2, 40)
    for g in range(6):
        ref = sp.batched_eigenspectra(X[:, labels != g])
        np.testing.assert_allclose(reps[g], ref, rtol=1e-9, atol=1e-12 * ref.max())


def test_jackknife_eigenspectra_keep_their_precision_under_a_large_offset():
    """Rows sharing an offset of 1e9 (a float64 ulp there is 1.2e-7 of the unit-scale signal): the first
    row is subtracted before the mean, exactly (Sterbenz), so every replicate matches numpy's covariance
    of the rows left to 1e-9, where any rounding at the offset's scale would show at 1e-7."""
    X = _rng(46).standard_normal((120, 10)) * np.linspace(0.5, 2.0, 10) + 1e9
    labels = np.arange(120) % 4
    reps = sp.jackknife_eigenspectra(X[None], labels)
    for g in range(4):
        np.testing.assert_allclose(reps[g, 0], _numpy_cov_eigs(X[labels != g]), rtol=1e-9)


def test_row_scatter_is_each_cells_scatter_about_the_first_row():
    X = (_rng(44).standard_normal((30, 4)) + 5.0).astype(np.float16)
    labels, rows = np.arange(30) % 3, [np.arange(8), np.arange(20)]
    out = sp.row_scatter(X, labels, rows)
    assert out["scatter"].shape == (3, 3, 4, 4) and out["sums"].shape == (3, 3, 4) and out["counts"].shape == (3, 3)
    x0 = X[0].astype(np.float64)
    cell = np.select([np.arange(30) < 8, np.arange(30) < 20], [0, 1], 2)
    for g in range(3):
        for c in range(3):
            P = X[(labels == g) & (cell == c)].astype(np.float64) - x0
            np.testing.assert_allclose(out["scatter"][g, c], P.T @ P, rtol=1e-12)
            np.testing.assert_allclose(out["sums"][g, c], P.sum(axis=0), rtol=1e-12, atol=1e-12)
            assert out["counts"][g, c] == len(P)
    with pytest.raises(ValueError, match="nested"):
        sp.row_scatter(X, labels, [np.arange(8), np.arange(1, 20)])


def test_row_scatter_of_two_rows_the_fewest():
    """N = 2 is accepted: one group, one cell, P = X - x_0 = [0, x_1 - x_0]; N = 1 is refused."""
    X = np.array([[1.0, 2.0, 3.0], [2.0, 0.0, 7.0]])
    out = sp.row_scatter(X, [0, 0])
    np.testing.assert_array_equal(out["scatter"], [[np.outer([1.0, -2.0, 4.0], [1.0, -2.0, 4.0])]])
    np.testing.assert_array_equal(out["sums"], [[[1.0, -2.0, 4.0]]])
    np.testing.assert_array_equal(out["counts"], [[2.0]])
    with pytest.raises(ValueError, match=r"^expected an array of shape \(N, D\) with N >= 2, got \(1, 3\)$"):
        sp.row_scatter(X[:1], [0])


def test_stage_alpha_window_comes_down_with_a_note_or_names_the_param(capsys):
    assert sp.stage_alpha_window("tokens.alpha_ranks", (11, 100), 1000, 384, 20) == (11, 100)
    assert capsys.readouterr().out == ""
    assert sp.stage_alpha_window("tokens.alpha_ranks", (11, 100), 60, 384, 20) == (11, 56)
    assert "note: tokens.alpha_ranks=[11, 100] does not fit" in capsys.readouterr().out
    with pytest.raises(TGOError) as info:
        sp.stage_alpha_window("tokens.alpha_ranks", (11, 100), 14, 384, 20)
    assert str(info.value) == ("tokens.alpha_ranks=[11, 100]: 14 probe images (13 in a jackknife replicate) and D=384 "
                               "hold ranks up to 12, fewer than 3 from rank 11; start the window lower or use more "
                               "probe images (extract.probe_size)")


def test_fitted_alpha_window_needs_three_ranks_exactly():
    """5 images in 5 groups leave 4 per replicate: ranks up to 3, so a window from rank 1 holds
    ranks 1..3 (three, the fewest a fit takes) and one from rank 2 does not."""
    assert sp.fitted_alpha_window((1, 10), 5, 100, 5) == (
        (1, 3), "5 probe images (4 in a jackknife replicate) and D=100 hold ranks up to 3: alpha is fitted over ranks 1..3")
    with pytest.raises(ValueError, match=r"hold ranks up to 3, fewer than 3 from rank 2$"):
        sp.fitted_alpha_window((2, 10), 5, 100, 5)


@pytest.fixture(scope="module")
def leading_jackknife():
    """Three planted power laws (600 images, D=160, 20 groups of 30), the approximated leading replicate
    eigenvalues up to rank 30 and the exact ones."""
    rng = _rng(40)
    n, d = 600, 160
    k = np.arange(1, d + 1)
    X = np.stack([rng.standard_normal((n, d)) * k ** (-a / 2) @ _orthogonal(d, 41 + i) for i, a in enumerate((0.8, 1.2, 2.0))])
    labels = np.arange(n) % 20
    return X, sp.leading_jackknife_eigenspectra(X, labels, 30), sp.jackknife_eigenspectra(X, labels)


def test_leading_jackknife_eigenspectra_within_tolerance_on_a_planted_power_law(leading_jackknife):
    X, (eigs, reps), exact = leading_jackknife
    # The approximation was taken (k = ceil(1.25 * 30) directions and a group's 30 rows, not D = 160).
    assert reps.shape == (20, 3, 38 + 30)
    np.testing.assert_allclose(eigs, sp.batched_eigenspectra(X), rtol=1e-10, atol=1e-12 * eigs.max())
    # Ritz values are lower bounds of the eigenvalues (Cauchy interlacing).
    assert np.all(reps <= exact[..., :reps.shape[-1]] * (1 + 1e-10))
    # Measured: 1.5e-3 at worst in the window, alphas within 2e-4, standard errors within 0.06%.
    np.testing.assert_allclose(reps[..., :30], exact[..., :30], rtol=5e-3)
    ritz, full = sp.batched_alpha(reps, (3, 30))[0], sp.batched_alpha(exact, (3, 30))[0]
    np.testing.assert_allclose(ritz, full, atol=1e-3)
    np.testing.assert_allclose(ritz.std(axis=0), full.std(axis=0), rtol=0.01)


def test_leading_jackknife_eigenspectra_exact_where_it_would_not_pay():
    X = _rng(42).standard_normal((2, 200, 40)) * np.arange(1, 41) ** -0.5
    labels = np.arange(200) % 10
    eigs, reps = sp.leading_jackknife_eigenspectra(X, labels, 12)  # 15 directions + 20 rows > 40 / 2
    np.testing.assert_array_equal(eigs, sp.batched_eigenspectra(X))
    np.testing.assert_array_equal(reps, sp.jackknife_eigenspectra(X, labels))


def test_leading_jackknife_eigenspectra_approximate_at_their_bounds():
    """The approximation is taken up to both bounds, N = D and k + m = D / 2: N = D = 40, top 8 (k = 10
    directions) and groups of m = 10 rows give L = 20 leading eigenvalues per replicate, lower bounds
    of the exact ones (Cauchy interlacing) and close to them at the top."""
    k = np.arange(1, 41)
    X = (_rng(48).standard_normal((40, 40)) * k ** -0.75 @ _orthogonal(40, 49))[None]
    labels = np.arange(40) % 4
    eigs, reps = sp.leading_jackknife_eigenspectra(X, labels, 8)
    exact = sp.jackknife_eigenspectra(X, labels)
    assert reps.shape == (4, 1, 20)
    np.testing.assert_allclose(eigs, sp.batched_eigenspectra(X), rtol=1e-10, atol=1e-12 * eigs.max())
    assert np.all(reps <= exact[..., :20] * (1 + 1e-10))
    np.testing.assert_allclose(reps[..., :5], exact[..., :5], rtol=1e-3)


# --- invariances ------------------------------------------------------------------


def test_invariance_to_rotation_and_scale():
    X = _rng(16).standard_normal((400, 30)) * np.linspace(0.1, 2.0, 30)
    base = sp.eigenspectrum(X)
    for Y in (X @ _orthogonal(30, 17), 3.7 * X):
        eigs = sp.eigenspectrum(Y)
        for f in (sp.effective_rank, sp.participation_ratio, sp.anisotropy):
            assert f(eigs) == pytest.approx(f(base), rel=1e-10)


def test_eigenspectrum_invariant_to_translation():
    X = _rng(18).standard_normal((400, 30))
    shift = _rng(19).uniform(-50, 50, 30)
    np.testing.assert_allclose(sp.eigenspectrum(X + shift), sp.eigenspectrum(X), rtol=1e-10)


# --- cosine similarity ------------------------------------------------------------


def test_mean_cosine_similarity():
    row = _rng(20).standard_normal(32)
    assert sp.mean_cosine_similarity(np.tile(row, (50, 1))) == pytest.approx(1.0, abs=1e-12)
    G = _rng(21).standard_normal((3000, 64))
    assert abs(sp.mean_cosine_similarity(G)) < 0.01
    assert sp.mean_cosine_similarity(G) == sp.mean_cosine_similarity(G)
    assert sp.mean_cosine_similarity(G + 3.0) > 0.8


def _pairwise_cosine(X):
    """Mean cosine over the pairs of nonzero rows, by its definition (nan with fewer than two)."""
    X = X[np.linalg.norm(X, axis=1) > 0]
    U = X / np.linalg.norm(X, axis=1, keepdims=True)
    i, j = np.triu_indices(len(U), k=1)
    return float(np.mean(np.sum(U[i] * U[j], axis=1))) if i.size else np.nan


def test_mean_cosine_similarity_matches_pairwise_definition():
    X = _rng(22).standard_normal((40, 8)) + 0.3
    assert sp.mean_cosine_similarity(X) == pytest.approx(_pairwise_cosine(X), rel=1e-12)
    # Subsampling picks max_samples rows deterministically.
    sub = sp.mean_cosine_similarity(X, max_samples=10, seed=3)
    rows = np.sort(np.random.default_rng(3).choice(40, size=10, replace=False))
    assert sub == pytest.approx(sp.mean_cosine_similarity(X[rows]), rel=1e-12)


def test_cosine_similarity_from_two_rows():
    """Two rows are the fewest: two rows, two nonzero ones among zero rows, and a subsample of two
    rows (max_samples = 2, the smallest accepted; 1 is refused) all give the one pair's cosine."""
    X = _rng(27).standard_normal((10, 4)) + 0.3
    assert sp.mean_cosine_similarity(X[:2]) == pytest.approx(_pairwise_cosine(X[:2]), rel=1e-12)
    assert sp.mean_cosine_similarity(np.vstack([X[:1], np.zeros((3, 4)), X[1:2]])) == pytest.approx(
        _pairwise_cosine(X[:2]), rel=1e-12)
    rows = np.sort(np.random.default_rng(0).choice(10, size=2, replace=False))
    assert sp.mean_cosine_similarity(X, max_samples=2) == pytest.approx(_pairwise_cosine(X[rows]), rel=1e-12)
    with pytest.raises(ValueError, match="^max_samples must be >= 2, got 1$"):
        sp.mean_cosine_similarity(X, max_samples=1)


def test_cosine_similarity_skips_zero_rows_and_keeps_short_ones():
    """All-zero rows have no direction and are left out; rows of any nonzero norm count (here all
    shorter than 1). In mean_cosine_similarity and in every jackknife replicate, one of which keeps
    exactly two nonzero rows, each against the pairwise definition."""
    X = 0.1 * (_rng(28).standard_normal((8, 3)) + 0.5)
    X[[2, 5]] = 0.0
    assert np.all(np.linalg.norm(X, axis=1) < 1)
    labels = np.array([1, 1, 0, 0, 0, 2, 0, 0])  # without group 0: rows 0, 1 and the zero row 5
    assert sp.mean_cosine_similarity(X) == pytest.approx(_pairwise_cosine(X), rel=1e-12)
    _, reps = sp.jackknife_spectral_metrics(X, labels, (1, 3))
    want = [_pairwise_cosine(X[labels != g]) for g in range(3)]
    assert np.isfinite(want).all()
    np.testing.assert_allclose(reps["mean_cosine_similarity"], want, rtol=1e-12)


def test_jackknife_cosine_uses_the_rows_mean_cosine_similarity_uses():
    """With more rows than cosine_max_samples, the full value and every replicate come from the
    seed-0 subsample of mean_cosine_similarity: replicate g is the pairwise mean over its rows outside group g."""
    X = _rng(29).standard_normal((60, 3)) + 0.5
    labels = np.arange(60) % 4
    m, reps = sp.jackknife_spectral_metrics(X, labels, (1, 3), 20)
    rows = np.sort(np.random.default_rng(0).choice(60, size=20, replace=False))
    assert m["mean_cosine_similarity"] == pytest.approx(_pairwise_cosine(X[rows]), rel=1e-12)
    want = [_pairwise_cosine(X[rows][labels[rows] != g]) for g in range(4)]
    np.testing.assert_allclose(reps["mean_cosine_similarity"], want, rtol=1e-12)


# --- convenience wrapper ----------------------------------------------------------


def test_spectral_metrics_consistent_with_functions():
    X = _rng(23).standard_normal((600, 128)).astype(np.float32) * np.arange(1, 129) ** -0.5
    m = sp.spectral_metrics(X, ranks=(11, 100))
    eigs = sp.eigenspectrum(X)
    np.testing.assert_array_equal(m["eigenvalues"], eigs)
    expected = {
        "effective_rank": sp.effective_rank(eigs),
        "rankme": sp.rankme(X),
        "stable_rank": sp.stable_rank(eigs),
        "participation_ratio": sp.participation_ratio(eigs),
        "spectral_entropy": sp.spectral_entropy(eigs),
        "spectral_entropy_normalized": sp.spectral_entropy(eigs, normalized=True),
        "spectral_flatness": sp.spectral_flatness(eigs),
        "anisotropy": sp.anisotropy(eigs),
        "mean_cosine_similarity": sp.mean_cosine_similarity(X),
        "alpha": sp.alpha(eigs)[0],
        "alpha_r2": sp.alpha(eigs)[1],
    }
    assert set(m) == set(expected) | {"eigenvalues"}
    for key, value in expected.items():
        assert type(m[key]) is float
        assert m[key] == pytest.approx(value, rel=1e-12), key


def test_spectral_metrics_rank_deficient_alpha_is_nan():
    m = sp.spectral_metrics(_rng(24).standard_normal((64, 192)))
    assert math.isnan(m["alpha"]) and math.isnan(m["alpha_r2"])
    assert np.isfinite(m["effective_rank"])


def test_nested_metrics_from_one_pass_equal_each_subset_alone():
    from tgo.activations import rows_of_images

    rng = np.random.default_rng(11)
    for n_images, per_image, d in ((160, 1, 48), (80, 12, 48)):  # cls-like (a subset with N < D) and patch-like
        X = (rng.standard_normal((n_images * per_image, d)) * np.arange(1, d + 1) ** -0.7 + 3).astype(np.float16)
        order = rng.permutation(n_images)
        rows = [rows_of_images(n_images, len(X), order[:size]) for size in (20, 40, 80, n_images)]
        # 10 cosine rows: every subset subsampled, on both paths (N < D directly, N >= D from the scatter)
        for got, r in zip(sp.nested_spectral_metrics(X, rows, (2, 10), 10), rows):
            want = sp.spectral_metrics(X[r], (2, 10), 10)
            want.pop("eigenvalues")
            assert list(got) == list(want)
            np.testing.assert_allclose(list(got.values()), list(want.values()), rtol=1e-10)
    with pytest.raises(ValueError, match="nested"):
        sp.nested_spectral_metrics(X, [rows[1], rows[0]], (2, 10))
    # More cosine rows than mean_cosine_similarity's own default (2000), and the default itself.
    X = rng.standard_normal((2100, 3))
    rows = [np.arange(2050), np.arange(2100)]
    for cosine_rows in (2100, 2000):
        got = sp.nested_spectral_metrics(X, rows, (1, 3), cosine_rows)
        for g, r in zip(got, rows):
            assert g["mean_cosine_similarity"] == pytest.approx(sp.mean_cosine_similarity(X[r], cosine_rows), rel=1e-12)
    assert sp.nested_spectral_metrics(X, rows, (1, 3)) == got


@pytest.mark.parametrize("n", [120, 20])  # the scatter path (N >= D) and the Gram path (N < D)
def test_jackknife_spectral_metrics_are_the_metrics_without_each_group(n):
    """By definition: the metrics of X, and replicate g those of X without group g (every row in the
    cosine: 5000 rows allowed); with fewer cosine rows, the full value is mean_cosine_similarity's."""
    X = _rng(45).standard_normal((n, 24)) * np.arange(1, 25) ** -0.5 + 0.5
    labels = np.arange(n) % 5
    m, reps = sp.jackknife_spectral_metrics(X, labels, (2, 8), 5000)
    full = sp.spectral_metrics(X, (2, 8), 5000)
    for key in reps:
        assert m[key] == pytest.approx(full[key], rel=1e-9), key
        assert reps[key].shape == (5,), key
        want = [sp.spectral_metrics(X[labels != g], (2, 8), 5000)[key] for g in range(5)]
        np.testing.assert_allclose(reps[key], want, rtol=1e-8, err_msg=key)
    np.testing.assert_allclose(m["eigenvalues"], full["eigenvalues"], rtol=1e-9, atol=1e-12 * full["eigenvalues"][0])
    m, _ = sp.jackknife_spectral_metrics(X, labels, (2, 8), 10)
    assert m["mean_cosine_similarity"] == pytest.approx(sp.mean_cosine_similarity(X, 10), rel=1e-12)
    default, explicit = sp.jackknife_spectral_metrics(X, labels, (2, 8)), sp.jackknife_spectral_metrics(X, labels, (2, 8),
                                                                                                         2000)
    assert all(np.array_equal(default[1][k], explicit[1][k]) for k in reps)


def test_jackknife_replicates_of_two_rows_the_fewest():
    """A replicate of 2 rows (the fewest with a covariance) is computed, as the metrics of those rows;
    one of 1 row is refused. N = 2 passes the shape check (N >= 2) and meets the replicate check."""
    X = _rng(47).standard_normal((6, 3)) + 0.5
    labels = np.array([0, 0, 0, 0, 1, 1])
    _, reps = sp.jackknife_spectral_metrics(X, labels, (1, 3))
    for key in ("effective_rank", "stable_rank", "participation_ratio", "anisotropy", "mean_cosine_similarity"):
        want = [sp.spectral_metrics(X[labels != g], (1, 3))[key] for g in range(2)]
        np.testing.assert_allclose(reps[key], want, rtol=1e-9, err_msg=key)
    refused = "^every replicate needs at least 2 rows: use fewer groups$"
    with pytest.raises(ValueError, match=refused):
        sp.jackknife_spectral_metrics(X[:5], labels[:5], (1, 3))
    with pytest.raises(ValueError, match=refused):
        sp.jackknife_spectral_metrics(X[:2, :1], [0, 1], (1, 1))
    with pytest.raises(ValueError, match=r"^expected an array of shape \(N, D\) with N >= 2, got \(1, 3\)$"):
        sp.jackknife_spectral_metrics(X[:1], [0], (1, 3))


def test_the_metric_table_names_what_the_spectral_functions_compute():
    # tgo.runs.SPECTRAL_METRICS (what the figures draw and the summaries keep) against the keys that
    # spectral_metrics and the jackknife actually return: a renamed or dropped metric fails here.
    X = np.random.default_rng(0).standard_normal((120, 24))
    assert set(SPECTRAL_METRICS) <= set(sp.spectral_metrics(X, (2, 12)))
    m, reps = sp.jackknife_spectral_metrics(X, np.arange(120) % 10, (2, 12))
    assert set(SPECTRAL_METRICS) <= set(m) and {k for k, headline in SPECTRAL_METRICS.items() if headline} <= set(reps)
