"""Probing Vision Transformer Attention: Image Statistics and Patch Similarity (Philip, Pan &
Schwartz; shared/seeds/002).

"The mutual information is higher for later layer neurons and drops off faster with spatial
distance (except the first layer which has significantly lower mutual information) ... first layer
neurons' [activations] were more narrow with a higher kurtosis ... M_sym was largely positive
definite in every MHA layer ... The embedding angle was dominated by values higher than 90 degrees
in later layers. This also corresponded to ... the antisymmetric [part] being larger than ... the
symmetric ... attention is higher in early layers between similar patches, while later layer
attention highlights dissimilarity ... the last layer has dominating principal singular values"
(against "the singular value decay of most layers is relatively slow").

Numbers: the mi stage (MI(d) curves, excess kurtosis, and their half-sample replicates) and the qk
stage (heads-together QK spectra with a delete-one-head jackknife; angle vs attention with a
jackknife over images, on norm1's output with its bias beta removed, today's vectors beside).
The blocks' "first half" and "later half": depth <= B/2 and depth > B/2.
"""
import numpy as np

from tgo.claims.core import (Estimate, all_hold, at, claim, decide, fmt, fmt_ci, margins, missing, side, slope,
                             stored_replicates)
from tgo.geometry.stats import half_sample_interval, interval

# "Most angles exceed 90 degrees": more than half of the patch pairs (beyond the interval).
OBTUSE_SHARE_MIN = 0.5
# "Largely positive definite": positive eigenvalues of M_sym carry more than half of sum |lambda|,
# beyond the spread over heads. Random W_Q, W_K give 0.5 on average (M -> -M is as likely), so the
# point value alone would be met by chance half the time.
MSYM_POSITIVE_MASS_MIN = 0.5
# "The antisymmetric part outweighs the symmetric": ||M_asym||_F / ||M_sym||_F above 1 beyond the
# spread over heads (independent random W_Q, W_K give about 1).
ASYM_RATIO_MIN = 1.0

_HALF = "half-sample intervals over the probe images (mi stage; README: How sure a number is)"
_HEADS = "delete-one-head jackknife interval (the same head left out of every block)"


# --- MI and kurtosis ---------------------------------------------------------------------------------

def mi_curves(r, epoch):
    """{(sublayer, depth): (distances, MI curve, half-sample replicates (R, distances))} at a
    checkpoint; None where the mi stage wrote no curves or no replicates for it."""
    reps = stored_replicates(at(r["mi_replicates"], epoch), ("sublayer", "depth", "distance"), "mi")
    out = {}
    for sub, depth in sorted({(x["sublayer"], x["depth"]) for x in at(r["mi_distance"], epoch)}):
        c = sorted((x["distance"], x["mi"]) for x in at(r["mi_distance"], epoch, sublayer=sub, depth=depth))
        d = np.array([x[0] for x in c])
        if any((sub, depth, x) not in reps for x in d):
            return None
        out[sub, depth] = (d, np.array([x[1] for x in c]), np.array([reps[sub, depth, x] for x in d]).T)
    return out or None


def mi_decay(r, epoch):
    """{(sublayer, depth): (MI decay rate, its half-sample replicates (R,))} at a checkpoint, as the
    mi stage computed them (decay.csv); None where it wrote no replicates for that checkpoint."""
    reps = stored_replicates(at(r["mi_decay_replicates"], epoch), ("sublayer", "depth"), "mi_decay_rate")
    rows = {(x["sublayer"], x["depth"]): x["mi_decay_rate"] for x in at(r["mi_decay"], epoch)}
    if not rows or any(k not in reps for k in rows):
        return None
    return {k: (rows[k], reps[k]) for k in sorted(rows)}


def _undefined(rep):
    """Why a half-sample interval is missing: the decay rate is undefined in some halves."""
    bad = int(np.sum(~np.isfinite(rep)))
    return (f"; no interval: undefined in {bad} of {len(rep)} half-samples (MI at the nearest distance <= 0 there: "
            "too few images per half)") if bad else ""


def _no_replicates(epoch):
    return missing(f"no MI curves with half-sample replicates at epoch {int(epoch)} (mi stage)")


@claim("probing.mi_falls_with_distance", sign=+1, rule="> 0 (the whole interval)",
       text="MI between neurons falls with their distance on the patch grid",
       statistic="MI decay rate (minus the least-squares slope of MI on distance over every distance, divided by MI "
                 f"at the nearest: the share of it lost per patch), averaged over (sublayer, block); {_HALF}")
def mi_falls_with_distance(r, epoch, level):
    rates = mi_decay(r, epoch)
    if rates is None:
        return _no_replicates(epoch)
    value = float(np.mean([v for v, _ in rates.values()]))
    rep = np.mean([x for _, x in rates.values()], axis=0)
    ci = half_sample_interval(value, rep, level)
    per_block = ", ".join(f"{s} b{int(b)} {v:.3f}" for (s, b), (v, _) in rates.items())
    return Estimate(value, decide(*ci, +1), f"epoch {int(epoch)}: mean decay rate {value:.3f} {fmt_ci(ci)}; per "
                    f"(sublayer, block): {per_block}{_undefined(rep)}", ci, rep, "half")


def _later_trend(per_block, level, epoch, what):
    """The least-squares slope on depth, over blocks 2..B (the first block is its own claim), of a
    per-block value ({(sublayer, depth): (value, half-sample replicates)}) per sublayer, averaged
    over the sublayers, with its half-sample interval."""
    subs = sorted({s for s, _ in per_block})
    depths = sorted({b for _, b in per_block})[1:]
    if len(depths) < 2:
        return missing("fewer than 2 blocks after the first")
    values = {s: np.array([per_block[s, b][0] for b in depths]) for s in subs}
    reps = {s: np.array([per_block[s, b][1] for b in depths]) for s in subs}
    value = float(np.mean([slope(depths, values[s]) for s in subs]))
    rep = np.mean([slope(depths, reps[s].T) for s in subs], axis=0)
    ci = half_sample_interval(value, rep, level)
    words = "; ".join(f"{s}: " + ", ".join(f"b{int(b)} {v:.3g}" for b, v in zip(depths, values[s])) for s in subs)
    return Estimate(value, decide(*ci, +1), f"epoch {int(epoch)}, {what}: {words}{_undefined(rep)}; slope per "
                    f"block {value:+.3g} {fmt_ci(ci)}", ci, rep, "half")


@claim("probing.mi_near_higher_later", sign=+1, rule="> 0 (the whole interval)",
       text="later blocks have higher MI between nearby patches",
       statistic=f"least-squares slope of MI at the nearest distance on the block index over blocks 2..B (the first "
                 f"block is its own claim), averaged over the sublayers; {_HALF}")
def mi_near_higher_later(r, epoch, level):
    curves = mi_curves(r, epoch)
    if curves is None:
        return _no_replicates(epoch)
    return _later_trend({k: (m[0], rep[:, 0]) for k, (d, m, rep) in curves.items()}, level, epoch,
                        "MI at the nearest distance")


@claim("probing.mi_faster_decay_later", sign=+1, rule="> 0 (the whole interval)",
       text="MI falls faster with distance in later blocks",
       statistic=f"least-squares slope of the MI decay rate (see mi_falls_with_distance) on the block index over "
                 f"blocks 2..B, averaged over the sublayers; {_HALF}")
def mi_faster_decay_later(r, epoch, level):
    rates = mi_decay(r, epoch)
    if rates is None:
        return _no_replicates(epoch)
    return _later_trend(rates, level, epoch, "decay rate")


def _first_block_against_others(values, reps, sign, level, what, epoch):
    blocks = sorted(values)
    if len(blocks) < 2:
        return missing("one block")
    (other, margin, ci, rep), label, out, per_case = margins(values, reps, blocks[0], blocks[1:], sign, level, "half")
    return Estimate(margin, label, f"epoch {int(epoch)}, {what} per block: "
                    + ", ".join(f"b{int(b)} {values[b]:.4g}" for b in blocks)
                    + f"; deciding b{int(other)}, margin {margin:+.3g} {fmt_ci(ci)} ({per_case:.4f} intervals each)",
                    ci, rep, "half")


@claim("probing.first_block_min_mi", sign=+1, rule="> 0 against every other block",
       text="the first block has the lowest MI",
       statistic=f"each other block's mean MI (over distances and sublayers) minus block 1's, paired intervals at the "
                 f"Bonferroni level over the other blocks; shown: the block whose interval reaches lowest; {_HALF}")
def first_block_min_mi(r, epoch, level):
    curves = mi_curves(r, epoch)
    if curves is None:
        return _no_replicates(epoch)
    blocks = sorted({b for _, b in curves})
    values = {b: float(np.mean([curves[k][1].mean() for k in curves if k[1] == b])) for b in blocks}
    reps = {b: np.mean([curves[k][2].mean(axis=1) for k in curves if k[1] == b], axis=0) for b in blocks}
    return _first_block_against_others(values, reps, -1, level, "mean MI", epoch)


@claim("probing.first_block_most_kurtotic", sign=+1, rule="> 0 against every other block",
       text="first-block neurons are more kurtotic (narrower, heavier-tailed) than later ones",
       statistic=f"block 1's mean excess kurtosis (over neurons and sublayers) minus each other block's, paired "
                 f"intervals at the Bonferroni level over the other blocks; shown: the block whose interval reaches "
                 f"lowest; {_HALF}")
def first_block_most_kurtotic(r, epoch, level):
    rows = at(r["kurtosis"], epoch)
    reps = stored_replicates(at(r["kurtosis_replicates"], epoch), ("sublayer", "depth"), "kurtosis_mean")
    if not rows or any((x["sublayer"], x["depth"]) not in reps for x in rows):
        return missing(f"no half-sample replicates of kurtosis at epoch {int(epoch)} (mi stage)")
    blocks = sorted({x["depth"] for x in rows})
    values = {b: float(np.mean([x["kurtosis_mean"] for x in rows if x["depth"] == b])) for b in blocks}
    rep = {b: np.mean([reps[x["sublayer"], b] for x in rows if x["depth"] == b], axis=0) for b in blocks}
    return _first_block_against_others(values, rep, +1, level, "mean excess kurtosis", epoch)


# --- QK weights -------------------------------------------------------------------------------------

def qk_blocks(r, epoch, key):
    """({depth: heads-together value}, {depth: delete-one-head replicates}) at a checkpoint."""
    heads = {x["depth"]: x[key] for x in at(r["qk_heads"], epoch) if x["head"] == "all"}
    reps = stored_replicates(at(r["qk_head_replicates"], epoch), ("depth",), key)
    return heads, {d: reps.get((d,)) for d in heads}


def _skipped(r):
    return r["metrics"]["qk"].get("skipped")


def _lowest(r, epoch, key, depths, threshold, level, what):
    """The lowest heads-together value over the given blocks against a threshold, with the
    delete-one-head jackknife interval of that lowest value (each replicate's lowest)."""
    if _skipped(r):
        return missing(f"qk skipped: {_skipped(r)}")
    values, reps = qk_blocks(r, epoch, key)
    depths = [d for d in depths(sorted(values)) if d in values]
    if not depths:
        return missing("no blocks")
    if any(reps[d] is None for d in depths):
        return missing("one head per block: no spread over heads to decide with")
    value = min(values[d] for d in depths)
    rep = np.min([reps[d] for d in depths], axis=0)
    ci = interval(value, rep, level)
    per_head = [x[key] for x in at(r["qk_heads"], epoch) if x["head"] != "all" and x["depth"] in depths]
    return Estimate(value, decide(*ci, +1, threshold),
                    f"epoch {int(epoch)}, {what} per block: " + ", ".join(f"b{int(d)} {values[d]:.3f}" for d in depths)
                    + f"; lowest {value:.3f} {fmt_ci(ci)}; single heads {min(per_head):.2f}..{max(per_head):.2f}",
                    ci, rep)


def _later(depths):
    return [d for d in depths if d > len(depths) / 2]


@claim("probing.msym_pd", sign=+1, rule=f"> {MSYM_POSITIVE_MASS_MIN} (the whole interval)",
       text="M_sym = (W_Q W_K^T + its transpose)/2 is largely positive definite in every block",
       statistic=f"lowest share of sum |lambda(M_sym)| carried by positive eigenvalues (heads together) over the "
                 f"blocks; {_HEADS}")
def msym_pd(r, epoch, level):
    return _lowest(r, epoch, "sym_mass_positive", lambda d: d, MSYM_POSITIVE_MASS_MIN, level,
                   "positive share of sum |lambda(M_sym)|")


@claim("probing.late_asym_dominates", sign=+1, rule=f"> {ASYM_RATIO_MIN} (the whole interval)",
       text="in later blocks the antisymmetric part of W_Q W_K^T outweighs the symmetric",
       statistic=f"lowest ||M_asym||_F / ||M_sym||_F (heads together) over the later half of the blocks; {_HEADS}")
def late_asym_dominates(r, epoch, level):
    return _lowest(r, epoch, "asym_sym_norm_ratio", _later, ASYM_RATIO_MIN, level, "||M_asym|| / ||M_sym||")


@claim("probing.last_block_sv_dominated", sign=+1, rule="> 0 against every other block",
       text="the last block's QK singular values are dominated by a few, unlike the slow decay of the other blocks",
       statistic="the last block's share of sum sigma^2 of W_Q W_K^T (heads together) in its top 10% of singular "
                 f"values minus each other block's, Bonferroni over the other blocks; shown: the block whose interval "
                 f"reaches lowest; {_HEADS}")
def last_block_sv_dominated(r, epoch, level):
    if _skipped(r):
        return missing(f"qk skipped: {_skipped(r)}")
    values, reps = qk_blocks(r, epoch, "top10pct_sv_energy_share")
    blocks = sorted(values)
    if len(blocks) < 2:
        return missing("one block")
    if any(reps[d] is None for d in blocks):
        return missing("one head per block: no spread over heads to decide with")
    (other, margin, ci, rep), label, _, per_case = margins(values, reps, blocks[-1], blocks[:-1], +1, level)
    return Estimate(margin, label, f"epoch {int(epoch)}, top-10% share of sum sigma^2 per block: "
                    + ", ".join(f"b{int(d)} {values[d]:.3f}" for d in blocks)
                    + f"; deciding b{int(other)}, margin {margin:+.3g} {fmt_ci(ci)} ({per_case:.4f} intervals each)",
                    ci, rep)


# --- Angle vs attention ------------------------------------------------------------------------------

_VECTORS = ("patch vectors entering attention: norm1's output without its bias beta (one vector added to every "
            "token alike, which pulls every angle towards 0 as it grows); with beta beside it in the evidence")


def _angles(r, epoch, key):
    rows = sorted(at(r["qk_angles"], epoch), key=lambda x: x["depth"])
    reps = stored_replicates(at(r["qk_replicates"], epoch), ("depth",), key)
    return rows, reps


def _with_beta(rows, key, depths):
    return ", ".join(f"b{int(x['depth'])} {x[key + '_with_beta']:.3f}" for x in rows if x["depth"] in depths)


@claim("probing.late_obtuse", sign=+1, rule=f"> {OBTUSE_SHARE_MIN} in every later block",
       text="in later blocks most angles between patch vectors exceed 90 degrees",
       statistic=f"share of patch pairs at more than 90 degrees in each block of the later half, jackknife intervals "
                 f"at the Bonferroni level over those blocks; shown: the block whose interval reaches lowest; "
                 f"{_VECTORS}")
def late_obtuse(r, epoch, level):
    if _skipped(r):
        return missing(f"qk skipped: {_skipped(r)}")
    rows, reps = _angles(r, epoch, "share_obtuse")
    late = _later([x["depth"] for x in rows])
    if not late or any((d,) not in reps for d in late):
        return missing(f"no jackknife replicates of the angles at epoch {int(epoch)}")
    value = {x["depth"]: x["share_obtuse"] for x in rows}
    per_case = 1 - (1 - level) / len(late)
    cis = {d: interval(value[d], reps[d,], per_case) for d in late}
    d = min(late, key=lambda k: cis[k][0])
    label = all_hold([side(*c, OBTUSE_SHARE_MIN) for c in cis.values()])
    return Estimate(value[d], label, f"epoch {int(epoch)}, blocks {[int(k) for k in late]}: share > 90 degrees "
                    + ", ".join(f"b{int(k)} {value[k]:.3f} {fmt_ci(cis[k], 2)}" for k in late)
                    + f" ({per_case:.4f} intervals each); with beta: {_with_beta(rows, 'share_obtuse', late)}",
                    cis[d], reps[d,])


def _mean_rho(r, epoch, level, half, sign):
    if _skipped(r):
        return missing(f"qk skipped: {_skipped(r)}")
    rows, reps = _angles(r, epoch, "spearman")
    all_depths = [x["depth"] for x in rows]
    depths = _later(all_depths) if half == "later" else [d for d in all_depths if d not in _later(all_depths)]
    if not depths or any((d,) not in reps for d in depths):
        return missing(f"no jackknife replicates of the angles at epoch {int(epoch)}")
    chosen = [x for x in rows if x["depth"] in depths]
    value = float(np.mean([x["spearman"] for x in chosen]))
    rep = np.mean([reps[d,] for d in depths], axis=0)
    ci = interval(value, rep, level)
    return Estimate(value, decide(*ci, sign), f"epoch {int(epoch)}: Spearman rho(angle, attention) per block "
                    f"{fmt([x['spearman'] for x in rows])}; mean over the {half} half {value:+.3f} {fmt_ci(ci, 2)}; "
                    f"with beta: {_with_beta(rows, 'spearman', depths)}", ci, rep)


@claim("probing.early_attend_similar", sign=-1, rule="< 0 (the whole interval)",
       text="early blocks attend more to similar patches",
       statistic=f"mean Spearman rho(angle, attention) over the first half of the blocks, with its jackknife interval; "
                 f"{_VECTORS}")
def early_attend_similar(r, epoch, level):
    return _mean_rho(r, epoch, level, "first", -1)


@claim("probing.late_attend_dissimilar", sign=+1, rule="> 0 (the whole interval)",
       text="late blocks attend more to dissimilar patches",
       statistic=f"mean Spearman rho(angle, attention) over the later half of the blocks, with its jackknife interval; "
                 f"{_VECTORS}")
def late_attend_dissimilar(r, epoch, level):
    return _mean_rho(r, epoch, level, "later", +1)
