"""TRL training of LoRA adapters (SFT/DPO/KTO) on a tiny random model."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch

from leap.config import StudentParams, TrainParams
from leap.records import Message, TrainExample
from leap.students.models import load_student
from leap.training import TrainingDataError, train_adapter
from leap.training.data import select_examples
from leap.training.trainer import TRAIN_META, build_trainer, micro_batching, sort_target_modules

PROMPT_TEXT = "Task: put the mug on shelf {i}"
COMPLETION = "Reason: The mug goes on the shelf.\nAction: put mug 1 in/on shelf {i}"


def _example(i: int, *, rejected: bool = True, iteration: int = 1) -> TrainExample:
    return TrainExample(
        prompt=[
            Message(role="system", content="You are an agent."),
            Message(role="user", content=PROMPT_TEXT.format(i=i)),
        ],
        completion=[Message(role="assistant", content=COMPLETION.format(i=i))],
        rejected=[Message(role="assistant", content="Reason: Look first.\nAction: look")]
        if rejected
        else None,
        source="correction" if rejected else "demo",
        task_id=f"t{i}",
        iteration=iteration,
        step_index=i,
    )


EXAMPLES = [_example(i) for i in range(4)]


def _train(method: str, **kw: object) -> TrainParams:
    base = {"method": method, "epochs": 1, "batch_size": 2, "learning_rate": 5e-3, "max_length": 256}
    return TrainParams(**(base | kw))  # type: ignore[arg-type]


def _logits(model: object, tok: object) -> torch.Tensor:
    enc = tok("<|im_start|>user\nTask: put the mug<|im_end|>\n", return_tensors="pt")  # type: ignore[operator]
    dev = next(model.parameters()).device  # type: ignore[attr-defined]
    with torch.inference_mode():
        return model(**{k: v.to(dev) for k, v in enc.items()}).logits.float().cpu()  # type: ignore[operator]


@pytest.fixture(scope="module")
def student(tiny_model_dir: Path) -> StudentParams:
    return StudentParams(model=str(tiny_model_dir))


@pytest.fixture(scope="module")
def base_logits(student: StudentParams) -> torch.Tensor:
    return _logits(*load_student(student))


def test_sft_masks_the_prompt(student: StudentParams, tmp_path: Path) -> None:
    trainer = build_trainer(EXAMPLES, student, _train("sft"), tmp_path, progress=False)
    assert not trainer.args.gradient_checkpointing  # TRL turns it on by default; slow on CPU
    tok = trainer.processing_class
    row = trainer.train_dataset[0]
    ids, labels = row["input_ids"], row["labels"]
    n_masked = sum(lab == -100 for lab in labels)
    assert 0 < n_masked < len(ids)
    # Masked tokens are exactly a prefix (the prompt) and the rest are trained on as is.
    assert all(lab == -100 for lab in labels[:n_masked])
    assert labels[n_masked:] == ids[n_masked:]
    prompt_text = tok.decode(ids[:n_masked])
    assert PROMPT_TEXT.format(i=0) in prompt_text and prompt_text.endswith("<|im_start|>assistant\n")
    trained = tok.decode(ids[n_masked:])
    assert trained.startswith(COMPLETION.format(i=0))
    assert "<|im_end|>" in trained  # the model learns to end its turn


@pytest.mark.parametrize("method", ["sft", "dpo", "kto"])
def test_train_save_reload(
    method: str, student: StudentParams, base_logits: torch.Tensor, tmp_path: Path
) -> None:
    out = tmp_path / "adapter"
    metrics = train_adapter(EXAMPLES, student, _train(method), out, progress=False)
    assert metrics["method"] == method
    assert metrics["n_examples"] >= 4 and metrics["n_tokens"] > 0 and metrics["steps"] >= 2
    assert math.isfinite(metrics["train_loss"]) and metrics["tokens_per_s"] > 0
    assert [s for s, _ in metrics["loss_history"]] == list(range(1, metrics["steps"] + 1))
    assert (out / "adapter_config.json").is_file() and (out / "adapter_model.safetensors").is_file()
    assert (out / "tokenizer_config.json").is_file()
    assert json.loads((out / TRAIN_META).read_text())["train"]["method"] == method
    assert not list(tmp_path.glob(".adapter*"))  # no temp dirs left behind
    for merge in (True, False):
        model, tok = load_student(student, out, merge=merge)
        assert tok.padding_side == "left"
        assert not torch.allclose(_logits(model, tok), base_logits, atol=1e-5)  # the adapter acts


def test_continue_from_previous_adapter(student: StudentParams, tmp_path: Path) -> None:
    first = tmp_path / "iter_1"
    train_adapter(EXAMPLES, student, _train("sft"), first, progress=False)
    second = tmp_path / "iter_2"
    m = train_adapter(EXAMPLES, student, _train("dpo"), second, init_adapter=first, progress=False)
    # DPO's reference is the previous adapter: at step 1 policy == reference, so the loss is ln 2.
    assert m["loss_history"][0][1] == pytest.approx(math.log(2), abs=1e-4)
    assert m["init_adapter"] == str(first)
    from safetensors.torch import load_file

    a = load_file(first / "adapter_model.safetensors")
    b = load_file(second / "adapter_model.safetensors")
    assert a.keys() == b.keys()  # only the trained adapter is saved (no "ref" copy)
    assert any(not torch.equal(a[k], b[k]) for k in a)


def test_dpo_sft_weight_adds_the_chosen_steps_nll(student: StudentParams, tmp_path: Path) -> None:
    """RPO: at step 1 policy == reference, so DPO's term is ln 2 and the rest is w x the chosen NLL."""
    first = tmp_path / "iter_1"
    train_adapter(EXAMPLES, student, _train("sft"), first, progress=False)
    losses = [
        train_adapter(
            EXAMPLES,
            student,
            _train("dpo", dpo_sft_weight=w),
            tmp_path / f"w{w}",
            init_adapter=first,
            progress=False,
        )["loss_history"][0][1]
        for w in (1.0, 2.0)
    ]
    nll = losses[0] - math.log(2)
    assert nll > 0.05  # the SFT term is there
    assert losses[1] - math.log(2) == pytest.approx(2 * nll, rel=1e-3)  # and weighted


def test_the_same_data_writes_the_same_adapter_folder(student: StudentParams, tmp_path: Path) -> None:
    """DVC hashes the folder: if a retrain wrote other bytes, every later stage would run again."""
    folders = [tmp_path / "a", tmp_path / "b"]
    for out in folders:
        train_adapter(EXAMPLES, student, _train("sft"), out, progress=False)
    files = sorted(f.name for f in folders[0].iterdir())
    assert files == sorted(f.name for f in folders[1].iterdir()) and TRAIN_META in files
    for name in files:
        assert (folders[0] / name).read_bytes() == (folders[1] / name).read_bytes(), name
    # PEFT lists "all-linear"'s modules from a set, in the order of the process's string hashing.
    config = folders[0] / "adapter_config.json"
    data = json.loads(config.read_text())
    data["target_modules"] = sorted(data["target_modules"], reverse=True)
    config.write_text(json.dumps(data))
    sort_target_modules(config)
    assert json.loads(config.read_text())["target_modules"] == sorted(data["target_modules"])


def test_dpo_without_rejected_is_a_clear_error(student: StudentParams, tmp_path: Path) -> None:
    out = tmp_path / "adapter"
    out.mkdir()
    (out / "keep.txt").write_text("old")
    demos = [_example(i, rejected=False) for i in range(3)]
    with pytest.raises(TrainingDataError, match="DPO needs examples with a `rejected`"):
        train_adapter(demos, student, _train("dpo"), out, progress=False)
    assert (out / "keep.txt").read_text() == "old"  # a failed run leaves the old output alone


def test_kto_uses_rejected_as_undesirable(student: StudentParams, tmp_path: Path) -> None:
    turns = [
        *_example(2).completion,
        Message(role="user", content="You see a shelf 3."),
        *_example(3).completion,
    ]
    demo = _example(2, rejected=False).model_copy(update={"completion": turns})
    mixed = [_example(0), _example(1, rejected=False), demo]
    trainer = build_trainer(mixed, student, _train("kto", batch_size=1), tmp_path, progress=False)
    labels = sorted(trainer.train_dataset["label"])
    assert labels == [False, True, True]  # the whole-episode demonstration is not a KTO row
    assert trainer.args.per_device_train_batch_size == 2  # KTO's KL estimate needs two rows


def test_max_examples_keeps_newest() -> None:
    exs = [_example(i, iteration=it) for i, it in enumerate([2, 0, 1, 2, 0])]
    kept = select_examples(exs, 3)
    assert [e.step_index for e in kept] == [0, 2, 3]
    assert select_examples(exs, None) == exs


def test_micro_batching_keeps_the_effective_batch() -> None:
    assert micro_batching("sft", 8, 1, cuda=False) == (1, 8)  # CPU: one row at a time, accumulate
    assert micro_batching("dpo", 4, 2, cuda=False) == (1, 8)
    assert micro_batching("kto", 8, 1, cuda=False) == (2, 4)  # KTO's KL estimate needs two rows
    assert micro_batching("sft", 8, 1, cuda=True) == (8, 1)
    assert micro_batching("kto", 1, 1, cuda=True) == (2, 1)


def test_progress_bar_shows_the_loss_without_printing_log_dicts(
    student: StudentParams, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    m = train_adapter(EXAMPLES, student, _train("sft"), tmp_path / "adapter", progress=True)
    out, err = capsys.readouterr()
    assert f"loss={m['loss_history'][-1][1]:.4g}" in err
    assert "{'loss'" not in out + err and "train_runtime" not in out + err
