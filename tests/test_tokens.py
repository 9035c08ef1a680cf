"""Tests for tgo.geometry.tokens: planted power laws, the rank-window guard, analytic
permutation-null values and separable clusters; the tokens stage's intervals on the micro workspace
against alpha recomputed without each group of images."""

import math

import numpy as np
import pytest

from micro import micro_config
from tgo import activations
from tgo.geometry import spectral as sp
from tgo.geometry import tokens as tk
from tgo.geometry.stats import image_groups
from tgo.io import read_csv


def _rng(seed=0):
    return np.random.default_rng(seed)


def _orthogonal(d, rng):
    q, r = np.linalg.qr(rng.standard_normal((d, d)))
    return q * np.sign(np.diag(r))


# --- alpha signatures --------------------------------------------------------------


@pytest.fixture(scope="module")
def planted():
    """acts (3, 2000, 5, 64): token t of block b has covariance eigenvalues k^-alpha[b, t]."""
    blocks, n, n_tokens, d = 3, 2000, 5, 64
    rng = _rng(10)
    alpha = rng.permutation(np.linspace(0.8, 2.5, blocks * n_tokens)).reshape(blocks, n_tokens)
    k = np.arange(1, d + 1)
    acts = np.empty((blocks, n, n_tokens, d))
    for b in range(blocks):
        for t in range(n_tokens):
            scale = k ** (-alpha[b, t] / 2)
            acts[b, :, t, :] = rng.standard_normal((n, d)) * scale @ _orthogonal(d, rng) + rng.standard_normal(d)
    return acts, alpha


def test_planted_power_laws_are_recovered(planted):
    acts, alpha = planted
    fit, r2 = tk.alpha_signatures(acts, (3, 30))
    assert fit.shape == r2.shape == alpha.shape
    assert fit.dtype == r2.dtype == np.float64
    np.testing.assert_allclose(fit, alpha, atol=0.08)
    assert np.all(r2 > 0.98)


def test_matches_per_token_spectral_alpha(planted, monkeypatch):
    acts, _ = planted
    # Token batches of 2 (with a remainder of 1) exercise the batching and threading.
    monkeypatch.setattr(tk, "_MAX_TOKENS_PER_CHUNK", 2)
    fit, r2 = tk.alpha_signatures(acts, (3, 30))
    for b in range(acts.shape[0]):
        for t in range(acts.shape[2]):
            a, q = sp.alpha(sp.eigenspectrum(acts[b, :, t, :]), (3, 30))
            assert fit[b, t] == pytest.approx(a, abs=1e-8)
            assert r2[b, t] == pytest.approx(q, abs=1e-8)


def test_float16_and_memmap_input_match_float64(planted, tmp_path):
    acts16 = planted[0][:, :1000].astype(np.float16)
    path = tmp_path / "acts.npy"
    np.save(path, acts16)
    mm = np.load(path, mmap_mode="r")
    expected = tk.alpha_signatures(acts16.astype(np.float64), (3, 30))
    for given in (acts16, mm):
        got = tk.alpha_signatures(given, (3, 30))
        np.testing.assert_allclose(got[0], expected[0], rtol=0, atol=1e-12)
        np.testing.assert_allclose(got[1], expected[1], rtol=0, atol=1e-12)


def test_too_few_images_gives_nan_and_a_reason():
    acts = _rng(1).standard_normal((2, 50, 3, 64)).astype(np.float32)
    fit, r2 = tk.alpha_signatures(acts, (11, 100))
    assert fit.shape == r2.shape == (2, 3)
    assert np.all(np.isnan(fit)) and np.all(np.isnan(r2))
    reason = sp.alpha_window_error((11, 100), 50, 64)
    assert isinstance(reason, str) and "N-1=49" in reason
    # With enough images and dimensions the window fits.
    assert sp.alpha_window_error((11, 100), 1000, 384) is None
    assert sp.alpha_window_error((11, 100), 101, 100) is None
    assert sp.alpha_window_error((11, 100), 100, 384) is not None  # N - 1 = 99 < 100


def test_constant_token_is_nan_and_bad_input_raises():
    acts = _rng(2).standard_normal((1, 40, 3, 16))
    acts[0, :, 1, :] = 0.7  # identical for every image: no spectrum
    fit, _ = tk.alpha_signatures(acts, (2, 10))
    assert np.isnan(fit[0, 1]) and np.all(np.isfinite(fit[0, [0, 2]]))
    with pytest.raises(ValueError, match="shape"):
        tk.alpha_signatures(acts[0], (2, 10))
    for bad in (np.inf, np.nan):
        broken = acts.copy()
        broken[0, 3, 2, 5] = bad
        with pytest.raises(ValueError, match="non-finite"):
            tk.alpha_signatures(broken, (2, 10))
        with pytest.raises(ValueError, match="non-finite"):
            tk.jackknife_alpha_signatures(broken, np.arange(40) % 4, (2, 10))


def test_jackknife_alpha_signatures_against_alpha_without_each_group():
    """Where the replicates' eigenvalues are approximated (D=160 > 2 x (38 directions + 30 rows)): the
    alphas equal alpha_signatures', each replicate alpha_signatures of the images less its group."""
    rng = _rng(3)
    n, d = 600, 160
    k = np.arange(1, d + 1)
    acts = np.stack([[rng.standard_normal((n, d)) * k ** (-a / 2) @ _orthogonal(d, rng) for a in (0.9, 1.6)]
                     for _ in range(2)]).transpose(0, 2, 1, 3)  # (blocks, N, tokens, D)
    labels = np.arange(n) % 20
    alphas, r2, reps = tk.jackknife_alpha_signatures(acts, labels, (3, 30))
    point = tk.alpha_signatures(acts, (3, 30))
    np.testing.assert_allclose(alphas, point[0], rtol=1e-10)
    np.testing.assert_allclose(r2, point[1], rtol=1e-10)
    exact = np.stack([tk.alpha_signatures(acts[:, labels != g], (3, 30))[0] for g in range(20)])
    np.testing.assert_allclose(reps, exact, atol=1e-3)  # spectral.leading_jackknife_eigenspectra's tolerance


# --- spatial coherence --------------------------------------------------------------


def _quadrants(rows=14, cols=14):
    r, c = np.meshgrid(np.arange(rows), np.arange(cols), indexing="ij")
    return (2 * (r >= rows // 2) + (c >= cols // 2)).ravel()


def _null_expectation(labels):
    p = labels.size
    counts = np.bincount(labels)
    return float(np.sum(counts * (counts - 1)) / (p * (p - 1)))


def test_quadrants_are_spatially_coherent():
    labels = _quadrants()
    res = tk.spatial_coherence(labels, (14, 14), n_permutations=1000, seed=0)
    n_pairs = 14 * 13 + 13 * 14
    # Each row (column) has 13 neighbour pairs; exactly one crosses the quadrant border.
    assert res["n_pairs"] == n_pairs and res["n_permutations"] == 1000
    assert res["neighbour_share"] == pytest.approx((n_pairs - 14 - 14) / n_pairs, abs=1e-12)
    assert res["null_mean"] == pytest.approx(_null_expectation(labels), abs=0.01)
    assert res["z"] > 10


def test_shuffled_labels_are_not_coherent():
    labels = _rng(3).permutation(_quadrants())
    res = tk.spatial_coherence(labels, (14, 14), n_permutations=1000, seed=1)
    assert abs(res["z"]) < 3
    assert res["null_mean"] == pytest.approx(_null_expectation(labels), abs=0.01)


def test_unequal_blobs_null_mean_and_determinism():
    labels = np.zeros((14, 14), dtype=int)
    labels[2:6, 3:10] = 1
    labels[9:, 9:] = 2
    labels = labels.ravel()
    res = tk.spatial_coherence(labels, (14, 14), n_permutations=500, seed=4)
    assert res["null_mean"] == pytest.approx(_null_expectation(labels), abs=0.01)
    assert res["z"] > 10
    assert res == tk.spatial_coherence(labels, (14, 14), n_permutations=500, seed=4)


def test_spatial_coherence_edge_cases():
    res = tk.spatial_coherence(np.zeros(12, dtype=int), (3, 4), n_permutations=50)
    assert res["neighbour_share"] == 1.0 and res["null_std"] == 0.0 and np.isnan(res["z"])
    with pytest.raises(ValueError):
        tk.spatial_coherence(np.zeros(11, dtype=int), (3, 4))
    with pytest.raises(ValueError):
        tk.spatial_coherence(np.zeros(1, dtype=int), (1, 1))


def test_a_window_the_images_hold_but_a_replicate_does_not():
    """10 images in 5 groups, D = 8: ranks 1..8 fit the images (rank up to 8) but not a replicate's 8
    images (rank up to 7): the signatures as alpha_signatures gives them, every replicate nan. One
    token is enough."""
    acts = np.random.default_rng(3).standard_normal((2, 10, 1, 8)) * np.arange(1, 9) ** -1.0
    labels = image_groups(10, 5)
    alphas, r2, reps = tk.jackknife_alpha_signatures(acts, labels, (1, 8))
    want = tk.alpha_signatures(acts, (1, 8))
    assert np.all(np.isfinite(alphas)) and alphas.shape == (2, 1)
    np.testing.assert_array_equal(alphas, want[0])
    np.testing.assert_array_equal(r2, want[1])
    assert reps.shape == (5, 2, 1) and np.all(np.isnan(reps))
    assert np.all(np.isfinite(tk.jackknife_alpha_signatures(acts, labels, (1, 7))[2]))


def test_spatial_coherence_null_is_a_sample_standard_deviation():
    """Two permutations of a 4x4 grid's labels: the null's standard deviation with ddof 1 is
    |a - b| / sqrt(2) for their two neighbour shares a, b, each a multiple of 1/24 (24 neighbour
    pairs); the defaults are 1000 permutations from seed 0."""
    labels = np.repeat(np.arange(4), 4)
    res = tk.spatial_coherence(labels, (4, 4), n_permutations=2, seed=0)
    assert res["n_pairs"] == 24 and res["null_std"] > 0
    a_minus_b = res["null_std"] * np.sqrt(2) * 24
    assert a_minus_b == pytest.approx(round(a_minus_b), abs=1e-9)
    assert 2 * res["null_mean"] * 24 == pytest.approx(round(2 * res["null_mean"] * 24), abs=1e-9)
    assert tk.spatial_coherence(labels, (4, 4)) == tk.spatial_coherence(labels, (4, 4), 1000, 0)


# --- clustering ---------------------------------------------------------------------


@pytest.mark.parametrize("method", ["kmeans", "agglomerative"])
def test_two_separated_groups_are_recovered(method):
    rng = _rng(5)
    low = 1.0 + 0.05 * rng.standard_normal((20, 6))
    high = 2.5 + 0.05 * rng.standard_normal((15, 6))
    order = rng.permutation(35)
    signatures = np.vstack([low, high])[order]
    truth = np.r_[np.zeros(20, int), np.ones(15, int)][order]  # lower mean signature -> label 0
    labels = tk.cluster_signatures(signatures, 2, method, seed=0)
    np.testing.assert_array_equal(labels, truth)
    # Relabelling makes the labels independent of the input order of the groups.
    np.testing.assert_array_equal(tk.cluster_signatures(signatures[::-1], 2, method), truth[::-1])


def test_cluster_signatures_rejects_bad_input():
    sig = _rng(6).standard_normal((10, 4))
    with pytest.raises(ValueError, match="method"):
        tk.cluster_signatures(sig, 2, "dbscan")
    for k in (1, 11):
        with pytest.raises(ValueError, match="n_clusters"):
            tk.cluster_signatures(sig, k)
    bad = sig.copy()
    bad[3, 1] = np.nan
    with pytest.raises(ValueError, match="finite"):
        tk.cluster_signatures(bad, 2)
    with pytest.raises(ValueError, match="shape"):
        tk.cluster_signatures(sig[:, 0], 2)


# --- the tokens stage on the micro workspace (tests/conftest.py) -------------------------------------

def test_tokens_stage_intervals_at_the_first_and_last_checkpoint(workspace):
    plots = workspace / "reports/tokens"
    depth, reps = read_csv(plots / "depth_all.csv"), read_csv(plots / "replicates.csv")
    params = micro_config()  # what the workspace ran with (tests may leave another params.yaml there)
    found = activations.checkpoints(workspace / "data/activations")
    epochs = [m["epoch"] for _, m in found]
    assert len(epochs) >= 3
    first, last = epochs[0], epochs[-1]
    for r in depth:
        for k in ("patch_alpha_mean", "cls_alpha"):
            low, high = r[f"{k}_ci_low"], r[f"{k}_ci_high"]
            assert (low < r[k] < high) if r["epoch"] in (first, last) else (math.isnan(low) and math.isnan(high))
    assert sorted({r["epoch"] for r in reps}) == [first, last]
    # Paired: replicate g at both checkpoints is alpha without the same images, computed directly.
    meta = found[0][1]
    groups = image_groups(meta["n_images"], params["ci"]["groups"], params["ci"]["seed"])
    p0, ranks = meta["num_prefix_tokens"], tuple(params["tokens"]["alpha_ranks"])
    for act_dir, m in (found[0], found[-1]):
        residual = np.asarray(activations.load(act_dir, "residual"), dtype=np.float64)
        for g in (0, groups.max()):
            alphas, _ = tk.alpha_signatures(residual[:, groups != g], ranks)
            for b in range(m["n_blocks"]):
                rep = next(r for r in reps if r["epoch"] == m["epoch"] and r["depth"] == b + 1 and r["group"] == g)
                assert rep["patch_alpha_mean"] == pytest.approx(alphas[b, p0:].mean(), abs=1e-8)
                assert rep["cls_alpha"] == pytest.approx(alphas[b, 0], abs=1e-8)


def _ranked_by_mean(signatures, raw):
    """sklearn's cluster labels raw renamed 0, 1, ... in increasing order of the cluster's mean
    signature value, equal means in the order of their sklearn label (Python's stable sort)."""
    present = sorted(set(raw.tolist()))
    order = sorted(present, key=lambda c: (signatures[raw == c].mean(), c))
    return np.array([order.index(c) for c in raw])


def test_kmeans_clusters_are_sklearns_ranked_by_mean():
    """Uniform signatures (40 tokens, 3 blocks, 6 clusters) have many local optima, so the partition
    depends on the seed and the number of restarts: it is KMeans(6, n_init=10, random_state=seed)'s
    (default seed 0), relabelled by mean."""
    from sklearn.cluster import KMeans
    signatures = _rng(17).uniform(0, 1, (40, 3))
    for seed in (0, 1):
        raw = KMeans(n_clusters=6, n_init=10, random_state=seed).fit_predict(signatures)
        np.testing.assert_array_equal(tk.cluster_signatures(signatures, 6, seed=seed),
                                      _ranked_by_mean(signatures, raw))
    by_seed = [tk.cluster_signatures(signatures, 6, seed=seed) for seed in (0, 1)]
    np.testing.assert_array_equal(tk.cluster_signatures(signatures, 6), by_seed[0])
    assert not np.array_equal(*by_seed)


def test_clusters_of_equal_mean_keep_sklearns_order():
    """12 separated pairs of tokens, cluster c at (10c + j, 2m - 10c - j) for j = 0, 1: the mean of its
    entries is m = c % 2 exactly, so six clusters tie at 0 and six at 1. Ward's 12 clusters are the
    pairs; ties keep sklearn's order (a stable sort); the labels are int64."""
    from sklearn.cluster import AgglomerativeClustering
    c, j = np.repeat(np.arange(12), 2), np.tile([0, 1], 12)
    signatures = np.stack([10.0 * c + j, 2.0 * (c % 2) - 10.0 * c - j], axis=1)
    labels = tk.cluster_signatures(signatures, 12, "agglomerative")
    raw = AgglomerativeClustering(n_clusters=12, linkage="ward").fit_predict(signatures)
    assert labels.dtype == np.int64
    np.testing.assert_array_equal(labels, _ranked_by_mean(signatures, raw))
    assert sorted(set(labels[c % 2 == 0])) == list(range(6)) and len(set(labels[::2])) == 12


def test_float32_signatures_are_clustered_in_float64():
    """Two float32 signatures (1, 2^-30) and (1, 2^-31): in float64 their means differ, the second
    lower, while a float32 mean rounds both to 0.5. Either input order gives the lower one label 0."""
    signatures = np.array([[1.0, 2.0 ** -30], [1.0, 2.0 ** -31]], dtype=np.float32)
    for order in ([0, 1], [1, 0]):
        labels = tk.cluster_signatures(signatures[order], 2, "agglomerative")
        np.testing.assert_array_equal(labels, np.array([1, 0])[order])


def test_a_lapack_failure_on_finite_input_is_raised_as_such(monkeypatch):
    """A LinAlgError on finite activations (LAPACK not converging) is not reported as non-finite
    input: it propagates."""
    def failing(part):
        raise np.linalg.LinAlgError("Eigenvalues did not converge")
    monkeypatch.setattr(sp, "batched_eigenspectra", failing)
    with pytest.raises(np.linalg.LinAlgError, match="did not converge"):
        tk.alpha_signatures(_rng(4).standard_normal((1, 12, 2, 5)), (1, 4))


def test_jackknife_replicates_are_nan_where_the_window_does_not_fit():
    """10 images in 5 groups of 2, D = 8. A window beyond D (ranks 1..9) fits nothing: everything nan,
    as alpha_signatures gives it. Ranks 1..8 fit the images but no replicate (8 images, rank 7), and
    every replicate is nan even where round-off would give it an 8th eigenvalue: with the images of
    group 0 offset by 100 the replicate without them is a downdate of a scatter 1e4 times larger,
    whose 8th eigenvalue comes out near 1e-13 rather than 0."""
    acts = np.random.default_rng(3).standard_normal((2, 10, 1, 8)) * np.arange(1, 9) ** -1.0
    labels = image_groups(10, 5)
    alphas, r2, reps = tk.jackknife_alpha_signatures(acts, labels, (1, 9))
    assert np.all(np.isnan(alphas)) and np.all(np.isnan(r2)) and reps.shape == (5, 2, 1) and np.all(np.isnan(reps))
    acts[:, labels == 0] += 100 * np.random.default_rng(4).standard_normal(8)
    alphas, _, reps = tk.jackknife_alpha_signatures(acts, labels, (1, 8))
    np.testing.assert_array_equal(alphas, tk.alpha_signatures(acts, (1, 8))[0])
    assert np.all(np.isfinite(alphas)) and np.all(np.isnan(reps))
