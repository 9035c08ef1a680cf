"""python -m tgo.claims.table [dvc exp show options]: every claim's verdict across experiments and
zoo models, one row per claim, in a table as wide as the terminal (`make verdicts`).

`dvc exp show` puts each of the ~240 verdict numbers in a column of its own; this reads its JSON
(`dvc exp show --json`, with any of its options: -A, --rev, -n, ...) and keeps one word per claim
and run: the pipeline's model of each experiment, then each model of its zoo (zoo_verdicts.json).
Below the table, each column's experiment and the params it changed from its baseline commit.
"""
import json
import shutil
import subprocess
import sys
import textwrap

from tgo.claims.core import NOT_APPLICABLE, REGISTRY
from tgo.runs import Run

# The keys of `dvc exp show --json`'s metrics: the files the report and compare stages write.
VERDICTS, ZOO_VERDICTS = (Run().metrics(name).as_posix() for name in ("verdicts", "zoo_verdicts"))
WORDS = {"observed": "yes", "partly observed": "part", "not observed": "no", "inconclusive": "?",
         NOT_APPLICABLE: "n/a", "not computable": "n/c"}
LEGEND = ("yes = observed, part = partly observed, no = not observed, ? = inconclusive, n/a = not applicable "
          "(one checkpoint), n/c = not computable, - = not in this run; after yes: /init = already observed "
          "in the untrained network, /? = not decided against it (README: Reading the verdicts)")


def cell(record):
    """One claim's verdict in a few characters (the report says it in words: tgo.claims.in_words).
    DVC leaves a metric's null values out of its JSON, hence .get."""
    if record is None:
        return "-"
    word = WORDS.get(record["verdict"], record["verdict"])
    if record["verdict"] != "observed":
        return word
    if record.get("origin") == "initialisation":
        return word + "/init"
    if record.get("origin") is None and record.get("init_verdict") not in (None, "not computable"):
        return word + "/?"
    return word


def flat(tree, prefix=""):
    """{"group.key": value} of a nested params dict."""
    out = {}
    for k, v in tree.items():
        if isinstance(v, dict) and v:
            out.update(flat(v, f"{prefix}{k}."))
        else:
            out[f"{prefix}{k}"] = v
    return out


def experiments(exp_show):
    """(name, params, metrics, baseline) of every row of `dvc exp show --json`: the workspace, each
    commit, and each commit's experiments after it. params: flattened ("group.key": value);
    metrics: {file: its data}; baseline: the params the row is compared with (the first commit's for
    the workspace, its commit's for an experiment, None for a commit)."""
    def read(data):
        return (flat((data.get("params") or {}).get("params.yaml", {}).get("data", {})),
                {path: m.get("data", {}) for path, m in (data.get("metrics") or {}).items()})

    commits = [c for c in exp_show if c["rev"] != "workspace"]
    head = read(commits[0].get("data") or {})[0] if commits else None
    out = []
    for commit in exp_show:
        workspace = commit["rev"] == "workspace"
        params, metrics = read(commit.get("data") or {})
        out.append(("workspace" if workspace else commit.get("name") or commit["rev"][:7], params, metrics,
                    head if workspace else None))
        for exp in commit.get("experiments") or []:
            for rev in exp.get("revs") or []:
                out.append((rev.get("name") or rev["rev"][:7], *read(rev.get("data") or {}), params))
    return out


def runs(exp_show):
    """(label, description, {claim id: record}) per model of each row of `dvc exp show --json`:
    the workspace and each commit, each commit's experiments after it, each with its zoo models."""
    out = []
    for name, params, metrics, baseline in experiments(exp_show):
        if baseline is None:
            what = "the committed params"
        else:
            changed = {k: v for k, v in params.items() if baseline.get(k) != v}
            what = ", ".join(f"{k}={json.dumps(v)}" for k, v in sorted(changed.items())) or "no params changed"
        if VERDICTS in metrics:
            out.append((name, what, records(metrics[VERDICTS])))
        for zoo_id, verdicts in metrics.get(ZOO_VERDICTS, {}).items():
            out.append((f"{name}:{zoo_id}", f"zoo model {zoo_id} of {name}", records(verdicts)))
    return out


def records(verdicts):
    return {f"{paper}.{name}": v for paper, claims in verdicts.items() for name, v in claims.items()}


def render(found, width):
    """The table, split into as many blocks of columns as the width needs, then the legend."""
    ids = list(REGISTRY)
    first = max(len(i) for i in ids) + 2
    col = max(9, *(min(max(map(len, name.split(":", 1))) + 1, 16) + 2 for name, _, _ in found)) if found else 9
    per_block = max(1, (width - first) // col)
    lines = []
    for start in range(0, len(found), per_block):
        block = found[start:start + per_block]
        # A zoo model's column, "<experiment>:<zoo id>", takes two header lines: long names stay whole.
        exps, zoo_ids = zip(*((name.split(":", 1) + [""])[:2] for name, _, _ in block))
        lines.append("claim".ljust(first) + "".join(e[:col - 2].rjust(col) for e in exps))
        if any(zoo_ids):
            lines.append(" " * first + "".join((f":{z}" if z else "")[:col - 2].rjust(col) for z in zoo_ids))
        lines.append("-" * (first + col * len(block)))
        lines += [i.ljust(first) + "".join(cell(r.get(i)).rjust(col) for _, _, r in block) for i in ids]
        lines.append("")
    lines += [textwrap.fill(f"{name}: {what}", width, subsequent_indent="  ") for name, what, _ in found]
    lines += ["", textwrap.fill(LEGEND, width)]
    return "\n".join(lines)


def exp_show(argv=(), who="tgo.claims.table"):
    """`dvc exp show --json` with these options, parsed."""
    try:
        proc = subprocess.run(["dvc", "exp", "show", "--json", *argv], capture_output=True, text=True)
    except FileNotFoundError:
        sys.exit(f"{who}: dvc is not on PATH; run it through make, or activate the project's environment "
                 "(. .venv/bin/activate)")
    if proc.returncode:
        sys.exit(f"{who}: dvc exp show failed: {proc.stderr.strip()}")
    return json.loads(proc.stdout)


def main(argv):
    found = runs(exp_show(argv))
    if not found:
        sys.exit("tgo.claims.table: no run has reports/metrics/verdicts.json yet; run the pipeline (make demo)")
    print(render(found, shutil.get_terminal_size().columns))


if __name__ == "__main__":
    main(sys.argv[1:])
