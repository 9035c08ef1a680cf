"""TGO — the Transformer Geometry Observatory.

The library behind the DVC pipeline: data (`tgo.data`), models (`tgo.models`), training
(`tgo.training`), activation capture (`tgo.capture`), geometry metrics (`tgo.geometry`, one module
per metric family, usable on plain numpy arrays) and the report (`tgo.report`).
"""
