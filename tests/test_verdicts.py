"""The report's seed-002 verdicts follow the numbers: rows built from analytic MI profiles and from
tgo.geometry.qk.decompose on weights whose structure is known, with the claims made true or false."""
import numpy as np
import pytest

from tgo.geometry import qk
from tgo.report import mi_verdicts, qk_verdicts

BLOCKS = 6


def mi_rows(amplitude, length):
    """MI(d) = amplitude[b] * exp(-d / length[b]) per block, both sublayers, at epochs 0 and 8."""
    return [{"epoch": e, "sublayer": sub, "block": b + 1, "distance": d,
             "mi": (1.0 if e == 8 else 0.5) * amplitude[b] * np.exp(-d / length[b])}
            for e in (0, 8) for sub in ("attn", "mlp") for b in range(BLOCKS) for d in range(1, 7)]


def verdicts(fn, *rows):
    return {v["claim"]: v["verdict"] for v in fn(*rows)}


def test_mi_falls_faster_later_and_first_block_lowest():
    rows = mi_rows(amplitude=[0.2, 0.5, 0.6, 0.7, 0.8, 2.0], length=[6, 5, 4, 3, 2, 1])
    v = verdicts(mi_verdicts, rows)
    assert v["MI falls with distance, and falls faster in later blocks"] == "observed"
    assert v["the first block has the lowest MI"] == "observed"


def test_mi_falls_slower_later_and_first_block_highest():
    rows = mi_rows(amplitude=[5.0, 0.5, 0.6, 0.7, 0.8, 0.4], length=[1, 2, 3, 4, 5, 6])
    v = verdicts(mi_verdicts, rows)
    assert v["MI falls with distance, and falls faster in later blocks"] == "partly observed"
    assert v["the first block has the lowest MI"] == "not observed"


def test_mi_that_rises_with_distance_is_not_observed():
    rows = mi_rows(amplitude=[0.1] * BLOCKS, length=[-3.0] * BLOCKS)
    v = verdicts(mi_verdicts, rows)
    assert v["MI falls with distance, and falls faster in later blocks"] == "not observed"


def head_rows(kind, dim=24, d_head=4, heads=3):
    """Heads-together rows from decompose: kind 'sym' (W_K = W_Q: M = W W^T, positive semidefinite,
    no antisymmetric part) or 'skew' (W_K = W_Q J with J a 90-degree rotation in pairs of columns:
    M = W J W^T is antisymmetric, and its singular values come in equal pairs)."""
    rng = np.random.default_rng(0)
    rows = []
    for b in range(1, BLOCKS + 1):
        w_q = rng.standard_normal((heads, dim, d_head))
        if kind == "sym":
            w_k = w_q.copy()
        else:
            j = np.kron(np.eye(d_head // 2), np.array([[0.0, 1.0], [-1.0, 0.0]]))
            w_k = w_q @ j
        rows.append({"epoch": 8, "block": b, "head": "all", **qk.heads_together(w_q, w_k)})
    return rows


def angle_rows(spearman, share_obtuse):
    return [{"epoch": 8, "block": b + 1, "spearman": s, "share_obtuse": o}
            for b, (s, o) in enumerate(zip(spearman, share_obtuse))]


def test_qk_symmetric_positive_weights():
    heads = head_rows("sym")
    assert all(r["asym_sym_ratio"] == pytest.approx(0.0, abs=1e-12) for r in heads)
    v = verdicts(qk_verdicts, heads, angle_rows([-0.3, -0.2, -0.1, 0.1, 0.2, 0.3], [0.2] * BLOCKS))
    assert v["M_sym is largely positive definite in every block"] == "observed"
    assert v["in later blocks most angles exceed 90° and the antisymmetric part outweighs the symmetric"] \
        == "not observed"
    assert v["early blocks attend more to similar patches, late blocks to dissimilar ones"] == "observed"


def test_qk_antisymmetric_weights_and_obtuse_angles():
    heads = head_rows("skew")
    assert all(r["asym_sym_ratio"] > 1e6 or not np.isfinite(r["asym_sym_ratio"]) for r in heads)
    v = verdicts(qk_verdicts, heads, angle_rows([0.3, 0.2, 0.1, -0.1, -0.2, -0.3], [0.2, 0.3, 0.4, 0.6, 0.7, 0.8]))
    assert v["in later blocks most angles exceed 90° and the antisymmetric part outweighs the symmetric"] \
        == "observed"
    assert v["early blocks attend more to similar patches, late blocks to dissimilar ones"] == "not observed"
    # 12 singular values in equal pairs: the top tenth (one of them) carries less than half.
    assert v["the last block's QK singular values are dominated by a few"] == "not observed"


def test_one_negative_first_block_is_not_enough_for_early_blocks():
    # Block 1 alone below zero while the early half on average is positive: not observed.
    v = verdicts(qk_verdicts, head_rows("sym"), angle_rows([-0.01, 0.29, 0.25, 0.2, 0.25, 0.22], [0.1] * BLOCKS))
    assert v["early blocks attend more to similar patches, late blocks to dissimilar ones"] == "not observed"


def test_rank_one_qk_is_dominated_by_a_few():
    rng = np.random.default_rng(1)
    u, w = rng.standard_normal((1, 24, 1)), rng.standard_normal((1, 24, 1))
    rank_one = {"epoch": 8, "block": BLOCKS, "head": "all", **qk.heads_together(np.tile(u, (1, 1, 4)),
                                                                               np.tile(w, (1, 1, 4)))}
    heads = head_rows("sym")[:-1] + [rank_one]
    v = verdicts(qk_verdicts, heads, angle_rows([0.0] * BLOCKS, [0.0] * BLOCKS))
    assert rank_one["sv_top_share"] == pytest.approx(1.0)
    assert v["the last block's QK singular values are dominated by a few"] == "observed"
