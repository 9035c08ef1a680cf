"""report: verdicts on the papers' claims (reports/metrics/verdicts.json), figures
(reports/figures/*.png) and a self-contained reports/report.html."""
import csv
from pathlib import Path

from tgo import figures as F
from tgo.activations import sample_set_words
from tgo import claims
from tgo.io import atomic_dir, atomic_file, run_stage, write_json
from tgo.page import render_html
from tgo.params import SCHEMA, load
from tgo.runs import Run, results

LIVE = Path("reports/train/plots/metrics")
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
    r = results(Run())
    rows, depth, tokens, mi_summary = r["spectral_rows"], r["token_depth"], r["tokens"], r["mi"]
    ranks = tuple(r["spectral"]["alpha_ranks"])  # as fitted: a small probe set brings the window down
    titles = {name: title for name, (title, _) in sample_set_words(r["layout"]).items()}
    bands = interval_words(params["ci"]["level"])

    records = claims.judge(r, params["ci"]["level"])
    write_json(VERDICTS, claims.metrics(records))
    judged = {paper: [v for v in records if v["id"].startswith(paper + ".")] for paper in claims.PAPERS}

    epochs = sorted({int(x["epoch"]) for x in rows})
    curves = read_curves() if len(epochs) > 1 else {}  # one checkpoint (weights analysed): no training figures
    figures = {"training": F.fig_training(curves)} if curves else {}
    for s, title in titles.items():
        figures[f"spectral_depth_{s}"] = F.fig_across_depth(rows, s, title)
        if len(epochs) > 1:  # one checkpoint (weights analysed): nothing to draw across training
            figures[f"spectral_training_{s}"] = F.fig_across_training(rows, s, title)
        figures[f"eigenspectra_{s}"] = F.fig_eigenspectra(r["eigenspectra"], rows, s, ranks, title)
        if any(x["sample_set"] == s for x in r["sample_size"]):  # plot data from before sample sizes: none
            figures[f"sample_size_{s}"] = F.fig_sample_size(r["sample_size"], rows, s, title)
    last = max(x["epoch"] for x in depth)
    figures["alpha_depth"] = F.fig_alpha_depth(depth)
    figures["alpha_maps"] = F.fig_alpha_maps(r["signatures"], last)
    if r["coherence"]:
        figures["token_clusters"] = F.fig_clusters(r["signatures"], last)
    figures["intertoken_correlation"] = F.fig_correlation(r["correlation"])
    figures["mi_distance"] = F.fig_mi(r["mi_distance"], r["mi_decay"])
    figures["kurtosis_bowtie"] = F.fig_kurtosis_bowtie(r["kurtosis"], r["bowtie"])
    if "skipped" not in r["qk"]:
        figures["qk"] = F.fig_qk(r["qk_heads"], r["qk_spectra"], r["qk_angles"], r["qk_attention_by_angle"])
    pngs = {name: F.png_bytes(fig) for name, fig in figures.items()}

    tcfg, used = params["tokens"], {s: u["used"] for s, u in r["tokens_used"].items()}
    prefix = r["layout"]["prefix_tokens"]
    sections = [
        {"title": "Model and training", "figures": [("Training and validation loss; validation top-1/top-5 "
                                                     "accuracy per epoch (DVCLive).", pngs["training"])]
                                                   if "training" in pngs else [],
         "text": training_text(r["train"]) + " " + model_text(r["layout"])},
        {"title": "Reading the verdicts", "subsection": True, "text": reading_text(r, params["ci"]["level"])},
        {"title": f"Spectral geometry — {claims.PAPERS['tgo1']}",
         "text": (f"Covariance eigenspectra of the residual stream (embedding, every block's output, "
                  f"final norm) for {len(epochs)} checkpoints (epochs {epochs}) and {len(titles)} sample sets: "
                  + "; ".join(titles.values()) + f". Alpha is fitted over ranks {ranks[0]}..{ranks[1]}"
                  + f"{clipped_text(ranks, params['spectral'])}. "
                  + ("The CLS token at the embedding is the same vector for every image, so its spectrum "
                     "is empty (its metrics are missing). " if "cls" in titles else "")
                  + f"Tokens: {used['spectral']}."),
         "verdicts": judged["tgo1"], "layout": r["layout"],
         "figures": [(f"{kind} — {title}", pngs[f"{key}_{s}"])
                     for s, title in titles.items()
                     for key, kind in (("spectral_depth", f"Each metric across depth, one line per checkpoint "
                                                          f"(bands: {bands}; normalized spectral entropy has "
                                                          "none)"),
                                       ("spectral_training", f"Each metric across training, one line per site "
                                                             f"(bands: {bands})"),
                                       ("eigenspectra", "Eigenspectra (log-log) with the alpha fit"))
                     if f"{key}_{s}" in pngs]},
        *sample_size_section(r, titles, pngs, params["ci"]["level"]),
        {"title": f"Token geometry — {claims.PAPERS['info_geom']}",
         "text": (f"Alpha of every token's covariance spectrum over the probe images at every block's "
                  f"output (ranks {tokens['alpha_ranks'][0]}..{tokens['alpha_ranks'][1]}"
                  f"{clipped_text(tokens['alpha_ranks'], tcfg)}); patch tokens "
                  f"clustered by their alpha signatures ({tcfg['cluster_method']}, {tcfg['n_clusters']} "
                  f"clusters), with the share of 4-neighbour patches in one cluster against "
                  f"{tcfg['n_permutations']} label permutations; inter-token Pearson correlation per image, "
                  f"averaged over token pairs and images. Tokens: {used['tokens']}; correlation: "
                  f"{used['correlation']}."),
         "verdicts": judged["info_geom"], "layout": r["layout"],
         "figures": [(caption, pngs[name]) for name, caption in (
             ("alpha_depth", "Alpha across depth: patch tokens (mean; shaded band = spread over tokens, +-1 sd) "
                             f"and the prefix tokens ({', '.join(prefix) or 'none'}), per checkpoint; black error "
                             f"bars (last checkpoint): {bands}"),
             ("alpha_maps", f"Alpha maps on the patch grid per block, epoch {int(last)}"),
             ("token_clusters", f"Token clusters on the grid and cluster-mean signatures, epoch {int(last)}"),
             ("intertoken_correlation", "Inter-token correlation: mean r and mean |r| across depth per "
                                        "checkpoint (solid: patch tokens; dashed: with CLS; dash-dot: with the "
                                        "distillation token; dotted: with the registers; dash-dot-dot: the patch "
                                        "tokens less the probe set's mean patch token)"
                                        + (", and per block across training" if len(epochs) > 1 else "")
                                        + f" (bands: {bands})"),
         ) if name in pngs]},
        {"title": f"Neuron statistics and attention — {claims.PAPERS['probing']}",
         "text": (f"Mutual information between a neuron at a central reference patch (each sampled channel "
                  f"from one of {', '.join(map(str, map(tuple, mi_summary['references'])))} in turn) and the same "
                  f"channel at each grid distance (Euclidean, rounded; distances {mi_summary['distances']}"
                  + "".join(f"; distance {d['distance']} left out, {d['reason']}"
                            for d in mi_summary["dropped_distances"])
                  + f"), averaged over {mi_summary['n_channels']} sampled channels, {mi_summary['estimator']} "
                  f"estimator minus the mean of {mi_summary['n_shuffles']} shuffle baselines, "
                  f"{mi_summary['n_images']} images, for the attention and MLP sublayer outputs; intervals from "
                  f"{mi_summary['half_samples']} half-samples of the images at epochs "
                  f"{mi_summary['replicate_epochs']}; "
                  f"excess kurtosis of all neurons; p(y|x) for a near and a far pair ({used['mi']}). "
                  "QK: M = W_Q W_K^T per head and for the heads together, split into symmetric and "
                  "antisymmetric parts, with a delete-one-head jackknife; angles between the patch vectors entering "
                  "attention (norm1's output without its bias beta, which is one vector added to every token; with "
                  f"beta beside it) against attention averaged over heads ({used['qk']})."),
         "verdicts": judged["probing"], "layout": r["layout"],
         "figures": [(caption, pngs[name]) for name, caption in (
             ("mi_distance", "MI vs distance per block (last checkpoint), "
                             + ("MI at distance 1 across training " if len(epochs) > 1 else "")
                             + "and the MI decay rate per block (bands and error bars: half-sample intervals at the "
                             "first and last checkpoint)"),
             ("kurtosis_bowtie", "Excess kurtosis per block; bowtie plots p(y|x) of the last block"),
             ("qk", "QK structure across depth (heads together; grey: per head; error bars on the share of "
                    f"obtuse angles and the Spearman correlation: {bands}), singular values and M_sym "
                    "eigenvalues per block, attention binned by angle"),
         ) if name in pngs]},
    ]
    with atomic_dir(FIGURES) as tmp:
        for name, png in pngs.items():
            (tmp / f"{name}.png").write_bytes(png)
    with atomic_file(HTML) as f:
        f.write(render_html("TGO report", f"{params['model']['name']} on {params['prepare']['source']} "
                            "data", sections, params))
    print(f"report with {len(pngs)} figures and {len(records)} verdicts -> {HTML}, {FIGURES}/, {VERDICTS}")


def clipped_text(ranks, cfg):
    """Why the fitted window differs from the param's (the stage brought it down to what the probe set holds)."""
    asked = cfg["alpha_ranks"]
    return "" if list(ranks) == list(asked) else f", not {asked[0]}..{asked[1]}: the probe images hold fewer ranks"


def interval_words(level):
    """What the captions call the intervals, e.g. "95% jackknife intervals over the probe images"."""
    return f"{100 * level:g}% jackknife intervals over the probe images"


def sample_size_section(r, titles, pngs, level):
    """The spectral section's part on the number of probe images: its figures and which metrics are
    still moving at N (the spectral stage's still_moving.csv); none for plot data written before
    sample sizes."""
    sizes = sorted({int(x["n_images"]) for x in r["sample_size"]})
    if len(sizes) < 2:
        return []
    table = []
    for s, title in titles.items():
        moving = {}
        for x in r["still_moving"]:
            if x["sample_set"] == s:
                moving.setdefault(x["metric"], []).append(x["site"])
        table.append((title, "; ".join(f"{m.replace('_', ' ')}: {', '.join(sites)}" for m, sites in moving.items())
                      or "none"))
    return [{"title": "Spectral geometry — how many probe images", "subsection": True,
             "text": (f"The headline metrics at the last checkpoint on nested random subsets of the probe images "
                      f"({', '.join(map(str, sizes))} images). A metric at a site is still moving at N = "
                      f"{sizes[-1]} when going from N/2 to N images changes it by more than the half-width of its "
                      f"{100 * level:g}% interval at N, |value(N) - value(N/2)| > (high - low) / 2: its value still "
                      "depends on how many images were probed, beyond what the interval accounts for."),
             "table": (("sample set", f"still moving at N = {sizes[-1]} (metric: sites)"), table),
             "figures": [(f"Each headline metric against the number of probe images, one line per site (where "
                          "there are more than six: the final norm and five evenly spaced blocks); error bars at N: "
                          f"{interval_words(level)} — {title}",
                          pngs[f"sample_size_{s}"]) for s, title in titles.items() if f"sample_size_{s}" in pngs]}]


def reading_text(r, level):
    """How a verdict and its origin are decided, in words (README: Claims checked)."""
    null = claims.untrained(r)
    against = (f"on the untrained network ({null[2]})" if null else
               "on the untrained network, which this run lacks (extract again: dvc repro -f -s extract)")
    return (f"Each claim is decided at the last checkpoint by where the {100 * level:g}% interval of its statistic "
            f"lies against its rule, and by the same function {against}. An observed claim is credited to "
            "training only when the difference from the untrained network lies surely in the claimed direction; "
            "when the untrained network shows it too, it is said to be already there; otherwise it is observed but "
            "not decided against the untrained network. Claims about change over training read every checkpoint "
            "and need more than one. The untrained network's value, and the difference with its interval, are "
            "in the fourth column.")


def training_text(train):
    accuracy = (f"validation top-1 {train['val_top1']:.2f}%, top-5 {train['val_top5']:.2f}%" if "val_top1" in train
                else "no validation accuracy (no classifier head, or its classes are not the data's)")
    if "weights" in train:
        return (f"No training: the weights {train['weights']} ({train['params_M']} M parameters) "
                f"are the one checkpoint analysed (epoch 0), beside their untrained network (the same "
                f"architecture at random initialisation) that every claim is also decided on; {accuracy}.")
    return f"Final {accuracy} after {train['epochs']} epochs ({train['params_M']} M parameters)."


def model_text(layout):
    """The model's token layout and preprocessing, in words."""
    p, (gh, gw) = layout["input"], layout["grid"]
    prefix = ", ".join(layout["prefix_tokens"]) or "none"
    head = layout["head_input"] or "the CLS token"
    return (f"Tokens: prefix tokens {prefix}, then {gh}x{gw} patches; {layout['n_blocks']} blocks, width "
            f"{layout['dim']}; the head reads {head}. Preprocessing: stored {p['stored_size']} px images, "
            f"{p['resize']}, centre crop {p['input_size'][-1]} px (crop_pct {p['crop_pct']:.3f}), mean "
            f"{fmt(p['mean'])}, std {fmt(p['std'])}.")


def fmt(values):
    return "(" + ", ".join(f"{v:.3f}" for v in values) + ")"


if __name__ == "__main__":
    run_stage("report", main)
