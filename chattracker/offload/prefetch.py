"""Which experts to fetch for the next MoE layer before its router runs.

``FatePredictor``: Fate's cross-layer gate — the next layer's router applied to this layer's router input.
``ActivationPathPredictor``: MoE-Infinity-style expert activation path — match this request's layer-by-expert
activation counts against past requests and rank the next layer's experts by the closest ones.
Both return a ranking (most likely first) plus the set they predict will be used, for precision/recall.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn


@dataclass
class Prediction:
    """Ranked experts for the next layer and the subset predicted to be used."""

    ranking: list[int]
    predicted: set[int]
    pooled: bool  # many tokens: fetch every expert with demand, most popular first
    counts: list[int] | None = None  # pooled: predicted tokens per ranked expert (decides the cold tail)


class Predictor:
    """No prediction (load-on-demand)."""

    name = "none"

    def begin_request(self) -> None:
        """A new prompt starts (prefill)."""

    def observe(self, position: int, top_k_index: torch.Tensor) -> None:
        """The router's real choice at MoE layer ``position``."""

    def predict(self, position: int, hidden_states: torch.Tensor) -> Prediction | None:
        return None


class FatePredictor(Predictor):
    """Apply MoE layer p+1's router to the tensor that layer p's router sees (no training, no extra weights)."""

    name = "fate"

    def __init__(self, gates: list[nn.Module], num_experts: int) -> None:
        self.gates, self.num_experts = gates, num_experts

    @torch.no_grad()
    def predict(self, position: int, hidden_states: torch.Tensor) -> Prediction | None:
        if position + 1 >= len(self.gates):
            return None
        logits, _, indices = self.gates[position + 1](hidden_states)
        if hidden_states.shape[0] == 1:
            # decode: the router's own top-k first (its tie-breaking), then the runners-up; few tensor ops, as this
            # runs at every layer of every token, on the same cores as the model on a CPU machine
            chosen = indices.reshape(-1).tolist()
            ranking = chosen + [e for e in torch.argsort(logits.reshape(-1), descending=True).tolist() if e not in chosen]
            return Prediction(ranking, set(chosen), pooled=False)
        indices = indices.reshape(-1)
        predicted = set(indices[indices < self.num_experts].tolist())
        counts = torch.bincount(indices, minlength=self.num_experts)[: self.num_experts]
        order = [e for e in torch.argsort(counts, descending=True, stable=True).tolist() if counts[e] > 0]
        return Prediction(order, predicted, pooled=True, counts=counts[order].tolist())


class ActivationPathPredictor(Predictor):
    """Expert-activation-path prefetch: nearest past activation matrix (cosine over the layers seen so far)."""

    name = "eap"

    def __init__(self, num_layers: int, num_experts: int, top_k: int, history: int = 64) -> None:
        self.num_layers, self.num_experts, self.top_k, self.history_size = num_layers, num_experts, top_k, history
        self.history: list[torch.Tensor] = []
        self.current = torch.zeros(num_layers, num_experts)

    def begin_request(self) -> None:
        if self.current.sum() > 0:
            self.history = (self.history + [self.current])[-self.history_size:]
        self.current = torch.zeros(self.num_layers, self.num_experts)

    def observe(self, position: int, top_k_index: torch.Tensor) -> None:
        flat = top_k_index.reshape(-1)
        self.current[position] += torch.bincount(flat[flat < self.num_experts], minlength=self.num_experts).float()

    def predict(self, position: int, hidden_states: torch.Tensor) -> Prediction | None:
        if position + 1 >= self.num_layers:
            return None
        scores = self.current[position + 1].clone()
        if self.history:
            seen = self.current[: position + 1].reshape(-1)
            past = torch.stack([matrix[: position + 1].reshape(-1) for matrix in self.history])
            similarity = torch.nn.functional.cosine_similarity(past, seen[None], dim=-1)
            best = self.history[int(similarity.argmax())][position + 1]
            scores = scores / scores.sum().clamp_min(1) + best / best.sum().clamp_min(1)
        if scores.sum() <= 0:
            return None
        order = torch.argsort(scores, descending=True, stable=True).tolist()
        ranking = [e for e in order if scores[e] > 0]
        pooled = hidden_states.shape[0] > 1
        predicted = set(ranking) if pooled else set(ranking[: self.top_k])
        return Prediction(ranking, predicted, pooled)
