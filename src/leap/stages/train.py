"""train: fit the student's LoRA adapter on the aggregated training set (SFT, DPO or KTO)."""

from __future__ import annotations

from typing import Any

from leap import paths
from leap.config import Params, TrainParams
from leap.io import read_jsonl, write_json
from leap.records import TrainExample
from leap.stages.common import sample_in_order, seed_everything


def iteration_train_params(train: TrainParams, iteration: int) -> TrainParams:
    """Iterations 1.. continue from the previous adapter: their own epochs and learning rate, if set."""
    if iteration == 0:
        return train
    update = {"epochs": train.iteration_epochs, "learning_rate": train.iteration_learning_rate}
    return train.model_copy(update={k: v for k, v in update.items() if v is not None})


def replay(
    examples: list[TrainExample], iteration: int, share: float | None, salt: str
) -> list[TrainExample]:
    """Every correction of ``iteration`` and ``share`` of the earlier training data (a seeded draw of
    whole demonstrations and whole corrected trajectories, which train as one packed row each; None:
    all of it, DAgger's whole aggregate).

    An iteration continues from the previous adapter, which has already learnt the earlier data:
    replaying a share of it keeps the adapter from drifting, while the new corrections, less diluted,
    set the direction (and the iteration costs a fraction of a pass over everything)."""
    if share is None:
        return examples
    units = list(
        dict.fromkeys((ex.iteration, ex.source, ex.task_id) for ex in examples if ex.iteration < iteration)
    )
    if not units:
        return examples
    keep = set(sample_in_order(units, max(1, round(share * len(units))), salt))
    return [
        ex for ex in examples if ex.iteration >= iteration or (ex.iteration, ex.source, ex.task_id) in keep
    ]


def run(params: Params, iteration: int) -> dict[str, Any]:
    """Writes models/iter_i and metrics/stages/train_i.json (with the loss history); returns them."""
    from leap.training import train_adapter

    seed_everything(params.seed + iteration, torch=True)
    examples = read_jsonl(paths.train_set(iteration), TrainExample)
    if iteration > 0:
        examples = replay(examples, iteration, params.train.replay, f"{params.seed}:replay:{iteration}")
    init = None
    if iteration > 0 and params.train.init_from == "previous":
        init = paths.model(params.loop.iterations[iteration])
    train_cfg = iteration_train_params(params.train, iteration)
    # Behaviour cloning has no rejected steps: iteration 0 is always SFT (as in the paper), and does
    # not read train.method, so the update-method ablation shares one BC student (DVC's run cache).
    method = "sft" if iteration == 0 else None
    launcher = (params.train.launcher, params.train.num_processes, params.train.accelerate_config)
    if launcher[0] == "accelerate":
        from leap.training.launch import launch

        if method is not None:
            train_cfg = train_cfg.model_copy(update={"method": method})
        res = launch(
            examples,
            params.student,
            train_cfg,
            paths.model(iteration),
            init_adapter=init,
            config=launcher[2],
            num_processes=launcher[1],
        )
    else:
        res = train_adapter(
            examples,
            params.student,
            train_cfg,
            out_dir=paths.model(iteration),
            init_adapter=init,
            progress=True,
            method=method,
        )
    write_json(paths.stage_metrics("train", iteration), res)
    return res
