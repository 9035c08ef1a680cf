"""Every bad input of a public tgo/geometry function raises ValueError with its one-line message,
each condition of a check on its own, at its edge: the smallest input that fails next to the
smallest that passes (so a check that is off by one, or joins its conditions with `and`, fails
here)."""
import numpy as np
import pytest

from tgo.geometry import correlation, information, qk, spectral, stats, tokens

rng = np.random.default_rng(0)
X = rng.standard_normal((6, 4))
ACTS = rng.standard_normal((10, 4, 3))          # (N, P, C) on a 2x2 grid
ATTN = np.full((3, 4, 4), 0.25)                 # (N, T, T)
H = rng.standard_normal((3, 4, 5))              # (N, T, D)
TOKENS = rng.standard_normal((2, 30, 5, 8))     # (blocks, N, tokens, D), one token nan in block 1
TOKENS[1, :, 3] = np.nan
W = rng.standard_normal((6, 4))                 # qkv weight of 2 heads of width 1 for D = 4

BAD = [
    # stats
    (lambda: stats.image_groups(1), "need at least 2 images for an interval, got 1"),
    (lambda: stats.image_groups(2, groups=1), "need at least 2 groups, got 1"),
    (lambda: stats.interval(0.0, [1.0, 2.0], level=1.0), "level must lie in (0, 1), got 1.0"),
    (lambda: stats.interval(0.0, [1.0, 2.0], level=0.0), "level must lie in (0, 1), got 0.0"),
    (lambda: stats.paired_interval(np.mean, X, X[:5]), "paired samples need the same rows, got 6 and 5"),
    (lambda: stats.half_samples(1), "need at least 2 images for half-samples, got 1"),
    (lambda: stats.half_samples(4, count=2), "the number of half-samples must be even and >= 4, got 2"),
    (lambda: stats.half_samples(4, count=5), "the number of half-samples must be even and >= 4, got 5"),
    (lambda: stats.half_sample_se(np.zeros(2)), "need an even number >= 4 of half-sample replicates, got 2"),
    (lambda: stats.half_sample_se(np.zeros(5)), "need an even number >= 4 of half-sample replicates, got 5"),
    (lambda: stats.half_sample_interval(0.0, np.zeros(4), level=1.0), "level must lie in (0, 1), got 1.0"),
    (lambda: stats.half_sample_interval(0.0, np.zeros(4), level=0.0), "level must lie in (0, 1), got 0.0"),
    # spectral
    (lambda: spectral.eigenspectrum(np.zeros(3)), "expected an array of shape (N, D), got (3,)"),
    (lambda: spectral.batched_eigenspectra(X), "expected an array of shape (..., N, D), got (6, 4)"),
    (lambda: spectral.eigenspectrum(X[:1]), "need at least 2 samples (N >= 2), got shape (1, 4)"),
    (lambda: spectral.effective_rank(np.ones((2, 2))), "expected a 1-D eigenvalue array, got shape (2, 2)"),
    (lambda: spectral.effective_rank(np.ones(0)), "empty eigenvalue array"),
    (lambda: spectral.effective_rank(np.array([1.0, np.nan])), "eigenvalues must be finite"),
    (lambda: spectral.effective_rank(np.array([1.0, -0.1])),
     "eigenvalues must be non-negative (got a clearly negative value)"),
    (lambda: spectral.rankme(np.zeros(3)), "expected a non-empty 2-D array, got shape (3,)"),
    (lambda: spectral.rankme(np.zeros((0, 3))), "expected a non-empty 2-D array, got shape (0, 3)"),
    (lambda: spectral.spectral_flatness(np.ones(3), eps=0.0), "eps must be positive, got 0.0"),
    (lambda: spectral.mean_cosine_similarity(np.zeros(3)), "expected a 2-D array with N >= 2, got shape (3,)"),
    (lambda: spectral.mean_cosine_similarity(X[:1]), "expected a 2-D array with N >= 2, got shape (1, 4)"),
    (lambda: spectral.mean_cosine_similarity(X, max_samples=1), "max_samples must be >= 2, got 1"),
    (lambda: spectral.singular_values(np.ones(3), 1), "n must be >= 2, got 1"),
    (lambda: spectral.row_scatter(np.zeros(3), np.zeros(3, int)),
     "expected an array of shape (N, D) with N >= 2, got (3,)"),
    (lambda: spectral.row_scatter(X[:1], np.zeros(1, int)),
     "expected an array of shape (N, D) with N >= 2, got (1, 4)"),
    (lambda: spectral.row_scatter(X, np.zeros(5, int)), "expected 6 group labels, got shape (5,)"),
    (lambda: spectral.row_scatter(X, np.arange(6) % 2, rows=(np.arange(3), np.arange(1, 4))),
     "rows must be nested: each index array a prefix of the next"),
    (lambda: spectral.row_scatter(X, np.arange(6) % 2, rows=(np.arange(4), np.arange(3))),
     "rows must be nested: each index array a prefix of the next"),
    (lambda: spectral.jackknife_eigenspectra(X[None], np.zeros(5, int)), "expected 6 group labels, got shape (5,)"),
    (lambda: spectral.jackknife_eigenspectra(X[None], np.array([0, 0, 0, 0, 0, 1])),
     "every replicate needs at least 2 rows: use fewer groups"),
    (lambda: spectral.leading_jackknife_eigenspectra(X[None], np.zeros(5, int), 2),
     "expected 6 group labels, got shape (5,)"),
    (lambda: spectral.jackknife_spectral_metrics(np.zeros(3), np.zeros(3, int)),
     "expected an array of shape (N, D) with N >= 2, got (3,)"),
    (lambda: spectral.jackknife_spectral_metrics(X[:1], np.zeros(1, int)),
     "expected an array of shape (N, D) with N >= 2, got (1, 4)"),
    (lambda: spectral.jackknife_spectral_metrics(X, np.zeros(5, int)), "expected 6 group labels, got shape (5,)"),
    (lambda: spectral.jackknife_spectral_metrics(X[:, :3], np.array([0, 0, 0, 0, 0, 1])),
     "every replicate needs at least 2 rows: use fewer groups"),
    # correlation
    (lambda: correlation.intertoken_correlation(np.zeros(3)), "expected tokens of shape (T, D) or (N, T, D), got (3,)"),
    (lambda: correlation.intertoken_correlation(np.zeros((2, 0, 3))),
     "expected tokens of shape (T, D) or (N, T, D), got (2, 0, 3)"),
    (lambda: correlation.intertoken_correlation(np.zeros((2, 3, 0))),
     "expected tokens of shape (T, D) or (N, T, D), got (2, 3, 0)"),
    (lambda: correlation.intertoken_correlation(H, remove=np.zeros(4)),
     "remove must be a finite vector of the 5 features, got shape (4,)"),
    (lambda: correlation.intertoken_correlation(H, remove=np.array([0, 0, 0, 0, np.inf])),
     "remove must be a finite vector of the 5 features, got shape (5,)"),
    (lambda: correlation.intertoken_correlation(np.where(np.arange(5) == 4, np.nan, H)),
     "tokens has non-finite values (images 0..2)"),
    # information
    (lambda: information.ksg_mi(np.zeros((2, 5)), np.zeros(5)), "expected 1-D samples, got shapes (2, 5), (5,)"),
    (lambda: information.ksg_mi(np.zeros(5), np.zeros((2, 5))), "expected 1-D samples, got shapes (5,), (2, 5)"),
    (lambda: information.ksg_mi(np.arange(5.0), np.arange(4.0)),
     "x and y need the same number of samples, got (1, 5), (1, 4)"),
    (lambda: information.ksg_mi(np.arange(5.0), np.arange(5.0), k=0), "need 1 <= k < n, got k=0, n=5"),
    (lambda: information.ksg_mi(np.arange(5.0), np.arange(5.0), k=5), "need 1 <= k < n, got k=5, n=5"),
    (lambda: information.ksg_mi_batch(np.zeros((2, 5)), np.zeros(5)),
     "expected x (m, n) or (n,) and y (m, n), got (2, 5), (5,)"),
    (lambda: information.ksg_mi_batch(np.zeros((1, 2, 5)), np.zeros((2, 5))),
     "expected x (m, n) or (n,) and y (m, n), got (1, 2, 5), (2, 5)"),
    (lambda: information.ksg_mi_batch(np.zeros((3, 5)), np.zeros((2, 5))),
     "x and y need the same number of rows, got (3, 5), (2, 5)"),
    (lambda: information.shuffle_baseline(np.zeros((2, 5)), np.zeros(5)),
     "expected 1-D samples, got shapes (2, 5), (5,)"),
    (lambda: information.shuffle_baseline(np.zeros(5), np.zeros((2, 5))),
     "expected 1-D samples, got shapes (5,), (2, 5)"),
    (lambda: information.binned_mi(np.zeros(5), np.zeros(4)), "expected two 1-D samples of equal length, got (5,), (4,)"),
    (lambda: information.binned_mi(np.zeros(1), np.zeros(1)), "expected two 1-D samples of equal length, got (1,), (1,)"),
    (lambda: information.mi_vs_distance(ACTS[0], (2, 2), [0]), "expected acts of shape (N, P, C), got (4, 3)"),
    (lambda: information.mi_vs_distance(ACTS, (2, 3), [0]), "grid 2x3 does not match 4 patches"),
    (lambda: information.mi_vs_distance(ACTS, (2, 2), [0], estimator="kde"), "unknown estimator 'kde'"),
    (lambda: information.mi_vs_distance(ACTS, (2, 2), [0], n_shuffles=0), "n_shuffles must be >= 1"),
    (lambda: information.mi_vs_distance(ACTS, (2, 2), [0], reference=(2, 0)),
     "reference (2, 0) is outside the 2x2 grid"),
    (lambda: information.mi_vs_distance(ACTS, (2, 2), [0], reference=(0, 2)),
     "reference (0, 2) is outside the 2x2 grid"),
    (lambda: information.mi_vs_distance(ACTS, (2, 2), [0], reference=(-1, 0)),
     "reference (-1, 0) is outside the 2x2 grid"),
    (lambda: information.mi_vs_distance(ACTS, (2, 2), [0], reference=(0, -1)),
     "reference (0, -1) is outside the 2x2 grid"),
    (lambda: information.mi_vs_distance(ACTS, (2, 2), [0], min_patches=5),
     "no distance on the 2x2 grid holds 5 patches per reference"),
    (lambda: information.mi_vs_distance(ACTS, (2, 2), [0], min_patches=1, half_samples=np.arange(4)),
     "half_samples must be a 2-D array of image indices, got (4,)"),
    (lambda: information.mi_vs_distance(ACTS, (2, 2), [0], min_patches=1, half_samples=np.zeros((4, 5))),
     "half_samples must be a 2-D array of image indices, got (4, 5)"),
    (lambda: information.mi_vs_distance(ACTS, (2, 2), [0], min_patches=1, half_samples=np.zeros((0, 5), int)),
     "half_samples must be a 2-D array of image indices, got (0, 5)"),
    (lambda: information.mi_vs_distance(ACTS, (2, 2), [0], min_patches=1, half_samples=np.full((4, 5), -1)),
     "half_samples index images outside 0..9"),
    (lambda: information.mi_vs_distance(ACTS, (2, 2), [0], min_patches=1, half_samples=np.full((4, 5), 10)),
     "half_samples index images outside 0..9"),
    (lambda: information.mi_decay_rate(np.ones((2, 3)), np.ones(3)),
     "expected distances (D,) and mi (..., D), got (2, 3), (3,)"),
    (lambda: information.mi_decay_rate(np.ones(3), np.ones(4)), "expected distances (D,) and mi (..., D), got (3,), (4,)"),
    (lambda: information.conditional_histogram(np.arange(5.0), np.arange(4.0)),
     "x and y need the same length, got (5,), (4,)"),
    # qk
    (lambda: qk.decompose(np.zeros(4), np.zeros(4)), "expected w_q, w_k of the same shape (D, d_head), got (4,) and (4,)"),
    (lambda: qk.decompose(np.zeros((4, 2)), np.zeros((4, 3))),
     "expected w_q, w_k of the same shape (D, d_head), got (4, 2) and (4, 3)"),
    (lambda: qk.head_projections(np.zeros(6), 2), "qkv weight of shape (6,) does not split into 3 x 2 heads"),
    (lambda: qk.head_projections(np.zeros((9, 4)), 2), "qkv weight of shape (9, 4) does not split into 3 x 2 heads"),
    (lambda: qk.heads_together(np.zeros((4, 2)), np.zeros((4, 2))),
     "expected w_q, w_k of the same shape (H, D, d_head), got (4, 2) and (4, 2)"),
    (lambda: qk.heads_together(np.zeros((2, 4, 2)), np.zeros((2, 4, 3))),
     "expected w_q, w_k of the same shape (H, D, d_head), got (2, 4, 2) and (2, 4, 3)"),
    (lambda: qk.heads_together_leave_one_out(np.zeros((4, 2)), np.zeros((4, 2))),
     "expected w_q, w_k of the same shape (H, D, d_head), got (4, 2) and (4, 2)"),
    (lambda: qk.heads_together_leave_one_out(np.zeros((2, 4, 2)), np.zeros((2, 4, 3))),
     "expected w_q, w_k of the same shape (H, D, d_head), got (2, 4, 2) and (2, 4, 3)"),
    (lambda: qk.heads_together_leave_one_out(np.zeros((1, 4, 2)), np.zeros((1, 4, 2))),
     "leaving one head out needs at least 2 heads, got 1"),
    (lambda: qk.attention_from_inputs(H[0], W[:, :4], np.zeros(6), 2), "h of shape (4, 5) and qkv weight of shape (6, 4)"),
    (lambda: qk.attention_from_inputs(H[..., :4], np.zeros(6), np.zeros(6), 2), "h of shape (3, 4, 4) and qkv weight of "
                                                                                 "shape (6,)"),
    (lambda: qk.attention_from_inputs(H, W, np.zeros(6), 2), "h of shape (3, 4, 5) and qkv weight of shape (6, 4)"),
    (lambda: qk.attention_from_inputs(H[..., :4], W[:5], np.zeros(5), 2), "h of shape (3, 4, 4) and qkv weight of "
                                                                           "shape (5, 4)"),
    (lambda: qk.angle_attention_stats(H, ATTN[0]), "attention must be (N, H, T, T) or (N, T, T), got (4, 4)"),
    (lambda: qk.angle_attention_stats(H[0], ATTN), "h of shape (4, 5) does not match attention of shape (3, 4, 4)"),
    (lambda: qk.angle_attention_stats(H[:2], ATTN), "h of shape (2, 4, 5) does not match attention of shape (3, 4, 4)"),
    (lambda: qk.angle_attention_stats(H[:, :3], ATTN),
     "h of shape (3, 3, 5) does not match attention of shape (3, 4, 4)"),
    (lambda: qk.angle_attention_stats(H, ATTN[:, :3]), "h of shape (3, 4, 5) does not match attention of shape (3, 3, 4)"),
    (lambda: qk.angle_attention_stats(H, ATTN[..., :3]),
     "h of shape (3, 4, 5) does not match attention of shape (3, 4, 3)"),
    (lambda: qk.angle_attention_stats(H, ATTN, bins=0), "bins=0: need at least 1"),
    (lambda: qk.angle_attention_stats(H, ATTN, num_prefix_tokens=3),
     "need at least 2 patch tokens, got T=4 with 3 prefix tokens"),
    (lambda: qk.jackknife_angle_attention_stats(H, ATTN, np.zeros(2, int)), "expected 3 group labels, got shape (2,)"),
    # tokens
    (lambda: tokens.alpha_signatures(np.zeros((2, 3, 4))), "expected acts of shape (blocks, N, tokens, D), got (2, 3, 4)"),
    (lambda: tokens.alpha_signatures(TOKENS, (1, 4)),
     "non-finite covariance: acts has non-finite (or overflowing) values in block 1, tokens 0..4"),
    (lambda: tokens.jackknife_alpha_signatures(TOKENS, stats.image_groups(30, 5), (1, 4)),
     "non-finite covariance: acts has non-finite (or overflowing) values in block 1, tokens 0..4"),
    (lambda: tokens.cluster_signatures(np.zeros(3), 2),
     "expected signatures of shape (P, blocks) with P, blocks >= 1, got (3,)"),
    (lambda: tokens.cluster_signatures(np.zeros((0, 3)), 2),
     "expected signatures of shape (P, blocks) with P, blocks >= 1, got (0, 3)"),
    (lambda: tokens.cluster_signatures(np.zeros((3, 0)), 2),
     "expected signatures of shape (P, blocks) with P, blocks >= 1, got (3, 0)"),
    (lambda: tokens.cluster_signatures(np.array([[1.0], [np.nan]]), 2),
     "signatures must be finite (nan alphas cannot be clustered)"),
    (lambda: tokens.cluster_signatures(np.arange(3.0)[:, None], 1),
     "n_clusters must be between 2 and the number of signatures P=3, got 1"),
    (lambda: tokens.cluster_signatures(np.arange(3.0)[:, None], 4),
     "n_clusters must be between 2 and the number of signatures P=3, got 4"),
    (lambda: tokens.cluster_signatures(np.arange(3.0)[:, None], 2, method="dbscan"),
     "unknown clustering method 'dbscan': use 'kmeans' or 'agglomerative'"),
    (lambda: tokens.spatial_coherence(np.zeros(0), (0, 2)), "grid must have positive (rows, cols), got (0, 2)"),
    (lambda: tokens.spatial_coherence(np.zeros(0), (2, 0)), "grid must have positive (rows, cols), got (2, 0)"),
    (lambda: tokens.spatial_coherence(np.zeros(5), (2, 3)), "expected 6 labels for a 2x3 grid, got shape (5,)"),
    (lambda: tokens.spatial_coherence(np.zeros(1), (1, 1)), "a 1x1 grid has no neighbouring pairs"),
    (lambda: tokens.spatial_coherence(np.arange(2), (1, 2), n_permutations=1), "n_permutations must be >= 2, got 1"),
]


@pytest.mark.parametrize("call, message", BAD, ids=[m[:60] for _, m in BAD])
def test_a_bad_input_is_one_named_error(call, message):
    with pytest.raises(ValueError) as info:
        call()
    assert str(info.value).startswith(message) and "\n" not in str(info.value)


EDGES = [  # the smallest inputs each check lets through
    lambda: stats.image_groups(2, groups=2),
    lambda: stats.half_samples(2, count=4),
    lambda: stats.half_sample_se(np.zeros(4)),
    lambda: spectral.eigenspectrum(X[:2]),
    lambda: spectral.effective_rank(np.array([1.0, -1e-15])),
    lambda: spectral.mean_cosine_similarity(X[:2], max_samples=2),
    lambda: spectral.singular_values(np.ones(3), 2),
    lambda: spectral.jackknife_eigenspectra(X[None], np.array([0, 0, 0, 0, 1, 1])),
    lambda: spectral.jackknife_spectral_metrics(X[:, :3], np.array([0, 0, 0, 0, 1, 1]), (1, 3)),
    lambda: correlation.intertoken_correlation(np.ones((2, 1, 1))),
    lambda: information.ksg_mi(np.arange(5.0), np.arange(5.0), k=1),
    lambda: information.ksg_mi(np.arange(5.0), np.arange(5.0), k=4),
    lambda: information.binned_mi(np.arange(2.0), np.arange(2.0)),
    lambda: information.mi_vs_distance(ACTS, (2, 2), [0], reference=(1, 1), min_patches=1,
                                       half_samples=np.array([[0, 9], [1, 8], [2, 7], [3, 6]])),
    lambda: qk.head_projections(np.zeros((12, 4)), 2),  # 3 x 2 heads of width 2
    lambda: qk.heads_together_leave_one_out(np.ones((2, 4, 2)), np.ones((2, 4, 2))),
    lambda: qk.angle_attention_stats(H, ATTN, num_prefix_tokens=2, bins=1),
    lambda: tokens.cluster_signatures(np.arange(2.0)[:, None], 2),
    lambda: tokens.cluster_signatures(np.arange(3.0)[:, None], 3),
    lambda: tokens.spatial_coherence(np.arange(2), (1, 2), n_permutations=2),
    lambda: tokens.spatial_coherence(np.arange(2), (2, 1), n_permutations=2),
]


@pytest.mark.parametrize("call", EDGES)
def test_the_smallest_good_input_passes(call):
    call()

