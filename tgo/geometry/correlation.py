"""Inter-token correlation: how much the token vectors of one image overlap.

Source: "On the Information Geometry of Vision Transformers", NeurReps
workshop 2023, which aggregates the correlation between pairs of tokens at each block
as a sequence-level complexity measure (higher mean correlation = more overlap between
token representations).
"""

import numpy as np

# Images per float64 batch: bounds the temporary copies for large (N, T, D) inputs.
_BATCH_BYTES = 64 * 2**20


def _image_batch(X, sets):
    """{name: (mean r, mean |r|)} over token pairs i<j within each token set (indices) for float64
    X of shape (n, T, D): one Gram matrix of all tokens serves every set as a submatrix."""
    # Subtracting the first feature before the mean makes a constant token exactly zero,
    # so zero variance is detected exactly rather than as round-off noise.
    shifted = X - X[..., :1]
    Z = shifted - shifted.mean(axis=-1, keepdims=True)
    norms = np.sqrt(np.einsum("ntd,ntd->nt", Z, Z))
    valid = norms > 0
    # Zero-variance tokens become zero rows: they add nothing to the sums below.
    U = Z / np.where(valid, norms, 1.0)[..., None]
    G_all = U @ np.swapaxes(U, -1, -2)  # (n, T, T) Pearson matrix on valid tokens
    out = {}
    for name, idx in sets.items():
        G = G_all if idx is None else G_all[:, idx][:, :, idx]
        diag = np.einsum("ntt->nt", G)
        m = (valid if idx is None else valid[:, idx]).sum(axis=-1)
        pairs = m * (m - 1) / 2
        # G is symmetric: the upper triangle is (sum of all entries - diagonal) / 2.
        sum_r = (G.sum(axis=(-1, -2)) - diag.sum(axis=-1)) / 2
        sum_abs = (np.abs(G).sum(axis=(-1, -2)) - np.abs(diag).sum(axis=-1)) / 2
        with np.errstate(invalid="ignore", divide="ignore"):
            out[name] = (np.where(pairs > 0, sum_r / pairs, np.nan), np.where(pairs > 0, sum_abs / pairs, np.nan))
    return out


def _token_indices(v, t):
    """A token set as indices; a boolean mask over the t tokens means its True tokens, as numpy's indexing
    reads it (not the indices 0 and 1 that an integer cast would make of it)."""
    v = np.asarray(v)
    if v.dtype != bool:
        return v.astype(np.intp)
    if v.shape != (t,):
        raise ValueError(f"a boolean token set must mask the {t} tokens, got shape {v.shape}")
    return np.flatnonzero(v)


def intertoken_correlation(tokens, token_sets=None, remove=None):
    """Mean Pearson correlation between the token vectors of an image.

    For one image with tokens x_1..x_T in R^D, centre each token over its D features,
    z_i = x_i - mean_d(x_i), and take r_ij = <z_i, z_j> / (|z_i| |z_j|) (the Pearson
    correlation of tokens i and j across features, as ``np.corrcoef`` of the T x D
    matrix). Reports
        mean_r     = (2 / (m (m - 1))) sum_{i<j} r_ij,
        mean_abs_r = (2 / (m (m - 1))) sum_{i<j} |r_ij|.
    A token with zero variance over its features has no defined correlation: every pair
    involving it is excluded and m counts the remaining tokens; nan if m < 2.

    tokens: one image (T, D) -> two floats, or a batch (N, T, D) -> two float64 arrays
    of shape (N,). Computed in float64 with one batched Gram matrix of unit-norm centred
    tokens per image batch. token_sets {name: token indices, or a boolean mask over the T tokens}
    gives {name: (mean_r, mean_abs_r)}
    of each subset of tokens instead, each equal to intertoken_correlation(tokens[..., idx, :]),
    from the same Gram matrix (a token's centring and norm do not depend on the other tokens).

    remove: a D-vector m subtracted from every token before it is centred, r_ij of x_i - m and
    x_j - m (in float64, batch by batch). Why: a component shared by every token of every image
    (a constant offset, or a few large dimensions every token has) makes every pair correlate, so
    the raw mean r mostly measures that component. With m the probe set's mean token, the
    correlation is that of what differs between tokens: for tokens s v + e (e independent,
    variance sigma^2 per feature, v centred over its features) the raw r_ij is about
    s^2 |v|^2 / (s^2 |v|^2 + sigma^2 (D - 1)), with the mean token removed about 0.

    Source: "On the Information Geometry of Vision Transformers" (NeurReps
    2023); averaged over images and reported per block by the correlation stage.
    """
    X = np.asarray(tokens)
    if X.ndim not in (2, 3) or X.shape[-2] < 1 or X.shape[-1] < 1:
        raise ValueError(f"expected tokens of shape (T, D) or (N, T, D), got {X.shape}")
    single = X.ndim == 2
    if single:
        X = X[None]
    n, t, d = X.shape
    sets = {None: None} if token_sets is None else {k: _token_indices(v, t) for k, v in token_sets.items()}
    if remove is not None:
        remove = np.asarray(remove, dtype=np.float64)
        if remove.shape != (d,) or not np.all(np.isfinite(remove)):
            raise ValueError(f"remove must be a finite vector of the {d} features, got shape {remove.shape}")
    step = max(1, _BATCH_BYTES // (t * max(t, d) * 8))
    out = {k: (np.empty(n), np.empty(n)) for k in sets}
    for s in range(0, n, step):
        batch = X[s:s + step].astype(np.float64)
        if not np.all(np.isfinite(batch)):
            raise ValueError(f"tokens has non-finite values (images {s}..{s + len(batch) - 1})")
        if remove is not None:
            batch -= remove  # in place: astype made this batch's own float64 copy
        for k, (r, a) in _image_batch(batch, sets).items():
            out[k][0][s:s + step], out[k][1][s:s + step] = r, a
    if single:
        out = {k: (float(r[0]), float(a[0])) for k, (r, a) in out.items()}
    return out[None] if token_sets is None else out
