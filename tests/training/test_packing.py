"""Packed training sequences: a demonstration trains every step in one pass; corrections branch off
the student's own history; the mask keeps branches apart, so each branch sees exactly the prompt
the student saw at inference."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from leap.records import Message, TrainExample
from leap.students.prompting import pack_conversation
from leap.training.data import PackedCollator, _packed_groups, sft_dataset


def _m(role: str, content: str) -> Message:
    return Message(role=role, content=content)  # type: ignore[arg-type]


TRUNK = [
    _m("system", "S"),
    _m("user", "You arrive at shelf 1."),
    _m("assistant", "Reason: a.\nAction: go to shelf 2"),
    _m("user", "You arrive at shelf 2."),
    _m("assistant", "Reason: b.\nAction: go to shelf 3"),
    _m("user", "You arrive at shelf 3."),
]


@pytest.fixture(scope="module")
def lm(tiny_model_dir: Path):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    return AutoModelForCausalLM.from_pretrained(tiny_model_dir).eval(), AutoTokenizer.from_pretrained(
        tiny_model_dir
    )


def test_demo_trains_every_assistant_turn_and_matches_inference_tokens(lm) -> None:
    _, tok = lm
    seq = pack_conversation(tok, TRUNK[:5], train_from=2)
    full = tok.apply_chat_template([m.model_dump() for m in TRUNK[:5]], tokenize=False)
    assert seq.input_ids == tok(full, add_special_tokens=False)["input_ids"]
    trained = tok.decode([t for t, lab in zip(seq.input_ids, seq.labels, strict=True) if lab != -100])
    assert trained == "Reason: a.\nAction: go to shelf 2<|im_end|>Reason: b.\nAction: go to shelf 3<|im_end|>"
    assert seq.segment == [0] * len(seq.input_ids) and seq.position_ids == list(range(len(seq.input_ids)))


def test_branches_continue_their_prompt_and_nothing_else(lm) -> None:
    model, tok = lm
    b1, b2 = (
        _m("assistant", "Reason: T1.\nAction: open drawer 1"),
        _m("assistant", "Reason: T3.\nAction: look"),
    )
    seq = pack_conversation(tok, TRUNK, branches=[(2, b1), (6, b2)])
    batch = PackedCollator(tok.pad_token_id)(
        [
            {
                "input_ids": seq.input_ids,
                "labels": seq.labels,
                "position_ids": seq.position_ids,
                "segment": seq.segment,
            }
        ]
    )
    with torch.no_grad():
        packed = model(**batch).logits[0]
    for k, branch, seg in ((2, b1, 1), (6, b2, 2)):
        # the branch's tokens, computed alone after exactly its prompt, give the same logits
        prompt = tok.apply_chat_template(
            [m.model_dump() for m in TRUNK[:k]], tokenize=False, add_generation_prompt=True
        )
        ids = tok(prompt + branch.content + "<|im_end|>", add_special_tokens=False)["input_ids"]
        with torch.no_grad():
            alone = model(input_ids=torch.tensor([ids])).logits[0]
        where = [i for i, s in enumerate(seq.segment) if s == seg]
        assert [seq.input_ids[i] for i in where] == ids[-len(where) :]
        assert torch.allclose(packed[where], alone[-len(where) :], atol=1e-5)
        assert all(seq.labels[i] == seq.input_ids[i] for i in where)
    trunk_labels = [lab for lab, s in zip(seq.labels, seq.segment, strict=True) if s == 0]
    assert set(trunk_labels) == {-100}  # the student's own turns are context, never trained on


def test_corrections_of_one_trajectory_become_one_sequence() -> None:
    def corr(k: int, task: str = "t") -> TrainExample:
        return TrainExample(
            prompt=TRUNK[:k],
            completion=[_m("assistant", f"Reason: fix {k}.\nAction: look")],
            source="correction",
            task_id=task,
            iteration=1,
            step_index=k,
        )

    demo = TrainExample(
        prompt=TRUNK[:2], completion=TRUNK[2:5], source="demo", task_id="d", iteration=0, step_index=0
    )
    groups = _packed_groups([demo, corr(2), corr(4), corr(6), corr(2, task="other")])
    assert len(groups) == 3
    trunk, train_from, branches = next(g for g in groups if len(g[2]) == 3)
    assert trunk == TRUNK and train_from is None and [k for k, _ in branches] == [2, 4, 6]


def test_sft_dataset_rows(lm) -> None:
    _, tok = lm
    ex = TrainExample(
        prompt=TRUNK[:2], completion=TRUNK[2:5], source="demo", task_id="d", iteration=0, step_index=0
    )
    ds = sft_dataset([ex], tok)
    assert set(ds.column_names) == {"input_ids", "labels", "position_ids", "segment"}
    assert len(ds) == 1


def test_truncation_reports_the_share_of_trained_tokens_it_drops() -> None:
    from datasets import Dataset

    from leap.training.data import truncate_rows

    ds = Dataset.from_list(
        [
            {
                "input_ids": [1] * 6,
                "labels": [-100, -100, 5, 5, -100, 5],
                "position_ids": [0] * 6,
                "segment": [0] * 6,
            },
            {"input_ids": [1] * 3, "labels": [-100, 5, 5], "position_ids": [0] * 3, "segment": [0] * 3},
        ]
    )
    cut, n, lost = truncate_rows(ds, 4)
    assert n == 1 and lost == pytest.approx(1 / 5)  # the last label of row 0 goes; 5 labels in all
    assert [len(x) for x in cut["input_ids"]] == [4, 3]
    assert truncate_rows(ds, 6)[1:] == (0, 0.0)


def test_an_unbranched_row_goes_without_a_mask_and_gives_the_same_logits(lm) -> None:
    model, tok = lm
    seq = pack_conversation(tok, TRUNK[:5], train_from=2)
    row = {"input_ids": seq.input_ids, "labels": seq.labels, "position_ids": seq.position_ids}
    collate = PackedCollator(tok.pad_token_id)
    plain = collate([{**row, "segment": seq.segment}])
    assert "attention_mask" not in plain  # SDPA's causal path, no mask to build or read
    # the same row beside a padded one takes the masked path: its logits must not change
    short = {k: v[:3] for k, v in row.items()}
    masked = collate([{**row, "segment": seq.segment}, {**short, "segment": [0, 0, 0]}])
    assert "attention_mask" in masked
    with torch.no_grad():
        a = model(**plain).logits[0]
        b = model(**{k: v for k, v in masked.items() if k != "labels"}).logits[0]
    assert torch.allclose(a, b, atol=1e-5)
