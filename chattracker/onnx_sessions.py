"""onnxruntime sessions for the small CPU models of the wrapper (YOLOX, OSNet, NanoTrack's networks).

They run between base-tracker steps, never beside them, so a session takes the process's share of the
cores (``chattracker.devices.thread_budget``) and its idle threads do not spin on the cores the base
tracker needs next.
"""

from __future__ import annotations

from typing import Any

from chattracker.devices import thread_budget


def onnx_session(model: bytes | str, threads: int | None = None) -> Any:
    """A CPU session of ``model`` (a path or serialised bytes) on ``threads`` threads (default: the budget)."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = max(1, int(threads)) if threads else thread_budget()
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    options.inter_op_num_threads = 1
    options.log_severity_level = 3
    return ort.InferenceSession(model, options, providers=["CPUExecutionProvider"])
