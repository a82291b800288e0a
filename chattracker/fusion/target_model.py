"""Step 3c: the learned "this candidate is the target" score, read from a small versioned parameter file.

The file is written by ``bench/fusion_train.py`` (logistic regression over ``features.FEATURES``, fitted
on the development sequences with labels IoU >= 0.5 against the ground truth) and read here with numpy
alone. Beside it a manifest records the version, the feature names in order, the training sequences, the
cross-validated scores and the file's sha256; the loader checks all of it, so a missing, edited or
mismatched file is one clear error naming the file instead of a silently different tracker.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from chattracker.errors import ConfigError
from chattracker.fusion.features import FEATURES

FORMAT_VERSION = 1
BUNDLED = Path(__file__).resolve().parent.parent / "data" / "fusion" / "target_scorer.json"


def manifest_path(path: Path) -> Path:
    return path.with_name(path.stem + ".manifest.json")


@dataclass
class LinearScorer:
    """Standardised features -> logit (log-odds that the candidate is the target)."""

    mean: np.ndarray
    scale: np.ndarray
    weights: np.ndarray
    bias: float

    def logits(self, features: np.ndarray) -> np.ndarray:
        if features.size == 0:
            return np.zeros(0)
        return ((features - self.mean) / self.scale) @ self.weights + self.bias

    def to_dict(self) -> dict[str, Any]:
        return {"mean": self.mean.tolist(), "scale": self.scale.tolist(), "weights": self.weights.tolist(),
                "bias": float(self.bias)}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "LinearScorer":
        arrays = [np.asarray(data[k], dtype=np.float64) for k in ("mean", "scale", "weights")]
        if any(a.shape != (len(FEATURES),) for a in arrays) or not all(np.all(np.isfinite(a)) for a in arrays):
            raise ValueError(f"mean, scale and weights must be {len(FEATURES)} finite numbers each")
        if np.any(arrays[1] <= 0):
            raise ValueError("scale must be positive")
        bias = float(data["bias"])
        if not np.isfinite(bias):
            raise ValueError("bias must be finite")
        return cls(*arrays, bias)


@dataclass
class TargetModel:
    """One scorer per base tracker name, a ``default`` one for any other base, and the path's settings
    chosen by the same cross-validation."""

    scorers: dict[str, LinearScorer]
    switch_cost: float
    decay: float
    unseen: float
    path: str = "<memory>"

    def scorer_for(self, base_name: str) -> LinearScorer:
        return self.scorers.get(base_name) or self.scorers["default"]

    def to_dict(self) -> dict[str, Any]:
        return {"format": FORMAT_VERSION, "features": list(FEATURES),
                "scorers": {k: v.to_dict() for k, v in self.scorers.items()},
                "path": {"switch_cost": self.switch_cost, "decay": self.decay, "unseen": self.unseen}}


def save_model(model: TargetModel, path: str | os.PathLike[str], manifest: dict[str, Any]) -> str:
    """Write the parameter file and its manifest (sha256 of the file's bytes) atomically; returns the sha256."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    data = (json.dumps(model.to_dict(), indent=1, sort_keys=True) + "\n").encode()
    digest = hashlib.sha256(data).hexdigest()
    full = {"format": FORMAT_VERSION, "file": path.name, "sha256": digest, "features": list(FEATURES), **manifest}
    for target, payload in ((path, data), (manifest_path(path), (json.dumps(full, indent=1) + "\n").encode())):
        temporary = target.with_name(f".{target.name}.partial")
        temporary.write_bytes(payload)
        os.replace(temporary, target)
    return digest


def load_model(path: str | os.PathLike[str] | None = None) -> TargetModel:
    """Read and check a parameter file (default: the bundled one); every problem is one ``ConfigError``
    naming the file."""
    path = Path(path) if path is not None else BUNDLED
    manifest_file = manifest_path(path)
    for needed in (path, manifest_file):
        if not needed.is_file():
            raise ConfigError(f"{needed}: fusion model file does not exist (retrain it with "
                              f"bench/fusion_train.py, or set 'model' in the chattracker settings)")
    data = path.read_bytes()
    try:
        manifest = json.loads(manifest_file.read_text(encoding="utf-8"))
        content = json.loads(data)
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise ConfigError(f"{path}: fusion model file is not valid JSON ({error})") from None
    if not isinstance(manifest, dict) or manifest.get("sha256") != hashlib.sha256(data).hexdigest():
        raise ConfigError(f"{path}: fusion model file does not match the sha256 in {manifest_file.name} "
                          f"(corrupt or edited; retrain with bench/fusion_train.py)")
    try:
        if content.get("format") != FORMAT_VERSION or manifest.get("format") != FORMAT_VERSION:
            raise ValueError(f"format {content.get('format')!r}, this version reads {FORMAT_VERSION}")
        if content.get("features") != list(FEATURES) or manifest.get("features") != list(FEATURES):
            raise ValueError("its features are not this version's (retrain it)")
        scorers = {name: LinearScorer.from_dict(v) for name, v in content["scorers"].items()}
        if "default" not in scorers:
            raise ValueError("no 'default' scorer")
        settings = content["path"]
        switch_cost, decay, unseen = (float(settings[k]) for k in ("switch_cost", "decay", "unseen"))
        if not (np.isfinite(switch_cost) and switch_cost >= 0 and 0 < decay <= 1 and np.isfinite(unseen)):
            raise ValueError("path settings out of range (switch_cost >= 0, 0 < decay <= 1, finite unseen)")
    except (KeyError, TypeError, ValueError, AttributeError) as error:
        raise ConfigError(f"{path}: bad fusion model file: {error}") from None
    return TargetModel(scorers, switch_cost, decay, unseen, str(path))
