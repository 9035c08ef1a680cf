"""Each claim across training seeds and across analysis variants (README: Seeds and analysis
variants).

A run's intervals say how much its numbers depend on the probe images, in one trained network. A
reviewer asks two more questions: does a claim hold for another training seed, and does it survive
the analysis choices a reasonable person might have made instead? Each answer is a DVC experiment
one -S away from the committed params:

  python -m tgo.robustness queue seeds 1 2   queue train.seed=1 and =2 (the whole pipeline each)
  python -m tgo.robustness queue variants    queue every variant of conf/variants.yaml
  dvc exp run --run-all                      run what is queued
  python -m tgo.robustness                   aggregate -> reports/robustness/

The aggregate reads `dvc exp show --json` (the workspace, HEAD and HEAD's experiments) and sorts the
runs by their params against HEAD's: a seed differs in train.seed alone, a variant in exactly one
variant's overrides. reports/robustness/robustness.json holds, per claim, each seed's verdict, the
share of seeds where it is observed, the deciding value's and the effect's mean and between-seed
spread beside their mean within-run interval, and its verdict under each variant; index.html shows
the same in the report's style.
"""
import json
import math
import subprocess
import sys
from pathlib import Path

import numpy as np
import yaml

from tgo.claims.core import REGISTRY
from tgo.claims.table import LEGEND, VERDICTS, cell, exp_show, experiments, flat, records
from tgo.io import TGOError, atomic_file, read_json, run_stage, write_json
from tgo.page import render_html

VARIANTS = Path("conf/variants.yaml")
OUT = Path("reports/robustness")
SEED = "train.seed"


def read_variants(path=VARIANTS):
    """{variant id: {param: value}} from a YAML mapping of ids to lists of -S overrides ("key=value",
    the value in YAML as on DVC's command line)."""
    try:
        listed = yaml.safe_load(Path(path).read_text())
    except (OSError, yaml.YAMLError) as e:
        raise TGOError(f"{path}: cannot read the analysis variants ({e})") from None
    if not isinstance(listed, dict) or not all(isinstance(v, list) and v for v in listed.values()):
        raise TGOError(f"{path}: give each variant id a list of -S overrides, e.g. alpha-5-50: "
                       "[\"spectral.alpha_ranks=[5,50]\"]")
    out = {}
    for vid, overrides in listed.items():
        pairs = [str(o).partition("=") for o in overrides]
        if not all(key and sep for key, sep, _ in pairs):
            raise TGOError(f"{path}: variant {vid}: each override is key=value, e.g. tokens.n_clusters=3")
        out[str(vid)] = {key: yaml.safe_load(value) for key, _, value in pairs}
    return out


def queue(kind, args, variants_path=VARIANTS):
    """Queue one DVC experiment per seed in args, or per variant (those named in args, or all),
    leaving out those HEAD's experiments already hold (so the sequence can be run again)."""
    variants = read_variants(variants_path)
    _, seeds, found = sort_runs(exp_show(who="tgo.robustness"), variants)
    if kind == "seeds":
        if not args or not all(a.isdigit() for a in args):
            raise TGOError("queue seeds: give the training seeds to add, e.g. queue seeds 1 2")
        done = {str(s): name for s, (name, _) in seeds.items()}
        todo = [(f"seed {a}", a, [f"{SEED}={a}"]) for a in args]
    elif kind == "variants":
        unknown = sorted(set(args) - set(variants))
        if unknown:
            raise TGOError(f"queue variants: {', '.join(unknown)} not in {variants_path} ({', '.join(variants)})")
        done = {v: name for v, (name, _) in found.items()}
        todo = [(vid, vid, [f"{k}={json.dumps(v)}" for k, v in variants[vid].items()]) for vid in args or variants]
    else:
        raise TGOError(f"queue {kind}: queue seeds N ... or queue variants [id ...]")
    for label, key, overrides in todo:
        if key in done:
            print(f"{label}: already run ({done[key]}), not queued again")
            continue
        cmd = ["dvc", "exp", "run", "--queue", *(a for o in overrides for a in ("-S", o))]
        print(" ".join(cmd))
        try:
            failed = subprocess.run(cmd).returncode
        except FileNotFoundError:
            raise TGOError("dvc is not on PATH; run it through make, or activate the project's environment "
                           "(. .venv/bin/activate)") from None
        if failed:
            raise TGOError(f"{' '.join(cmd)} failed (its message above)")


def _same(a, b):
    return json.dumps(a, sort_keys=True) == json.dumps(b, sort_keys=True)


def sort_runs(exp_rows, variants):
    """(HEAD's params, {seed: (run name, claim records)}, {variant id: (run name, claim records)})
    of the rows of `dvc exp show --json` with verdicts: HEAD first, then its experiments, then the
    workspace (a seed or variant found twice keeps its first run)."""
    rows = experiments(exp_rows)
    commits = [r for r in rows if r[3] is None and r[0] != "workspace"]
    if not commits:
        raise TGOError("no commit with params: commit the baseline first (git commit, README: Everyday use)")
    head = commits[0][1]
    order = [commits[0]] + [r for r in rows if r[3] is head] + [r for r in rows if r[0] == "workspace"]
    order = [r for r in order if VERDICTS in r[2]]
    seeds, found = {}, {}
    for name, params, metrics, _ in order:
        changed = {k: params.get(k) for k in set(params) | set(head) if not _same(params.get(k), head.get(k))}
        verdicts = records(metrics[VERDICTS])
        if set(changed) <= {SEED}:
            seeds.setdefault(params[SEED], (name, verdicts))
        for vid, overrides in variants.items():
            if _same(changed, overrides):
                found.setdefault(vid, (name, verdicts))
    return head, dict(sorted(seeds.items())), {v: found[v] for v in variants if v in found}


def _finite(values):
    return [v for v in values if v is not None and math.isfinite(v)]


def _spread(records, key, low, high):
    """Mean over the runs, between-run standard deviation (n - 1), and the mean half-width of the
    within-run (probe-image) interval [low, high], of `key` (value or effect); None where missing."""
    values = _finite(r.get(key) for r in records)
    halves = _finite((r[high] - r[low]) / 2 for r in records if r.get(low) is not None and r.get(high) is not None)
    return {"mean": float(np.mean(values)) if values else None,
            "between_seed_sd": float(np.std(values, ddof=1)) if len(values) > 1 else None,
            "within_run_half_width": float(np.mean(halves)) if halves else None}


def aggregate(head, seeds, found, variants, commit):
    """The JSON of reports/robustness/robustness.json."""
    committed = seeds.get(head[SEED])
    claims = {}
    for cid in REGISTRY:
        per_seed = [r[cid] for _, r in seeds.values() if cid in r]
        claims[cid] = {
            "seeds": {str(s): {"verdict": r[cid]["verdict"], "origin": r[cid].get("origin")}
                      for s, (_, r) in seeds.items() if cid in r},
            "observed_in": sum(r["verdict"] == "observed" for r in per_seed),
            "produced_by_training_in": sum(r.get("origin") == "training" for r in per_seed),
            "value": _spread(per_seed, "value", "ci_low", "ci_high"),
            "effect": _spread(per_seed, "effect", "effect_ci_low", "effect_ci_high"),
            "variants": {v: {"verdict": r[cid]["verdict"], "origin": r[cid].get("origin")}
                         for v, (_, r) in found.items() if cid in r},
        }
        if committed and cid in committed[1]:
            same = [v for v, (_, r) in found.items() if cid in r and cell(r[cid]) == cell(committed[1][cid])]
            claims[cid]["variants_with_the_committed_verdict"] = same
    return {"commit": commit, "configuration": {k: v for k, v in head.items() if k != SEED},
            "seeds": {str(s): name for s, (name, _) in seeds.items()},
            "committed_seed": head[SEED],
            "variants": {v: {"overrides": variants[v], "run": found[v][0]} for v in found},
            "claims": claims}


def for_params(params, path=OUT / "robustness.json"):
    """The aggregate if it was made for these params (any train.seed), else None: what the report
    links to."""
    if not Path(path).exists():
        return None
    agg = read_json(path)
    mine = {k: v for k, v in flat(params).items() if k != SEED}
    return agg if _same(agg["configuration"], mine) else None


def _number(stats, digits=3):
    if stats["mean"] is None:
        return "n/a"
    sd = f" ± {stats['between_seed_sd']:.{digits}g}" if stats["between_seed_sd"] is not None else ""
    within = f" (within run ± {stats['within_run_half_width']:.{digits}g})" \
        if stats["within_run_half_width"] is not None else ""
    return f"{stats['mean']:.{digits}g}{sd}{within}"


def tables(agg):
    """(seed table, variant table) as (columns, rows) of texts: tgo.claims.table's words."""
    def word(v):
        return cell(v) if v else "-"
    seeds = list(agg["seeds"])
    seed_rows = [[cid, *(word(c["seeds"].get(s)) for s in seeds), f"{c['observed_in']} of {len(seeds)}",
                  _number(c["value"]), _number(c["effect"])] for cid, c in agg["claims"].items()]
    seed_cols = ["claim", *(f"seed {s}" for s in seeds), "observed in", "value: mean ± sd between seeds",
                 "effect: mean ± sd between seeds"]
    vids = list(agg["variants"])
    committed = str(agg["committed_seed"])
    var_rows = [[cid, word(c["seeds"].get(committed)), *(word(c["variants"].get(v)) for v in vids),
                 f"{len(c.get('variants_with_the_committed_verdict', []))} of {len(vids)}"]
                for cid, c in agg["claims"].items()]
    var_cols = ["claim", "committed", *vids, "same verdict in"]
    return (seed_cols, seed_rows), (var_cols, var_rows)


def text_table(columns, rows):
    widths = [max(len(str(x)) for x in col) for col in zip(columns, *rows)]
    lines = ["  ".join(str(c).ljust(w) for c, w in zip(columns, widths))]
    lines += ["  ".join(str(c).ljust(w) for c, w in zip(r, widths)) for r in rows]
    return "\n".join(lines)


def page(agg):
    (seed_cols, seed_rows), (var_cols, var_rows) = tables(agg)
    n = len(agg["seeds"])
    seeds_text = (f"{n} training seeds of the committed params ({', '.join(agg['seeds'])}; runs: "
                  + ", ".join(f"seed {s}: {name}" for s, name in agg["seeds"].items())
                  + "). Each claim's verdict in every seed, in how many it is observed, and the deciding value "
                  "and the effect (trained minus untrained) as their mean over the seeds ± the standard deviation "
                  "between seeds, beside the mean half-width of one run's interval over the probe images: a "
                  "between-seed spread larger than the within-run interval means the seed, not the probe images, "
                  "dominates the uncertainty." if n > 1 else
                  "One seed: queue more with python -m tgo.robustness queue seeds 1 2, then dvc exp run "
                  "--run-all and python -m tgo.robustness (README: Seeds and analysis variants).")
    variants_text = ("Each claim's verdict with the committed params (seed " + str(agg["committed_seed"]) + ") and "
                     "under each analysis variant (the same trained network, one analysis choice changed), and in "
                     "how many variants it stays the same (verdict and origin). Variants: "
                     + "; ".join(f"{v}: {', '.join(f'{k}={json.dumps(x)}' for k, x in d['overrides'].items())}"
                                 for v, d in agg["variants"].items()) + "."
                     if agg["variants"] else "No analysis variant has run: python -m tgo.robustness queue "
                     "variants, then dvc exp run --run-all and python -m tgo.robustness.")
    sections = [{"title": "Across training seeds", "text": seeds_text, "table": (seed_cols, seed_rows)},
                {"title": "Across analysis variants", "text": variants_text, "table": (var_cols, var_rows)},
                {"title": "Reading the cells", "subsection": True, "text": LEGEND}]
    return render_html("TGO claims across seeds and analysis variants",
                       f"the committed params at commit {agg['commit'][:7]}", sections,
                       {"seeds": agg["seeds"], "variants": agg["variants"]})


def main(argv):
    if argv[:1] == ["queue"]:
        queue(argv[1] if len(argv) > 1 else "", argv[2:])
        return
    variants = read_variants()
    head, seeds, found = sort_runs(exp_show(who="tgo.robustness"), variants)
    if not seeds:
        raise TGOError("no run of the committed params has verdicts yet; run the pipeline (make demo)")
    commit = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True).stdout.strip()
    agg = aggregate(head, seeds, found, variants, commit)
    write_json(OUT / "robustness.json", agg)
    with atomic_file(OUT / "index.html") as f:
        f.write(page(agg))
    (seed_cols, seed_rows), (var_cols, var_rows) = tables(agg)
    print(text_table(seed_cols, seed_rows) + "\n\n" + text_table(var_cols, var_rows))
    seeds_words = f"{len(seeds)} seed{'s' if len(seeds) > 1 else ''}"
    print(f"\n{seeds_words}, {len(found)} of {len(variants)} variants -> {OUT}/index.html, {OUT}/robustness.json")


if __name__ == "__main__":
    run_stage("robustness", lambda: main(sys.argv[1:]))
