"""Tiny Hugging Face models built at test time from transformers configs (random init), one or
more per model family; tests/test_families.py, tests/test_family_graphs.py and
bench/families.py save them as folders."""
from __future__ import annotations

from pathlib import Path

import torch

import sample_models
from compression.io import families
from compression.metrics import AGREEMENT, COSINE, NEXT_TOKEN_AGREEMENT, OUTPUT_COSINE

HALF_AND_4_BIT = {"prune": {"amount": 0.5, "scope": "global"}, "quantize": {"bits": 4}}
TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json")
TOKENIZER_VOCAB = 2048  # the sample LM's tokenizer: folders given it need this vocabulary


def _transformers():
    import transformers  # imported when a model is built: a module importing this one may skip without it

    return transformers


# name → (model class, config, family, metric without a tokenizer)
ARCHITECTURES = {
    "gpt2": ("GPT2LMHeadModel", lambda t: t.GPT2Config(
        n_embd=32, n_layer=2, n_head=2, n_positions=64, vocab_size=TOKENIZER_VOCAB), families.CAUSAL_LM, NEXT_TOKEN_AGREEMENT),
    "llama": ("LlamaForCausalLM", lambda t: t.LlamaConfig(
        hidden_size=32, num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2, intermediate_size=64,
        max_position_embeddings=64, vocab_size=TOKENIZER_VOCAB, tie_word_embeddings=True), families.CAUSAL_LM, NEXT_TOKEN_AGREEMENT),
    "qwen2": ("Qwen2ForCausalLM", lambda t: t.Qwen2Config(
        hidden_size=32, num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2, intermediate_size=64,
        max_position_embeddings=64, vocab_size=TOKENIZER_VOCAB), families.CAUSAL_LM, NEXT_TOKEN_AGREEMENT),
    "t5": ("T5ForConditionalGeneration", lambda t: t.T5Config(
        d_model=32, d_ff=64, num_layers=2, num_heads=2, d_kv=16, vocab_size=TOKENIZER_VOCAB), families.SEQ2SEQ, NEXT_TOKEN_AGREEMENT),
    "bart": ("BartForConditionalGeneration", lambda t: t.BartConfig(
        d_model=32, encoder_layers=1, decoder_layers=1, encoder_attention_heads=2, decoder_attention_heads=2,
        encoder_ffn_dim=64, decoder_ffn_dim=64, max_position_embeddings=64, vocab_size=TOKENIZER_VOCAB),
        families.SEQ2SEQ, NEXT_TOKEN_AGREEMENT),
    "bert": ("BertModel", lambda t: t.BertConfig(
        hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64, vocab_size=100),
        families.TEXT_ENCODER, COSINE),
    "vit": ("ViTForImageClassification", lambda t: t.ViTConfig(
        hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64, image_size=32, patch_size=8,
        num_labels=5), families.IMAGE_CLASSIFIER, AGREEMENT),
    "resnet": ("ResNetForImageClassification", lambda t: t.ResNetConfig(
        embedding_size=8, hidden_sizes=[8, 16], depths=[1, 1], num_labels=5), families.IMAGE_CLASSIFIER, AGREEMENT),
    "mobilenet_v2": ("MobileNetV2ForImageClassification", lambda t: t.MobileNetV2Config(
        depth_multiplier=0.25, image_size=32, num_labels=5), families.IMAGE_CLASSIFIER, AGREEMENT),
    "vit_base": ("ViTModel", lambda t: t.ViTConfig(
        hidden_size=32, num_hidden_layers=1, num_attention_heads=2, intermediate_size=64, image_size=32, patch_size=8),
        families.OTHER, OUTPUT_COSINE),
}


def tiny_model(name: str) -> torch.nn.Module:
    """The architecture ``name`` with seeded random weights, in eval mode."""
    transformers = _transformers()
    cls, config, _, _ = ARCHITECTURES[name]
    torch.manual_seed(0)
    return getattr(transformers, cls)(config(transformers)).eval()


def save_tiny_model(name: str, folder: Path, *, tokenizer: bool = False) -> Path:
    """``folder`` holding the architecture ``name`` as ``save_pretrained`` writes it, with the
    sample LM's tokenizer when ``tokenizer`` (its vocabulary is ``TOKENIZER_VOCAB``)."""
    tiny_model(name).save_pretrained(folder)
    if tokenizer:
        for file in TOKENIZER_FILES:
            (folder / file).write_bytes((sample_models.TINYLM_DIR / file).read_bytes())
    return folder
