"""Where a model's artifacts live. The pipeline's own model (trained here, or model.weights) keeps
them at the top level; each model of the zoo (params group `zoo`) under its id:

                  the pipeline's model        zoo model <id>
  checkpoints     data/checkpoints            data/zoo/<id>/checkpoints
  activations     data/activations            data/zoo/<id>/activations
  (in progress)   data/extract-work           data/zoo/<id>/extract-work
  plot data       reports/<stage>/            reports/zoo/<id>/<stage>/
  metrics         reports/metrics/<stage>.json  reports/zoo/<id>/metrics/<stage>.json

A stage script works on the pipeline's model, or on zoo model <id> when dvc.yaml runs it with
`--zoo <id>` (the zoo_* stages).
"""
import sys
from dataclasses import dataclass
from pathlib import Path

from tgo.io import TGOError, read_csv, read_json

STAGES = ("spectral", "tokens", "correlation", "mi", "qk")  # the analysis stages, each with plot data


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


def results(run):
    """Everything the analysis stages wrote for a run (plot data rows, numbers as floats; the
    metrics JSON files; the model's token layout and which tokens each stage used), for the
    report, the verdicts and the zoo page."""
    def rows(stage, name):
        path = run.plots(stage) / f"{name}.csv"
        return read_csv(path) if path.exists() else []

    out = {"train": read_json(run.metrics("train" if run.zoo_id is None else "model")),
           "spectral": read_json(run.metrics("spectral")), "tokens": read_json(run.metrics("tokens")),
           "mi": read_json(run.metrics("mi")),
           "qk": read_json(run.metrics("qk")),
           "spectral_rows": rows("spectral", "metrics"), "eigenspectra": rows("spectral", "eigenspectra"),
           "token_depth": rows("tokens", "depth_all"), "signatures": rows("tokens", "signatures"),
           "coherence": rows("tokens", "coherence"), "correlation": rows("correlation", "correlation"),
           "tokens_used": {s: read_json(run.plots(s) / "tokens_used.json") for s in STAGES},
           "spectral_replicates": rows("spectral", "replicates"), "sample_size": rows("spectral", "sample_size"),
           "token_replicates": rows("tokens", "replicates"),
           "correlation_replicates": rows("correlation", "replicates")}
    out.update({name: rows("mi", name) for name in ("mi_distance", "kurtosis", "bowtie")})
    out.update({f"qk_{name}": rows("qk", name)
                for name in ("heads", "spectra", "angles", "attention_by_angle", "replicates")})
    out["layout"] = out["tokens_used"]["spectral"]["layout"]
    return out
