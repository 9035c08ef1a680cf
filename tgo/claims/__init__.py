"""The papers' claims and their verdicts: one module per paper, each claim one registered function
(tgo.claims.core: the registry, the rules, the comparison with the untrained network).

`judge(results, level)` decides every claim on a run's results (tgo.runs.results) at its last
checkpoint and, with the same function, on the untrained network (`untrained`), then compares the
two: a claim is credited to training (`origin` "training") only when it is observed now and its
statistic differs from the untrained network's in the claimed direction (a paired interval over
the probe images, or over heads for the weights); "initialisation" when the untrained network
shows it too. Claims about change over training read every checkpoint instead.
`metrics(records)` is reports/metrics/verdicts.json; ``python -m tgo.claims`` prints README's table,
``python -m tgo.claims.table`` (make verdicts) the verdicts across experiments.
"""
import numpy as np

from tgo.claims import tgo1, info_geom, probing  # noqa: F401, I001  (each registers its claims, in this order)
from tgo.claims.core import NOT_APPLICABLE, PAPERS, REGISTRY, decide, effect, origin
from tgo.runs import ROWS

__all__ = ["NOT_APPLICABLE", "PAPERS", "REGISTRY", "checkpoints", "judge", "metrics", "markdown", "untrained",
           "in_words"]


def checkpoints(results):
    """The epochs of a run's analysed checkpoints (from every stage's rows)."""
    return sorted({r["epoch"] for key in ROWS for r in results[key]})


def untrained(results):
    """(results, epoch) of the untrained network the claims are compared with, and its name: the
    epoch-0 checkpoint of a run trained here; for pretrained weights, the same architecture at
    seeded random initialisation (the stages' `init/` results); a model analysed at random
    initialisation is its own. None when pretrained weights have no untrained counterpart."""
    train = results["train"]
    if train.get("weights"):
        init = results.get("init")
        return (init, 0, "the same architecture at random initialisation") if init else None
    epochs = checkpoints(results)
    if len(epochs) == 1:  # a zoo entry without weights (a run trained here keeps epoch 0 and its last)
        return results, epochs[0], "the model itself (it is a random initialisation)"
    return results, epochs[0], f"epoch {int(epochs[0])} (initialisation)"


def judge(results, level=0.95):
    """Every claim's record, in registry order: the claim's table entry, its statistic at the last
    checkpoint (value, interval, verdict, evidence), the same on the untrained network
    (init_value, init_verdict), the difference (effect with its interval) and the origin."""
    last = checkpoints(results)[-1]
    null = untrained(results)
    out = []
    for c in REGISTRY.values():
        record = {"id": c.id, "paper": PAPERS[c.paper], "claim": c.text, "statistic": c.statistic, "null": c.null,
                  "rule": c.rule, "init_value": np.nan, "init_verdict": None, "effect": np.nan,
                  "effect_ci": (np.nan, np.nan), "origin": None}
        if c.over_training:
            now = c.decide(results, level)
            record["origin"] = "training" if now.verdict == "observed" else None
        else:
            now = c.decide(results, last, level)
            if null is None:
                record["init_verdict"] = "not computable"
                record["null_words"] = "no untrained network analysed (extract again: dvc repro -f -s extract)"
            else:
                init = c.decide(null[0], null[1], level)
                diff, ci = effect(now, init, level)
                record.update(init_value=init.value, init_verdict=init.verdict, effect=diff, effect_ci=ci,
                              origin=origin(now, init, decide(*ci, c.sign)), null_words=null[2],
                              init_evidence=init.evidence)
        record.update(value=now.value, ci=now.ci, verdict=now.verdict, evidence=now.evidence)
        out.append(record)
    return out


def in_words(record):
    """A verdict and where it comes from, as the report says it."""
    v, o = record["verdict"], record["origin"]
    if v == NOT_APPLICABLE:
        return "not applicable: one checkpoint"
    if o == "initialisation":
        return f"{v}, already in the untrained network"
    if o == "training":
        return f"{v}, produced by training"
    if v == "observed" and record["init_verdict"] not in (None, "not computable"):
        return f"{v}, not decided against the untrained network"
    return v


def metrics(records):
    """reports/metrics/verdicts.json: {paper: {claim: numbers and labels}}, in registry order. A
    missing number is null, not NaN: NaN never equals itself, so `dvc metrics diff` would list it
    as changed between two identical runs."""
    def number(x):
        return float(x) if x is not None and np.isfinite(x) else None
    out = {}
    for v in records:
        paper, name = v["id"].split(".")
        out.setdefault(paper, {})[name] = {
            "value": number(v["value"]), "ci_low": number(v["ci"][0]), "ci_high": number(v["ci"][1]),
            "verdict": v["verdict"], "init_value": number(v["init_value"]), "init_verdict": v["init_verdict"],
            "effect": number(v["effect"]), "effect_ci_low": number(v["effect_ci"][0]),
            "effect_ci_high": number(v["effect_ci"][1]), "origin": v["origin"]}
    return out


def markdown():
    """The "claims checked" table of README.md."""
    lines = ["| id | paper | claim | decided on | null | observed when |", "|---|---|---|---|---|---|"]
    short = {p: t.split(":")[0].split(" (")[0] for p, t in PAPERS.items()}
    lines += [f"| `{c.id}` | {short[c.paper]} | {c.text} | {c.statistic} | {c.null} | {c.rule} |"
              for c in REGISTRY.values()]
    return "\n".join(lines) + "\n"
