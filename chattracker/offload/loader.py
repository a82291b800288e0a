"""Build a stock transformers model whose experts are served by an :class:`OffloadEngine`.

The model is instantiated with its experts modules on the ``meta`` device (no expert memory), those modules are
replaced, and only the non-expert tensors are streamed from the checkpoint, renamed the way transformers would.
"""

from __future__ import annotations

import contextlib
import inspect
import logging
import sys
from pathlib import Path

import torch
from safetensors import safe_open
from torch import nn

from chattracker.offload.convert import checkpoint_files, is_expert_key, moe_dimensions
from chattracker.offload.runtime import OffloadEngine, moe_blocks, parse_budget
from chattracker.offload.store import ExpertStore, ExpertStoreError

log = logging.getLogger(__name__)


@contextlib.contextmanager
def _experts_on_meta(model_class: type):
    """While active, every ``*Experts`` class of the model's module builds its parameters on ``meta``."""
    module = sys.modules[model_class.__module__]
    classes = [obj for _, obj in inspect.getmembers(module, inspect.isclass)
               if issubclass(obj, nn.Module) and obj.__name__.endswith("Experts") and obj.__module__ == module.__name__]
    originals = {cls: cls.__init__ for cls in classes}

    def patched(original):
        def init(self, *args, **kwargs):
            with torch.device("meta"):
                original(self, *args, **kwargs)
        return init

    for cls, original in originals.items():
        cls.__init__ = patched(original)
    try:
        yield
    finally:
        for cls, original in originals.items():
            cls.__init__ = original


def build_model(model_dir: Path, dtype: torch.dtype) -> nn.Module:
    """The model with real non-expert weights from ``model_dir`` and expert parameters on ``meta``."""
    import transformers
    from transformers import AutoConfig, GenerationConfig
    from transformers.conversion_mapping import get_model_conversion_mapping
    from transformers.core_model_loading import WeightRenaming, rename_source_key

    config = AutoConfig.from_pretrained(model_dir)
    moe_dimensions(config)
    names = getattr(config, "architectures", None) or []
    model_class = getattr(transformers, names[0], None) if names else None
    if model_class is None:
        raise ExpertStoreError(f"{model_dir}/config.json names no transformers architecture ({names})")
    from transformers.initialization import no_init_weights

    with _experts_on_meta(model_class), no_init_weights():  # every tensor is overwritten from the checkpoint below
        model = model_class._from_config(config, dtype=dtype)
    renamings = [t for t in get_model_conversion_mapping(model) if isinstance(t, WeightRenaming)]
    state = {key: value for key, value in model.state_dict().items() if value.device.type != "meta"}
    loaded, unexpected = set(), []
    files = checkpoint_files(model_dir)
    by_file: dict[Path, list[str]] = {}
    for key, path in files.items():
        if not is_expert_key(key):
            by_file.setdefault(path, []).append(key)
    for path, keys in by_file.items():
        with safe_open(path, "pt") as handle:
            for key in keys:
                target, _ = rename_source_key(key, renamings, [], model.base_model_prefix, state)
                if target not in state:
                    unexpected.append(key)
                    continue
                tensor = handle.get_tensor(key)
                if tuple(tensor.shape) != tuple(state[target].shape):
                    raise ExpertStoreError(f"{path}: {key} has shape {tuple(tensor.shape)}, the model expects "
                                           f"{tuple(state[target].shape)}")
                with torch.no_grad():
                    state[target].copy_(tensor)
                loaded.add(target)
    model.tie_weights()
    loaded_pointers = {state[key].data_ptr() for key in loaded}
    missing = [key for key in state if key not in loaded and state[key].data_ptr() not in loaded_pointers]
    if missing:
        raise ExpertStoreError(f"{model_dir}: checkpoint lacks {len(missing)} non-expert tensors, e.g. {missing[:3]}")
    if unexpected:
        log.warning("ignored %d checkpoint tensors the model does not use, e.g. %s", len(unexpected), unexpected[:3])
    if (model_dir / "generation_config.json").is_file():
        model.generation_config = GenerationConfig.from_pretrained(model_dir)
    return model.eval()


def _step_hook(engine: OffloadEngine):
    """Tell the engine how many tokens per sequence each model call brings (1: decode, whatever the batch)."""
    def hook(module, args, kwargs):
        tokens = kwargs.get("input_ids") if kwargs.get("input_ids") is not None else kwargs.get("inputs_embeds")
        if tokens is None and args:
            tokens = args[0]
        engine.begin_step(int(tokens.shape[1]) if tokens is not None and tokens.dim() >= 2 else None)
    return hook


def load_offloaded_model(model_dir, store_dir, *, expert_budget: int | str | float, method: str = "fate",
                         dtype: torch.dtype = torch.float32, device: str = "cpu", verify: str = "first",
                         prefill_chunk: int | None = 128, threads: int | None = None, **options):
    """(model, engine): a stock transformers model whose experts come from ``store_dir`` within ``expert_budget``.

    ``method``: "fate" (shallow-favoring ARC cache + cross-layer gate prefetch), "klotski" (fate for batches: gate pooled
    over the batch + the store's co-activation table), "lod" (LRU, each miss read when its
    turn comes), "lod-overlap" (lod + Fate's compute/IO overlap), "eap" (LRU + expert-activation-path prefetch),
    "resident" (every expert in memory). ``options`` go to :class:`OffloadEngine` (allocation, policy, prefetch,
    overlap, io_threads, resident_layers, min_precision, adaptive_gate, and cold_tail: the share of a prefill's
    assignments read from the store's INT2 cold tier). ``verify``: when to check
    expert files' CRC32 ("first" read of each file, or "always"; see :class:`ExpertStore`). ``prefill_chunk``:
    ``generate()`` runs the prompt through the model this many tokens at a time (transformers' chunked prefill), so
    activation memory stays bounded whatever the prompt length; None runs it in one pass. ``threads``: torch's compute
    threads for the whole process (``torch.set_num_threads``; None leaves torch's choice, one per core). On a small
    machine fewer threads than cores can be much faster: the engine's readers need a core too, and an OpenMP team
    waits at every barrier for a core that something else holds (measured on 2 shared cores: an INT4 expert matmul
    0.4 ms on 1 thread, 16 ms on 2).
    """
    if threads is not None:
        if isinstance(threads, bool) or not isinstance(threads, int) or threads < 1:
            raise ValueError(f"threads must be a whole number >= 1 or None, not {threads!r}")
        torch.set_num_threads(threads)
    model_dir, store = Path(model_dir), ExpertStore(store_dir, verify=verify)
    budget = parse_budget(expert_budget, store.total_bytes)
    model = build_model(model_dir, dtype)
    hidden, width, num_experts, top_k = moe_dimensions(model.config)
    manifest = store.manifest
    theirs = (manifest["model_type"], manifest["hidden_size"], manifest["expert_width"], manifest["num_experts"])
    ours = (model.config.model_type, hidden, width, num_experts)
    if theirs != ours:
        raise ExpertStoreError(f"store {store.root} was converted from another model (type/hidden/width/experts "
                               f"{'/'.join(map(str, theirs))} vs {'/'.join(map(str, ours))})")
    if prefill_chunk is not None:
        if int(prefill_chunk) < 1:
            raise ValueError(f"prefill_chunk must be a positive number of tokens or None, not {prefill_chunk!r}")
        model.generation_config.prefill_chunk_size = int(prefill_chunk)
    engine = OffloadEngine(store, budget, method, top_k=top_k, device=device, **options)
    try:
        engine.attach(moe_blocks(model))
        model.register_forward_pre_hook(_step_hook(engine), with_kwargs=True)
        if device != "cpu":
            model.to(device)
        engine.preload()
    except BaseException:
        # IO threads still inside torch at interpreter exit abort the process (SIGABRT): stop them first
        engine.close()
        raise
    log.info("offloaded %s: budget %.1f MiB of %.1f MiB expert bytes, capacities %s", model_dir, budget / 2**20,
             store.total_bytes / 2**20, engine.capacities)
    return model, engine
