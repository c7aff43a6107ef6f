"""The webshop environment (its registration; data, search index and tagger load lazily).

A pure-Python WebShop (princeton-nlp/WebShop) over WebShop-format data: see README.md here.
"""

from __future__ import annotations

from pathlib import Path

from leap.envs.base import Environment, TaskSource, register
from leap.envs.webshop.params import WebshopParams


def make_env(params: WebshopParams, horizon: int) -> Environment:
    from leap.envs.webshop.env import WebshopEnv

    return WebshopEnv(params, horizon=horizon)


def make_tasks(params: WebshopParams, seed: int) -> TaskSource:
    from leap.envs.webshop.tasks import WebshopTaskSource

    return WebshopTaskSource(params, seed)


register(
    "webshop",
    make_env=make_env,
    make_tasks=make_tasks,
    params=WebshopParams,
    oracle="leap.envs.webshop.oracle:webshop_oracle",
    prompts_dir=Path(__file__).parent / "prompts",
)
