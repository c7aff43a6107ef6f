"""QLoRA on a CUDA GPU: 4-bit (bitsandbytes nf4) base, LoRA trained with TRL, reloaded, generating.

Skipped without CUDA + bitsandbytes (CI has neither). On a GPU machine: `pytest -m gpu`.
"""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch

from leap.config import StudentParams, TrainParams
from leap.records import Message, TrainExample
from leap.students.generation import Generator
from leap.students.models import load_base_model, load_student
from leap.training import train_adapter
from leap.training.trainer import build_trainer

try:
    import bitsandbytes  # noqa: F401

    HAVE_BNB = True
except ImportError:
    HAVE_BNB = False

pytestmark = [
    pytest.mark.gpu,
    pytest.mark.skipif(not (torch.cuda.is_available() and HAVE_BNB), reason="needs CUDA and bitsandbytes"),
]


def _example(i: int) -> TrainExample:
    return TrainExample(
        prompt=[Message(role="user", content=f"Task: put the mug on shelf {i}")],
        completion=[Message(role="assistant", content=f"Reason: Shelf {i}.\nAction: put mug in shelf {i}")],
        rejected=[Message(role="assistant", content="Reason: Look first.\nAction: look")],
        source="correction",
        task_id=f"t{i}",
        iteration=1,
        step_index=i,
    )


EXAMPLES = [_example(i) for i in range(8)]


@pytest.fixture(scope="module")
def qstudent(tiny_model_dir: Path) -> StudentParams:
    return StudentParams(model=str(tiny_model_dir), quantization="4bit", max_new_tokens=16)


def _n_4bit(model: torch.nn.Module) -> int:
    import bitsandbytes as bnb

    return sum(isinstance(m, bnb.nn.Linear4bit) for m in model.modules())


def test_4bit_base_loads_on_the_gpu(qstudent: StudentParams) -> None:
    lm = load_base_model(qstudent.model, quantization="4bit", dtype=qstudent.dtype)
    assert _n_4bit(lm) == 2 * 7  # q, k, v, o, gate, up, down in each of the 2 layers
    assert next(lm.parameters()).device.type == "cuda"


def test_qlora_trainer_uses_checkpointing_and_bf16(qstudent: StudentParams, tmp_path: Path) -> None:
    trainer = build_trainer(
        EXAMPLES, qstudent, TrainParams(method="sft", epochs=1, batch_size=4), tmp_path, progress=False
    )
    assert trainer.args.gradient_checkpointing and trainer.args.per_device_train_batch_size == 4
    assert _n_4bit(trainer.model) == 14
    trainable = [n for n, p in trainer.model.named_parameters() if p.requires_grad]
    assert trainable and all("lora_" in n for n in trainable)


@pytest.mark.parametrize("method", ["sft", "dpo", "kto"])
def test_qlora_train_reload_generate(method: str, qstudent: StudentParams, tmp_path: Path) -> None:
    out = tmp_path / "adapter"
    train = TrainParams(method=method, epochs=2, batch_size=4, learning_rate=5e-3, max_length=128)
    m = train_adapter(EXAMPLES, qstudent, train, out, progress=False)
    assert math.isfinite(m["train_loss"]) and m["steps"] >= 2
    assert (out / "adapter_model.safetensors").is_file()
    model, tok = load_student(qstudent, out)  # not merged: LoRA runs beside the 4-bit weights
    assert _n_4bit(model) == 14
    gen = Generator(model, tok, max_new_tokens=8, batch_size=4)
    convs = [[Message(role="user", content=f"Task: put the mug on shelf {i}")] for i in range(4)]
    texts = gen.generate(convs)
    assert len(texts) == 4 and gen.stats.generated_tokens > 0
