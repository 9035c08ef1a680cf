"""report: verdicts on the papers' claims (reports/metrics/verdicts.json), figures
(reports/figures/*.png) and a self-contained reports/report.html."""
import csv
from pathlib import Path

from tgo import figures as F
from tgo import verdicts as V
from tgo.io import atomic_dir, atomic_file, read_csv, read_json, run_stage, write_json
from tgo.page import render_html
from tgo.params import SCHEMA, load

LIVE, SPECTRAL = Path("reports/train/plots/metrics"), Path("reports/spectral")
TOKENS, CORRELATION = Path("reports/tokens"), Path("reports/correlation")
MI, QK = Path("reports/mi"), Path("reports/qk")
FIGURES, HTML, VERDICTS = Path("reports/figures"), Path("reports/report.html"), "reports/metrics/verdicts.json"


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
    train = read_json("reports/metrics/train.json")
    tokens = read_json("reports/metrics/tokens.json")
    mi_summary = read_json("reports/metrics/mi.json")
    rows = read_csv(SPECTRAL / "metrics.csv")
    spectra = read_csv(SPECTRAL / "eigenspectra.csv")
    depth = read_csv(TOKENS / "depth_all.csv")
    signatures = read_csv(TOKENS / "signatures.csv")
    coherence = read_csv(TOKENS / "coherence.csv") if (TOKENS / "coherence.csv").exists() else []
    corr = read_csv(CORRELATION / "correlation.csv")
    mi = {name: read_csv(MI / f"{name}.csv") for name in ("mi_distance", "kurtosis", "bowtie")}
    qk = {name: read_csv(QK / f"{name}.csv") for name in ("heads", "spectra", "angles", "attention_by_angle")}
    ranks = tuple(params["spectral"]["alpha_ranks"])

    spectral_verdicts = V.training_trends(rows) + V.final_cls(rows)
    token_verdicts = [V.alpha_falls(depth), V.coherent_clusters(coherence), V.u_shape(corr)]
    probing_verdicts = V.mi_claims(mi["mi_distance"]) + V.qk_claims(qk["heads"], qk["angles"])
    write_json(VERDICTS, V.metrics(spectral_verdicts + token_verdicts + probing_verdicts))

    figures = {"training": F.fig_training(read_curves())}
    for s in F.SET_TITLES:
        figures[f"spectral_depth_{s}"] = F.fig_across_depth(rows, s)
        figures[f"spectral_training_{s}"] = F.fig_across_training(rows, s)
        figures[f"eigenspectra_{s}"] = F.fig_eigenspectra(spectra, rows, s, ranks)
    last = max(r["epoch"] for r in depth)
    figures["alpha_depth"] = F.fig_alpha_depth(depth)
    if "alpha_missing" not in tokens:
        figures["alpha_maps"] = F.fig_alpha_maps(signatures, last)
    if coherence:
        figures["token_clusters"] = F.fig_clusters(signatures, last)
    figures["intertoken_correlation"] = F.fig_correlation(corr)
    figures["mi_distance"] = F.fig_mi(mi["mi_distance"])
    figures["kurtosis_bowtie"] = F.fig_kurtosis_bowtie(mi["kurtosis"], mi["bowtie"])
    figures["qk"] = F.fig_qk(qk["heads"], qk["spectra"], qk["angles"], qk["attention_by_angle"])
    pngs = {name: F.png_bytes(fig) for name, fig in figures.items()}

    epochs = sorted({int(r["epoch"]) for r in rows})
    tcfg = params["tokens"]
    sections = [
        {"title": "Training", "figures": [("Training and validation loss; validation top-1/top-5 "
                                           "accuracy per epoch (DVCLive).", pngs["training"])],
         "text": training_text(train)},
        {"title": f"Spectral geometry — {V.PAPERS['tgo1']}",
         "text": (f"Covariance eigenspectra of the residual stream (embedding, every block's output, "
                  f"final norm) for {len(epochs)} checkpoints (epochs {epochs}) and three sample sets: "
                  + "; ".join(F.SET_TITLES.values()) + f". Alpha is fitted over ranks {ranks[0]}..{ranks[1]}. "
                  "The CLS token at the embedding is the same vector for every image, so its spectrum "
                  "is empty (its metrics are missing)."),
         "verdicts": spectral_verdicts,
         "figures": [(f"{kind} — {title}", pngs[f"{key}_{s}"])
                     for s, title in F.SET_TITLES.items()
                     for key, kind in (("spectral_depth", "Each metric across depth, one line per checkpoint"),
                                       ("spectral_training", "Each metric across training, one line per site"),
                                       ("eigenspectra", "Eigenspectra (log-log) with the alpha fit"))]},
        {"title": f"Token geometry — {V.PAPERS['info_geom']}",
         "text": (f"Alpha of every token's covariance spectrum over the probe images at every block's "
                  f"output (ranks {tokens['alpha_ranks'][0]}..{tokens['alpha_ranks'][1]}); patch tokens "
                  f"clustered by their alpha signatures ({tcfg['cluster_method']}, {tcfg['n_clusters']} "
                  f"clusters), with the share of 4-neighbour patches in one cluster against "
                  f"{tcfg['n_permutations']} label permutations; inter-token Pearson correlation per image, "
                  "averaged over token pairs and images."
                  + (f" Alpha is missing: {tokens['alpha_missing']}." if "alpha_missing" in tokens else "")),
         "verdicts": token_verdicts,
         "figures": [(caption, pngs[name]) for name, caption in (
             ("alpha_depth", "Alpha across depth: patch tokens (mean, band = spread over tokens) and CLS "
                             "(dashed), per checkpoint"),
             ("alpha_maps", f"Alpha maps on the patch grid per block, epoch {int(last)}"),
             ("token_clusters", f"Token clusters on the grid and cluster-mean signatures, epoch {int(last)}"),
             ("intertoken_correlation", "Inter-token correlation: mean r and mean |r| across depth per "
                                        "checkpoint (solid: patch tokens; dashed: with CLS), and per block "
                                        "across training"),
         ) if name in pngs]},
        {"title": f"Neuron statistics and attention — {V.PAPERS['probing']}",
         "text": (f"Mutual information between a neuron at the reference patch {tuple(mi_summary['reference'])} "
                  f"and the same channel at each grid distance (Euclidean, rounded), averaged over "
                  f"{mi_summary['n_channels']} sampled channels, {mi_summary['estimator']} estimator minus a "
                  f"shuffle baseline, {mi_summary['n_images']} images, for the attention and MLP sublayer "
                  "outputs; excess kurtosis of all neurons; p(y|x) for a near and a far pair. QK: "
                  "M = W_Q W_K^T per head and for the heads together, split into symmetric and "
                  "antisymmetric parts; angles between the patch vectors entering attention (after "
                  "norm1) against attention averaged over heads."),
         "verdicts": probing_verdicts,
         "figures": [
             ("MI vs distance per block (last checkpoint) and MI at distance 1 across training", pngs["mi_distance"]),
             ("Excess kurtosis per block; bowtie plots p(y|x) of the last block", pngs["kurtosis_bowtie"]),
             ("QK structure across depth (heads together; grey: per head), singular values and "
              "M_sym eigenvalues per block, attention binned by angle", pngs["qk"]),
         ]},
    ]
    with atomic_dir(FIGURES) as tmp:
        for name, png in pngs.items():
            (tmp / f"{name}.png").write_bytes(png)
    with atomic_file(HTML) as f:
        f.write(render_html("TGO report", f"{params['model']['name']} on {params['prepare']['source']} "
                            "data", sections, params))
    n_verdicts = len(spectral_verdicts + token_verdicts + probing_verdicts)
    print(f"report with {len(pngs)} figures and {n_verdicts} verdicts -> {HTML}, {FIGURES}/, {VERDICTS}")


def training_text(train):
    accuracy = (f"validation top-1 {train['val_top1']:.2f}%, top-5 {train['val_top5']:.2f}%"
                if "val_top1" in train else "no validation accuracy (the head does not match the classes)")
    if "weights" in train:
        return (f"No training: the external weights {train['weights']} ({train['params_M']} M parameters) "
                f"are the one checkpoint analysed (epoch 0); {accuracy}.")
    return f"Final {accuracy} after {train['epochs']} epochs ({train['params_M']} M parameters)."


if __name__ == "__main__":
    run_stage("report", main)
