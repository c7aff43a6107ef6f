"""Statistics for comparing policies on the same episodes.

Every policy (each LEAP iteration, BC, the teacher alone) is evaluated on the same tasks, so
comparisons are *paired*: the question is how often one policy solves a task the other fails.

- :func:`wilson` — 95% Wilson score interval of a success rate (sound at small n and at 0 or 1).
- :func:`compare` — the paired difference in success rate with a 95% paired-bootstrap interval
  and McNemar's exact test on the discordant tasks.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np


def wilson(successes: int, n: int, confidence: float = 0.95) -> tuple[float, float]:
    """Wilson score interval of ``successes / n`` (``(0, 1)`` when n is 0)."""
    if n <= 0:
        return 0.0, 1.0
    from scipy.stats import binomtest

    ci = binomtest(successes, n).proportion_ci(confidence_level=confidence, method="wilson")
    return float(ci.low), float(ci.high)


@dataclass(frozen=True)
class PairedComparison:
    """``a`` minus ``b`` on the tasks both were evaluated on."""

    n: int
    success_a: float
    success_b: float
    diff: float
    ci_low: float
    ci_high: float
    only_a: int  # tasks a solved and b did not
    only_b: int
    p_value: float  # McNemar's exact test (two-sided)

    def as_dict(self) -> dict[str, float]:
        return {k: float(v) for k, v in self.__dict__.items()}


def mcnemar_exact(only_a: int, only_b: int) -> float:
    """Two-sided exact McNemar p-value: discordant pairs are Binomial(only_a + only_b, 1/2) under H0."""
    n = only_a + only_b
    if n == 0:
        return 1.0
    from scipy.stats import binomtest

    return float(binomtest(only_a, n, 0.5).pvalue)


def compare(
    a: Mapping[str, bool],
    b: Mapping[str, bool],
    *,
    confidence: float = 0.95,
    n_boot: int = 10_000,
    seed: int = 0,
) -> PairedComparison:
    """Paired comparison of per-task successes ``a`` and ``b`` (task id -> solved).

    The interval resamples tasks with replacement (a paired bootstrap, percentile method), so it
    reflects that both policies faced the same tasks; it is seeded, so it is reproducible.
    """
    common = sorted(set(a) & set(b))
    n = len(common)
    if n == 0:
        return PairedComparison(0, 0.0, 0.0, 0.0, 0.0, 0.0, 0, 0, 1.0)
    xa = np.array([bool(a[t]) for t in common], dtype=float)
    xb = np.array([bool(b[t]) for t in common], dtype=float)
    d = xa - xb
    rng = np.random.default_rng(seed)
    idx = rng.integers(0, n, size=(n_boot, n))
    boots = d[idx].mean(axis=1)
    alpha = (1 - confidence) / 2
    lo, hi = np.quantile(boots, [alpha, 1 - alpha])
    only_a = int(((xa == 1) & (xb == 0)).sum())
    only_b = int(((xa == 0) & (xb == 1)).sum())
    return PairedComparison(
        n=n,
        success_a=float(xa.mean()),
        success_b=float(xb.mean()),
        diff=float(d.mean()),
        ci_low=float(lo),
        ci_high=float(hi),
        only_a=only_a,
        only_b=only_b,
        p_value=mcnemar_exact(only_a, only_b),
    )
