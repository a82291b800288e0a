"""Which accelerator a model built with ``device: auto`` lands on.

An eval worker is given a device (``--devices`` round-robin locally, ``num_gpus`` on Ray); it puts the
device in ``CHATTRACKER_DEVICE`` before building its tracker, so every describer and grounder set to
``auto`` in that worker uses the worker's device instead of all piling onto ``cuda:0``.
"""

from __future__ import annotations

import os

from chattracker.errors import InputError

ENV_DEVICE = "CHATTRACKER_DEVICE"
ENV_THREADS = "CHATTRACKER_THREADS"
MAX_MODEL_THREADS = 4  # small CPU models (YOLOX-Nano, OSNet x0.25) gain little beyond this many threads


def thread_budget() -> int:
    """Threads one onnxruntime model may use: the worker's share of the cores when an eval worker set
    ``CHATTRACKER_THREADS``, else this process's cores (capped). The wrapper runs its models one after
    another with the base tracker, never beside it, so one model may take every core the process has."""
    given = os.environ.get(ENV_THREADS, "").strip()
    if given.isdigit() and int(given) > 0:
        return int(given)
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        cores = os.cpu_count() or 1
    return max(1, min(cores, MAX_MODEL_THREADS))


def resolve_device(device: str) -> str:
    """``auto``: the worker's device when one was assigned, else ``cuda`` when present, else ``cpu``."""
    if device != "auto":
        return device
    assigned = os.environ.get(ENV_DEVICE)
    if assigned:
        return assigned
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


def set_worker_device(device: str | None) -> None:
    """Make ``device`` what ``auto`` means in this process (None: back to the default choice)."""
    if device:
        os.environ[ENV_DEVICE] = device
    else:
        os.environ.pop(ENV_DEVICE, None)


def parse_devices(text: str) -> list[str]:
    """``cuda:0,cuda:1`` (or ``cpu``, ``cuda``, ``mps``) -> a checked list; an absent device is an error."""
    devices = [part.strip() for part in text.split(",") if part.strip()]
    if not devices:
        raise InputError("--devices needs at least one device, e.g. cuda:0,cuda:1")
    count = None
    for device in devices:
        kind, _, index = device.partition(":")
        if kind not in ("cpu", "cuda", "mps") or (index and not index.isdigit()) or (kind != "cuda" and index):
            raise InputError(f"--devices: {device!r} is not a device (cpu, cuda, cuda:N or mps)")
        if kind == "cuda":
            if count is None:
                import torch

                count = torch.cuda.device_count() if torch.cuda.is_available() else 0
            wanted = int(index or 0)
            if wanted >= count:
                raise InputError(f"--devices: {device} is not here ({count} CUDA device(s) visible)")
    return devices


def device_for_worker(devices: list[str] | None, worker: int) -> str | None:
    """Round-robin: worker k gets ``devices[k % len(devices)]``."""
    return devices[worker % len(devices)] if devices else None
