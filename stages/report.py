"""report: figures (reports/figures/*.png) and a self-contained reports/report.html."""
import csv
from pathlib import Path

from tgo.io import atomic_dir, atomic_file, load_params, read_csv, read_json, run_stage
from tgo.report import (SET_TITLES, fig_across_depth, fig_across_training, fig_eigenspectra,
                        fig_training, final_cls_verdicts, numeric_rows, png_bytes, render_html,
                        training_trend_verdicts)

LIVE, SPECTRAL = Path("reports/train/plots/metrics"), Path("reports/spectral")
FIGURES, HTML = Path("reports/figures"), Path("reports/report.html")


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
    params = load_params()
    train = read_json("reports/metrics/train.json")
    rows = numeric_rows(read_csv(SPECTRAL / "metrics.csv"))
    spectra = numeric_rows(read_csv(SPECTRAL / "eigenspectra.csv"))
    ranks = tuple(params["spectral"]["alpha_ranks"])

    figures = {"training": fig_training(read_curves())}
    for s in SET_TITLES:
        figures[f"spectral_depth_{s}"] = fig_across_depth(rows, s)
        figures[f"spectral_training_{s}"] = fig_across_training(rows, s)
        figures[f"eigenspectra_{s}"] = fig_eigenspectra(spectra, rows, s, ranks)
    pngs = {name: png_bytes(fig) for name, fig in figures.items()}

    epochs = sorted({int(r["epoch"]) for r in rows})
    sections = [
        {"title": "Training", "figures": [("Training and validation loss; validation top-1/top-5 "
                                           "accuracy per epoch (DVCLive).", pngs["training"])],
         "text": f"Final validation top-1 {train['val_top1']:.2f}%, top-5 {train['val_top5']:.2f}% "
                 f"after {train['epochs']} epochs ({train['params_M']} M parameters)."},
        {"title": "Spectral geometry (TGO-I)",
         "text": (f"Covariance eigenspectra of the residual stream (embedding, every block's output, "
                  f"final norm) for {len(epochs)} checkpoints (epochs {epochs}) and three sample sets: "
                  + "; ".join(SET_TITLES.values()) + f". Alpha is fitted over ranks {ranks[0]}..{ranks[1]}. "
                  "The CLS token at the embedding is the same vector for every image, so its spectrum "
                  "is empty (its metrics are missing)."),
         "verdicts": training_trend_verdicts(rows) + final_cls_verdicts(rows),
         "figures": [(f"{kind} — {title}", pngs[f"{key}_{s}"])
                     for s, title in SET_TITLES.items()
                     for key, kind in (("spectral_depth", "Each metric across depth, one line per checkpoint"),
                                       ("spectral_training", "Each metric across training, one line per site"),
                                       ("eigenspectra", "Eigenspectra (log-log) with the alpha fit"))]},
    ]
    with atomic_dir(FIGURES) as tmp:
        for name, png in pngs.items():
            (tmp / f"{name}.png").write_bytes(png)
    with atomic_file(HTML) as f:
        f.write(render_html("TGO report", f"{params['model']['name']} on {params['prepare']['source']} "
                            "data", sections, params))
    print(f"report with {len(pngs)} figures -> {HTML}, {FIGURES}/")


if __name__ == "__main__":
    run_stage("report", main)
