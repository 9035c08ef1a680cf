"""Benchmark tgo.geometry.tokens.alpha_signatures against a per-token PCA loop.

The baseline is the straightforward loop of alpha-ReQ's reference code (Agrawal et al.
2022): scikit-learn PCA().fit(X) on float64 X for every (block, token), alpha from
``explained_variance_`` with the same weighted fit (``spectral.alpha``). The full
baseline takes minutes, so it is timed on the first --baseline-blocks blocks (all
tokens) and scaled by the number of blocks; both are measured in the same run.

Default shape: the ImageNet-100 preset, 12 blocks x 197 tokens x 384 dims, N=1000
probe images, float16 synthetic activations with a power-law covariance.

    python bench/alpha_signatures.py                       # full preset shape
    python bench/alpha_signatures.py --blocks 2 --tokens 20 --dim 64 --n 300   # quick
"""

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from sklearn.decomposition import PCA  # imported here so the import is not timed

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tgo.geometry import spectral  # noqa: E402
from tgo.geometry.tokens import alpha_signatures  # noqa: E402
from tgo.io import usable_cpus  # noqa: E402


def synthetic_acts(blocks, n, tokens, dim, seed=0):
    """float16 (blocks, n, tokens, dim): token t of block b has covariance eigenvalues
    ~ k^-alpha_{b,t} (alpha in [0.8, 2.0]) in a random basis shared by the block."""
    rng = np.random.default_rng(seed)
    k = np.arange(1, dim + 1, dtype=np.float32)
    alpha = rng.uniform(0.8, 2.0, (blocks, tokens)).astype(np.float32)
    acts = np.empty((blocks, n, tokens, dim), dtype=np.float16)
    for b in range(blocks):
        q, _ = np.linalg.qr(rng.standard_normal((dim, dim)))
        z = rng.standard_normal((n, tokens, dim), dtype=np.float32)
        z *= k ** (-alpha[b][None, :, None] / 2)
        acts[b] = (z.reshape(-1, dim) @ q.astype(np.float32)).reshape(n, tokens, dim)
    return acts


def baseline(acts, ranks, blocks):
    """alpha per (block, token) via sklearn PCA().fit on float64 X, one token at a time."""
    out = np.empty((blocks, acts.shape[2]))
    for b in range(blocks):
        for t in range(acts.shape[2]):
            pca = PCA().fit(acts[b, :, t, :].astype(np.float64))
            out[b, t] = spectral.alpha(pca.explained_variance_, ranks)[0]
    return out


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--blocks", type=int, default=12)
    ap.add_argument("--tokens", type=int, default=197)
    ap.add_argument("--dim", type=int, default=384)
    ap.add_argument("--n", type=int, default=1000, help="number of images")
    ap.add_argument("--ranks", type=int, nargs=2, default=(11, 100))
    ap.add_argument("--baseline-blocks", type=int, default=1,
                    help="blocks (all tokens each) on which the baseline is timed, then extrapolated")
    ap.add_argument("--memmap", action="store_true",
                    help="pass the activations as a float16 .npy memmap (as the tokens stage does)")
    args = ap.parse_args()
    ranks = tuple(args.ranks)
    sub = min(args.baseline_blocks, args.blocks)

    reason = spectral.alpha_window_error(ranks, args.n, args.dim)
    if reason:
        sys.exit(f"alpha is undefined for this shape: {reason}")

    t0 = time.perf_counter()
    acts = synthetic_acts(args.blocks, args.n, args.tokens, args.dim)
    gen_s = time.perf_counter() - t0
    tmp = None
    if args.memmap:
        tmp = tempfile.TemporaryDirectory()
        path = Path(tmp.name) / "residual.npy"
        np.save(path, acts)
        acts = np.load(path, mmap_mode="r")

    cpus = usable_cpus()
    print(f"shape (blocks, N, tokens, D) = {acts.shape}, {acts.dtype}"
          f"{' memmap' if args.memmap else ''}, ranks {ranks}, {cpus} CPUs; data generated in {gen_s:.1f} s")

    t0 = time.perf_counter()
    alphas, r2 = alpha_signatures(acts, ranks)
    ours_s = time.perf_counter() - t0
    print(f"alpha_signatures (all {args.blocks} blocks x {args.tokens} tokens): {ours_s:.2f} s "
          f"({1e3 * ours_s / (args.blocks * args.tokens):.2f} ms/token); "
          f"alpha range [{np.nanmin(alphas):.3f}, {np.nanmax(alphas):.3f}], min r2 {np.nanmin(r2):.4f}")

    baseline(acts[:1, :, :1], ranks, 1)  # warm-up, untimed (first-call overheads)
    t0 = time.perf_counter()
    base = baseline(acts, ranks, sub)
    sub_s = time.perf_counter() - t0
    base_s = sub_s * args.blocks / sub
    print(f"baseline sklearn PCA loop: measured {sub_s:.2f} s on a subset of {sub} block(s) x "
          f"{args.tokens} tokens ({1e3 * sub_s / (sub * args.tokens):.2f} ms/token); "
          f"EXTRAPOLATED to all {args.blocks} blocks: {base_s:.1f} s")
    diff = np.max(np.abs(base - alphas[:sub]))
    print(f"max |alpha_ours - alpha_baseline| on the subset: {diff:.2e}")
    ratio = base_s / ours_s
    print(f"speed-up (extrapolated baseline / ours): {ratio:.1f}x "
          f"[{'OK' if ratio >= 5 else 'BELOW'} the 5x target; ours {'within' if ours_s <= 60 else 'OVER'} 60 s]")
    if tmp is not None:
        del acts
        tmp.cleanup()


if __name__ == "__main__":
    main()
