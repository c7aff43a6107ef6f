"""InterCode-Bash as a leap Environment: bash commands in a bubblewrap sandbox, InterCode's reward.

Episode semantics (as InterCode's ``BashEnv``):

- ``reset(task)`` opens a fresh sandbox (the task family's file system, cwd ``/``), runs the gold
  command once in another fresh sandbox (for scoring and the teacher) and returns the query as the
  first observation.
- ``step(command)`` runs one bash command (``/bin/bash -c``; ``/bin/sh`` for fs_5) and returns its
  output (stdout+stderr, at most ``max_output_bytes``; "Command timed out" after
  ``command_timeout_s``). The cwd persists between commands; shell variables do not.
- ``step("submit")`` ends the episode (``terminated=True``) with ``reward`` = the InterCode score.

**What the rollout loop can rely on**

- The env also enforces ``env.horizon``: the step that reaches it (if not a submit) returns
  ``truncated=True`` and is scored as if submitted, with ``reward`` = the score. The loop sends
  nothing extra; it just stops at ``terminated or truncated``.
- ``info["score"]`` / ``info["score_components"]`` / ``info["won"]`` are present on every step: the
  score the episode would get if submitted *now* (``score_every_step``; if turned off, they are
  0.0/False until the final step). On the final step (submit or horizon) they are the final score;
  ``won`` is ``score == 1.0``. ``reward`` is 0.0 on every other step, so the return is the score.
- ``info["valid_action"]`` is False for an empty command, a command that is too long, a syntax
  error (exit 2 with "syntax error"), a missing program (exit 126/127), or a step after the end;
  the command's exit status is in ``info["exit_code"]`` (None when killed).
- ``info["privileged"]`` (teacher only): {"gold", "gold_output", "cwd", "secrets": [gold]}.
- ``info["admissible_actions"]`` is None: actions are free-form.

Environment failures (no root file system, no bwrap, a sandbox that does not start) raise EnvError;
nothing ever runs on the host.
"""

from __future__ import annotations

import contextlib
import shlex
from typing import Any

from leap.envs.base import EnvError
from leap.envs.intercode.params import IntercodeParams
from leap.envs.intercode.rootfs import RootFS, default_root
from leap.envs.intercode.sandbox import CommandResult, Limits, Sandbox, SandboxHost
from leap.envs.intercode.scoring import (
    ANSWER,
    FILE_CHANGES,
    FILE_DIFF,
    GIT_STATUS,
    SideState,
    hash_command,
    hashed_paths,
    parse_status,
    score,
)
from leap.envs.intercode.tasks import ENV_NAME, record
from leap.records import Task

SUBMIT = "submit"
TIMEOUT_TEXT = "Command timed out"
MAX_COMMAND_CHARS = 16384
PRIVILEGED_OUTPUT_CHARS = 2000


def limits_from(params: IntercodeParams) -> Limits:
    mb = 1 << 20
    return Limits(
        timeout_s=params.command_timeout_s,
        max_output_bytes=params.max_output_bytes,
        memory_bytes=params.memory_limit_mb * mb,
        pids_max=params.pids_limit,
        file_size_bytes=params.file_size_limit_mb * mb,
        scratch_bytes=params.scratch_mb * mb,
    )


def observation_text(res: CommandResult, max_bytes: int) -> str:
    """What the agent sees (and what scoring compares), as InterCode's ``self.observation``."""
    if res.timed_out:
        return TIMEOUT_TEXT
    if res.truncated:
        return res.output + f"\n[output truncated at {max_bytes} bytes]"
    return res.output


def _valid(command: str, res: CommandResult | None) -> bool:
    if not command or res is None:
        return False
    if res.exit_code in (126, 127):
        return False
    return not (res.exit_code == 2 and "syntax error" in res.output.lower())


class InterCodeEnv:
    name = ENV_NAME

    def __init__(self, params: IntercodeParams | None = None, *, horizon: int = 30) -> None:
        self.params = params or IntercodeParams()
        self.horizon = horizon
        self._host: SandboxHost | None = None
        self._sb: Sandbox | None = None
        self._task: Task | None = None
        self._done = True

    # -- helpers ------------------------------------------------------------------------------------------

    @property
    def host(self) -> SandboxHost:
        if self._host is None:
            self._host = SandboxHost(RootFS(default_root(self.params.root_dir)), limits_from(self.params))
        return self._host

    def _side(self, sb: Sandbox, output: str, only: set[tuple[str, str]] | None = None) -> SideState:
        """git status at / and the hash outputs of its A/??/C paths (those also in ``only``, if given)."""
        res = sb.run(GIT_STATUS, cwd="/", track_cwd=False)
        # A non-zero exit means the agent wrecked its own file system (e.g. rm -rf /): a state, not an error.
        status = parse_status(res.output) if res.exit_code == 0 else []
        todo = hashed_paths([x for x in status if only is None or x in only])
        return SideState(status=status, hashes=self._hashes(sb, todo), output=output)

    def _hashes(self, sb: Sandbox, paths: list[str]) -> dict[str, str]:
        if not paths:
            return {}
        sep = "\n@@leap-hash-separator@@\n"
        script = "; ".join(f"{hash_command(shlex.quote(p))} 2>&1; printf {shlex.quote(sep)}" for p in paths)
        res = sb.run(script, cwd="/", track_cwd=False)
        parts = res.output.split(sep)
        return {p: parts[i] if i < len(parts) else "" for i, p in enumerate(paths)}

    def _gold(self, rec: dict[str, Any]) -> SideState:
        sb = self.host.open(rec["family"])
        try:
            res = sb.run(rec["gold"], cwd="/", track_cwd=False)
            return self._side(sb, observation_text(res, self.params.max_output_bytes))
        finally:
            sb.close()

    def _score(self) -> tuple[float, dict[str, float], dict[str, object]]:
        assert self._sb is not None
        # Only changes both sides made are hashed (InterCode compares the intersection).
        agent = self._side(self._sb, self._last_output, set(self._gold_state.status))
        return score(agent, self._gold_state, first_action=self._first_action, gold_command=self._rec["gold"])

    def _info(self, *, final: bool, valid: bool, res: CommandResult | None = None) -> dict[str, Any]:
        if final or self.params.score_every_step:
            total, comps, details = self._score()
        else:
            total, comps, details = 0.0, {FILE_DIFF: 0.0, FILE_CHANGES: 0.0, ANSWER: 0.0}, {}
        info: dict[str, Any] = {
            "admissible_actions": None,
            "valid_action": valid,
            "won": total == 1.0,
            "score": total,
            "score_components": comps,
            "score_details": details,
            "exit_code": res.exit_code if res else None,
            "privileged": {
                "gold": self._rec["gold"],
                "gold_output": self._gold_state.output[:PRIVILEGED_OUTPUT_CHARS],
                "cwd": self._sb.cwd if self._sb else "/",
                "secrets": [self._rec["gold"]],
            },
        }
        return info

    # -- Environment protocol -----------------------------------------------------------------------------

    def reset(self, task: Task, *, seed: int | None = None) -> tuple[str, dict[str, Any]]:
        if task.env != ENV_NAME:
            raise EnvError(f"task {task.task_id} is for '{task.env}', not '{ENV_NAME}'")
        self._close_episode()
        self._task = task
        self._rec = record(int(task.spec["family"]), int(task.spec["index"]))
        self._gold_state = self._gold(self._rec)
        self._sb = self.host.open(self._rec["family"])
        self._first_action: str | None = None
        self._last_output = self._rec["query"]  # InterCode's observation before any command
        self._steps = 0
        self._done = False
        return self._rec["query"], self._info(final=False, valid=True)

    def step(self, action: str) -> tuple[str, float, bool, bool, dict[str, Any]]:
        if self._done or self._sb is None:
            info = {"valid_action": False, "won": False, "score": 0.0, "admissible_actions": None}
            return "The episode is over; call reset().", 0.0, True, False, info
        command = action.strip()
        self._steps += 1
        if command == SUBMIT:
            self._done = True
            info = self._info(final=True, valid=True)
            return self._last_output, float(info["score"]), True, False, info
        res: CommandResult | None = None
        if self._first_action is None:
            self._first_action = command
        if len(command) > MAX_COMMAND_CHARS:
            obs = f"Command too long ({len(command)} characters; at most {MAX_COMMAND_CHARS})."
        else:
            # An empty command runs too (as in InterCode): its output is empty.
            res = self._sb.run(command) if command else None
            obs = observation_text(res, self.params.max_output_bytes) if res else ""
        self._last_output = obs
        truncated = self._steps >= self.horizon
        self._done = truncated
        info = self._info(final=truncated, valid=_valid(command, res), res=res)
        reward = float(info["score"]) if truncated else 0.0
        return obs, reward, False, truncated, info

    def _close_episode(self) -> None:
        if self._sb is not None:
            self._sb.close()
            self._sb = None

    def close(self) -> None:
        self._close_episode()
        if self._host is not None:
            self._host.close()
            self._host = None

    def __del__(self) -> None:
        with contextlib.suppress(Exception):
            self.close()
