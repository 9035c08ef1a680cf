"""Where a model's artifacts live. The pipeline's own model (trained here, or model.weights) keeps
them at the top level; each model of the zoo (params group `zoo`) under its id:

                  the pipeline's model           zoo model <id>
  checkpoints     data/checkpoints               data/zoo/<id>/checkpoints
  activations     data/activations               data/zoo/<id>/activations
  (in progress)   data/train-work, extract-work  data/zoo/<id>/extract-work
  plot data       reports/<stage>/               reports/zoo/<id>/<stage>/
  metrics         reports/metrics/<stage>.json   reports/zoo/<id>/metrics/<stage>.json

Every model reads the same prepared data, PREPARED (data/prepared, the prepare stage's output).

A stage script works on the pipeline's model, or on zoo model <id> when dvc.yaml runs it with
`--zoo <id>` (the zoo_* stages).
"""
import sys
from dataclasses import dataclass
from pathlib import Path

from tgo.io import TGOError, read_csv, read_json

PREPARED = Path("data/prepared")
STAGES = ("spectral", "tokens", "correlation", "mi", "qk")  # the analysis stages, each with plot data
# The spectral stage's metrics (tgo.geometry.spectral), in the order the figures show them, each with
# its headline flag: a headline metric has intervals and sample-size curves, a summary in
# spectral.json and bands in the report.
SPECTRAL_METRICS = {"effective_rank": True, "rankme": True, "stable_rank": True, "participation_ratio": True,
                    "spectral_entropy": True, "spectral_entropy_normalized": False, "spectral_flatness": True,
                    "anisotropy": True, "mean_cosine_similarity": True, "alpha": True}
HEADLINE_METRICS = tuple(name for name, headline in SPECTRAL_METRICS.items() if headline)
# The untrained network of pretrained weights: its activations and each stage's plot data, beside the model's.
INIT = "init"


@dataclass(frozen=True)
class Run:
    zoo_id: str = None

    @property
    def data(self):
        return Path("data") if self.zoo_id is None else Path("data/zoo") / self.zoo_id

    @property
    def reports(self):
        return Path("reports") if self.zoo_id is None else Path("reports/zoo") / self.zoo_id

    @property
    def checkpoints(self):
        return self.data / "checkpoints"

    @property
    def activations(self):
        return self.data / "activations"

    @property
    def train_work(self):
        """Where train writes until a run is finished (no DVC output, so a killed run resumes from it),
        and the lock (a PID) that keeps a second trainer out of it."""
        return self.data / "train-work"

    @property
    def train_lock(self):
        return self.data / ".train.lock"

    @property
    def extract_work(self):
        """Where extract keeps the checkpoints it has finished until all are done (no DVC output, so
        a killed extract resumes from it)."""
        return self.data / "extract-work"

    def plots(self, stage):
        """The stage's plot data directory."""
        return self.reports / stage

    def metrics(self, stage):
        """The stage's metrics file."""
        return self.reports / "metrics" / f"{stage}.json"


def from_argv(argv=None):
    """The run a stage script works on: `--zoo <id>` on its command line, or the pipeline's own."""
    args = sys.argv[1:] if argv is None else argv
    if not args:
        return Run()
    if len(args) == 2 and args[0] == "--zoo":
        return Run(args[1])
    raise TGOError(f"arguments {' '.join(args)}: a stage takes none, or --zoo <id> (dvc.yaml's zoo_* stages)")


# {results key: (stage, plot data file)}: the rows every reader of a run's results gets.
ROWS = {"spectral_rows": ("spectral", "metrics"), "eigenspectra": ("spectral", "eigenspectra"),
        "spectral_replicates": ("spectral", "replicates"), "sample_size": ("spectral", "sample_size"),
        "still_moving": ("spectral", "still_moving"),
        "token_depth": ("tokens", "depth_all"), "signatures": ("tokens", "signatures"),
        "coherence": ("tokens", "coherence"), "token_replicates": ("tokens", "replicates"),
        "correlation": ("correlation", "correlation"), "correlation_replicates": ("correlation", "replicates"),
        "mi_distance": ("mi", "mi_distance"), "kurtosis": ("mi", "kurtosis"), "bowtie": ("mi", "bowtie"),
        "mi_replicates": ("mi", "replicates"), "kurtosis_replicates": ("mi", "kurtosis_replicates"),
        "mi_decay": ("mi", "decay"), "mi_decay_replicates": ("mi", "decay_replicates"),
        **{f"qk_{name}": ("qk", name) for name in ("heads", "spectra", "angles", "attention_by_angle", "replicates",
                                                  "head_replicates")}}


def results(run):
    """Everything the analysis stages wrote for a run (plot data rows, numbers as floats; the
    metrics JSON files; the model's token layout and which tokens each stage used), for the
    report, the verdicts and the zoo page. For pretrained weights, `init` holds the same rows of
    the untrained network (the stages' `init/` plot data: the architecture at random
    initialisation on the same probe images)."""
    def rows(folder):
        found = {}
        for key, (stage, name) in ROWS.items():
            path = folder(stage) / f"{name}.csv"
            found[key] = read_csv(path) if path.exists() else []
        return found

    out = {"train": read_json(run.metrics("train" if run.zoo_id is None else "model")),
           "metrics": {stage: read_json(run.metrics(stage)) for stage in STAGES},
           "tokens_used": {s: read_json(run.plots(s) / "tokens_used.json") for s in STAGES}, **rows(run.plots)}
    out["layout"] = out["tokens_used"]["spectral"]["layout"]
    if (run.plots("spectral") / INIT).is_dir():
        same = ("train", "metrics", "tokens_used", "layout")
        out["init"] = {**{k: out[k] for k in same}, **rows(lambda stage: run.plots(stage) / INIT)}
    return out
