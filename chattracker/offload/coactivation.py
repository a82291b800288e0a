"""Klotski's correlation-aware prefetch: an offline table of which experts layer p+1 picks given layer p's picks.

The table is counted from the model's own routing on calibration prompts (``calibrate``) and saved in the store as
``coactivation.pt``. At run time the experts a batch group chose at layer p give, through the table, the expected
number of tokens each expert of layer p+1 will get; that is pooled with Fate's cross-layer gate over the group.
"""

from __future__ import annotations

import logging
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from chattracker.offload.prefetch import FatePredictor, Prediction
from chattracker.offload.store import ExpertStore, ExpertStoreError

log = logging.getLogger(__name__)

TABLE_FILE = "coactivation.pt"


def selection_matrix(top_k_index: torch.Tensor, num_experts: int) -> torch.Tensor:
    """[tokens, experts] 0/1: which experts each token chose (indices outside the model are ignored)."""
    index = top_k_index.reshape(top_k_index.shape[0], -1).long()
    valid = index < num_experts
    out = torch.zeros(index.shape[0], num_experts + 1)
    out.scatter_(1, torch.where(valid, index, num_experts), 1.0)
    return out[:, :num_experts]


@dataclass
class CoactivationTable:
    """``counts[p, a, b]``: calibration tokens that chose expert a at MoE position p and expert b at p + 1."""

    counts: torch.Tensor  # float64 [positions - 1, experts, experts]
    tokens: int  # calibration tokens counted (per position)
    prompts: int

    @classmethod
    def from_routing(cls, routing: list[tuple[int, torch.Tensor]], num_positions: int, num_experts: int,
                     prompts: int) -> "CoactivationTable":
        """Count pairs from an engine's ``routing_log``: consecutive calls p, p+1 of one forward share their tokens."""
        counts = torch.zeros(max(num_positions - 1, 0), num_experts, num_experts, dtype=torch.float64)
        tokens = 0
        for (position, before), (following, after) in zip(routing, routing[1:]):
            if following != position + 1 or before.shape[0] != after.shape[0]:
                continue
            first, second = selection_matrix(before, num_experts), selection_matrix(after, num_experts)
            counts[position] += (first.T @ second).double()
            if position == 0:
                tokens += before.shape[0]
        return cls(counts, tokens, prompts)

    def conditional(self, position: int) -> torch.Tensor:
        """[a, b]: of the layer-(p+1) picks of tokens that picked a, the share that went to b (rows sum to 1)."""
        table = self.counts[position]
        return (table / table.sum(dim=1, keepdim=True).clamp_min(1e-9)).float()

    def expected(self, position: int, top_k_index: torch.Tensor) -> torch.Tensor:
        """[experts]: expected tokens per layer-(p+1) expert given the group's choices at ``position`` (tokens whose
        expert a was never seen in calibration add nothing)."""
        picks = selection_matrix(top_k_index, self.counts.shape[1]).sum(dim=0)
        return picks @ self.conditional(position)

    # ---- saved with the store ------------------------------------------------------------------------------
    def save(self, store: ExpertStore) -> Path:
        """Written atomically next to the store's manifest."""
        path = store.root / TABLE_FILE
        fd, temporary = tempfile.mkstemp(prefix=f".{TABLE_FILE}.", suffix=".tmp", dir=store.root)
        os.close(fd)
        try:
            torch.save({"counts": self.counts, "tokens": self.tokens, "prompts": self.prompts,
                        "layers": list(store.layers), "num_experts": store.num_experts}, temporary)
            os.replace(temporary, path)
        finally:
            Path(temporary).unlink(missing_ok=True)
        return path

    @classmethod
    def load(cls, store: ExpertStore) -> "CoactivationTable | None":
        """The store's table, or None when it has none; a table of another model is a clear error."""
        path = store.root / TABLE_FILE
        if not path.is_file():
            return None
        try:
            data = torch.load(path, weights_only=True)
            table = cls(data["counts"], int(data["tokens"]), int(data["prompts"]))
            layers, experts = list(data["layers"]), int(data["num_experts"])
        except Exception as error:  # torch.load raises many types for a damaged file
            raise ExpertStoreError(f"{path} is unreadable ({type(error).__name__}: {error}); "
                                   "calibrate again (chattracker.offload.coactivation.calibrate)") from error
        shape = (max(len(store.layers) - 1, 0), store.num_experts, store.num_experts)
        if layers != list(store.layers) or experts != store.num_experts or tuple(table.counts.shape) != shape:
            raise ExpertStoreError(f"{path} was counted for another model (layers/experts differ); "
                                   "calibrate again (chattracker.offload.coactivation.calibrate)")
        return table


class CoactivationPredictor(FatePredictor):
    """Fate's cross-layer gate pooled over the batch group, plus the co-activation table's expectation.

    Both give expected tokens per next-layer expert; their mean ranks the prefetch (Klotski, path length 1)."""

    name = "klotski"

    def __init__(self, gates: list[nn.Module], num_experts: int, table: CoactivationTable | None,
                 table_weight: float = 0.5) -> None:
        super().__init__(gates, num_experts)
        self.table, self.table_weight = table, table_weight if table is not None else 0.0
        self._seen: tuple[int, torch.Tensor] | None = None

    def observe(self, position: int, top_k_index: torch.Tensor) -> None:
        self._seen = (position, top_k_index)

    def scores(self, position: int, hidden_states: torch.Tensor) -> torch.Tensor:
        """[experts]: expected tokens per expert of MoE position ``position + 1``."""
        _, _, indices = self.gates[position + 1](hidden_states)
        gate = selection_matrix(indices, self.num_experts).sum(dim=0)
        if not self.table_weight or self._seen is None or self._seen[0] != position:
            return gate
        table = self.table.expected(position, self._seen[1])
        return (1 - self.table_weight) * gate + self.table_weight * table

    @torch.no_grad()
    def predict(self, position: int, hidden_states: torch.Tensor) -> Prediction | None:
        if position + 1 >= len(self.gates):
            return None
        scores = self.scores(position, hidden_states)
        # only experts expected to get at least half a token: the table spreads a little weight over many experts,
        # and reading all of them would spend the layer's slots and bandwidth on guesses that mostly miss
        order = [e for e in torch.argsort(scores, descending=True, stable=True).tolist() if scores[e] >= 0.5]
        return Prediction(order, set(order), pooled=hidden_states.shape[0] > 1,
                          counts=[max(1, int(round(float(scores[e])))) for e in order])


def calibrate(model: nn.Module, engine, prompts: list[dict], max_new_tokens: int = 8) -> CoactivationTable:
    """Run ``prompts`` (generate() inputs) through the offloaded model, count the routing, save it in the store."""
    engine.routing_log = []
    try:
        with torch.inference_mode():
            for inputs in prompts:
                model.generate(**inputs, max_new_tokens=max_new_tokens, do_sample=False)
        table = CoactivationTable.from_routing(engine.routing_log, len(engine.store.layers), engine.store.num_experts,
                                               len(prompts))
    finally:
        engine.routing_log = None
    path = table.save(engine.store)
    log.info("co-activation table from %d prompts (%d tokens) saved to %s", len(prompts), table.tokens, path)
    return table
