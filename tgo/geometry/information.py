"""Information-theoretic neuron statistics: mutual information between neurons as a
function of patch distance, excess kurtosis and conditional ("bowtie") histograms.

Source: Philip, Pan & Schwartz, "Probing Vision Transformer Attention: Image
Statistics and Patch Similarity". A neuron is (sublayer, block, channel c, patch p); its
response is the value over N images. MI(d) is the mutual information between the neuron
of channel c at a reference patch and the neurons of the same channel at grid distance d,
averaged over channels, reference patches (the grid centre: 1, 2 or 4 central patches, each
channel measured from one of them in turn) and the patches at distance d; a distance bin with fewer than 4 patches per reference is dropped.
How MI falls with distance is summarised by ``mi_decay_rate``; its intervals, and MI's, come
from half-samples of the images (tgo.geometry.stats).

Estimator: KSG estimator 1 (Kraskov, Stoegbauer & Grassberger 2004, Phys. Rev. E 69,
066138) with k = 3, in nats, on standardised values, minus a shuffle baseline (the
estimator's value on the same marginals with the pairing destroyed). The paper's
Eq. 1 is the plain definition I(X;Y) = integral p(x,y) log p(x,y)/(p(x)p(y)).
"""

import functools
from concurrent.futures import ThreadPoolExecutor

import numba
import numpy as np
from scipy import stats
from scipy.special import digamma

# Jitter breaks ties (float16 activations have many) exactly as scikit-learn's
# mutual_info_regression does: 1e-10 * max(1, mean|x|) * N(0, 1), fixed seed.
_JITTER = 1e-10
_JITTER_SEED = 0


def _standardise(v):
    """Zero mean, unit variance along the last axis (float64); constant rows stay 0."""
    v = np.asarray(v, dtype=np.float64)
    v = v - v.mean(axis=-1, keepdims=True)
    sd = v.std(axis=-1, keepdims=True)
    return v / np.where(sd > 0, sd, 1.0)


def _jitter(n):
    rng = np.random.default_rng(_JITTER_SEED)
    return rng.standard_normal(n), rng.standard_normal(n)


def _prepare(v, jitter):
    """Standardised, jittered float64 copy of v (..., n) with jitter one ``_jitter`` sample (n,)."""
    v = _standardise(v)
    return v + _JITTER * np.maximum(1.0, np.abs(v).mean(axis=-1, keepdims=True)) * jitter


@numba.njit(cache=True)
def _one_pair(x, y, ys, rank, psi, best, k):
    """KSG-1 of one pair: x ascending, y in x order, ys = sorted y, rank[i] = position of
    y[i] in ys, best a work array of size k."""
    numba.literally(k)
    n = x.size
    acc = 0.0
    for i in range(n):
        xi, yi = x[i], y[i]
        best[:] = np.inf
        # k nearest neighbours in the max norm: walk outwards in x order; a side stops
        # once its x gap alone reaches the current k-th distance.
        ends = (i, i)
        for side, step in enumerate((-1, 1)):
            j = i + step
            while 0 <= j < n:
                dx = abs(x[j] - xi)
                if dx >= best[k - 1]:
                    break
                d = max(dx, abs(y[j] - yi))
                for m in range(k - 1, 0, -1):  # branch-free insertion into the sorted k best
                    best[m] = min(best[m], max(best[m - 1], d))
                best[0] = min(best[0], d)
                j += step
            ends = (j, ends[1]) if side == 0 else (ends[0], j)
        eps = best[k - 1]
        # n_x + 1, n_y + 1: the points strictly within eps in each marginal, i included.
        # In x they lie inside the walk: step back in from where each side stopped.
        lo, hi = ends
        while lo + 1 < i and xi - x[lo + 1] >= eps:
            lo += 1
        while hi - 1 > i and x[hi - 1] - xi >= eps:
            hi -= 1
        cx = hi - lo - 1
        lo = hi = rank[i]
        while lo > 0 and yi - ys[lo - 1] < eps:
            lo -= 1
        while hi < n - 1 and ys[hi + 1] - yi < eps:
            hi += 1
        acc += psi[cx] + psi[hi - lo + 1]
    return psi[k] + psi[n] - acc / n


@functools.cache
def _ksg_kernel(k):
    """The compiled KSG-1 kernel for k neighbours (compiled once per k; numba caches each on disk).
    k is a constant of the compiled code, so that the k best distances stay in registers, and a
    call from Python goes straight to the compiled code (an argument marked ``numba.literally``
    would be re-typed on every call, about 20 ms).
    """

    @numba.njit(nogil=True, cache=True)
    def kernel(xs, xrow, yo, yorder, psi, out):
        """KSG-1 of pair r, (xs[xrow[r]], yo[r]), into out[r] (rows,). xs (m, n) rows ascending, yo
        (rows, n) in the order of xs[xrow[r]] and yorder[r] the order that sorts yo[r]; psi[m] =
        digamma(m). Plain loops, no numba parallelism (which costs seconds of compilation in every new
        checkout): ``_ksg`` runs slices of rows in threads, this function releasing the GIL. It writes
        into out, returning nothing: a returned array must be boxed from the kernel's environment, and
        that failed once under the test suite ("'descr' is NULL", numba's check for an environment
        missing after a cache load, numba#6130).
        """
        rows, n = yo.shape
        best = np.empty(k)
        rank = np.empty(n, np.int64)
        ys = np.empty(n)
        if out.shape != (rows,):  # compiled code does not check its bounds
            raise ValueError("out must hold one value per pair")
        for r in range(rows):
            for i in range(n):
                ys[i] = yo[r, yorder[r, i]]
                rank[yorder[r, i]] = i
            out[r] = _one_pair(xs[xrow[r]], yo[r], ys, rank, psi, best, k)

    return kernel


# Pairs per task of _ksg (each with its shuffles): a slice's float64 work arrays (a few MB at n = 1000)
# stay in the cache.
_ROWS = 256


def _ksg(xs, order, xrow, y, k, perms=None):
    """KSG-1 per row of y (and per shuffle in perms); see ``_ksg_kernel``. xs (m, n) are prepared x
    rows sorted ascending, order[i] the order that sorted x row i, y (rows, n) the raw y rows in any
    dtype, row r paired with x row xrow[r]; perms (rows, s, n): column 1 + j of the result is the MI
    of x with y[r, perms[r, j]]. A shuffle is prepared as its own row (``_prepare``: the tie-breaking
    jitter by position, as ``shuffle_baseline``'s permuted copies), not by permuting the prepared row:
    on tied values the jitter decides the neighbours, and a null whose jitter moves with the values
    lacks the jitter's own dependence on position that the unshuffled MI has (biased up on ties).
    Each slice of rows is prepared, put in x order and run through the kernel in one task; the tasks
    run in numba's number of threads (one per usable core, or NUMBA_NUM_THREADS). Every row is
    computed alone, so results do not depend on the number of threads."""
    n = y.shape[1]
    if perms is None:
        perms = np.empty((y.shape[0], 0, n), np.int64)
    psi = np.zeros(n + 1)
    psi[1:] = digamma(np.arange(1, n + 1))
    jitter = _jitter(n)[1]
    xs, xrow = np.ascontiguousarray(xs), np.asarray(xrow, np.int64)
    out = np.empty((y.shape[0], 1 + perms.shape[1]))

    kernel = _ksg_kernel(k)

    def rows(r):
        part = slice(r, r + _ROWS)
        # (rows, 1 + s, n): each row, then its shuffles; one pair of the kernel each.
        yp = np.concatenate([y[part, None], np.take_along_axis(y[part, None], perms[part], axis=2)], axis=1)
        pair_x = np.repeat(xrow[part], 1 + perms.shape[1])
        yo = np.take_along_axis(_prepare(yp.reshape(-1, n), jitter), order[pair_x], axis=1)
        kernel(xs, pair_x, yo, np.argsort(yo, axis=1), psi, out[part].reshape(-1))

    # numba's configured count, read without starting numba's own thread pool (get_num_threads would).
    with ThreadPoolExecutor(numba.config.NUMBA_NUM_THREADS) as pool:
        list(pool.map(rows, range(0, y.shape[0], _ROWS)))
    return out[:, 0] if perms.shape[1] == 0 else out


def _sorted_x(x):
    """Prepared x rows (m, n) sorted ascending, and the orders that sort them."""
    x = _prepare(np.atleast_2d(x), _jitter(x.shape[-1])[0])
    order = np.argsort(x, axis=1, kind="stable")
    return np.take_along_axis(x, order, axis=1), order


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

    Returns float64 (m,). Each row equals ``ksg_mi(x[r], y[r], k)``. A compiled kernel
    (numba, rows in parallel threads) sorts each pair by x, finds the k-th neighbour by walking
    outwards in x order until the x gap alone exceeds it, and counts the marginal
    neighbours by walking outwards in each sorted marginal: O(n sqrt(k n)) per pair.
    """
    x = np.asarray(x)
    y = np.asarray(y)
    if y.ndim != 2 or x.ndim not in (1, 2):
        raise ValueError(f"expected x (m, n) or (n,) and y (m, n), got {x.shape}, {y.shape}")
    _check_pairs(x, y, k)
    if x.ndim == 2 and x.shape[0] != y.shape[0]:
        raise ValueError(f"x and y need the same number of rows, got {x.shape}, {y.shape}")
    xs, order = _sorted_x(x)
    return _ksg(xs, order, np.zeros(len(y)) if x.ndim == 1 else np.arange(len(y)), y, k)


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


# A distance bin with fewer patches per reference than this is dropped: no point of MI(d) rests on
# one or two neuron pairs per channel (the corners of the grid).
MIN_PATCHES = 4


def centre_references(grid):
    """The grid's central patches [(row, col), ...]: per axis the middle index of an odd side, the two
    middle ones of an even side; so 1, 2 or 4 patches (8x8 -> (3,3), (3,4), (4,3), (4,4); 7x7 -> (3,3)).
    The references are mirror images of each other through the grid's centre lines, so each has the
    same number of patches at every distance."""
    def middle(n):
        return [n // 2] if n % 2 else [n // 2 - 1, n // 2]
    rows, cols = grid
    return [(r, c) for r in middle(int(rows)) for c in middle(int(cols))]


def _grid_distances(grid, references):
    """(R, P): the distance of every patch (row-major) to each reference, the Euclidean distance
    rounded to the nearest integer (never a .5 tie on a grid)."""
    rows, cols = grid
    r, c = np.divmod(np.arange(rows * cols), cols)
    ref = np.asarray(references).reshape(-1, 2)
    return np.rint(np.hypot(r - ref[:, :1], c - ref[:, 1:])).astype(int)


def distance_bins(grid, references, min_patches=MIN_PATCHES):
    """The distance bins of ``mi_vs_distance``: (dist, kept, dropped). dist (R, P) from
    ``_grid_distances`` with -1 at each reference itself; kept the sorted distances d >= 1 that hold
    at least min_patches patches per reference (on average over the references); dropped a list of
    {distance, patches_per_reference, reason} for the others."""
    rows, cols = grid
    dist = _grid_distances((rows, cols), references)
    for a, (r, c) in enumerate(references):
        dist[a, r * cols + c] = -1
    values, counts = np.unique(dist[dist >= 1], return_counts=True)
    per_ref = counts / len(references)
    kept = values[per_ref >= min_patches]
    dropped = [{"distance": int(d), "patches_per_reference": float(m),
                "reason": f"fewer than {min_patches} patches per reference"}
               for d, m in zip(values, per_ref) if m < min_patches]
    return dist, kept, dropped


def _curve(sel, x_patch, pair_channel, pair_patch, pair_bin, n_bins, k, estimator, n_shuffles, rng):
    """Per channel and distance bin (C', B): the mean shuffle-corrected MI of the channel's pairs in
    the bin. sel (C', P, n) each neuron's values over the images; channel i's reference is patch
    x_patch[i]; pair j pairs channel pair_channel[j] at its reference with patch pair_patch[j], in
    bin pair_bin[j]."""
    n_ch, _, n = sel.shape
    x_raw = sel[np.arange(n_ch), x_patch]
    y_raw = sel[pair_channel, pair_patch]
    # Shuffles: random permutations of the images, n_shuffles per pair.
    perms = rng.permuted(np.broadcast_to(np.arange(n), (y_raw.shape[0], n_shuffles, n)), axis=2)
    if estimator == "ksg":  # all pairs in one call; each channel's x is sorted once
        xs, order = _sorted_x(x_raw)
        both = _ksg(xs, order, pair_channel, y_raw, k, perms)
        mi = both[:, 0] - both[:, 1:].mean(axis=1)
    else:
        pairs = zip(x_raw[pair_channel], y_raw, perms)
        mi = np.array([binned_mi(x, y) - np.mean([binned_mi(x, y[p]) for p in ps]) for x, y, ps in pairs])
    cell = pair_channel * n_bins + pair_bin
    sums = np.bincount(cell, weights=mi, minlength=n_ch * n_bins)
    return (sums / np.bincount(cell, minlength=n_ch * n_bins)).reshape(n_ch, n_bins)


def mi_vs_distance(acts, grid, channels, reference=None, k=3, estimator="ksg", n_shuffles=1, seed=0,
                   half_samples=None, min_patches=MIN_PATCHES):
    """Shuffle-corrected MI between reference neurons and same-channel neurons at increasing
    distance on the patch grid.

    acts: (N, P, C), one sublayer's output at one block for N images; P = rows * cols patch tokens
    in row-major order (no CLS). The references are the grid centre (``centre_references``: 1, 2 or
    4 patches) or, given reference = (r, c), that one patch; channel i of ``channels`` is measured from
    reference i mod R (so with 16 channels and 4 references, 4 channels from each). For each channel c,
    its reference a and each patch p != a, MI is estimated between acts[:, a, c] and acts[:, p, c]
    (over the N images) and corrected by subtracting the mean of the shuffle baselines (y permuted,
    ``n_shuffles`` times; estimator "ksg") or, for estimator "binned" (``binned_mi``), the binned MI
    of the shuffled pairs. The distance of p to a is the Euclidean grid distance rounded to the
    nearest integer; bins with fewer than min_patches patches per reference are dropped
    (``distance_bins``). Shuffles come from numpy default_rng(seed).

    half_samples: optional (count, m) image indices (``tgo.geometry.stats.half_samples``): the same
    curve is then also computed on each half, acts[half_samples[h]], exactly as this function would
    compute it alone with seed = SeedSequence(seed).spawn(count)[h] (its own standardisation and
    shuffles). Pass the same halves for every block, sublayer and checkpoint, so that differences
    between them are paired.

    Returns a dict: distances (kept d >= 1, sorted), mi (per d: the mean over channels of each
    channel's mean over its (reference, patch) pairs at distance d), mi_std (per d, the standard
    deviation over channels of those channel means), references [(r, c), ...], dropped (the
    dropped bins, see ``distance_bins``), n_channels, estimator, n_shuffles and, with half_samples,
    mi_halves (count, distances).
    """
    acts = np.asarray(acts)
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
    references = (centre_references((rows, cols)) if reference is None
                  else [(int(reference[0]), int(reference[1]))])
    if not all(0 <= r < rows and 0 <= c < cols for r, c in references):
        raise ValueError(f"reference {reference} is outside the {rows}x{cols} grid")
    dist, kept, dropped = distance_bins((rows, cols), references, min_patches)
    if kept.size == 0:
        raise ValueError(f"no distance on the {rows}x{cols} grid holds {min_patches} patches per reference")
    channels = np.atleast_1d(np.asarray(channels, dtype=np.intp))
    # Each channel is measured from one reference, in turn (channel i from reference i mod R): the
    # curve averages over the central positions at the cost of one.
    ref_of = np.arange(channels.size) % len(references)
    x_patch = np.array([r * cols + c for r, c in references])[ref_of]
    patches = [np.flatnonzero(np.isin(dist[a], kept)) for a in ref_of]
    pair_channel = np.repeat(np.arange(channels.size), [len(p) for p in patches])
    pair_patch = np.concatenate(patches)
    pair_bin = np.searchsorted(kept, dist[ref_of[pair_channel], pair_patch])
    # (C', P, N): each neuron's values over the images, in the activations' own dtype (KSG's
    # float64 copies are made a slice of pairs at a time, inside _ksg).
    sel = np.ascontiguousarray(np.take(acts, channels, axis=2).transpose(2, 1, 0))

    def curve(values, rng):
        return _curve(values, x_patch, pair_channel, pair_patch, pair_bin, kept.size, k, estimator, n_shuffles, rng)

    per_channel = curve(sel, np.random.default_rng(seed))
    out = {
        "distances": kept,
        "mi": per_channel.mean(axis=0),
        "mi_std": per_channel.std(axis=0),
        "references": references,
        "dropped": dropped,
        "n_channels": int(channels.size),
        "estimator": estimator,
        "n_shuffles": int(n_shuffles),
    }
    if half_samples is not None:
        halves = np.asarray(half_samples)
        if halves.ndim != 2 or not np.issubdtype(halves.dtype, np.integer) or halves.size == 0:
            raise ValueError(f"half_samples must be a 2-D array of image indices, got {halves.shape}")
        if halves.min() < 0 or halves.max() >= n:
            raise ValueError(f"half_samples index images outside 0..{n - 1}")
        seeds = np.random.SeedSequence(seed).spawn(len(halves))
        out["mi_halves"] = np.stack([curve(sel[:, :, h], np.random.default_rng(s)).mean(axis=0)
                                     for h, s in zip(halves, seeds)])
    return out


def mi_decay_rate(distances, mi):
    """The share of the nearest distance's MI lost per patch of distance:
        rate = -slope / MI(d_min),  slope = sum_i (d_i - mean d)(MI_i - mean MI) / sum_i (d_i - mean d)^2
    the least-squares slope of MI on distance over every distance, divided by MI at the smallest
    distance; positive when MI falls with distance. No logarithm, so no point is dropped: a
    non-positive MI at a far distance (shuffle noise around 0) stays in the fit. For MI(d) = a - b d
    it is b / (a - b d_min); for MI = A exp(-lambda d) at d = 1, 2 it is 1 - exp(-lambda).

    distances (D,); mi (..., D), vectorised over leading axes (e.g. half-sample replicates
    (count, D)). nan with fewer than 2 distinct distances, where MI(d_min) <= 0 (no share of it can
    be lost), and where any MI is nan.
    """
    d = np.asarray(distances, dtype=np.float64)
    m = np.asarray(mi, dtype=np.float64)
    if d.ndim != 1 or m.shape[-1:] != d.shape:
        raise ValueError(f"expected distances (D,) and mi (..., D), got {d.shape}, {m.shape}")
    if d.size < 2 or np.ptp(d) == 0:
        out = np.full(m.shape[:-1], np.nan)
    else:
        dev = d - d.mean()
        slope = np.sum(dev * (m - m.mean(axis=-1, keepdims=True)), axis=-1) / np.sum(dev * dev)
        nearest = m[..., np.argmin(d)]
        with np.errstate(divide="ignore", invalid="ignore"):
            out = np.where(nearest > 0, -slope / nearest, np.nan)
    return float(out) if out.ndim == 0 else out


def excess_kurtosis(values, axis=0):
    """Excess (Fisher) kurtosis m4 / m2^2 - 3 along ``axis``, with m_j = mean((v - mean v)^j)
    the biased central moments (0 for a Gaussian, 3 for a Laplace distribution; equals
    ``scipy.stats.kurtosis(fisher=True, bias=True)``). E.g. values (N, neurons) -> one
    number per neuron. Computed in float64 over blocks of 512 neurons, so that a block's float16
    activations never need a full float64 copy and each block's passes stay in the cache.
    """
    v = np.moveaxis(np.asarray(values), axis, 0)
    flat = v.reshape(v.shape[0], -1)
    out = np.full(flat.shape[1], np.nan)  # a neuron no block reached reads nan, not stale memory
    for s in range(0, flat.shape[1], 512):
        d = flat[:, s:s + 512].astype(np.float64)
        d -= d.mean(axis=0)
        d *= d
        m2 = d.mean(axis=0)
        d *= d
        with np.errstate(divide="ignore", invalid="ignore"):  # constant neurons: nan
            out[s:s + 512] = d.mean(axis=0) / m2**2 - 3.0
    return out.reshape(v.shape[1:])


def conditional_histogram(x, y, bins=21, range_sd=3):
    """Conditional histogram p(y | x) of two samples (the "bowtie" plot of Philip, Pan & Schwartz).

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
