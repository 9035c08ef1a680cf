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

# Tokens per batched eigendecomposition: small batches keep the float64 copies
# (three per batch inside spectral) cache- and memory-friendly; capped by bytes for large N and D.
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

    One block is read at a time; its tokens are split into small batches that are
    diagonalised in parallel threads, each with single-threaded BLAS (many small
    eigendecompositions scale better across cores this way than through a threaded
    BLAS, see bench/alpha_signatures.py).
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

    chunk = int(max(1, min(_MAX_TOKENS_PER_CHUNK, _CHUNK_BYTES // (n * dim * 8))))
    starts = range(0, n_tokens, chunk)

    def fit(block, b, s):
        part = np.moveaxis(block[:, s:s + chunk, :], 1, 0)  # (chunk, N, D)
        # Non-finite input makes the covariance nan, which LAPACK reports as a convergence
        # failure or nan eigenvalues; checking the output spares a pass over the data.
        try:
            with np.errstate(invalid="ignore"):  # reported below as a ValueError instead
                eigs = spectral.batched_eigenspectra(part)
        except np.linalg.LinAlgError:
            if np.all(np.isfinite(part)):
                raise
            eigs = None
        if eigs is None or not np.all(np.isfinite(eigs)):
            raise ValueError(f"non-finite covariance: acts has non-finite (or overflowing) values "
                             f"in block {b}, tokens {s}..{s + len(part) - 1}")
        return spectral.batched_alpha(eigs, ranks)

    with threadpool_limits(limits=1, user_api="blas"), ThreadPoolExecutor(usable_cpus()) as pool:
        for b in progress(range(n_blocks), desc="alpha signatures", unit="block", leave=False):
            block = acts[b]
            if isinstance(block, np.memmap):
                block = np.array(block)  # one sequential read instead of strided ones per batch
            for s, (a, q) in zip(starts, pool.map(lambda s: fit(block, b, s), starts)):
                alphas[b, s:s + chunk] = a
                r2[b, s:s + chunk] = q
    return alphas, r2


def jackknife_alpha_signatures(acts, labels, ranks=(11, 100)):
    """``alpha_signatures`` of acts (blocks, N, tokens, D) without each group of images: alphas of
    shape (G, blocks, tokens), entry g equal to alpha_signatures(acts[:, labels != g])[0].

    labels (N,) are the images' groups (``tgo.geometry.stats.image_groups``); the eigenvalues of
    every replicate come from ``spectral.jackknife_eigenspectra`` (one pass over each token's
    images), so the cost is G + 1 eigendecompositions per token. All nan when the window does not
    fit inside the rank of the smallest replicate (``spectral.alpha_window_error``).
    """
    labels = np.asarray(labels)
    n_blocks, n, n_tokens, dim = acts.shape
    g = labels.max() + 1
    out = np.full((g, n_blocks, n_tokens), np.nan)
    smallest = n - np.bincount(labels).max()
    if spectral.alpha_window_error(ranks, smallest, dim) is not None or n_tokens == 0:
        return out
    # Per token: its float64 rows twice, and G covariances three times (pieces, replicates, eigvalsh's
    # copy); at ViT-S/16's 384 dims one token's 80 MB already exceeds the cache, so one at a time.
    per_token = 8 * (2 * n * dim + 3 * g * dim * dim)
    chunk = int(max(1, min(_MAX_TOKENS_PER_CHUNK, _CHUNK_BYTES // per_token)))
    starts = range(0, n_tokens, chunk)

    def fit(block, s):
        eigs = spectral.jackknife_eigenspectra(np.moveaxis(block[:, s:s + chunk], 1, 0), labels)
        return spectral.batched_alpha(eigs, ranks)[0]

    # As alpha_signatures: batches of tokens in parallel threads, each with single-threaded BLAS.
    with threadpool_limits(limits=1, user_api="blas"), ThreadPoolExecutor(usable_cpus()) as pool:
        for b in progress(range(n_blocks), desc="alpha intervals", unit="block", leave=False):
            block = np.array(acts[b])  # one sequential read of a memmap
            for s, a in zip(starts, pool.map(lambda s: fit(block, s), starts)):
                out[:, b, s:s + chunk] = a
    return out


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
