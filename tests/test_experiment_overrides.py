"""`leap exp run` turns an experiment definition into `dvc exp run -S` overrides: applied by DVC's
own Hydra code to params.yaml they must give exactly the params that `load_params` merges."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import yaml
from dvc.utils.hydra import apply_overrides

from leap.config import load_params
from leap.experiment_overrides import dvc_overrides

REPO = Path(__file__).resolve().parents[1]


@pytest.mark.parametrize("exp", sorted((REPO / "experiments").glob("*.yaml")), ids=lambda p: p.name)
def test_overrides_applied_by_dvc_give_the_merged_params(exp: Path, tmp_path: Path) -> None:
    params = tmp_path / "params.yaml"
    shutil.copy(REPO / "params.yaml", params)
    apply_overrides(str(params), dvc_overrides(REPO / "params.yaml", exp))
    via_dvc = load_params(params)  # refuses integer iteration keys, which DVC's foreach would skip
    assert via_dvc.model_dump() == load_params(REPO / "params.yaml", exp).model_dump()


@pytest.mark.parametrize(
    ("iterations", "expected"),
    [
        ("{'1': 0}", ["loop.iterations.1=0", "~loop.iterations.2"]),
        ("{'1': 0, '2': 1, '3': 2}", ["loop.iterations.1=0", "loop.iterations.2=1", "+loop.iterations.3=2"]),
    ],
)
def test_iterations_are_replaced_whole_with_string_keys(
    iterations: str, expected: list[str], tmp_path: Path
) -> None:
    # A base with two iterations, whatever the shipped default is, so the expected overrides hold.
    raw = yaml.safe_load((REPO / "params.yaml").read_text())
    raw["loop"]["iterations"] = {"1": 0, "2": 1}
    reference = tmp_path / "reference.yaml"
    reference.write_text(yaml.safe_dump(raw))
    base = tmp_path / "params.yaml"
    shutil.copy(reference, base)
    exp = tmp_path / "exp.yaml"
    exp.write_text(f"loop:\n  iterations: {iterations}\ntracking:\n  run_name: 'a b: c'\n")
    ov = dvc_overrides(base, exp)
    assert [o for o in ov if "iterations" in o] == expected
    apply_overrides(str(base), ov)
    p = load_params(base)  # int keys in the file would be refused here
    assert p.loop.iterations == load_params(reference, exp).loop.iterations
    assert p.tracking.run_name == "a b: c"
