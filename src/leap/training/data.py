"""TrainExample records -> TRL's conversational datasets for SFT, DPO and KTO."""

from __future__ import annotations

import random
from typing import Any

from datasets import Dataset

from leap.records import Message, TrainExample


class TrainingDataError(ValueError):
    """The examples cannot make a training set for the chosen method."""


def _msgs(messages: list[Message]) -> list[dict[str, str]]:
    return [m.model_dump() for m in messages]


def select_examples(examples: list[TrainExample], max_examples: int | None) -> list[TrainExample]:
    """Keep the newest ``max_examples`` (highest iteration; later in the list on ties), in input order."""
    if max_examples is None or len(examples) <= max_examples:
        return list(examples)
    ranked = sorted(range(len(examples)), key=lambda i: (examples[i].iteration, i))
    keep = set(ranked[-max_examples:])
    return [ex for i, ex in enumerate(examples) if i in keep]


def _same(a: list[Message] | None, b: list[Message]) -> bool:
    return a is not None and [m.content.strip() for m in a] == [m.content.strip() for m in b]


def _packed_groups(
    examples: list[TrainExample],
) -> list[tuple[list[Message], int | None, list[tuple[int, Message]]]]:
    """(trunk, train_from, branches) sequences covering ``examples``.

    A demonstration is its own sequence (loss on every assistant turn of its completion). The
    corrections of one trajectory share the student's history: their prompts are prefixes of the
    longest one, so they become branches off that one trunk.
    """
    out: list[tuple[list[Message], int | None, list[tuple[int, Message]]]] = []
    groups: dict[tuple[str, int], list[TrainExample]] = {}
    for ex in examples:
        if ex.source == "correction" and len(ex.completion) == 1:
            groups.setdefault((ex.task_id, ex.iteration), []).append(ex)
        else:
            out.append(([*ex.prompt, *ex.completion], len(ex.prompt), []))
    for group in groups.values():
        group.sort(key=lambda e: len(e.prompt))
        pending = list(group)
        while pending:
            trunk = pending[-1].prompt
            fits = [e for e in pending if e.prompt == trunk[: len(e.prompt)]]
            out.append((list(trunk), None, [(len(e.prompt), e.completion[0]) for e in fits]))
            pending = [e for e in pending if e not in fits]
    return out


def sft_dataset(examples: list[TrainExample], tokenizer: Any) -> Dataset:
    """Tokenized packed rows (``input_ids``, ``labels``, ``position_ids``, ``segment``): a demonstration
    is one sequence trained on every step; the corrections of one student trajectory are branches off
    its history in one sequence (see :func:`leap.students.prompting.pack_conversation`)."""
    from leap.students.prompting import pack_conversation

    if not examples:
        raise TrainingDataError("no training examples")
    rows = []
    for trunk, train_from, branches in _packed_groups(examples):
        seq = pack_conversation(tokenizer, trunk, train_from=train_from, branches=branches)
        rows.append(
            {
                "input_ids": seq.input_ids,
                "labels": seq.labels,
                "position_ids": seq.position_ids,
                "segment": seq.segment,
            }
        )
    return Dataset.from_list(rows)


def dpo_dataset(examples: list[TrainExample]) -> Dataset:
    """Preference rows (chosen = teacher's step, rejected = student's own step).

    Examples without ``rejected`` (demonstrations) or whose rejected step equals the chosen
    one (the teacher agreed with the student) carry no preference and are skipped.
    """
    rows = [
        {"prompt": _msgs(ex.prompt), "chosen": _msgs(ex.completion), "rejected": _msgs(ex.rejected)}
        for ex in examples
        if ex.rejected is not None and not _same(ex.rejected, ex.completion)
    ]
    if not rows:
        raise TrainingDataError(
            f"DPO needs examples with a `rejected` step that differs from the completion (teacher "
            f"corrections); none of the {len(examples)} examples has one. Use train.method: sft for "
            "demonstrations only"
        )
    return Dataset.from_list(rows)


def kto_dataset(examples: list[TrainExample], seed: int) -> Dataset:
    """Unpaired rows: each completion is desirable, each (different) rejected step undesirable.

    Shuffled here with ``seed``: TRL's KTO reads the data in order (its KL estimate pairs
    neighbours in a batch), so without shuffling a batch would hold one task's steps only.
    A whole-episode demonstration (its completion holds the observations as user turns) is left
    out: TRL's KTO scores every completion token, observations included. Like DPO, KTO then learns
    from the corrections; the demonstrations are in the adapter it starts from.
    """
    rows: list[dict[str, Any]] = []
    for ex in examples:
        if len(ex.completion) > 1:
            continue
        prompt = _msgs(ex.prompt)
        rows.append({"prompt": prompt, "completion": _msgs(ex.completion), "label": True})
        if ex.rejected is not None and not _same(ex.rejected, ex.completion):
            rows.append({"prompt": prompt, "completion": _msgs(ex.rejected), "label": False})
    if not rows:
        raise TrainingDataError(
            f"KTO needs single-step examples (teacher corrections); none of the {len(examples)} has one"
        )
    random.Random(seed).shuffle(rows)
    return Dataset.from_list(rows)


class PackedCollator:
    """Batches packed rows with the attention mask that keeps branches apart.

    A token attends to earlier tokens of the trunk (segment 0) and of its own branch; rows are
    right-padded. The 4D boolean mask goes to the model as is (Hugging Face models accept a
    prepared 4D mask), with the rows' own position ids.
    """

    def __init__(self, pad_token_id: int) -> None:
        self.pad = pad_token_id

    def __call__(self, rows: list[dict[str, Any]]) -> dict[str, Any]:
        import torch

        if len(rows) == 1 and not any(rows[0]["segment"]):
            # One unbranched row (a demonstration, one row per pass on a CPU): plain causal attention,
            # which SDPA runs without a mask (1.5x faster attention than the same mask given).
            r = rows[0]
            return {
                "input_ids": torch.tensor([r["input_ids"]]),
                "labels": torch.tensor([r["labels"]]),
                "position_ids": torch.tensor([r["position_ids"]]),
            }
        width = max(len(r["input_ids"]) for r in rows)
        n = len(rows)
        ids = torch.full((n, width), self.pad, dtype=torch.long)
        labels = torch.full((n, width), -100, dtype=torch.long)
        pos = torch.zeros((n, width), dtype=torch.long)
        seg = torch.full((n, width), -1, dtype=torch.long)  # -1: padding
        for i, r in enumerate(rows):
            k = len(r["input_ids"])
            ids[i, :k] = torch.tensor(r["input_ids"])
            labels[i, :k] = torch.tensor(r["labels"])
            pos[i, :k] = torch.tensor(r["position_ids"])
            seg[i, :k] = torch.tensor(r["segment"])
        causal = torch.ones(width, width, dtype=torch.bool).tril()
        same = seg[:, :, None] == seg[:, None, :]
        trunk = (seg == 0)[:, None, :]
        real = (seg >= 0)[:, None, :]
        mask = causal[None] & real & (trunk | same)
        # Padding queries attend to themselves only (a fully masked row would give NaN).
        mask |= torch.eye(width, dtype=torch.bool)[None] & (seg < 0)[:, :, None]
        return {"input_ids": ids, "labels": labels, "position_ids": pos, "attention_mask": mask[:, None]}


def truncate_rows(ds: Dataset, max_length: int) -> tuple[Dataset, int, float]:
    """Cut packed rows to ``max_length`` tokens (keeping the start): the rows, how many were cut, and
    the share of trained (labelled) tokens the cut dropped — the last steps of the longest
    trajectories, so a high share means late-episode corrections are not learnt."""
    labels = ds["labels"]
    cut = sum(len(x) > max_length for x in labels)
    if not cut:
        return ds, 0, 0.0
    trained = sum(sum(t != -100 for t in x) for x in labels)
    lost = sum(sum(t != -100 for t in x[max_length:]) for x in labels)
    keys = ("input_ids", "labels", "position_ids", "segment")
    return ds.map(lambda r: {k: r[k][:max_length] for k in keys}), cut, lost / max(trained, 1)
