"""An experiment definition (experiments/*.yaml) expressed as `dvc exp run -S` overrides.

DVC applies ``-S`` with Hydra's override grammar to params.yaml. Two things need care:
- ``loop.iterations`` is replaced whole, but Hydra parses a dict value such as ``{1: 0}`` with
  *integer* keys, and quoted keys are not in its grammar; DVC's ``foreach`` silently makes no
  stage from integer keys (see config.py). So the keys are set, added (``+``) and deleted (``~``)
  one by one, which keeps them strings.
- Every string value is quoted, so that "1e-3" or "http://host:8000/v1" stays the string it is.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

from leap.config import _read_yaml, flatten

# Strings Hydra reads back as the same string when unquoted; anything else is quoted.
_PLAIN = re.compile(r"[A-Za-z_][A-Za-z0-9_\-./]*")
_KEYWORDS = {"true", "false", "null", "nan", "inf"}


def _value(v: Any) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if v is None:
        return "null"
    if isinstance(v, str):
        if _PLAIN.fullmatch(v) and v.lower() not in _KEYWORDS:
            return v
        return "'" + v.replace("\\", "\\\\").replace("'", "\\'") + "'"
    if isinstance(v, list):
        return "[" + ", ".join(_value(x) for x in v) + "]"
    return str(v)


def _has(d: dict[str, Any], dotted: str) -> bool:
    node: Any = d
    for part in dotted.split("."):
        if not isinstance(node, dict) or part not in node:
            return False
        node = node[part]
    return True


def _iteration_overrides(base: dict[str, Any], new: dict[str, Any]) -> list[str]:
    out = [f"{'' if k in base else '+'}loop.iterations.{k}={_value(v)}" for k, v in new.items()]
    out += [f"~loop.iterations.{k}" for k in base if k not in new]
    return out


def dvc_overrides(params_path: Path, experiment_path: Path) -> list[str]:
    """The ``-S`` values (without the ``-S``) that turn ``params_path`` into the experiment.

    Assumes both files are valid (``load_params`` checks them with file/line messages)."""
    _, base = _read_yaml(params_path)
    _, raw = _read_yaml(experiment_path)
    raw = json.loads(json.dumps(raw))  # a deep copy
    raw.pop("description", None)
    loop = raw.get("loop")
    new_iterations = loop.pop("iterations", None) if isinstance(loop, dict) else None
    # A key params.yaml lacks (under a null or absent section) must be added with "+".
    flat = flatten(raw, lists_as_json=False)
    out = [f"{'' if _has(base, key) else '+'}{key}={_value(v)}" for key, v in flat.items()]
    if new_iterations is not None:
        base_iterations = (base.get("loop") or {}).get("iterations") or {}
        out += _iteration_overrides(dict(base_iterations), dict(new_iterations))
    return out
