"""Token-level geometry: per-token alpha signatures across blocks, their clusters and
the spatial coherence of those clusters on the patch grid.

Source: "On the Information Geometry of Vision Transformers", NeurReps
workshop 2023. For block b and token position t, X_{b,t} is the N x D matrix of that
token's representation over N images; alpha_{b,t} is the power-law decay exponent of
its covariance eigenspectrum, fitted as in alpha-ReQ (Agrawal et al. 2022, NeurIPS; see
``tgo.geometry.spectral.alpha``). The alpha signature of token t is
(alpha_{1,t}, ..., alpha_{B,t}); tokens are clustered by signature and the clusters are
compared with the patch grid against a permutation null.
"""

import operator
from concurrent.futures import ThreadPoolExecutor

import numpy as np
from threadpoolctl import threadpool_limits

from tgo.geometry import spectral
from tgo.io import progress, usable_cpus

# Tokens per batched eigendecomposition: small batches keep the float64 copies cache- and
# memory-friendly; capped by bytes for large N and D.
_MAX_TOKENS_PER_CHUNK = 8
_CHUNK_BYTES = 64 * 2**20


def alpha_signatures(acts, ranks=(11, 100)):
    """alpha-ReQ exponent of every (block, token) covariance spectrum.

    acts has shape (blocks, N, tokens, D) (any float dtype, e.g. a float16 memmap).
    For X_{b,t} = acts[b, :, t, :] (N x D), alpha_{b,t} is the slope of the weighted
    log-log fit log p_k ~ -alpha log k over k = lo..hi (weights 1/k) of the eigenvalues
    of C = X_c^T X_c / (N - 1), X_c centred over images; r2 is the weighted R^2 of that
    fit. Eigenvalues come from ``spectral.batched_eigenspectra`` (float64) and the fit
    from ``spectral.batched_alpha``, so every entry equals
    ``spectral.alpha(spectral.eigenspectrum(X_{b,t}), ranks)``.

    Source: "On the Information Geometry of Vision Transformers" (NeurReps
    2023); alpha fit as in alpha-ReQ, Agrawal et al. (2022), NeurIPS.

    Returns (alphas, r2), float64 arrays of shape (blocks, tokens). If the window does
    not fit inside the rank of X (hi > min(N-1, D), or an invalid window) both are all
    nan; ``spectral.alpha_window_error(ranks, N, D)`` gives the reason. A single token whose
    spectrum is numerically zero in the window (e.g. constant over images) is nan too.
    Raises ValueError if acts is not 4-D or contains non-finite values.
    """
    if getattr(acts, "ndim", None) != 4:
        acts = np.asarray(acts)
    if acts.ndim != 4:
        raise ValueError(f"expected acts of shape (blocks, N, tokens, D), got {acts.shape}")
    n_blocks, n, n_tokens, dim = acts.shape
    alphas = np.full((n_blocks, n_tokens), np.nan)
    r2 = np.full((n_blocks, n_tokens), np.nan)
    if spectral.alpha_window_error(ranks, n, dim) is not None or n_tokens == 0:
        return alphas, r2

    def fit(part, b, s):
        return spectral.batched_alpha(_finite(spectral.batched_eigenspectra, part, b, s), ranks)

    for b, s, (a, q) in _each_token_batch(acts, 2 * n * dim, fit, "alpha signatures"):
        alphas[b, s:s + len(a)], r2[b, s:s + len(a)] = a, q
    return alphas, r2


def jackknife_alpha_signatures(acts, labels, ranks=(11, 100)):
    """``alpha_signatures`` of acts (blocks, N, tokens, D) and its delete-a-group jackknife
    replicates: (alphas, r2, reps), reps of shape (G, blocks, tokens) with entry g
    alpha_signatures(acts[:, labels != g])[0].

    labels (N,) are the images' groups (``tgo.geometry.stats.image_groups``). Every token's
    eigenvalues and its replicates' come from ``spectral.leading_jackknife_eigenspectra``: one
    eigendecomposition of the token's covariance gives alphas and r2 (equal to
    ``alpha_signatures``' to round-off) and the subspace in which each replicate's leading
    eigenvalues are found (Rayleigh-Ritz, exact where it would not pay; its docstring states the
    error). The replicates are all nan when the window does not fit inside the rank of the smallest
    replicate (``spectral.alpha_window_error``).
    """
    labels = np.asarray(labels)
    n_blocks, n, n_tokens, dim = acts.shape
    g = labels.max() + 1
    reps = np.full((g, n_blocks, n_tokens), np.nan)
    if spectral.alpha_window_error(ranks, n - np.bincount(labels).max(), dim) is not None or n_tokens == 0:
        return *alpha_signatures(acts, ranks), reps
    alphas, r2 = np.full((2, n_blocks, n_tokens), np.nan)

    def fit(part, b, s):
        eigs, rep_eigs = _finite(lambda p: spectral.leading_jackknife_eigenspectra(p, labels, ranks[1]), part, b, s)
        return *spectral.batched_alpha(eigs, ranks), spectral.batched_alpha(rep_eigs, ranks)[0]

    # Per token: its float64 rows three times (copy, centred, in the eigenbasis).
    for b, s, (a, q, rep) in _each_token_batch(acts, 3 * n * dim, fit, "alpha intervals"):
        alphas[b, s:s + len(a)], r2[b, s:s + len(a)], reps[:, b, s:s + len(a)] = a, q, rep
    return alphas, r2, reps


def _finite(eigenvalues, part, b, s):
    """eigenvalues(part), or a ValueError naming the block and tokens when part has non-finite values.
    Non-finite input makes the covariance nan, which LAPACK reports as a convergence failure or nan
    eigenvalues; checking the output spares a pass over the data."""
    try:
        with np.errstate(invalid="ignore"):  # reported below as a ValueError instead
            out = eigenvalues(part)
    except np.linalg.LinAlgError:
        if np.all(np.isfinite(part)):
            raise
        out = None
    if out is None or not all(np.all(np.isfinite(e)) for e in (out if isinstance(out, tuple) else [out])):
        raise ValueError(f"non-finite covariance: acts has non-finite (or overflowing) values "
                         f"in block {b}, tokens {s}..{s + len(part) - 1}")
    return out


def _each_token_batch(acts, floats_per_token, fit, desc):
    """(block, first token, fit(part, block, first token)) for every batch of tokens of every block,
    part of shape (tokens, N, D). One block is held at a time, token-major (contiguous batches), the
    next read while it is fitted; its batches are fitted in parallel threads, each with
    single-threaded BLAS (many small eigendecompositions scale better across cores this way than
    through a threaded BLAS, see bench/alpha_signatures.py)."""
    n_blocks, _, n_tokens, _ = acts.shape
    chunk = int(max(1, min(_MAX_TOKENS_PER_CHUNK, _CHUNK_BYTES // (8 * floats_per_token))))
    starts = range(0, n_tokens, chunk)
    read = lambda b: np.ascontiguousarray(np.moveaxis(acts[b], 1, 0))  # noqa: E731
    with (threadpool_limits(limits=1, user_api="blas"), ThreadPoolExecutor(usable_cpus()) as pool,
          ThreadPoolExecutor(1) as reader):
        following = reader.submit(read, 0)
        for b in progress(range(n_blocks), desc=desc, unit="block", leave=False):
            block = following.result()
            if b + 1 < n_blocks:
                following = reader.submit(read, b + 1)
            for s, out in zip(starts, pool.map(lambda s: fit(block[s:s + chunk], b, s), starts)):
                yield b, s, out


def cluster_signatures(signatures, n_clusters, method="kmeans", seed=0):
    """Cluster tokens by their alpha signatures; returns int labels of shape (P,).

    signatures: (P, blocks), one alpha signature per patch token. method "kmeans":
    sklearn KMeans(n_clusters, n_init=10, random_state=seed); "agglomerative":
    AgglomerativeClustering(n_clusters, linkage="ward") (deterministic). Clusters are
    relabelled 0..n_clusters-1 in increasing order of their mean signature value (the
    mean of all entries of the members' signatures; ties keep sklearn's order), so
    labels are comparable across runs and checkpoints.

    Raises ValueError for an unknown method, n_clusters < 2 or > P, a non-2-D array or
    non-finite signatures (e.g. nan alphas from ``alpha_signatures``).
    """
    from sklearn.cluster import AgglomerativeClustering, KMeans  # slow import, used here only

    X = np.asarray(signatures, dtype=np.float64)
    if X.ndim != 2 or X.shape[0] == 0 or X.shape[1] == 0:
        raise ValueError(f"expected signatures of shape (P, blocks) with P, blocks >= 1, got {X.shape}")
    if not np.all(np.isfinite(X)):
        raise ValueError("signatures must be finite (nan alphas cannot be clustered)")
    n_clusters = operator.index(n_clusters)
    p = X.shape[0]
    if not 2 <= n_clusters <= p:
        raise ValueError(f"n_clusters must be between 2 and the number of signatures P={p}, got {n_clusters}")
    if method == "kmeans":
        model = KMeans(n_clusters=n_clusters, n_init=10, random_state=seed)
    elif method == "agglomerative":
        model = AgglomerativeClustering(n_clusters=n_clusters, linkage="ward")
    else:
        raise ValueError(f"unknown clustering method {method!r}: use 'kmeans' or 'agglomerative'")
    raw = model.fit_predict(X)
    # KMeans may leave a cluster empty on degenerate data; rank only the clusters present.
    present = np.unique(raw)
    means = np.array([X[raw == c].mean() for c in present])
    order = present[np.argsort(means, kind="stable")]
    relabel = np.empty(raw.max() + 1, dtype=np.int64)
    relabel[order] = np.arange(order.size)
    return relabel[raw]


def _grid_pairs(rows, cols):
    """Row-major indices (i, j) of all horizontal and vertical 4-neighbour pairs."""
    idx = np.arange(rows * cols).reshape(rows, cols)
    i = np.concatenate([idx[:, :-1].ravel(), idx[:-1, :].ravel()])
    j = np.concatenate([idx[:, 1:].ravel(), idx[1:, :].ravel()])
    return i, j


def spatial_coherence(labels, grid, n_permutations=1000, seed=0):
    """How often 4-neighbouring patches share a cluster, against a permutation null.

    labels: (rows * cols,) cluster labels of the patches in row-major order on the grid
    (rows, cols). neighbour_share = (1/|E|) sum_{(i,j) in E} [l_i == l_j] over the |E| =
    rows(cols-1) + (rows-1)cols horizontal and vertical neighbour pairs. The null
    permutes the labels over positions (numpy default_rng(seed), all permutations
    drawn at once); its mean estimates sum_c n_c (n_c - 1) / (P (P - 1)).
    z = (neighbour_share - null_mean) / null_std (null_std with ddof=1), nan if null_std == 0
    (e.g. a single cluster, where every permutation gives the same fraction).

    Spatial coherence of alpha-signature clusters as in "On the Information
    Geometry of Vision Transformers" (NeurReps 2023).

    Returns a dict: neighbour_share, null_mean, null_std, z (floats), n_pairs, n_permutations.
    """
    labels = np.asarray(labels)
    rows, cols = (operator.index(g) for g in grid)
    n_permutations = operator.index(n_permutations)
    if rows < 1 or cols < 1:
        raise ValueError(f"grid must have positive (rows, cols), got {grid}")
    if labels.shape != (rows * cols,):
        raise ValueError(f"expected {rows * cols} labels for a {rows}x{cols} grid, got shape {labels.shape}")
    if rows * cols < 2:
        raise ValueError(f"a {rows}x{cols} grid has no neighbouring pairs")
    if n_permutations < 2:
        raise ValueError(f"n_permutations must be >= 2, got {n_permutations}")
    i, j = _grid_pairs(rows, cols)
    share = float(np.mean(labels[i] == labels[j]))
    perms = np.random.default_rng(seed).permuted(np.broadcast_to(labels, (n_permutations, labels.size)), axis=1)
    null = np.mean(perms[:, i] == perms[:, j], axis=1)
    null_mean, null_std = float(null.mean()), float(null.std(ddof=1))
    z = (share - null_mean) / null_std if null_std > 0 else np.nan
    return {"neighbour_share": share, "null_mean": null_mean, "null_std": null_std, "z": float(z),
            "n_pairs": int(i.size), "n_permutations": n_permutations}
