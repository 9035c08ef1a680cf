"""report: verdicts on the papers' claims (reports/metrics/verdicts.json), figures
(reports/figures/*.png) and a self-contained reports/report.html."""
import csv
from pathlib import Path

from tgo import claims, robustness
from tgo.figures import SECTIONS, training
from tgo.figures.plot import rendered
from tgo.io import atomic_dir, atomic_file, run_stage, write_json
from tgo.page import render_html
from tgo.params import SCHEMA, load
from tgo.runs import Run, results

FIGURES, HTML, VERDICTS = Path("reports/figures"), Path("reports/report.html"), Run().metrics("verdicts")
LIVE = Run().plots("train") / "plots" / "metrics"  # DVCLive's TSV files


def read_curves():
    curves = {}
    for path in LIVE.rglob("*.tsv"):
        with open(path) as f:
            rows = list(csv.DictReader(f, delimiter="\t"))
        name = str(path.relative_to(LIVE).with_suffix(""))
        value_key = [k for k in rows[0] if k not in ("step", "timestamp")][0]
        curves[name] = ([int(r["step"]) for r in rows], [float(r[value_key]) for r in rows])
    return curves


def main():
    params = load(*SCHEMA)
    level = params["ci"]["level"]
    r = results(Run())
    records = claims.judge(r, level)
    write_json(VERDICTS, claims.metrics(records))
    judged = {paper: [v for v in records if v["id"].startswith(paper + ".")] for paper in claims.PAPERS}

    pngs = {}
    over_training = len({x["epoch"] for x in r["spectral_rows"]}) > 1
    model = training.report(r, read_curves() if over_training else {})  # weights analysed: no curves
    sections = [{"title": "Model and training", "text": model["text"], "figures": rendered(model["figures"], pngs)},
                {"title": "Reading the verdicts", "subsection": True, **reading(r, level, params)}]
    for title, paper, families in SECTIONS:
        parts = [family.report(r, params) for family in families]
        sections.append({"title": f"{title} — {claims.PAPERS[paper]}", "text": " ".join(p["text"] for p in parts),
                         "verdicts": judged[paper], "layout": r["layout"],
                         "figures": rendered([f for p in parts for f in p["figures"]], pngs)})
        sections += [{**s, "figures": rendered(s["figures"], pngs)} for p in parts for s in p.get("subsections", [])]
    with atomic_dir(FIGURES) as tmp:
        for name, png in pngs.items():
            (tmp / f"{name}.png").write_bytes(png)
    with atomic_file(HTML) as f:
        f.write(render_html("TGO report", f"{params['model']['name']} on {params['prepare']['source']} "
                            "data", sections, params))
    print(f"report with {len(pngs)} figures and {len(records)} verdicts -> {HTML}, {FIGURES}/, {VERDICTS}")


def reading(r, level, params):
    """How a verdict and its origin are decided, in words (README: Claims checked), and how far it
    was checked beyond this run: across training seeds and analysis variants, when
    `python -m tgo.robustness` aggregated them for these params (a link to its page)."""
    null = claims.untrained(r)
    against = (f"on the untrained network ({null[2]})" if null else
               "on the untrained network, which this run lacks (extract again: dvc repro -f -s extract)")
    text = (f"Each claim is decided at the last checkpoint by where the {100 * level:g}% interval of its statistic "
            f"lies against its rule, and by the same function {against}. An observed claim is credited to "
            "training only when the difference from the untrained network lies surely in the claimed direction; "
            "when the untrained network shows it too, it is said to be already there; otherwise it is observed but "
            "not decided against the untrained network. Claims about change over training read every checkpoint "
            "and need more than one. The untrained network's value, and the difference with its interval, are "
            "in the fourth column. ")
    across = robustness.for_params(params)
    if across is None:
        return {"text": text + f"One seed (train.seed={params['train']['seed']}): whether another training seed or "
                "another reasonable analysis choice gives the same verdicts is not checked here (README: Seeds and "
                "analysis variants).", "links": []}
    seeds, variants = list(across["seeds"]), list(across["variants"])
    return {"text": text + f"These params ran with {len(seeds)} training seeds ({', '.join(seeds)}) and "
                           f"{len(variants)} analysis variants ({', '.join(variants) or 'none'}), aggregated at "
                           f"commit {across['commit'][:7]}:",
            "links": [(f"{robustness.OUT.relative_to(HTML.parent)}/index.html",
                       "each claim across training seeds and analysis variants")]}


if __name__ == "__main__":
    run_stage("report", main)
