"""The KV-cached engine: the same greedy text as recomputing everything with `model.generate`,
prefill of the new turn only, constrained actions from the admissible list, rows reused."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import torch

from leap.students.engine import END, Engine, Request, TokenTrie


@pytest.fixture(scope="module")
def lm(tiny_model_dir: Path):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    model = AutoModelForCausalLM.from_pretrained(tiny_model_dir, dtype=torch.float32).eval()
    return model, AutoTokenizer.from_pretrained(tiny_model_dir)


def _chat(tok, episode: int, steps: int) -> str:
    msgs = [
        {"role": "system", "content": "You are an agent."},
        {"role": "user", "content": f"You are in the middle of a room {episode}. " * (1 + episode % 3)},
    ]
    for k in range(steps):
        msgs.append({"role": "assistant", "content": f"Reason: step {k}.\nAction: go to shelf {k}"})
        msgs.append(
            {"role": "user", "content": f"You arrive at shelf {k}." + " Nothing happens." * (episode % 2)}
        )
    return tok.apply_chat_template(msgs, tokenize=False, add_generation_prompt=True) + "Reason:"


def _reference(model, tok, text: str, n: int) -> list[int]:
    """Greedy continuation computed from scratch (no cache kept between steps)."""
    ids = tok(text, add_special_tokens=False, return_tensors="pt")["input_ids"]
    with torch.no_grad():
        out = model.generate(
            ids,
            attention_mask=torch.ones_like(ids),
            max_new_tokens=n,
            do_sample=False,
            pad_token_id=tok.pad_token_id,
            eos_token_id=None,
        )
    return out[0, ids.shape[1] :].tolist()


def test_same_greedy_tokens_as_recomputing_everything(lm) -> None:
    model, tok = lm
    eng = Engine(model, tok, max_rows=4, max_reason_tokens=6, max_action_tokens=6)
    for steps in range(3):  # the same episodes, one step further each call: the cache is reused
        texts = [_chat(tok, e, steps) for e in range(4)]
        got = eng.generate([Request(eng.encode(t)) for t in texts])
        for text, c in zip(texts, got, strict=True):
            ref = _reference(model, tok, text, 6)
            # the reason is the greedy text up to the first line end (or the cap), then the marker
            stop = next((k for k, t in enumerate(ref) if eng._newline[t] or t == eng.end_id), len(ref))
            assert c.token_ids[: stop + len(eng.marker_ids)] == ref[:stop] + eng.marker_ids
    assert eng.stats.cached_tokens > 0


def test_each_step_prefills_only_the_new_turn(lm) -> None:
    model, tok = lm
    eng = Engine(model, tok, max_rows=3, max_reason_tokens=4, max_action_tokens=4)
    first = [eng.encode(_chat(tok, e, 0)) for e in range(3)]
    out = eng.generate([Request(ids) for ids in first])
    turn = eng.encode(
        "<|im_end|>\n<|im_start|>user\nYou arrive at shelf 2.<|im_end|>\n<|im_start|>assistant\nReason:"
    )
    second = [ids + c.token_ids + turn for ids, c in zip(first, out, strict=True)]
    got = eng.generate([Request(ids) for ids in reversed(second)])  # order does not matter
    for ids, c in zip(reversed(second), got, strict=True):
        assert c.cached + c.prefilled == len(ids)
        assert c.prefilled <= len(turn) + 1  # only the new turn (and the answer's last token)
    # a new episode reuses a finished one's row: the shared system prompt is not recomputed
    new = eng.generate([Request(eng.encode(_chat(tok, 9, 0)))])[0]
    assert new.cached > 0


def test_constrained_actions_are_always_admissible(lm) -> None:
    model, tok = lm
    eng = Engine(model, tok, max_rows=8, max_reason_tokens=5)
    admissible = ["go to shelf 1", "go to shelf 10", "open drawer 2", "look"]
    reqs = [Request(eng.encode(_chat(tok, e, e % 3)), actions=admissible) for e in range(8)]
    for c in eng.generate(reqs):
        action = c.text.split("\nAction:")[1].strip()
        assert action in admissible, c.text
    banned = eng.generate([Request(eng.encode(_chat(tok, 1, 0)), actions=admissible, banned=admissible[:3])])
    assert banned[0].text.endswith("Action: look")


def test_more_requests_than_rows_and_greedy_is_deterministic(lm) -> None:
    model, tok = lm
    texts = [_chat(tok, e, e % 2) for e in range(7)]
    a = Engine(model, tok, max_rows=3, max_reason_tokens=5).generate([Request(tok.encode(t)) for t in texts])
    b = Engine(model, tok, max_rows=7, max_reason_tokens=5).generate([Request(tok.encode(t)) for t in texts])
    assert [c.text for c in a] == [c.text for c in b]


def test_trie_forces_single_continuations() -> None:
    trie = TokenTrie([[1, 2, 3], [1, 2, 4], [5]])
    assert TokenTrie.forced(trie.root) == []
    assert TokenTrie.forced(trie.root[1]) == [2]
    assert set(trie.root[1][2]) == {3, 4}
    assert END in trie.root[5]


def _forward_logprobs(model: Any, prompt: list[int], completion: list[int]) -> list[float]:
    ids = torch.tensor([prompt + completion])
    with torch.no_grad():
        logp = torch.log_softmax(model(ids).logits[0].float(), dim=-1)
    return [float(logp[len(prompt) - 1 + k, t]) for k, t in enumerate(completion)]


def test_score_matches_a_plain_forward_and_reuses_the_cache(lm: Any) -> None:
    model, tok = lm
    eng = Engine(model, tok, max_rows=3, prefill_chunk=16)  # chunks shorter than the prompts
    prompts = [eng.encode(_chat(tok, e, s)) for e, s in [(0, 0), (1, 2), (2, 1), (0, 1)]]
    comps = [[*eng.encode(f" look {k}.\nAction: go to shelf {k}"), eng.end_of_turn()] for k in range(4)]
    comps[2] = comps[2][:1]  # a one-token completion
    got = eng.score(prompts, comps)  # four requests over three rows: two batches
    for p, c, g in zip(prompts, comps, got, strict=True):
        assert len(g) == len(c)
        assert g == pytest.approx(_forward_logprobs(model, p, c), abs=1e-4)
    # Scoring the next step of an episode only prefills what the step adds.
    before = eng.stats.cached_tokens
    nxt = (
        prompts[1] + comps[1] + eng.encode("<|im_start|>user\nYou arrive.<|im_end|>\n<|im_start|>assistant\n")
    )
    (again,) = eng.score([nxt], [comps[0]])
    assert eng.stats.cached_tokens - before >= len(prompts[1])
    assert again == pytest.approx(_forward_logprobs(model, nxt, comps[0]), abs=1e-4)
    # Generation after scoring still gives the greedy text (the cache stays consistent).
    text = _chat(tok, 1, 2)
    (c,) = eng.generate([Request(eng.encode(text))])
    ref = _reference(model, tok, text, 3)
    stop = next((k for k, t in enumerate(ref) if eng._newline[t] or t == eng.end_id), len(ref))
    assert c.token_ids[:stop] == ref[:stop]
    with pytest.raises(ValueError, match="2 prompts but 1 completions"):
        eng.score(prompts[:2], comps[:1])


def test_grouped_query_attention_with_a_mask_matches_transformers_sdpa() -> None:
    from types import SimpleNamespace

    from transformers.integrations.sdpa_attention import sdpa_attention_forward

    from leap.students.engine import _gqa_sdpa

    torch.manual_seed(0)
    module = SimpleNamespace(num_key_value_groups=3, is_causal=True, training=False)
    q = torch.randn(2, 6, 5, 8)
    k, v = torch.randn(2, 2, 9, 8), torch.randn(2, 2, 9, 8)
    # ragged rows: row 0 sees 7 columns before its new tokens, row 1 sees 4
    pos = torch.tensor([[4, 5, 6, 7, 8], [0, 1, 2, 3, 4]])
    mask = (torch.arange(9)[None, None, :] <= pos[:, :, None])[:, None]
    ours, _ = _gqa_sdpa(module, q, k, v, mask, scaling=0.3)
    ref, _ = sdpa_attention_forward(module, q, k, v, mask, scaling=0.3)
    assert ours.shape == ref.shape == (2, 5, 6, 8)
    assert torch.allclose(ours, ref, atol=1e-6)
