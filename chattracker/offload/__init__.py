"""MoE expert offloading (Fate design): a quantized per-expert store on disk, a byte-budgeted cache, cross-layer
gate prefetch, serving a stock transformers model so ``generate()`` works unchanged."""

from chattracker.offload.convert import convert_checkpoint
from chattracker.offload.loader import load_offloaded_model
from chattracker.offload.runtime import OffloadEngine, parse_budget
from chattracker.offload.store import ExpertStore, ExpertStoreError

__all__ = ["convert_checkpoint", "load_offloaded_model", "OffloadEngine", "ExpertStore", "ExpertStoreError",
           "parse_budget"]
