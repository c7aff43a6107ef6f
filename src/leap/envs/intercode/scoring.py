"""InterCode-Bash's reward (icalfa ``BashEnv.get_reward`` with ``eval_mode="tfidf"``), deterministic.

reward = 0.01 + file_diff + file_changes + answer_similarity, each part worth up to 0.33:

- file_diff: ``git status --short`` at / after the agent vs after the gold command run in a fresh
  sandbox: 0.33 * (1 - erf(#missing + #extra)), rounded to 2 places;
- file_changes: for the (path, code) pairs both sides share with code A, ?? or C, the fraction whose
  hash output is equal (``md5sum <path>`` when the path has a '.', else ``md5deep -r <path>``, as the
  original; md5deep is in neither image, so such paths compare equal), times 0.33; 0.33 if none;
- answer_similarity: 0.33 if the agent's *first* command equals the gold command or the agent's last
  output equals the gold output, else 0.33 * TF-IDF cosine of the two outputs (scikit-learn), rounded.

The total is rounded to 2 places, so success is exactly ``score == 1.0``. No LLM judge is used.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

FILE_DIFF, FILE_CHANGES, ANSWER = "file_diff", "file_changes", "answer_similarity"
GIT_STATUS = "git --no-optional-locks status --short"  # = `git status --short`, without rewriting the index
HASHED_CODES = ("A", "??", "C")


def parse_status(status: str) -> list[tuple[str, str]]:
    """InterCode's parser: whitespace tokens paired as (code, path) -> (path, code)."""
    toks = status.split()
    return [(toks[i + 1], toks[i]) for i in range(0, len(toks) - 1, 2)]


def hash_command(path: str) -> str:
    return f"md5sum {path}" if "." in path else f"md5deep -r {path}"


def hashed_paths(status: list[tuple[str, str]]) -> list[str]:
    return sorted({p for p, code in status if code in HASHED_CODES})


@dataclass
class SideState:
    """One side (agent or gold) at scoring time."""

    status: list[tuple[str, str]]
    hashes: dict[str, str] = field(default_factory=dict)  # path -> output of hash_command(path)
    output: str = ""


def tfidf_similarity(a: str, b: str) -> float:
    from sklearn.feature_extraction.text import TfidfVectorizer

    try:
        tfidf = TfidfVectorizer().fit_transform([a, b])
        return float((tfidf * tfidf.T).toarray()[0][1])
    except ValueError:  # empty vocabulary (e.g. both outputs empty or only 1-letter tokens)
        return 1.0 if a == b else 0.0


def score(
    agent: SideState, gold: SideState, *, first_action: str | None, gold_command: str
) -> tuple[float, dict[str, float], dict[str, object]]:
    """Return (reward, components, details) for an agent state against the gold state."""
    a, g = set(agent.status), set(gold.status)
    miss, extra = g - a, a - g
    p1 = round(0.33 * (1 - math.erf(len(miss) + len(extra))), 2)

    same = sorted(x for x in a & g if x[1] in HASHED_CODES)
    p2 = 0.33
    correct = 0
    if same:
        correct = sum(agent.hashes.get(p) == gold.hashes.get(p) for p, _ in same)
        p2 = round(0.33 * correct / len(same), 2)

    if first_action == gold_command or agent.output == gold.output:
        sim = 1.0
        p3 = 0.33
    else:
        sim = tfidf_similarity(agent.output, gold.output)
        p3 = round(0.33 * sim, 2)

    components = {FILE_DIFF: p1, FILE_CHANGES: p2, ANSWER: p3}
    details: dict[str, object] = {
        "diff_miss": sorted(miss),
        "diff_extra": sorted(extra),
        "diff_same": {"files": same, "correct": correct, "total": len(same)},
        "answer_similarity": sim,
    }
    return round(0.01 + p1 + p2 + p3, 2), components, details
