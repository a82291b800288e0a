"""The ``hf`` grounder with tiny random GroundingDINO and OWLv2 models built here, saved with
``save_pretrained`` and loaded back through the grounder's own ``from_pretrained`` path."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from transformers import (
    BertConfig,
    BertTokenizerFast,
    CLIPTextConfig,
    CLIPTokenizer,
    DetrImageProcessor,
    GroundingDinoConfig,
    GroundingDinoForObjectDetection,
    GroundingDinoImageProcessor,
    GroundingDinoProcessor,
    MMGroundingDinoConfig,
    MMGroundingDinoForObjectDetection,
    OmDetTurboConfig,
    OmDetTurboForObjectDetection,
    OmDetTurboProcessor,
    Owlv2Config,
    Owlv2ForObjectDetection,
    Owlv2ImageProcessor,
    Owlv2Processor,
    SwinConfig,
)

from chattracker.errors import ChatTrackerError
from chattracker.grounding.base import build_grounder
from chattracker.grounding.hf import HFGrounder

WORDS = ["a", "the", "red", "car", "person", "on", "left", "cat", "dog", "big"]
PHRASES = ["red car", "person on the left"]


@pytest.fixture(scope="module")
def image() -> np.ndarray:
    return np.random.default_rng(0).integers(0, 255, (60, 80, 3), dtype=np.uint8)


def _save_dino(folder: Path, config_class=GroundingDinoConfig, model_class=GroundingDinoForObjectDetection) -> Path:
    vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "."] + WORDS
    (folder / "vocab.txt").write_text("\n".join(vocab) + "\n")
    tokenizer = BertTokenizerFast(vocab_file=str(folder / "vocab.txt"), do_lower_case=True)
    processor = GroundingDinoProcessor(
        image_processor=GroundingDinoImageProcessor(size={"shortest_edge": 64, "longest_edge": 96}), tokenizer=tokenizer)
    config = config_class(
        backbone_config=SwinConfig(image_size=64, patch_size=4, embed_dim=8, depths=[1, 1, 1, 1], num_heads=[1, 1, 1, 1],
                                   window_size=4, out_features=["stage2", "stage3", "stage4"]),
        text_config=BertConfig(vocab_size=len(vocab), hidden_size=32, num_hidden_layers=1, num_attention_heads=2,
                               intermediate_size=16, max_position_embeddings=64),
        d_model=32, encoder_layers=1, decoder_layers=2, encoder_attention_heads=2, decoder_attention_heads=2,
        encoder_ffn_dim=16, decoder_ffn_dim=16, num_queries=10, encoder_n_points=2, decoder_n_points=2, max_text_len=32,
    )
    torch.manual_seed(0)
    model_class(config).save_pretrained(folder)
    processor.save_pretrained(folder)
    return folder


@pytest.fixture(scope="module")
def dino_dir(tmp_path_factory) -> Path:
    return _save_dino(tmp_path_factory.mktemp("tiny-grounding-dino"))


def _clip_tokenizer(words: list[str], max_length: int) -> CLIPTokenizer:
    """A CLIP BPE tokenizer whose merges spell each word letter by letter into one token."""
    # Id 0 stays unused: OWL treats a query whose first token is 0 as padding.
    vocab = {"!": 0, "<|startoftext|>": 1, "<|endoftext|>": 2}
    merges: list[tuple[str, str]] = []
    for char in sorted(set("".join(words))):
        vocab.setdefault(char, len(vocab))
        vocab.setdefault(char + "</w>", len(vocab))
    for word in words:
        current = word[0]
        for i, char in enumerate(word[1:], start=1):
            right = char + "</w>" if i == len(word) - 1 else char
            if (current, right) not in merges:
                merges.append((current, right))
            current += right
            vocab.setdefault(current, len(vocab))
    return CLIPTokenizer(vocab=vocab, merges=merges, model_max_length=max_length)


@pytest.fixture(scope="module")
def owl_dir(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("tiny-owlv2")
    tokenizer = _clip_tokenizer(WORDS, 16)
    vocab = tokenizer.get_vocab()
    processor = Owlv2Processor(image_processor=Owlv2ImageProcessor(size={"height": 32, "width": 32}), tokenizer=tokenizer)
    config = Owlv2Config(
        text_config=dict(vocab_size=len(vocab), hidden_size=16, intermediate_size=16, num_hidden_layers=1,
                         num_attention_heads=2, max_position_embeddings=16, bos_token_id=1, eos_token_id=2, pad_token_id=2),
        vision_config=dict(hidden_size=16, intermediate_size=16, num_hidden_layers=1, num_attention_heads=2,
                           image_size=32, patch_size=8),
        projection_dim=16,
    )
    torch.manual_seed(0)
    Owlv2ForObjectDetection(config).save_pretrained(folder)
    processor.save_pretrained(folder)
    return folder


def _rows(boxes: np.ndarray) -> np.ndarray:
    boxes = np.round(np.asarray(boxes, dtype=np.float64).reshape(-1, 4), 3)
    return boxes[np.lexsort(boxes.T[::-1])]


def test_grounding_dino_word_scores(dino_dir: Path, image: np.ndarray) -> None:
    grounder = build_grounder("hf", model=str(dino_dir), box_threshold=0.0, text_threshold=0.0)
    assert isinstance(grounder, HFGrounder) and grounder.kind == "grounding-dino"
    found = grounder.ground(image, PHRASES)
    assert len(found) == 10  # every query passes a zero threshold
    assert set(found.labels) <= set(PHRASES) and np.all(np.diff(found.scores) <= 0)
    assert found.token_scores["red car"][0] == ["red", "car"]
    assert found.token_scores["person on the left"][0] == ["person", "on", "the", "left"]
    for phrase, (words, matrix) in found.token_scores.items():
        assert matrix.shape == (len(found), len(words)) and np.all((matrix >= 0) & (matrix <= 1))
    for i, label in enumerate(found.labels):
        # A box's score is its best word of the phrase that claimed it, and no other phrase beats it.
        assert found.scores[i] == pytest.approx(found.token_scores[label][1][i].max())
        assert all(found.token_scores[p][1][i].max() <= found.scores[i] + 1e-9 for p in PHRASES)

    # Same boxes as the processor's own decoding of the same forward pass.
    inputs = grounder.processor(images=Image.fromarray(image), text="red car. person on the left.", return_tensors="pt")
    with torch.no_grad():
        outputs = grounder.model(**inputs)
    expected = grounder.processor.post_process_grounded_object_detection(
        outputs, inputs["input_ids"], threshold=0.0, text_threshold=0.0, target_sizes=[image.shape[:2]])[0]["boxes"].numpy()
    expected = np.concatenate([expected[:, :2], expected[:, 2:] - expected[:, :2]], axis=1)
    np.testing.assert_allclose(_rows(found.boxes), _rows(expected), atol=1e-3)


def test_numpy_phrases_and_a_frame_view_ground_like_plain_ones(dino_dir: Path, image: np.ndarray) -> None:
    """A non-contiguous RGB view (of a BGR frame) and phrases in a numpy array are accepted as they are."""
    grounder = build_grounder("hf", model=str(dino_dir), box_threshold=0.0, text_threshold=0.0)
    bgr = np.ascontiguousarray(image[..., ::-1])
    found, expected = grounder.ground(bgr[..., ::-1], np.array(PHRASES)), grounder.ground(image, list(PHRASES))
    assert found.labels == expected.labels and all(type(label) is str for label in found.labels)
    np.testing.assert_array_equal(found.boxes, expected.boxes)
    np.testing.assert_array_equal(found.scores, expected.scores)


def test_mm_grounding_dino_loads_and_scores_words(tmp_path: Path, image: np.ndarray) -> None:
    folder = _save_dino(tmp_path, MMGroundingDinoConfig, MMGroundingDinoForObjectDetection)
    grounder = HFGrounder(str(folder), box_threshold=0.0, text_threshold=0.0)
    assert grounder.kind == "mm-grounding-dino"
    found = grounder.ground(image, PHRASES)
    assert len(found) == 10 and set(found.labels) <= set(PHRASES)
    assert found.token_scores["person on the left"][1].shape == (10, 4)


def test_grounding_dino_thresholds(dino_dir: Path, image: np.ndarray) -> None:
    everything = HFGrounder(str(dino_dir), box_threshold=0.0, text_threshold=0.0).ground(image, PHRASES)
    cut = float(np.median(everything.scores))
    some = HFGrounder(str(dino_dir), box_threshold=0.0, text_threshold=cut).ground(image, PHRASES)
    assert 0 < len(some) < len(everything) and np.all(some.scores > cut)
    none = HFGrounder(str(dino_dir), box_threshold=1.0).ground(image, PHRASES)
    assert len(none) == 0 and none.token_scores["red car"][1].shape == (0, 2)
    assert len(HFGrounder(str(dino_dir)).ground(image, [])) == 0


def test_owlv2_query_scores(owl_dir: Path, image: np.ndarray) -> None:
    grounder = build_grounder("hf", model=str(owl_dir), box_threshold=0.0, nms_threshold=1.0)
    assert grounder.kind == "owlv2"
    found = grounder.ground(image, PHRASES)
    assert len(found) == 16  # 4x4 patches, no threshold, NMS at IoU 1 keeps all
    assert set(found.labels) <= set(PHRASES)
    for j, phrase in enumerate(PHRASES):
        words, matrix = found.token_scores[phrase]
        assert words == [phrase] and matrix.shape == (len(found), 1)
    for i, label in enumerate(found.labels):
        assert found.scores[i] == pytest.approx(found.token_scores[label][1][i, 0])

    inputs = grounder.processor(images=Image.fromarray(image), text=[PHRASES], return_tensors="pt")
    with torch.no_grad():
        outputs = grounder.model(**inputs)
    expected = grounder.processor.post_process_grounded_object_detection(
        outputs, threshold=0.0, target_sizes=[image.shape[:2]])[0]
    boxes = expected["boxes"].numpy()
    np.testing.assert_allclose(_rows(found.boxes), _rows(np.concatenate([boxes[:, :2], boxes[:, 2:] - boxes[:, :2]], 1)),
                               atol=1e-3)
    np.testing.assert_allclose(np.sort(found.scores), np.sort(expected["scores"].numpy()), atol=1e-5)

    # NMS and the score threshold both cut boxes.
    fewer = HFGrounder(str(owl_dir), box_threshold=0.0, nms_threshold=0.3).ground(image, PHRASES)
    assert len(fewer) < len(found)
    cut = float(np.median(found.scores))
    above = HFGrounder(str(owl_dir), box_threshold=cut, nms_threshold=1.0).ground(image, PHRASES)
    assert 0 < len(above) < len(found) and np.all(above.scores > cut)


def test_omdet_turbo_phrase_scores(tmp_path: Path, image: np.ndarray) -> None:
    tokenizer = _clip_tokenizer(WORDS + ["detect"], 77)
    OmDetTurboProcessor(image_processor=DetrImageProcessor(size={"height": 64, "width": 64}),
                        tokenizer=tokenizer).save_pretrained(tmp_path)
    # The decoder width must differ from the class-embedding width (transformers only builds the
    # projection between them then) and the HF Swin backbone already returns channels-first maps.
    config = OmDetTurboConfig(
        backbone_config=SwinConfig(image_size=64, patch_size=4, embed_dim=8, depths=[1, 1, 1, 1], num_heads=[1, 1, 1, 1],
                                   window_size=4, out_indices=[2, 3, 4]),
        text_config=CLIPTextConfig(vocab_size=len(tokenizer.get_vocab()), hidden_size=32, intermediate_size=16,
                                   num_hidden_layers=1, num_attention_heads=2, max_position_embeddings=77,
                                   bos_token_id=1, eos_token_id=2, pad_token_id=2, projection_dim=16),
        image_size=64, apply_layernorm_after_vision_backbone=False, text_projection_in_dim=32,
        text_projection_out_dim=32, task_encoder_hidden_dim=32, class_embed_dim=32, num_queries=10,
        encoder_hidden_dim=48, vision_features_channels=[48, 48, 48], encoder_in_channels=[16, 32, 64],
        encoder_attention_heads=2, encoder_dim_feedforward=32, decoder_hidden_dim=48, decoder_num_heads=2,
        decoder_num_layers=1, decoder_dim_feedforward=32, decoder_num_points=2,
    )
    torch.manual_seed(0)
    OmDetTurboForObjectDetection(config).save_pretrained(tmp_path)
    grounder = HFGrounder(str(tmp_path), box_threshold=0.0, nms_threshold=1.0)
    assert grounder.kind == "omdet-turbo"
    found = grounder.ground(image, PHRASES)
    assert len(found) == 20  # 10 queries x 2 phrases
    assert set(found.labels) <= set(PHRASES) and np.all(np.diff(found.scores) <= 0)
    for i, label in enumerate(found.labels):
        assert found.token_scores[label][0] == [label]
        assert found.token_scores[label][1][i, 0] == pytest.approx(found.scores[i])
    cut = float(np.median(found.scores))
    above = HFGrounder(str(tmp_path), box_threshold=cut, nms_threshold=1.0).ground(image, PHRASES)
    assert 0 < len(above) < len(found) and np.all(above.scores > cut)


def test_bad_models_and_settings(tmp_path: Path, image: np.ndarray) -> None:
    BertConfig(vocab_size=10, hidden_size=8, num_hidden_layers=1, num_attention_heads=2,
               intermediate_size=8).save_pretrained(tmp_path / "bert")
    with pytest.raises(ChatTrackerError, match="not supported"):
        HFGrounder(str(tmp_path / "bert"))
    with pytest.raises(ChatTrackerError, match="cannot load"):
        HFGrounder(str(tmp_path / "missing"))
    with pytest.raises(ChatTrackerError, match="box_threshold"):
        HFGrounder(str(tmp_path / "bert"), box_threshold=2.0)
