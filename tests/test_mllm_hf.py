"""The hf describer with tiny random Qwen3-VL models (MoE and dense) saved and loaded through the
real path, with a processor built here (WordLevel tokenizer, Qwen2-VL image processor, chat template).

Random weights write word salad: the tests check that the whole pipeline runs (chat template with
the image, generate, decode) and that the salad ends as a clear "nothing usable" outcome, not a crash.
The vocabulary has no quotes, colons or braces, so no random reply can look like a description.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from chattracker.errors import ConfigError
from chattracker.mllm.errors import ReplyParseError
from chattracker.rpo import RPOConfig, run_rpo
from chattracker.types import Box
from tests.test_rpo_fakes import SCENE, TARGET, ScriptedDescriber, WordGrounder

SPECIAL = ["<|endoftext|>", "<|im_start|>", "<|im_end|>", "<|vision_start|>", "<|vision_end|>", "<|image_pad|>", "<|video_pad|>"]
WORDS = ["[UNK]", "the", "a", "red", "car", "person", "tree", "sky", "man", "woman", "dog", "green", "box", "left"]
TEMPLATE = (
    "{% for message in messages %}<|im_start|>{{ message['role'] }}\n{% if message['content'] is string %}"
    "{{ message['content'] }}{% else %}{% for part in message['content'] %}{% if part['type'] == 'image' %}"
    "<|vision_start|><|image_pad|><|vision_end|>{% elif part['type'] == 'text' %}{{ part['text'] }}{% endif %}"
    "{% endfor %}{% endif %}<|im_end|>\n{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}")


def build_processor():
    from tokenizers import AddedToken, Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast, Qwen2VLImageProcessor, Qwen3VLProcessor
    from transformers.models.qwen3_vl.video_processing_qwen3_vl import Qwen3VLVideoProcessor

    vocab = {w: i for i, w in enumerate(WORDS + SPECIAL)}
    backend = Tokenizer(models.WordLevel(vocab, unk_token="[UNK]"))
    backend.pre_tokenizer = pre_tokenizers.Whitespace()
    backend.add_special_tokens([AddedToken(s, special=True, normalized=False) for s in SPECIAL])
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=backend, unk_token="[UNK]", pad_token="<|endoftext|>",
                                        eos_token="<|im_end|>")
    tiny = dict(patch_size=16, temporal_patch_size=2, merge_size=2, size={"shortest_edge": 32 * 32, "longest_edge": 64 * 64})
    processor = Qwen3VLProcessor(image_processor=Qwen2VLImageProcessor(**tiny), tokenizer=tokenizer,
                                 video_processor=Qwen3VLVideoProcessor(**tiny), chat_template=TEMPLATE)
    return processor, vocab


def build_models(folder: Path) -> dict[str, Path]:
    import torch
    from transformers import (Qwen3VLConfig, Qwen3VLForConditionalGeneration, Qwen3VLMoeConfig,
                              Qwen3VLMoeForConditionalGeneration)

    processor, vocab = build_processor()
    tokens = {"image_token_id": "<|image_pad|>", "video_token_id": "<|video_pad|>",
              "vision_start_token_id": "<|vision_start|>", "vision_end_token_id": "<|vision_end|>"}
    ids = {key: vocab[token] for key, token in tokens.items()}
    text = dict(vocab_size=len(vocab), hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4,
                num_key_value_heads=2, head_dim=16, max_position_embeddings=512,
                rope_parameters={"rope_type": "default", "rope_theta": 10000.0, "mrope_section": [2, 3, 3], "mrope_interleaved": True},
                pad_token_id=vocab["<|endoftext|>"], eos_token_id=vocab["<|im_end|>"])
    vision = dict(depth=1, hidden_size=32, intermediate_size=64, num_heads=2, patch_size=16, spatial_merge_size=2,
                  temporal_patch_size=2, out_hidden_size=64, num_position_embeddings=64, deepstack_visual_indexes=[0])
    configs = {
        "moe": (Qwen3VLMoeForConditionalGeneration,
                Qwen3VLMoeConfig(text_config=dict(text, moe_intermediate_size=32, num_experts=8, num_experts_per_tok=2),
                                 vision_config=vision, **ids)),
        "dense": (Qwen3VLForConditionalGeneration, Qwen3VLConfig(text_config=text, vision_config=vision, **ids)),
    }
    paths = {}
    torch.manual_seed(0)
    for name, (model_class, config) in configs.items():
        model = model_class(config).eval()
        model.generation_config.eos_token_id = vocab["<|im_end|>"]
        model.generation_config.pad_token_id = vocab["<|endoftext|>"]
        paths[name] = folder / name
        model.save_pretrained(paths[name])
        processor.save_pretrained(paths[name])
    return paths


@pytest.fixture(scope="module")
def tiny_models(tmp_path_factory) -> dict[str, Path]:
    return build_models(tmp_path_factory.mktemp("tiny_vlm"))


def frame() -> np.ndarray:
    return np.random.default_rng(1).integers(0, 255, (480, 640, 3), dtype=np.uint8)


@pytest.mark.parametrize("kind", ["dense", "moe"])
def test_random_model_runs_end_to_end_and_salad_is_a_clear_error(tiny_models, kind):
    from chattracker.mllm.hf import build_hf

    describer = build_hf(model=str(tiny_models[kind]), device="cpu", max_new_tokens=8)
    with pytest.raises(ReplyParseError, match="no usable description") as caught:
        describer.describe(frame(), TARGET)
    exchange = describer.last_exchanges[0]
    assert exchange["prompt"]["name"] == "describe" and exchange["new_tokens"] > 0
    assert caught.value.reply == exchange["reply"] and exchange["reply"].strip()
    assert set(exchange["reply"].split()) <= set(WORDS)  # decoded from the model's own vocabulary


@pytest.mark.parametrize("kind", ["dense", "moe"])
def test_the_frame_with_its_box_reaches_the_model(tiny_models, kind):
    """Protects the image part of the hf describer's messages: generate() gets the pixels of this frame (two
    frames give two different pixel tensors), and the prompt holds one image token per 2x2-merged patch of the
    processor's grid (a text-only prompt has none)."""
    import torch

    from chattracker.mllm.hf import build_hf

    describer = build_hf(model=str(tiny_models[kind]), device="cpu", max_new_tokens=2)
    seen, generate = [], describer.model.generate
    describer.model.generate = lambda **inputs: (seen.append(inputs), generate(**inputs))[1]
    image_token = describer.processor.tokenizer.convert_tokens_to_ids("<|image_pad|>")
    dark, bright = np.zeros((480, 640, 3), np.uint8), np.full((480, 640, 3), 200, np.uint8)
    for picture in (dark, bright):
        with pytest.raises(ReplyParseError):
            describer.describe(picture, TARGET)
    first, second = seen[0], seen[-1]
    for inputs in (first, second):
        assert "pixel_values" in inputs and "image_grid_thw" in inputs
        merged = int(inputs["image_grid_thw"].prod()) // 4
        assert merged > 0 and int((inputs["input_ids"] == image_token).sum()) == merged
        assert describer.last_exchanges[0]["prompt_tokens"] == inputs["input_ids"].shape[1]
    assert not torch.equal(first["pixel_values"], second["pixel_values"]), "the pixels do not come from the frame"


def test_rpo_with_random_model_keeps_going_and_falls_back(tiny_models):
    from chattracker.mllm.hf import HFDescriber

    describer = HFDescriber(str(tiny_models["dense"]), device="cpu", max_new_tokens=6)
    result = run_rpo(frame(), TARGET, describer, WordGrounder(SCENE), RPOConfig(iterations=2))
    assert not result.ok and result.trace["error"] == "no round produced a usable description"
    assert [r["error"].split(":")[0] for r in result.trace["rounds"]] == ["ReplyParseError"] * 2
    assert all(r["exchanges"][0]["reply"] for r in result.trace["rounds"])
    json.dumps(result.trace)
    rescued = run_rpo(frame(), TARGET, describer, WordGrounder(SCENE), RPOConfig(iterations=1),
                      fallback=ScriptedDescriber(["red person"]))
    assert rescued.ok and rescued.description.foreground == "red person"


def test_missing_model_or_chat_template_is_one_clear_line(tiny_models, tmp_path):
    import shutil

    from chattracker.mllm.hf import HFDescriber

    bare = tmp_path / "bare"
    shutil.copytree(tiny_models["dense"], bare)
    (bare / "chat_template.jinja").unlink()
    with pytest.raises(ConfigError, match="has no chat template"):
        HFDescriber(str(bare), device="cpu").describe(frame(), TARGET)

    with pytest.raises(ConfigError, match="hf describer: cannot load the processor") as caught:
        HFDescriber(str(tmp_path / "nothing-here"), device="cpu")
    assert "\n" not in str(caught.value)
    with pytest.raises(ConfigError, match="needs 'store'"):
        HFDescriber.__new__(HFDescriber)._check_offload({"expert_budget": 4})


def test_hf_describer_with_a_tiny_moe_model_runs_on_the_offload_engine_when_configured(tiny_models, tmp_path):
    from chattracker.mllm.hf import HFDescriber, store_is_ready

    store = tmp_path / "store"
    describer = HFDescriber(str(tiny_models["moe"]), device="cpu", max_new_tokens=6,
                            offload={"store": str(store), "expert_budget": "50%", "group_size": 32})
    assert describer.engine is not None and store_is_ready(store)  # converted on first use
    with pytest.raises(ReplyParseError):
        describer.describe(frame(), Box(100, 100, 40, 80))
    exchange = describer.last_exchanges[0]
    assert exchange["reply"].strip() and exchange["new_tokens"] > 0
    stats = exchange["offload_stats"]
    assert stats["demanded"] > 0 and stats["bytes_read"] > 0, "the engine served the experts from the store"
    assert set(exchange["reply"].split()) <= set(WORDS)
    # a second describer reuses the converted store instead of converting again
    written = (store / "manifest.json").stat().st_mtime_ns
    again = HFDescriber(str(tiny_models["moe"]), device="cpu", max_new_tokens=6,
                        offload={"store": str(store), "expert_budget": "50%", "group_size": 32})
    assert again.engine is not None and (store / "manifest.json").stat().st_mtime_ns == written
