"""TGO — the Transformer Geometry Observatory.

The library behind the DVC pipeline (README.md has the repository map): params (`tgo.params`),
data (`tgo.sources`, `tgo.data`, `tgo.imagenet`), models (`tgo.models`, with `tgo.weights`),
training (`tgo.training`, with `tgo.augment`, `tgo.loader`, `tgo.distributed`, `tgo.checkpoints`),
activation capture (`tgo.capture`) and the activation store (`tgo.activations`), geometry metrics
(`tgo.geometry`, one module per metric family, usable on plain numpy arrays), verdicts on the
papers' claims (`tgo.claims`; across seeds and analysis variants `tgo.robustness`) and the report
(`tgo.figures`, `tgo.page`).
"""
