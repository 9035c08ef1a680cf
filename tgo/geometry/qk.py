"""Geometry of the query-key interaction of a ViT attention block.

Notation: row vectors x in R^D (the tokens after the block's first norm). For one head,
q = x W_Q + b_Q and k = x W_K + b_K with W_Q, W_K of shape (D, d_head), so the bilinear
part of the pre-softmax score is

    s_ij = x_i M x_j^T,   M = W_Q W_K^T in R^{D x D},   rank(M) <= d_head,

(the bias terms and the 1/sqrt(d_head) scale are separate). M splits into
M_sym = (M + M^T)/2, which scores how much x_i and x_j agree along shared directions,
and M_asym = (M - M^T)/2, which makes the score depend on who queries whom.
Motivation: Philip, Pan & Schwartz, "Probing vision transformer attention: image
statistics and patch similarity": attention vs the angle between patches.

All spectra are computed in float64 with symmetric/structured solvers (eigvalsh,
svdvals) on the factored form, never with a general eig: M_sym and M_asym live on the
column space of [W_Q W_K], so their nonzero spectra come from 2 d_head x 2 d_head
problems. Token layout (tgo.activations): prefix tokens (CLS) first, then the patches.
"""

import numpy as np
import scipy.linalg
import scipy.stats
from threadpoolctl import threadpool_limits

_EPS64 = np.finfo(np.float64).eps
# Eigenvalues below this fraction of the largest magnitude count as zero when
# classifying signs: they are round-off of the factored computation, not structure.
_SIGN_TOLERANCE = np.sqrt(_EPS64)
# Share of the singular values summarised by top10pct_sv_energy_share.
_TOP_SHARE = 0.1
# Spearman's rank correlation is computed on at most this many pairs.
_MAX_SPEARMAN_PAIRS = 200_000


def _numpy64(a):
    # Accept torch tensors (e.g. straight from a state dict) as well as arrays/memmaps.
    if hasattr(a, "detach"):
        a = a.detach().cpu().numpy()
    return np.asarray(a, dtype=np.float64)


def _ratio(num, den):
    if den == 0:
        return np.nan if num == 0 else np.inf
    return float(num / den)


def decompose(w_q, w_k):
    """Spectra of M = W_Q W_K^T and of its symmetric and antisymmetric parts.

    w_q, w_k: one head's projections of shape (D, d_head) (q = x @ w_q). With
    M_sym = (M + M^T)/2 and M_asym = (M - M^T)/2 returns a dict (float64):

    - sym_eigenvalues: eigenvalues of M_sym, descending. Only the min(D, 2 d_head)
      eigenvalues on the column space of [W_Q W_K] are returned; every other eigenvalue
      is exactly 0 (entries can be ~0 too, e.g. when W_Q and W_K share directions).
    - sym_fraction_positive: #{lambda > tol} / #{|lambda| > tol}, tol = sqrt(eps) max|lambda|.
    - sym_mass_positive: sum_{lambda > 0} lambda / sum |lambda|  (1 for PSD, 0 for NSD).
    - asym_magnitudes: M_asym is real skew-symmetric, so its eigenvalues are ±i mu_k;
      the mu_k (one per pair, descending, length ceil(min(D, 2 d_head)/2)). They are its
      singular values, which come in equal pairs; every other one is taken.
    - asym_sym_norm_ratio: ||M_asym||_F / ||M_sym||_F (0 for W_Q = W_K; inf if M_sym = 0).
    - singular_values: of M, descending, length min(D, d_head).
    - sv1_energy_share: sigma_1^2 / sum sigma^2.
    - top10pct_sv_energy_share: share of sum sigma^2 in the top max(1, floor(0.1 n)) singular
      values, n = len(singular_values).
    Shares are nan when M = 0.

    Method: QR of U = [W_Q W_K] = Q R with R = [R_Q R_K] gives M = Q (R_Q R_K^T) Q^T with
    Q orthonormal, so M_sym and M_asym are Q S Q^T with S the symmetric / skew part of
    the small matrix R_Q R_K^T: eigvalsh(S_sym) and svdvals(S_asym) give their nonzero
    spectra. Singular values of M: with W_Q = Q_1 R_1 and W_K = Q_2 R_2,
    M = Q_1 (R_1 R_2^T) Q_2^T, so they are svdvals(R_1 R_2^T).
    """
    a, b = _numpy64(w_q), _numpy64(w_k)
    if a.ndim != 2 or a.shape != b.shape:
        raise ValueError(f"expected w_q, w_k of the same shape (D, d_head), got {a.shape} and {b.shape}")
    if 0 in a.shape:
        raise ValueError(f"w_q, w_k of shape {a.shape}: need D, d_head >= 1")
    # One BLAS thread: at these sizes more gain nothing, and on shared cores their spin-waiting made the
    # qk stage's QR and SVD calls 30x slower (2 cores, load 4).
    with threadpool_limits(limits=1, user_api="blas"):
        return _decompose(a, b)


def _decompose(a, b):
    """``decompose`` of float64 (D, d_head) arrays, in the calling thread's BLAS setting."""
    d = a.shape[1]

    # M restricted to span([W_Q W_K]) in the orthonormal basis Q.
    r = np.linalg.qr(np.concatenate([a, b], axis=1), mode="r")
    small = r[:, :d] @ r[:, d:].T
    s_sym, s_asym = (small + small.T) / 2, (small - small.T) / 2

    sym = np.linalg.eigvalsh(s_sym)[::-1]
    tol = _SIGN_TOLERANCE * np.max(np.abs(sym))
    n_pos, n_neg = np.count_nonzero(sym > tol), np.count_nonzero(sym < -tol)
    abs_mass = np.sum(np.abs(sym))

    # Singular values of a real skew-symmetric matrix are the |imaginary eigenvalues|, each twice.
    asym = scipy.linalg.svdvals(s_asym)[::2]

    r_q, r_k = np.linalg.qr(a, mode="r"), np.linalg.qr(b, mode="r")
    sv = scipy.linalg.svdvals(r_q @ r_k.T)
    sq = sv * sv
    n_top = max(1, int(np.floor(_TOP_SHARE * sv.size)))

    return {
        "sym_eigenvalues": sym,
        "sym_fraction_positive": _ratio(n_pos, n_pos + n_neg),
        "sym_mass_positive": _ratio(np.sum(sym[sym > 0]), abs_mass),
        "asym_magnitudes": asym,
        "asym_sym_norm_ratio": _ratio(np.linalg.norm(s_asym), np.linalg.norm(s_sym)),
        "singular_values": sv,
        "sv1_energy_share": _ratio(sq[0], sq.sum()),
        "top10pct_sv_energy_share": _ratio(sq[:n_top].sum(), sq.sum()),
    }


def head_projections(qkv_weight, num_heads):
    """Per-head (w_q, w_k), each of shape (H, D, d_head), from timm's ``attn.qkv.weight``.

    timm's qkv is one Linear D -> 3 H d_head with weight (out, in); its output is split as
    reshape(..., 3, H, d_head): rows [0, H d_head) are queries, the next H d_head keys, and
    head h uses rows h d_head:(h+1) d_head of each. Transposed so q_h = x @ w_q[h].
    """
    w = _numpy64(qkv_weight)
    if w.ndim != 2 or w.shape[0] % (3 * num_heads):
        raise ValueError(f"qkv weight of shape {w.shape} does not split into 3 x {num_heads} heads")
    inner = w.shape[0] // 3
    d_head = inner // num_heads

    def split(rows):
        return np.ascontiguousarray(rows.reshape(num_heads, d_head, -1).transpose(0, 2, 1))

    return split(w[:inner]), split(w[inner:2 * inner])


def heads_together(w_q, w_k):
    """``decompose`` of the heads taken together: M = sum_h M_h = W_Q W_K^T.

    w_q, w_k: (H, D, d_head) as from ``head_projections``; W_Q = [w_q[0] ... w_q[H-1]]
    (D x H d_head) concatenates the heads along the d_head axis, so W_Q W_K^T = sum_h
    w_q[h] w_k[h]^T. This is the score matrix of the heads' summed (not averaged) logits.
    """
    a, b = _numpy64(w_q), _numpy64(w_k)
    if a.ndim != 3 or a.shape != b.shape:
        raise ValueError(f"expected w_q, w_k of the same shape (H, D, d_head), got {a.shape} and {b.shape}")
    h, dim, d = a.shape
    return decompose(a.transpose(1, 0, 2).reshape(dim, h * d), b.transpose(1, 0, 2).reshape(dim, h * d))


def heads_together_leave_one_out(w_q, w_k):
    """``heads_together`` without each head: a list of H dicts, entry h the decomposition of
    M_(h) = sum_{g != h} w_q[g] w_k[g]^T, the heads-together score matrix of the other H - 1 heads.

    w_q, w_k: (H, D, d_head) as from ``head_projections``, H >= 2. Used as a delete-one-head
    jackknife over heads: how much a heads-together statistic of a block rests on any single head
    (se^2 = (H - 1)/H sum_h (theta_(h) - mean_h theta_(h))^2, as ``tgo.geometry.stats.standard_error``
    with G = H groups of one head). The shares and ratios are scale-free, so replicate h compares
    directly with the full value although M_(h) sums one head fewer.
    """
    a, b = _numpy64(w_q), _numpy64(w_k)
    if a.ndim != 3 or a.shape != b.shape:
        raise ValueError(f"expected w_q, w_k of the same shape (H, D, d_head), got {a.shape} and {b.shape}")
    if a.shape[0] < 2:
        raise ValueError(f"leaving one head out needs at least 2 heads, got {a.shape[0]}")
    heads = np.arange(a.shape[0])
    return [heads_together(a[heads != h], b[heads != h]) for h in heads]


def layer_norm(x, weight, bias, eps):
    """LayerNorm over the last axis in float64: (x - mean) / sqrt(var + eps) * weight + bias.

    var is the biased (1/D) variance, as in torch.nn.LayerNorm. Use a block's norm1
    parameters on the stored block input (embed for block 1, residual[b-1] for block b)
    to recover the tokens that enter its attention.
    """
    x = _numpy64(x)
    # In place on one new array: at (N, T, D) every temporary is a large allocation.
    out = x - x.mean(axis=-1, keepdims=True)
    var = np.mean(np.square(out), axis=-1, keepdims=True)
    out /= np.sqrt(var + eps)
    if weight is not None:
        out *= _numpy64(weight)
    if bias is not None:
        out += _numpy64(bias)
    return out


def attention_from_inputs(h, qkv_weight, qkv_bias, num_heads):
    """Attention weights (N, H, T, T) = softmax_j(q_i k_j^T / sqrt(d_head)), float64.

    h: (N, T, D), the tokens entering attention (the block's norm1 output). q, k from
    timm's qkv Linear (weight (3 H d_head, D), bias or None), split per head as in
    ``head_projections``; q_norm/k_norm are assumed to be Identity (timm's default).
    Row i holds token i's attention over all T tokens (rows sum to 1).
    """
    x = _numpy64(h)
    w = _numpy64(qkv_weight)
    if x.ndim != 3 or w.ndim != 2 or w.shape[1] != x.shape[-1] or w.shape[0] % (3 * num_heads):
        raise ValueError(f"h of shape {x.shape} and qkv weight of shape {w.shape} do not match "
                         f"(need (N, T, D) and (3 H d_head, D) with H={num_heads})")
    n, t, _ = x.shape
    inner = w.shape[0] // 3
    d_head = inner // num_heads
    # Only q and k are needed: skip the value rows.
    qk = x @ w[:2 * inner].T
    if qkv_bias is not None:
        qk += _numpy64(qkv_bias)[:2 * inner]
    qk = qk.reshape(n, t, 2, num_heads, d_head).transpose(2, 0, 3, 1, 4)
    q, k = qk[0], qk[1]
    scores = (q * d_head ** -0.5) @ np.swapaxes(k, -1, -2)
    scores -= scores.max(axis=-1, keepdims=True)  # stable softmax
    np.exp(scores, out=scores)
    scores /= scores.sum(axis=-1, keepdims=True)
    return scores


def head_mean_attention(h, qkv_weight, qkv_bias, num_heads, chunk=16):
    """``attention_from_inputs`` averaged over heads, (N, T, T): the attention ``angle_attention_stats``
    reads. Computed `chunk` images at a time, so the (N, H, T, T) array of all images (240 MB
    for 128 images at 197 tokens) is never allocated."""
    return np.concatenate([attention_from_inputs(h[i:i + chunk], qkv_weight, qkv_bias, num_heads).mean(axis=1)
                           for i in range(0, len(h), chunk)])


def angle_attention_stats(h, attn, num_prefix_tokens=1, bins=18):
    """Angle between patch vectors vs the attention between them, for one block.

    theta_ij = arccos(h_i . h_j / (|h_i| |h_j|)) in degrees, for patch tokens i != j of
    h (N, T, D), the patch vectors at the block's norm1; A_ij = attention (N, H, T, T)
    averaged over heads (an (N, T, T) array is taken as already averaged), patch ->
    patch entries only (query i, key j; every ordered pair). Following Philip, Pan &
    Schwartz, similar patches (small theta) attending more gives a negative
    rank correlation. Which vectors: norm1's bias beta is one vector added to every token,
    which pulls every angle towards 0 as |beta| grows; the qk stage decides on norm1's output without
    beta, x_hat * gamma (``layer_norm(x, weight, None, eps)``), and reports the angles with
    beta beside them (the attention is always that of the full norm1 output). Over all
    images and pairs returns:

    - spearman: scipy.stats.spearmanr(theta, A) on a deterministic random subsample of
      200k pairs when there are more (nan if either is constant);
    - share_obtuse: share of pairs with theta > 90 degrees;
    - bin_centres, attention_by_angle: mean A in ``bins`` equal bins over [0, 180]
      (180 falls in the last bin), nan for empty bins;
    - n_pairs: N P (P - 1), P = T - num_prefix_tokens.
    arccos is clipped to [-1, 1]; exactly orthogonal vectors give exactly 90 degrees,
    near-(anti)parallel ones are resolved to ~1e-6 degree.
    """
    return _stats_of_pairs(*_angle_pairs(h, attn, num_prefix_tokens, bins), bins)


def jackknife_angle_attention_stats(h, attn, labels, num_prefix_tokens=1, bins=18):
    """``angle_attention_stats`` of all images and without each group of images: (stats, replicates),
    replicate g a dict with spearman and share_obtuse of the images with labels != g.

    share_obtuse of replicate g counts every pair of those images. Its spearman is Spearman's rho
    over the pairs of the full data's subsample (at most 200k pairs, as ``angle_attention_stats``)
    that belong to those images, so every replicate leaves out images of one fixed sample of
    pairs: a fresh subsample per replicate would add its own sampling noise to each replicate,
    which the jackknife multiplies by G - 1 and reports as between-image variance. Without a
    subsample (few pairs) the replicate equals ``angle_attention_stats`` of those images. The
    angles and attention of every pair, and their sort order, are computed once.
    """
    labels = np.asarray(labels)
    pairs = _angle_pairs(h, attn, num_prefix_tokens, bins)
    if labels.shape != (pairs[0].shape[0],):
        raise ValueError(f"expected {pairs[0].shape[0]} group labels, got shape {labels.shape}")
    thetas, attns, obtuse = pairs[0], pairs[1], pairs[4]
    image, pair = _spearman_sample(*thetas.shape)
    theta_s, attn_s = thetas[image, pair], attns[image, pair]
    ranked = _sort_order(theta_s), _sort_order(attn_s)
    reps = []
    for g in range(labels.max() + 1):
        inside = labels[image] != g
        kept = labels != g
        reps.append({"spearman": _subset_spearman(*ranked, inside),
                     "share_obtuse": int(obtuse[kept].sum()) / (np.count_nonzero(kept) * thetas.shape[1])})
    return _stats_of_pairs(*pairs, bins), reps


def _sort_order(x):
    """x's stable sort order and, along it, the index of each value's tie group (0, 1, ...)."""
    order = np.argsort(x, kind="stable")
    v = x[order]
    return order, np.concatenate([[0], np.cumsum(v[1:] != v[:-1])])


def _subset_ranks(order, group, inside):
    """Average ranks (1-based, ties sharing their mean rank, as scipy.stats.rankdata) of the
    elements of x where `inside`, among themselves, from ``_sort_order(x)``: an element's rank is
    the count of smaller kept elements plus (its tie group's kept count + 1) / 2."""
    in_group = np.bincount(group, weights=inside[order])
    below = np.cumsum(in_group) - in_group
    ranks = np.empty(order.size)
    ranks[order] = below[group] + (in_group[group] + 1) / 2
    return ranks[inside]


def _subset_spearman(x_sorted, y_sorted, inside):
    """Spearman's rho of the pairs where `inside` (scipy.stats.spearmanr's value: the Pearson
    correlation of their average ranks), nan if either side is constant there."""
    rx, ry = _subset_ranks(*x_sorted, inside), _subset_ranks(*y_sorted, inside)
    if rx.size < 2 or np.ptp(rx) == 0 or np.ptp(ry) == 0:
        return np.nan
    return float(np.corrcoef(rx, ry)[0, 1])


def _angle_pairs(h, attn, num_prefix_tokens, bins):
    """Per image, over its ordered patch pairs (i, j), i != j, row-major: theta_ij in degrees and
    the head-mean attention A_ij (N, P(P-1)) each, and the image's sums of A, pair counts (N, bins)
    per angle bin and its count of obtuse pairs (N,)."""
    x = np.asarray(h)
    a = np.asarray(attn)
    if a.ndim == 4:
        a_shape = a.shape[:1] + a.shape[2:]
    elif a.ndim == 3:
        a_shape = a.shape
    else:
        raise ValueError(f"attention must be (N, H, T, T) or (N, T, T), got {a.shape}")
    if x.ndim != 3 or a_shape != (x.shape[0], x.shape[1], x.shape[1]):
        raise ValueError(f"h of shape {x.shape} does not match attention of shape {a.shape}")
    if bins < 1:
        raise ValueError(f"bins={bins}: need at least 1")
    n, t, _ = x.shape
    p = t - num_prefix_tokens
    if p < 2:
        raise ValueError(f"need at least 2 patch tokens, got T={t} with {num_prefix_tokens} prefix tokens")

    off_diag = ~np.eye(p, dtype=bool)
    thetas, attns = np.empty((n, p * (p - 1))), np.empty((n, p * (p - 1)))
    sums, counts, obtuse = np.zeros((n, bins)), np.zeros((n, bins)), np.zeros(n, dtype=np.int64)
    for i in range(n):  # one image at a time: no (N, T, T) temporaries
        v = x[i, num_prefix_tokens:].astype(np.float64)
        u = v / np.linalg.norm(v, axis=-1, keepdims=True)
        theta = np.degrees(np.arccos(np.clip(u @ u.T, -1.0, 1.0)))[off_diag]
        ai = a[i].astype(np.float64)
        if ai.ndim == 3:
            ai = ai.mean(axis=0)
        ai = ai[num_prefix_tokens:, num_prefix_tokens:][off_diag]
        idx = np.minimum((theta * (bins / 180.0)).astype(np.int64), bins - 1)
        sums[i] = np.bincount(idx, weights=ai, minlength=bins)
        counts[i] = np.bincount(idx, minlength=bins)
        obtuse[i] = np.count_nonzero(theta > 90.0)
        thetas[i], attns[i] = theta, ai
    return thetas, attns, sums, counts, obtuse


def _spearman_sample(n_images, per_image):
    """(image, pair) indices, in order, of the pairs Spearman's rho is computed on: all of the
    n_images * per_image pairs, or a sample of _MAX_SPEARMAN_PAIRS of them without replacement, by numpy
    default_rng(0), when there are more."""
    n_pairs = n_images * per_image
    keep = np.sort(np.random.default_rng(0).choice(n_pairs, _MAX_SPEARMAN_PAIRS, replace=False)) \
        if n_pairs > _MAX_SPEARMAN_PAIRS else np.arange(n_pairs)
    return np.divmod(keep, per_image)


def _stats_of_pairs(thetas, attns, sums, counts, obtuse, bins):
    """The dict of ``angle_attention_stats`` from ``_angle_pairs``."""
    n_pairs = thetas.size
    # The sampled pairs, read in place (no copy of the images' rows).
    image, pair = _spearman_sample(*thetas.shape)
    theta_s, attn_s = thetas[image, pair], attns[image, pair]
    # spearmanr warns and returns nan for a constant input; say so explicitly.
    if np.ptp(theta_s) == 0 or np.ptp(attn_s) == 0:
        rho = np.nan
    else:
        rho = float(scipy.stats.spearmanr(theta_s, attn_s).statistic)
    total, count = sums.sum(axis=0), counts.sum(axis=0)
    with np.errstate(invalid="ignore", divide="ignore"):
        by_angle = np.where(count > 0, total / count, np.nan)
    width = 180.0 / bins
    return {
        "spearman": rho,
        "share_obtuse": int(obtuse.sum()) / n_pairs,
        "bin_centres": width * (np.arange(bins) + 0.5),
        "attention_by_angle": by_angle,
        "n_pairs": int(n_pairs),
    }
