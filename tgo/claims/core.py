"""What every claim shares: the registry, one checkpoint's decision (`Estimate`), the rules that
turn an interval into a verdict, and the comparison with the untrained network.

A claim is one function registered with `@claim(...)`: its id, wording, statistic, null and rule
sit in one table (`REGISTRY`) that the report, the zoo page, README's "claims checked" and
reports/metrics/verdicts.json all read. The function gets a run's results (tgo.runs.results), the
checkpoint to judge and the interval level, and returns an `Estimate`: the deciding statistic,
its interval, its verdict, the numbers behind it, and the statistic's replicates, so that the same
statistic on the untrained network can be subtracted replicate by replicate (the same images, or
the same heads, left out of both). A claim about change over training (`over_training`) reads
every checkpoint instead and has no untrained counterpart.

Verdicts, from the interval of the deciding statistic:
  observed         the whole interval lies on the claimed side of the threshold;
  partly observed  for a claim about many cases: the share of cases that hold lies between a third
                   and two thirds;
  not observed     the whole interval lies on the other side;
  inconclusive     it straddles the threshold (the probe images could decide either way);
  not computable   the statistic is missing (the evidence says why);
  not applicable   a claim about training, for a run with one checkpoint.
"""
from dataclasses import dataclass, field

import numpy as np

from tgo.geometry.stats import half_sample_interval, interval

PAPERS = {
    "tgo1": "TGO-I: spectral geometry of ViT representations through training",
    "info_geom": "On the Information Geometry of Vision Transformers (NeurReps 2023)",
    "probing": "Probing Vision Transformer Attention: Image Statistics and Patch Similarity "
               "(Philip, Pan & Schwartz)",
}
NOT_APPLICABLE = "not applicable"

# A claim about many cases is "observed" when it holds in at least two thirds of them (a clear
# majority, robust to a case or two that behave differently) and "partly observed" from one third.
OBSERVED_SHARE = 2 / 3
PARTLY_SHARE = 1 / 3

# How the replicates of an Estimate give an interval: the delete-a-group jackknife (over image
# groups, or over heads for the weights), or half samples of the images (k-nearest-neighbour
# statistics, where the jackknife overstates the spread). Estimates without replicates carry a
# standard error from their own null (`se`, with the claim's `z`).
INTERVALS = {"jackknife": interval, "half": half_sample_interval}

# The null of every claim not about training.
UNTRAINED = ("the same statistic on the untrained network: the epoch-0 checkpoint of a run trained here; for "
             "pretrained weights the same architecture at seeded random initialisation, on the same probe images")


@dataclass(frozen=True)
class Claim:
    id: str
    text: str           # the paper's claim, in words
    statistic: str      # what is computed
    rule: str           # when it counts as observed
    sign: int           # +1: the claim says the statistic lies above the threshold, -1: below
    decide: object      # the function: (results, epoch, level) -> Estimate, or (results, level) over training
    null: str = UNTRAINED
    over_training: bool = False

    @property
    def paper(self):
        return self.id.split(".")[0]


REGISTRY = {}


def claim(claim_id, *, text, statistic, rule, sign, null=UNTRAINED, over_training=False):
    """Register the decorated function as the claim `claim_id` (paper.name; papers in PAPERS)."""
    def register(fn):
        if claim_id.split(".")[0] not in PAPERS or claim_id in REGISTRY:
            raise ValueError(f"claim {claim_id}: unknown paper or registered twice")
        REGISTRY[claim_id] = Claim(claim_id, text, statistic, rule, sign, fn, null, over_training)
        return fn
    return register


@dataclass
class Estimate:
    """One checkpoint's decision on a claim."""
    value: float                     # the deciding statistic
    verdict: str
    evidence: str                    # the numbers behind it, in words
    ci: tuple = (np.nan, np.nan)     # its interval, as the rule used it
    reps: np.ndarray = None          # replicates of `value`: jackknife or half samples (`method`)
    method: str = "jackknife"
    se: float = np.nan               # without replicates: the standard error of `value` under its null
    z: float = field(default=np.nan)  # ... and how many of them the rule asks for


def missing(reason):
    return Estimate(np.nan, "not computable", reason)


# --- Rules ---------------------------------------------------------------------------------------

def side(low, high, threshold=0.0):
    """+1 when the interval lies above the threshold, -1 below, 0 when it straddles it."""
    return 1 if low > threshold else -1 if high < threshold else 0


def decide(low, high, sign, threshold=0.0):
    """The claim "statistic on the `sign` side of threshold" from its interval."""
    if not (np.isfinite(low) and np.isfinite(high)):
        return "not computable"
    return {sign: "observed", -sign: "not observed", 0: "inconclusive"}[side(low, high, threshold)]


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


def all_hold(sides):
    """Every case surely holds: observed; one surely fails: not observed; else inconclusive."""
    if -1 in sides:
        return "not observed"
    return "observed" if sides and all(s == 1 for s in sides) else "inconclusive"


def ci_of(method, value, reps, level):
    return INTERVALS[method](value, reps, level)


# --- The comparison with the untrained network ---------------------------------------------------

def effect(now, init, level):
    """(difference now - untrained, its interval): replicate by replicate when both have them (the
    same image groups, half samples or heads left out of both), else from the standard errors of
    their nulls, with the claim's `z` standard errors either side."""
    diff = now.value - init.value  # NaN, and so its interval, where either value is missing
    if now.reps is not None and init.reps is not None and len(now.reps) == len(init.reps):
        return diff, ci_of(now.method, diff, np.asarray(now.reps) - np.asarray(init.reps), level)
    half = now.z * np.hypot(now.se, init.se)  # NaN without both standard errors: no interval
    return diff, (diff - half, diff + half)


def origin(now, init, effect_verdict):
    """Where an observed effect comes from: "initialisation" when the untrained network shows it
    too (whatever training did), "training" when it is observed and differs from the untrained
    network in the claimed direction, else None (not observed, or not decided against the null)."""
    if now.verdict != "observed":
        return None
    if init.verdict == "observed":
        return "initialisation"
    return "training" if effect_verdict == "observed" else None


# --- Reading the stages' rows ----------------------------------------------------------------------

def at(rows, epoch, **where):
    """The rows of one checkpoint (and the given column values)."""
    return [r for r in rows if r["epoch"] == epoch and all(r[k] == v for k, v in where.items())]


def stored_replicates(rows, keys, metric):
    """{(values of `keys`): the metric's replicates, array (G,) in group order}."""
    out = {}
    group = "half" if rows and "half" in rows[0] else "group"
    for r in rows:
        out.setdefault(tuple(r[k] for k in keys), []).append((r[group], r[metric]))
    return {k: np.array([v for _, v in sorted(vals)], dtype=float) for k, vals in out.items()}


def slope(x, y):
    """Least-squares slope of y (..., n) on x (n,), as explicit sums (the same bits whatever BLAS)."""
    x = np.asarray(x) - np.mean(x)
    return np.sum(np.asarray(y) * x, axis=-1) / np.sum(x * x)


def fmt(values, digits=2):
    return ", ".join(f"{v:.{digits}f}" for v in values)


def fmt_ci(ci, digits=3):
    return f"[{ci[0]:.{digits}g}, {ci[1]:.{digits}g}]"


def margins(values, reps, target, others, sign, level, method="jackknife"):
    """A comparison of one case with each of several others ("the last block has the highest ..."):
    sign * (values[target] - values[o]) for each o, with paired intervals at the Bonferroni level
    over the others. Returns an Estimate-ready tuple (deciding other, its margin, its interval,
    its replicates, the verdict, every margin): the deciding other is the one whose interval
    reaches lowest, the likeliest to fail; observed when every margin is surely positive, not
    observed when one is surely negative."""
    per_case = 1 - (1 - level) / max(len(others), 1)
    out = []
    for o in others:
        m = sign * (values[target] - values[o])
        r = sign * (reps[target] - reps[o])
        out.append((o, m, ci_of(method, m, r, per_case), r))
    label = all_hold([side(*ci) for _, _, ci, _ in out])
    deciding = min(out, key=lambda x: x[2][0])
    return deciding, label, out, per_case
