"""Tiny random checkpoints of real transformers MoE classes (plus a word-level tokenizer), for tests and examples.

They exercise the real loading path without downloading anything.
"""

from __future__ import annotations

from pathlib import Path

import torch

KINDS = ("qwen3_vl_moe", "qwen3_moe", "qwen2_moe", "olmoe", "mixtral")
IMAGE_TOKEN = 120  # Qwen3-VL special tokens moved inside the tiny vocabulary of 128
WORDS = ["the", "a", "red", "car", "person", "on", "left", "of", "dog", "bike", "small", "white", "near", "tree"]


def tiny_config(kind: str, layers: int = 2, experts: int = 8, top_k: int = 2, hidden: int = 64, width: int = 32):
    """A config of the real class with hidden 64 and ``experts`` experts of FFN ``width``."""
    import transformers as tf

    text = dict(hidden_size=hidden, num_hidden_layers=layers, num_attention_heads=4, num_key_value_heads=2,
                vocab_size=128, max_position_embeddings=256, num_experts_per_tok=top_k, tie_word_embeddings=False)
    if kind == "qwen3_vl_moe":
        text.update(intermediate_size=2 * width, moe_intermediate_size=width, num_experts=experts, head_dim=16,
                    rope_scaling={"rope_type": "default", "mrope_section": [2, 3, 3]})
        vision = dict(depth=1, hidden_size=32, intermediate_size=64, num_heads=2, out_hidden_size=hidden,
                      deepstack_visual_indexes=[0], patch_size=16, spatial_merge_size=2, temporal_patch_size=2)
        config = tf.Qwen3VLMoeConfig(text_config=text, vision_config=vision, image_token_id=IMAGE_TOKEN,
                                     video_token_id=IMAGE_TOKEN + 1, vision_start_token_id=IMAGE_TOKEN + 2,
                                     vision_end_token_id=IMAGE_TOKEN + 3)
        config.architectures = ["Qwen3VLMoeForConditionalGeneration"]
        return config
    if kind == "qwen3_moe":
        config = tf.Qwen3MoeConfig(intermediate_size=2 * width, moe_intermediate_size=width, num_experts=experts,
                                   head_dim=16, **text)
        config.architectures = ["Qwen3MoeForCausalLM"]
    elif kind == "qwen2_moe":
        config = tf.Qwen2MoeConfig(intermediate_size=2 * width, moe_intermediate_size=width, num_experts=experts,
                                   shared_expert_intermediate_size=width, **text)
        config.architectures = ["Qwen2MoeForCausalLM"]
    elif kind == "olmoe":
        config = tf.OlmoeConfig(intermediate_size=width, num_experts=experts, **text)
        config.architectures = ["OlmoeForCausalLM"]
    elif kind == "mixtral":
        config = tf.MixtralConfig(intermediate_size=width, num_local_experts=experts, **text)
        config.architectures = ["MixtralForCausalLM"]
    else:
        raise ValueError(f"unknown kind {kind!r}; choose from {KINDS}")
    return config


def save_tiny_model(kind: str, folder: str | Path, seed: int = 0, with_tokenizer: bool = True,
                    router_std: float = 0.5, **sizes) -> Path:
    """Build a random ``kind`` model, save it (and a tokenizer) to ``folder``; returns the folder.

    ``router_std=0`` gives all-zero routers: every token then picks the same experts (a predictable case).
    """
    import transformers as tf

    folder = Path(folder)
    config = tiny_config(kind, **sizes)
    torch.manual_seed(seed)
    model = getattr(tf, config.architectures[0])(config)
    with torch.no_grad():  # default init is ~N(0, 0.02): routers that small barely route; make routing matter
        for name, parameter in model.named_parameters():
            if name.endswith("gate.weight") and parameter.dim() == 2:
                parameter.normal_(0, router_std) if router_std else parameter.zero_()
    model.save_pretrained(folder)
    if with_tokenizer:
        word_tokenizer().save_pretrained(folder)
    return folder


def word_tokenizer():
    """A whitespace word-level tokenizer over :data:`WORDS` (ids below the tiny vocab of 128)."""
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    vocab = {"<unk>": 0, "<eos>": 1, **{word: index + 2 for index, word in enumerate(WORDS)}}
    backend = Tokenizer(models.WordLevel(vocab=vocab, unk_token="<unk>"))
    backend.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    return PreTrainedTokenizerFast(tokenizer_object=backend, unk_token="<unk>", eos_token="<eos>")


def image_inputs(patches_side: int = 4, text_before: int = 6, text_after: int = 4) -> dict:
    """Qwen3-VL inputs for the tiny config: one image of patches_side^2 patches (merged 2x2) between words."""
    merged = patches_side * patches_side // 4
    ids = ([2 + i % 10 for i in range(text_before)] + [IMAGE_TOKEN + 2] + [IMAGE_TOKEN] * merged + [IMAGE_TOKEN + 3]
           + [3 + i % 10 for i in range(text_after)])
    generator = torch.Generator().manual_seed(0)
    return {"input_ids": torch.tensor([ids]), "attention_mask": torch.ones(1, len(ids), dtype=torch.long),
            "pixel_values": torch.randn(patches_side * patches_side, 3 * 2 * 16 * 16, generator=generator),
            "image_grid_thw": torch.tensor([[1, patches_side, patches_side]])}
