"""Zero-shot detectors from transformers (GroundingDINO, MM-GroundingDINO, OWLv2/OWL-ViT,
OmDet-Turbo) as grounders, loaded by hub id or local folder.

Word scores: GroundingDINO-style models score every box against every text token, so each word of
a phrase gets its own column (the best of its sub-word tokens). OWL and OmDet-Turbo score a box
against a whole query, so their matrix has one column per phrase, named by the phrase itself.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Annotated, Any, Sequence

import numpy as np

from chattracker.config import Range, Why, check_settings
from chattracker.errors import ChatTrackerError, ConfigError
from chattracker.grounding.base import check_rgb_image, register_grounder
from chattracker.types import Frame, Proposals

logger = logging.getLogger(__name__)

TOKEN_MODELS = ("grounding-dino", "mm-grounding-dino")
QUERY_MODELS = ("owlv2", "owlvit")
PROCESSOR_MODELS = ("omdet-turbo",)


class HFGrounder:
    """``AutoModelForZeroShotObjectDetection`` + ``AutoProcessor`` behind the grounder protocol."""

    name = "hf"

    def __init__(
        self,
        model: str,
        box_threshold: Annotated[float, Range(0.0, 1.0), Why(
            "boxes scoring below this are dropped (GroundingDINO's demo: 0.35; 0.3 keeps small targets)")] = 0.3,
        text_threshold: Annotated[float, Range(0.0, 1.0), Why(
            "a word must score above this to label a box (GroundingDINO's demo default, 0.25)")] = 0.25,
        nms_threshold: Annotated[float, Range(0.0, 1.0), Why(
            "IoU above which the weaker of two boxes of one phrase is suppressed")] = 0.5,
        device: str = "cpu",
        dtype: str | None = None,
        max_detections: Annotated[int, Range(1, 10_000), Why(
            "boxes kept per phrase, best first (the models propose 900 queries at most)")] = 100,
        local_files_only: bool = False,
    ) -> None:
        import torch
        from transformers import AutoConfig, AutoModelForZeroShotObjectDetection, AutoProcessor

        for label, value in (("box_threshold", box_threshold), ("text_threshold", text_threshold),
                             ("nms_threshold", nms_threshold)):
            if not 0.0 <= float(value) <= 1.0:
                raise ChatTrackerError(f"hf grounder: {label} must be in [0, 1], got {value}")
        self.box_threshold = float(box_threshold)
        self.text_threshold = float(text_threshold)
        self.nms_threshold = float(nms_threshold)
        self.max_detections = int(max_detections)
        from chattracker.devices import resolve_device

        self.device = torch.device(resolve_device(device))  # auto: the eval worker's device when it has one
        model = str(model)
        looks_local = model.startswith(("/", "./", "../", "~")) or model.count("/") > 1
        if looks_local and not Path(model).expanduser().is_dir():
            raise ChatTrackerError(f"hf grounder: cannot load {model!r}: no such model folder")
        if Path(model).expanduser().is_dir():
            model = str(Path(model).expanduser())
            local_files_only = True  # a folder never needs the network
        hub = {"local_files_only": local_files_only}
        try:
            config = AutoConfig.from_pretrained(model, **hub)
        except (OSError, ValueError) as error:
            raise ChatTrackerError(f"hf grounder: cannot load {model!r}: {error}") from None
        self.kind = config.model_type
        if self.kind not in TOKEN_MODELS + QUERY_MODELS + PROCESSOR_MODELS:
            raise ChatTrackerError(
                f"hf grounder: model type {self.kind!r} of {model!r} is not supported; use one of "
                f"{', '.join(TOKEN_MODELS + QUERY_MODELS + PROCESSOR_MODELS)}"
            )
        torch_dtype = getattr(torch, dtype) if dtype else None
        try:
            self.processor = AutoProcessor.from_pretrained(model, **hub)
            self.model = AutoModelForZeroShotObjectDetection.from_pretrained(model, dtype=torch_dtype, **hub)
        except (OSError, ValueError) as error:
            raise ChatTrackerError(f"hf grounder: cannot load {model!r}: {error}") from None
        self.model.to(self.device).eval()
        self.model_id = model

    def ground(self, image: Frame, phrases: Sequence[str]) -> Proposals:
        """Boxes for the phrases, sorted by score, each labelled with the phrase that found it."""
        if isinstance(phrases, str):
            phrases = [phrases]
        phrases = [p.strip() for p in phrases if p and p.strip()]
        image = check_rgb_image(image, "hf grounder")
        if not phrases:
            return Proposals.empty()
        if self.kind in TOKEN_MODELS:
            return self._ground_tokens(image, phrases)
        if self.kind in QUERY_MODELS:
            return self._ground_queries(image, phrases)
        return self._ground_processor(image, phrases)

    def _inputs(self, **kwargs: Any) -> dict:
        inputs = self.processor(return_tensors="pt", **kwargs)
        dtype = next(self.model.parameters()).dtype
        return {k: (v.to(self.device, dtype) if v.is_floating_point() else v.to(self.device)) for k, v in inputs.items()}

    def _ground_tokens(self, image: Frame, phrases: list[str]) -> Proposals:
        """GroundingDINO: "a. b." prompt, box-by-token probabilities, words from character offsets."""
        import torch

        # The models were trained on lower-case, dot-terminated category lists.
        text, spans = "", []
        for phrase in phrases:
            start = len(text)
            text += phrase.lower()
            spans.append((start, len(text)))
            text += ". "
        text = text.strip()
        encoding = self.processor.tokenizer(text, return_offsets_mapping=True)
        inputs = self._inputs(images=_pil(image), text=text)
        if inputs["input_ids"][0].tolist() != encoding["input_ids"]:
            raise ChatTrackerError("hf grounder: the tokenizer's offsets do not match the processor's tokens")
        with torch.no_grad():
            outputs = self.model(**inputs)
        probs = torch.sigmoid(outputs.logits[0].float()).cpu().numpy()[:, : len(encoding["input_ids"])]
        offsets = encoding["offset_mapping"]
        height, width = image.shape[:2]
        boxes = _cxcywh_to_xywh(outputs.pred_boxes[0].float().cpu().numpy(), width, height)

        word_tokens: list[list[list[int]]] = []  # phrase -> word -> token indices
        words: list[list[str]] = []
        for start, end in spans:
            phrase_words, phrase_tokens = [], []
            for word_start, word_end, word in _word_spans(text, start, end):
                tokens = [t for t, (a, b) in enumerate(offsets) if b > a and a < word_end and b > word_start]
                if tokens:
                    phrase_words.append(word)
                    phrase_tokens.append(tokens)
            words.append(phrase_words)
            word_tokens.append(phrase_tokens)
        phrase_scores = np.stack(
            [probs[:, sorted({t for w in wt for t in w})].max(axis=1) if wt else np.zeros(len(probs))
             for wt in word_tokens], axis=1)  # (queries, phrases)
        best = phrase_scores.argmax(axis=1)
        score = phrase_scores[np.arange(len(best)), best]
        keep = np.nonzero((probs.max(axis=1) > self.box_threshold) & (score > self.text_threshold))[0]
        keep = keep[np.argsort(-score[keep], kind="stable")][: self.max_detections]
        token_scores = {
            phrase: (phrase_words, np.array([[probs[q, t].max() for t in wt] for q in keep]).reshape(len(keep), len(wt)))
            for phrase, phrase_words, wt in zip(phrases, words, word_tokens)
        }
        return Proposals(boxes[keep], score[keep], [phrases[b] for b in best[keep]], token_scores)

    def _ground_queries(self, image: Frame, phrases: list[str]) -> Proposals:
        """OWL: one query per phrase, a score per (box, query), class-aware NMS over the boxes."""
        import torch
        from torchvision.ops import batched_nms

        inputs = self._inputs(images=_pil(image), text=[phrases])
        with torch.no_grad():
            outputs = self.model(**inputs)
        probs = torch.sigmoid(outputs.logits[0].float()).cpu().numpy()  # (boxes, phrases)
        height, width = image.shape[:2]
        # OWLv2 pads the image to a square before resizing, so its boxes are relative to the long side.
        scale_w, scale_h = (max(width, height),) * 2 if self.kind == "owlv2" else (width, height)
        boxes = _cxcywh_to_xywh(outputs.pred_boxes[0].float().cpu().numpy(), scale_w, scale_h)
        best = probs.argmax(axis=1)
        score = probs[np.arange(len(best)), best]
        keep = np.nonzero(score > self.box_threshold)[0]
        if len(keep):
            xyxy = torch.as_tensor(boxes[keep], dtype=torch.float32).clone()
            xyxy[:, 2:] += xyxy[:, :2]
            kept = batched_nms(xyxy, torch.as_tensor(score[keep], dtype=torch.float32),
                               torch.as_tensor(best[keep]), self.nms_threshold)
            keep = keep[kept.numpy()][: self.max_detections]
        token_scores = {phrase: ([phrase], probs[keep, j : j + 1]) for j, phrase in enumerate(phrases)}
        return Proposals(boxes[keep], score[keep], [phrases[b] for b in best[keep]], token_scores)

    def _ground_processor(self, image: Frame, phrases: list[str]) -> Proposals:
        """OmDet-Turbo: the processor's own decoding (it runs NMS); one score per box and phrase."""
        import torch

        inputs = self._inputs(images=_pil(image), text=phrases)
        with torch.no_grad():
            outputs = self.model(**inputs)
        height, width = image.shape[:2]
        # The processor takes its top-k before thresholding; k cannot exceed queries x classes.
        limit = min(self.max_detections, int(np.prod(outputs.decoder_class_logits.shape[1:])))
        result = self.processor.post_process_grounded_object_detection(
            outputs, text_labels=phrases, threshold=self.box_threshold, nms_threshold=self.nms_threshold,
            target_sizes=[(height, width)], max_num_det=limit,
        )[0]
        xyxy = result["boxes"].float().cpu().numpy().reshape(-1, 4)
        scores = result["scores"].float().cpu().numpy().reshape(-1)
        labels = [phrases[int(i)] for i in result["labels"]]
        order = np.argsort(-scores, kind="stable")
        boxes = np.concatenate([xyxy[:, :2], xyxy[:, 2:] - xyxy[:, :2]], axis=1)[order]
        labels = [labels[i] for i in order]
        scores = scores[order]
        token_scores = {
            phrase: ([phrase], np.array([[s if l == phrase else 0.0] for s, l in zip(scores, labels)]).reshape(-1, 1))
            for phrase in phrases
        }
        return Proposals(boxes, scores, labels, token_scores)


def _word_spans(text: str, start: int, end: int) -> list[tuple[int, int, str]]:
    spans, i = [], start
    for word in text[start:end].split():
        i = text.index(word, i)
        spans.append((i, i + len(word), word))
        i += len(word)
    return spans


def _cxcywh_to_xywh(boxes: np.ndarray, scale_w: float, scale_h: float) -> np.ndarray:
    boxes = np.asarray(boxes, dtype=np.float64).reshape(-1, 4) * [scale_w, scale_h, scale_w, scale_h]
    return np.concatenate([boxes[:, :2] - boxes[:, 2:] / 2, boxes[:, 2:]], axis=1)


def _pil(image: np.ndarray):
    from PIL import Image

    return Image.fromarray(image)



@register_grounder("hf")
def build_hf(**params: Any) -> HFGrounder:
    if not params.get("model"):  # the one setting without a default: say what to give, not a TypeError
        raise ConfigError("grounder hf needs a model: a local model folder or a hub id (grounder: {name: hf, "
                          "params: {model: <folder or id>}})")
    return HFGrounder(**check_settings("grounder hf", params, HFGrounder))
