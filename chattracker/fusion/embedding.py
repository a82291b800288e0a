"""Learned appearance embeddings of box crops, compared by cosine (onnxruntime on the CPU).

Telling two objects of one class apart is what verification needs, and colour histograms or HOG
cannot do it (DESIGN.md section 7). Each embedder maps the crops under a list of boxes to
L2-normalised vectors:

- ``nanotrack``: NanoTrack v2's own Siamese backbone on the tracker's template crop (the box with
  half its perimeter of context, resized to 127 px): the features the tracker itself matches with.
- ``mobilenetv2``: ImageNet MobileNetV2 (int8), its 1280-d pooled features.
- ``osnet``: OSNet x0.25 person re-identification (MSMT17), 512-d; trained for people only. Run in
  int8 (``bench/quantize_osnet.py``); ``osnet_fp32`` is the released float32 model.
- ``hsv_hog``: the weight-free colour histogram + HOG features, for comparison.

``bench/appearance.py`` measures how well each separates a target from same-class distractors.
"""

from __future__ import annotations

import logging
import math
from typing import Callable, Protocol

import cv2
import numpy as np

from chattracker.onnx_sessions import onnx_session
from chattracker.registry import Registry
from chattracker.types import Box, Frame

logger = logging.getLogger(__name__)

IMAGENET_MEAN = np.array([0.485, 0.456, 0.406], dtype=np.float32)
IMAGENET_STD = np.array([0.229, 0.224, 0.225], dtype=np.float32)
TEMPLATE_SIZE = 127


class Embedder(Protocol):
    name: str

    def embed(self, frame: Frame, boxes: list[Box]) -> np.ndarray:
        """``(len(boxes), D)`` L2-normalised rows (a zero row for a box with no pixels in the frame)."""
        ...


EMBEDDERS: Registry[Embedder] = Registry("appearance model")


def normalise(rows: np.ndarray) -> np.ndarray:
    rows = np.asarray(rows, dtype=np.float32)
    norms = np.linalg.norm(rows, axis=1, keepdims=True)
    return np.where(norms > 1e-9, rows / np.maximum(norms, 1e-9), 0.0).astype(np.float32)


def imagenet_blob(batch: np.ndarray) -> np.ndarray:
    """``(N, H, W, 3)`` uint8 RGB -> ``(N, 3, H, W)`` float32, ImageNet-normalised: one multiply-add in
    place on the channel-first copy (a third of the time of dividing the float array twice)."""
    x = np.ascontiguousarray(batch.transpose(0, 3, 1, 2), dtype=np.float32)
    x *= (1.0 / (255.0 * IMAGENET_STD))[None, :, None, None]
    x -= (IMAGENET_MEAN / IMAGENET_STD)[None, :, None, None]
    return x


def free_batch(model) -> None:
    """Let an exported batch-of-one graph take N crops in one call: its Reshapes' fixed leading 1 becomes
    0 (ONNX: copy that dimension from the input). The same weights and values; 4 OSNet crops take 11 ms
    batched against 22 ms one by one on this project's 2-core machine."""
    from onnx import numpy_helper

    constants = {tensor.name: tensor for tensor in model.graph.initializer}
    for node in model.graph.node:
        if node.op_type == "Reshape" and node.input[1] in constants:
            shape = numpy_helper.to_array(constants[node.input[1]]).copy()
            if shape.size and shape[0] == 1:
                shape[0] = 0
                constants[node.input[1]].CopyFrom(numpy_helper.from_array(shape.astype(np.int64), node.input[1]))
    for value in (*model.graph.input, *model.graph.output):
        value.type.tensor_type.shape.dim[0].dim_param = "batch"
    del model.graph.value_info[:]


def batched_session(path):
    """An onnxruntime session of a batch-of-one export (OSNet's, NanoTrack's head) that takes a batch."""
    import onnx

    model = onnx.load(str(path))
    free_batch(model)
    return onnx_session(model.SerializeToString())


def nanotrack_backbone_session(path):
    """NanoTrack's backbone with free batch, input height and width: the exported graph fixes one
    255-px search crop, but the 127-px template runs through the same convolutions (cv2.TrackerNano
    reshapes it the same way), and several crops go through in one call."""
    import onnx

    model = onnx.load(str(path))
    free_batch(model)
    for value in (*model.graph.input, *model.graph.output):
        dims = value.type.tensor_type.shape.dim
        dims[2].dim_param, dims[3].dim_param = "height", "width"
    return onnx_session(model.SerializeToString())


def resized_crop(frame: Frame, box: Box, width: int, height: int) -> np.ndarray | None:
    """The pixels under ``box`` (clipped to the frame) resized to ``width x height``; None if empty."""
    frame_h, frame_w = frame.shape[:2]
    x1, y1, x2, y2 = box.clip(frame_w, frame_h).to_xyxy()
    x1, y1 = int(math.floor(x1)), int(math.floor(y1))
    x2, y2 = int(math.ceil(x2)), int(math.ceil(y2))
    if x2 - x1 < 2 or y2 - y1 < 2:
        return None
    return cv2.resize(np.ascontiguousarray(frame[y1:y2, x1:x2]), (width, height), interpolation=cv2.INTER_LINEAR)


def mean_colour(frame: Frame) -> tuple[float, ...]:
    """The frame's mean colour, what Siamese trackers pad crops with, from a sparse grid of pixels (the
    full-frame mean costs milliseconds on 720p)."""
    return tuple(float(v) for v in frame[::16, ::16].reshape(-1, 3).mean(axis=0)) if frame.size else (0.0, 0.0, 0.0)


def context_crop(frame: Frame, box: Box, size: int, context: float = 0.5) -> np.ndarray:
    """A square crop around ``box`` with ``context`` x its perimeter/2 added on each dimension
    (SiamFC's template rule), padded with the frame's mean colour where it leaves the frame."""
    pad = context * (box.w + box.h)
    side = max(math.sqrt((box.w + pad) * (box.h + pad)), 2.0)
    cx, cy = box.center
    scale = size / side
    # An affine warp crops, pads and resizes in one call.
    matrix = np.array([[scale, 0.0, size / 2.0 - cx * scale], [0.0, scale, size / 2.0 - cy * scale]], dtype=np.float32)
    mean = mean_colour(frame)
    return cv2.warpAffine(np.ascontiguousarray(frame), matrix, (size, size), flags=cv2.INTER_LINEAR,
                          borderMode=cv2.BORDER_CONSTANT, borderValue=mean)


def _batched(crops: list[np.ndarray | None], run: Callable[[np.ndarray], np.ndarray], dim: int) -> np.ndarray:
    """Run ``run`` on the stacked valid crops; zero rows where a crop was empty."""
    out = np.zeros((len(crops), dim), dtype=np.float32)
    valid = [i for i, c in enumerate(crops) if c is not None]
    if valid:
        out[valid] = run(np.stack([crops[i] for i in valid]))
    return normalise(out)


class NanoTrackEmbedder:
    """NanoTrack's backbone features of the template crop (48 x 8 x 8, flattened)."""

    name = "nanotrack"
    dim = 48 * 8 * 8

    def __init__(self, backbone: str | None = None) -> None:
        from chattracker.weights import resolve_weight

        path = resolve_weight("nanotrack_v2_backbone", backbone)
        self.session = nanotrack_backbone_session(path)
        self.input = self.session.get_inputs()[0].name
        self.weight_path = path

    def features(self, crops: np.ndarray) -> np.ndarray:
        """Backbone feature maps of ``(N, S, S, 3)`` RGB crops (the network reads BGR 0..255)."""
        blobs = np.ascontiguousarray(crops[..., ::-1].transpose(0, 3, 1, 2), dtype=np.float32)
        return self.session.run(None, {self.input: blobs})[0]

    def embed(self, frame: Frame, boxes: list[Box]) -> np.ndarray:
        height, width = frame.shape[:2]
        crops: list[np.ndarray | None] = [context_crop(frame, b, TEMPLATE_SIZE) if b.clip(width, height).area >= 4 else None
                                          for b in boxes]
        return _batched(crops, lambda x: self.features(x).reshape(len(x), -1), self.dim)


class MobileNetV2Embedder:
    """ImageNet MobileNetV2 (int8) pooled features, read from inside the graph."""

    name = "mobilenetv2"
    dim = 1280
    size = 224

    def __init__(self, weights: str | None = None) -> None:
        import onnx
        from onnx import helper

        from chattracker.weights import resolve_weight

        path = resolve_weight("mobilenetv2_imagenet", weights)
        model = onnx.load(str(path))
        matmul = next(n for n in model.graph.node if n.op_type == "QLinearMatMul")
        # The classifier's quantised input is the pooled 1280-d feature vector; dequantise it with
        # the classifier's own input scale and expose it as a second output.
        pooled, scale, zero = matmul.input[0], matmul.input[1], matmul.input[2]
        model.graph.node.append(helper.make_node("DequantizeLinear", [pooled, scale, zero], ["pooled_features"]))
        model.graph.output.append(helper.make_tensor_value_info("pooled_features", onnx.TensorProto.FLOAT, None))
        self.session = onnx_session(model.SerializeToString())
        self.input = self.session.get_inputs()[0].name
        self.weight_path = path

    def embed(self, frame: Frame, boxes: list[Box]) -> np.ndarray:
        crops = [resized_crop(frame, b, self.size, self.size) for b in boxes]

        def run(batch: np.ndarray) -> np.ndarray:
            x = imagenet_blob(batch)
            return self.session.run(["pooled_features"], {self.input: x})[0].reshape(len(x), -1)

        return _batched(crops, run, self.dim)


class OSNetEmbedder:
    """OSNet x0.25 person re-identification embedding (256 x 128 crops; the batch-of-one export freed).
    ``int8`` (the default) is the statically quantised model of ``bench/quantize_osnet.py``: 2-3 times
    faster on a CPU (3.2 against 6.3 ms a crop), embeddings at cosine 0.97 to the float32 model's."""

    name = "osnet"
    dim = 512

    def __init__(self, weights: str | None = None, int8: bool = True) -> None:
        from chattracker.weights import resolve_weight

        path = resolve_weight("osnet_reid_int8" if int8 else "osnet_reid", weights)
        self.session = batched_session(path)
        self.input = self.session.get_inputs()[0].name
        self.weight_path = path

    def embed(self, frame: Frame, boxes: list[Box]) -> np.ndarray:
        crops = [resized_crop(frame, b, 128, 256) for b in boxes]

        def run(batch: np.ndarray) -> np.ndarray:
            x = imagenet_blob(batch)
            return self.session.run(None, {self.input: x})[0].reshape(len(x), -1)

        return _batched(crops, run, self.dim)


class OSNetFloat32Embedder(OSNetEmbedder):
    """The float32 OSNet, as released: the reference the int8 model is measured against."""

    name = "osnet_fp32"

    def __init__(self, weights: str | None = None) -> None:
        super().__init__(weights, int8=False)


_HOG_SIZE = 32
_HOG = cv2.HOGDescriptor((_HOG_SIZE, _HOG_SIZE), (16, 16), (8, 8), (8, 8), 9)


class HsvHogEmbedder:
    """Weight-free: square-rooted HSV histogram (cosine = Bhattacharyya coefficient) and grey HOG."""

    name = "hsv_hog"
    dim = 48 + 324
    weight_path = None

    def embed(self, frame: Frame, boxes: list[Box]) -> np.ndarray:
        rows = np.zeros((len(boxes), self.dim), dtype=np.float32)
        for i, box in enumerate(boxes):
            pixels = resized_crop(frame, box, _HOG_SIZE, _HOG_SIZE)
            if pixels is None:
                continue
            hsv = cv2.cvtColor(pixels, cv2.COLOR_RGB2HSV)
            histogram = cv2.calcHist([hsv], [0, 1], None, [12, 4], [0, 180, 0, 256]).reshape(-1)
            histogram = np.sqrt(histogram / max(float(histogram.sum()), 1e-9))
            hog = _HOG.compute(cv2.cvtColor(pixels, cv2.COLOR_RGB2GRAY)).reshape(-1)
            hog /= max(float(np.linalg.norm(hog)), 1e-9)
            rows[i] = np.concatenate([histogram, hog]) / math.sqrt(2.0)
        return rows


EMBEDDERS.register("nanotrack")(NanoTrackEmbedder)
EMBEDDERS.register("mobilenetv2")(MobileNetV2Embedder)
EMBEDDERS.register("osnet")(OSNetEmbedder)
EMBEDDERS.register("osnet_fp32")(OSNetFloat32Embedder)
EMBEDDERS.register("hsv_hog")(HsvHogEmbedder)


def build_embedder(name: str, **params) -> Embedder:
    return EMBEDDERS.build(name, **params)
