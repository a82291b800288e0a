"""Reflection-based prompt optimisation (RPO, DESIGN.md section 1), once per sequence on frame 1.

The describer writes a phrase for the boxed target (or the loop starts from a user's or dataset's
text); the grounder looks for it on the same frame; boxes overlapping the given box are positive,
the others negative, and the best-scoring word of each box becomes a positive or a negative word.
Those words and the earlier attempts go back to the describer, N rounds. The result is the attempt
whose top-scoring box overlaps the target most (ties: the earliest), so RPO never ends worse than its
first description. Every prompt, reply, grounding and error is kept in a JSON-ready trace, and
``RPOCache`` stores results on disk so a benchmark run never asks a model twice.
"""

from __future__ import annotations

import functools
import hashlib
import importlib.metadata
import inspect
import json
import logging
import re
import time
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Annotated, Any, Callable, Iterator

import numpy as np

from chattracker.config import Range, Why, check_instance, check_settings
from chattracker.errors import ConfigError
from chattracker.grounding.base import Grounder
from chattracker.mllm.base import Attempt, Describer, Feedback
from chattracker.mllm.errors import DescriberError, DescriberUnavailableError
from chattracker.results import write_json
from chattracker.types import Box, Description, Frame, Proposals

logger = logging.getLogger(__name__)

TRACE_VERSION = 1
SELECTIONS = ("best", "last")
# Function words never make useful feedback: a grounder that scores "the" highest says nothing.
STOP_WORDS = {"a", "an", "the", "of", "in", "on", "at", "to", "and", "with", "is", "its", "his", "her", "their", "by"}


@dataclass
class RPOConfig:
    """Settings of the loop; the paper leaves all of them open, so they are exposed and ablated."""

    iterations: Annotated[int, Range(1, 100), Why(
        "describer rounds at most (a given initial text is grounded before them); each round is one model call")] = 3
    positive_iou: Annotated[float, Range(0.0, 1.0), Why(
        "a grounded box with at least this IoU with the given box is positive (the detection convention, 0.5)")] = 0.5
    box_threshold: Annotated[float, Range(0.0, 1.0), Why(
        "grounded boxes scoring below this are ignored (GroundingDINO's demo default, 0.25)")] = 0.25
    word_threshold: Annotated[float, Range(0.0, 1.0), Why(
        "a box's best word must score above this to become feedback (0: any word that wins counts)")] = 0.0
    max_boxes: Annotated[int, Range(1, None), Why(
        "only the top-scoring boxes give words: low-scoring ones are mostly noise")] = 10
    selection: str = "best"  # "best": highest top-1 IoU, ties -> earliest; "last": the paper's last round
    early_stop: bool = True  # stop once only the target is found, or the describer repeats itself
    ground_background: bool = True  # also ground the background phrases (trace only: which hit the target)

    def __post_init__(self) -> None:
        check_instance("rpo", self)
        if self.selection not in SELECTIONS:
            raise ConfigError(f"rpo.selection must be one of {', '.join(SELECTIONS)}, got {self.selection!r}")

    @classmethod
    def from_dict(cls, data: dict[str, Any] | None) -> "RPOConfig":
        return cls(**check_settings("rpo", data, cls))


@dataclass
class RPOResult:
    """The chosen description, how well its top box hit the target on frame 1, and the whole trace."""

    description: Description
    top1_iou: float
    trace: dict[str, Any] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        """False when no round produced a usable description (the trace says why)."""
        return bool(self.description.foreground)

    @property
    def iterations(self) -> list[dict[str, Any]]:
        """``[{"description", "top1_iou"}, ...]`` for each round that produced a description."""
        return [{"description": r["description"]["foreground"], "top1_iou": r["top1_iou"]}
                for r in self.trace.get("rounds", []) if r.get("description")]

    def to_json(self) -> dict[str, Any]:
        return plain_json({"description": asdict(self.description), "top1_iou": self.top1_iou, "trace": self.trace})

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> "RPOResult":
        return cls(Description(**data["description"]), float(data["top1_iou"]), data.get("trace", {}))


# --- grounding one description ---------------------------------------------------------------------

def _best_word(proposals: Proposals, index: int, threshold: float) -> str | None:
    """The word of the box's phrase that scored highest for this box (None without word scores)."""
    if not proposals.token_scores:
        return None
    entry = proposals.token_scores.get(proposals.labels[index])
    if entry is None:
        return None
    words, matrix = entry
    row = np.asarray(matrix, dtype=float)[index]
    candidates = [(score, word) for word, score in zip(words, row) if word.lower().strip(".,") not in STOP_WORDS]
    if not candidates:
        return None
    score, word = max(candidates, key=lambda item: item[0])
    return word if score > threshold else None


def ground_phrases(image: Frame, box: Box, phrases: list[str], grounder: Grounder, config: RPOConfig) -> dict[str, Any]:
    """Ground ``phrases`` and score every kept box against the given box (JSON-ready)."""
    proposals = grounder.ground(image, phrases)
    order = [int(i) for i in np.argsort(-proposals.scores, kind="stable") if proposals.scores[i] >= config.box_threshold]
    order = order[: config.max_boxes]
    boxes = []
    for i in order:
        candidate = proposals.box(i)
        iou = candidate.iou(box)
        boxes.append({"box": [round(v, 2) for v in candidate.to_list()], "score": round(float(proposals.scores[i]), 4),
                      "label": proposals.labels[i], "iou": round(iou, 4), "positive": bool(iou >= config.positive_iou),
                      "word": _best_word(proposals, i, config.word_threshold)})
    return {"phrases": phrases, "word_scores": proposals.token_scores is not None, "boxes": boxes,
            "top1_iou": boxes[0]["iou"] if boxes else 0.0}


def _words(boxes: list[dict[str, Any]], positive: bool) -> list[str]:
    out: list[str] = []
    for entry in boxes:
        word = entry["word"]
        if entry["positive"] == positive and word and word not in out:
            out.append(word)
    return out


# --- the loop ---------------------------------------------------------------------------------------

def run_rpo(image: Frame, box: Box, describer: Describer, grounder: Grounder, config: RPOConfig = RPOConfig(),
            initial_text: str | None = None, *, fallback: Describer | None = None) -> RPOResult:
    """Describe the target in ``box``, refine by reflection, return the best description and its trace.

    A reply with nothing usable is recorded and the last good description kept. When no round gives
    a description, ``fallback`` (e.g. the weight-free ``attributes`` describer) is asked once; without
    it the result has an empty foreground (``result.ok`` is False) and the trace says why. A backend
    that cannot be reached at all raises ``DescriberUnavailableError`` when nothing else is available.
    """
    box = Box.from_any(box)
    started = time.perf_counter()
    rounds: list[dict[str, Any]] = []
    good: list[dict[str, Any]] = []
    initial_text = " ".join(initial_text.split()) if initial_text and initial_text.strip() else None

    def evaluate(description: Description, record: dict[str, Any]) -> None:
        grounding = ground_phrases(image, box, [description.foreground], grounder, config)
        record.update(description={"foreground": description.foreground, "background": description.background},
                      grounding=grounding, top1_iou=grounding["top1_iou"],
                      positive_words=_words(grounding["boxes"], True), negative_words=_words(grounding["boxes"], False))
        if config.ground_background and description.background_phrases():
            record["background_grounding"] = ground_phrases(image, box, description.background_phrases(), grounder, config)
        good.append(record)

    def feedback() -> Feedback | None:
        if not good:
            return Feedback(initial_text=initial_text) if initial_text else None
        last = good[-1]
        history = [Attempt(r["description"]["foreground"], r["description"]["background"], r["top1_iou"]) for r in good]
        return Feedback(list(last["positive_words"]), list(last["negative_words"]), history, initial_text)

    def clean(record: dict[str, Any]) -> bool:
        boxes = record["grounding"]["boxes"]
        return bool(boxes) and boxes[0]["positive"] and all(b["positive"] for b in boxes)

    if initial_text:
        record = {"round": 0, "source": "initial_text", "exchanges": [], "error": None}
        evaluate(Description(initial_text), record)
        rounds.append(record)

    unavailable: DescriberUnavailableError | None = None
    for index in range(1, config.iterations + 1):
        asked = [r for r in good if r["source"] == "describer"]
        # Stop early once the describer's own phrase finds only the target (a clean initial text still
        # gets one describer round: that is where the background list comes from), or when it repeats
        # an earlier phrase (reflection made no progress).
        if config.early_stop and asked and (clean(asked[-1]) or _repeats(asked[-1], good[:-1])):
            break
        given = feedback()
        record = {"round": index, "source": "describer", "error": None,
                  "feedback": _feedback_json(given)}
        rounds.append(record)
        tick = time.perf_counter()
        try:
            description = describer.describe(image, box, given)
            if not description.foreground.strip():
                raise DescriberError("the describer returned an empty foreground phrase", reply=description.raw)
        except DescriberUnavailableError as error:
            _record_error(record, describer, error)
            unavailable = error
            break  # the backend is down: asking again only waits for more timeouts
        except DescriberError as error:
            _record_error(record, describer, error)
            continue
        finally:
            record["seconds"] = round(time.perf_counter() - tick, 3)
        record["exchanges"] = list(getattr(describer, "last_exchanges", []) or [{"reply": description.raw}])
        evaluate(description, record)

    if not good and fallback is not None:
        record = {"round": rounds[-1]["round"] + 1 if rounds else 1, "source": "fallback", "error": None, "describer": getattr(fallback, "name", "?")}
        rounds.append(record)
        evaluate(fallback.describe(image, box, Feedback(initial_text=initial_text) if initial_text else None), record)
        record["exchanges"] = []
    if not good and unavailable is not None:
        raise unavailable

    trace: dict[str, Any] = {
        "version": TRACE_VERSION,
        "box": box.to_list(),
        "image": {"width": int(image.shape[1]), "height": int(image.shape[0]), "sha256": image_digest(image)},
        "describer": component_identity(describer),
        "grounder": component_identity(grounder),
        "config": asdict(config),
        "initial_text": initial_text,
        "rounds": rounds,
        "errors": [f"round {r['round']}: {r['error']}" for r in rounds if r.get("error")],
        "seconds": None,
    }
    if not good:
        trace["selected_round"] = None
        trace["error"] = "no round produced a usable description"
        trace["seconds"] = round(time.perf_counter() - started, 3)
        logger.warning("RPO: %s (%s)", trace["error"], "; ".join(trace["errors"]) or "no rounds")
        return RPOResult(Description(""), 0.0, trace)

    chosen = good[-1] if config.selection == "last" else max(good, key=lambda r: r["top1_iou"])  # max keeps the earliest tie
    background = chosen["description"]["background"] or next(
        (r["description"]["background"] for r in reversed(good) if r["description"]["background"]), "")
    description = Description(chosen["description"]["foreground"], background,
                              raw=next((e.get("reply") or "" for e in reversed(chosen.get("exchanges", [])) if e.get("reply")), ""))
    trace["selected_round"] = chosen["round"]
    trace["result"] = {"foreground": description.foreground, "background": description.background,
                       "top1_iou": chosen["top1_iou"], "first_top1_iou": good[0]["top1_iou"]}
    trace["seconds"] = round(time.perf_counter() - started, 3)
    return RPOResult(description, float(chosen["top1_iou"]), trace)


def _repeats(record: dict[str, Any], earlier: list[dict[str, Any]]) -> bool:
    phrase = record["description"]["foreground"].lower()
    return any(r["description"]["foreground"].lower() == phrase for r in earlier)


def _feedback_json(feedback: Feedback | None) -> dict[str, Any] | None:
    return None if feedback is None else asdict(feedback)


def _record_error(record: dict[str, Any], describer: Describer, error: DescriberError) -> None:
    record["error"] = f"{type(error).__name__}: {error}"
    record["exchanges"] = list(getattr(describer, "last_exchanges", []) or [])
    if not record["exchanges"] and (error.prompt or error.reply is not None):
        record["exchanges"] = [{"prompt": error.prompt, "reply": error.reply}]
    logger.warning("RPO round %s: %s", record["round"], record["error"])


def build_describer_for(name: str, grounder: Grounder | None = None, **params: Any) -> Describer:
    """Build a registered describer; those that check their own phrases (``attributes``) get the grounder."""
    from chattracker.mllm.base import build_describer

    if name in DESCRIBERS_USING_GROUNDER and "grounder" not in params:
        params["grounder"] = grounder
    return build_describer(name, **params)


DESCRIBERS_USING_GROUNDER = {"attributes"}


# --- identity and cache -----------------------------------------------------------------------------

def plain_json(value: Any) -> Any:
    """``value`` with numpy scalars and arrays (which callers may pass in settings, texts or grounder output)
    turned into the Python numbers and lists ``json`` writes, so a trace that ran can always be cached."""
    if isinstance(value, dict):
        return {key: plain_json(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [plain_json(item) for item in value]
    if isinstance(value, np.ndarray):
        return plain_json(value.tolist())
    if isinstance(value, np.generic):
        return value.item()
    return value


def image_digest(image: Frame) -> str:
    array = np.ascontiguousarray(image)
    digest = hashlib.sha256(f"{array.shape}|{array.dtype}|".encode())
    digest.update(array.tobytes())
    return digest.hexdigest()


def component_identity(component: Any, depth: int = 0) -> Any:
    """What determines a describer's or grounder's output, as JSON: its ``identity`` when it defines
    one, else its name, class and simple public settings (nested components recursively)."""
    explicit = getattr(component, "identity", None)
    if explicit is not None and not callable(explicit):
        return explicit
    if isinstance(component, (str, int, float, bool)) or component is None:
        return component
    info: dict[str, Any] = {"name": getattr(component, "name", None),
                            "class": f"{type(component).__module__}.{type(component).__qualname__}"}
    if depth < 2:
        for key, value in sorted(vars(component).items()) if hasattr(component, "__dict__") else []:
            if key.startswith("_") or key in ("last_exchanges",):
                continue
            if isinstance(value, (str, int, float, bool)) or value is None:
                info[key] = value
            elif isinstance(value, (list, tuple)) and all(isinstance(v, (str, int, float, bool)) for v in value):
                info[key] = list(value)
            elif hasattr(value, "ground") or hasattr(value, "describe"):
                info[key] = component_identity(value, depth + 1)
    return info


def _package_version() -> str:
    try:
        return importlib.metadata.version("chattracker")
    except importlib.metadata.PackageNotFoundError:
        return "unknown"


@functools.cache
def _source_digest(path: str) -> str | None:
    try:
        return hashlib.sha256(Path(path).read_bytes()).hexdigest()[:16]
    except OSError:
        return None


def code_digest(component: Any) -> str | None:
    """Digest of the source file that defines ``component``'s class: a describer or grounder changed
    in a checkout (same package version) must not reuse the descriptions of the old code."""
    try:
        path = inspect.getsourcefile(type(component))
    except TypeError:  # built-in classes have no source file
        return None
    return _source_digest(path) if path else None


def rpo_cache_key(image: Frame, box: Box, describer: Describer, grounder: Grounder, config: RPOConfig,
                  initial_text: str | None = None, sequence: str | None = None) -> str:
    """Cache key: sequence name (readable) + hash of image, box, describer, grounder, config, text,
    the package version (a new release of the describers must not reuse old descriptions) and the
    source of the describer's and grounder's modules (nor an edited checkout)."""
    payload = json.dumps({"version": _package_version(), "code": [code_digest(describer), code_digest(grounder)],
                          "image": image_digest(image), "box": [round(v, 3) for v in Box.from_any(box).to_list()],
                          "describer": component_identity(describer), "grounder": component_identity(grounder),
                          "config": asdict(config), "initial_text": initial_text}, sort_keys=True, default=str)
    prefix = re.sub(r"[^A-Za-z0-9_.-]+", "_", sequence or "rpo")[:60]
    return f"{prefix}-{hashlib.sha256(payload.encode()).hexdigest()[:24]}"


class RPOCache:
    """One JSON file per key in ``folder`` (atomic writes). Results without a usable description are
    not stored, so a run that failed (server down, garbage replies) is tried again next time."""

    def __init__(self, folder: str | Path) -> None:
        self.folder = Path(folder)

    def path(self, key: str) -> Path:
        return self.folder / f"{re.sub(r'[^A-Za-z0-9_.-]+', '_', key)}.json"

    def get(self, key: str) -> RPOResult | None:
        path = self.path(key)
        if not path.is_file():
            return None
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
            if data.get("key") != key:
                raise ValueError(f"stored key {data.get('key')!r} differs")
            return RPOResult.from_json(data["result"])
        except (OSError, ValueError, KeyError, TypeError) as error:
            logger.warning("RPO cache file %s is unreadable (%s); running RPO again", path, error)
            return None

    def put(self, key: str, result: RPOResult) -> None:
        """Store a result; a cache that cannot be written costs only a rerun later, so it warns and goes on."""
        try:
            write_json(self.path(key), {"key": key, "result": result.to_json()})
        except OSError as error:
            logger.warning("RPO cache %s cannot be written (%s); the result is not cached", self.folder,
                           (error.strerror or str(error)).lower())

    def get_or_run(self, key: str, fn: Callable[[], RPOResult]) -> RPOResult:
        cached = self.get(key)
        if cached is not None:
            logger.info("RPO cache hit %s", key)
            return cached
        result = fn()
        if result.ok:
            self.put(key, result)
        return result


_RECORDERS: list[list[RPOResult]] = []


@contextmanager
def recording() -> Iterator[list[RPOResult]]:
    """Collect every RPO result (with its trace) produced inside the block, in order, so a command
    can save the trace of a tracker's descriptions without the tracker having to return it."""
    results: list[RPOResult] = []
    _RECORDERS.append(results)
    try:
        yield results
    finally:
        _RECORDERS.remove(results)


def run_rpo_cached(cache: RPOCache | None, image: Frame, box: Box, describer: Describer, grounder: Grounder,
                   config: RPOConfig = RPOConfig(), initial_text: str | None = None, *, sequence: str | None = None,
                   fallback: Describer | None = None) -> RPOResult:
    """``run_rpo`` through ``cache`` (None: no cache) under the key of ``rpo_cache_key``."""
    run = lambda: run_rpo(image, box, describer, grounder, config, initial_text, fallback=fallback)  # noqa: E731
    if cache is None:
        result = run()
    else:
        result = cache.get_or_run(rpo_cache_key(image, box, describer, grounder, config, initial_text, sequence), run)
    for results in _RECORDERS:
        results.append(result)
    return result
