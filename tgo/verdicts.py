"""Verdicts on the papers' claims, computed from a run's numbers: pure functions, no figures.

Every claim has a stable id (`CLAIMS`), one deciding statistic and a threshold (named constants
below, each with its reason). A verdict is one of
  observed         the statistic is on the claimed side of its threshold;
  partly observed  only for claims about many cases (sites, blocks): the claim holds in at least
                   PARTLY_SHARE but fewer than OBSERVED_SHARE of them;
  not observed     otherwise;
  not computable   the statistic is missing (e.g. alpha outside the spectrum's rank).
`metrics(verdicts)` is reports/metrics/verdicts.json: per claim its statistic and its label, so
`dvc exp show` and `dvc metrics diff` show a claim flipping between experiments.

The rows are those of the analysis stages' CSV files (reports/<stage>/), numbers as floats; every
claim is judged at the last checkpoint unless it is about training.

``python -m tgo.verdicts`` prints the "claims checked" table of README.md (a test keeps them equal).
"""
from collections import namedtuple

import numpy as np
from scipy.stats import spearmanr

from tgo.geometry.information import log_mi_slope

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
# "Falls with depth": Spearman rho of alpha with the block index at most -0.5, a strong monotone
# trend rather than a dip at one block.
ALPHA_RHO_MAX = -0.5
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
_TREND = ("share of (site, sample set) pairs after the embedding whose value at the last checkpoint is "
          "{} than at the first")
CLAIMS = {
    "tgo1.erank_rises": Claim("tgo1", "effective rank rises over training", _TREND.format("higher"), _SHARE_RULE),
    "tgo1.pr_rises": Claim("tgo1", "participation ratio rises over training", _TREND.format("higher"),
                           _SHARE_RULE),
    "tgo1.entropy_rises": Claim("tgo1", "spectral entropy rises over training", _TREND.format("higher"),
                                _SHARE_RULE),
    "tgo1.flatness_rises": Claim("tgo1", "spectral flatness rises over training", _TREND.format("higher"),
                                 _SHARE_RULE),
    "tgo1.anisotropy_falls": Claim("tgo1", "anisotropy falls over training", _TREND.format("lower"), _SHARE_RULE),
    "tgo1.final_cls_max_erank": Claim(
        "tgo1", "the final CLS representation has the highest effective rank in the network",
        "final-norm CLS effective rank minus the highest other site's (CLS, last checkpoint)", "> 0"),
    "tgo1.final_cls_min_anisotropy": Claim(
        "tgo1", "the final CLS representation has the lowest anisotropy in the network",
        "lowest other site's CLS anisotropy minus the final norm's (last checkpoint)", "> 0"),
    "info_geom.alpha_falls": Claim(
        "info_geom", "alpha signatures move from lower to higher effective dimensionality across blocks",
        "Spearman rho of the mean patch-token alpha with the block index", f"<= {ALPHA_RHO_MAX}"),
    "info_geom.coherent_clusters": Claim(
        "info_geom", "tokens cluster by alpha signature into spatially coherent groups",
        "z of the share of grid-neighbour patches in one cluster against label permutations",
        f">= {COHERENCE_Z_MIN}"),
    "info_geom.u_shape": Claim(
        "info_geom", "mean inter-token correlation across blocks is U-shaped",
        "lowest interior block's mean r (patch tokens) minus the lower of the first and last block's", "< 0"),
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
        "lowest share of patch pairs at more than 90 degrees over the later half of the blocks",
        f"> {OBTUSE_SHARE_MIN}"),
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


def share_verdict(share):
    """The one meaning of "partly observed": for a claim tested on many cases, by the share that hold."""
    if not np.isfinite(share):
        return "not computable"
    if share >= OBSERVED_SHARE:
        return "observed"
    return "partly observed" if share >= PARTLY_SHARE else "not observed"


def holds(ok, value):
    """A single-statistic claim: observed when `ok` (the statistic on the claimed side)."""
    if not np.isfinite(value):
        return "not computable"
    return "observed" if ok else "not observed"


def verdict(claim_id, value, label, evidence):
    c = CLAIMS[claim_id]
    return {"id": claim_id, "paper": PAPERS[c.paper], "claim": c.text, "statistic": c.statistic,
            "threshold": c.threshold, "value": float(value), "verdict": label, "evidence": evidence}


def _last(rows):
    last = max(r["epoch"] for r in rows)
    return last, [r for r in rows if r["epoch"] == last]


def _rho(x, y):
    """Spearman's rho; nan when either side is constant (where it is undefined)."""
    x, y = np.asarray(x, dtype=float), np.asarray(y, dtype=float)
    if len(x) < 2 or np.ptp(x) == 0 or np.ptp(y) == 0:
        return np.nan
    return float(spearmanr(x, y)[0])


def _fmt(values, digits=2):
    return ", ".join(f"{v:.{digits}f}" for v in values)


def _series(rows, site, sample_set, metric):
    pts = sorted((r["epoch"], r[metric]) for r in rows if r["site"] == site and r["sample_set"] == sample_set)
    return np.array([p[0] for p in pts]), np.array([p[1] for p in pts])


def image_set(spectral_rows):
    """The sample set that stands for the image: the CLS token, or for a model without one the
    head's input ("pooled")."""
    return "cls" if any(r["sample_set"] == "cls" for r in spectral_rows) else "pooled"


def training_trends(spectral_rows):
    """TGO-I: effective rank, participation ratio, spectral entropy and flatness rise over training,
    anisotropy falls, at every (site, sample set) after the embedding; judged by the share of pairs
    whose last-checkpoint value lies on the claimed side of the first (pairs with a missing value
    are left out). The evidence adds the median Spearman rho with the epoch."""
    out = []
    pairs = sorted({(r["site"], r["sample_set"]) for r in spectral_rows if r["site"] != "embed"})
    for claim_id, (metric, sign) in TRAINING_TRENDS.items():
        moves, rhos, n = 0, [], 0
        for site, sset in pairs:
            epochs, values = _series(spectral_rows, site, sset, metric)
            if len(values) < 2 or not np.all(np.isfinite(values)):
                continue
            n += 1
            moves += int(sign * (values[-1] - values[0]) > 0)
            rho = _rho(epochs, values)
            if np.isfinite(rho):
                rhos.append(rho)
        share = moves / n if n else np.nan
        head = image_set(spectral_rows)
        e, cls = _series(spectral_rows, "final_norm", head, metric)
        word = "rise" if sign > 0 else "fall"
        out.append(verdict(claim_id, share, share_verdict(share),
                           f"{moves}/{n} (site, sample set) pairs {word} from epoch {int(e[0])} to {int(e[-1])}; "
                           f"median Spearman rho with epoch {np.median(rhos) if rhos else np.nan:+.2f}; "
                           f"final-norm {head.upper() if head == 'cls' else head}: {cls[0]:.4g} -> {cls[-1]:.4g}"))
    return out


def final_cls(spectral_rows):
    """TGO-I: the final CLS representation has the highest effective rank and the lowest anisotropy
    in the network: the CLS token across depth at the last checkpoint (same images, same sample
    count at every depth); sites with a missing value (the embedding's constant CLS) left out. A
    model without a class token is judged on the head's input (`pooled`) at every site instead."""
    last, rows = _last(spectral_rows)
    head = image_set(spectral_rows)
    stand_in = "" if head == "cls" else " (no class token: the head's input stands in for CLS)"
    cls = [r for r in rows if r["sample_set"] == head and np.isfinite(r["effective_rank"])]
    final = next(r for r in cls if r["site"] == "final_norm")
    others = [r for r in cls if r["site"] != "final_norm"]
    out = []
    for claim_id, metric, sign in (("tgo1.final_cls_max_erank", "effective_rank", +1),
                                   ("tgo1.final_cls_min_anisotropy", "anisotropy", -1)):
        best = max(others, key=lambda r: sign * r[metric])
        margin = sign * (final[metric] - best[metric])
        out.append(verdict(claim_id, margin, holds(margin > 0, margin),
                           f"epoch {int(last)}{stand_in}: final-norm {final[metric]:.4g}; best other site "
                           f"{best['site']} {best[metric]:.4g}; all: "
                           + ", ".join(f"{r['site']} {r[metric]:.3g}" for r in cls)))
    return out


def alpha_falls(token_depth_rows):
    """On the Information Geometry of ViTs: alpha signatures move from lower to higher effective
    dimensionality across blocks, i.e. the mean patch-token alpha (the spectrum's decay) falls
    with depth."""
    last, rows = _last(token_depth_rows)
    rows = sorted(rows, key=lambda r: r["depth"])
    alphas = np.array([r["patch_alpha_mean"] for r in rows])
    if not np.all(np.isfinite(alphas)):
        return verdict("info_geom.alpha_falls", np.nan, "not computable", "alpha missing (see tokens.json)")
    rho = _rho([r["depth"] for r in rows], alphas)
    rho = 0.0 if np.ptp(alphas) == 0 else rho  # a flat profile does not fall
    return verdict("info_geom.alpha_falls", rho, holds(rho <= ALPHA_RHO_MAX, rho),
                   f"epoch {int(last)}, mean patch alpha per block: {_fmt(alphas)}; Spearman rho {rho:+.2f}")


def coherent_clusters(coherence_rows):
    """On the Information Geometry of ViTs: tokens cluster by alpha signature into spatially
    coherent groups (grid neighbours share a cluster more often than under permuted labels)."""
    if not coherence_rows:
        return verdict("info_geom.coherent_clusters", np.nan, "not computable", "no clustering (alpha missing)")
    c = max(coherence_rows, key=lambda r: r["epoch"])
    return verdict("info_geom.coherent_clusters", c["z"], holds(c["z"] >= COHERENCE_Z_MIN, c["z"]),
                   f"epoch {int(c['epoch'])}: neighbours share a cluster {c['neighbour_share']:.3f} vs permutation "
                   f"null {c['null_mean']:.3f} +- {c['null_std']:.3f}; z = {c['z']:.1f}")


def u_shape(corr_rows):
    """On the Information Geometry of ViTs: the mean inter-token correlation across blocks is
    U-shaped: an interior block's mean r lies below both the first and the last block's (patch
    tokens)."""
    last, rows = _last(corr_rows)
    rows = sorted((r for r in rows if r["tokens"] == "patches" and r["site"].startswith("block_")),
                  key=lambda r: r["depth"])
    r = np.array([x["mean_r"] for x in rows])
    if len(r) < 3:
        return verdict("info_geom.u_shape", np.nan, "not computable", f"only {len(r)} blocks")
    i = 1 + int(np.argmin(r[1:-1]))
    margin = r[i] - min(r[0], r[-1])
    return verdict("info_geom.u_shape", margin, holds(margin < 0, margin),
                   f"epoch {int(last)}, mean r per block: {_fmt(r, 3)}; interior minimum {rows[i]['site']} "
                   f"({r[i]:.3f}) vs first {r[0]:.3f}, last {r[-1]:.3f}")


def mi_claims(mi_rows):
    """Probing ViT attention: MI between a neuron and the same channel elsewhere falls with
    distance, faster in later blocks, and is lowest in the first block (MI(d) curves of the
    attention and MLP sublayers at the last checkpoint)."""
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
                f"{sum(falls)}/{len(falls)} (sublayer, block) pairs"),
        verdict("probing.mi_faster_decay_later", rho, holds(rho < 0, rho),
                f"epoch {int(last)}: Spearman rho of the log-MI slope with the block {rho:+.2f} "
                "(negative = faster decay later)"),
        verdict("probing.first_block_min_mi", first_margin, holds(first_margin < 0, first_margin),
                f"epoch {int(last)}, mean MI per block: " + ", ".join(f"b{b} {v:.4f}" for b, v in mean_mi.items())),
    ]


QK_CLAIMS = ("probing.msym_pd", "probing.late_obtuse", "probing.late_asym_dominates", "probing.early_attend_similar",
             "probing.late_attend_dissimilar", "probing.last_block_sv_dominated")


def qk_claims(head_rows, angle_rows, skipped=None):
    """Probing ViT attention, QK structure (heads together) and angle vs attention at the last
    checkpoint: M_sym largely positive definite in every block; in the later half of the blocks
    most angles obtuse and M_asym outweighing M_sym; early blocks attending to similar patches,
    late blocks to dissimilar ones; the last block's singular values dominated by a few. Not
    computable when the qk stage skipped the model (`skipped`: its reason)."""
    if skipped:
        return [verdict(c, np.nan, "not computable", f"qk skipped: {skipped}") for c in QK_CLAIMS]
    last, heads = _last(head_rows)
    heads = sorted((r for r in heads if r["head"] == "all"), key=lambda r: r["depth"])
    _, ang = _last(angle_rows)
    ang = sorted(ang, key=lambda r: r["depth"])
    n = len(heads)
    late = [r for r in heads if r["depth"] > n / 2]
    late_ang = [r for r in ang if r["depth"] > n / 2]
    early_ang = [r for r in ang if r["depth"] <= n / 2]
    mass = [r["sym_mass_positive"] for r in heads]
    obtuse = [r["share_obtuse"] for r in late_ang]
    ratio = [r["asym_sym_norm_ratio"] for r in late]
    early_rho = float(np.mean([r["spearman"] for r in early_ang])) if early_ang else np.nan
    late_rho = float(np.mean([r["spearman"] for r in late_ang]))
    rhos = f"Spearman rho(angle, attention) per block: {_fmt([r['spearman'] for r in ang])}"
    top = heads[-1]["top10pct_sv_energy_share"]
    late_blocks = [int(r["depth"]) for r in late]
    return [
        verdict("probing.msym_pd", min(mass), holds(min(mass) > MSYM_POSITIVE_MASS_MIN, min(mass)),
                f"epoch {int(last)}, positive share of sum |lambda(M_sym)| per block: {_fmt(mass)}"),
        verdict("probing.late_obtuse", min(obtuse), holds(min(obtuse) > OBTUSE_SHARE_MIN, min(obtuse)),
                f"blocks {late_blocks}: share of angles > 90 degrees {_fmt(obtuse)}"),
        verdict("probing.late_asym_dominates", min(ratio), holds(min(ratio) > ASYM_RATIO_MIN, min(ratio)),
                f"blocks {late_blocks}: ||M_asym|| / ||M_sym|| {_fmt(ratio)}"),
        verdict("probing.early_attend_similar", early_rho, holds(early_rho < 0, early_rho),
                f"{rhos}; mean over the first half {early_rho:+.2f}"),
        verdict("probing.late_attend_dissimilar", late_rho, holds(late_rho > 0, late_rho),
                f"{rhos}; mean over the later half {late_rho:+.2f}"),
        verdict("probing.last_block_sv_dominated", top, holds(top >= TOP_DECILE_ENERGY_MIN, top),
                f"last block: top 10% of singular values carry {top:.2f} of sum sigma^2, sigma_1^2 alone "
                f"{heads[-1]['sv1_energy_share']:.2f}"),
    ]


def judge(results):
    """The verdicts of every claim from a run's results (tgo.runs.results): (spectral, token,
    probing) lists, in CLAIMS order."""
    r = results
    spectral = training_trends(r["spectral_rows"]) + final_cls(r["spectral_rows"])
    token = [alpha_falls(r["token_depth"]), coherent_clusters(r["coherence"]), u_shape(r["correlation"])]
    probing = mi_claims(r["mi_distance"]) + qk_claims(r["qk_heads"], r["qk_angles"], r["qk"].get("skipped"))
    return spectral, token, probing


def metrics(verdicts):
    """reports/metrics/verdicts.json: {paper: {claim: {statistic value, verdict}}}, in CLAIMS order."""
    out = {}
    for v in verdicts:
        paper, name = v["id"].split(".")
        out.setdefault(paper, {})[name] = {"value": v["value"], "verdict": v["verdict"]}
    return out


def markdown():
    """The "claims checked" table of README.md."""
    lines = ["| id | paper | claim | decided on | threshold |", "|---|---|---|---|---|"]
    lines += [f"| `{cid}` | {PAPERS[c.paper].split(':')[0].split(' (')[0]} | {c.text} | {c.statistic} | {c.threshold} |"
              for cid, c in CLAIMS.items()]
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    print(markdown(), end="")
