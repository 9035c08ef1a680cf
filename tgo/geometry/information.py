"""Information-theoretic neuron statistics: mutual information between neurons as a
function of patch distance, excess kurtosis and conditional ("bowtie") histograms.

Source (seed 002): Philip, Pan & Schwartz, "Probing Vision Transformer Attention: Image
Statistics and Patch Similarity". A neuron is (sublayer, block, channel c, patch p); its
response is the value over N images. MI(d) is the mutual information between the neuron
of channel c at a reference patch and the neurons of the same channel at grid distance d,
averaged over channels and patches.

Estimator: KSG estimator 1 (Kraskov, Stoegbauer & Grassberger 2004, Phys. Rev. E 69,
066138) with k = 3, in nats, on standardised values, minus a shuffle baseline (the
estimator's value on the same marginals with the pairing destroyed). The paper's
Eq. 1 is the plain definition I(X;Y) = integral p(x,y) log p(x,y)/(p(x)p(y)).
"""

import numpy as np
from scipy import stats
from scipy.spatial import cKDTree
from scipy.special import digamma

# Jitter breaks ties (float16 activations have many) exactly as scikit-learn's
# mutual_info_regression does: 1e-10 * max(1, mean|x|) * N(0, 1), fixed seed.
_JITTER = 1e-10
_JITTER_SEED = 0
# Rows per chunk: keeps the (k, rows, n) float64 work arrays near 10-30 MB.
_ROWS_PER_CHUNK = 256


def _standardise(v):
    """Zero mean, unit variance along the last axis (float64); constant rows stay 0."""
    v = np.asarray(v, dtype=np.float64)
    v = v - v.mean(axis=-1, keepdims=True)
    sd = v.std(axis=-1, keepdims=True)
    return v / np.where(sd > 0, sd, 1.0)


def _jitter(n):
    rng = np.random.default_rng(_JITTER_SEED)
    return rng.standard_normal(n), rng.standard_normal(n)


def _prepare(x, y):
    """Standardised, jittered float64 copies of x and y (shape (..., n))."""
    x, y = _standardise(x), _standardise(y)
    jx, jy = _jitter(x.shape[-1])
    x = x + _JITTER * np.maximum(1.0, np.abs(x).mean(axis=-1, keepdims=True)) * jx
    y = y + _JITTER * np.maximum(1.0, np.abs(y).mean(axis=-1, keepdims=True)) * jy
    return x, y


def _insert(best, d, sl):
    """Insert candidate distances d into the ascending k-smallest lists best[:, sl]."""
    k = best.shape[0]
    for j in range(k - 1, 0, -1):
        np.minimum(best[j][sl], np.maximum(best[j - 1][sl], d), out=best[j][sl])
    np.minimum(best[0][sl], d, out=best[0][sl])


def _kth_neighbour(xs, yo, k):
    """eps_i: max-norm distance from point i to its k-th nearest neighbour (self excluded).

    xs (rows or 1, n) and yo (rows, n) hold the pairs (in any common order). All rows go
    into one cKDTree as 3-D points (x, y, row * gap): with gap larger than any distance
    inside a row, neighbours never cross rows, and the query runs in C on all cores.
    """
    rows, n = yo.shape
    xs = np.broadcast_to(xs, (rows, n))
    gap = 2.0 * max(np.abs(xs).max(), np.abs(yo).max()) + 1.0
    pts = np.column_stack([xs.ravel(), yo.ravel(), np.repeat(np.arange(rows) * gap, n)])
    tree = cKDTree(pts, leafsize=16, balanced_tree=False, compact_nodes=False)
    dist, _ = tree.query(pts, k=k + 1, p=np.inf, workers=-1)  # column 0 is the point itself
    return dist[:, k].reshape(rows, n)


def _strict_counts(sorted_vals, vals, eps):
    """#{j : |v_j - v_i| < eps_i} per row (self included), exact.

    sorted_vals (rows, n) sorted ascending, vals and eps (rows, n). One global
    searchsorted on row-offset keys gives positions to within a few ranks (the offset
    costs precision); they are then corrected with the exact comparison |v_j - v_i| < eps.
    """
    rows, n = vals.shape
    span = np.abs(sorted_vals).max() + eps.max() + 1.0
    offs = (np.arange(rows) * (2.0 * span))[:, None]
    keys = (sorted_vals + offs).ravel()
    base = (np.arange(rows) * n)[:, None]
    flat = sorted_vals.ravel()
    hi = np.searchsorted(keys, (vals + eps + offs).ravel(), "left").reshape(rows, n) - base
    lo = np.searchsorted(keys, (vals - eps + offs).ravel(), "right").reshape(rows, n) - base
    np.clip(hi, 0, n, out=hi)
    np.clip(lo, 0, n, out=lo)
    while True:  # hi: first rank with v_j - v_i >= eps
        up = (hi < n) & (flat[base + np.minimum(hi, n - 1)] - vals < eps)
        down = (hi > 0) & (flat[base + np.maximum(hi - 1, 0)] - vals >= eps)
        if not (up.any() or down.any()):
            break
        hi += up.astype(np.intp) - down
    while True:  # lo: first rank with v_i - v_j < eps
        down = (lo > 0) & (vals - flat[base + np.maximum(lo - 1, 0)] < eps)
        up = (lo < n) & (vals - flat[base + np.minimum(lo, n - 1)] >= eps)
        if not (up.any() or down.any()):
            break
        lo += up.astype(np.intp) - down
    return hi - lo


def _ksg_sorted(xs, yo, ys, k):
    """KSG-1 MI per row from x sorted (rows or 1, n), y in x-order and y sorted (rows, n)."""
    rows, n = yo.shape
    eps = _kth_neighbour(xs, yo, k)
    cx = _strict_counts(np.broadcast_to(xs, (rows, n)), np.broadcast_to(xs, (rows, n)), eps)
    cy = _strict_counts(ys, yo, eps)
    # psi(n_x + 1) with n_x = count - 1 (self excluded).
    return digamma(k) + digamma(n) - (digamma(cx) + digamma(cy)).mean(axis=-1)


def _check_pairs(x, y, k):
    if x.shape[-1] != y.shape[-1]:
        raise ValueError(f"x and y need the same number of samples, got {x.shape}, {y.shape}")
    n = x.shape[-1]
    if not 1 <= k < n:
        raise ValueError(f"need 1 <= k < n, got k={k}, n={n}")


def ksg_mi(x, y, k=3):
    """Mutual information I(x; y) in nats between two 1-D samples of length n.

    KSG estimator 1 (Kraskov, Stoegbauer & Grassberger 2004, Eq. 8):
        I = psi(k) + psi(n) - < psi(n_x(i) + 1) + psi(n_y(i) + 1) >_i
    with eps_i the max-norm distance in the joint (x, y) space from point i to its k-th
    nearest neighbour (self excluded) and n_x(i), n_y(i) the numbers of other points
    strictly within eps_i in each marginal. x and y are standardised (zero mean, unit
    variance) and jittered by 1e-10 * N(0, 1) (fixed seed) to break ties, as in
    scikit-learn's ``mutual_info_regression``; unlike it, the result is not clipped at
    0 (the estimator is unbiased-ish around 0 for independent data; see
    ``shuffle_baseline``).
    """
    x = np.asarray(x)
    y = np.asarray(y)
    if x.ndim != 1 or y.ndim != 1:
        raise ValueError(f"expected 1-D samples, got shapes {x.shape}, {y.shape}")
    return float(ksg_mi_batch(x[None], y[None], k)[0])


def ksg_mi_batch(x, y, k=3):
    """``ksg_mi`` for m independent pairs: x and y of shape (m, n) (x may be (n,), shared).

    Returns float64 (m,). Each row equals ``ksg_mi(x[r], y[r], k)``. All rows are
    processed together with array operations (k-th neighbours from one cKDTree over all
    rows, marginal counts by one searchsorted on sorted rows).
    """
    x = np.asarray(x)
    y = np.asarray(y)
    if y.ndim != 2 or x.ndim not in (1, 2):
        raise ValueError(f"expected x (m, n) or (n,) and y (m, n), got {x.shape}, {y.shape}")
    _check_pairs(x, y, k)
    if x.ndim == 2 and x.shape[0] != y.shape[0]:
        raise ValueError(f"x and y need the same number of rows, got {x.shape}, {y.shape}")
    x, y = _prepare(x, y)
    if x.ndim == 1:
        order = np.argsort(x, kind="stable")
        return _ksg_chunks(x[order][None], y[:, order], np.sort(y, axis=1), k)
    order = np.argsort(x, axis=1, kind="stable")
    xs = np.take_along_axis(x, order, axis=1)
    yo = np.take_along_axis(y, order, axis=1)
    return _ksg_chunks(xs, yo, np.sort(y, axis=1), k)


def _ksg_chunks(xs, yo, ys, k):
    out = np.empty(yo.shape[0])
    for s in range(0, yo.shape[0], _ROWS_PER_CHUNK):
        sl = slice(s, s + _ROWS_PER_CHUNK)
        out[sl] = _ksg_sorted(xs if xs.shape[0] == 1 else xs[sl], yo[sl], ys[sl], k)
    return out


def shuffle_baseline(x, y, k=3, n_shuffles=1, seed=0):
    """Mean KSG MI of x with randomly permuted copies of y: the estimator's value for
    the same marginals with the dependence destroyed (its bias floor). Callers report
    ``ksg_mi(x, y) - shuffle_baseline(x, y)``. Permutations come from
    ``np.random.default_rng(seed)``.
    """
    x = np.asarray(x)
    y = np.asarray(y)
    if x.ndim != 1 or y.ndim != 1:
        raise ValueError(f"expected 1-D samples, got shapes {x.shape}, {y.shape}")
    _check_pairs(x, y, k)
    rng = np.random.default_rng(seed)
    perms = np.stack([rng.permutation(y.shape[0]) for _ in range(n_shuffles)])
    return float(ksg_mi_batch(x, y[perms], k).mean())


def binned_mi(x, y, bins=16):
    """Plug-in MI (nats) from a 2-D histogram on equal-frequency bins.

    Each variable is cut into ``bins`` quantile bins (by average rank, so tied values
    share a bin); I = sum_ij p_ij log(p_ij / (p_i p_j)). Biased upward by about
    (bins - 1)^2 / (2n) (Miller-Madow) for independent data.
    """
    x = np.asarray(x, dtype=np.float64).ravel()
    y = np.asarray(y, dtype=np.float64).ravel()
    if x.shape != y.shape or x.size < 2:
        raise ValueError(f"expected two 1-D samples of equal length, got {x.shape}, {y.shape}")
    n = x.size

    def quantile_bin(v):
        return np.minimum(((stats.rankdata(v) - 1) * bins / n).astype(np.intp), bins - 1)

    joint = np.zeros((bins, bins))
    np.add.at(joint, (quantile_bin(x), quantile_bin(y)), 1.0)
    p = joint / n
    px = p.sum(axis=1, keepdims=True)
    py = p.sum(axis=0, keepdims=True)
    nz = p > 0
    return float(np.sum(p[nz] * np.log(p[nz] / (px @ py)[nz])))


def _grid_distances(grid, reference):
    rows, cols = grid
    r, c = np.divmod(np.arange(rows * cols), cols)
    # Euclidean distance rounded to the nearest integer (never a .5 tie on a grid).
    return np.rint(np.hypot(r - reference[0], c - reference[1])).astype(int)


def mi_vs_distance(
    acts, grid, channels, reference=None, k=3, estimator="ksg", n_shuffles=1, seed=0
):
    """Shuffle-corrected MI between a reference neuron and same-channel neurons at
    increasing distance on the patch grid.

    acts: (N, P, C), one sublayer's output at one block for N images; P = rows * cols
    patch tokens in row-major order (no CLS). For each channel c in ``channels`` and each
    patch p != reference, MI is estimated between acts[:, ref, c] and acts[:, p, c]
    (over the N images) and corrected by subtracting the shuffle baseline (y permuted,
    ``n_shuffles`` times; estimator "ksg") or, for estimator "binned" (``binned_mi``),
    the binned MI of the shuffled pair. The distance of patch (r, c) to the reference
    (r0, c0) is the Euclidean distance sqrt((r-r0)^2 + (c-c0)^2) rounded to the nearest
    integer. reference defaults to the central patch (rows // 2, cols // 2).

    Returns a dict: distances (sorted unique d >= 1), mi (per d, the mean over channels
    and patches at distance d of the corrected MI), mi_std (per d, the standard
    deviation over channels of each channel's mean at d), reference, n_channels,
    estimator.
    """
    acts = np.asarray(acts) if not hasattr(acts, "ndim") else acts
    if acts.ndim != 3:
        raise ValueError(f"expected acts of shape (N, P, C), got {acts.shape}")
    rows, cols = (int(g) for g in grid)
    n, n_patches, _ = acts.shape
    if n_patches != rows * cols:
        raise ValueError(f"grid {rows}x{cols} does not match {n_patches} patches")
    if estimator not in ("ksg", "binned"):
        raise ValueError(f"unknown estimator {estimator!r}")
    if n_shuffles < 1:
        raise ValueError("n_shuffles must be >= 1")
    if reference is None:
        reference = (rows // 2, cols // 2)
    reference = (int(reference[0]), int(reference[1]))
    ref = reference[0] * cols + reference[1]
    dist = _grid_distances((rows, cols), reference)
    others = np.flatnonzero(np.arange(n_patches) != ref)
    distances = np.unique(dist[others])
    channels = np.atleast_1d(np.asarray(channels, dtype=np.intp))
    rng = np.random.default_rng(seed)

    per_channel = np.empty((channels.size, distances.size))
    for ci, c in enumerate(channels):
        block = np.asarray(acts[:, :, c], dtype=np.float64)  # (N, P)
        x, y = block[:, ref], block[:, others].T  # (N,), (P - 1, N)
        perms = rng.permuted(np.broadcast_to(np.arange(n), (n_shuffles * y.shape[0], n)), axis=1)
        y_shuf = np.take_along_axis(np.tile(y, (n_shuffles, 1)), perms, axis=1)
        if estimator == "ksg":
            both = ksg_mi_batch(x, np.concatenate([y, y_shuf]), k)
        else:
            xs = np.broadcast_to(x, y_shuf.shape)
            both = np.array([binned_mi(a, b) for a, b in zip(np.concatenate([xs[: len(y)], xs]), np.concatenate([y, y_shuf]))])
        mi = both[: y.shape[0]] - both[y.shape[0] :].reshape(n_shuffles, -1).mean(axis=0)
        per_channel[ci] = [mi[dist[others] == d].mean() for d in distances]
    return {
        "distances": distances,
        "mi": per_channel.mean(axis=0),
        "mi_std": per_channel.std(axis=0),
        "reference": reference,
        "n_channels": int(channels.size),
        "estimator": estimator,
    }


def decay_rate(distances, mi):
    """Slope b of the least-squares fit log(mi) = a + b * d over the points with finite
    positive mi (and finite d); b < 0 means MI falls with distance (exponential decay
    mi ~ exp(b d)). nan if fewer than 2 usable points.
    """
    d = np.asarray(distances, dtype=np.float64).ravel()
    m = np.asarray(mi, dtype=np.float64).ravel()
    ok = np.isfinite(d) & np.isfinite(m) & (m > 0)
    if np.unique(d[ok]).size < 2:
        return float("nan")
    return float(np.polyfit(d[ok], np.log(m[ok]), 1)[0])


def excess_kurtosis(values, axis=0):
    """Excess (Fisher) kurtosis E[(v - mu)^4] / sigma^4 - 3 along ``axis`` (0 for a
    Gaussian, 3 for a Laplace distribution): ``scipy.stats.kurtosis(fisher=True)``,
    biased moment estimator. E.g. values (N, neurons) -> one number per neuron.
    """
    return stats.kurtosis(np.asarray(values, dtype=np.float64), axis=axis, fisher=True)


def conditional_histogram(x, y, bins=21, range_sd=3):
    """Conditional histogram p(y | x) of two samples (the "bowtie" plot of seed 002).

    x and y are standardised (zero mean, unit variance) and clipped to +-range_sd;
    edges = linspace(-range_sd, range_sd, bins + 1) for both axes. Returns (edges, H)
    with H[i, j] = p(y in bin j | x in bin i): each row of the joint histogram divided by
    its total (rows without data stay 0).
    """
    x = _standardise(np.asarray(x).ravel())
    y = _standardise(np.asarray(y).ravel())
    if x.shape != y.shape:
        raise ValueError(f"x and y need the same length, got {x.shape}, {y.shape}")
    edges = np.linspace(-range_sd, range_sd, bins + 1)
    joint, _, _ = np.histogram2d(
        np.clip(x, -range_sd, range_sd), np.clip(y, -range_sd, range_sd), bins=[edges, edges]
    )
    totals = joint.sum(axis=1, keepdims=True)
    return edges, np.divide(joint, totals, out=np.zeros_like(joint), where=totals > 0)
