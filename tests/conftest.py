"""Shared test fixtures.

``tiny_model_dir``: a tiny randomly initialised Llama causal LM with a small byte-level BPE
tokenizer and a ChatML chat template (like SmolLM2's), built offline in about a second.
Load it with ``StudentParams(model=str(tiny_model_dir))``.
"""

from __future__ import annotations

from pathlib import Path

import pytest

CHATML = (
    "{% for message in messages %}"
    "{{ '<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n' }}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
)

_CORPUS = [
    "Reason: I need to find the apple first. Action: go to countertop 1",
    "Reason: The mug may be in the cabinet. Action: open cabinet 2",
    "You are in the middle of a room. Looking quickly around you, you see a cabinet 1, a drawer 2, "
    "a fridge 1, a countertop 1, a shelf 3, a sinkbasin 1 and a microwave 1.",
    "Your task is to: put a clean apple in the fridge. Task: Observation: Action: Reason: Step",
    "Respond with exactly two lines: one short sentence, one action. Admissible actions: take, put, look",
    "ls -la /testbed; find . -name '*.txt' | grep error; search[red shoes]; click[buy now]",
    "You are an agent acting in a text-based environment. Current observation: Nothing happens.",
]


def build_tiny_model(
    path: Path,
    *,
    vocab_size: int = 400,
    seed: int = 0,
    corpus: list[str] | None = None,
    hidden_size: int = 32,
    layers: int = 2,
    initializer_range: float = 0.5,
    embedding_std: float | None = None,
) -> Path:
    import torch
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

    specials = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]
    bpe = Tokenizer(models.BPE(unk_token=None))
    bpe.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    bpe.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=specials,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    bpe.train_from_iterator((corpus or _CORPUS) * 4, trainer=trainer)
    tok = PreTrainedTokenizerFast(
        tokenizer_object=bpe,
        bos_token="<|im_start|>",
        eos_token="<|im_end|>",
        pad_token="<|im_end|>",
        unk_token="<|endoftext|>",
    )
    tok.chat_template = CHATML
    torch.manual_seed(seed)
    cfg = LlamaConfig(
        vocab_size=len(tok),
        hidden_size=hidden_size,
        intermediate_size=2 * hidden_size,
        num_hidden_layers=layers,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=2048,
        bos_token_id=tok.bos_token_id,
        eos_token_id=tok.eos_token_id,
        pad_token_id=tok.pad_token_id,
        tie_word_embeddings=True,
        initializer_range=initializer_range,  # 0.5 (default): greedy outputs depend on the prompt
    )
    model = LlamaForCausalLM(cfg)
    if embedding_std is not None:  # trainable by LoRA: small layers, but (tied) logits of a useful scale
        with torch.no_grad():
            model.get_input_embeddings().weight.normal_(0.0, embedding_std)
    model.generation_config.eos_token_id = tok.eos_token_id
    model.generation_config.pad_token_id = tok.pad_token_id
    model.save_pretrained(path)
    tok.save_pretrained(path)
    return path


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_tiny_model(tmp_path_factory.mktemp("tiny-llama") / "model")
