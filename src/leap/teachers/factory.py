"""Build the configured teacher (teacher.kind) and the LLM-as-ReAct-agent baseline policy."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from leap.agent import Policy, Teacher
from leap.config import Params
from leap.teachers.accounting import CountingTeacher, Prices, TeacherStats

log = logging.getLogger(__name__)

STUDENT = "student"  # teacher.local.model: the student itself (its latest adapter) is the teacher


def _local_chat_kw(params: Params, iteration: int | None) -> dict[str, Any]:
    """LocalChat arguments; ``model: student`` means the student's model with adapter i-1."""
    lp = params.teacher.local
    if lp.model != STUDENT:
        return {}
    from leap import paths

    kw: dict[str, Any] = {"model": params.student.model, "gguf_file": params.student.gguf_file}
    adapter = paths.model(iteration - 1) if iteration else None
    if adapter is not None and (Path(adapter) / "adapter_config.json").is_file():
        kw |= {"adapter_dir": adapter, "name": f"local:student@iter_{iteration - 1}"}  # type: ignore[operator]
    else:
        log.warning(
            "teacher.local.model=student: no adapter for iteration %s; using the base model", iteration
        )
        kw["name"] = "local:student@base"
    return kw


def build_teacher(
    params: Params, iteration: int | None = None, *, privilege_level: int | None = None
) -> Teacher:
    """oracle | openai | local, at teacher.privilege_level (or ``privilege_level``); every one has
    ``stats()``.

    ``iteration`` (the correct stage's i) matters only for ``teacher.local.model: student``,
    where the teacher is the student of iteration i-1 given the privileged hints.
    """
    tp = params.teacher
    level = tp.privilege_level if privilege_level is None else privilege_level
    if tp.kind == "oracle":
        from leap.teachers.oracle import OracleTeacher

        return CountingTeacher(OracleTeacher(level))
    if tp.kind == "openai":
        from leap.teachers.llm import OpenAITeacher

        return OpenAITeacher(
            tp.openai, level, cache_dir=tp.cache_dir, snap_threshold=params.env.snap_threshold
        )
    if tp.kind == "local":
        from leap.teachers.local import LocalTeacher

        kw = _local_chat_kw(params, iteration)
        if not kw:
            return LocalTeacher(
                tp.local, level, cache_dir=tp.cache_dir, snap_threshold=params.env.snap_threshold
            )
        lp = tp.local.model_copy(update={"model": kw.pop("model"), "gguf_file": kw.pop("gguf_file")})
        return LocalTeacher(lp, level, cache_dir=tp.cache_dir, snap_threshold=params.env.snap_threshold, **kw)
    raise ValueError(f"unknown teacher.kind {tp.kind!r}")


def build_react_policy(params: Params) -> Policy:
    """The configured LLM teacher acting alone as a ReAct agent: the student's prompt, no privileged state."""
    from leap.teachers.chat import ReActPolicy

    tp = params.teacher
    if tp.kind == "openai":
        from leap.teachers.llm import OpenAIChat

        backend = OpenAIChat(tp.openai, json_mode=False)  # the student prompt asks for its own format
        stats = TeacherStats(prices=Prices(tp.openai.price_per_1k_input, tp.openai.price_per_1k_output))
        return ReActPolicy(
            backend,
            params.student,
            cache_dir=tp.cache_dir,
            stats=stats,
            snap_threshold=params.env.snap_threshold,
        )
    if tp.kind == "local":
        from leap.teachers.local import LocalChat

        lp = tp.local
        if lp.model == STUDENT:  # the base student model (the baseline runs before any training)
            lp = lp.model_copy(update={"model": params.student.model, "gguf_file": params.student.gguf_file})
        backend = LocalChat.from_params(lp, assistant_prefix="Reason:")  # the student's answer format
        return ReActPolicy(
            backend, params.student, cache_dir=tp.cache_dir, snap_threshold=params.env.snap_threshold
        )
    raise ValueError(
        "baseline.react evaluates the configured LLM teacher as a ReAct agent: set teacher.kind to "
        f"'openai' or 'local' (it is {tp.kind!r}; the oracle baseline is baseline.teacher_alone)"
    )
