"""Batched chat generation with a Hugging Face causal LM.

Prompts are sorted by length and generated in left-padded batches (less padding, one
forward per token for the whole batch). Generation stops at the end of the turn or, since
the student answers in two lines, at the newline that ends the ``Action:`` line: what the
model would write after it is never used, and generated length is the main cost.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
from transformers import StoppingCriteria, StoppingCriteriaList

from leap.prompts.parsing import ACTION_LINE_DONE
from leap.records import Message

# An "Action:" line with some content, ended by a newline (markdown and case tolerated).

Conversation = Sequence[Message] | Sequence[dict[str, str]]


class ActionLineStop(StoppingCriteria):
    """Stop each sequence once its generated text holds a complete ``Action: ...`` line."""

    def __init__(self, tokenizer: Any, prompt_len: int) -> None:
        self.tokenizer = tokenizer
        self.prompt_len = prompt_len

    def __call__(
        self, input_ids: torch.LongTensor, scores: torch.FloatTensor, **kwargs: Any
    ) -> torch.BoolTensor:
        texts = self.tokenizer.batch_decode(input_ids[:, self.prompt_len :], skip_special_tokens=True)
        done = [bool(ACTION_LINE_DONE.search(t)) for t in texts]
        return torch.tensor(done, dtype=torch.bool, device=input_ids.device)


@dataclass
class GenerationStats:
    sequences: int = 0
    prompt_tokens: int = 0
    generated_tokens: int = 0
    seconds: float = 0.0
    batches: int = 0
    per_batch: list[dict[str, float]] = field(default_factory=list)

    @property
    def tokens_per_s(self) -> float:
        return self.generated_tokens / self.seconds if self.seconds else 0.0


def _as_dicts(conv: Conversation) -> list[dict[str, str]]:
    return [m.model_dump() if isinstance(m, Message) else dict(m) for m in conv]


class Generator:
    """Generate one assistant turn for each conversation.

    ``temperature`` 0 is greedy decoding; ``stop_after_action`` ends a sequence at the
    newline after its ``Action:`` line.
    """

    def __init__(
        self,
        model: Any,
        tokenizer: Any,
        max_new_tokens: int = 48,
        temperature: float = 0.0,
        batch_size: int = 8,
        *,
        stop_after_action: bool = True,
        seed: int | None = None,
    ) -> None:
        self.model = model
        self.tokenizer = tokenizer
        self.max_new_tokens = max_new_tokens
        self.temperature = temperature
        self.batch_size = max(1, batch_size)
        self.stop_after_action = stop_after_action
        self.seed = seed
        self.stats = GenerationStats()
        self._eos = _eos_ids(model, tokenizer)

    def render(self, conv: Conversation) -> str:
        return self.tokenizer.apply_chat_template(_as_dicts(conv), tokenize=False, add_generation_prompt=True)

    def generate(self, conversations: Sequence[Conversation]) -> list[str]:
        """The generated text of each conversation (special tokens removed), in input order."""
        if not conversations:
            return []
        texts = [self.render(c) for c in conversations]
        # The chat template already writes BOS-like markers: add no special tokens again.
        lengths = [len(ids) for ids in self.tokenizer(texts, add_special_tokens=False)["input_ids"]]
        order = sorted(range(len(texts)), key=lambda i: lengths[i])
        out: list[str] = [""] * len(texts)
        if self.seed is not None:
            torch.manual_seed(self.seed)
        for start in range(0, len(order), self.batch_size):
            idx = order[start : start + self.batch_size]
            for i, text in zip(idx, self._generate_batch([texts[i] for i in idx]), strict=True):
                out[i] = text
        return out

    @torch.inference_mode()
    def _generate_batch(self, texts: list[str]) -> list[str]:
        tok = self.tokenizer
        tok.padding_side = "left"
        enc = tok(texts, return_tensors="pt", padding=True, add_special_tokens=False)
        dev = next(self.model.parameters()).device
        enc = {k: v.to(dev) for k, v in enc.items()}
        prompt_len = enc["input_ids"].shape[1]
        kwargs: dict[str, Any] = {
            "max_new_tokens": self.max_new_tokens,
            "pad_token_id": tok.pad_token_id,
            "eos_token_id": self._eos,
        }
        if self.temperature > 0:
            kwargs.update(do_sample=True, temperature=self.temperature, top_p=1.0, top_k=0)
        else:
            kwargs.update(do_sample=False, temperature=None, top_p=None, top_k=None)
        if self.stop_after_action:
            kwargs["stopping_criteria"] = StoppingCriteriaList([ActionLineStop(tok, prompt_len)])
        t0 = time.perf_counter()
        seqs = self.model.generate(**enc, **kwargs)
        dt = time.perf_counter() - t0
        gen = seqs[:, prompt_len:]
        n_gen = int((gen != tok.pad_token_id).sum())
        self.stats.sequences += len(texts)
        self.stats.batches += 1
        self.stats.prompt_tokens += int(enc["attention_mask"].sum())
        self.stats.generated_tokens += n_gen
        self.stats.seconds += dt
        self.stats.per_batch.append({"size": len(texts), "prompt_len": prompt_len, "new": n_gen, "s": dt})
        return tok.batch_decode(gen, skip_special_tokens=True)


def _eos_ids(model: Any, tok: Any) -> list[int]:
    ids: list[int] = []
    cfg = getattr(model, "generation_config", None)
    eos = getattr(cfg, "eos_token_id", None)
    for e in eos if isinstance(eos, list) else [eos]:
        if e is not None:
            ids.append(int(e))
    vocab = tok.get_vocab()
    for t in (tok.eos_token, "<|im_end|>", "<|eot_id|>", "<|end|>"):  # end-of-turn markers
        if t and t in vocab and vocab[t] not in ids:
            ids.append(int(vocab[t]))
    return ids
