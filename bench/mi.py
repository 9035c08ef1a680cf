"""Benchmark: MI-vs-distance at the ImageNet-100 preset shape against scikit-learn.

Synthetic activations (float16 Gaussian random field per channel, cov exp(-d / 2) on
the grid) of shape (N, P, C) per block and sublayer. Times the mi stage's computation
(``mi_vs_distance`` with KSG, k = 3, 1 shuffle per pair, and ``excess_kurtosis`` of every
neuron, from float16 as the stage reads them) over every block and sublayer, and scikit-learn's
``mutual_info_regression(x[:, None], y, n_neighbors=3, random_state=0)`` pair by pair
(the same KSG estimator) on the same pairs and their shuffles for a subset of
channels of one block x sublayer, extrapolated to the whole.

    .venv/bin/python bench/mi.py                       # full preset
    .venv/bin/python bench/mi.py --blocks 1 --sublayers 1 --sklearn-channels 2
"""

import argparse
import time

import numba
import numpy as np
from sklearn.feature_selection import mutual_info_regression

from tgo.geometry import information as im
from tgo.io import usable_cpus


def field(n, rows, cols, n_channels, rng, length=2.0):
    r, c = np.divmod(np.arange(rows * cols), cols)
    dist = np.hypot(r[:, None] - r[None, :], c[:, None] - c[None, :])
    chol = np.linalg.cholesky(np.exp(-dist / length))
    z = rng.standard_normal((n, n_channels, rows * cols)).astype(np.float32)
    return np.ascontiguousarray((z @ chol.T.astype(np.float32)).transpose(0, 2, 1), dtype=np.float16)


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=1000)
    ap.add_argument("--grid", type=int, default=14)
    ap.add_argument("--channels", type=int, default=384)
    ap.add_argument("--sampled", type=int, default=64)
    ap.add_argument("--blocks", type=int, default=12)
    ap.add_argument("--sublayers", type=int, default=2)
    ap.add_argument("--sklearn-channels", type=int, default=4,
                    help="channels of block 0 / sublayer 0 timed with scikit-learn")
    a = ap.parse_args()

    rng = np.random.default_rng(0)
    chans = np.sort(rng.choice(a.channels, a.sampled, replace=False))
    acts = field(a.n, a.grid, a.grid, a.channels, rng)  # one array reused per block/sublayer
    n_units = a.blocks * a.sublayers
    ref = (a.grid // 2) * a.grid + a.grid // 2
    others = np.flatnonzero(np.arange(a.grid * a.grid) != ref)

    im.ksg_mi(acts[:, 0, 0], acts[:, 1, 0])  # compile the kernel (cached on disk after the first run)
    t0 = time.perf_counter()
    for _ in range(n_units):
        res = im.mi_vs_distance(acts, (a.grid, a.grid), chans, k=3, n_shuffles=1, seed=0)
        im.excess_kurtosis(acts.reshape(a.n, -1), axis=0)
    ours = time.perf_counter() - t0
    pairs_per_unit = a.sampled * others.size * 2

    # scikit-learn on the same pairs (and the same shuffled pairs) for a few channels.
    prng = np.random.default_rng(0)  # same permutation stream as mi_vs_distance(seed=0)
    sk, mine = [], []
    t0 = time.perf_counter()
    for c in chans[: a.sklearn_channels]:
        block = acts[:, :, c].astype(np.float64)
        x, y = block[:, ref], block[:, others].T
        perms = prng.permuted(np.broadcast_to(np.arange(a.n), y.shape), axis=1)
        y_shuf = np.take_along_axis(y, perms, axis=1)
        for yy in np.concatenate([y, y_shuf]):
            sk.append(mutual_info_regression(x[:, None], yy, n_neighbors=3, random_state=0)[0])
        mine.append(np.concatenate([y, y_shuf]))
    sk_time = time.perf_counter() - t0
    sk_pairs = len(sk)
    sk_total = sk_time / sk_pairs * pairs_per_unit * n_units

    ours_sub = np.concatenate([im.ksg_mi_batch(acts[:, ref, c].astype(np.float64), m)
                               for c, m in zip(chans, mine)])
    sk = np.asarray(sk)
    pos = ours_sub > 0  # scikit-learn clips at 0; compare where ours is positive
    print(f"shape: N={a.n} grid={a.grid}x{a.grid} channels={a.channels} sampled={a.sampled} "
          f"blocks={a.blocks} sublayers={a.sublayers} ({pairs_per_unit * n_units} KSG pairs incl. shuffles); "
          f"{usable_cpus()} CPU cores, {numba.get_num_threads()} kernel threads")
    print(f"ours   : mi stage (MI vs distance + kurtosis), all {n_units} block x sublayer: {ours:.1f} s "
          f"({ours / (pairs_per_unit * n_units) * 1e6:.0f} us/pair)")
    print(f"sklearn: {sk_pairs} pairs (block 0, sublayer 0, {a.sklearn_channels} channels, incl. shuffles) "
          f"in {sk_time:.1f} s -> extrapolated {sk_total:.1f} s for the whole")
    print(f"speed-up: {sk_total / ours:.1f}x")
    print(f"max |ours - sklearn| where ours > 0 ({pos.sum()}/{pos.size} pairs): "
          f"{np.abs(ours_sub[pos] - sk[pos]).max():.2e}; where ours <= 0 sklearn gives "
          f"{sk[~pos].max() if (~pos).any() else float('nan'):.2e} (clipped)")
    print("MI(d) last unit:", dict(zip(res["distances"].tolist(), np.round(res["mi"], 4).tolist())))


if __name__ == "__main__":
    main()
