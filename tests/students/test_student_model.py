"""Loading, batched generation and the student policy, on a tiny random model."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from leap.agent import Policy, PolicyOutput, StepContext, cycle_actions
from leap.config import StudentParams
from leap.metrics import cycles, summarize
from leap.records import Step, Task, Trajectory
from leap.students import models
from leap.students.engine import Completion
from leap.students.generation import ActionLineStop, Generator
from leap.students.models import StudentLoadError, load_student, resolve_dtype, resolve_model
from leap.students.policy import StudentPolicy


@pytest.fixture(scope="module")
def tiny(tiny_model_dir: Path) -> tuple[object, object]:
    return load_student(StudentParams(model=str(tiny_model_dir)))


def _conv(text: str) -> list[dict[str, str]]:
    return [{"role": "system", "content": "You act."}, {"role": "user", "content": text}]


def _ctx(obs: str, admissible: list[str] | None = None) -> StepContext:
    task = Task(task_id="t", env="alfworld", split="train", category="c", instruction="do the thing")
    return StepContext(task=task, history=[], observation=obs, admissible_actions=admissible)


def test_tokenizer_ready_for_batched_generation(tiny: tuple) -> None:
    _, tok = tiny
    assert tok.padding_side == "left"
    assert tok.pad_token is not None


def test_batched_generation_matches_one_at_a_time(tiny: tuple) -> None:
    model, tok = tiny
    prompts = [_conv("Task: short"), _conv("Task: a much longer prompt " * 6), _conv("Task: medium one here")]
    batched = Generator(model, tok, max_new_tokens=12, batch_size=8, stop_after_action=False).generate(
        prompts
    )
    single = [
        Generator(model, tok, max_new_tokens=12, batch_size=1, stop_after_action=False).generate([p])[0]
        for p in prompts
    ]
    assert batched == single  # left padding + length sorting keep each answer with its prompt
    assert len(set(single)) > 1  # the tiny model's answers depend on the prompt (else the test is void)


def test_generator_records_stats_and_handles_empty(tiny: tuple) -> None:
    model, tok = tiny
    gen = Generator(model, tok, max_new_tokens=5, batch_size=2)
    assert gen.generate([]) == []
    gen.generate([_conv("a"), _conv("b"), _conv("c")])
    assert gen.stats.sequences == 3 and gen.stats.batches == 2
    assert 0 < gen.stats.generated_tokens <= 15


def test_action_line_stop(tiny: tuple) -> None:
    _, tok = tiny
    prompt = tok("<|im_start|>assistant\n", add_special_tokens=False)["input_ids"]

    def ids(text: str) -> torch.Tensor:
        return torch.tensor([prompt + tok(text, add_special_tokens=False)["input_ids"]])

    stop = ActionLineStop(tok, len(prompt))
    assert stop(ids("Reason: x\nAction: go to shelf 1\n"), None).tolist() == [True]
    assert stop(ids("Reason: x\nAction: go to shelf 1"), None).tolist() == [False]
    assert stop(ids("Reason: x\nAction:\n"), None).tolist() == [False]  # no action written yet


def test_student_policy_never_raises_on_garbage(tiny: tuple) -> None:
    model, tok = tiny
    params = StudentParams(max_new_tokens=8, batch_size=2)
    policy = StudentPolicy(params, None, "student:test", model=model, tokenizer=tok)
    assert isinstance(policy, Policy) and policy.privileged is False
    outs = policy.act([_ctx("You see a shelf."), _ctx("x" * 900, ["look"]), _ctx("")])
    assert len(outs) == 3 and all(isinstance(o, PolicyOutput) for o in outs)
    for o in outs:
        assert o.raw_output is not None
        assert o.parse_ok or o.action == ""


def test_student_policy_parses_and_repairs(tiny: tuple, monkeypatch: pytest.MonkeyPatch) -> None:
    model, tok = tiny
    params = StudentParams(constrained_actions=False)  # free-text actions: the snapper repairs them
    policy = StudentPolicy(params, None, "student:test", model=model, tokenizer=tok)
    # the engine returns what follows the forced "Reason:" prefix
    answers = [" fridge.\nAction: go to fridge", " no format at all", " r\nAction: look"]

    def fake(requests: list) -> list[Completion]:
        return [Completion(text=a, token_ids=[], prefilled=0, cached=0) for a in answers[: len(requests)]]

    monkeypatch.setattr(policy.engine, "generate", fake)
    outs = policy.act([_ctx("a", ["go to fridge 1", "look"]), _ctx("b", ["look"]), _ctx("c")])
    assert (outs[0].action, outs[0].parse_ok, outs[0].meta) == (
        "go to fridge 1",
        True,
        {"repaired": True, "original_action": "go to fridge"},
    )
    assert (outs[1].action, outs[1].parse_ok) == ("", False)
    assert (outs[2].reason, outs[2].action, outs[2].meta) == ("r", "look", {})


def test_load_errors_are_clear(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(StudentLoadError, match="does not exist"):
        resolve_model(str(tmp_path / "missing"))
    with pytest.raises(StudentLoadError, match="not a PEFT adapter"):
        load_student(StudentParams(model=str(tmp_path)), adapter_dir=tmp_path)
    with pytest.raises(StudentLoadError, match="cannot load"):
        load_student(StudentParams(model=str(tmp_path)))  # a directory without a model
    monkeypatch.setitem(models.BUNDLED_MODELS, "fake-alias", ("no-such-dist-xyz", "x.gguf"))
    with pytest.raises(StudentLoadError, match="no-such-dist-xyz"):
        resolve_model("fake-alias")


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the CPU-only error")
def test_4bit_needs_cuda(tiny_model_dir: Path) -> None:
    with pytest.raises(StudentLoadError, match="4bit QLoRA needs a CUDA GPU"):
        load_student(StudentParams(model=str(tiny_model_dir), quantization="4bit"))


def test_dtype_auto_on_cpu_is_bfloat16_only_with_amx(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setenv("LEAP_CPU_BF16", "0")
    assert resolve_dtype("auto") == torch.float32
    monkeypatch.setenv("LEAP_CPU_BF16", "1")
    assert resolve_dtype("auto") == torch.bfloat16
    monkeypatch.delenv("LEAP_CPU_BF16")
    assert resolve_dtype("auto") == (torch.bfloat16 if models.cpu_has_fast_bf16() else torch.float32)
    assert resolve_dtype("bfloat16") == torch.bfloat16


def test_bundled_alias_resolves_to_the_packaged_gguf() -> None:
    res = resolve_model("smollm2-135m-instruct")
    assert res.local and res.gguf_file == "SmolLM2-135M-Instruct.Q4_1.gguf"
    assert (Path(res.name_or_path) / res.gguf_file).is_file()


def test_torch_threads_knob(monkeypatch: pytest.MonkeyPatch) -> None:
    before = torch.get_num_threads()
    try:
        monkeypatch.setenv("LEAP_TORCH_THREADS", "1")
        assert models.configure_torch_threads() == 1 and torch.get_num_threads() == 1
        monkeypatch.setenv("LEAP_TORCH_THREADS", "many")
        with pytest.raises(StudentLoadError, match="LEAP_TORCH_THREADS"):
            models.configure_torch_threads()
    finally:
        torch.set_num_threads(before)


def _step(obs: str, action: str, valid: bool = True) -> Step:
    return Step(observation=obs, reason="r", action=action, valid=valid)


# go to A, go to B, go to A: back at A after going to A, where it went to B before
_OSCILLATION = [
    _step("start", "go to shelf 1"),
    _step("At shelf 1.", "go to shelf 2"),
    _step("At shelf 2.", "go to shelf 1"),
]


def test_cycle_actions_are_choices_already_made_in_the_same_situation() -> None:
    assert cycle_actions(_OSCILLATION, "At shelf 1.") == ["go to shelf 2"]
    assert cycle_actions(_OSCILLATION, "At shelf 1. A mug 1 is here now.") == []  # the room changed
    assert cycle_actions(_OSCILLATION[:2], "At shelf 2.") == []  # first time at shelf 2
    assert cycle_actions([], "start") == []
    # latching: the same action twice and the same observation -> that action is a cycle
    latch = [_step("start", "look"), _step("You see a shelf.", "look")]
    assert cycle_actions(latch, "You see a shelf.") == ["look"]


def test_cycle_rate_counts_the_steps_that_repeat_a_cycle() -> None:
    task = Task(task_id="t", env="alfworld", split="valid", category="c", instruction="do")
    steps = [*_OSCILLATION, _step("At shelf 1.", "go to shelf 2"), _step("At shelf 2.", "look")]
    traj = Trajectory(
        task_id="t",
        env="alfworld",
        split="valid",
        category="c",
        instruction=task.instruction,
        policy="p",
        steps=steps,
        success=False,
    )
    assert cycles(traj) == 1  # step 3 (go to shelf 2 again from shelf 1); step 4 chose something new
    assert summarize([traj], policy="p", iteration=0, split="valid").cycle_rate == 1 / 5


@pytest.mark.parametrize("avoid", [True, False])
def test_avoid_cycles_bans_the_cycle_and_the_engine_obeys(tiny: tuple, avoid: bool) -> None:
    model, tok = tiny
    params = StudentParams(max_new_tokens=6, batch_size=1, avoid_cycles=avoid)
    policy = StudentPolicy(params, None, "student:test", model=model, tokenizer=tok)
    task = Task(task_id="t", env="alfworld", split="train", category="c", instruction="do the thing")
    ctx = StepContext(
        task=task, history=_OSCILLATION, observation="At shelf 1.", admissible_actions=["go to shelf 2"]
    )
    assert policy.request(ctx).banned == (["go to shelf 2"] if avoid else [])
    # the only admissible action stays allowed (a ban never leaves the trie empty)
    assert policy.act([ctx])[0].action == "go to shelf 2"
    ctx.admissible_actions = ["go to shelf 2", "go to shelf 3"]
    if avoid:
        assert policy.act([ctx])[0].action == "go to shelf 3"
