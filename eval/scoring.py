"""Score a folder of result files (``<seq>.txt``) against a benchmark's annotations.

Reads result files only (never runs a tracker). Missing files are listed, not fatal; a malformed
file is an error naming it. Every report carries the protocol and the number of sequences scored.
"""

from __future__ import annotations

import json
import logging
import math
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from chattracker.errors import InputError
from chattracker_eval.datasets.base import Benchmark
from chattracker_eval.metrics import Average, Curves
from chattracker_eval.protocols import ResultError, get_protocol, score_sequence
from chattracker_eval.textfile import read_table

logger = logging.getLogger(__name__)

MIN_ATTRIBUTE_SEQUENCES = 2  # the toolkit skips attributes with fewer sequences


@dataclass
class AttributeScore:
    short: str
    name: str
    average: Average


@dataclass
class ScoreReport:
    """One results folder scored on one benchmark under one protocol."""

    protocol: str
    benchmark: str
    results: str
    average: Average
    per_sequence: dict[str, Curves]
    missing: list[str]
    attributes: list[AttributeScore] = field(default_factory=list)
    init: str = "box"  # how frame 1 was started (run.json); "language": frame 1 predicted and scored

    @property
    def num_sequences(self) -> int:
        return len(self.per_sequence)

    @property
    def label(self) -> str:
        return Path(self.results).name or self.results

    def to_json(self) -> dict:
        """The machine-readable form (values in percent; NaN becomes null)."""
        summary = self.average.curves.summary()
        return {
            "protocol": self.protocol,
            "init": self.init,
            "benchmark": self.benchmark,
            "num_sequences": self.num_sequences,
            "missing": list(self.missing),
            "auc": _number(summary["auc"]),
            "precision": _number(summary["precision"]),
            "norm_precision": _number(summary["norm_precision"]),
            "sequences": {name: {key: _number(value) for key, value in curves.summary().items()
                                 if key in ("auc", "precision", "norm_precision")}
                          for name, curves in self.per_sequence.items()},
        }


def _number(value: float) -> float | None:
    return None if value is None or math.isnan(value) else float(value)


def result_path(results_dir: Path, name: str) -> Path:
    return results_dir / f"{name}.txt"


def read_result(path: Path) -> np.ndarray:
    """A result file as ``(N, 4)`` rows (extra columns, e.g. a score, are ignored)."""
    return read_table(path, columns=4)


def score_results(benchmark: Benchmark, results_dir: str | Path, protocol_name: str = "official") -> ScoreReport:
    """Score every sequence of ``benchmark`` that has a result file in ``results_dir``."""
    results_dir = Path(results_dir)
    if not results_dir.is_dir():
        raise InputError(f"results folder {results_dir} does not exist")
    rows: dict[str, np.ndarray] = {}
    sources: dict[str, Path] = {}
    for sequence in benchmark:
        path = result_path(results_dir, sequence.name)
        if path.is_file():
            rows[sequence.name] = read_result(path)
            sources[sequence.name] = path
    return score_boxes(benchmark, rows, protocol_name, str(results_dir), sources, init_mode(results_dir))


def init_mode(results_dir: Path) -> str:
    """How the folder's results were started (``run.json`` of ``chattracker eval``); "box" without one."""
    path = results_dir / "run.json"
    if not path.is_file():
        return "box"
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as error:
        raise InputError(f"{path} is unreadable ({error}); it says how frame 1 was started") from None
    return str(data.get("init", "box")) if isinstance(data, dict) else "box"


def score_boxes(benchmark: Benchmark, results: dict[str, np.ndarray], protocol_name: str = "official",
                label: str = "results", sources: dict[str, Path] | None = None, init: str = "box") -> ScoreReport:
    """Score in-memory result boxes (``name -> (N, 4)``); sequences without an entry are missing. With
    ``init`` "language" frame 1 was predicted and is scored as given."""
    protocol, uses_absent = get_protocol(protocol_name, benchmark.name, keep_first=init == "language")
    sources = sources or {}
    per_sequence: dict[str, Curves] = {}
    missing: list[str] = []
    for sequence in benchmark:
        if sequence.name not in results:
            missing.append(sequence.name)
            continue
        rows = np.asarray(results[sequence.name], dtype=np.float64)
        if len(sequence) > 1 and np.isnan(sequence.ground_truth[1:]).all():
            raise InputError(f"{benchmark.name} sequence {sequence.name} has no ground truth after its first box "
                             "(a test split): pack the results for the evaluation server (`chattracker pack`)")
        where = str(sources.get(sequence.name, f"{label}: {sequence.name}"))
        if len(rows) == 0:
            # The toolkit would score zero curves and its eps rule would drop the sequence from the mean
            # unannounced; a short file is an error, so an empty one is too (issue 36).
            raise InputError(f"{where}: empty result file (0 rows for {len(sequence)} frames)")
        absent = sequence.absent if uses_absent else None
        try:
            per_sequence[sequence.name] = score_sequence(protocol, rows, sequence.ground_truth, absent)
        except ResultError as error:
            raise InputError(f"{where}: {error}") from None
    if missing:
        logger.warning("%s: %d of %d sequence(s) have no result in %s", benchmark.name, len(missing),
                       len(benchmark), label)
    average = protocol.average(list(per_sequence.values()))
    report = ScoreReport(protocol.name, benchmark.name, label, average, per_sequence, missing, init=init)
    report.attributes = attribute_scores(benchmark, report, protocol)
    return report


def attribute_scores(benchmark: Benchmark, report: ScoreReport, protocol) -> list[AttributeScore]:
    """Per attribute, the protocol's average over the scored sequences that have it."""
    scores = []
    names = dict(benchmark.attribute_names)
    for sequence in benchmark:
        for short in sequence.attributes:
            names.setdefault(short, short)
    for short, long_name in names.items():
        chosen = [report.per_sequence[s.name] for s in benchmark
                  if s.attributes.get(short) and s.name in report.per_sequence]
        if len(chosen) >= MIN_ATTRIBUTE_SEQUENCES:
            scores.append(AttributeScore(short, long_name, protocol.average(chosen)))
    return scores
