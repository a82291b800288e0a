"""Describer ``hf``: any transformers image-text-to-text model, by hub id or local folder.

Dense models load with ``AutoModelForImageTextToText``. With ``offload: {store: DIR, expert_budget: ...}``
a Mixture-of-Experts model runs on our offloading engine instead (experts served from a quantized
store on disk through a small cache); the store is converted from the checkpoint on first use.
The frame with the target box drawn on it goes through the processor's own chat template.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Annotated, Any

import numpy as np

from chattracker.errors import ConfigError
from chattracker.config import Range, Why, check_settings
from chattracker.mllm.base import register_describer
from chattracker.mllm.chat import ChatDescriber, ImageMaxSide
from chattracker.types import Frame
from chattracker_prompts import RenderedPrompt

logger = logging.getLogger(__name__)

@dataclass
class OffloadSettings:
    """``describer.params.offload`` of the hf describer: where the expert store lives and how much of it
    stays in memory (the engine's own options pass through ``options``)."""

    store: str = ""
    expert_budget: Annotated[int | float | str, Range(0.0, None, low_open=True), Why(
        "memory for experts: bytes, a unit (4GiB), a percentage or a share in (0, 1] of the store")] = "50%"
    method: str = "fate"
    bits: Annotated[int, Range(2, 8), Why("expert precision in the store (8, 4 or 2; 4 keeps the replies)")] = 4
    group_size: Annotated[int | None, Range(1, 65536), Why(
        "weights per quantization scale (null: the quantizer's default)")] = None
    options: dict[str, Any] = field(default_factory=dict)


OFFLOAD_KEYS = {f.name for f in fields(OffloadSettings)}


@dataclass
class EngineOptions:
    """``offload.options``: the offload engine's own settings a config may pass (``OffloadEngine`` and
    ``load_offloaded_model``); checked here so a typo or a NaN is one error, not a traceback at load time."""

    allocation: Annotated[str | None, Why("how the budget is split over layers (default: the method's)")] = None
    policy: Annotated[str | None, Why("eviction policy (default: the method's; fate: ARC)")] = None
    prefetch: Annotated[str | None, Why("expert prefetcher (default: the method's)")] = None
    overlap: Annotated[bool | None, Why("compute experts already in memory while the rest load")] = None
    io_threads: Annotated[int, Range(1, 64), Why("threads reading experts from the store")] = 2
    resident_layers: Annotated[int, Range(0, None), Why("first MoE layers kept whole (Fate: 4)")] = 4
    top_k: Annotated[int | None, Range(1, None), Why("experts per token (default: the model's)")] = None
    min_precision: Annotated[float, Range(0.0, 1.0), Why("prefetch precision under which prefetch backs off")] = 0.5
    cold_tail: Annotated[float, Range(0.0, 1.0, high_open=True), Why(
        "share of a prefill's assignments read at INT2 from the cold tier (Fate: about 0.25-0.3)")] = 0.0
    adaptive_gate: Annotated[bool, Why("stop prefetching while predictions miss")] = True
    verify: Annotated[str, Why("when expert files' CRC32 is checked: first or always")] = "first"
    prefill_chunk: Annotated[int | None, Range(1, None), Why("prompt tokens per prefill step")] = 128
    threads: Annotated[int | None, Range(1, None), Why("torch threads (default: torch's)")] = None


def pick_device(device: str) -> str:
    """``auto`` is the eval worker's device when it has one (``chattracker.devices``)."""
    from chattracker.devices import resolve_device

    return resolve_device(device)


def local_model_dir(model: str) -> Path:
    """A local folder for ``model``: itself, or the hub snapshot (the offload converter reads files)."""
    path = Path(model).expanduser()
    if path.is_dir():
        return path
    try:
        from huggingface_hub import snapshot_download

        return Path(snapshot_download(model))
    except Exception as error:  # hub errors have many types; all mean "not available here"
        raise ConfigError(f"hf describer: {model!r} is neither a local folder nor an available hub model ({error})") from None


def store_is_ready(store: Path) -> bool:
    """A converted expert store has its manifest (written last by ``convert_checkpoint``)."""
    return (store / "manifest.json").is_file()


class HFDescriber(ChatDescriber):
    """Generates with ``model.generate`` (greedy by default, so a description is reproducible)."""

    name = "hf"

    def __init__(self, model: str, device: str = "auto", dtype: str = "auto",
                 max_new_tokens: Annotated[int, Range(1, 4096), Why(
                     "reply length at most; the JSON reply is about 60 tokens, 96 leaves room")] = 96,
                 offload: dict[str, Any] | None = None, system_role: bool = True, do_sample: bool = False,
                 trust_remote_code: bool = False, prompts_dir: str | Path | None = None,
                 image_max_side: ImageMaxSide = 768, ask_background: bool = True,
                 batch_size: Annotated[int, Range(1, 1024), Why(
                     "prompts per generate() call: the Klotski group on the offload engine")] = 8) -> None:
        super().__init__(prompts_dir=prompts_dir, image_max_side=image_max_side, ask_background=ask_background)
        if max_new_tokens < 1:
            raise ConfigError("hf describer: max_new_tokens must be >= 1")
        self.model_name = str(model)
        self.device = pick_device(device)
        self.dtype = dtype
        self.max_new_tokens = int(max_new_tokens)
        if int(batch_size) < 1:
            raise ConfigError("hf describer: batch_size must be >= 1")
        self.batch_size = int(batch_size)  # prompts per generate() call: the Klotski group on the offload engine
        self.system_role = system_role
        self.do_sample = do_sample
        self.offload = self._check_offload(offload)
        self.engine: Any = None
        self._last_info: dict[str, Any] = {}
        self.processor, self.model = self._load(trust_remote_code)

    @staticmethod
    def _check_offload(offload: dict[str, Any] | None) -> dict[str, Any] | None:
        if not offload:
            return None
        if not isinstance(offload, dict):
            raise ConfigError(f"hf describer offload: expected a mapping, got {type(offload).__name__}")
        unknown = sorted(set(offload) - OFFLOAD_KEYS)
        if unknown:
            raise ConfigError(f"hf describer offload: unknown setting(s) {', '.join(unknown)}; "
                              f"allowed: {', '.join(sorted(OFFLOAD_KEYS))}")
        if "store" not in offload or "expert_budget" not in offload:
            raise ConfigError("hf describer offload: needs 'store' (a folder) and 'expert_budget'")
        checked = {**offload, **check_settings("describer hf.offload", offload, OffloadSettings)}
        if checked.get("options"):
            checked["options"] = check_settings("describer hf.offload.options", checked["options"], EngineOptions)
        return checked

    def _load(self, trust_remote_code: bool) -> tuple[Any, Any]:
        import torch
        from transformers import AutoModelForImageTextToText, AutoProcessor

        try:
            processor = AutoProcessor.from_pretrained(self.model_name, trust_remote_code=trust_remote_code)
        except (OSError, ValueError) as error:
            raise ConfigError(f"hf describer: cannot load the processor of {self.model_name!r}: {_first_line(error)}") from None
        if self.offload:
            return processor, self._load_offloaded()
        dtype = self.dtype if self.dtype == "auto" else getattr(torch, self.dtype, None)
        if dtype is None:
            raise ConfigError(f"hf describer: unknown dtype {self.dtype!r} (auto, float32, bfloat16, float16)")
        try:
            model = AutoModelForImageTextToText.from_pretrained(self.model_name, dtype=dtype,
                                                                trust_remote_code=trust_remote_code)
        except (OSError, ValueError) as error:
            raise ConfigError(f"hf describer: cannot load {self.model_name!r}: {_first_line(error)}") from None
        return processor, model.to(self.device).eval()

    def _load_offloaded(self) -> Any:
        from chattracker import offload as engine_module

        if not hasattr(engine_module, "load_offloaded_model"):
            raise ConfigError("hf describer: offload is configured but chattracker.offload has no load_offloaded_model")
        settings = dict(self.offload or {})
        model_dir = local_model_dir(self.model_name)
        store = Path(settings.pop("store")).expanduser()
        bits, group_size = settings.pop("bits", 4), settings.pop("group_size", None)
        if not store_is_ready(store):
            logger.info("hf describer: converting %s into the expert store %s (INT%s)", model_dir, store, bits)
            engine_module.convert_checkpoint(model_dir, store, bits=bits, group_size=group_size)
        options = dict(settings.pop("options", {}) or {})
        options.setdefault("device", self.device)
        if self.dtype != "auto":
            import torch

            options.setdefault("dtype", getattr(torch, self.dtype))
        model, self.engine = engine_module.load_offloaded_model(
            model_dir, store, expert_budget=settings.pop("expert_budget"), method=settings.pop("method", "fate"), **options)
        return model.eval() if hasattr(model, "eval") else model

    def _backend_identity(self) -> dict[str, Any]:
        offload = None
        if self.offload:  # where the store lives does not change the answer; how it is quantized does
            offload = {k: v for k, v in self.offload.items() if k not in ("store", "expert_budget", "options")}
            offload.setdefault("bits", 4)
        return {"model": self.model_name, "dtype": self.dtype, "max_new_tokens": self.max_new_tokens,
                "do_sample": self.do_sample, "system_role": self.system_role, "offload": offload}

    def _messages(self, prompt: RenderedPrompt, image: Frame) -> list[dict[str, Any]]:
        from PIL import Image

        picture = {"type": "image", "image": Image.fromarray(np.ascontiguousarray(image))}
        if self.system_role:
            return [{"role": "system", "content": [{"type": "text", "text": prompt.system}]},
                    {"role": "user", "content": [picture, {"type": "text", "text": prompt.user}]}]
        # some chat templates reject a system turn: fold it into the user's
        return [{"role": "user", "content": [picture, {"type": "text", "text": prompt.system + "\n\n" + prompt.user}]}]

    def _chat(self, prompt: RenderedPrompt, image: Frame) -> str:
        reply, self._last_info = self.chat_batch([(prompt, image)])[0]
        return reply

    def chat_batch(self, requests: list[tuple[RenderedPrompt, Frame]]) -> list[tuple[str, dict[str, Any]]]:
        """Replies (and facts for the trace) to several prompts, ``batch_size`` at a time as one left-padded
        ``generate()`` each: on the offload engine every expert read then serves the whole group (Klotski)."""
        import torch

        if not getattr(self.processor, "chat_template", None):
            raise ConfigError(f"hf describer: the processor of {self.model_name!r} has no chat template "
                              "(an instruction-tuned model ships one in chat_template.jinja)")
        tokenizer = getattr(self.processor, "tokenizer", self.processor)
        tokenizer.padding_side = "left"  # generation continues each row from its own last token
        device = self.device if not self.offload else getattr(self.model, "device", self.device)
        out: list[tuple[str, dict[str, Any]]] = []
        for first in range(0, len(requests), self.batch_size):
            group = requests[first:first + self.batch_size]
            inputs = self.processor.apply_chat_template([self._messages(p, image) for p, image in group],
                                                        add_generation_prompt=True, tokenize=True, return_dict=True,
                                                        return_tensors="pt",
                                                        processor_kwargs={"padding": True}).to(device)
            start = time.perf_counter()
            with torch.inference_mode():
                output = self.model.generate(**inputs, max_new_tokens=self.max_new_tokens, do_sample=self.do_sample,
                                             pad_token_id=tokenizer.pad_token_id)
            new_tokens = output[:, inputs["input_ids"].shape[1]:]
            replies = self.processor.batch_decode(new_tokens, skip_special_tokens=True)
            info: dict[str, Any] = {"seconds": round(time.perf_counter() - start, 3), "batch": len(requests),
                                    "group": len(group)}
            if self.engine is not None:
                info["offload_stats"] = _json_ready(getattr(self.engine, "stats", None))
            for row, reply in enumerate(replies):
                produced = new_tokens[row]
                ended = (produced == tokenizer.pad_token_id).nonzero() if tokenizer.pad_token_id is not None else []
                out.append((reply, {**info, "prompt_tokens": int(inputs["attention_mask"][row].sum()),
                                    "new_tokens": int(ended[0, 0]) if len(ended) else int(produced.shape[0])}))
        return out

    def _exchange_info(self) -> dict[str, Any]:
        return dict(self._last_info)


def _first_line(error: BaseException) -> str:
    text = str(error).strip()
    return text.splitlines()[0] if text else type(error).__name__


def _json_ready(value: Any) -> Any:
    """Engine statistics as plain JSON: their ``summary()`` when they have one, else field by field."""
    from dataclasses import fields, is_dataclass

    for method in ("summary", "as_dict", "to_dict"):
        if callable(getattr(value, method, None)):
            return _json_ready(getattr(value, method)())
    if is_dataclass(value) and not isinstance(value, type):
        value = {f.name: getattr(value, f.name) for f in fields(value)}
    if isinstance(value, dict):
        return {str(k): _json_ready(v) for k, v in value.items()}
    if isinstance(value, (list, tuple, set)):
        return [_json_ready(v) for v in value]
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, (str, int, float, bool)) or value is None:
        return value
    return str(value)


@register_describer("hf")
def build_hf(**params: Any) -> HFDescriber:
    if not params.get("model"):  # the one setting without a default: say what to give, not a TypeError
        raise ConfigError("describer hf needs a model: a local model folder or a hub id, in the --config file as "
                          "describer: {name: hf, params: {model: <folder or id>}}")
    return HFDescriber(**check_settings("describer hf", params, HFDescriber))
