"""Verdicts on the papers' claims, computed from a run's numbers: pure functions, no figures.

Every claim has a stable id (`CLAIMS`), one deciding statistic and a threshold (named constants
below, each with its reason). Where the statistic has a confidence interval over the probe images
(tgo.geometry.stats: the stages write jackknife replicates, paired across checkpoints and blocks),
the interval decides:
  observed         the whole interval lies on the claimed side of the threshold;
  partly observed  only for claims about many cases (sites, blocks): the share of cases where the
                   claim holds lies between PARTLY_SHARE and OBSERVED_SHARE;
  not observed     the whole interval lies on the other side;
  inconclusive     the interval straddles the threshold (probe-set noise could decide either way);
  not computable   the statistic is missing (e.g. alpha outside the spectrum's rank).
A claim judged on m cases at once (sites, blocks) takes each case's interval at the Bonferroni
level 1 - (1 - level) / m, so all m hold together at `level`; its share of cases then has an
interval too: [cases surely holding, cases not surely failing] / m. Claims on the weights alone
(M_sym, QK singular values) are exact for the checkpoint and report their spread over heads; the
clusters' spatial coherence is decided by its permutation null. The MI claims have no interval
(`MI_NO_INTERVAL` says why) and are decided on their point values.
`metrics(verdicts)` is reports/metrics/verdicts.json: per claim its statistic, its interval and its
label, so `dvc exp show` and `dvc metrics diff` show a claim flipping between experiments.

The rows are those of the analysis stages' CSV files (reports/<stage>/), numbers as floats; every
claim is judged at the last checkpoint unless it is about training.

``python -m tgo.verdicts`` prints the "claims checked" table of README.md (a test keeps them equal).
"""
from collections import namedtuple

import numpy as np
from scipy.stats import spearmanr

from tgo.geometry.information import log_mi_slope
from tgo.geometry.stats import bonferroni, interval

PAPERS = {
    "tgo1": "TGO-I: spectral geometry of ViT representations through training",
    "info_geom": "On the Information Geometry of Vision Transformers (NeurReps 2023)",
    "probing": "Probing Vision Transformer Attention: Image Statistics and Patch Similarity "
               "(Philip, Pan & Schwartz)",
}

# A claim about many cases is "observed" when it holds in at least two thirds of them (a clear
# majority, robust to a site or two that behave differently) and "partly observed" from one third.
OBSERVED_SHARE = 2 / 3
PARTLY_SHARE = 1 / 3
# Spatially coherent clusters: the neighbour share lies 3 null standard deviations above the
# permutation null's mean (p ~ 0.001 one-sided for a normal null).
COHERENCE_Z_MIN = 3.0
# "Largely positive definite": positive eigenvalues of M_sym carry more than half of sum |lambda|.
MSYM_POSITIVE_MASS_MIN = 0.5
# "Most angles exceed 90 degrees": more than half of the patch pairs.
OBTUSE_SHARE_MIN = 0.5
# "The antisymmetric part outweighs the symmetric": ||M_asym||_F / ||M_sym||_F above 1.
ASYM_RATIO_MIN = 1.0
# "Dominated by a few singular values": the top 10% carry at least half of sum sigma^2.
TOP_DECILE_ENERGY_MIN = 0.5

Claim = namedtuple("Claim", "paper text statistic threshold")
_SHARE_RULE = f"observed >= {OBSERVED_SHARE:.2f}, partly >= {PARTLY_SHARE:.2f}"
_INTERVAL_SHARE_RULE = f"the whole interval: {_SHARE_RULE}; inconclusive if it spans a boundary"
_TREND = ("share of (site, sample set) pairs after the embedding that {} from the first to the last "
          "checkpoint; its interval runs from the pairs whose paired interval (Bonferroni over the pairs) "
          "surely {} to those that do not surely move the other way")
CLAIMS = {
    "tgo1.erank_rises": Claim("tgo1", "effective rank rises over training", _TREND.format("rise", "rise"),
                              _INTERVAL_SHARE_RULE),
    "tgo1.pr_rises": Claim("tgo1", "participation ratio rises over training", _TREND.format("rise", "rise"),
                           _INTERVAL_SHARE_RULE),
    "tgo1.entropy_rises": Claim("tgo1", "spectral entropy rises over training", _TREND.format("rise", "rise"),
                                _INTERVAL_SHARE_RULE),
    "tgo1.flatness_rises": Claim("tgo1", "spectral flatness rises over training", _TREND.format("rise", "rise"),
                                 _INTERVAL_SHARE_RULE),
    "tgo1.anisotropy_falls": Claim("tgo1", "anisotropy falls over training", _TREND.format("fall", "fall"),
                                   _INTERVAL_SHARE_RULE),
    "tgo1.final_cls_max_erank": Claim(
        "tgo1", "the final CLS representation has the highest effective rank in the network",
        "final-norm CLS effective rank minus each other site's (CLS, last checkpoint; paired intervals, "
        "Bonferroni over the sites); shown: the site whose interval reaches lowest", "> 0 at every site"),
    "tgo1.final_cls_min_anisotropy": Claim(
        "tgo1", "the final CLS representation has the lowest anisotropy in the network",
        "each other site's CLS anisotropy minus the final norm's (last checkpoint; paired intervals, "
        "Bonferroni over the sites); shown: the site whose interval reaches lowest", "> 0 at every site"),
    "info_geom.alpha_falls": Claim(
        "info_geom", "alpha signatures move from lower to higher effective dimensionality across blocks",
        "least-squares slope of the mean patch-token alpha on the block index (last checkpoint)", "< 0"),
    "info_geom.coherent_clusters": Claim(
        "info_geom", "tokens cluster by alpha signature into spatially coherent groups",
        "z of the share of grid-neighbour patches in one cluster against label permutations",
        f">= {COHERENCE_Z_MIN}"),
    "info_geom.u_shape": Claim(
        "info_geom", "mean inter-token correlation across blocks is U-shaped",
        "lowest interior block's mean r (patch tokens) minus the first block's and minus the last block's "
        "(paired intervals, Bonferroni over the two); shown: the end whose interval reaches highest", "< 0 for both"),
    "probing.mi_falls_with_distance": Claim(
        "probing", "MI between neurons falls with their distance on the patch grid",
        "share of (sublayer, block) pairs whose MI at the largest distance is below MI at distance 1",
        _SHARE_RULE),
    "probing.mi_faster_decay_later": Claim(
        "probing", "MI falls faster with distance in later blocks",
        "Spearman rho of the slope of log MI on distance with the block index", "< 0"),
    "probing.first_block_min_mi": Claim(
        "probing", "the first block has the lowest MI",
        "block 1's mean MI (over distances and sublayers) minus the lowest other block's", "< 0"),
    "probing.msym_pd": Claim(
        "probing", "M_sym = (W_Q W_K^T + its transpose)/2 is largely positive definite in every block",
        "lowest share of sum |lambda(M_sym)| carried by positive eigenvalues (heads together) over blocks",
        f"> {MSYM_POSITIVE_MASS_MIN}"),
    "probing.late_obtuse": Claim(
        "probing", "in later blocks most angles between patch vectors exceed 90 degrees",
        "share of patch pairs at more than 90 degrees in each block of the later half (intervals, Bonferroni over "
        "the blocks); shown: the block whose interval reaches lowest",
        f"> {OBTUSE_SHARE_MIN} in every block"),
    "probing.late_asym_dominates": Claim(
        "probing", "in later blocks the antisymmetric part of W_Q W_K^T outweighs the symmetric",
        "lowest ||M_asym||_F / ||M_sym||_F (heads together) over the later half of the blocks",
        f"> {ASYM_RATIO_MIN}"),
    "probing.early_attend_similar": Claim(
        "probing", "early blocks attend more to similar patches",
        "mean Spearman rho(angle, attention) over the first half of the blocks", "< 0"),
    "probing.late_attend_dissimilar": Claim(
        "probing", "late blocks attend more to dissimilar patches",
        "mean Spearman rho(angle, attention) over the later half of the blocks", "> 0"),
    "probing.last_block_sv_dominated": Claim(
        "probing", "the last block's QK singular values are dominated by a few",
        "share of sum sigma^2 of W_Q W_K^T (heads together) in its top 10% of singular values",
        f">= {TOP_DECILE_ENERGY_MIN}"),
}
TRAINING_TRENDS = {"tgo1.erank_rises": ("effective_rank", +1), "tgo1.pr_rises": ("participation_ratio", +1),
                   "tgo1.entropy_rises": ("spectral_entropy", +1), "tgo1.flatness_rises": ("spectral_flatness", +1),
                   "tgo1.anisotropy_falls": ("anisotropy", -1)}


MI_NO_INTERVAL = ("no interval: the delete-a-group jackknife overstates the KSG estimator's spread about "
                  "1.5-1.8x (a k-nearest-neighbour statistic is not smooth in the images; tests/test_stats.py), "
                  "so MI is decided on its point values")


def share_verdict(share):
    """The one meaning of "partly observed": for a claim tested on many cases, by the share that hold."""
    if not np.isfinite(share):
        return "not computable"
    if share >= OBSERVED_SHARE:
        return "observed"
    return "partly observed" if share >= PARTLY_SHARE else "not observed"


def share_interval_verdict(low, high):
    """A share known to lie in [low, high]: its verdict when both ends agree, else inconclusive."""
    a, b = share_verdict(low), share_verdict(high)
    return a if a == b else "inconclusive"


def holds(ok, value):
    """A single-statistic claim without an interval: observed when `ok` (the statistic on the claimed side)."""
    if not np.isfinite(value):
        return "not computable"
    return "observed" if ok else "not observed"


def side(low, high, threshold=0.0):
    """+1 when the interval lies above the threshold, -1 below, 0 when it straddles it."""
    return 1 if low > threshold else -1 if high < threshold else 0


def decide(low, high, sign, threshold=0.0):
    """Claim "statistic on the `sign` side of threshold" from its interval."""
    if not (np.isfinite(low) and np.isfinite(high)):
        return "not computable"
    return {sign: "observed", -sign: "not observed", 0: "inconclusive"}[side(low, high, threshold)]


def verdict(claim_id, value, label, evidence, ci=(np.nan, np.nan)):
    c = CLAIMS[claim_id]
    return {"id": claim_id, "paper": PAPERS[c.paper], "claim": c.text, "statistic": c.statistic,
            "threshold": c.threshold, "value": float(value), "ci_low": float(ci[0]), "ci_high": float(ci[1]),
            "verdict": label, "evidence": evidence}


def replicates(rows, keys, metric):
    """{(values of `keys`): the metric's jackknife replicates, array (G,) in group order}."""
    out = {}
    for r in rows:
        out.setdefault(tuple(r[k] for k in keys), []).append((r["group"], r[metric]))
    return {k: np.array([v for _, v in sorted(vals)], dtype=float) for k, vals in out.items()}


def _last(rows):
    last = max(r["epoch"] for r in rows)
    return last, [r for r in rows if r["epoch"] == last]


def _fmt(values, digits=2):
    return ", ".join(f"{v:.{digits}f}" for v in values)


def _ci(low, high, digits=3):
    return f"[{low:.{digits}g}, {high:.{digits}g}]"


def image_set(spectral_rows):
    """The sample set that stands for the image: the CLS token, or for a model without one the
    head's input ("pooled")."""
    return "cls" if any(r["sample_set"] == "cls" for r in spectral_rows) else "pooled"


def training_trends(spectral_rows, spectral_replicates, level=0.95):
    """TGO-I: effective rank, participation ratio, spectral entropy and flatness rise over training,
    anisotropy falls, at every (site, sample set) after the embedding. Per pair the paired interval
    of (last - first checkpoint) (same images at both) at the Bonferroni level over the pairs says
    whether it moves the claimed way, the other way or neither; the share of pairs that surely move
    the claimed way, with its interval [surely moving / n, not surely against / n], decides. Pairs
    with a missing value are left out."""
    out = []
    epochs = sorted({r["epoch"] for r in spectral_rows})
    first, last = epochs[0], epochs[-1]
    pairs = sorted({(r["site"], r["sample_set"]) for r in spectral_rows if r["site"] != "embed"})
    value = {(r["epoch"], r["site"], r["sample_set"]): r for r in spectral_rows}
    head = image_set(spectral_rows)
    for claim_id, (metric, sign) in TRAINING_TRENDS.items():
        reps = replicates(spectral_replicates, ("epoch", "site", "sample_set"), metric)
        diffs = []
        for site, sset in pairs if last != first else []:
            d = value[last, site, sset][metric] - value[first, site, sset][metric]
            r = reps[last, site, sset] - reps[first, site, sset]
            if np.isfinite(d) and np.all(np.isfinite(r)):
                diffs.append((site, sset, d, r))
        n = len(diffs)
        word = "rise" if sign > 0 else "fall"
        if not n:
            out.append(verdict(claim_id, np.nan, "not computable", "one checkpoint, or every value missing"))
            continue
        per_case = bonferroni(level, n)
        sides = [side(*interval(d, r, per_case)) * sign for _, _, d, r in diffs]
        sure, against = sides.count(1), sides.count(-1)
        low, high = sure / n, (n - against) / n
        moves = sum(sign * d > 0 for _, _, d, _ in diffs)
        final = next(((d, r) for site, sset, d, r in diffs if site == "final_norm" and sset == head), None)
        final_text = ""
        if final:
            lo, hi = interval(final[0], final[1], level)
            before, after = (value[e, "final_norm", head][metric] for e in (first, last))
            final_text = (f"; final-norm {head.upper() if head == 'cls' else head}: {before:.4g} -> {after:.4g}, "
                          f"change {final[0]:+.3g} {_ci(lo, hi)}")
        out.append(verdict(claim_id, moves / n, share_interval_verdict(low, high),
                           f"epoch {int(first)} -> {int(last)}: {sure}/{n} (site, sample set) pairs surely {word}, "
                           f"{against} surely move the other way, {n - sure - against} undecided ({per_case:.4f} "
                           f"intervals each, {level:.0%} together); {moves}/{n} {word} in point value" + final_text,
                           (low, high)))
    return out


def final_cls(spectral_rows, spectral_replicates, level=0.95):
    """TGO-I: the final CLS representation has the highest effective rank and the lowest anisotropy
    in the network: the CLS token across depth at the last checkpoint (same images at every depth,
    so the differences are paired), each other site's paired interval at the Bonferroni level over
    the sites; sites with a missing value (the embedding's constant CLS) left out. A model without a
    class token is judged on the head's input (`pooled`) at every site instead. Observed when every
    difference is surely positive, not observed when one is surely negative."""
    last, rows = _last(spectral_rows)
    head = image_set(spectral_rows)
    stand_in = "" if head == "cls" else " (no class token: the head's input stands in for CLS)"
    cls = [r for r in rows if r["sample_set"] == head and np.isfinite(r["effective_rank"])]
    final = next(r for r in cls if r["site"] == "final_norm")
    others = [r for r in cls if r["site"] != "final_norm"]
    per_case = bonferroni(level, len(others))
    out = []
    for claim_id, metric, sign in (("tgo1.final_cls_max_erank", "effective_rank", +1),
                                   ("tgo1.final_cls_min_anisotropy", "anisotropy", -1)):
        reps = replicates(spectral_replicates, ("epoch", "site", "sample_set"), metric)
        margins = []
        for r in others:
            d = sign * (final[metric] - r[metric])
            paired = sign * (reps[last, "final_norm", head] - reps[last, r["site"], head])
            margins.append((r["site"], d, interval(d, paired, per_case)))
        sides = [side(*ci) for _, _, ci in margins]
        label = "not observed" if -1 in sides else "observed" if all(x == 1 for x in sides) else "inconclusive"
        # The deciding comparison: the site whose interval reaches lowest, the likeliest to fail.
        site, margin, ci = min(margins, key=lambda m: m[2][0])
        out.append(verdict(claim_id, margin, label,
                           f"epoch {int(last)}{stand_in}: final-norm {final[metric]:.4g}; deciding site {site}, "
                           f"margin {margin:+.3g} {_ci(*ci)}; surely beaten by the final norm at {sides.count(1)}/"
                           f"{len(sides)} sites, surely beating it at {sides.count(-1)} ({per_case:.4f} intervals "
                           f"each); all: " + ", ".join(f"{r['site']} {r[metric]:.3g}" for r in cls), ci))
    return out


def _slope(x, y):
    """Least-squares slope of y (..., n) on x (n,)."""
    x = np.asarray(x, dtype=float) - np.mean(x)
    return (np.asarray(y, dtype=float) @ x) / (x @ x)


def alpha_falls(token_depth_rows, token_replicates, level=0.95):
    """On the Information Geometry of ViTs: alpha signatures move from lower to higher effective
    dimensionality across blocks, i.e. the mean patch-token alpha (the spectrum's decay) falls
    with depth: the least-squares slope of the mean patch alpha on the block index at the last
    checkpoint, with its jackknife interval (each replicate's slope)."""
    last, rows = _last(token_depth_rows)
    rows = sorted(rows, key=lambda r: r["depth"])
    alphas = np.array([r["patch_alpha_mean"] for r in rows])
    if not np.all(np.isfinite(alphas)) or len(rows) < 2:
        return verdict("info_geom.alpha_falls", np.nan, "not computable", "alpha missing (see tokens.json)")
    depths = [r["depth"] for r in rows]
    reps = replicates(token_replicates, ("epoch", "depth"), "patch_alpha_mean")
    slope = _slope(depths, alphas)
    ci = interval(slope, _slope(depths, np.array([reps[last, d] for d in depths]).T), level)
    return verdict("info_geom.alpha_falls", slope, decide(*ci, -1),
                   f"epoch {int(last)}, mean patch alpha per block: {_fmt(alphas)}; slope per block {slope:+.3g} "
                   f"{_ci(*ci)}", ci)


def coherent_clusters(coherence_rows):
    """On the Information Geometry of ViTs: tokens cluster by alpha signature into spatially
    coherent groups (grid neighbours share a cluster more often than under permuted labels).
    Decided by the permutation null; no interval over images (cluster labels are discrete, and a
    jackknife of them is not calibrated)."""
    if not coherence_rows:
        return verdict("info_geom.coherent_clusters", np.nan, "not computable", "no clustering (alpha missing)")
    c = max(coherence_rows, key=lambda r: r["epoch"])
    return verdict("info_geom.coherent_clusters", c["z"], holds(c["z"] >= COHERENCE_Z_MIN, c["z"]),
                   f"epoch {int(c['epoch'])}: neighbours share a cluster {c['neighbour_share']:.3f} vs permutation "
                   f"null {c['null_mean']:.3f} +- {c['null_std']:.3f}; z = {c['z']:.1f} (decided by the permutation "
                   "null: cluster labels are discrete, so no interval over images)")


def u_shape(corr_rows, corr_replicates, level=0.95):
    """On the Information Geometry of ViTs: the mean inter-token correlation across blocks is
    U-shaped: the lowest interior block's mean r lies below both the first and the last block's
    (patch tokens, last checkpoint; paired intervals at the Bonferroni level over the two)."""
    last, rows = _last(corr_rows)
    rows = sorted((r for r in rows if r["tokens"] == "patches" and r["site"].startswith("block_")),
                  key=lambda r: r["depth"])
    r = np.array([x["mean_r"] for x in rows])
    if len(r) < 3:
        return verdict("info_geom.u_shape", np.nan, "not computable", f"only {len(r)} blocks")
    reps = replicates(corr_replicates, ("epoch", "site", "tokens"), "mean_r")
    i = 1 + int(np.argmin(r[1:-1]))
    rep = [reps[last, x["site"], "patches"] for x in rows]
    ends = [interval(r[i] - r[j], rep[i] - rep[j], bonferroni(level, 2)) for j in (0, -1)]
    sides = [side(*ci) for ci in ends]
    label = "observed" if sides == [-1, -1] else "not observed" if 1 in sides else "inconclusive"
    j = int(np.argmax([ends[0][1], ends[1][1]]))  # the deciding end: its interval reaches highest
    return verdict("info_geom.u_shape", r[i] - r[[0, -1][j]], label,
                   f"epoch {int(last)}, mean r per block: {_fmt(r, 3)}; interior minimum {rows[i]['site']} "
                   f"({r[i]:.3f}) minus first {r[i] - r[0]:+.3f} {_ci(*ends[0])}, minus last {r[i] - r[-1]:+.3f} "
                   f"{_ci(*ends[1])}", ends[j])


def mi_claims(mi_rows):
    """Probing ViT attention: MI between a neuron and the same channel elsewhere falls with
    distance, faster in later blocks, and is lowest in the first block (MI(d) curves of the
    attention and MLP sublayers at the last checkpoint). Decided on point values (MI_NO_INTERVAL)."""
    last, rows = _last(mi_rows)
    depths = sorted({int(r["depth"]) for r in rows})
    falls, slopes = [], []
    for sub in sorted({r["sublayer"] for r in rows}):
        for b in depths:
            c = sorted((r["distance"], r["mi"]) for r in rows if r["sublayer"] == sub and r["depth"] == b)
            d, m = np.array([x[0] for x in c]), np.array([x[1] for x in c])
            falls.append(m[-1] < m[0])
            slopes.append((b, log_mi_slope(d, m)))
    share = float(np.mean(falls))
    finite = [(b, s) for b, s in slopes if np.isfinite(s)]
    rho = _rho([b for b, _ in finite], [s for _, s in finite]) if len(finite) > 2 else np.nan
    mean_mi = {b: float(np.mean([r["mi"] for r in rows if r["depth"] == b])) for b in depths}
    others = [v for b, v in mean_mi.items() if b != depths[0]]
    first_margin = mean_mi[depths[0]] - min(others) if others else np.nan
    return [
        verdict("probing.mi_falls_with_distance", share, share_verdict(share),
                f"epoch {int(last)}: MI at the largest distance below MI at distance 1 in "
                f"{sum(falls)}/{len(falls)} (sublayer, block) pairs; {MI_NO_INTERVAL}"),
        verdict("probing.mi_faster_decay_later", rho, holds(rho < 0, rho),
                f"epoch {int(last)}: Spearman rho of the log-MI slope with the block {rho:+.2f} "
                f"(negative = faster decay later); {MI_NO_INTERVAL}"),
        verdict("probing.first_block_min_mi", first_margin, holds(first_margin < 0, first_margin),
                f"epoch {int(last)}, mean MI per block: " + ", ".join(f"b{b} {v:.4f}" for b, v in mean_mi.items())
                + f"; {MI_NO_INTERVAL}"),
    ]


def _rho(x, y):
    """Spearman's rho; nan when either side is constant (where it is undefined)."""
    x, y = np.asarray(x, dtype=float), np.asarray(y, dtype=float)
    if len(x) < 2 or np.ptp(x) == 0 or np.ptp(y) == 0:
        return np.nan
    return float(spearmanr(x, y)[0])


QK_CLAIMS = ("probing.msym_pd", "probing.late_obtuse", "probing.late_asym_dominates", "probing.early_attend_similar",
             "probing.late_attend_dissimilar", "probing.last_block_sv_dominated")


def _spread(head_rows, key, depths):
    """The spread of a per-head value over the heads of the given blocks, in words."""
    v = [r[key] for r in head_rows if r["head"] != "all" and r["depth"] in depths]
    return f"per head min {min(v):.2f}, median {np.median(v):.2f}, max {max(v):.2f}" if v else ""


def qk_claims(head_rows, angle_rows, angle_replicates, skipped=None, level=0.95):
    """Probing ViT attention, QK structure (heads together) and angle vs attention at the last
    checkpoint: M_sym largely positive definite in every block; in the later half of the blocks
    most angles obtuse and M_asym outweighing M_sym; early blocks attending to similar patches,
    late blocks to dissimilar ones; the last block's singular values dominated by a few. The
    weight claims are exact for the checkpoint (their spread over heads is reported); the angle
    claims have jackknife intervals over the images (Bonferroni over the later blocks for the
    obtuse share). Not computable when the qk stage skipped the model (`skipped`: its reason)."""
    if skipped:
        return [verdict(c, np.nan, "not computable", f"qk skipped: {skipped}") for c in QK_CLAIMS]
    last, all_heads = _last(head_rows)
    heads = sorted((r for r in all_heads if r["head"] == "all"), key=lambda r: r["depth"])
    _, ang = _last(angle_rows)
    ang = sorted(ang, key=lambda r: r["depth"])
    n = len(heads)
    late = [r for r in heads if r["depth"] > n / 2]
    late_ang = [r for r in ang if r["depth"] > n / 2]
    early_ang = [r for r in ang if r["depth"] <= n / 2]
    late_blocks = [int(r["depth"]) for r in late]
    spearman = replicates(angle_replicates, ("epoch", "depth"), "spearman")
    obtuse_reps = replicates(angle_replicates, ("epoch", "depth"), "share_obtuse")

    def mean_rho(rows):
        if not rows:
            return np.nan, (np.nan, np.nan)
        value = float(np.mean([r["spearman"] for r in rows]))
        return value, interval(value, np.mean([spearman[last, r["depth"]] for r in rows], axis=0), level)

    early_rho, early_ci = mean_rho(early_ang)
    late_rho, late_ci = mean_rho(late_ang)
    per_case = bonferroni(level, len(late_ang))
    obtuse = [(r["share_obtuse"], interval(r["share_obtuse"], obtuse_reps[last, r["depth"]], per_case))
              for r in late_ang]
    sides = [side(*ci, OBTUSE_SHARE_MIN) for _, ci in obtuse]
    obtuse_label = "not observed" if -1 in sides else "observed" if all(x == 1 for x in sides) else "inconclusive"
    lowest = min(obtuse, key=lambda o: o[1][0])  # the deciding block: its interval reaches lowest
    mass = [r["sym_mass_positive"] for r in heads]
    ratio = [r["asym_sym_norm_ratio"] for r in late]
    rhos = f"Spearman rho(angle, attention) per block: {_fmt([r['spearman'] for r in ang])}"
    top = heads[-1]["top10pct_sv_energy_share"]
    exact = "exact for the checkpoint's weights"
    all_blocks = [int(r["depth"]) for r in heads]
    return [
        verdict("probing.msym_pd", min(mass), holds(min(mass) > MSYM_POSITIVE_MASS_MIN, min(mass)),
                f"epoch {int(last)}, positive share of sum |lambda(M_sym)| per block: {_fmt(mass)} ({exact}; "
                f"{_spread(all_heads, 'sym_mass_positive', all_blocks)})"),
        verdict("probing.late_obtuse", lowest[0], obtuse_label,
                f"blocks {late_blocks}: share of angles > 90 degrees "
                + ", ".join(f"{v:.2f} {_ci(*ci, 2)}" for v, ci in obtuse) + f" ({per_case:.4f} intervals each)",
                lowest[1]),
        verdict("probing.late_asym_dominates", min(ratio), holds(min(ratio) > ASYM_RATIO_MIN, min(ratio)),
                f"blocks {late_blocks}: ||M_asym|| / ||M_sym|| {_fmt(ratio)} ({exact}; "
                f"{_spread(all_heads, 'asym_sym_norm_ratio', late_blocks)})"),
        verdict("probing.early_attend_similar", early_rho, decide(*early_ci, -1),
                f"{rhos}; mean over the first half {early_rho:+.2f} {_ci(*early_ci, 2)}", early_ci),
        verdict("probing.late_attend_dissimilar", late_rho, decide(*late_ci, +1),
                f"{rhos}; mean over the later half {late_rho:+.2f} {_ci(*late_ci, 2)}", late_ci),
        verdict("probing.last_block_sv_dominated", top, holds(top >= TOP_DECILE_ENERGY_MIN, top),
                f"last block: top 10% of singular values carry {top:.2f} of sum sigma^2, sigma_1^2 alone "
                f"{heads[-1]['sv1_energy_share']:.2f} ({exact}; "
                f"{_spread(all_heads, 'top10pct_sv_energy_share', all_blocks[-1:])})"),
    ]


def judge(results, level=0.95):
    """The verdicts of every claim from a run's results (tgo.runs.results) with intervals at
    `level` (params ci.level): (spectral, token, probing) lists, in CLAIMS order."""
    r = results
    spectral = (training_trends(r["spectral_rows"], r["spectral_replicates"], level)
                + final_cls(r["spectral_rows"], r["spectral_replicates"], level))
    token = [alpha_falls(r["token_depth"], r["token_replicates"], level), coherent_clusters(r["coherence"]),
             u_shape(r["correlation"], r["correlation_replicates"], level)]
    probing = mi_claims(r["mi_distance"]) + qk_claims(r["qk_heads"], r["qk_angles"], r["qk_replicates"],
                                                      r["qk"].get("skipped"), level)
    return spectral, token, probing


def metrics(verdicts):
    """reports/metrics/verdicts.json: {paper: {claim: {statistic value, interval, verdict}}}, in CLAIMS
    order. A missing number (no interval, nothing computable) is null, not NaN: NaN never equals
    itself, so `dvc metrics diff` would list it as changed between two identical runs."""
    number = lambda x: float(x) if x is not None and np.isfinite(x) else None  # noqa: E731
    out = {}
    for v in verdicts:
        paper, name = v["id"].split(".")
        out.setdefault(paper, {})[name] = {"value": number(v["value"]), "ci_low": number(v["ci_low"]),
                                           "ci_high": number(v["ci_high"]), "verdict": v["verdict"]}
    return out


def markdown():
    """The "claims checked" table of README.md."""
    lines = ["| id | paper | claim | decided on | threshold |", "|---|---|---|---|---|"]
    lines += [f"| `{cid}` | {PAPERS[c.paper].split(':')[0].split(' (')[0]} | {c.text} | {c.statistic} | {c.threshold} |"
              for cid, c in CLAIMS.items()]
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    print(markdown(), end="")
