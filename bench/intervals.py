"""Benchmark the spectral stage's work with confidence intervals against the same work without.

Both are measured in the same run on the same synthetic activations: for every site (the
embedding, each block, the final norm) and sample set (CLS, patches pooled over images, patch mean
per image), `spectral.spectral_metrics` (without intervals) against
`spectral.jackknife_spectral_metrics` plus `stats.interval` for every headline metric (with: the
G leave-a-group-out replicates from one pass over the data, rows of one image left out together).
The goal is a ratio of at most 3x. The jackknife path passes over the rows once (the groups'
scatter pieces give the full covariance, the replicates and RankMe's uncentred scatter), where
spectral_metrics passes twice (the covariance, then RankMe's Gram matrix), so the G + 1 small
eigenvalue problems are most of what the intervals add.

Default shape: the ImageNet-100 preset, 1000 probe images x 197 tokens (CLS + 14x14 patches) x 384
dims, 12 blocks (14 sites), 20 groups; float16 tokens with a power-law covariance. Every site gets
the same array (the cost does not depend on the values), which keeps memory to one site's tokens.

    python bench/intervals.py                               # the preset's shape
    python bench/intervals.py --sites 2 --n 300 --dim 64    # quick
"""
import argparse
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tgo.activations import image_of_rows, sample_sets  # noqa: E402
from tgo.geometry import spectral, stats  # noqa: E402
from tgo.io import usable_cpus  # noqa: E402
from tgo.runs import HEADLINE_METRICS  # noqa: E402



def synthetic_tokens(n, tokens, dim, seed=0):
    """float16 (n, tokens, dim) with covariance eigenvalues ~ k^-1 in a random basis."""
    rng = np.random.default_rng(seed)
    q, _ = np.linalg.qr(rng.standard_normal((dim, dim)))
    z = rng.standard_normal((n * tokens, dim), dtype=np.float32) * np.arange(1, dim + 1, dtype=np.float32) ** -0.5
    return (z @ q.astype(np.float32)).astype(np.float16).reshape(n, tokens, dim)


def without_intervals(sets, ranks):
    return {name: spectral.spectral_metrics(X, ranks) for name, X in sets.items()}


def with_intervals(sets, groups, n, ranks):
    out = {}
    for name, X in sets.items():
        m, reps = spectral.jackknife_spectral_metrics(X, groups[image_of_rows(X, n)], ranks)
        out[name] = {k: (m[k], *stats.interval(m[k], reps[k])) for k in HEADLINE_METRICS}
    return out


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sites", type=int, default=14, help="embedding + 12 blocks + final norm")
    ap.add_argument("--n", type=int, default=1000, help="probe images")
    ap.add_argument("--tokens", type=int, default=197, help="CLS + patches")
    ap.add_argument("--dim", type=int, default=384)
    ap.add_argument("--groups", type=int, default=20)
    ap.add_argument("--ranks", type=int, nargs=2, default=(11, 100))
    args = ap.parse_args()
    ranks = tuple(args.ranks)

    t0 = time.perf_counter()
    tokens = synthetic_tokens(args.n, args.tokens, args.dim)
    layout = {"prefix_tokens": ["cls"], "head_input": None}
    groups = stats.image_groups(args.n, args.groups)
    cpus = usable_cpus()
    print(f"{args.sites} sites x tokens (N, T, D) = {tokens.shape} float16, sample sets cls / patches "
          f"({args.n * (args.tokens - 1)} rows) / patch_mean, {args.groups} groups, {cpus} CPUs; "
          f"data generated in {time.perf_counter() - t0:.1f} s")

    with_intervals(sample_sets(tokens[:50], layout), groups[:50] % 5, 50, (2, 10))  # warm-up, untimed
    times = {"without": 0.0, "with": 0.0}
    for site in range(args.sites):
        sets = sample_sets(tokens, layout)  # as the stage does, once per site for both
        t0 = time.perf_counter()
        plain = without_intervals(sets, ranks)
        times["without"] += time.perf_counter() - t0
        t0 = time.perf_counter()
        ci = with_intervals(sets, groups, args.n, ranks)
        times["with"] += time.perf_counter() - t0
        if site == 0:
            for name in sets:
                est, low, high = ci[name]["effective_rank"]
                assert np.isclose(est, plain[name]["effective_rank"])
                print(f"  {name}: effective rank {est:.3f} [{low:.3f}, {high:.3f}], "
                      f"alpha {ci[name]['alpha'][0]:.3f} [{ci[name]['alpha'][1]:.3f}, {ci[name]['alpha'][2]:.3f}]")
    ratio = times["with"] / times["without"]
    print(f"without intervals: {times['without']:.1f} s; with intervals: {times['with']:.1f} s")
    print(f"ratio with / without: {ratio:.2f}x [{'OK' if ratio <= 3 else 'ABOVE'} the 3x goal]")


if __name__ == "__main__":
    main()
