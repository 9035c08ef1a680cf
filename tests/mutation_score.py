"""`make mutation`'s summary: mutmut's score over tgo/geometry/ and tgo/claims/ (pyproject.toml's
[tool.mutmut]), and every surviving mutant that has neither a test nor a reason.

The score is mutmut's own (its badge): (killed + timed out) / (mutants - skipped). A mutant that
survives because it cannot change a result (an equivalent mutant) has a one-line reason in
`survivors.txt` next to the code it mutates: `<mutant name>: <reason>`. See a mutant with
`mutmut show <name>`.
"""
import json
import subprocess
import sys
from pathlib import Path

GOAL = 90.0
REASONS = [Path("tgo/geometry/survivors.txt"), Path("tgo/claims/survivors.txt")]


def reasons():
    out = {}
    for path in REASONS:
        for line in path.read_text().splitlines():
            if line.strip() and not line.startswith("#"):
                name, _, why = line.partition(":")
                out[name.strip()] = why.strip()
    return out


def main():
    subprocess.run(["mutmut", "export-cicd-stats"], check=True, stdout=subprocess.DEVNULL)
    s = json.loads(Path("mutants/mutmut-cicd-stats.json").read_text())
    listed = subprocess.run(["mutmut", "results"], check=True, capture_output=True, text=True).stdout
    # mutmut results lists every mutant not killed: a timeout counts as caught (in the score too), a crash
    # is no survivor either
    status = {name.strip(): st.strip() for name, _, st in
              (line.rpartition(":") for line in listed.splitlines() if line.strip())}
    survivors = {name: st for name, st in status.items() if st in ("survived", "no tests", "suspicious")}
    explained = reasons()
    # A speed knob's mutant (BLAS threads) can time out on a loaded machine: still the mutant its reason names.
    stale = sorted(n for n in explained if n not in survivors and status.get(n) != "timeout")
    left = {n: st for n, st in survivors.items() if n not in explained}
    tested = s["total"] - s["skipped"]
    score = 100 * (s["killed"] + s["timeout"]) / max(tested, 1)
    for name, status in sorted(left.items()):
        print(f"{status:>10}  {name}")
    for name in stale:
        print(f"reason for a mutant that no longer survives (remove it from survivors.txt): {name}")
    print(f"mutation score {score:.1f}% (goal {GOAL:g}%): {s['killed']} killed + {s['timeout']} timed out of {tested} "
          f"mutants; {s['survived']} survived, {s['no_tests']} not reached by a unit test; "
          f"{len(survivors) - len(left)} of the {len(survivors)} left explained in survivors.txt, {len(left)} not")
    return 0 if score >= GOAL and not left and not stale else 1


if __name__ == "__main__":
    sys.exit(main())
