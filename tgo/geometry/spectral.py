"""Spectral geometry of representations: eigenvalue-based dimensionality metrics.

Notation: X is an N x D matrix of N samples of a D-dimensional representation.
Unless stated otherwise X is centred over samples and lambda_1 >= ... >= lambda_D >= 0
are the eigenvalues of C = X^T X / (N - 1), computed in float64.
p_i = lambda_i / sum_j lambda_j is the normalised spectrum.

Functions taking ``eigs`` accept eigenvalues in any order (they are sorted in
descending order internally), clamp round-off negatives to zero and return nan
for a spectrum with zero total variance (e.g. a token that is identical for
every input), where every ratio below is undefined.
"""

import operator

import numpy as np

from tgo.io import TGOError

_EPS64 = np.finfo(np.float64).eps
# Negative eigenvalues smaller than this (relative to the largest magnitude)
# are round-off from a PSD matrix; anything more negative is a caller bug.
_NEGATIVE_TOLERANCE = np.sqrt(_EPS64)


def _as_float64(X, batched=False):
    X = np.asarray(X)
    if (X.ndim < 3) if batched else (X.ndim != 2):
        expected = "(..., N, D)" if batched else "(N, D)"
        raise ValueError(f"expected an array of shape {expected}, got {X.shape}")
    if X.shape[-2] < 2:
        raise ValueError(f"need at least 2 samples (N >= 2), got shape {X.shape}")
    # Converting copies (and reads a memmap once); all arithmetic is float64. float16 goes through
    # float32 (exact: every float16 is a float32), which numpy converts with SIMD, 4x faster.
    return (X.astype(np.float32) if X.dtype == np.float16 else X).astype(np.float64)


def _centred_eigs(X):
    """Covariance eigenvalues of float64 X of shape (..., N, D), descending, length D."""
    n, d = X.shape[-2:]
    # Subtracting the first row before the mean makes constant columns exactly zero
    # and reduces cancellation when the rows share a large offset.
    shifted = X - X[..., :1, :]
    Xc = shifted - shifted.mean(axis=-2, keepdims=True)
    Xt = np.swapaxes(Xc, -1, -2)
    # The N x N Gram matrix has the same nonzero eigenvalues as the D x D covariance.
    small = (Xc @ Xt) if n < d else (Xt @ Xc)
    eigs = np.linalg.eigvalsh(small / (n - 1))[..., ::-1]
    eigs = np.maximum(eigs, 0.0)
    if n < d:
        eigs = np.concatenate([eigs, np.zeros(eigs.shape[:-1] + (d - n,))], axis=-1)
    return np.ascontiguousarray(eigs)


def _check_eigs(eigs, batched=False):
    lam = np.asarray(eigs, dtype=np.float64)
    if (lam.ndim < 1) if batched else (lam.ndim != 1):
        expected = "(..., D)" if batched else "1-D"
        raise ValueError(f"expected a {expected} eigenvalue array, got shape {lam.shape}")
    if lam.shape[-1] == 0:
        raise ValueError("empty eigenvalue array")
    if not np.all(np.isfinite(lam)):
        raise ValueError("eigenvalues must be finite")
    scale = np.max(np.abs(lam), axis=-1, keepdims=True)
    if np.any(lam < -_NEGATIVE_TOLERANCE * scale):
        raise ValueError("eigenvalues must be non-negative (got a clearly negative value)")
    return -np.sort(-np.maximum(lam, 0.0), axis=-1)


def _probabilities(lam):
    total = lam.sum()
    return None if total == 0 else lam / total


def _entropy(p):
    nonzero = p[p > 0]  # 0 log 0 = 0
    return float(-np.sum(nonzero * np.log(nonzero)))


def eigenspectrum(X):
    """Eigenvalues of the sample covariance of X, descending, float64, length D.

    lambda_i = eig_i(X_c^T X_c / (N - 1)) with X_c = X - mean over rows (PCA variances).
    When N < D the N x N Gram matrix X_c X_c^T / (N - 1) is diagonalised instead
    (same nonzero eigenvalues) and the result is padded with zeros to length D.
    Round-off negatives are clamped to 0. Input of any float dtype (including
    float16/float32 memmaps) is converted to float64 before centring.

    Raises ValueError if X is not 2-D or N < 2.
    """
    return _centred_eigs(_as_float64(X))


def batched_eigenspectra(X):
    """Covariance eigenvalues for every leading index of X of shape (..., N, D).

    Returns an array of shape (..., D), each row equal to ``eigenspectrum`` of the
    corresponding (N, D) slice: descending, float64, Gram path padded with zeros when
    N < D. All matrices are diagonalised in one batched numpy.linalg.eigvalsh call,
    which is meant for many small covariances (e.g. one per token position).
    """
    return _centred_eigs(_as_float64(X, batched=True))


def effective_rank(eigs):
    """Effective rank  erank = exp(-sum_i p_i log p_i),  p_i = lambda_i / sum lambda.

    Roy & Vetterli (2007), "The effective rank: a measure of effective dimensionality",
    EUSIPCO. Uses 0 log 0 = 0. Ranges from 1 (one direction) to D (isotropic).
    """
    p = _probabilities(_check_eigs(eigs))
    return np.nan if p is None else float(np.exp(_entropy(p)))


def rankme(X, eps=1e-7):
    """RankMe = exp(-sum_k p_k log p_k),  p_k = sigma_k / ||sigma||_1 + eps.

    Garrido, Balestriero, Najman & LeCun (2023), "RankMe: Assessing the downstream
    performance of pretrained self-supervised representations by their rank", ICML.
    sigma_k are the min(N, D) singular values of the UNCENTRED X. As in the paper
    (and its reference code) eps = 1e-7 is added to p_k itself, so it enters both
    factors of p_k log p_k; each zero singular value then adds ~1.6e-6 to the entropy.

    Singular values are computed as sqrt of the (clamped) eigenvalues of the smaller
    Gram matrix (X^T X or X X^T) in float64, which is cheap for tall X such as
    30000 x 192. Singular values below ~1e-8 sigma_1 are therefore only resolved to
    that absolute level, which changes the entropy by far less than eps does.
    """
    X = np.asarray(X)
    if X.ndim != 2 or X.size == 0:
        raise ValueError(f"expected a non-empty 2-D array, got shape {X.shape}")
    return _rankme(X.astype(np.float64), eps)


def _rankme(X, eps):
    n, d = X.shape
    return _rankme_from_gram_eigs(np.linalg.eigvalsh(X.T @ X if n >= d else X @ X.T), eps)


def _rankme_from_gram_eigs(gram_eigs, eps=1e-7):
    """RankMe from the eigenvalues of the uncentred Gram matrix (sigma_k^2)."""
    sigma = np.sqrt(np.maximum(gram_eigs, 0.0))
    total = sigma.sum()
    if total == 0:
        return np.nan
    p = sigma / total + eps
    return float(np.exp(-np.sum(p * np.log(p))))


def stable_rank(eigs):
    """Stable rank  sum_i lambda_i / lambda_1  (= ||X_c||_F^2 / ||X_c||_2^2).

    Rudelson & Vershynin (2007), "Sampling from large matrices: an approach through
    geometric functional analysis", J. ACM. Sensitive to the top eigenvalue, so for
    finite N it is biased low by the Marchenko-Pastur spread of lambda_1.
    """
    lam = _check_eigs(eigs)
    return np.nan if lam[0] == 0 else float(lam.sum() / lam[0])


def participation_ratio(eigs):
    """Participation ratio  PR = (sum_i lambda_i)^2 / sum_i lambda_i^2.

    Gao, Trautmann, Yu, Santhanam, Ryu, Shenoy & Ganguli (2017), "A theory of
    multineuronal dimensionality, dynamics and measurement", bioRxiv 214262.
    """
    lam = _check_eigs(eigs)
    sq = np.sum(lam * lam)
    return np.nan if sq == 0 else float(lam.sum() ** 2 / sq)


def numerical_rank(eigs):
    """Number of eigenvalues with lambda_i > lambda_1 * D * eps(float64).

    The same tolerance numpy.linalg.matrix_rank uses (scaled by the matrix size):
    eigenvalues below it are indistinguishable from round-off.
    """
    lam = _check_eigs(eigs)
    return int(np.count_nonzero(lam > lam[0] * lam.size * _EPS64))


def spectral_entropy(eigs, normalized=False):
    """Spectral entropy  H = -sum_i p_i log p_i  in nats (0 log 0 = 0).

    Shannon entropy of the normalised eigenvalue distribution, the quantity whose
    exponential is the effective rank of Roy & Vetterli (2007), EUSIPCO.
    With normalized=True returns H / log r, where r = ``numerical_rank(eigs)``
    (count of lambda_i > lambda_1 * D * eps), so the value lies in [0, 1] and is 1
    for a spectrum that is flat over its numerical support; returns 0.0 if r <= 1.
    """
    lam = _check_eigs(eigs)
    p = _probabilities(lam)
    if p is None:
        return np.nan
    h = _entropy(p)
    if not normalized:
        return h
    r = numerical_rank(lam)
    return 0.0 if r <= 1 else h / float(np.log(r))


def spectral_flatness(eigs, eps=1e-12):
    """Spectral flatness  (prod_i lambda_i)^(1/D) / ((1/D) sum_i lambda_i).

    Geometric over arithmetic mean (Wiener entropy), Gray & Markel (1974), "A
    spectral-flatness measure for studying the autocorrelation method of linear
    prediction of speech analysis", IEEE Trans. ASSP; here applied to the
    covariance eigenvalues. Each lambda_i is first floored at eps * lambda_1
    (a floor RELATIVE to the top eigenvalue, so the value is scale invariant and
    finite for rank-deficient spectra); both means use the floored values, so the
    result lies in (0, 1] and equals 1 for an isotropic spectrum.
    """
    if not eps > 0:
        raise ValueError(f"eps must be positive, got {eps}")
    lam = _check_eigs(eigs)
    if lam[0] == 0:
        return np.nan
    floored = np.maximum(lam, eps * lam[0])
    return float(np.exp(np.mean(np.log(floored))) / np.mean(floored))


def anisotropy(eigs):
    """Spectral anisotropy  lambda_1 / sum_i lambda_i.

    Fraction of variance along the first principal component (Pearson 1901, PCA);
    the spectral counterpart of the cosine-similarity anisotropy of Ethayarajh
    (2019), see ``mean_cosine_similarity``. Ranges from 1/D (isotropic) to 1.
    """
    lam = _check_eigs(eigs)
    total = lam.sum()
    return np.nan if total == 0 else float(lam[0] / total)


def mean_cosine_similarity(X, max_samples=2000, seed=0):
    """Mean pairwise cosine similarity  2 / (m (m-1)) sum_{i<j} <x_i, x_j> / (|x_i| |x_j|).

    Anisotropy as in Ethayarajh (2019), "How contextual are contextualized word
    representations?", EMNLP. Rows are NOT centred. If N > max_samples, a
    deterministic subsample of max_samples rows (numpy default_rng(seed), without
    replacement) is used; max_samples=None uses all rows. The sum over pairs is
    computed as (|sum_i u_i|^2 - sum_i |u_i|^2) / 2 for unit rows u_i, i.e. in
    O(m D) without forming the m x m matrix. All-zero rows have no direction and
    are excluded; returns nan if fewer than 2 rows remain.
    """
    X = np.asarray(X)
    if X.ndim != 2 or X.shape[0] < 2:
        raise ValueError(f"expected a 2-D array with N >= 2, got shape {X.shape}")
    X = X[_cosine_rows(X.shape[0], max_samples, seed)].astype(np.float64)
    norms = np.linalg.norm(X, axis=1)
    keep = norms > 0
    U = X[keep] / norms[keep, None]
    m = U.shape[0]
    if m < 2:
        return np.nan
    s = U.sum(axis=0)
    return float((s @ s - np.sum(U * U)) / (m * (m - 1)))


def _cosine_rows(n, max_samples, seed):
    """The rows ``mean_cosine_similarity`` uses: all, or a sorted random subsample of max_samples."""
    if max_samples is None or n <= max_samples:
        return np.arange(n)
    if max_samples < 2:
        raise ValueError(f"max_samples must be >= 2, got {max_samples}")
    return np.sort(np.random.default_rng(seed).choice(n, size=max_samples, replace=False))


def singular_values(eigs, n):
    """Singular values of the centred X from its covariance eigenvalues: sigma_i = sqrt((n-1) lambda_i).

    Inverts C = X_c^T X_c / (n - 1). Returned in descending order.
    """
    n = operator.index(n)
    if n < 2:
        raise ValueError(f"n must be >= 2, got {n}")
    return np.sqrt((n - 1) * _check_eigs(eigs))


def _validate_window(ranks, length):
    lo, hi = (operator.index(r) for r in ranks)
    if lo < 1 or hi - lo < 2 or hi > length:
        raise ValueError(
            f"rank window ({lo}, {hi}) is invalid for a spectrum of length {length}: "
            f"need 1 <= lo, hi - lo >= 2 (at least 3 ranks) and hi <= {length}"
        )
    return lo, hi


def _fit_power_law(lam, lo, hi):
    """Weighted log-log fit over ranks lo..hi for sorted eigenvalues of shape (..., D)."""
    k = np.arange(lo, hi + 1, dtype=np.float64)
    x = -np.log(k)
    w = 1.0 / k
    window = lam[..., lo - 1:hi]
    # Values at or below the numerical-rank tolerance are round-off, not signal:
    # a rank-deficient spectrum has no power law to fit there.
    tolerance = lam[..., :1] * lam.shape[-1] * _EPS64
    valid = np.all(window > tolerance, axis=-1)
    total = lam.sum(axis=-1, keepdims=True)
    y = np.log(np.where(valid[..., None], window, 1.0)) - np.log(np.where(valid[..., None], total, 1.0))

    xc = x - np.sum(w * x) / np.sum(w)
    yc = y - (y @ w)[..., None] / np.sum(w)
    slope = (yc @ (w * xc)) / np.sum(w * xc * xc)
    ss_res = ((yc - slope[..., None] * xc) ** 2) @ w
    ss_tot = (yc**2) @ w
    # R^2 is undefined for a constant y (flat spectrum in the window), where yc is only the
    # round-off of the weighted mean: that can leave ss_tot > 0, so the test is on y itself.
    flat = np.all(y == y[..., :1], axis=-1)
    r2 = np.divide(ss_res, ss_tot, out=np.full_like(ss_tot, np.nan), where=~flat)
    r2 = 1.0 - r2
    return np.where(valid, slope, np.nan), np.where(valid, r2, np.nan)


def alpha(eigs, ranks=(11, 100)):
    """Power-law decay exponent of the eigenspectrum, lambda_k ~ k^(-alpha).

    Fitted as in alpha-ReQ, Agrawal, Mondal, Ghosh & Richards (2022), "alpha-ReQ:
    Assessing representation quality in self-supervised learning by measuring
    eigenspectrum decay", NeurIPS (fit procedure from Stringer et al. 2019, Nature):
    over the 1-indexed inclusive rank window k = lo..hi, regress y_k = log p_k on
    x_k = -log k with an intercept by weighted least squares, weight w_k = 1/k on
    each squared residual; alpha is the fitted slope.
    r2 = 1 - sum_k w_k (y_k - yhat_k)^2 / sum_k w_k (y_k - ybar_w)^2 is the weighted
    coefficient of determination (nan if y is constant over the window).

    Returns (alpha, r2) as floats. Raises ValueError unless 1 <= lo, hi - lo >= 2
    and hi <= len(eigs). Returns (nan, nan) if any eigenvalue in the window is <= 0,
    or numerically zero (<= lambda_1 * D * eps, the ``numerical_rank`` tolerance),
    as happens for rank-deficient data (e.g. N - 1 < hi); callers should report
    the value as missing. ``alpha_window_error`` checks this ahead of time.
    """
    lam = _check_eigs(eigs)
    lo, hi = _validate_window(ranks, lam.size)
    a, r2 = _fit_power_law(lam, lo, hi)
    return float(a), float(r2)


def batched_alpha(eigs, ranks=(11, 100)):
    """``alpha`` vectorised over the leading dimensions of eigs of shape (..., D).

    Returns two float64 arrays of shape (...): alpha and r2, nan where any eigenvalue
    in the window is <= 0 (or numerically zero). Same validation as ``alpha``.
    """
    lam = _check_eigs(eigs, batched=True)
    lo, hi = _validate_window(ranks, lam.shape[-1])
    return _fit_power_law(lam, lo, hi)


def alpha_window_error(ranks, n_samples, dim):
    """None if the alpha rank window fits inside the rank of X, else a one-line reason.

    The centred N x D matrix has rank at most min(N - 1, D); the window (lo, hi) is
    usable when lo >= 1, hi - lo >= 2 and hi <= min(N - 1, D).
    """
    lo, hi = (operator.index(r) for r in ranks)
    if lo < 1:
        return f"rank window ({lo}, {hi}) must start at rank >= 1"
    if hi - lo < 2:
        return f"rank window ({lo}, {hi}) has fewer than 3 ranks (need hi - lo >= 2)"
    rank = min(n_samples - 1, dim)
    if hi > rank:
        return f"rank window ({lo}, {hi}) exceeds the rank of X: min(N-1={n_samples - 1}, D={dim})={rank}"
    return None


def fitted_alpha_window(ranks, n_images, dim, groups):
    """The alpha rank window (lo, hi) that a probe set of n_images and width D can hold, and a
    one-line note when hi had to come down (None when the window fits as given).

    Every delete-a-group jackknife replicate (the images less the largest of min(groups, N)
    groups, ``stats.image_groups``) must hold the window, so that alpha has an interval too: hi
    <= min(N_replicate - 1, D), the rank of the replicate's centred matrix. Raises ValueError
    when fewer than 3 ranks from lo fit (the window needs hi - lo >= 2).
    """
    lo, hi = (operator.index(r) for r in ranks)
    left = n_images - -(-n_images // min(groups, n_images))
    cap = min(left - 1, dim)
    holds = f"{n_images} probe images ({left} in a jackknife replicate) and D={dim} hold ranks up to {cap}"
    if cap - lo < 2:
        raise ValueError(f"{holds}, fewer than 3 from rank {lo}")
    if hi <= cap:
        return (lo, hi), None
    return (lo, cap), f"{holds}: alpha is fitted over ranks {lo}..{cap}"


def stage_alpha_window(param, ranks, n_images, dim, groups):
    """``fitted_alpha_window`` for a stage reading the window from `param`: prints a note when the
    window comes down, and stops with one line naming the param and the fix when it cannot fit."""
    try:
        window, note = fitted_alpha_window(ranks, n_images, dim, groups)
    except ValueError as e:
        raise TGOError(f"{param}={list(ranks)}: {e}; start the window lower or use more probe images "
                       "(extract.probe_size)") from None
    if note:
        print(f"note: {param}={list(ranks)} does not fit: {note}")
    return window


def spectral_metrics(X, ranks=(11, 100), cosine_max_samples=2000):
    """All spectral metrics of X in one pass, as a dict of plain Python floats.

    Keys: effective_rank, rankme, stable_rank, participation_ratio, spectral_entropy,
    spectral_entropy_normalized, spectral_flatness, anisotropy, mean_cosine_similarity
    (on at most cosine_max_samples rows, see ``mean_cosine_similarity``),
    alpha, alpha_r2 (alpha values may be nan, see ``alpha``), plus "eigenvalues"
    (the float64 output of ``eigenspectrum``). X is converted to float64 once; one
    eigendecomposition serves every covariance metric and one more serves RankMe.
    Raises ValueError if the rank window exceeds D (see ``alpha``).
    """
    X64 = _as_float64(X)
    return _all_metrics(_centred_eigs(X64), _rankme(X64, 1e-7),
                        mean_cosine_similarity(X64, max_samples=cosine_max_samples), ranks)


def _all_metrics(eigs, rankme_value, cosine, ranks):
    """The dict of ``spectral_metrics`` from its three ingredients, in its key order."""
    m = _covariance_family(eigs, ranks)
    return {"effective_rank": m["effective_rank"], "rankme": rankme_value,
            **{k: m[k] for k in ("stable_rank", "participation_ratio", "spectral_entropy",
                                 "spectral_entropy_normalized", "spectral_flatness", "anisotropy")},
            "mean_cosine_similarity": cosine, "alpha": m["alpha"], "alpha_r2": m["alpha_r2"], "eigenvalues": eigs}


def _covariance_family(eigs, ranks):
    """The covariance-spectrum metrics of one eigenvalue vector (alpha from ``alpha``)."""
    a, r2 = alpha(eigs, ranks)
    return {"effective_rank": effective_rank(eigs), "stable_rank": stable_rank(eigs),
            "participation_ratio": participation_ratio(eigs), "spectral_entropy": spectral_entropy(eigs),
            "spectral_entropy_normalized": spectral_entropy(eigs, normalized=True),
            "spectral_flatness": spectral_flatness(eigs), "anisotropy": anisotropy(eigs), "alpha": a, "alpha_r2": r2}


def _jackknife_pieces(Xc, labels):
    """Per group g of rows (axis -2): the scatter X_g^T X_g and the row sum of centred Xc (..., N, D),
    stacked on a new leading axis G, and the rows left in each replicate (G,)."""
    parts = [Xc[..., labels == g, :] for g in range(labels.max() + 1)]
    pieces = np.empty((len(parts),) + Xc.shape[:-2] + (Xc.shape[-1],) * 2)
    for p, out in zip(parts, pieces):  # into one buffer: fresh pages cost more than the products here
        np.matmul(np.swapaxes(p, -1, -2), p, out=out)
    sums = np.stack([p.sum(axis=-2) for p in parts])
    keep_n = (labels.size - np.bincount(labels, minlength=len(parts))).astype(np.float64)
    if keep_n.min() < 2:
        raise ValueError("every replicate needs at least 2 rows: use fewer groups")
    return pieces, sums, keep_n.reshape((-1,) + (1,) * Xc.ndim)


def _eigs_from_pieces(pieces, sums, keep_n):
    """Covariance eigenvalues without each group from ``_jackknife_pieces`` (whose pieces become
    the replicates' covariances, in place)."""
    # Without group g the rows sum to -s_g (the full centred sum is 0).
    cov = np.subtract(pieces.sum(axis=0), pieces, out=pieces)
    for c, s, k in zip(cov, sums, keep_n):
        c -= s[..., :, None] * s[..., None, :] / k
    cov /= keep_n - 1
    return np.maximum(np.linalg.eigvalsh(cov)[..., ::-1], 0.0)


def _jackknife_eigs(Xc, labels):
    """Covariance eigenvalues (G, ..., D), descending, of centred Xc (..., N, D) without each group."""
    n, d = Xc.shape[-2:]
    if n >= d:
        return _eigs_from_pieces(*_jackknife_pieces(Xc, labels))
    gram = Xc @ np.swapaxes(Xc, -1, -2)
    eigs = np.zeros((labels.max() + 1,) + Xc.shape[:-2] + (d,))
    for g in range(labels.max() + 1):
        keep = np.flatnonzero(labels != g)
        k = gram[..., keep[:, None], keep]
        k = k - k.mean(axis=-2, keepdims=True) - k.mean(axis=-1, keepdims=True) + k.mean(axis=(-1, -2), keepdims=True)
        eigs[g, ..., :keep.size] = np.maximum(np.linalg.eigvalsh(k / (keep.size - 1))[..., ::-1], 0.0)
    return eigs


def _centred(X64):
    shifted = X64 - X64[..., :1, :]  # the two-step centring of _centred_eigs
    return shifted - shifted.mean(axis=-2, keepdims=True)


def jackknife_eigenspectra(X, labels):
    """Covariance eigenvalues of X (..., N, D) without each group of rows: shape (G, ..., D), entry g
    equal to ``batched_eigenspectra(X[..., labels != g, :])``.

    The covariance is additive over rows: X is centred once and split into the groups' pieces
    Q_g = X_g^T X_g and s_g = sum of X_g; without group g the centred scatter is
    Q - Q_g - s_g s_g^T / n_(g) (n_(g) rows remain), and all replicates are diagonalised in one
    batched eigvalsh. When N < D the N x N Gram matrix is restricted and re-centred instead.
    """
    labels = np.asarray(labels)
    X64 = _as_float64(X, batched=True)
    if labels.shape != (X64.shape[-2],):
        raise ValueError(f"expected {X64.shape[-2]} group labels, got shape {labels.shape}")
    return _jackknife_eigs(_centred(X64), labels)


# Leading principal directions kept per rank a replicate's spectrum is needed to
# (``leading_jackknife_eigenspectra``; its error at this margin is measured in its docstring).
_RITZ_MARGIN = 1.25


def leading_jackknife_eigenspectra(X, labels, top):
    """(eigs, reps): the covariance eigenvalues of X (..., N, D), shape (..., D), and the leading
    eigenvalues of every delete-a-group replicate, shape (G, ..., L) with L >= top, approximating
    ``jackknife_eigenspectra(X, labels)[..., :L]``; the window of an alpha fit up to rank `top`
    needs no more.

    Rayleigh-Ritz (Parlett, "The Symmetric Eigenvalue Problem", 1998, ch. 11). Without group g
    the centred scatter is S_g = S - X_g^T X_g - s_g s_g^T / n_(g), a downdate of rank m_g (the
    group's rows) of the full S = V Lambda V^T. Its eigenvalues are approximated by those of S_g
    restricted to span(V_k, Z_g): the k = ceil(1.25 top) leading eigenvectors of S, and Z_g, an
    orthonormal basis of the left-out rows' part outside them, the only directions through which
    the downdate couples the leading subspace to the rest. In the eigenbasis of S that is a
    (k + m_g)-square matrix, diag(Lambda_k) (+) Z_g^T Lambda_rest Z_g less the downdate, so each
    replicate costs an eigendecomposition of k + m_g instead of D. Ritz values are lower bounds of
    the eigenvalues (Cauchy interlacing) and exact when S_g's leading eigenvectors lie in the
    subspace. Measured against ``jackknife_eigenspectra`` on ViT-S/16 activations (1,000 images,
    D=384, 20 groups, alpha over ranks 11-100, bench/analysis_scale.py's workspace): every replicate's
    alpha within 2e-4 (the jackknife standard error is 1.7e-2), the standard error within 0.5%; on
    a planted power-law spectrum see tests/test_spectral.py.

    eigs come from the same float64 eigendecomposition of S (with its eigenvectors), equal to
    ``batched_eigenspectra(X)`` to round-off. The approximation is used only where it pays, N >= D
    and k + m <= D / 2; otherwise both are computed exactly (L = D).
    """
    labels = np.asarray(labels)
    X64 = _as_float64(X, batched=True)
    n, d = X64.shape[-2:]
    if labels.shape != (n,):
        raise ValueError(f"expected {n} group labels, got shape {labels.shape}")
    k = int(np.ceil(_RITZ_MARGIN * operator.index(top)))
    rows = [np.flatnonzero(labels == g) for g in range(labels.max() + 1)]
    if n < d or k + max(map(len, rows)) > d // 2:
        Xc = _centred(X64)
        return _centred_eigs(X64), _jackknife_eigs(Xc, labels)
    Xc = _centred(X64)
    lam, V = np.linalg.eigh(np.swapaxes(Xc, -1, -2) @ Xc)
    lam, V = np.maximum(lam[..., ::-1], 0.0), V[..., ::-1]
    # The rows in S's eigenbasis (where S is diag(lam)), grouped: each group's rows a contiguous slice.
    coords = Xc[..., np.concatenate(rows), :] @ V
    ends = np.cumsum([len(idx) for idx in rows])
    reps = []
    for end, idx in zip(ends, rows):
        left = n - idx.size
        Xg = coords[..., end - idx.size:end, :]
        # Z R = the rows' trailing coordinates (D - k x m), so in the basis Z those rows are R^T.
        Z, R = np.linalg.qr(np.swapaxes(Xg[..., k:], -1, -2))
        A = np.concatenate([Xg[..., :k], np.swapaxes(R, -1, -2)], axis=-1)  # the group's rows in the subspace
        s = A.sum(axis=-2)
        M = -(np.swapaxes(A, -1, -2) @ A) - s[..., :, None] * s[..., None, :] / left
        M[..., range(k), range(k)] += lam[..., :k]
        M[..., k:, k:] += np.swapaxes(Z, -1, -2) @ (lam[..., k:, None] * Z)
        reps.append(np.maximum(np.linalg.eigvalsh(M / (left - 1))[..., ::-1], 0.0))
    return np.ascontiguousarray(lam / (n - 1)), np.stack(reps)


def row_scatter(X, labels, rows=()):
    """One pass over X (N, D), read in its own dtype (a float16 memmap is never copied whole to
    float64), for ``jackknife_spectral_metrics`` and ``nested_spectral_metrics``: the scatter
    P^T P and row sum of P = X[cell] - x0 (float64; x0 the first row) of every cell of rows, a
    cell being the rows of one group (labels, 0..G-1) added by one of the nested row index arrays
    `rows` (each a prefix of the next; the rows outside the last form one more cell).

    Returns a dict: x0 (D,), scatter (G, C, D, D), sums (G, C, D), counts (G, C), C = len(rows) + 1.
    """
    labels = np.asarray(labels)
    if np.ndim(X) != 2 or len(X) < 2:
        raise ValueError(f"expected an array of shape (N, D) with N >= 2, got {np.shape(X)}")
    if labels.shape != (len(X),):
        raise ValueError(f"expected {len(X)} group labels, got shape {labels.shape}")
    rows = [np.asarray(r) for r in rows]
    for a, b in zip(rows, rows[1:]):
        if not (a.size <= b.size and np.array_equal(b[:a.size], a)):
            raise ValueError("rows must be nested: each index array a prefix of the next")
    cell = np.full(len(X), len(rows))
    for c, r in reversed(list(enumerate(rows))):
        cell[r] = c
    x0 = np.asarray(X[0], dtype=np.float64)
    n_groups, n_cells, d = labels.max() + 1, len(rows) + 1, x0.size
    out = {"x0": x0, "scatter": np.zeros((n_groups, n_cells, d, d)), "sums": np.zeros((n_groups, n_cells, d)),
           "counts": np.zeros((n_groups, n_cells))}
    for g in range(n_groups):
        for c in range(n_cells):
            idx = np.flatnonzero((labels == g) & (cell == c))
            if idx.size:
                part = np.asarray(X[idx], dtype=np.float64) - x0
                out["scatter"][g, c] = part.T @ part
                out["sums"][g, c] = part.sum(axis=0)
                out["counts"][g, c] = idx.size
    return out


def _scatter_eigs(S, t, n, x0):
    """(covariance eigenvalues descending, uncentred Gram eigenvalues) of the rows whose X - x0 has
    scatter S and row sum t, n of them; batched over leading axes."""
    n = np.asarray(n, dtype=np.float64)[..., None, None]
    cov = (S - t[..., :, None] * t[..., None, :] / n) / (n - 1)
    raw = S + t[..., :, None] * x0 + x0[:, None] * t[..., None, :] + n * np.outer(x0, x0)
    return np.maximum(np.linalg.eigvalsh(cov)[..., ::-1], 0.0), np.linalg.eigvalsh(raw)


def jackknife_spectral_metrics(X, labels, ranks=(11, 100), cosine_max_samples=2000, scatter=None):
    """``spectral_metrics`` of X (N, D) and of X without each group of rows, in one pass over X.

    labels (N,) gives each row's group 0..G-1 (``tgo.geometry.stats``: rows of one image share a
    group). Returns (metrics, replicates): metrics as ``spectral_metrics(X)`` (eigenvalues
    included) and replicates {name: float64 array (G,)}, entry g = the metric of X[labels != g].
    With N >= D the covariance and RankMe's uncentred scatter come from ``row_scatter`` (pass it
    as `scatter` when it is computed already): the scatter is additive over rows, so without
    group g it is the total less group g's share. With N < D the N x N Gram matrix is restricted
    and re-centred instead. The mean cosine similarity comes from the rows
    ``mean_cosine_similarity`` uses, summed by group.
    """
    labels = np.asarray(labels)
    if np.ndim(X) != 2 or len(X) < 2:
        raise ValueError(f"expected an array of shape (N, D) with N >= 2, got {np.shape(X)}")
    n, d = np.shape(X)
    if labels.shape != (n,):
        raise ValueError(f"expected {n} group labels, got shape {labels.shape}")
    if n >= d:
        sc = row_scatter(X, labels) if scatter is None else scatter
        Q, s, counts = sc["scatter"].sum(axis=1), sc["sums"].sum(axis=1), sc["counts"].sum(axis=1)
        if (n - counts).min() < 2:
            raise ValueError("every replicate needs at least 2 rows: use fewer groups")
        eigs, raw_eigs = _scatter_eigs(Q.sum(axis=0) - Q, s.sum(axis=0) - s, n - counts, sc["x0"])
        full_eigs, full_raw = _scatter_eigs(Q.sum(axis=0), s.sum(axis=0), n, sc["x0"])
        full = _all_metrics(full_eigs, _rankme_from_gram_eigs(full_raw),
                            mean_cosine_similarity(X, max_samples=cosine_max_samples), ranks)
    else:
        X64 = _as_float64(X)
        eigs = _jackknife_eigs(_centred(X64), labels)
        raw_gram = X64 @ X64.T
        raw_eigs = [np.linalg.eigvalsh(raw_gram[np.ix_(labels != g, labels != g)]) for g in range(labels.max() + 1)]
        full = spectral_metrics(X64, ranks, cosine_max_samples)
    reps = [_covariance_family(e, ranks) for e in eigs]
    out = {k: np.array([r[k] for r in reps]) for k in reps[0]}
    out["rankme"] = np.array([_rankme_from_gram_eigs(e) for e in raw_eigs])
    out["mean_cosine_similarity"] = _jackknife_cosine(X, labels, labels.max() + 1, cosine_max_samples)
    return full, out


def _jackknife_cosine(X, labels, n_groups, max_samples, seed=0):
    """``mean_cosine_similarity`` without each group: the rows it uses, summed by group."""
    rows = _cosine_rows(X.shape[0], max_samples, seed)
    Y = np.asarray(X[rows], dtype=np.float64)
    norms = np.linalg.norm(Y, axis=1)
    keep = norms > 0
    U = Y[keep] / norms[keep, None]
    lab = labels[rows][keep]
    onehot = np.zeros((n_groups, lab.size))
    onehot[lab, np.arange(lab.size)] = 1.0
    s = U.sum(axis=0) - onehot @ U
    sq_norms = np.sum(U * U, axis=1)
    sq = sq_norms.sum() - onehot @ sq_norms
    m = lab.size - onehot.sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(m >= 2, (np.einsum("gd,gd->g", s, s) - sq) / (m * (m - 1)), np.nan)


def nested_spectral_metrics(X, rows, ranks=(11, 100), cosine_max_samples=2000, scatter=None):
    """``spectral_metrics`` of X[r] for nested row index arrays r in `rows` (each a prefix of the
    next), without the eigenvalues, in one pass over X: a list of dicts, entry k equal to
    spectral_metrics(X[rows[k]]).

    The covariance and RankMe's uncentred scatter are additive over rows: a subset's scatter is
    the sum of the cells of ``row_scatter`` (pass it as `scatter`, computed with the same `rows`,
    when it is computed already) up to it. A subset with fewer rows than columns is computed
    directly (its N x N Gram matrix, as spectral_metrics).
    """
    sc = row_scatter(X, np.zeros(len(X), dtype=np.intp), rows) if scatter is None else scatter
    Q = np.cumsum(sc["scatter"].sum(axis=0), axis=0)
    s = np.cumsum(sc["sums"].sum(axis=0), axis=0)
    out = []
    for k, r in enumerate(rows):
        n = len(r)
        if n < np.shape(X)[-1]:
            m = spectral_metrics(X[r], ranks, cosine_max_samples)
        else:
            eigs, raw = _scatter_eigs(Q[k], s[k], n, sc["x0"])
            m = _all_metrics(eigs, _rankme_from_gram_eigs(raw),
                             mean_cosine_similarity(X[np.asarray(r)[_cosine_rows(n, cosine_max_samples, 0)]], None),
                             ranks)
        m.pop("eigenvalues")
        out.append(m)
    return out
