"""The constrained privileged expert (LEAP paper, Appendix B.2).

The policy closest to the privileged teacher π_p within a KL ball around the non-privileged teacher
π_n is, for a Lagrange multiplier η ≥ 0,

    π(y) ∝ π_p(y)^(1/(1+η)) · π_n(y)^(η/(1+η)),

a geometric mixture: η = 0 is π_p, η → ∞ is π_n. Here π_p is the teacher at ``teacher.privilege_level``
and π_n the same teacher at λ0 (shown no privileged facts). The paper could not run it (its teacher
was a closed model); it needs teachers that expose probabilities:

- **oracles** (:class:`ConstrainedOracle`): an oracle is deterministic, so it is given a distribution
  over candidate actions (the admissible ones and both levels' choices): ``1 - ε`` on the action it
  chooses, ``ε`` spread evenly over the other candidates (``teacher.constrained.oracle_epsilon``).
  The support is small and known, so π is computed exactly and the correction drawn from it (the
  limit of the sampling scheme below with infinitely many samples).
- **local models** (:class:`ConstrainedLocal`): ``k`` replies are sampled from each of π_p and π_n
  (temperature 1, ``teacher.constrained.samples``), every candidate is scored under both prompts
  (teacher-forced log-probability of its reply), and the correction is drawn from the candidates
  with self-normalised importance weights π̃(y) / q(y), q = ½ π_p + ½ π_n being the proposal they
  were drawn from (sampling-importance-resampling). The weights are those of the candidates as
  corrected: after the teacher's own post-processing (its forced "Action:" line, the snapping of an
  almost-admissible action, the token limit), so q is the density of the post-processed reply, not
  exactly the one it was drawn from; with few samples the draw is also biased towards q (SIR is
  exact only as ``samples`` grows).

The draw of each item is seeded by (seed, task, step), so a re-run draws the same corrections.
"""

from __future__ import annotations

import math
import zlib
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from leap.agent import StepContext, Teacher, TeacherError
from leap.config import Params
from leap.records import StepLabel

# The reason given to a candidate action that neither level chose (only the oracles' ε mass).
OTHER_REASON = "I have no better lead, so I try this."


def mixing_exponent(eta: float) -> float:
    """a = 1/(1+η): π ∝ π_p^a π_n^(1-a) (η = inf gives 0)."""
    if eta < 0 or math.isnan(eta):
        raise ValueError(f"eta must be >= 0, got {eta}")
    return 0.0 if math.isinf(eta) else 1.0 / (1.0 + eta)


def geometric_weights(
    logp_p: Sequence[float],
    logp_n: Sequence[float],
    eta: float,
    log_proposal: Sequence[float] | None = None,
) -> np.ndarray:
    """Normalised weights of candidates under π ∝ π_p^(1/(1+η)) π_n^(η/(1+η)).

    ``logp_p``/``logp_n``: each candidate's log-probability under π_p and π_n. Without
    ``log_proposal`` the candidates are the distinct points of the support and the weights are π
    itself; with it (each candidate's log-density under the proposal it was drawn from) they are the
    self-normalised importance weights π̃/q of the draws. Raises ValueError when π puts no mass on
    any candidate.
    """
    lp = np.asarray(logp_p, dtype=float)
    ln = np.asarray(logp_n, dtype=float)
    if lp.shape != ln.shape or lp.ndim != 1 or not len(lp):
        raise ValueError(
            f"need two equal-length, non-empty lists of log-probabilities ({lp.shape}, {ln.shape})"
        )
    a = mixing_exponent(eta)
    # 0 · log 0 is 0 here (the limits η = 0 and η = inf are π_p and π_n exactly).
    logw = (a * lp if a > 0 else 0.0) + ((1 - a) * ln if a < 1 else 0.0)
    if log_proposal is not None:
        lq = np.asarray(log_proposal, dtype=float)
        if lq.shape != lp.shape:
            raise ValueError(f"log_proposal has shape {lq.shape}, the candidates {lp.shape}")
        logw = logw - lq
    logw = np.asarray(logw, dtype=float)
    if not np.isfinite(logw).any():
        raise ValueError("the constrained expert puts no mass on any candidate")
    w = np.exp(logw - logw[np.isfinite(logw)].max())
    w[~np.isfinite(logw)] = 0.0
    return w / w.sum()


def mixture_log_density(logp_p: Sequence[float], logp_n: Sequence[float]) -> np.ndarray:
    """log q of q = ½ π_p + ½ π_n: the proposal of equally many draws from π_p and from π_n."""
    return np.logaddexp(np.asarray(logp_p, float), np.asarray(logp_n, float)) - math.log(2.0)


def oracle_log_probs(chosen: str, candidates: Sequence[str], epsilon: float) -> list[float]:
    """An oracle's distribution over ``candidates`` (distinct actions, ``chosen`` among them):
    1 - ε on its choice, ε spread evenly over the rest (all of it on the choice when it is alone)."""
    if chosen not in candidates:
        raise ValueError(f"the oracle's action {chosen!r} is not a candidate")
    if len(candidates) == 1:
        return [0.0]
    other = math.log(epsilon / (len(candidates) - 1))
    return [math.log1p(-epsilon) if c == chosen else other for c in candidates]


def item_rng(seed: int, ctx: StepContext) -> np.random.Generator:
    """The generator of one item's draw: the same task and step always draw the same correction."""
    return np.random.default_rng([seed, zlib.crc32(ctx.task.task_id.encode()), len(ctx.history)])


@dataclass
class ConstrainedStats:
    items: int = 0
    drawn_privileged_choice: int = 0  # the drawn action is the one π_p proposed (or chose, for oracles)
    drawn_plain_choice: int = 0  # ... the one π_n proposed
    levels_agree: int = 0  # π_p and π_n chose the same action (oracles)
    ess: list[float] = field(default_factory=list)  # effective sample size of the weights, per item

    def as_dict(self) -> dict[str, float]:
        n = max(1, self.items)
        out = {
            "constrained_items": float(self.items),
            "constrained_privileged_choice_rate": self.drawn_privileged_choice / n,
            "constrained_plain_choice_rate": self.drawn_plain_choice / n,
        }
        if self.levels_agree:
            out["constrained_levels_agree_rate"] = self.levels_agree / n
        if self.ess:
            out["constrained_mean_ess"] = float(np.mean(self.ess))
        return out


def _ess(w: np.ndarray) -> float:
    return float(1.0 / np.sum(w**2))


class _Constrained:
    """What both constrained experts share: the Teacher protocol, η, seeding and stats."""

    def __init__(self, base: Teacher, eta: float, seed: int) -> None:
        mixing_exponent(eta)  # validates
        self.base = base
        self.eta = eta
        self.seed = seed
        self.privilege_level = base.privilege_level
        self.teacher_id = f"{base.teacher_id}+constrained(eta={eta:g})"
        self.cstats = ConstrainedStats()

    def stats(self) -> dict[str, float]:
        base = self.base.stats() if hasattr(self.base, "stats") else {}
        return {**base, **self.cstats.as_dict(), "constrained_eta": float(self.eta)}


class ConstrainedOracle(_Constrained):
    """The constrained expert of an oracle teacher (π_p: ``privileged`` at its level; π_n: ``plain``, λ0)."""

    def __init__(self, privileged: Teacher, plain: Teacher, eta: float, epsilon: float, seed: int) -> None:
        super().__init__(privileged, eta, seed)
        if plain.privilege_level != 0:
            raise ValueError(f"π_n is the λ0 teacher, got level {plain.privilege_level}")
        if not 0 < epsilon < 1:
            raise ValueError(f"oracle_epsilon must be in (0, 1), got {epsilon}")
        self.plain = plain
        self.epsilon = epsilon

    def correct(self, items: list[tuple[StepContext, StepLabel | None]]) -> list[StepLabel | TeacherError]:
        ps = self.base.correct(items)
        ns = self.plain.correct(items)
        out: list[StepLabel | TeacherError] = []
        for (ctx, _), p, n in zip(items, ps, ns, strict=True):
            if isinstance(p, TeacherError) or isinstance(n, TeacherError):
                out.append(p if isinstance(p, TeacherError) else n)  # type: ignore[arg-type]
                continue
            out.append(self._draw(ctx, p, n))
        return out

    def _draw(self, ctx: StepContext, p: StepLabel, n: StepLabel) -> StepLabel:
        cands = list(dict.fromkeys([*(ctx.admissible_actions or []), p.action, n.action]))
        lp = oracle_log_probs(p.action, cands, self.epsilon)
        ln = oracle_log_probs(n.action, cands, self.epsilon)
        w = geometric_weights(lp, ln, self.eta)
        rng = item_rng(self.seed, ctx)
        action = cands[int(rng.choice(len(cands), p=w))]
        s = self.cstats
        s.items += 1
        s.levels_agree += p.action == n.action
        s.drawn_privileged_choice += action == p.action
        s.drawn_plain_choice += action == n.action
        if action == p.action and action == n.action:
            # Both levels chose it: the reason too comes from π_p with probability 1/(1+η), else from π_n.
            return p if rng.random() < mixing_exponent(self.eta) else n
        if action == p.action:
            return p
        if action == n.action:
            return n
        return StepLabel(reason=OTHER_REASON, action=action)


class ConstrainedLocal(_Constrained):
    """The constrained expert of a local Hugging Face teacher (:class:`leap.teachers.local.LocalTeacher`):
    π_p is its correction prompt at its level, π_n the same prompt at λ0 (no privileged facts)."""

    def __init__(self, teacher: Any, eta: float, samples: int, seed: int) -> None:
        super().__init__(teacher, eta, seed)
        if samples < 1:
            raise ValueError(f"samples must be >= 1, got {samples}")
        self.samples = samples
        self._engine: Any = None

    # -- the two prompts -----------------------------------------------------------------
    def _conversation(self, ctx: StepContext, student: StepLabel | None, level: int) -> list[dict[str, str]]:
        from leap.teachers.prompting import as_dicts, correction_messages

        return as_dicts(correction_messages(ctx, student, level, self.base.prompt))

    def _sample(
        self, convs: list[list[dict[str, str]]], admissible: list[list[str] | None]
    ) -> list[list[StepLabel]]:
        """``samples`` parsed replies per conversation at temperature 1, actions snapped to the admissible
        ones as the teacher snaps its own (unparsable replies dropped)."""
        from leap.prompts.parsing import ReplyError, parse_reply, snap_action

        backend = self.base.backend
        k = self.samples
        batch = [c for c in convs for _ in range(k)]
        out: list[list[StepLabel]] = [[] for _ in convs]
        for start in range(0, len(batch), backend.batch_size):
            chunk = batch[start : start + backend.batch_size]
            for j, res in enumerate(backend.generate(chunk, temperature=1.0)):
                idx = (start + j) // k
                try:
                    label = parse_reply(res.text)
                except ReplyError:
                    continue
                out[idx].append(label)
        threshold = self.base.snap_threshold
        if threshold is None:
            return out
        snapped: list[list[StepLabel]] = []
        for labels, acts in zip(out, admissible, strict=True):
            fixed = [snap_action(lab.action, acts, threshold) for lab in labels]
            snapped.append(
                [
                    StepLabel(reason=lab.reason, action=a) if a else lab
                    for lab, a in zip(labels, fixed, strict=True)
                ]
            )
        return snapped

    def _scorer(self) -> Any:
        if self._engine is None:
            from leap.students.engine import Engine

            lm, tok = self.base.backend.load()
            self._engine = Engine(lm, tok, max_rows=self.base.backend.batch_size)
        return self._engine

    def _reply_ids(self, label: StepLabel) -> list[int]:
        """The reply as the teacher writes it after its forced prefix ("Reason:"), then the turn's end."""
        eng = self._scorer()
        text = f" {label.reason.strip()}\nAction: {label.action.strip()}"
        return [*eng.encode(text), eng.end_of_turn()]

    def _prompt_ids(self, conv: list[dict[str, str]]) -> list[int]:
        backend = self.base.backend
        _, tok = backend.load()
        prefix = backend.assistant_prefix or ""
        msgs = [*conv, {"role": "assistant", "content": prefix}] if prefix else conv
        if prefix:
            text = tok.apply_chat_template(msgs, tokenize=False, continue_final_message=True)
        else:
            text = tok.apply_chat_template(msgs, tokenize=False, add_generation_prompt=True)
        return self._scorer().encode(text)

    def log_probs(self, conv: list[dict[str, str]], labels: list[StepLabel]) -> list[float]:
        """log π(label | conversation) of each reply (teacher-forced, summed over its tokens)."""
        prompt = self._prompt_ids(conv)
        eng = self._scorer()
        # One reply at a time: each call finds the prompt in the engine's cache and prefills only the
        # reply (a batch would give every reply its own row and recompute the prompt in each).
        return [float(sum(eng.score([prompt], [self._reply_ids(lab)])[0])) for lab in labels]

    # -- the Teacher protocol ----------------------------------------------------------------
    def correct(self, items: list[tuple[StepContext, StepLabel | None]]) -> list[StepLabel | TeacherError]:
        admissible = [ctx.admissible_actions for ctx, _ in items]
        conv_p = [self._conversation(ctx, st, self.privilege_level) for ctx, st in items]
        conv_n = [self._conversation(ctx, st, 0) for ctx, st in items]
        from_p = self._sample(conv_p, admissible)
        from_n = self._sample(conv_n, admissible)
        out: list[StepLabel | TeacherError] = []
        for k, (ctx, _) in enumerate(items):
            cands = from_p[k] + from_n[k]
            if not cands:
                out.append(
                    TeacherError(f"{self.teacher_id}: no parsable reply among {2 * self.samples} samples")
                )
                continue
            lp = self.log_probs(conv_p[k], cands)
            ln = self.log_probs(conv_n[k], cands)
            w = geometric_weights(lp, ln, self.eta, log_proposal=mixture_log_density(lp, ln))
            j = int(item_rng(self.seed, ctx).choice(len(cands), p=w))
            s = self.cstats
            s.items += 1
            s.drawn_privileged_choice += j < len(from_p[k])
            s.drawn_plain_choice += j >= len(from_p[k])
            s.ess.append(_ess(w))
            out.append(cands[j])
        return out


def constrained_teacher(
    kind: str, teacher: Teacher, *, eta: float, samples: int, oracle_epsilon: float, seed: int
) -> Teacher:
    """The constrained expert of ``teacher`` (built by the factory for ``kind``)."""
    if kind == "oracle":
        from leap.teachers.accounting import CountingTeacher
        from leap.teachers.oracle import OracleTeacher

        return ConstrainedOracle(teacher, CountingTeacher(OracleTeacher(0)), eta, oracle_epsilon, seed)
    if kind == "local":
        return ConstrainedLocal(teacher, eta, samples, seed)
    raise ValueError(
        f"teacher.eta (the constrained privileged expert) needs a teacher that exposes probabilities: "
        f"teacher.kind 'oracle' or 'local', not {kind!r} (set teacher.eta: null)"
    )


def build_correction_teacher(params: Params, iteration: int) -> Teacher:
    """The teacher of the correct stage: the configured one, or with ``teacher.eta`` set its
    constrained privileged expert (this module). Only the correct stage reads
    teacher.eta, so behaviour cloning and the baselines do not depend on it."""
    from leap.teachers.factory import build_teacher

    teacher = build_teacher(params, iteration=iteration)
    eta = params.teacher.eta
    if eta is None:
        return teacher
    c = params.teacher.constrained
    return constrained_teacher(
        params.teacher.kind,
        teacher,
        eta=eta,
        samples=c.samples,
        oracle_epsilon=c.oracle_epsilon,
        seed=params.seed + iteration,
    )
