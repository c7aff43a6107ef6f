"""Measure the student's costs: model load, generation (batched vs one at a time, merged
vs unmerged adapter) and LoRA training throughput.

    leap bench [--model smollm2-135m-instruct] [--n-train 50] [--n-gen 16] [--sections load,gen]

Prints one JSON line per section (wall and CPU seconds: the CPU figure is
less sensitive to other processes sharing the machine). Prompts are realistic student
prompts (ALFWorld-like, ~300 tokens).
"""

from __future__ import annotations

import json
import tempfile
import time
from pathlib import Path
from typing import Any

import torch

from leap.agent import StepContext
from leap.config import StudentParams, TrainParams
from leap.prompts.parsing import format_completion
from leap.records import Message, Step, StepLabel, Task, TrainExample
from leap.students.generation import GenerationStats, Generator
from leap.students.models import load_base_model, load_student, load_tokenizer
from leap.students.prompting import build_messages

_ROOM = (
    "You are in the middle of a room. Looking quickly around you, you see a cabinet 4, a cabinet 3, "
    "a cabinet 2, a cabinet 1, a coffeemachine 1, a countertop 2, a countertop 1, a drawer 3, a drawer 2, "
    "a drawer 1, a fridge 1, a garbagecan 1, a microwave 1, a shelf 3, a shelf 2, a shelf 1, a sinkbasin 1, "
    "a stoveburner 4, a stoveburner 3, a stoveburner 2, a stoveburner 1, and a toaster 1."
)


def sample_context(i: int) -> StepContext:
    task = Task(
        task_id=f"bench-{i}",
        env="alfworld",
        split="train",
        category="pick_and_place_simple",
        instruction=f"Your task is to: put a mug {i % 3 + 1} in cabinet {i % 4 + 1}.",
    )
    history = [
        Step(observation=_ROOM, reason="A mug is often on a countertop.", action="go to countertop 1"),
        Step(
            observation="You arrive at countertop 1. On the countertop 1, you see a bread 1, a knife 1.",
            reason="No mug here; the shelves may hold one.",
            action=f"go to shelf {i % 3 + 1}",
        ),
        Step(
            observation=f"You arrive at shelf {i % 3 + 1}. On the shelf, you see a vase 2.",
            reason="Cabinets often store mugs.",
            action="go to cabinet 1",
        ),
    ][: 1 + i % 3]
    return StepContext(
        task=task,
        history=history,
        observation=f"You arrive at cabinet {i % 4 + 1}. The cabinet is closed.",
        admissible_actions=None,
    )


def sample_examples(n: int, params: StudentParams) -> list[TrainExample]:
    out = []
    for i in range(n):
        msgs = build_messages(sample_context(i), params)
        label = StepLabel(
            reason="The cabinet is closed; I should open it.", action=f"open cabinet {i % 4 + 1}"
        )
        out.append(
            TrainExample(
                prompt=msgs,
                completion=[Message(role="assistant", content=format_completion(label))],
                rejected=[Message(role="assistant", content="Reason: Look around.\nAction: look")],
                source="correction",
                task_id=f"bench-{i}",
                iteration=1,
                step_index=i,
            )
        )
    return out


def _emit(name: str, data: dict[str, Any]) -> None:
    print(json.dumps({"section": name, **data}), flush=True)


def _gen_bench(model: Any, tok: Any, prompts: list[list[Message]], batch_size: int, max_new: int) -> dict:
    gen = Generator(model, tok, max_new_tokens=max_new, batch_size=batch_size)
    gen.generate(prompts[:1])  # warm-up
    gen.stats = GenerationStats()
    t0, c0 = time.perf_counter(), time.process_time()
    texts = gen.generate(prompts)
    wall, cpu = time.perf_counter() - t0, time.process_time() - c0
    s = gen.stats
    return {
        "batch_size": batch_size,
        "sequences": s.sequences,
        "avg_prompt_tokens": round(s.prompt_tokens / s.sequences, 1),
        "avg_new_tokens": round(s.generated_tokens / s.sequences, 1),
        "seconds": round(wall, 2),
        "cpu_seconds": round(cpu, 2),
        "s_per_sequence": round(wall / s.sequences, 3),
        "new_tokens_per_s": round(s.generated_tokens / wall, 1),
        "sample": texts[0],
    }


def run(
    model: str = "smollm2-135m-instruct",
    n_train: int = 50,
    n_gen: int = 16,
    batch_size: int = 8,
    max_new_tokens: int = 48,
    sections: set[str] | None = None,
) -> None:
    """Print one JSON line per section of ``sections`` (load, gen, train, adapter; default all)."""
    sections = sections or {"load", "gen", "train", "adapter"}
    params = StudentParams(model=model)
    print(json.dumps({"torch_threads": torch.get_num_threads()}), flush=True)

    if "load" in sections:
        t0, c0 = time.perf_counter(), time.process_time()
        load_tokenizer(params.model, params.gguf_file)
        t1 = time.perf_counter()
        load_base_model(params.model, params.gguf_file)
        t2 = time.perf_counter()
        _emit(
            "load",
            {
                "tokenizer_s": round(t1 - t0, 2),
                "model_s": round(t2 - t1, 2),
                "cpu_s": round(time.process_time() - c0, 2),
            },
        )
    prompts = [build_messages(sample_context(i), params) for i in range(n_gen)]
    if "gen" in sections:
        model, tok = load_student(params)
        _emit("gen_base_batched", _gen_bench(model, tok, prompts, batch_size, max_new_tokens))
        _emit("gen_base_single", _gen_bench(model, tok, prompts[:8], 1, max_new_tokens))
    with tempfile.TemporaryDirectory() as tmp:
        from leap.training import train_adapter

        adapter = Path(tmp) / "adapter"
        if "train" in sections or "adapter" in sections:
            c0 = time.process_time()
            m = train_adapter(
                sample_examples(n_train, params),
                params,
                TrainParams(epochs=1, batch_size=8),
                adapter,
                progress=False,
            )
            m["cpu_s"] = round(time.process_time() - c0, 2)
            _emit("train_sft", m)
        if "adapter" in sections:
            for merge in (True, False):
                model, tok = load_student(params, adapter, merge=merge)
                key = "gen_adapter_merged" if merge else "gen_adapter_unmerged"
                _emit(key, _gen_bench(model, tok, prompts, batch_size, max_new_tokens))
                key = key + "_single"
                _emit(key, _gen_bench(model, tok, prompts[:8], 1, max_new_tokens))
