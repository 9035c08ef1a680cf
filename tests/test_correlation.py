"""Tests for tgo.geometry.correlation: against np.corrcoef, exact properties of Pearson
correlation and the null distribution of independent Gaussian tokens; the correlation stage's
outputs on the micro workspace against np.corrcoef."""

import json
import math

import numpy as np
import pytest

from micro import micro_config
from tgo import activations
from tgo.geometry.correlation import intertoken_correlation
from tgo.io import read_csv


def _rng(seed=0):
    return np.random.default_rng(seed)


def _direct(x):
    """Upper-triangle mean of np.corrcoef over tokens (rows): r and |r|."""
    c = np.corrcoef(x)
    iu = np.triu_indices(x.shape[0], k=1)
    return c[iu].mean(), np.abs(c[iu]).mean()


def _correlated_tokens(rng, n_tokens=30, d=48):
    """Tokens sharing a common component plus noise, with token-specific offsets."""
    common = rng.standard_normal(d)
    return (rng.uniform(-1, 1, (n_tokens, 1)) * common + rng.standard_normal((n_tokens, d))
            + rng.standard_normal((n_tokens, 1)) * 5)


def test_matches_corrcoef_on_one_image():
    x = _correlated_tokens(_rng(1))
    r, a = intertoken_correlation(x)
    assert isinstance(r, float) and isinstance(a, float)
    expected_r, expected_a = _direct(x)
    assert r == pytest.approx(expected_r, abs=1e-10)
    assert a == pytest.approx(expected_a, abs=1e-10)
    assert a > abs(r)  # mixed signs: the test data is not trivially one-signed


def test_batch_equals_per_image_loop(monkeypatch):
    import tgo.geometry.correlation as corr

    # Force several internal image batches (3 images each) to test the batching too.
    monkeypatch.setattr(corr, "_BATCH_BYTES", 3 * 30 * 48 * 8)
    rng = _rng(2)
    batch = np.stack([_correlated_tokens(rng) for _ in range(7)]).astype(np.float32)
    r, a = intertoken_correlation(batch)
    assert r.shape == a.shape == (7,)
    loop = np.array([intertoken_correlation(img) for img in batch])
    np.testing.assert_allclose(r, loop[:, 0], rtol=0, atol=1e-12)
    np.testing.assert_allclose(a, loop[:, 1], rtol=0, atol=1e-12)
    direct = np.array([_direct(img.astype(np.float64)) for img in batch])
    np.testing.assert_allclose(np.c_[r, a], direct, rtol=0, atol=1e-10)


def test_identical_tokens_up_to_positive_affine_maps():
    rng = _rng(3)
    base = rng.standard_normal(64)
    x = rng.uniform(0.1, 10, (12, 1)) * base + rng.normal(0, 3, (12, 1))
    r, a = intertoken_correlation(x)
    assert r == pytest.approx(1.0, abs=1e-12)
    assert a == pytest.approx(1.0, abs=1e-12)


def test_independent_gaussian_tokens():
    d = 4096
    x = _rng(4).standard_normal((40, d))
    r, a = intertoken_correlation(x)
    assert abs(r) < 3 / math.sqrt(d)
    # r_ij ~ N(0, 1/D) for independent tokens, so E|r_ij| = sqrt(2 / (pi D)).
    assert a == pytest.approx(math.sqrt(2 / (math.pi * d)), rel=0.15)


def test_invariant_to_per_token_positive_affine_maps():
    rng = _rng(5)
    x = _correlated_tokens(rng, n_tokens=25, d=40)
    y = rng.uniform(0.01, 100, (25, 1)) * x + rng.normal(0, 50, (25, 1))
    np.testing.assert_allclose(intertoken_correlation(y), intertoken_correlation(x), rtol=0, atol=1e-10)
    # Tokens of norm far below 1 are tokens like any other.
    np.testing.assert_allclose(intertoken_correlation(1e-3 * x), intertoken_correlation(x), rtol=0, atol=1e-10)
    # A negative scale flips the sign of that token's correlations but not |r|.
    z = x.copy()
    z[0] *= -1
    assert intertoken_correlation(z)[1] == pytest.approx(intertoken_correlation(x)[1], abs=1e-12)


def test_zero_variance_tokens_are_excluded():
    rng = _rng(6)
    x = _correlated_tokens(rng, n_tokens=10, d=32)
    with_constant = np.insert(x, [0, 4], [[2.5] * 32, [0.1] * 32], axis=0)  # two constant tokens
    r, a = intertoken_correlation(with_constant)
    expected_r, expected_a = _direct(x)
    assert r == pytest.approx(expected_r, abs=1e-10)
    assert a == pytest.approx(expected_a, abs=1e-10)
    # Fewer than two tokens with variance: no pair is defined.
    r1, a1 = intertoken_correlation(np.vstack([x[:1], np.full((3, 32), 0.3)]))
    assert math.isnan(r1) and math.isnan(a1)
    # ... in one image of a batch: nan there (float64), the others' values unchanged.
    r2, a2 = intertoken_correlation(np.stack([x[:4], np.vstack([x[:1], np.full((3, 32), 0.3)])]))
    assert r2.dtype == a2.dtype == np.float64 and np.isnan(r2[1]) and np.isnan(a2[1])
    assert (r2[0], a2[0]) == pytest.approx(_direct(x[:4]), abs=1e-10)


def test_bad_input():
    with pytest.raises(ValueError, match="shape"):
        intertoken_correlation(np.zeros(5))
    x = np.ones((2, 3, 4))
    x[1, 0, 0] = np.nan
    with pytest.raises(ValueError, match="non-finite"):
        intertoken_correlation(x)


def test_token_sets_from_one_gram_equal_each_subset_alone(monkeypatch):
    import tgo.geometry.correlation as corr

    monkeypatch.setattr(corr, "_BATCH_BYTES", 2 * 12 * 48 * 8)  # several image batches
    rng = _rng(9)
    x = np.stack([_correlated_tokens(rng, n_tokens=12, d=48) for _ in range(5)])
    x[2, 4] = 0.7  # a constant token: excluded from its pairs in every set that holds it
    sets = {"patches": list(range(1, 12)), "with_cls": list(range(12)), "two": [3, 4]}
    out = intertoken_correlation(x, sets)
    assert list(out) == list(sets)
    for name, idx in sets.items():
        np.testing.assert_allclose(np.c_[out[name]], np.c_[intertoken_correlation(x[:, idx])], rtol=0, atol=1e-12)
    single = intertoken_correlation(x[0], sets)
    assert single["patches"] == pytest.approx(intertoken_correlation(x[0, 1:]), abs=1e-12)
    assert not np.isnan(single["two"][0]) and np.isnan(out["two"][0][2])  # one valid token: no pair



def test_a_boolean_token_set_is_the_mask_numpy_indexing_reads():
    """The same set as its indices and as a mask over the tokens; a mask of another length is an error."""
    x = np.stack([_correlated_tokens(_rng(11), n_tokens=6, d=16) for _ in range(3)])
    mask = np.array([False, True, True, False, True, True])
    out = intertoken_correlation(x, {"mask": mask, "idx": np.flatnonzero(mask)})
    np.testing.assert_array_equal(np.c_[out["mask"]], np.c_[out["idx"]])
    np.testing.assert_allclose(np.c_[out["mask"]], np.c_[intertoken_correlation(x[:, mask])], rtol=0, atol=1e-12)
    with pytest.raises(ValueError, match="mask the 6 tokens"):
        intertoken_correlation(x, {"short": mask[:5]})

def test_removing_the_shared_component_analytic():
    # tokens = s v + e: one vector v (centred over its features) shared by every token of every image,
    # e independent N(0, sigma^2). Centred per token, <z_i, z_j> ~ s^2 |v|^2 and |z_i|^2 ~ s^2 |v|^2 +
    # sigma^2 (D - 1), so r ~ s^2 |v|^2 / (s^2 |v|^2 + sigma^2 (D - 1)). Less the probe set's mean token
    # the tokens are e - mean(e): M = N T residuals about a common mean correlate at -1 / (M - 1).
    rng = _rng(10)
    n, t, d, s, sigma = 20, 16, 512, 1.5, 2.0
    v = rng.standard_normal(d)
    v -= v.mean()
    x = s * v + sigma * rng.standard_normal((n, t, d))
    shared = s ** 2 * v @ v
    r, _ = intertoken_correlation(x)
    assert r.mean() == pytest.approx(shared / (shared + sigma ** 2 * (d - 1)), abs=0.01)
    r, a = intertoken_correlation(x, remove=x.reshape(-1, d).mean(axis=0))
    assert r.mean() == pytest.approx(-1 / (n * t - 1), abs=0.002)
    assert a.mean() == pytest.approx(math.sqrt(2 / (math.pi * d)), rel=0.05)  # E|r| of independent tokens


def test_remove_equals_the_correlation_of_the_tokens_less_it(monkeypatch):
    import tgo.geometry.correlation as corr

    monkeypatch.setattr(corr, "_BATCH_BYTES", 2 * 12 * 48 * 8)  # several image batches
    rng = _rng(11)
    x = np.stack([_correlated_tokens(rng, n_tokens=12, d=48) for _ in range(5)]).astype(np.float16)
    mean = x[:, 1:].astype(np.float64).mean(axis=(0, 1))
    sets = {"patches": list(range(1, 12)), "with_cls": list(range(12))}
    out = intertoken_correlation(x, sets, remove=mean)
    direct = intertoken_correlation(x.astype(np.float64) - mean, sets)
    for name in sets:
        np.testing.assert_array_equal(np.c_[out[name]], np.c_[direct[name]])
    assert intertoken_correlation(x[0], remove=mean) == intertoken_correlation(x[0] - mean)
    assert not np.allclose(out["patches"][0], intertoken_correlation(x, sets)["patches"][0])
    with pytest.raises(ValueError, match="remove"):
        intertoken_correlation(x, remove=mean[:-1])


def test_two_tokens_are_one_pair():
    """The smallest image with a pair: mean r and mean |r| are that pair's r and |r| (here negative),
    alone and as a token set; an empty token set has no pair (nan)."""
    rng = _rng(12)
    x = rng.standard_normal((2, 16))
    x[1] = -0.5 * x[0] + 0.5 * rng.standard_normal(16)
    r12 = np.corrcoef(x)[0, 1]
    assert r12 < -0.5
    assert intertoken_correlation(x) == pytest.approx((r12, -r12), abs=1e-12)
    out = intertoken_correlation(np.stack([x, x[::-1]]), {"pair": [0, 1], "none": []})
    np.testing.assert_allclose(np.c_[out["pair"]], [[r12, -r12]] * 2, rtol=0, atol=1e-12)
    assert np.all(np.isnan(out["none"][0])) and np.all(np.isnan(out["none"][1]))


def test_non_finite_values_name_their_image_batch(monkeypatch):
    """Images are read in batches of _BATCH_BYTES of float64 (T, max(T, D)) arrays, here 3 images:
    a nan in image 4 of 7 is reported in the batch of images 3..5."""
    import tgo.geometry.correlation as corr

    monkeypatch.setattr(corr, "_BATCH_BYTES", 3 * 5 * 6 * 8)
    x = _rng(13).standard_normal((7, 5, 6))
    x[4, 2, 1] = np.nan
    with pytest.raises(ValueError, match=r"^tokens has non-finite values \(images 3\.\.5\)$"):
        intertoken_correlation(x)
    x[4, 2, 1] = 0.0
    r, a = intertoken_correlation(x)
    np.testing.assert_allclose(np.c_[r, a], [_direct(img) for img in x], rtol=0, atol=1e-12)


def test_remove_must_be_a_finite_vector_of_the_features():
    """A missing (None) or non-finite entry, or the wrong length, is a ValueError naming the features;
    integer entries are accepted and subtracted as float64."""
    x = _rng(14).standard_normal((3, 4, 6))
    for bad in ([0.0, 1.0, None, 0.0, 0.0, 0.0], [0.0, np.inf, 0.0, 0.0, 0.0, 0.0], [0.0] * 5):
        with pytest.raises(ValueError, match=r"^remove must be a finite vector of the 6 features, got shape \(\d,\)$"):
            intertoken_correlation(x, remove=bad)
    shift = [3, -1, 0, 2, 5, 1]
    assert intertoken_correlation(x[0], remove=shift) == intertoken_correlation(x[0] - np.array(shift, dtype=float))

# --- the correlation stage on the micro workspace (tests/conftest.py) ----------------------------------

def test_correlation_stage_patches_less_the_mean_patch_token(workspace):
    plots = workspace / "reports/correlation"
    rows = [r for r in read_csv(plots / "correlation.csv") if r["tokens"] == "patches_mean_removed"]
    reps = [r for r in read_csv(plots / "replicates.csv") if r["tokens"] == "patches_mean_removed"]
    found = activations.checkpoints(workspace / "data/activations")
    ci = micro_config()["ci"]  # what the workspace ran with (tests may leave another params.yaml there)
    n = rows[0]["n_images"]
    assert len(rows) == len(found) * (found[0][1]["n_blocks"] + 2)
    for act_dir, meta in found:
        p0 = meta["num_prefix_tokens"]
        for site, depth, tokens in activations.residual_sites(act_dir):
            patches = np.asarray(tokens[:int(n), p0:], dtype=np.float64)
            centred = patches - patches.reshape(-1, patches.shape[-1]).mean(axis=0)
            direct = np.array([_direct(img) for img in centred])
            row = next(r for r in rows if r["epoch"] == meta["epoch"] and r["site"] == site)
            assert row["mean_r"] == pytest.approx(direct[:, 0].mean(), abs=1e-10)
            assert row["mean_abs_r"] == pytest.approx(direct[:, 1].mean(), abs=1e-10)
            assert row["mean_r_ci_low"] < row["mean_r"] < row["mean_r_ci_high"]
            assert len([r for r in reps if r["epoch"] == meta["epoch"] and r["site"] == site]) == min(ci["groups"], n)
    last = max(r["epoch"] for r in rows)
    depth = read_csv(plots / "depth_patches_mean_removed.csv")
    assert depth == [r for r in rows if r["epoch"] == last]
    summary = json.loads((workspace / "reports/metrics/correlation.json").read_text())
    assert set(summary["patches_mean_removed"]) == {r["site"] for r in depth}
