"""Counters the engine keeps: cache hits, prediction quality per layer, bytes read, time blocked on IO."""

from __future__ import annotations

import threading
from collections import defaultdict
from dataclasses import dataclass, field


@dataclass
class LayerStats:
    """Per MoE layer: demand outcome and how the prediction made for it compared with what the router chose."""

    demanded: int = 0  # distinct experts the router needed, summed over forward calls
    hits: int = 0  # already resident when needed
    late_hits: int = 0  # prefetch was in flight when needed (partial hit: some IO wait)
    misses: int = 0  # loaded on demand
    predicted: int = 0  # experts named by the predictor for this layer
    predicted_correct: int = 0  # of those, used by the router in the same step
    actual_predictable: int = 0  # router-chosen experts in steps where a prediction existed


@dataclass
class EngineStats:
    """Totals over the engine's life; :meth:`reset` starts a new measurement window."""

    layers: dict[int, LayerStats] = field(default_factory=lambda: defaultdict(LayerStats))
    bytes_read: int = 0
    loads_demand: int = 0
    loads_prefetch: int = 0
    loads_cold: int = 0  # of all loads, those of the cold (fewer-bit) tier
    bytes_read_cold: int = 0
    prefetch_unused: int = 0  # prefetched experts evicted before any use
    gate_skips: int = 0  # decode predictions skipped because they cost more than they saved (adaptive gate)
    io_wait_s: float = 0.0
    io_busy_s: float = 0.0
    peak_resident_bytes: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def reset(self) -> None:
        with self.lock:
            self.layers = defaultdict(LayerStats)
            self.bytes_read = self.loads_demand = self.loads_prefetch = self.prefetch_unused = 0
            self.loads_cold = self.bytes_read_cold = self.gate_skips = 0
            self.io_wait_s = self.io_busy_s = 0.0

    def record_prediction(self, layer: int, predicted: set[int], actual: set[int]) -> None:
        with self.lock:
            entry = self.layers[layer]
            entry.predicted += len(predicted)
            entry.predicted_correct += len(predicted & actual)
            entry.actual_predictable += len(actual)

    @property
    def hit_rate(self) -> float:
        demanded = sum(s.demanded for s in self.layers.values())
        return sum(s.hits for s in self.layers.values()) / demanded if demanded else 0.0

    def summary(self) -> dict:
        """Plain-JSON view: totals plus per-layer hit rate, precision and recall."""
        total = LayerStats()
        per_layer = {}
        for layer, s in sorted(self.layers.items()):
            for name in vars(total):
                setattr(total, name, getattr(total, name) + getattr(s, name))
            per_layer[str(layer)] = {
                "hit_rate": _ratio(s.hits, s.demanded),
                "precision": _ratio(s.predicted_correct, s.predicted) if s.predicted else None,
                "recall": _ratio(s.predicted_correct, s.actual_predictable) if s.actual_predictable else None,
                **vars(s)}
        return {
            "hit_rate": _ratio(total.hits, total.demanded),
            "hit_or_late_rate": _ratio(total.hits + total.late_hits, total.demanded),
            "precision": _ratio(total.predicted_correct, total.predicted) if total.predicted else None,
            "recall": _ratio(total.predicted_correct, total.actual_predictable) if total.actual_predictable else None,
            "demanded": total.demanded, "hits": total.hits, "late_hits": total.late_hits, "misses": total.misses,
            "bytes_read": self.bytes_read, "loads_demand": self.loads_demand, "loads_prefetch": self.loads_prefetch,
            "loads_cold": self.loads_cold, "bytes_read_cold": self.bytes_read_cold, "gate_skips": self.gate_skips,
            "prefetch_unused": self.prefetch_unused, "io_wait_s": self.io_wait_s, "io_busy_s": self.io_busy_s,
            "peak_resident_bytes": self.peak_resident_bytes, "layers": per_layer,
        }


def _ratio(numerator: float, denominator: float) -> float:
    return numerator / denominator if denominator else 0.0
