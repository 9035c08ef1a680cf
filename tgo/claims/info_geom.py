"""On the Information Geometry of Vision Transformers (NeurReps 2023; shared/seeds/000).

"By measuring the rate of this decay (alpha) for each token across transformer blocks, we discover
an alpha signature, indicative of a transition from lower to higher effective dimensionality ...
tokens corresponding to nearby spatial patches exhibit similar alpha trajectories ... we observe a
U-shaped trend [of the average inter-token correlation] across the model hierarchy."

Numbers: the tokens stage (reports/tokens/depth_all.csv, replicates.csv, coherence.csv) and the
correlation stage (reports/correlation/correlation.csv, replicates.csv).
"""
import numpy as np

from tgo.claims.core import Estimate, at, claim, decide, fmt, fmt_ci, missing, side, slope, stored_replicates
from tgo.geometry.stats import interval

# Spatially coherent clusters: the neighbour share lies 3 permutation-null standard deviations
# above the null's mean (p ~ 0.001 one-sided for a normal null).
COHERENCE_Z_MIN = 3.0


@claim("info_geom.alpha_falls", sign=-1, rule="< 0 (the whole interval)",
       text="alpha signatures move from lower to higher effective dimensionality across blocks",
       statistic="least-squares slope of the mean patch-token alpha on the block index, with its jackknife interval "
                 "(each replicate's slope)")
def alpha_falls(r, epoch, level):
    """A falling alpha (the spectrum's decay) with depth is a rising effective dimensionality."""
    rows = sorted(at(r["token_depth"], epoch), key=lambda x: x["depth"])
    alphas = np.array([x["patch_alpha_mean"] for x in rows])
    if len(rows) < 2 or not np.all(np.isfinite(alphas)):
        return missing("alpha missing (see tokens.json)")
    depths = [x["depth"] for x in rows]
    reps = stored_replicates(at(r["token_replicates"], epoch), ("depth",), "patch_alpha_mean")
    if any((d,) not in reps for d in depths):
        return missing(f"no jackknife replicates of alpha at epoch {int(epoch)}")
    b = slope(depths, alphas)
    rep = slope(depths, np.array([reps[d,] for d in depths]).T)
    ci = interval(b, rep, level)
    return Estimate(b, decide(*ci, -1), f"epoch {int(epoch)}, mean patch alpha per block: {fmt(alphas)}; slope per "
                    f"block {b:+.3g} {fmt_ci(ci)}", ci, rep)


@claim("info_geom.coherent_clusters", sign=+1, rule=f">= {COHERENCE_Z_MIN:g} null standard deviations above 0",
       text="tokens cluster by alpha signature into spatially coherent groups",
       statistic="share of grid-neighbour patch pairs in one cluster minus its mean under label permutations (the "
                 "clusters' sizes kept); its spread is the permutation null's standard deviation, as cluster labels "
                 "are discrete and have no jackknife",
       null="the untrained network's own clusters, which keep whatever positional structure initialisation gives "
            "(position embeddings make neighbours alike before any training): the difference of the two excess "
            f"shares against {COHERENCE_Z_MIN:g} standard deviations of both permutation nulls")
def coherent_clusters(r, epoch, level):
    rows = at(r["coherence"], epoch)
    if not rows:
        return missing("no clustering (alpha missing)")
    c = rows[0]
    excess, sd = c["neighbour_share"] - c["null_mean"], c["null_std"]
    band = (excess - COHERENCE_Z_MIN * sd, excess + COHERENCE_Z_MIN * sd)
    return Estimate(excess, decide(*band, +1),
                    f"epoch {int(epoch)}: neighbours share a cluster {c['neighbour_share']:.3f} vs permutation null "
                    f"{c['null_mean']:.3f} +- {sd:.3f}; z = {c['z']:.1f}", band, se=sd, z=COHERENCE_Z_MIN)


def u_statistic(rows, reps, level):
    """The U-shape on one token set: every interior block against the first and the last, paired
    intervals at the Bonferroni level over all 2 x (interior blocks) comparisons, so that picking
    the interior block costs its share of the level. Observed when some interior block lies surely
    below both ends, not observed when every interior block lies surely above one of them.
    Returns (the deciding block's worse end: value, interval, replicates), verdict, words."""
    rows = sorted(rows, key=lambda x: x["depth"])
    r = np.array([x["mean_r"] for x in rows])
    rep = [reps[x["site"],] for x in rows]
    interior = range(1, len(r) - 1)
    per_case = 1 - (1 - level) / (2 * len(interior))
    ends = {i: [(r[i] - r[j], interval(r[i] - r[j], rep[i] - rep[j], per_case), rep[i] - rep[j]) for j in (0, -1)]
            for i in interior}
    sides = {i: [side(*ci) for _, ci, _ in e] for i, e in ends.items()}
    if any(s == [-1, -1] for s in sides.values()):
        label = "observed"
    elif all(1 in s for s in sides.values()):
        label = "not observed"
    else:
        label = "inconclusive"
    # The deciding block: the one whose worse end's interval reaches least high.
    i = min(interior, key=lambda k: max(ci[1] for _, ci, _ in ends[k]))
    worse = max(ends[i], key=lambda e: e[1][1])
    words = (f"mean r per block {fmt(r, 3)}; deciding {rows[i]['site']} ({r[i]:.3f}): minus first "
             f"{ends[i][0][0]:+.3f} {fmt_ci(ends[i][0][1])}, minus last {ends[i][1][0]:+.3f} {fmt_ci(ends[i][1][1])} "
             f"({per_case:.4f} intervals each)")
    return worse, label, words


@claim("info_geom.u_shape", sign=-1, rule="< 0 for both ends at some interior block",
       text="mean inter-token correlation across blocks is U-shaped",
       statistic="each interior block's mean Pearson r (patch tokens, per image, as the paper) minus the first block's "
                 "and minus the last block's, paired intervals at the Bonferroni level over every interior block and "
                 "both ends (the correction for choosing the interior minimum); shown: the deciding block's worse end. "
                 "Beside it, the same with the probe set's mean patch token removed (a component every token shares)")
def u_shape(r, epoch, level):
    rows = [x for x in at(r["correlation"], epoch, tokens="patches") if x["site"].startswith("block_")]
    if len(rows) < 3:
        return missing(f"only {len(rows)} blocks")
    reps = stored_replicates(at(r["correlation_replicates"], epoch, tokens="patches"), ("site",), "mean_r")
    (value, ci, rep), label, words = u_statistic(rows, reps, level)
    centred = [x for x in at(r["correlation"], epoch, tokens="patches_mean_removed") if x["site"].startswith("block_")]
    if centred:
        reps_c = stored_replicates(at(r["correlation_replicates"], epoch, tokens="patches_mean_removed"), ("site",),
                                   "mean_r")
        _, label_c, words_c = u_statistic(centred, reps_c, level)
        words += f". With the mean patch token removed: {words_c}: {label_c}"
    return Estimate(value, label, f"epoch {int(epoch)}, patch tokens: {words}", ci, rep)
