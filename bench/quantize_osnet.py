"""Build the int8 OSNet embedding the wrapper uses for people, and say what it costs in agreement.

OSNet x0.25 in float32 costs about 6 ms a crop on a 2-core CPU, and a round around a person embeds up
to six crops, so it is most of what the wrapper adds around a fast base tracker. onnxruntime's static
quantisation (QDQ, int8 weights per channel, uint8 activations) runs it 2-3 times faster. Weights use
a 7-bit range (``reduce_range``), so CPUs without VNNI compute the same integers (no saturation in
their 8-bit multiply-add).

Calibration crops are the ground-truth boxes of the *tune* half of the development set, 8 frames a
sequence, so the held-out half and every benchmark stay unseen. The same inputs give the same file:

    uv run python bench/quantize_osnet.py --out chattracker/data/weights/osnet_reid/osnet_x0_25_msmt17_int8.onnx

Prints one JSON object: sha256 and size of the file, ms per crop of both models (batch 1 and 5) and
the cosine between their embeddings of the held-out half's ground-truth crops.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

from chattracker.errors import ChatTrackerError
from chattracker.fusion.embedding import free_batch, imagenet_blob, resized_crop
from chattracker.types import Box
from chattracker.video import read_image
from chattracker.weights import resolve_weight
from chattracker_eval.datasets import load_dataset

from _cli import emit_report, run_main, truth_box  # bench/ is the script's folder, first on sys.path

CROP_W, CROP_H = 128, 256  # OSNet's input
PER_SEQUENCE = 8


def truth_crops(root: str, half: str) -> list[np.ndarray]:
    """``PER_SEQUENCE`` evenly spaced ground-truth crops of every sequence of ``half``."""
    crops = []
    for sequence in load_dataset("fusion_dev", root, half=half).sequences:
        for index in np.linspace(0, len(sequence) - 1, PER_SEQUENCE).astype(int):
            truth = truth_box(sequence, int(index))
            crop = None if truth is None else resized_crop(read_image(sequence.frames[int(index)]), truth, CROP_W, CROP_H)
            if crop is not None:
                crops.append(crop)
    return crops


def quantize(source: Path, out: Path, calibration: list[np.ndarray]) -> None:
    import onnx
    from onnxruntime.quantization import CalibrationDataReader, QuantFormat, QuantType, quantize_static
    from onnxruntime.quantization.shape_inference import quant_pre_process

    model = onnx.load(str(source))
    free_batch(model)
    name = model.graph.input[0].name

    class Crops(CalibrationDataReader):
        def __init__(self) -> None:
            self._blobs = iter([imagenet_blob(c[None]) for c in calibration])

        def get_next(self) -> dict[str, np.ndarray] | None:
            blob = next(self._blobs, None)
            return None if blob is None else {name: blob}

    with tempfile.TemporaryDirectory() as work:
        freed, prepared = Path(work) / "freed.onnx", Path(work) / "prepared.onnx"
        onnx.save(model, str(freed))
        quant_pre_process(str(freed), str(prepared))
        staged = Path(work) / "int8.onnx"
        quantize_static(str(prepared), str(staged), Crops(), quant_format=QuantFormat.QDQ,
                        activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8, per_channel=True,
                        reduce_range=True)
        out.parent.mkdir(parents=True, exist_ok=True)
        partial = out.with_name(out.name + ".partial")
        try:
            shutil.copyfile(staged, partial)
            os.replace(partial, out)  # a reader never sees half a model
        finally:
            partial.unlink(missing_ok=True)


def ms_per_call(session: Any, blob: np.ndarray, repeats: int = 20) -> float:
    name = session.get_inputs()[0].name
    session.run(None, {name: blob})
    started = time.perf_counter()
    for _ in range(repeats):
        session.run(None, {name: blob})
    return 1000.0 * (time.perf_counter() - started) / repeats


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--root", default=os.environ.get("CHATTRACKER_SHARED_DATA", "../shared/data"),
                        help="the shared data folder (the development sequences and OSNet's float32 weights)")
    parser.add_argument("--out", required=True, help="where to write the int8 model")
    args = parser.parse_args(argv)
    os.environ.setdefault("CHATTRACKER_WEIGHTS", args.root)
    from chattracker.fusion.embedding import batched_session
    from chattracker.onnx_sessions import onnx_session

    source = resolve_weight("osnet_reid")
    calibration = truth_crops(args.root, "tune")
    if not calibration:
        raise ChatTrackerError(f"no ground-truth crops found under {args.root}")
    out = Path(args.out)
    quantize(source, out, calibration)
    full, small = batched_session(source), onnx_session(str(out))
    held_out = truth_crops(args.root, "held_out")
    blob = imagenet_blob(np.stack(held_out))
    a = full.run(None, {full.get_inputs()[0].name: blob})[0].reshape(len(blob), -1)
    b = small.run(None, {small.get_inputs()[0].name: blob})[0].reshape(len(blob), -1)
    cosine = np.sum(a * b, axis=1) / (np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1))
    report = {"file": str(out), "sha256": hashlib.sha256(out.read_bytes()).hexdigest(), "size": out.stat().st_size,
              "calibration_crops": len(calibration), "held_out_crops": len(held_out),
              "cosine_float32_int8": {"mean": float(cosine.mean()), "min": float(cosine.min())},
              "ms_per_call": {kind: {"batch_1": ms_per_call(session, blob[:1]), "batch_5": ms_per_call(session, blob[:5])}
                              for kind, session in (("float32", full), ("int8", small))}}
    emit_report(report, None)
    return 0


if __name__ == "__main__":
    run_main(main)
