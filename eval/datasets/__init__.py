"""Benchmark loaders: one module per dataset; each returns a ``Benchmark`` of ``Sequence`` objects."""

from chattracker_eval.datasets.base import DATASETS, Benchmark, Sequence, SequenceList, load_dataset

__all__ = ["DATASETS", "Benchmark", "Sequence", "SequenceList", "load_dataset"]
