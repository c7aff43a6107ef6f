"""Train a LoRA adapter on TrainExamples with TRL (SFT, DPO or KTO).

The adapter is trained in a scratch directory and renamed onto ``out_dir`` only when the
whole run succeeded, so an interrupted stage never leaves a half-written adapter.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import logging
import math
import os
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import torch

from leap.config import StudentParams, TrainParams
from leap.io import atomic_path, write_json
from leap.records import TrainExample
from leap.students.models import (
    StudentLoadError,
    is_adapter_dir,
    load_base_model,
    load_tokenizer,
    lora_config,
    resolve_dtype,
)
from leap.training.data import (
    PackedCollator,
    TrainingDataError,
    dpo_dataset,
    kto_dataset,
    select_examples,
    sft_dataset,
    truncate_rows,
)

log = logging.getLogger(__name__)

TRAIN_META = "leap_train.json"  # written beside the adapter: metrics and the parameters that made it
# The adapter folder is a DVC output later stages depend on: the same data must write the same bytes
# (the weights do, at a fixed thread count), so that DVC's run cache restores what follows a retrain.
# Timings stay out of it (they are in the stage's metrics file).
_NOT_IN_META = ("loss_history", "seconds", "tokens_per_s")


def _checkpointing_arg() -> str:
    # transformers 5 renamed gradient_checkpointing (deprecated alias) to activation_checkpointing.
    from transformers import TrainingArguments

    names = {f.name for f in dataclasses.fields(TrainingArguments)}
    return "activation_checkpointing" if "activation_checkpointing" in names else "gradient_checkpointing"


_CHECKPOINTING_ARG = _checkpointing_arg()


@contextlib.contextmanager
def _datasets_progress(enabled: bool) -> Iterator[None]:
    import datasets

    was_enabled = datasets.is_progress_bar_enabled()
    if not enabled:
        datasets.disable_progress_bars()
    try:
        yield
    finally:
        if was_enabled:
            datasets.enable_progress_bars()


def micro_batching(
    method: str, batch_size: int, grad_accum: int, *, cuda: bool, cpu_rows: int = 1, processes: int = 1
) -> tuple[int, int]:
    """(per-device batch, accumulation steps) for an effective batch of ``batch_size * grad_accum``
    (``processes`` data-parallel processes each take their share of the accumulation steps).

    On CPU, ``cpu_rows`` rows (default 1) go through at a time and gradients accumulate: one row is
    padding-free and measured as fast as batch 8 with a third of the memory (SmolLM2, ~420-token
    rows: 171 vs 114 tokens/s, 3.4 vs 9.4 GB). TRL's KTO needs two rows per batch for its KL estimate.
    """
    floor = 2 if method == "kto" else 1
    if cuda:
        return max(batch_size, floor), max(1, math.ceil(grad_accum / processes))
    rows = max(min(batch_size, cpu_rows), floor)  # KTO: two rows even when batch_size is 1
    return rows, max(1, math.ceil(grad_accum * max(1, math.ceil(batch_size / rows)) / processes))


def _trl_args(method: str, student: StudentParams, train: TrainParams, work_dir: Path, progress: bool) -> Any:
    from trl import DPOConfig, KTOConfig, SFTConfig

    cuda = torch.cuda.is_available()
    dtype = resolve_dtype(student.dtype)
    batch_size, grad_accum = micro_batching(
        method,
        train.batch_size,
        train.grad_accum,
        cuda=cuda,
        cpu_rows=train.cpu_rows_per_pass,
        processes=int(os.environ.get("WORLD_SIZE", "1")),  # set by accelerate launch / torchrun
    )
    common: dict[str, Any] = {
        "output_dir": str(work_dir),
        "num_train_epochs": train.epochs,
        "learning_rate": train.learning_rate,
        "per_device_train_batch_size": batch_size,
        "gradient_accumulation_steps": grad_accum,
        "seed": train.seed,
        "data_seed": train.seed,
        "max_length": train.max_length,
        "logging_steps": 1,
        "save_strategy": "no",
        "report_to": "none",  # the lead's stage logs to MLflow
        "disable_tqdm": not progress,
        "use_cpu": not cuda,
        # bf16 autocast on a CPU too (with AMX): the LoRA branches then run in bf16 beside the bf16
        # base weights while their fp32 master weights stay in the optimizer (see _lora_in_model_dtype).
        "bf16": dtype == torch.bfloat16,
        "fp16": cuda and dtype == torch.float16,
        "dataloader_num_workers": 0,
    }
    # TRL turns activation checkpointing on by default; it saves memory at ~30% more compute,
    # worth it for QLoRA on a GPU, not for a small model on CPU.
    common[_CHECKPOINTING_ARG] = student.quantization == "4bit"
    if method == "sft":
        # Rows come tokenized and packed (leap.training.data.sft_dataset) with their own collator.
        return SFTConfig(
            **common,
            packing=False,
            remove_unused_columns=False,
            dataset_kwargs={"skip_prepare_dataset": True},
        )
    if method == "dpo":
        # RPO: the chosen step's likelihood is also pulled up, so the pair's margin cannot grow by
        # pushing both steps down (what DPO alone did here: RESULTS.md, the update study).
        rpo = {"loss_type": ["sigmoid", "sft"], "loss_weights": [1.0, train.dpo_sft_weight]}
        return DPOConfig(**common, beta=train.beta, **(rpo if train.dpo_sft_weight else {}))
    if method == "kto":
        return KTOConfig(**common, beta=train.beta)
    raise ValueError(f"unknown training method {method!r} (expected sft, dpo or kto)")


def _score_labelled_positions_only() -> None:
    """TRL's fused LM head scores only the positions that have a label on GPUs, but every position on a
    CPU. With loss on the answers only (most tokens are prompt), scoring the labelled ones alone is
    10-30% faster on a CPU and gives the same loss; TRL keys that choice on one helper, set here."""
    import trl.trainer.utils as trl_utils

    if hasattr(trl_utils, "_use_triton"):
        original = trl_utils._use_triton
        trl_utils._use_triton = lambda device: device.type == "cpu" or original(device)


def _lora_in_model_dtype(model: Any) -> None:
    """Under bf16 autocast, let each LoRA branch take its input as it comes (bf16) instead of PEFT's
    cast to the adapter's fp32: the branch then runs in bf16 and adds a bf16 result to the base
    layer's, while its weights and their optimizer state stay fp32. On a CPU with AMX the casts and
    fp32 sums were a quarter of a training step (SmolLM2-135M: 240 against 205 tokens/s)."""
    for module in model.modules():
        if hasattr(module, "cast_input_dtype_enabled"):
            module.cast_input_dtype_enabled = False


def _dataset(method: str, examples: list[TrainExample], seed: int, tokenizer: Any) -> Any:
    if method == "sft":
        return sft_dataset(examples, tokenizer)
    if method == "dpo":
        return dpo_dataset(examples)
    return kto_dataset(examples, seed)


def _loss_in_bar() -> Any:
    from transformers.trainer_callback import ProgressCallback

    class LossInBar(ProgressCallback):
        """The training bar shows the latest loss instead of printing every log dict on a line
        (the full history still goes to MLflow and the stage's metrics file)."""

        def on_log(self, args: Any, state: Any, control: Any, logs: dict | None = None, **kw: Any) -> None:
            if state.is_world_process_zero and self.training_bar is not None and logs and "loss" in logs:
                self.training_bar.set_postfix(loss=f"{float(logs['loss']):.4g}", refresh=False)

    return LossInBar


def build_trainer(
    examples: list[TrainExample],
    student: StudentParams,
    train: TrainParams,
    work_dir: Path,
    *,
    init_adapter: Path | None = None,
    progress: bool = True,
    method: str | None = None,
) -> Any:
    """A ready TRL trainer (dataset tokenised, LoRA attached) for ``method`` (default ``train.method``)."""
    from peft import PeftModel
    from transformers import PrinterCallback, ProgressCallback, set_seed
    from trl import DPOTrainer, KTOTrainer, SFTTrainer

    method = method or train.method  # given: train.method is not read (behaviour cloning is SFT)
    examples = select_examples(examples, train.max_examples)
    tokenizer = load_tokenizer(student.model, student.gguf_file)
    dataset = _dataset(method, examples, train.seed, tokenizer)
    args = _trl_args(method, student, train, work_dir, progress)
    set_seed(train.seed)  # LoRA's initialisation draws random numbers before the Trainer seeds

    model = load_base_model(
        student.model,
        student.gguf_file,
        quantization=student.quantization,
        dtype=student.dtype,
        training=True,
    )
    model.config.use_cache = False
    peft_config = None
    if init_adapter is not None:
        if not is_adapter_dir(init_adapter):
            raise StudentLoadError(
                f"init adapter {init_adapter} is not a PEFT adapter (no adapter_config.json)"
            )
        model = PeftModel.from_pretrained(model, str(init_adapter), is_trainable=True)
    else:
        peft_config = lora_config(student.lora)

    cls = {"sft": SFTTrainer, "dpo": DPOTrainer, "kto": KTOTrainer}[method]
    extra: dict[str, Any] = {}
    if method == "sft":
        dataset, n_cut, lost = truncate_rows(dataset, train.max_length)
        if n_cut:
            log.warning(
                "%d training sequences were cut to train.max_length=%d tokens, dropping %.1f%% of the "
                "trained tokens (raise train.max_length to keep them)",
                n_cut,
                train.max_length,
                100 * lost,
            )
        extra["data_collator"] = PackedCollator(tokenizer.pad_token_id)
        _score_labelled_positions_only()
    with _datasets_progress(progress):
        trainer = cls(
            model=model,
            args=args,
            train_dataset=dataset,
            processing_class=tokenizer,
            peft_config=peft_config,
            **extra,
        )
    if args.bf16 and student.quantization == "none":
        _lora_in_model_dtype(trainer.model)
    if progress:
        trainer.remove_callback(ProgressCallback)
        trainer.add_callback(_loss_in_bar())
    else:
        trainer.remove_callback(PrinterCallback)
    if len(trainer.train_dataset) == 0:
        raise TrainingDataError(
            f"no example fits train.max_length={train.max_length} tokens (the prompt alone is longer); "
            "raise max_length or shorten the prompt (student.max_observation_chars)"
        )
    trainer.leap_n_input = len(examples)
    return trainer


def _count_tokens(method: str, ds: Any) -> int:
    cols = set(ds.column_names)

    def total(col: str) -> int:
        return sum(len(x) for x in ds[col]) if col in cols else 0

    if "input_ids" in cols:  # SFT: one prompt+completion sequence per row
        return total("input_ids")
    if method == "dpo":  # the prompt is run twice (with the chosen and with the rejected step)
        return 2 * total("prompt_ids") + total("chosen_ids") + total("rejected_ids")
    return total("prompt_ids") + total("completion_ids")


def train_adapter(
    examples: list[TrainExample],
    student: StudentParams,
    train: TrainParams,
    out_dir: Path,
    init_adapter: Path | None = None,
    progress: bool = True,
    method: str | None = None,
) -> dict[str, Any]:
    """Train a LoRA adapter and save it (PEFT format + tokenizer) atomically to ``out_dir``.

    ``method`` overrides ``train.method`` (which is then not read: iteration 0 is always SFT, so
    behaviour cloning does not depend on the update method of later iterations).
    ``init_adapter`` continues training an earlier adapter (``train.init_from == "previous"``);
    for DPO/KTO it is also the frozen reference policy. Returns metrics: method, train_loss,
    n_examples (rows trained on), n_input_examples, n_tokens (per epoch), seconds,
    tokens_per_s, steps and loss_history [(step, loss)].
    """
    out_dir = Path(out_dir)
    method = method or train.method
    with tempfile.TemporaryDirectory(prefix="leap-train-") as work:
        trainer = build_trainer(
            examples, student, train, Path(work), init_adapter=init_adapter, progress=progress, method=method
        )
        n_tokens = _count_tokens(method, trainer.train_dataset)
        t0 = time.perf_counter()
        result = trainer.train()
        seconds = time.perf_counter() - t0
        history = [(int(h["step"]), float(h["loss"])) for h in trainer.state.log_history if "loss" in h]
        metrics: dict[str, Any] = {
            "method": method,
            "train_loss": float(result.training_loss),
            "n_examples": len(trainer.train_dataset),
            "n_input_examples": trainer.leap_n_input,
            "n_tokens": n_tokens,
            "epochs": train.epochs,
            "steps": int(trainer.state.global_step),
            "seconds": round(seconds, 3),
            "tokens_per_s": round(n_tokens * train.epochs / seconds, 2) if seconds > 0 else 0.0,
            "loss_history": history,
            "init_adapter": str(init_adapter) if init_adapter else None,
        }
        model = trainer.accelerator.unwrap_model(trainer.model)
        tokenizer = trainer.processing_class
        trainer.accelerator.wait_for_everyone()
        if not trainer.accelerator.is_main_process:  # under a launcher, one process saves
            return metrics
        with atomic_path(out_dir) as tmp:
            # Only the trained adapter: DPO/KTO add a frozen "ref" copy when continuing one.
            model.save_pretrained(str(tmp), selected_adapters=["default"])
            sort_target_modules(tmp / "adapter_config.json")
            tokenizer.padding_side = "left"  # ready for batched generation when reloaded
            tokenizer.save_pretrained(str(tmp))
            write_json(
                tmp / TRAIN_META,
                {
                    "metrics": {k: v for k, v in metrics.items() if k not in _NOT_IN_META},
                    "student": student.model_dump(mode="json"),
                    "train": {**train.model_dump(mode="json"), "method": method},
                },
            )
    return metrics


def sort_target_modules(config: Path) -> None:
    """PEFT writes the ``target_modules`` that "all-linear" resolves to from a set, in an order that
    changes with each process's string hashing; sorted, the same adapter writes the same file."""
    data = json.loads(config.read_text(encoding="utf-8"))
    if isinstance(data.get("target_modules"), list):
        data["target_modules"] = sorted(data["target_modules"])
        write_json(config, data)
