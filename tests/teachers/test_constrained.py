"""The constrained privileged expert (paper App. B.2): π ∝ π_p^(1/(1+η)) π_n^(η/(1+η)), against hand
computations and its limits, its importance weights, the oracles' distribution and a local model."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import torch

from leap.agent import StepContext
from leap.config import LocalTeacherParams
from leap.records import StepLabel, Task
from leap.teachers.accounting import CountingTeacher
from leap.teachers.constrained import (
    OTHER_REASON,
    ConstrainedLocal,
    ConstrainedOracle,
    constrained_teacher,
    geometric_weights,
    mixture_log_density,
    oracle_log_probs,
)
from leap.teachers.oracle import OracleTeacher

P = [0.7, 0.2, 0.1]  # π_p on three outputs
N = [0.1, 0.3, 0.6]  # π_n
LP, LN = np.log(P), np.log(N)


def test_weights_match_a_hand_computation() -> None:
    # η = 1: π ∝ sqrt(π_p π_n) = (0.26458, 0.24495, 0.24495) / 0.75447
    assert geometric_weights(LP, LN, 1.0) == pytest.approx([0.35068, 0.32466, 0.32466], abs=1e-5)
    # η = 3: π ∝ π_p^0.25 π_n^0.75 = (0.16266, 0.27108, 0.38337) / 0.81711
    assert geometric_weights(LP, LN, 3.0) == pytest.approx([0.19907, 0.33176, 0.46918], abs=1e-5)


def test_the_limits_are_the_two_teachers() -> None:
    assert geometric_weights(LP, LN, 0.0) == pytest.approx(P, abs=1e-12)  # η = 0: π_p
    assert geometric_weights(LP, LN, 1e-9) == pytest.approx(P, abs=1e-6)  # η → 0
    assert geometric_weights(LP, LN, math.inf) == pytest.approx(N, abs=1e-12)  # η = ∞: π_n
    assert geometric_weights(LP, LN, 1e9) == pytest.approx(N, abs=1e-6)  # η → ∞
    # An output π_n rules out keeps its π_p mass at η = 0 (0 · log 0 = 0) and none for any η > 0.
    lp, ln = np.log([0.5, 0.5]), np.array([0.0, -math.inf])
    assert geometric_weights(lp, ln, 0.0) == pytest.approx([0.5, 0.5])
    assert geometric_weights(lp, ln, 0.5) == pytest.approx([1.0, 0.0])


def _kl(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.sum(a * np.log(a / b)))


def test_larger_eta_moves_from_the_privileged_to_the_plain_teacher() -> None:
    """The KL ball around π_n shrinks as η grows: π gets closer to π_n and further from π_p."""
    pis = [geometric_weights(LP, LN, eta) for eta in (0.0, 0.25, 1.0, 4.0, 100.0)]
    to_n = [_kl(pi, np.array(N)) for pi in pis]
    to_p = [_kl(pi, np.array(P)) for pi in pis]
    assert to_n == sorted(to_n, reverse=True) and to_p == sorted(to_p)


def test_importance_weights_of_draws_from_both_teachers_recover_pi() -> None:
    """Sampling-importance-resampling: draws from ½π_p + ½π_n, weighted by π̃/q, estimate π."""
    rng = np.random.default_rng(0)
    k = 20_000
    draws = np.concatenate([rng.choice(3, size=k, p=P), rng.choice(3, size=k, p=N)])
    w = geometric_weights(LP[draws], LN[draws], 1.0, log_proposal=mixture_log_density(LP[draws], LN[draws]))
    est = np.bincount(draws, weights=w, minlength=3)
    assert est == pytest.approx(geometric_weights(LP, LN, 1.0), abs=0.01)
    # Without the proposal correction the draws would follow q, not π.
    q = np.bincount(draws, minlength=3) / len(draws)
    assert abs(q[0] - est[0]) > 0.04  # q = (0.4, 0.25, 0.35), π = (0.35, 0.32, 0.32)


def test_bad_inputs_are_refused() -> None:
    with pytest.raises(ValueError, match="eta must be >= 0"):
        geometric_weights(LP, LN, -1.0)
    with pytest.raises(ValueError, match="equal-length"):
        geometric_weights(LP, LN[:2], 1.0)
    with pytest.raises(ValueError, match="no mass"):
        geometric_weights([0.0, -math.inf], [-math.inf, 0.0], 1.0)
    with pytest.raises(ValueError, match="not a candidate"):
        oracle_log_probs("look", ["open box 1"], 0.1)
    with pytest.raises(ValueError, match="'oracle' or 'local'"):
        constrained_teacher("openai", OracleTeacher(2), eta=1.0, samples=2, oracle_epsilon=0.1, seed=0)


def test_oracle_distribution_rule() -> None:
    lp = oracle_log_probs("b", ["a", "b", "c", "d"], 0.09)
    assert np.exp(lp) == pytest.approx([0.03, 0.91, 0.03, 0.03])
    assert oracle_log_probs("a", ["a"], 0.09) == [0.0]


def _toy_ctx(task_id: str = "toy-train-0") -> StepContext:
    """Key in box 3; the smell (pine) points at box 1: λ2 opens box 3, λ0 follows the smell to box 1."""
    task = Task(task_id=task_id, env="toy", split="train", category="smell", instruction="find the key")
    obs = "You are in a room with a locked door and 4 boxes. A smell of pine hangs in the air."
    return StepContext(
        task,
        [],
        obs,
        [f"open box {b}" for b in range(1, 5)],
        privileged={"expert_action": "open box 3", "secrets": ["key is in box 3"]},
    )


def _oracle(eta: float, eps: float = 0.05) -> ConstrainedOracle:
    return ConstrainedOracle(
        CountingTeacher(OracleTeacher(2)), CountingTeacher(OracleTeacher(0)), eta, eps, 0
    )


def _frequencies(teacher: ConstrainedOracle, n: int = 2000) -> dict[str, float]:
    out = teacher.correct([(_toy_ctx(f"toy-train-{k}"), None) for k in range(n)])
    actions = [lab.action for lab in out]  # type: ignore[union-attr]
    return {a: actions.count(a) / n for a in sorted(set(actions))}


def test_constrained_oracle_draws_from_the_geometric_mixture() -> None:
    # ε = 0.05 over 4 candidates: each level puts 0.95 on its choice and 0.05/3 on each other box.
    # η = 1: box 3 and box 1 ∝ sqrt(0.95 · 0.05/3) = 0.1258, boxes 2 and 4 ∝ 0.0167 -> 0.4415 / 0.0585.
    f = _frequencies(_oracle(1.0))
    assert f["open box 3"] == pytest.approx(0.4415, abs=0.035)
    assert f["open box 1"] == pytest.approx(0.4415, abs=0.035)
    assert f.get("open box 2", 0) == pytest.approx(0.0585, abs=0.02)
    assert _frequencies(_oracle(0.0))["open box 3"] == pytest.approx(0.95, abs=0.02)  # η = 0: π_p
    assert _frequencies(_oracle(math.inf))["open box 1"] == pytest.approx(0.95, abs=0.02)  # η = ∞: π_n


def test_constrained_oracle_keeps_each_levels_reason_and_is_seeded() -> None:
    teacher = _oracle(1.0)
    items = [(_toy_ctx(f"toy-train-{k}"), None) for k in range(200)]
    out = teacher.correct(items)
    for lab in out:
        assert isinstance(lab, StepLabel)
        expected = {
            "open box 3": "I have no lead, so I guess a box.",  # λ2's own reason
            "open box 1": "I follow the smell.",  # λ0's
        }.get(lab.action, OTHER_REASON)
        assert lab.reason == expected
    assert [o.action for o in _oracle(1.0).correct(items)] == [o.action for o in out]  # type: ignore[union-attr]
    st = teacher.stats()
    assert st["constrained_items"] == 200 and st["constrained_eta"] == 1.0
    assert 0.3 < st["constrained_privileged_choice_rate"] < 0.6
    assert teacher.teacher_id == "oracle+constrained(eta=1)"


# ---------------------------------------------------------------- a local model teacher


def test_constrained_local_teacher_weights_its_own_samples(tiny_model_dir: Path, tmp_path: Path) -> None:
    from leap.teachers.local import LocalTeacher

    base = LocalTeacher(
        LocalTeacherParams(model=str(tiny_model_dir), max_new_tokens=8, batch_size=4),
        2,
        cache_dir=str(tmp_path),
    )
    teacher = ConstrainedLocal(base, eta=1.0, samples=3, seed=0)
    torch.manual_seed(0)
    items = [(_toy_ctx(f"toy-train-{k}"), StepLabel(reason="r", action="open box 2")) for k in range(2)]
    out = teacher.correct(items)
    assert len(out) == 2
    st = teacher.stats()
    labels = [o for o in out if isinstance(o, StepLabel)]
    assert st["constrained_items"] == len(labels)
    assert all(1.0 <= e <= 6.0 + 1e-9 for e in teacher.cstats.ess)  # 2 x 3 candidates
    assert st["constrained_privileged_choice_rate"] + st["constrained_plain_choice_rate"] == pytest.approx(
        1.0
    )

    # A candidate's log-probability is its reply's, teacher-forced after the prompt, as a plain forward.
    ctx, student = items[0]
    conv = teacher._conversation(ctx, student, 2)
    label = StepLabel(reason="The key may be here.", action="open box 3")
    (got,) = teacher.log_probs(conv, [label])
    lm, _ = base.backend.load()
    prompt, reply = teacher._prompt_ids(conv), teacher._reply_ids(label)
    with torch.no_grad():
        logp = torch.log_softmax(lm(torch.tensor([prompt + reply])).logits[0].float(), dim=-1)
    want = sum(float(logp[len(prompt) - 1 + k, t]) for k, t in enumerate(reply))
    assert got == pytest.approx(want, abs=1e-3)
    # π_p's prompt has the privileged hints, π_n's (λ0) none.
    text = {lv: " ".join(m["content"] for m in teacher._conversation(ctx, student, lv)) for lv in (0, 2)}
    assert "key is in box 3" in text[2] and "key is in box 3" not in text[0]
