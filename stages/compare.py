"""compare: the zoo's models side by side -> reports/compare/zoo.html (self-contained: every metric
family across depth, one line per model; the verdicts per model in one table) with its figures as
PNG files beside it, and reports/metrics/zoo_verdicts.json. Reads what the zoo_* stages wrote
under reports/zoo/<id>/."""
from pathlib import Path

from tgo import claims
from tgo.figures import SECTIONS
from tgo.figures.plot import rendered
from tgo.io import atomic_dir, run_stage, write_json
from tgo.page import render_html
from tgo.params import load
from tgo.runs import Run, results

OUT, VERDICTS = Path("reports/compare"), Run().metrics("zoo_verdicts")
OVERRIDES = ("patch_size", "depth", "embed_dim", "num_heads", "mlp_ratio", "img_size")  # of a zoo entry


def main():
    params = load("zoo", "ci")
    zoo = params["zoo"]
    res = {m: results(Run(m)) for m in zoo}
    judged = {m: claims.judge(r, params["ci"]["level"]) for m, r in res.items()}
    write_json(VERDICTS, {m: claims.metrics(v) for m, v in judged.items()})
    pngs = {}
    if not zoo:
        sections = [{"title": "No models", "text": "The zoo is empty: list models under `zoo` in conf/config.yaml "
                     "or a conf/zoo/ preset (README: Analysing pretrained models), then dvc repro."}]
    else:
        sections = [
            {"title": "Models", "table": models_table(zoo, res),
             "text": "Each model's own preprocessing (timm's pretrained config) on the same probe images; "
                     "depth is relative to each model's blocks. Accuracy only where the head's classes are "
                     "the data's."},
            {"title": "Verdicts per model", "zoo_verdicts": judged,
             "layouts": {m: r["layout"] for m, r in res.items()},
             "text": "Each claim as the single-model report decides it (README: claims checked), per model, with "
                     "where it comes from: each pretrained model is compared with its own architecture at seeded "
                     "random initialisation on the same probe images; a model analysed at random initialisation "
                     "is its own untrained network. A cell gives the verdict, the statistic's value (the claim's "
                     "column says what it is) with its interval and the rule it is held to, and the same on the "
                     "untrained network with the difference; for a model without a class token, what stood in "
                     "for it. Claims about training need more than the one checkpoint."},
            *({"title": f"{title} — {claims.PAPERS[paper]}",
               "figures": rendered([f for family in families for f in family.zoo(res)], pngs)}
              for title, paper, families in SECTIONS),
        ]
    with atomic_dir(OUT) as tmp:
        for name, png in pngs.items():
            (tmp / f"{name}.png").write_bytes(png)
        (tmp / "zoo.html").write_text(render_html("TGO model zoo", f"{len(zoo)} models on the same probe images",
                                                  sections, {"zoo": zoo}))
    print(f"zoo page: {len(zoo)} models, {len(pngs)} figures -> {OUT}/zoo.html, {VERDICTS}")


def models_table(zoo, res):
    columns = ["id", "model", "weights", "overrides", "params (M)", "val top-1", "tokens", "head reads", "input", "qk"]
    rows = []
    for m, entry in zoo.items():
        r = res[m]
        lay, inp, train = r["layout"], r["layout"]["input"], r["train"]
        overrides = ", ".join(f"{k} {entry[k]}" for k in OVERRIDES if entry[k] is not None) or "none"
        rows.append([m, entry["name"], entry["weights"] or "random init (seed 0)", overrides,
                     f"{train['params_M']:.2f}",
                     f"{train['val_top1']:.2f}%" if "val_top1" in train else "n/a",
                     f"{', '.join(lay['prefix_tokens']) or 'no prefix'} + {lay['grid'][0]}x{lay['grid'][1]} patches, "
                     f"{lay['n_blocks']} blocks, D={lay['dim']}",
                     lay["head_input"] or "CLS token",
                     f"{inp['input_size'][-1]} px, crop_pct {inp['crop_pct']:.3f}, {inp['interpolation']}, "
                     f"mean {tuple(round(v, 3) for v in inp['mean'])}, std {tuple(round(v, 3) for v in inp['std'])}",
                     r["metrics"]["qk"].get("skipped", "analysed")])
    return columns, rows


if __name__ == "__main__":
    run_stage("compare", main)
