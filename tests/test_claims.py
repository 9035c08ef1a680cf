"""Every claim of the registry on planted data whose answer is known: rows and replicates built as the
stages build them (power-law spectra that flatten or not, token clusters, tokens with a shared
component of known strength, MI profiles, QK weights with known structure, angle statistics), at
an untrained checkpoint (epoch 0) and a trained one (epoch 8). For each claim:

- the effect planted at epoch 8 only: observed, credited to training;
- the effect planted at both epochs: observed, already in the untrained network;
- no effect at either (chance): not observed or inconclusive, credited to nothing.

Claims about change over training are planted along the schedule instead (rising, falling, flat,
rising with a step back, identical checkpoints).
"""
import numpy as np
import pytest

from tgo import claims
from tgo.claims import core, table
from tgo.geometry import qk
from tgo.geometry import spectral as sp
from tgo.geometry import stats
from tgo.geometry.information import mi_decay_rate
from tgo.geometry.correlation import intertoken_correlation
from tgo.geometry.tokens import jackknife_alpha_signatures, spatial_coherence
from tgo.runs import ROWS, STAGES

BLOCKS = 6
SITES = ["embed"] + [f"block_{b}" for b in range(1, BLOCKS + 1)] + ["final_norm"]
INIT, TRAINED = 0, 8


def results(**rows):
    """A run's results with only the given rows (every claim without its rows is not computable)."""
    out = {key: [] for key in ROWS}
    out.update(train={}, metrics={stage: {} for stage in STAGES}, layout={}, tokens_used={})
    for key, value in rows.items():
        out[key] = value
    return out


def record(res, claim_id, level=0.95):
    return next(v for v in claims.judge(res, level) if v["id"] == claim_id)


# --- Spectra (TGO-I) ---------------------------------------------------------------------------------

N_IMAGES, DIM, SETS = 200, 32, ("cls", "patch_mean")
SPECTRAL_KEYS = ("effective_rank", "participation_ratio", "spectral_entropy", "spectral_flatness", "anisotropy")


def spectral(exponent, epochs=(INIT, 4, TRAINED), same_at_every_checkpoint=False):
    """spectral_rows and spectral_replicates for exponent(epoch, site): tokens with the power-law
    spectrum k^-exponent over N images drawn once (the probe set is fixed), plus noise drawn per
    checkpoint, site and set (or once, so that every checkpoint is the same); the smaller the
    exponent, the flatter the spectrum (higher effective rank, participation ratio, entropy and
    flatness, lower anisotropy)."""
    rng = np.random.default_rng(0)
    images = rng.standard_normal((N_IMAGES, DIM))
    noise = {(s, x): rng.standard_normal(images.shape) for s in SITES for x in SETS}
    groups = stats.image_groups(N_IMAGES)
    k = np.arange(1, DIM + 1, dtype=float)
    rows, reps = [], []
    for e in epochs:
        for site in SITES:
            for sset in SETS:
                fresh = noise[site, sset] if same_at_every_checkpoint else rng.standard_normal(images.shape)
                X = (0.8 * images + 0.6 * fresh) * k ** (-exponent(e, site) / 2)
                m, r = sp.jackknife_spectral_metrics(X, groups, (3, 20), None)
                at = {"epoch": e, "site": site, "depth": SITES.index(site), "sample_set": sset}
                rows.append({**at, **{key: m[key] for key in SPECTRAL_KEYS}})
                reps += [{**at, "group": g, **{key: r[key][g] for key in SPECTRAL_KEYS}}
                         for g in range(len(r["anisotropy"]))]
    return results(spectral_rows=rows, spectral_replicates=reps)


TRENDS = [c.id for c in claims.REGISTRY.values() if c.over_training]


def trend_labels(res):
    return {v["id"]: (v["verdict"], v["origin"]) for v in claims.judge(res) if v["id"] in TRENDS}


def test_spectra_that_flatten_over_training_are_observed_and_credited_to_training():
    out = trend_labels(spectral(lambda e, s: 2.0 - e / 8))
    assert out == {c: ("observed", "training") for c in TRENDS}


def test_spectra_that_sharpen_are_not_observed():
    assert {v for v, _ in trend_labels(spectral(lambda e, s: 1.0 + e / 8)).values()} == {"not observed"}


def test_flat_spectra_are_inconclusive():
    out = trend_labels(spectral(lambda e, s: 1.5))
    assert set(out.values()) == {("inconclusive", None)}


def test_identical_checkpoints_credit_nothing_to_training():
    """A run whose training changed nothing (train.lr=1e-12): every checkpoint the same numbers."""
    res = spectral(lambda e, s: 1.0 if s == "block_6" else 1.5, same_at_every_checkpoint=True)
    records = claims.judge(res)
    assert not [v["id"] for v in records if v["origin"] == "training"]
    assert all(v["verdict"] != "observed" for v in records if v["id"] in TRENDS)
    final = next(v for v in records if v["id"] == "tgo1.final_cls_max_erank")
    assert final["verdict"] == "observed" and final["origin"] == "initialisation" and final["effect"] == 0


def test_a_rise_with_a_step_back_is_not_a_consistent_rise():
    """Flatter at epoch 4, sharper again at 8 but still flatter than at 0: the slope over the
    schedule is positive, but one step surely falls, so no pair counts as rising."""
    out = trend_labels(spectral(lambda e, s: {INIT: 2.0, 4: 0.6, TRAINED: 1.2}[e]))
    assert {v for v, _ in out.values()} <= {"not observed", "inconclusive"}
    assert out["tgo1.erank_rises"][1] is None


def test_one_checkpoint_is_not_applicable_for_training_claims():
    res = spectral(lambda e, s: 1.5, epochs=(0,))
    res["train"] = {"weights": "some.safetensors"}
    records = {v["id"]: v for v in claims.judge(res)}
    for c in TRENDS:
        assert records[c]["verdict"] == claims.NOT_APPLICABLE
        assert claims.in_words(records[c]) == "not applicable: one checkpoint"
    # Pretrained weights without their untrained network: the comparison is missing, not faked.
    assert records["tgo1.final_cls_max_erank"]["init_verdict"] == "not computable"
    assert records["tgo1.final_cls_max_erank"]["origin"] is None


def final_cls_case(at_init, trained):
    def exponent(e, site):
        return 0.6 if site == "block_6" and (trained if e == TRAINED else at_init) else 1.5
    return spectral(exponent, epochs=(INIT, TRAINED))


def test_final_cls_compares_residual_stream_blocks_only():
    """A flatter final norm (a LayerNorm output) does not make the final CLS the flattest: only the
    blocks of the residual stream are compared."""
    res = spectral(lambda e, s: 0.5 if s == "final_norm" else 1.5, epochs=(INIT, TRAINED))
    assert record(res, "tgo1.final_cls_max_erank")["verdict"] == "inconclusive"


def exact_final_rows(values, se, head="cls", final_norm=None):
    """spectral rows at the trained checkpoint, block b's values[b - 1] (every metric alike) in the head's
    sample set (and in reverse order in patch_mean), with 20 replicates per block: the last block's
    -+ k alternately, the others' constant, so each margin has jackknife standard error exactly se."""
    k, last = se / np.sqrt(19), len(values)
    sites = {f"block_{b}": (b, v) for b, v in enumerate(values, 1)}
    if final_norm is not None:
        sites["final_norm"] = (last + 1, final_norm)
    rows, reps = [], []
    for sset in (head, "patch_mean"):
        for site, (depth, v) in sites.items():
            v = v if sset == head or depth > last else values[last - depth]
            at = {"epoch": TRAINED, "site": site, "depth": depth, "sample_set": sset}
            rows.append({**at, **{key: v for key in SPECTRAL_KEYS}})
            reps += [{**at, "group": g, **{key: v + (k if g % 2 else -k) * (depth == last) for key in SPECTRAL_KEYS}}
                     for g in range(20)]
    return results(spectral_rows=rows, spectral_replicates=reps)


def final_margin_ci(margin, blocks, se=0.1):
    half = stats.student_t.ppf(1 - 0.05 / (2 * (blocks - 1)), 19) * se
    return f"[{margin - half:.3g}, {margin + half:.3g}]"


@pytest.mark.parametrize("head, stand_in", [("cls", ""), ("pooled", " (no class token: the head's input stands in for CLS)")])
def test_final_cls_compares_the_last_block_with_every_earlier_block_in_depth_order(head, stand_in):
    """12 blocks (block_12 after block_9, not between block_1 and block_2): the last block against each
    earlier one at 1 - 0.05/11, decided by the nearest; the head's sample set, not patch_mean's; a
    model without a class token says that its head's input stands in."""
    values = [float(b) for b in range(1, 12)]
    higher = record(exact_final_rows(values + [11.5], 0.1, head, final_norm=3.0), "tgo1.final_cls_max_erank")
    assert (higher["verdict"], higher["value"]) == ("observed", pytest.approx(0.5))
    all_blocks = ", ".join(f"block_{b} {b}" for b in range(1, 12))
    assert higher["evidence"] == (
        f"epoch 8{stand_in}: block_12 11.5; deciding block_11, margin +0.5 {final_margin_ci(0.5, 12)}; surely beaten at "
        f"11/11 blocks, surely beating it at 0 (0.9955 intervals each); all: {all_blocks}, block_12 11.5; final "
        f"norm (LayerNorm output, not compared) 3")
    values[-1] = 12.5
    lower = record(exact_final_rows(values + [12.0], 0.1, head), "tgo1.final_cls_max_erank")
    assert (lower["verdict"], lower["value"]) == ("not observed", pytest.approx(-0.5))
    assert "surely beaten at 10/11 blocks, surely beating it at 1 (" in lower["evidence"]
    assert lower["evidence"].endswith("; final norm (LayerNorm output, not compared) nan")


def test_final_cls_needs_two_blocks():
    two = record(exact_final_rows([1.0, 2.0], 0.1), "tgo1.final_cls_max_erank")
    assert two["verdict"] == "observed" and two["evidence"].startswith(
        f"epoch 8: block_2 2; deciding block_1, margin +1 {final_margin_ci(1.0, 2)}; surely beaten at 1/1 blocks")
    one = record(exact_final_rows([1.0], 0.1, "pooled"), "tgo1.final_cls_max_erank")
    assert (one["verdict"], one["evidence"]) == ("not computable", "1 block(s) with a value (no class token: the "
                                                                   "head's input stands in for CLS)")


# --- Tokens and correlation (information geometry) ---------------------------------------------------

def token_rows(exponents, epoch, n=150, tokens=4, dim=48, seed=0):
    """(depth rows, replicates) of the tokens stage at one checkpoint: per block, `tokens` patch
    tokens whose covariance over n images is the power law k^-exponents[b]."""
    rng = np.random.default_rng(seed)
    k = np.arange(1, dim + 1, dtype=float)
    images = rng.standard_normal((n, tokens, dim))
    acts = np.stack([(0.8 * images + 0.6 * rng.standard_normal(images.shape)) * k ** (-a / 2) for a in exponents])
    alphas, _, reps = jackknife_alpha_signatures(acts, stats.image_groups(n), (3, 30))
    rows = [{"epoch": epoch, "site": f"block_{b + 1}", "depth": b + 1, "patch_alpha_mean": alphas[b].mean()}
            for b in range(len(exponents))]
    rep_rows = [{**{k: r[k] for k in ("epoch", "site", "depth")}, "group": g, "patch_alpha_mean": reps[g, b].mean()}
                for b, r in enumerate(rows) for g in range(len(reps))]
    return rows, rep_rows


def alpha_case(at_init, trained):
    falling, flat = [2.0, 1.8, 1.6, 1.4, 1.2, 1.0], [1.5] * BLOCKS
    a = token_rows(falling if at_init else flat, INIT, seed=1)
    b = token_rows(falling if trained else flat, TRAINED, seed=2)
    return results(token_depth=a[0] + b[0], token_replicates=a[1] + b[1])


QUADRANTS = ((np.arange(8)[:, None] // 4) * 2 + np.arange(8)[None, :] // 4).ravel()  # four 4x4 blocks


def coherence_case(at_init, trained):
    scattered = np.random.default_rng(0).permutation(QUADRANTS)
    return results(coherence=[{"epoch": e, **spatial_coherence(QUADRANTS if on else scattered, (8, 8), 500, seed=0)}
                              for e, on in ((INIT, at_init), (TRAINED, trained))])


def correlation_rows(shared, epoch, n=40, seed=0):
    """Per block, tokens = shared[b] * (one random direction per image) + unit noise: the mean
    inter-token correlation is about shared^2 / (shared^2 + 1)."""
    rng = np.random.default_rng(seed)
    groups = stats.image_groups(n)
    rows, reps = [], []
    for b, s in enumerate(shared):
        r, _ = intertoken_correlation(s * rng.standard_normal((n, 1, 32)) + rng.standard_normal((n, 10, 32)))
        at = {"epoch": epoch, "site": f"block_{b + 1}", "depth": b + 1, "tokens": "patches"}
        rows.append({**at, "mean_r": r.mean()})
        reps += [{**at, "group": g, "mean_r": v} for g, v in enumerate(stats.mean_replicates(r, groups))]
    return rows, reps


U, FLAT = [2.0, 1.0, 0.3, 0.3, 1.0, 2.0], [1.0] * BLOCKS


def u_case(at_init, trained):
    a = correlation_rows(U if at_init else FLAT, INIT, seed=1)
    b = correlation_rows(U if trained else FLAT, TRAINED, seed=2)
    return results(correlation=a[0] + b[0], correlation_replicates=a[1] + b[1])


def test_u_shape_pays_for_choosing_its_interior_block():
    """Monotone correlation is surely not U-shaped; a dip in one interior block of a flat profile
    that a single comparison would call significant is not enough after the correction."""
    rows, reps = correlation_rows([2.0, 1.5, 1.0, 0.7, 0.5, 0.3], TRAINED)
    assert record(results(correlation=rows, correlation_replicates=reps), "info_geom.u_shape")["verdict"] == \
        "not observed"


def test_u_shape_corrects_for_choosing_the_interior_block():
    """One interior block 2.8 standard errors below both ends: a single paired comparison at 95%
    (t_19 = 2.09) would call it surely lower; with the level shared by every interior block and
    both ends (2 x 4 comparisons: t_19 at 1 - 0.05 / 8 = 3.2) it is only inconclusive."""
    se, values = 0.01, [0.5, 0.5, 0.472, 0.5, 0.5, 0.5]
    wobble = se / np.sqrt(19) * np.array([1.0, -1.0] * 10)  # a jackknife standard error of exactly se
    rows = [{"epoch": TRAINED, "site": f"block_{b + 1}", "depth": b + 1, "tokens": "patches", "mean_r": v}
            for b, v in enumerate(values)]
    reps = [{**r, "group": g, "mean_r": r["mean_r"] + (wobble[g] if r["depth"] == 3 else 0.0)}
            for r in rows for g in range(20)]
    v = record(results(correlation=rows, correlation_replicates=reps), "info_geom.u_shape")
    assert v["verdict"] == "inconclusive", v["evidence"]
    assert core.side(*stats.interval(-0.028, -wobble, 0.95)) == -1  # what one uncorrected comparison says


# --- MI and kurtosis (probing) --------------------------------------------------------------------------

HALVES, DISTANCES = 20, np.arange(1, 6)


def mi_rows(amplitude, length, epoch, noise=0.002, seed=0):
    """MI(d) = amplitude[b] * exp(-d / length[b]) per block and sublayer, and half-sample
    replicates scattered around it with standard deviation `noise`."""
    rng = np.random.default_rng(seed)
    rows, reps = [], []
    for sub in ("attn", "mlp"):
        for b in range(len(amplitude)):
            at = {"epoch": epoch, "sublayer": sub, "site": f"block_{b + 1}", "depth": b + 1}
            curve = amplitude[b] * np.exp(-DISTANCES / length[b])
            rows += [{**at, "distance": d, "mi": m} for d, m in zip(DISTANCES, curve)]
            reps += [{**at, "distance": d, "half": h, "mi": m + noise * rng.standard_normal()}
                     for h in range(HALVES) for d, m in zip(DISTANCES, curve)]
    return rows, reps


def mi_results(rows, reps):
    """The mi stage's results for these curves, with the decay rates it computes from them
    (decay.csv, decay_replicates.csv) by the definition in tgo.geometry.information."""
    decay, decay_reps = [], []
    for e, s, b in sorted({(r["epoch"], r["sublayer"], r["depth"]) for r in rows}):
        at = {"epoch": e, "sublayer": s, "depth": b}
        mine = [r for r in rows if (r["epoch"], r["sublayer"], r["depth"]) == (e, s, b)]
        d = np.array(sorted(r["distance"] for r in mine))
        decay.append({**at, "mi_decay_rate": mi_decay_rate(d, [r["mi"] for r in sorted(mine, key=lambda r: r["distance"])])})
        halves = {}
        for r in reps:
            if (r["epoch"], r["sublayer"], r["depth"]) == (e, s, b):
                halves.setdefault(r["half"], {})[r["distance"]] = r["mi"]
        curves = np.array([[halves[h][x] for x in d] for h in sorted(halves)])
        decay_reps += [{**at, "half": h, "mi_decay_rate": v} for h, v in zip(sorted(halves), mi_decay_rate(d, curves))]
    return results(mi_distance=rows, mi_replicates=reps, mi_decay=decay, mi_decay_replicates=decay_reps)


def mi_case(planted, flat=([0.3] * BLOCKS, [np.inf] * BLOCKS)):
    def build(at_init, trained):
        a = mi_rows(*(planted if at_init else flat), INIT, seed=1)
        b = mi_rows(*(planted if trained else flat), TRAINED, seed=2)
        return mi_results(a[0] + b[0], a[1] + b[1])
    return build


def kurtosis_rows(kurtosis, epoch, noise=0.02, seed=0):
    rng = np.random.default_rng(seed)
    rows, reps = [], []
    for sub in ("attn", "mlp"):
        for b, k in enumerate(kurtosis):
            at = {"epoch": epoch, "sublayer": sub, "site": f"block_{b + 1}", "depth": b + 1}
            rows.append({**at, "kurtosis_mean": k})
            reps += [{**at, "half": h, "kurtosis_mean": k + noise * rng.standard_normal()} for h in range(HALVES)]
    return rows, reps


def kurtosis_case(at_init, trained):
    peaked, flat = [3.0, 0.5, 0.4, 0.5, 0.6, 0.5], [0.5] * BLOCKS
    a = kurtosis_rows(peaked if at_init else flat, INIT, seed=1)
    b = kurtosis_rows(peaked if trained else flat, TRAINED, seed=2)
    return results(kurtosis=a[0] + b[0], kurtosis_replicates=a[1] + b[1])


def test_mi_decay_uses_every_distance():
    """MI that rises again at the far distances (noise around zero there) does not count as falling
    just because the last point is lower than the first."""
    rows, reps = mi_rows([0.3] * BLOCKS, [np.inf] * BLOCKS, TRAINED)
    for r in rows + reps:
        r["mi"] += {1: 0.0, 2: -0.05, 3: -0.05, 4: 0.05, 5: -0.001}[r["distance"]]
    rec = record(mi_results(rows, reps), "probing.mi_falls_with_distance")
    assert rec["verdict"] == "inconclusive" or rec["value"] < 0.01


# --- QK weights and angles (probing) ----------------------------------------------------------------------

D_MODEL, D_HEAD, HEADS = 24, 4, 6


def weights(kind, rng):
    """(w_q, w_k) of H heads: independent random (the untrained network), W_K = W_Q (M positive
    semidefinite), W_K = W_Q (0.1 + J)^T (M mostly antisymmetric: ||M_asym|| / ||M_sym|| about 10),
    or every head the same rank-one product (one dominant singular value)."""
    w_q = rng.standard_normal((HEADS, D_MODEL, D_HEAD))
    if kind == "random":
        return w_q, rng.standard_normal(w_q.shape)
    if kind == "sym":
        return w_q, w_q.copy()
    if kind == "skew":
        j = np.kron(np.eye(D_HEAD // 2), np.array([[0.0, 1.0], [-1.0, 0.0]]))
        return w_q, w_q @ (0.1 * np.eye(D_HEAD) + j).T
    u, v = rng.standard_normal((D_MODEL, 1)), rng.standard_normal((D_MODEL, 1))
    return np.tile(u, (HEADS, 1, D_HEAD)), np.tile(v, (HEADS, 1, D_HEAD))


def head_rows(kinds, epoch, seed=0):
    """heads.csv and head_replicates.csv rows (delete-one-head jackknife computed directly) for
    kinds[b] per block."""
    rng = np.random.default_rng(seed)
    rows, reps = [], []
    for b, kind in enumerate(kinds):
        w_q, w_k = weights(kind, rng)
        at = {"epoch": epoch, "site": f"block_{b + 1}", "depth": b + 1}
        rows += [{**at, "head": h, **qk.decompose(w_q[h], w_k[h])} for h in range(HEADS)]
        rows.append({**at, "head": "all", **qk.heads_together(w_q, w_k)})
        for h in range(HEADS):
            keep = [i for i in range(HEADS) if i != h]
            reps.append({**at, "group": h, **qk.heads_together(w_q[keep], w_k[keep])})
    return rows, reps


def qk_case(planted):
    def build(at_init, trained):
        a = head_rows(planted if at_init else ["random"] * BLOCKS, INIT, seed=1)
        b = head_rows(planted if trained else ["random"] * BLOCKS, TRAINED, seed=2)
        return results(qk_heads=a[0] + b[0], qk_head_replicates=a[1] + b[1])
    return build


def angle_rows(spearman, share_obtuse, epoch, noise=0.005, seed=0):
    """angles.csv rows and jackknife replicates scattered around each value with standard
    deviation `noise`; the with-beta columns hold other values, never decided on."""
    rng = np.random.default_rng(seed)
    rows = [{"epoch": epoch, "site": f"block_{b + 1}", "depth": b + 1, "spearman": s, "share_obtuse": o,
             "spearman_with_beta": -s, "share_obtuse_with_beta": 0.01} for b, (s, o) in enumerate(zip(spearman,
                                                                                                       share_obtuse))]
    reps = [{**{k: r[k] for k in ("epoch", "site", "depth")}, "group": g,
             "spearman": r["spearman"] + noise * rng.standard_normal(),
             "share_obtuse": r["share_obtuse"] + noise * rng.standard_normal()} for r in rows for g in range(20)]
    return rows, reps


NO_RHO, NO_OBTUSE = [0.0] * BLOCKS, [0.3] * BLOCKS


def angle_case(rho=NO_RHO, obtuse=NO_OBTUSE):
    def build(at_init, trained):
        a = angle_rows(rho if at_init else NO_RHO, obtuse if at_init else NO_OBTUSE, INIT, seed=1)
        b = angle_rows(rho if trained else NO_RHO, obtuse if trained else NO_OBTUSE, TRAINED, seed=2)
        return results(qk_angles=a[0] + b[0], qk_replicates=a[1] + b[1])
    return build


# --- Every claim: from training, from initialisation, by chance ---------------------------------------------

PLANTED = {
    "tgo1.final_cls_max_erank": final_cls_case,
    "tgo1.final_cls_min_anisotropy": final_cls_case,
    "info_geom.alpha_falls": alpha_case,
    "info_geom.coherent_clusters": coherence_case,
    "info_geom.u_shape": u_case,
    "probing.mi_falls_with_distance": mi_case(([0.3] * BLOCKS, [2.0] * BLOCKS)),
    "probing.mi_near_higher_later": mi_case(([0.3, 0.2, 0.3, 0.4, 0.5, 0.6], [2.0] * BLOCKS),
                                            flat=([0.3] * BLOCKS, [2.0] * BLOCKS)),
    "probing.mi_faster_decay_later": mi_case(([0.3] * BLOCKS, [4.0, 4.0, 3.0, 2.0, 1.5, 1.0]),
                                             flat=([0.3] * BLOCKS, [2.0] * BLOCKS)),
    "probing.first_block_min_mi": mi_case(([0.05, 0.3, 0.3, 0.3, 0.3, 0.3], [2.0] * BLOCKS),
                                          flat=([0.3] * BLOCKS, [2.0] * BLOCKS)),
    "probing.first_block_most_kurtotic": kurtosis_case,
    "probing.msym_pd": qk_case(["sym"] * BLOCKS),
    "probing.late_asym_dominates": qk_case(["random"] * 3 + ["skew"] * 3),
    "probing.last_block_sv_dominated": qk_case(["random"] * 5 + ["rank_one"]),
    "probing.late_obtuse": angle_case(obtuse=[0.3, 0.3, 0.3, 0.7, 0.8, 0.8]),
    "probing.early_attend_similar": angle_case(rho=[-0.3, -0.2, -0.1, 0.0, 0.0, 0.0]),
    "probing.late_attend_dissimilar": angle_case(rho=[0.0, 0.0, 0.0, 0.1, 0.2, 0.3]),
}


def test_every_claim_has_planted_cases():
    assert set(PLANTED) | set(TRENDS) == set(claims.REGISTRY)


@pytest.mark.parametrize("claim_id", list(PLANTED))
def test_an_effect_that_emerges_in_training_is_credited_to_training(claim_id):
    v = record(PLANTED[claim_id](at_init=False, trained=True), claim_id)
    assert v["verdict"] == "observed", v["evidence"]
    assert v["init_verdict"] in ("not observed", "inconclusive"), v["init_evidence"]
    assert v["origin"] == "training", (v["effect"], v["effect_ci"])
    assert claims.in_words(v) == "observed, produced by training"


@pytest.mark.parametrize("claim_id", list(PLANTED))
def test_an_effect_already_at_initialisation_is_credited_to_it(claim_id):
    v = record(PLANTED[claim_id](at_init=True, trained=True), claim_id)
    assert v["verdict"] == v["init_verdict"] == "observed", v["evidence"]
    assert v["origin"] == "initialisation"
    assert claims.in_words(v) == "observed, already in the untrained network"


@pytest.mark.parametrize("claim_id", list(PLANTED))
def test_chance_is_not_observed(claim_id):
    v = record(PLANTED[claim_id](at_init=False, trained=False), claim_id)
    assert v["verdict"] in ("not observed", "inconclusive"), v["evidence"]
    assert v["origin"] is None


@pytest.mark.parametrize("claim_id", list(PLANTED))
def test_a_claim_without_its_numbers_is_not_computable(claim_id):
    v = record(results(bowtie=[{"epoch": INIT}, {"epoch": TRAINED}]), claim_id)
    assert v["verdict"] == "not computable" and v["origin"] is None and v["evidence"]


def test_the_rule_sits_just_inside_and_outside_its_threshold():
    """The late-obtuse share with a tight interval just above and just below one half."""
    for share, expected in ((0.53, "observed"), (0.47, "not observed")):
        rows, reps = angle_rows(NO_RHO, [0.3, 0.3, 0.3, share, share, share], TRAINED, noise=0.001)
        assert record(results(qk_angles=rows, qk_replicates=reps), "probing.late_obtuse")["verdict"] == expected


def exact_angle_rows(share_obtuse, epoch, se, spearman=NO_RHO):
    """angles.csv rows and 20 jackknife replicates per block whose standard error is exactly `se`
    (half of them +d, half -d around the value: sqrt(19/20 * 20 d^2) = se)."""
    rows, _ = angle_rows(spearman, share_obtuse, epoch)
    d = se / np.sqrt(19)
    reps = [{**{k: r[k] for k in ("epoch", "site", "depth")}, "group": g,
             **{k: r[k] + (d if g % 2 else -d) for k in ("spearman", "share_obtuse")}}
            for r in rows for g in range(20)]
    return rows, reps


def test_late_obtuse_reads_exactly_the_later_half_of_the_blocks():
    """Blocks 4-6 of 6: a low block 3 changes nothing, a low block 4 or 6 decides against."""
    for shares, expected in (([0.8, 0.8, 0.2, 0.8, 0.8, 0.8], "observed"),
                             ([0.8, 0.8, 0.8, 0.2, 0.8, 0.8], "not observed"),
                             ([0.8, 0.8, 0.8, 0.8, 0.8, 0.2], "not observed")):
        rows, reps = exact_angle_rows(shares, TRAINED, se=0.01)
        assert record(results(qk_angles=rows, qk_replicates=reps), "probing.late_obtuse")["verdict"] == expected, shares


def test_late_obtuse_judges_each_block_at_the_bonferroni_level():
    """A share of 0.524 with standard error 0.01 in each of the 3 later blocks: its 95% interval
    (t_19 2.093: low 0.503) clears one half, its 1 - 0.05/3 interval (t_19 2.625: low 0.498) does not."""
    rows, reps = exact_angle_rows([0.3, 0.3, 0.3, 0.524, 0.524, 0.524], TRAINED, se=0.01)
    v = record(results(qk_angles=rows, qk_replicates=reps), "probing.late_obtuse")
    assert v["verdict"] == "inconclusive" and v["ci"][0] < 0.5 < v["ci"][1]
    assert stats.interval(0.524, [r["share_obtuse"] for r in reps if r["depth"] == 4], 0.95)[0] > 0.5
    rows, reps = exact_angle_rows([0.3, 0.3, 0.3, 0.53, 0.53, 0.53], TRAINED, se=0.01)
    assert record(results(qk_angles=rows, qk_replicates=reps), "probing.late_obtuse")["verdict"] == "observed"


@pytest.mark.parametrize("claim_id, sign, inside, outside", [("probing.early_attend_similar", -1, 3, 4),
                                                              ("probing.late_attend_dissimilar", +1, 4, 3)])
def test_the_attention_claims_read_their_own_half_of_the_blocks(claim_id, sign, inside, outside):
    """rho of the claimed sign in the last block of the early half (the first of the later half)
    decides; the same in the next block over, outside the half the claim reads, does not."""
    for block, observed in ((inside, True), (outside, False)):
        rho = [0.0] * BLOCKS
        rho[block - 1] = sign * 0.6  # moves its half's mean by 0.2, twenty standard errors
        rows, reps = exact_angle_rows(NO_OBTUSE, TRAINED, se=0.01, spearman=rho)
        v = record(results(qk_angles=rows, qk_replicates=reps), claim_id)
        assert (v["verdict"] == "observed") == observed, (block, v["evidence"])


@pytest.mark.parametrize("margin, expected", [(0.025, "inconclusive"), (0.03, "observed"), (-0.03, "not observed")])
def test_margins_compare_with_each_other_case_at_the_bonferroni_level(margin, expected):
    """One case against 5 others, its difference with standard error 0.01 (exact): 0.025 clears zero at
    95% (t_19 2.093) but not at 1 - 0.05/5 (t_19 2.861); 0.03 clears both."""
    d = 0.01 / np.sqrt(19)
    values = {b: 1.0 for b in range(1, 7)}
    values[6] = 1.0 + margin
    reps = {b: np.full(20, 1.0) for b in range(1, 6)}
    reps[6] = values[6] + np.where(np.arange(20) % 2, d, -d)
    (other, m, ci, _), label, out, per_case = core.margins(values, reps, 6, [1, 2, 3, 4, 5], +1, 0.95)
    assert per_case == pytest.approx(0.99) and len(out) == 5
    assert m == pytest.approx(margin) and label == expected
    assert ci == pytest.approx(stats.interval(margin, reps[6] - 1.0, 0.99))


def test_margins_pair_the_replicates_and_show_the_other_whose_interval_reaches_lowest():
    """Two others: a, the nearer margin (0.5) but the wider interval (its replicates wobble against
    the target's), b, the tighter margin (0.3) whose replicates move with the target's, so that
    the paired difference is exact; the deciding other is a (lowest low end), not b (lowest high
    end, lowest first replicate); one other alone is compared at the level itself."""
    wobble = np.where(np.arange(20) % 2, 1.0, -1.0) * 0.2 / np.sqrt(19)
    values, reps = {"t": 1.0, "a": 0.5, "b": 0.7}, {"t": 1.0 + wobble, "a": 0.5 - wobble, "b": 0.7 + wobble}
    (other, m, ci, rep), label, out, per_case = core.margins(values, reps, "t", ["a", "b"], +1, 0.95)
    assert (other, m, label, per_case) == ("a", pytest.approx(0.5), "inconclusive", pytest.approx(0.975))
    assert ci == pytest.approx(stats.interval(0.5, 0.5 + 2 * wobble, 0.975))  # standard error 0.4
    assert [c for _, _, c, _ in out][1] == pytest.approx((0.3, 0.3))
    (other, *_), _, _, per_case = core.margins(values, reps, "t", ["b"], +1, 0.95)
    assert (other, per_case) == ("b", pytest.approx(0.95))


def test_decide_and_effect_need_every_number_they_read():
    """An interval with one end missing decides nothing; the difference from the untrained network is
    paired replicate by replicate only when both have them, else it stands on both standard errors
    (z of them either side), and without one of those it has no interval."""
    assert core.decide(0.1, np.nan, +1) == core.decide(np.nan, 0.2, +1) == "not computable"
    reps = np.linspace(0.9, 1.1, 20)
    now = core.Estimate(1.0, "observed", "", reps=reps, se=0.1, z=2.0)
    init = core.Estimate(0.4, "not observed", "", se=0.05, z=2.0)
    diff, ci = core.effect(now, init, 0.95)
    assert diff == pytest.approx(0.6) and ci == pytest.approx((0.6 - 2 * np.hypot(0.1, 0.05), 0.6 + 2 * np.hypot(0.1, 0.05)))
    for missing_se in (core.Estimate(0.4, "not observed", ""), core.Estimate(0.4, "not observed", "", reps=reps[:10])):
        for now in (core.Estimate(1.0, "observed", "", se=0.1, z=2.0), core.Estimate(1.0, "", "", reps=reps[:5])):
            diff, ci = core.effect(now, missing_se, 0.95)
            assert diff == pytest.approx(0.6) and np.isnan(ci).all()
    for a, b in ((np.nan, 0.4), (1.0, np.nan)):
        diff, ci = core.effect(core.Estimate(a, "", "", reps=reps), core.Estimate(b, "", "", reps=reps), 0.95)
        assert np.isnan(diff) and np.isnan(ci).all()


def exact_alpha_rows(alphas, epoch, slope_se):
    """tokens depth rows and 20 replicates per block whose slopes on depth are the slope -+ k
    alternately, so the slope's jackknife standard error is exactly slope_se (sqrt(19) k)."""
    k, centre = slope_se / np.sqrt(19), (BLOCKS + 1) / 2
    rows = [{"epoch": epoch, "site": f"block_{b}", "depth": b, "patch_alpha_mean": a} for b, a in enumerate(alphas, 1)]
    reps = [{**{key: r[key] for key in ("epoch", "site", "depth")}, "group": g,
             "patch_alpha_mean": r["patch_alpha_mean"] + (k if g % 2 else -k) * (r["depth"] - centre)}
            for r in rows for g in range(20)]
    return rows, reps


@pytest.mark.parametrize("slope, expected", [(-0.025, "observed"), (-0.02, "inconclusive"), (0.025, "not observed")])
def test_alpha_falls_at_its_interval_boundary(slope, expected):
    """Slope standard error 0.01: -0.025 keeps the whole 95% interval below 0 (high -0.004), -0.02 does
    not (high +0.001)."""
    rows, reps = exact_alpha_rows([1.5 + slope * (b - 3.5) for b in range(1, BLOCKS + 1)], TRAINED, 0.01)
    v = record(results(token_depth=rows, token_replicates=reps), "info_geom.alpha_falls")
    assert v["verdict"] == expected and v["value"] == pytest.approx(slope)


@pytest.mark.parametrize("alphas", [[1.6, 1.5, 1.5, 1.5, 1.5, 1.5], [1.5, 1.5, 1.5, 1.5, 1.5, 1.4]])
def test_alpha_falls_reads_the_first_and_the_last_block(alphas):
    """Flat but for the first block (higher) or the last (lower): the slope falls only with both ends read."""
    rows, reps = exact_alpha_rows(alphas, TRAINED, 0.001)
    assert record(results(token_depth=rows, token_replicates=reps), "info_geom.alpha_falls")["verdict"] == "observed"


def test_share_verdicts_at_one_third_and_two_thirds():
    """A claim about many cases: observed from two thirds of them on, partly from one third; a share
    interval that spans a boundary is inconclusive."""
    assert [core.share_verdict(s) for s in (2 / 3, 0.66, 1 / 3, 0.33)] == \
        ["observed", "partly observed", "partly observed", "not observed"]
    assert core.share_interval_verdict(2 / 3, 1.0) == "observed"
    assert core.share_interval_verdict(0.4, 0.6) == "partly observed"
    assert core.share_interval_verdict(0.6, 0.7) == core.share_interval_verdict(0.3, 0.4) == "inconclusive"


def exact_trend_rows(values_by_site, se, epochs=(INIT, 4, TRAINED)):
    """spectral rows (every metric alike) at each site and sample set, with the site's values along the
    schedule, and 20 replicates per row that add -+ k x position alternately, so the slope and every
    step have jackknife standard error exactly se (sqrt(19) k)."""
    k = se / np.sqrt(19)
    rows, reps = [], []
    for site, values in values_by_site.items():
        for sset in SETS:
            for pos, (e, v) in enumerate(zip(epochs, values, strict=True)):
                at = {"epoch": e, "site": site, "depth": SITES.index(site), "sample_set": sset}
                rows.append({**at, **{key: v for key in SPECTRAL_KEYS}})
                reps += [{**at, "group": g, **{key: v + (k if g % 2 else -k) * pos for key in SPECTRAL_KEYS}}
                         for g in range(20)]
    return results(spectral_rows=rows, spectral_replicates=reps)


def linear(b, n=3):
    return [1.0 + b * pos for pos in range(n)]


def test_trend_slopes_are_judged_at_the_bonferroni_level_over_the_pairs():
    """14 (site, sample set) pairs after the embedding, each slope with standard error 0.01: 0.025 clears
    zero at 95% (t_19 2.093) but not at 1 - 0.05/14 (t_19 3.29), 0.035 clears both."""
    for b, expected in ((0.025, "inconclusive"), (0.035, "observed"), (-0.035, "not observed")):
        v = record(exact_trend_rows({s: linear(b) for s in SITES}, 0.01), "tgo1.erank_rises")
        assert v["verdict"] == expected, (b, v["evidence"])
    assert stats.interval(0.025, 0.025 + 0.01 / np.sqrt(19) * np.array([-1.0, 1.0] * 10), 0.95)[0] > 0


@pytest.mark.parametrize("falling, expected", [
    (("embed", "block_6", "final_norm"), "observed"),          # 10 of 14 pairs rise: the embedding is not read
    (("block_1", "block_6", "final_norm"), "partly observed"),  # 8 of 14 (8 of 12 would be two thirds)
    (("block_5", "block_6", "final_norm"), "partly observed"),
    (("block_1", "block_2", "block_3", "block_4", "block_5"), "not observed")])  # 4 of 14
def test_trend_shares_read_every_site_after_the_embedding(falling, expected):
    """Each site rising or falling surely (slope +-0.1, standard error 0.01): the share of pairs
    that rise against 1/3 and 2/3, over every site from the first block to the final norm."""
    v = record(exact_trend_rows({s: linear(-0.1 if s in falling else 0.1) for s in SITES}, 0.01),
               "tgo1.erank_rises")
    assert v["verdict"] == expected, v["evidence"]


@pytest.mark.parametrize("steps", [(INIT, INIT, TRAINED), (INIT, TRAINED, TRAINED)])
def test_trends_read_the_first_and_the_last_checkpoint(steps):
    """Flatter spectra in only the first step of the schedule, or only the last: a rise either way."""
    flatter = {INIT: 2.0, TRAINED: 1.0}
    out = trend_labels(spectral(lambda e, s: flatter[steps[(INIT, 4, TRAINED).index(e)]]))
    assert out["tgo1.erank_rises"] == ("observed", "training")


@pytest.mark.parametrize("back_first", [True, False])
@pytest.mark.parametrize("back, expected", [(0.035, "observed"), (0.038, "inconclusive")])
def test_a_step_back_is_judged_at_the_bonferroni_level_over_every_step(back_first, back, expected):
    """Every pair rises surely over the schedule but takes one step back (standard error 0.01): 3.5
    standard errors is not surely a step back over 14 pairs x 2 steps (t_19 3.63 at 1 - 0.05/28), 3.8
    is (though not at 1 - 0.05/56: 3.93). The step back first or last: each step reads its own replicates."""
    values = [1.0, 1.0 - back, 1.4 - back] if back_first else [1.0, 1.4, 1.4 - back]
    v = record(exact_trend_rows({s: values for s in SITES}, 0.01), "tgo1.erank_rises")
    assert v["verdict"] == expected, v["evidence"]


TREND_CASE = {"embed": -1.0, "block_1": 0.1, "block_2": 0.1, "block_3": 0.1, "block_4": 0.1, "block_5": -0.1,
              "block_6": 0.0, "final_norm": 0.02}


@pytest.mark.parametrize("claim_id, words", [
    ("tgo1.erank_rises", "8/14 (site, sample set) pairs surely rise over the schedule with no step against, 2 surely "
                         "go the other way, 4 undecided (0.9964 intervals per slope); 10/14 rise in point value"),
    ("tgo1.anisotropy_falls", "2/14 (site, sample set) pairs surely fall over the schedule with no step against, 8 "
                              "surely go the other way, 4 undecided (0.9964 intervals per slope); 2/14 fall in point "
                              "value")])
def test_trend_evidence_counts_every_pair_and_shows_the_final_norm(claim_id, words):
    """Blocks 1-4 rising surely (slope 0.1, standard error 0.01), block 5 falling surely, block 6 flat (a
    zero slope moves neither way in point value), the final norm rising unsurely (0.02), the embedding
    not read: the value is the share moving the claim's way in point value, the interval the shares
    surely (not) moving, and the final norm's CLS is shown with its slope's interval at the level asked."""
    res = exact_trend_rows({s: linear(b) for s, b in TREND_CASE.items()}, 0.01)
    for r in res["spectral_rows"] + res["spectral_replicates"]:  # the other sample set's final norm, higher
        if (r["site"], r["sample_set"]) == ("final_norm", "patch_mean"):
            r.update({key: r[key] + 1.0 for key in SPECTRAL_KEYS})
    v = record(res, claim_id)
    half = stats.student_t.ppf(0.975, 19) * 0.01
    moves, sure, other = (10, 8, 2) if claim_id == "tgo1.erank_rises" else (2, 2, 8)
    assert v["value"] == pytest.approx(moves / 14) and v["ci"] == pytest.approx((sure / 14, (14 - other) / 14))
    assert v["evidence"] == (f"epochs [0, 4, 8]: {words}; final-norm cls: 1.0000, 1.0200, 1.0400, slope +0.02 "
                             f"[{0.02 - half:.3g}, {0.02 + half:.3g}] per checkpoint")
    half = stats.student_t.ppf(0.95, 19) * 0.01
    assert record(res, claim_id, level=0.9)["evidence"].endswith(f"[{0.02 - half:.3g}, {0.02 + half:.3g}] per checkpoint")


def test_trend_leaves_out_a_pair_without_every_replicate():
    """A pair lacking one checkpoint's replicates, or with a NaN replicate, is not judged; the pairs after
    it are (the first pair in order is the one left out)."""
    res = exact_trend_rows({s: linear(0.1) for s in SITES}, 0.01)
    first = ("block_1", "cls")
    lacking = [r for r in res["spectral_replicates"] if ((r["site"], r["sample_set"]), r["epoch"]) != (first, 4)]
    nan = [{**r, "effective_rank": np.nan} if ((r["site"], r["sample_set"]), r["epoch"], r["group"]) == (first, 4, 0)
           else r for r in res["spectral_replicates"]]
    for reps in (lacking, nan):
        v = record({**res, "spectral_replicates": reps}, "tgo1.erank_rises")
        assert v["evidence"].startswith("epochs [0, 4, 8]: 13/13 (site, sample set) pairs surely rise"), v["evidence"]


def test_trend_needs_two_checkpoints_and_a_value():
    one = record(exact_trend_rows({s: [1.0] for s in SITES}, 0.01, epochs=(TRAINED,)), "tgo1.erank_rises")
    assert np.isnan(one["value"]) and one["evidence"] == "one checkpoint: nothing to follow over training"
    two = record(exact_trend_rows({s: linear(0.1, 2) for s in SITES}, 0.01, epochs=(INIT, TRAINED)), "tgo1.erank_rises")
    assert (two["verdict"], two["value"]) == ("observed", 1.0)
    no_final_norm = record(exact_trend_rows({s: linear(0.1) for s in SITES[:-1]}, 0.01), "tgo1.erank_rises")
    assert no_final_norm["evidence"].endswith("; 12/12 rise in point value"), no_final_norm["evidence"]
    none = record(exact_trend_rows({s: [np.nan] * 3 for s in SITES}, 0.01), "tgo1.erank_rises")
    assert (none["verdict"], none["evidence"]) == ("not computable", "every value missing")


@pytest.mark.parametrize("excess, expected", [(0.31, "observed"), (0.29, "inconclusive"), (-0.31, "not observed")])
def test_coherent_clusters_need_three_null_standard_deviations(excess, expected):
    """Neighbour share minus its permutation null's mean, against 3 of the null's standard deviations (0.1)."""
    row = {"epoch": TRAINED, "neighbour_share": 0.4 + excess, "null_mean": 0.4, "null_std": 0.1, "z": excess / 0.1}
    v = record(results(coherence=[row]), "info_geom.coherent_clusters")
    assert v["verdict"] == expected and v["ci"] == pytest.approx((excess - 0.3, excess + 0.3))


def test_coherent_clusters_against_the_untrained_network_with_both_nulls():
    """The difference of the two excess shares against 3 standard deviations of both nulls: 0.44 - 0
    with null standard deviations 0.1 and 0.1 clears 3 x 0.141 = 0.424; 0.4 does not."""
    for excess, origin in ((0.44, "training"), (0.40, None)):
        rows = [{"epoch": e, "neighbour_share": 0.4 + x, "null_mean": 0.4, "null_std": 0.1, "z": x / 0.1}
                for e, x in ((INIT, 0.0), (TRAINED, excess))]
        v = record(results(coherence=rows), "info_geom.coherent_clusters")
        assert v["verdict"] == "observed" and v["origin"] == origin
        assert v["effect_ci"] == pytest.approx((excess - 0.3 * np.sqrt(2), excess + 0.3 * np.sqrt(2)))


QK_KEYS = ("sym_mass_positive", "asym_sym_norm_ratio", "top10pct_sv_energy_share")


def exact_head_rows(key, values, epoch, se):
    """qk heads rows (heads together, and one head) per block, `key` = values[b] (the other keys the
    claims read: 0), and 6 delete-one-head replicates whose jackknife standard error is exactly se
    (alternately -+ se / sqrt(5))."""
    d = se / np.sqrt(5)
    rows, reps = [], []
    for b, v in enumerate(values, 1):
        at = {"epoch": epoch, "site": f"block_{b}", "depth": b, **dict.fromkeys(QK_KEYS, 0.0)}
        rows += [{**at, "head": "all", key: v}, {**at, "head": 0, key: v}]
        reps += [{**at, "group": g, key: v + (d if g % 2 else -d)} for g in range(HEADS)]
    return results(qk_heads=rows, qk_head_replicates=reps)


@pytest.mark.parametrize("claim_id, key, threshold", [
    ("probing.msym_pd", "sym_mass_positive", 0.5),
    ("probing.late_asym_dominates", "asym_sym_norm_ratio", 1.0)])
@pytest.mark.parametrize("margin, expected", [(0.03, "observed"), (0.02, "inconclusive"), (-0.03, "not observed")])
def test_the_weights_claims_at_their_thresholds(claim_id, key, threshold, margin, expected):
    """Standard error 0.01 over 6 heads (t_5 2.571): 0.03 above the threshold clears it, 0.02 does not."""
    v = record(exact_head_rows(key, [threshold + margin] * BLOCKS, TRAINED, 0.01), claim_id)
    assert v["verdict"] == expected and v["value"] == pytest.approx(threshold + margin)


@pytest.mark.parametrize("claim_id, key, blocks_read", [
    ("probing.msym_pd", "sym_mass_positive", range(1, BLOCKS + 1)),
    ("probing.late_asym_dominates", "asym_sym_norm_ratio", range(4, BLOCKS + 1))])
def test_the_weights_claims_read_their_blocks(claim_id, key, blocks_read):
    """One block far below the threshold decides against the claim exactly when the claim reads it
    (msym_pd: every block; late_asym_dominates: blocks 4-6 of 6)."""
    for low in range(1, BLOCKS + 1):
        values = [1.5] * BLOCKS
        values[low - 1] = 0.1
        v = record(exact_head_rows(key, values, TRAINED, 0.01), claim_id)
        assert v["verdict"] == ("not observed" if low in blocks_read else "observed"), (low, v["evidence"])


def exact_decay_results(rates, epoch, se):
    """The mi stage's decay rows, the same rate per block in both sublayers, and 20 half-sample
    replicates whose half-sample standard error is exactly se, and whose slopes on depth (over
    blocks 2-6) have half-sample standard error se too (rates -+ se (1 + depth - 4))."""
    rows, reps = [], []
    for sub in ("attn", "mlp"):
        for b, v in enumerate(rates, 1):
            at = {"epoch": epoch, "sublayer": sub, "depth": b}
            rows.append({**at, "mi_decay_rate": v})
            reps += [{**at, "half": h, "mi_decay_rate": v + (se if h % 2 else -se) * (b - 2.5)}
                     for h in range(HALVES)]
    return results(mi_decay=rows, mi_decay_replicates=reps)


def test_mi_near_higher_later_reads_each_sublayer_at_its_own_nearest_distance():
    """The value is the least-squares slope on depth of MI at distance 1 over blocks 2-6, per sublayer,
    averaged: rising in attn, flat (and higher) in mlp."""
    attn = mi_rows([0.3, 0.2, 0.3, 0.4, 0.5, 0.6], [2.0] * BLOCKS, TRAINED)
    mlp = mi_rows([0.9] * BLOCKS, [2.0] * BLOCKS, TRAINED, seed=1)
    rows, reps = ([r for r in a if r["sublayer"] == "attn"] + [r for r in m if r["sublayer"] == "mlp"]
                  for a, m in zip(attn, mlp))
    v = record(mi_results(rows, reps), "probing.mi_near_higher_later")
    near = {s: [r["mi"] for r in rows if (r["sublayer"], r["distance"]) == (s, 1) and r["depth"] > 1]
            for s in ("attn", "mlp")}
    assert v["value"] == pytest.approx(np.mean([np.polyfit(range(2, BLOCKS + 1), near[s], 1)[0] for s in near]))


def test_mi_falls_with_distance_shows_every_sublayer_and_block():
    v = record(exact_decay_results([0.1, 0.2, 0.3, 0.4, 0.5, 0.6], TRAINED, 0.01), "probing.mi_falls_with_distance")
    half = stats.student_t.ppf(0.975, HALVES // 2) * 0.01  # the mean over blocks wobbles by se x mean(depth - 2.5)
    blocks = ", ".join(f"b{b} {b / 10:.3f}" for b in range(1, BLOCKS + 1))
    assert v["evidence"] == (f"epoch 8: mean decay rate 0.350 [{0.35 - half:.3g}, {0.35 + half:.3g}]; per (sublayer, "
                             f"block): " + ", ".join(f"{s} {blocks.replace(', ', f', {s} ')}" for s in ("attn", "mlp")))


@pytest.mark.parametrize("rate, expected", [(0.025, "observed"), (0.02, "inconclusive"), (-0.025, "not observed")])
def test_mi_falls_with_distance_at_its_half_sample_boundary(rate, expected):
    """The mean decay rate with half-sample standard error 0.01 (t_10 2.228): 0.025 clears zero, 0.02
    does not."""
    rates = [rate] * BLOCKS
    v = record(exact_decay_results(rates, TRAINED, 0.01), "probing.mi_falls_with_distance")
    assert v["verdict"] == expected and v["value"] == pytest.approx(rate)
    assert v["ci"] == pytest.approx((rate - 2.228 * 0.01, rate + 2.228 * 0.01), abs=1e-5)


@pytest.mark.parametrize("rates, expected", [
    ([0.0, 0.0, 0.025, 0.05, 0.075, 0.1], "observed"),      # slope 0.025 per block, standard error 0.01
    ([0.0, 0.0, 0.02, 0.04, 0.06, 0.08], "inconclusive"),   # 0.02
    ([5.0, 0.0, 0.025, 0.05, 0.075, 0.1], "observed"),      # block 1 is its own claim: not read
    ([0.0, 0.0, 0.0, 0.0, 0.0, 0.5], "observed"),           # the last block is read
    ([0.0, 0.5, 0.0, 0.0, 0.0, 0.0], "not observed")])      # ... and the second
def test_mi_faster_decay_later_reads_blocks_two_to_the_last(rates, expected):
    v = record(exact_decay_results(rates, TRAINED, 0.01), "probing.mi_faster_decay_later")
    assert v["verdict"] == expected, v["evidence"]


@pytest.mark.parametrize("values, expected", [
    ([0.5, 0.3, 0.45, 0.45, 0.45, 0.5], "observed"),    # the dip in the first interior block
    ([0.5, 0.45, 0.45, 0.45, 0.3, 0.5], "observed"),    # ... in the last
    ([0.3, 0.4, 0.5, 0.6, 0.7, 0.8], "not observed"),   # rising: every interior block above the first
    ([0.8, 0.7, 0.6, 0.5, 0.4, 0.3], "not observed")])  # falling: above the last
def test_u_shape_reads_every_interior_block_against_both_ends(values, expected):
    """Standard error 0.01 per block (independent): each interior block against the first and the
    last block, never against each other."""
    rows, reps = exact_correlation_rows(values, se=0.01)
    v = record(results(correlation=rows, correlation_replicates=reps), "info_geom.u_shape")
    assert v["verdict"] == expected, v["evidence"]


def exact_correlation_rows(values, se, dipped=None):
    """correlation rows (patch tokens) per block and 20 jackknife replicates: the blocks in `dipped`
    (default: every block) wobble alternately by -+ se / sqrt(19) (standard error se), in opposite
    phase in successive blocks, so a difference of two wobbling blocks has standard error 2 se."""
    d = se / np.sqrt(19)
    rows = [{"epoch": TRAINED, "site": f"block_{b}", "depth": b, "tokens": "patches", "mean_r": v}
            for b, v in enumerate(values, 1)]
    reps = [{**r, "group": g, "mean_r": r["mean_r"] + (d if (g + r["depth"]) % 2 else -d) *
             (dipped is None or r["depth"] in dipped)} for r in rows for g in range(20)]
    return rows, reps


def test_u_shape_shows_the_deciding_block_against_each_end():
    """First block 0.6, last 0.5, a dip to 0.4 at block 3 with standard error 0.01: the deciding block
    minus the first and minus the last, each with its own interval at 1 - 0.05/8."""
    rows, reps = exact_correlation_rows([0.6, 0.5, 0.4, 0.5, 0.5, 0.5], se=0.01, dipped={3})
    v = record(results(correlation=rows, correlation_replicates=reps), "info_geom.u_shape")
    half = stats.student_t.ppf(1 - 0.05 / 16, 19) * 0.01
    assert v["evidence"] == ("epoch 8, patch tokens: mean r per block 0.600, 0.500, 0.400, 0.500, 0.500, 0.500; "
                             f"deciding block_3 (0.400): minus first -0.200 [{-0.2 - half:.3g}, {-0.2 + half:.3g}], "
                             f"minus last -0.100 [{-0.1 - half:.3g}, {-0.1 + half:.3g}] (0.9938 intervals each)")


@pytest.mark.parametrize("below, expected", [(0.0315, "observed"), (0.0300, "inconclusive")])
def test_u_shape_corrects_for_exactly_its_eight_comparisons(below, expected):
    """A dip at block 3 with standard error 0.01 (the ends exact): t_19 at 1 - 0.05/8 is 3.07 (at
    1 - 0.05/12 it would be 3.25, at 1 - 0.05/4 2.76); 0.0315 below both ends is observed with 8
    comparisons and would not be with 12, 0.030 is not with 8 and would be with 4."""
    rows, reps = exact_correlation_rows([0.5, 0.5, 0.5 - below, 0.5, 0.5, 0.5], se=0.01, dipped={3})
    v = record(results(correlation=rows, correlation_replicates=reps), "info_geom.u_shape")
    assert v["verdict"] == expected, v["evidence"]
    if expected == "observed":  # else a flat block, whose interval reaches less high, is shown
        assert v["value"] == pytest.approx(-below)
        assert v["ci"][1] == pytest.approx(-below + 0.01 * stats.student_t.ppf(1 - 0.05 / 16, 19))


def test_verdicts_json_carries_each_records_numbers():
    """reports/metrics/verdicts.json holds each record's value, interval, untrained value and effect,
    and null for what is not a finite number."""
    records = claims.judge(final_cls_case(False, True))
    m = claims.metrics(records)
    for v in records:
        paper, name = v["id"].split(".")
        got = m[paper][name]
        for key, want in (("value", v["value"]), ("ci_low", v["ci"][0]), ("ci_high", v["ci"][1]),
                          ("init_value", v["init_value"]), ("effect", v["effect"]),
                          ("effect_ci_low", v["effect_ci"][0]), ("effect_ci_high", v["effect_ci"][1])):
            assert got[key] == (float(want) if want is not None and np.isfinite(want) else None), (v["id"], key)
        assert (got["verdict"], got["init_verdict"], got["origin"]) == (v["verdict"], v["init_verdict"], v["origin"])
    final = m["tgo1"]["final_cls_max_erank"]
    assert final["ci_low"] < final["value"] < final["ci_high"] and final["effect_ci_low"] < final["effect_ci_high"]


def test_a_registered_claim_keeps_what_it_was_registered_with(monkeypatch):
    monkeypatch.setattr(core, "REGISTRY", {})
    fn = core.claim("probing.example", text="t", statistic="s", rule="r", sign=-1, null="n",
                    over_training=True)(lambda r, level: None)
    assert core.REGISTRY == {"probing.example": core.Claim("probing.example", "t", "s", "r", -1, fn, "n", True)}
    assert core.REGISTRY["probing.example"].paper == "probing"
    core.claim("tgo1.example", text="t", statistic="s", rule="r", sign=1)(fn)  # the defaults
    assert core.REGISTRY["tgo1.example"].null == core.UNTRAINED and not core.REGISTRY["tgo1.example"].over_training
    for bad in ("nopaper.example", "probing.example"):  # an unknown paper; a second registration
        with pytest.raises(ValueError, match=f"claim {bad}: unknown paper or registered twice"):
            core.claim(bad, text="", statistic="", rule="", sign=1)(fn)


@pytest.mark.parametrize("claim_id", [c for c in PLANTED if c != "info_geom.coherent_clusters"])
def test_every_interval_is_taken_at_the_level_asked_for(claim_id):
    """judge(results, level): each claim's interval, and its difference from the untrained network's,
    widens from level 0.9 to 0.99 (around the same value, unless the deciding case changes with the
    level; coherent_clusters decides at 3 null standard deviations, whatever the level)."""
    res = PLANTED[claim_id](at_init=False, trained=True)
    v90, v99 = record(res, claim_id, 0.9), record(res, claim_id, 0.99)
    for key in ("ci", "effect_ci"):
        assert v99[key][1] - v99[key][0] > v90[key][1] - v90[key][0] > 0, (key, v90[key], v99[key])
    if v90["value"] == v99["value"]:
        assert v99["ci"][0] < v90["ci"][0] and v90["ci"][1] < v99["ci"][1]


def test_u_shape_pairs_the_blocks_over_images():
    """Every block wobbling alike over the jackknife groups (the same images make every block's mean
    r higher or lower): a dip of 0.001 at block 3, ten times smaller than each block's standard error,
    is surely below both ends once the blocks are paired image group by image group."""
    rows, reps = exact_correlation_rows([0.5, 0.5, 0.499, 0.5, 0.5, 0.5], se=0.01)
    in_phase = [{**r, "mean_r": next(x["mean_r"] for x in rows if x["depth"] == r["depth"])
                 + 0.01 / np.sqrt(19) * (1 if r["group"] % 2 else -1)} for r in reps]
    v = record(results(correlation=rows, correlation_replicates=in_phase), "info_geom.u_shape")
    assert v["verdict"] == "observed" and v["value"] == pytest.approx(-0.001)


def test_u_statistic_returns_the_deciding_difference_with_its_replicates():
    """Block 3 decides; of its two ends the worse is the one whose interval reaches higher: the first
    block (-0.1, standard error 0.03), not the last (-0.08 exactly), though the last is the nearer."""
    from tgo.claims.info_geom import u_statistic
    rows, reps = exact_correlation_rows([0.5, 0.46, 0.4, 0.45, 0.47, 0.48], se=0.03, dipped={1})
    by_site = core.stored_replicates(reps, ("site",), "mean_r")
    (value, ci, rep), label, _ = u_statistic(rows, by_site, 0.95)
    want = by_site["block_3",] - by_site["block_1",]
    assert label == "observed" and value == pytest.approx(0.4 - 0.5)
    np.testing.assert_allclose(rep, want)
    assert ci == pytest.approx(stats.interval(0.4 - 0.5, want, 1 - 0.05 / 8))


def test_the_mi_claims_need_only_two_blocks_after_the_first_or_two_blocks():
    rows, reps = mi_rows([0.3, 0.2, 0.1], [2.0] * 3, TRAINED)
    res = mi_results(rows, reps)
    for claim_id in ("probing.mi_near_higher_later", "probing.mi_faster_decay_later", "probing.first_block_min_mi"):
        assert record(res, claim_id)["verdict"] != "not computable", claim_id
    rows, reps = kurtosis_rows([3.0, 0.5], TRAINED)
    assert record(results(kurtosis=rows, kurtosis_replicates=reps),
                  "probing.first_block_most_kurtotic")["verdict"] == "observed"


def test_the_first_block_is_compared_with_the_second_too():
    rows, reps = kurtosis_rows([3.0, 4.0, 0.5, 0.5, 0.5, 0.5], TRAINED)
    v = record(results(kurtosis=rows, kurtosis_replicates=reps), "probing.first_block_most_kurtotic")
    assert v["verdict"] == "not observed" and "deciding b2" in v["evidence"]


@pytest.mark.parametrize("claim_id", ["probing.mi_falls_with_distance", "probing.mi_near_higher_later",
                                      "probing.first_block_most_kurtotic"])
def test_the_half_sample_claims_take_half_sample_intervals(claim_id):
    """An MI or kurtosis claim's interval, and its difference from the untrained network's, are
    half-sample intervals (t with count/2 degrees of freedom on complementary halves), not jackknife ones."""
    res = PLANTED[claim_id](at_init=False, trained=True)
    v = record(res, claim_id)
    now, init = (claims.REGISTRY[claim_id].decide(res, e, 0.95) for e in (TRAINED, INIT))
    assert now.method == "half"
    per_case = 1 - 0.05 / 5 if claim_id.endswith("kurtotic") else 0.95
    assert v["ci"] == pytest.approx(stats.half_sample_interval(now.value, now.reps, per_case))
    assert v["effect_ci"] == pytest.approx(stats.half_sample_interval(now.value - init.value, now.reps - init.reps))


def test_in_words_credits_only_what_was_observed():
    base = {"verdict": "observed", "origin": None, "init_verdict": "inconclusive"}
    assert claims.in_words(base) == "observed, not decided against the untrained network"
    assert claims.in_words({**base, "init_verdict": "not computable"}) == "observed"
    assert claims.in_words({**base, "verdict": "inconclusive"}) == "inconclusive"
    assert claims.in_words({**base, "origin": "training"}) == "observed, produced by training"
    assert core.share_verdict(np.nan) == "not computable"


def test_the_evidence_says_what_was_decided_with():
    """The words the report prints beside a verdict carry the numbers it was decided with."""
    rows, reps = exact_correlation_rows([0.5, 0.46, 0.4, 0.45, 0.47, 0.48], se=0.03, dipped={1})
    v = record(results(correlation=rows, correlation_replicates=reps), "info_geom.u_shape")
    assert v["evidence"].startswith("epoch 8, patch tokens: mean r per block 0.500, 0.460, 0.400, 0.450, 0.470, 0.480; "
                                    "deciding block_3 (0.400): minus first -0.100 [")
    assert ", minus last -0.080 [-0.08, -0.08] (0.9938 intervals each)" in v["evidence"]
    v = record(exact_decay_results([0.0, 0.0, 0.025, 0.05, 0.075, 0.1], TRAINED, 0.01), "probing.mi_faster_decay_later")
    assert v["evidence"].startswith("epoch 8, decay rate: attn: b2 0, b3 0.025, b4 0.05, b5 0.075, b6 0.1; mlp: b2 0, ")
    assert v["evidence"].endswith(f"; slope per block +0.025 {core.fmt_ci(v['ci'])}")
    rows, reps = kurtosis_rows([3.0, 0.5], TRAINED, noise=0.0)
    v = record(results(kurtosis=rows, kurtosis_replicates=reps), "probing.first_block_most_kurtotic")
    assert v["evidence"].startswith("epoch 8, mean excess kurtosis per block: b1 3, b2 0.5; deciding b2, margin +2.5 [")


@pytest.mark.parametrize("claim_id, rows, why", [
    ("probing.mi_faster_decay_later", [0.1, 0.05], "fewer than 2 blocks after the first"),
    ("probing.first_block_min_mi", [0.1], "one block")])
def test_a_claim_without_enough_blocks_says_why(claim_id, rows, why):
    r = mi_rows(rows, [2.0] * len(rows), TRAINED)
    v = record(mi_results(*r), claim_id)
    assert v["verdict"] == "not computable" and v["evidence"] == why


def test_an_mi_interval_missing_in_some_halves_says_so():
    res = exact_decay_results([0.05] * BLOCKS, TRAINED, 0.01)
    res["mi_decay_replicates"][3]["mi_decay_rate"] = np.nan
    v = record(res, "probing.mi_falls_with_distance")
    assert v["verdict"] == "not computable"
    assert v["evidence"].endswith("; no interval: undefined in 1 of 20 half-samples (MI at the nearest distance <= 0 "
                                  "there: too few images per half)")


def test_the_weights_claims_need_more_than_the_chance_value():
    """Random W_Q, W_K put M_sym's positive mass near 0.5: never observed on its own, whatever the
    point value, because the spread over heads decides."""
    rows, reps = head_rows(["random"] * BLOCKS, TRAINED, seed=3)
    v = record(results(qk_heads=rows, qk_head_replicates=reps), "probing.msym_pd")
    assert v["verdict"] in ("inconclusive", "not observed") and v["ci"][0] < 0.5


def test_an_effect_not_decided_against_the_untrained_network_is_credited_to_nothing():
    """Observed after training, inconclusive before, but the difference is within the noise of the
    two: neither training nor initialisation gets it."""
    a = angle_rows([0.0, 0.0, 0.0, 0.02, 0.02, 0.02], NO_OBTUSE, INIT, seed=1)
    b = angle_rows([0.0, 0.0, 0.0, 0.05, 0.05, 0.05], NO_OBTUSE, TRAINED, seed=2)
    v = record(results(qk_angles=a[0] + b[0], qk_replicates=a[1] + b[1]), "probing.late_attend_dissimilar")
    assert v["verdict"] == "observed" and v["init_verdict"] == "inconclusive"
    assert v["effect_ci"][0] < 0 < v["effect_ci"][1] and v["origin"] is None
    assert claims.in_words(v) == "observed, not decided against the untrained network"


def test_the_lowest_block_carries_its_interval_over_heads():
    """msym_pd decides on the lowest block's heads-together value; its interval is the jackknife of
    the lowest value, replicate by replicate (the same head left out of every block)."""
    rows, reps = head_rows(["sym", "random", "sym", "random", "sym", "sym"], TRAINED, seed=4)
    v = record(results(qk_heads=rows, qk_head_replicates=reps), "probing.msym_pd")
    value = {r["depth"]: r["sym_mass_positive"] for r in rows if r["head"] == "all"}
    lowest = np.min([[r["sym_mass_positive"] for r in reps if r["depth"] == d] for d in value], axis=0)
    assert v["value"] == min(value.values())
    assert v["ci"] == pytest.approx(stats.interval(min(value.values()), lowest))


def test_a_skipped_qk_stage_is_not_computable():
    """Every claim on the QK weights or the angles says why: the qk stage's reason for skipping."""
    res = results(bowtie=[{"epoch": INIT}, {"epoch": TRAINED}])
    res["metrics"]["qk"] = {"skipped": "rotary position embeddings"}
    skipped = {v["id"] for v in claims.judge(res) if v["evidence"] == "qk skipped: rotary position embeddings"}
    assert skipped == {"probing.msym_pd", "probing.late_asym_dominates", "probing.last_block_sv_dominated",
                       "probing.late_obtuse", "probing.early_attend_similar", "probing.late_attend_dissimilar"}
    assert all(record(res, c)["verdict"] == "not computable" for c in skipped)


def test_the_weights_claims_show_every_block_and_the_single_heads():
    """The evidence of msym_pd: each block's heads-together value, the lowest with its interval
    (standard error 0.01 over 6 heads, t_5 2.571), and the range of the single heads' values alone."""
    shares = [0.6, 0.7, 0.8, 0.9, 0.95, 0.65]
    res = exact_head_rows("sym_mass_positive", shares, TRAINED, 0.01)
    for r in res["qk_heads"]:
        r["sym_mass_positive"] -= 0.2 * (r["head"] != "all")
    v = record(res, "probing.msym_pd")
    half = stats.student_t.ppf(0.975, HEADS - 1) * 0.01
    assert v["evidence"] == ("epoch 8, positive share of sum |lambda(M_sym)| per block: b1 0.600, b2 0.700, b3 0.800, "
                             f"b4 0.900, b5 0.950, b6 0.650; lowest 0.600 [{0.6 - half:.3g}, {0.6 + half:.3g}]; single "
                             "heads 0.40..0.75")
    no_reps = record({**res, "qk_head_replicates": []}, "probing.msym_pd")
    assert no_reps["evidence"] == "one head per block: no spread over heads to decide with"
    no_rows = record({**res, "qk_heads": [], "bowtie": [{"epoch": TRAINED}]}, "probing.msym_pd")
    assert no_rows["evidence"] == "no blocks"


def test_the_angle_claims_show_every_block_and_the_mean_over_their_half():
    """The mean Spearman rho over the later half (blocks 4-6) with its interval (standard error 0.01:
    every block wobbles in phase), every block's rho, and the with-beta values of the half judged."""
    rows, reps = exact_angle_rows([0.3] * BLOCKS, TRAINED, 0.01, spearman=[-0.2, -0.1, 0.0, 0.1, 0.2, 0.3])
    v = record(results(qk_angles=rows, qk_replicates=reps), "probing.late_attend_dissimilar")
    half = stats.student_t.ppf(0.975, 19) * 0.01
    assert v["evidence"] == ("epoch 8: Spearman rho(angle, attention) per block -0.20, -0.10, 0.00, 0.10, 0.20, 0.30; "
                             f"mean over the later half +0.200 [{0.2 - half:.2g}, {0.2 + half:.2g}]; with beta: b4 "
                             "-0.100, b5 -0.200, b6 -0.300")


def test_pretrained_weights_are_compared_with_their_untrained_network():
    trained, untrained = final_cls_case(False, True), final_cls_case(False, False)
    res = results(spectral_rows=[r for r in trained["spectral_rows"] if r["epoch"] == TRAINED],
                  spectral_replicates=[r for r in trained["spectral_replicates"] if r["epoch"] == TRAINED])
    res["train"] = {"weights": "w.safetensors"}
    res["init"] = results(spectral_rows=[{**r, "epoch": 0} for r in untrained["spectral_rows"] if r["epoch"] == 0],
                          spectral_replicates=[{**r, "epoch": 0} for r in untrained["spectral_replicates"]
                                               if r["epoch"] == 0])
    v = record(res, "tgo1.final_cls_max_erank")
    assert v["origin"] == "training" and v["null_words"] == "the same architecture at random initialisation"
    res["init"] = results(spectral_rows=[{**r, "epoch": 0} for r in res["spectral_rows"]],
                          spectral_replicates=[{**r, "epoch": 0} for r in res["spectral_replicates"]])
    assert record(res, "tgo1.final_cls_max_erank")["origin"] == "initialisation"


def test_a_random_initialisation_is_its_own_untrained_network():
    res = final_cls_case(True, True)
    res = results(spectral_rows=[r for r in res["spectral_rows"] if r["epoch"] == 0],
                  spectral_replicates=[r for r in res["spectral_replicates"] if r["epoch"] == 0])
    res["train"] = {"weights": None}
    v = record(res, "tgo1.final_cls_max_erank")
    assert v["init_value"] == v["value"] and v["origin"] == "initialisation"


def test_each_record_carries_its_registry_entry_and_the_network_it_was_compared_with():
    """judge's records repeat the claim's registry entry (the report's columns) and name the untrained
    network each was compared with, with that network's own evidence; the comparison is the first
    checkpoint of a run trained here, whatever checkpoints follow."""
    res = spectral(lambda e, s: 1.5)
    records = claims.judge(res)
    assert [v["id"] for v in records] == list(claims.REGISTRY)
    for v in records:
        c = claims.REGISTRY[v["id"]]
        assert (v["paper"], v["claim"], v["statistic"], v["null"], v["rule"]) == \
            (core.PAPERS[c.paper], c.text, c.statistic, c.null, c.rule)
        if not c.over_training:
            assert v["null_words"] == "epoch 0 (initialisation)"
            assert v["init_evidence"] == c.decide(res, INIT, 0.95).evidence
    res["train"] = {"weights": "w.safetensors"}
    assert all(v["null_words"] == "no untrained network analysed (extract again: dvc repro -f -s extract)"
               for v in claims.judge(res) if not claims.REGISTRY[v["id"]].over_training)
    one = spectral(lambda e, s: 1.5, epochs=(INIT,))
    one["train"] = {"weights": None}
    assert {v["null_words"] for v in claims.judge(one) if "null_words" in v} == \
        {"the model itself (it is a random initialisation)"}


def test_metrics_json_has_numbers_labels_and_origins_per_claim():
    m = claims.metrics(claims.judge(final_cls_case(False, True)))
    assert set(m) == set(claims.PAPERS)
    keys = {"value", "ci_low", "ci_high", "verdict", "init_value", "init_verdict", "effect", "effect_ci_low",
            "effect_ci_high", "origin"}
    for cid in claims.REGISTRY:
        paper, name = cid.split(".")
        assert set(m[paper][name]) == keys
    assert m["tgo1"]["final_cls_max_erank"]["origin"] == "training"
    # No NaN (unequal to itself, so dvc metrics diff would call it changed): a missing number is null.
    numbers = [c[k] for group in m.values() for c in group.values() for k in keys if "verdict" not in k
               and k != "origin"]
    assert None in numbers and all(x is None or np.isfinite(x) for x in numbers)


def test_registry_rejects_a_claim_registered_twice():
    with pytest.raises(ValueError):
        core.claim("tgo1.erank_rises", text="", statistic="", rule="", sign=1)(lambda r, e, level: None)


def test_claims_import_no_figures():
    import subprocess
    import sys
    code = "import sys, tgo.claims; assert 'matplotlib' not in sys.modules"
    subprocess.run([sys.executable, "-c", code], check=True)


def test_readme_claims_table_is_generated_from_the_registry():
    from micro import REPO
    lines = claims.markdown().splitlines()
    assert lines[0].startswith("| id | paper |") and len(lines) == 2 + len(claims.REGISTRY)
    assert claims.markdown() in (REPO / "README.md").read_text(), \
        "README.md's claims table is stale: paste the output of `python -m tgo.claims`"


# --- the verdicts table across experiments (python -m tgo.claims.table) ---------------------------

def exp_show_entry(rev, name, verdicts, params, zoo=None):
    """One row of `dvc exp show --json` as DVC writes it: metrics' null values left out."""
    dropped = {p: {c: {k: v for k, v in r.items() if v is not None} for c, r in group.items()}
               for p, group in verdicts.items()}
    metrics = {table.VERDICTS: {"data": dropped}}
    if zoo:
        metrics[table.ZOO_VERDICTS] = {"data": zoo}
    return {"rev": rev, "name": name, "data": {"params": {"params.yaml": {"data": params}}, "metrics": metrics}}


def test_verdicts_table_rows_columns_and_legend():
    import copy
    import json
    from micro import REPO
    base = json.loads((REPO / "reports/metrics/verdicts.json").read_text())
    params = {"train": {"lr": 0.001, "epochs": 8}, "model": {"name": "vit_tiny_patch16_224"}}
    flipped = copy.deepcopy(base)
    flipped["tgo1"]["erank_rises"].update(verdict="observed", origin="training")
    flipped["probing"]["msym_pd"].update(verdict="observed", origin="initialisation", init_verdict="observed")
    lower = {"train": {"lr": 0.0001, "epochs": 8}, "model": {"name": "vit_tiny_patch16_224"}}
    commit = exp_show_entry("abc1234def", "main", base, params)
    commit["experiments"] = [{"revs": [exp_show_entry("fedcba9", "slow-lr", flipped, lower,
                                                      zoo={"deit": flipped, "rand": base})]}]
    shown = [exp_show_entry("workspace", None, base, params), commit]
    found = table.runs(shown)
    assert [name for name, _, _ in found] == ["workspace", "main", "slow-lr", "slow-lr:deit", "slow-lr:rand"]
    text = table.render(found, 200)
    rows = {line.split()[0]: line.split()[1:] for line in text.splitlines() if line.split()
            and line.split()[0] in claims.REGISTRY}
    assert set(rows) == set(claims.REGISTRY)
    assert rows["tgo1.erank_rises"][2] == "yes" and rows["probing.msym_pd"][2] == "yes/init"
    assert rows["tgo1.erank_rises"][1] == "?" == rows["tgo1.erank_rises"][4]  # the baseline's word
    assert "slow-lr: train.lr=0.0001" in text and "main: the committed params" in text
    assert "workspace: no params changed" in text
    # a zoo model's column names its experiment, and below it the zoo id, each whole
    header, zoo_line = text.splitlines()[:2]
    assert header.split() == ["claim", "workspace", "main", "slow-lr", "slow-lr", "slow-lr"]
    assert zoo_line.split() == [":deit", ":rand"] and zoo_line.rstrip().endswith(":rand")
    # A narrow terminal: the columns go into blocks, no line wider than the terminal.
    # (a 35-character claim column, 14 per run column: two runs per block of 70)
    narrow = table.render(found, 70)
    assert max(len(line) for line in narrow.splitlines()) <= 70
    assert narrow.count("tgo1.erank_rises") == 3 and narrow.count("probing.msym_pd") == 3
