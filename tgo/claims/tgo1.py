"""TGO-I: spectral geometry of ViT representations through training (shared/seeds/001).

"A consistent increase in dimensional utilization, accompanied by decreasing anisotropy, increasing
spectral entropy, increasing participation ratio, and progressively flatter eigenspectra ...
particularly pronounced in the final CLS token representation, which exhibits the highest
effective dimensionality and lowest anisotropy within the network."

Numbers: the spectral stage's rows and jackknife replicates (reports/spectral/metrics.csv,
replicates.csv). Spectral entropy is the logarithm of the effective rank, so "entropy rises" and
"effective rank rises" are one claim, decided once (`tgo1.erank_rises`).
"""
import numpy as np

from tgo.activations import image_set
from tgo.claims.core import (NOT_APPLICABLE, Estimate, at, claim, fmt, fmt_ci, margins, missing,
                             share_interval_verdict, side, slope, stored_replicates)
from tgo.geometry.stats import bonferroni, interval

_TREND = ("per (site, sample set) after the embedding: the least-squares slope of the {metric} on the checkpoint's "
          "position in the schedule (0, 1, ..., K-1: every checkpoint weighs alike), with its jackknife interval; a "
          "pair {moves} when its slope surely does and no step between consecutive checkpoints surely goes the "
          "other way (Bonferroni over the pairs, and over pairs x steps); the statistic is the share of pairs that "
          "{moves}, with the interval [pairs that surely do, pairs that do not surely go the other way] / pairs")
_SHARE_RULE = "the whole share interval >= 2/3 (partly: between 1/3 and 2/3); inconclusive if it spans a boundary"
_OVER_TRAINING = "none: a change over the checkpoints of this run (the first is the untrained network)"


def trend(r, metric, sign, level):
    """A metric moving the `sign` way over training at every (site, sample set) after the embedding,
    read from every checkpoint (see _TREND)."""
    rows = r["spectral_rows"]
    reps = stored_replicates(r["spectral_replicates"], ("epoch", "site", "sample_set"), metric)
    epochs = sorted({x["epoch"] for x in rows})
    if len(epochs) < 2:
        return Estimate(np.nan, NOT_APPLICABLE, "one checkpoint: nothing to follow over training")
    value = {(x["epoch"], x["site"], x["sample_set"]): x[metric] for x in rows}
    pairs = sorted({(x["site"], x["sample_set"]) for x in rows if x["site"] != "embed"})
    position = np.arange(len(epochs))
    cases = []
    for site, sset in pairs:
        if any((e, site, sset) not in reps for e in epochs):
            continue
        v = np.array([value[e, site, sset] for e in epochs])
        rep = np.array([reps[e, site, sset] for e in epochs])
        if np.all(np.isfinite(v)) and np.all(np.isfinite(rep)):
            cases.append((site, sset, v, rep))
    n = len(cases)
    word = "rise" if sign > 0 else "fall"
    if not n:
        return missing("every value missing")
    slope_level, step_level = bonferroni(level, n), bonferroni(level, n * (len(epochs) - 1))
    sides, slopes = [], []
    for site, sset, v, rep in cases:
        b = slope(position, v)
        s = side(*interval(b, slope(position, rep.T), slope_level)) * sign
        against = any(side(*interval(v[k + 1] - v[k], rep[k + 1] - rep[k], step_level)) * sign == -1
                      for k in range(len(epochs) - 1))
        sides.append(1 if s == 1 and not against else -1 if s == -1 else 0)
        slopes.append(b)
    sure, other = sides.count(1), sides.count(-1)
    share = (sure / n, (n - other) / n)
    head = image_set({x["sample_set"] for x in rows})
    final = next((c for c in cases if c[0] == "final_norm" and c[1] == head), None)
    text = ""
    if final:
        b = slope(position, final[2])
        text = (f"; final-norm {head}: {fmt(final[2], 4)}, slope {b:+.3g} "
                f"{fmt_ci(interval(b, slope(position, final[3].T), level))} per checkpoint")
    moves = sum(sign * b > 0 for b in slopes)
    return Estimate(moves / n, share_interval_verdict(*share),
                    f"epochs {[int(e) for e in epochs]}: {sure}/{n} (site, sample set) pairs surely {word} over the "
                    f"schedule with no step against, {other} surely go the other way, {n - sure - other} undecided "
                    f"({slope_level:.4f} intervals per slope); {moves}/{n} {word} in point value" + text, share)


@claim("tgo1.erank_rises", sign=+1, over_training=True, null=_OVER_TRAINING, rule=_SHARE_RULE,
       text="effective rank rises over training (spectral entropy, its logarithm, with it: one claim)",
       statistic=_TREND.format(metric="effective rank", moves="rises"))
def erank_rises(r, level):
    return trend(r, "effective_rank", +1, level)


@claim("tgo1.pr_rises", sign=+1, over_training=True, null=_OVER_TRAINING, rule=_SHARE_RULE,
       text="participation ratio rises over training",
       statistic=_TREND.format(metric="participation ratio", moves="rises"))
def pr_rises(r, level):
    return trend(r, "participation_ratio", +1, level)


@claim("tgo1.flatness_rises", sign=+1, over_training=True, null=_OVER_TRAINING, rule=_SHARE_RULE,
       text="eigenspectra grow flatter over training (spectral flatness rises)",
       statistic=_TREND.format(metric="spectral flatness", moves="rises"))
def flatness_rises(r, level):
    return trend(r, "spectral_flatness", +1, level)


@claim("tgo1.anisotropy_falls", sign=-1, over_training=True, null=_OVER_TRAINING, rule=_SHARE_RULE,
       text="anisotropy falls over training",
       statistic=_TREND.format(metric="anisotropy", moves="falls"))
def anisotropy_falls(r, level):
    return trend(r, "anisotropy", -1, level)


_FINAL = ("{what} of the CLS token (residual stream, like every site it is compared with), paired intervals "
          "at the Bonferroni level over the blocks; shown: the block whose interval reaches lowest. The final norm (a "
          "LayerNorm output, not the residual stream) is its own labelled row in the evidence, not compared. A model "
          "without a class token: the head's input stands in")


def final_cls(r, epoch, metric, sign, level):
    """The final CLS representation (the residual stream after the last block) against every
    earlier block's, at one checkpoint; the embedding's CLS is one vector for every image (no
    spectrum) and the final norm a LayerNorm output, so neither is compared."""
    rows = r["spectral_rows"]
    head = image_set({x["sample_set"] for x in rows})
    stand_in = "" if head == "cls" else " (no class token: the head's input stands in for CLS)"
    cls = {x["site"]: x for x in at(rows, epoch, sample_set=head)}
    blocks = sorted((s for s in cls if s.startswith("block_") and np.isfinite(cls[s][metric])),
                    key=lambda s: cls[s]["depth"])
    if len(blocks) < 2:
        return missing(f"{len(blocks)} block(s) with a value{stand_in}")
    reps = stored_replicates(at(r["spectral_replicates"], epoch, sample_set=head), ("site",), metric)
    values = {s: cls[s][metric] for s in blocks}
    (site, margin, ci, rep), label, out, per_case = margins(values, {s: reps[(s,)] for s in blocks}, blocks[-1],
                                                            blocks[:-1], sign, level)
    final_norm = cls.get("final_norm", {}).get(metric, np.nan)
    return Estimate(margin, label,
                    f"epoch {int(epoch)}{stand_in}: {blocks[-1]} {values[blocks[-1]]:.4g}; deciding {site}, margin "
                    f"{margin:+.3g} {fmt_ci(ci)}; surely beaten at {sum(side(*c) == 1 for _, _, c, _ in out)}/"
                    f"{len(out)} blocks, surely beating it at {sum(side(*c) == -1 for _, _, c, _ in out)} "
                    f"({per_case:.4f} intervals each); all: " + ", ".join(f"{s} {values[s]:.3g}" for s in blocks)
                    + f"; final norm (LayerNorm output, not compared) {final_norm:.3g}", ci, rep)


@claim("tgo1.final_cls_max_erank", sign=+1, rule="> 0 at every earlier block",
       text="the final CLS representation has the highest effective rank in the network",
       statistic=_FINAL.format(what="the last block's effective rank minus each earlier block's"))
def final_cls_max_erank(r, epoch, level):
    return final_cls(r, epoch, "effective_rank", +1, level)


@claim("tgo1.final_cls_min_anisotropy", sign=+1, rule="> 0 at every earlier block",
       text="the final CLS representation has the lowest anisotropy in the network",
       statistic=_FINAL.format(what="each earlier block's anisotropy minus the last block's"))
def final_cls_min_anisotropy(r, epoch, level):
    return final_cls(r, epoch, "anisotropy", -1, level)

