"""`leap alfworld ...`: generate games, and check a games directory with the oracle."""

from __future__ import annotations

import time
from collections import Counter
from pathlib import Path

import typer

app = typer.Typer(
    help="ALFWorld games: generate them offline and check them on the real engine.", no_args_is_help=True
)


@app.command()
def generate(
    out: Path = typer.Option(Path("data/alfworld/games"), help="games root (replaced whole)"),
    seed: int = typer.Option(0),
    n_train: int = typer.Option(None, help="default: AlfworldParams"),
    n_valid: int = typer.Option(None),
    n_test: int = typer.Option(None),
    n_test_ood: int = typer.Option(None),
    max_receptacles: int = typer.Option(None),
    n_distractors: int = typer.Option(None),
    check_handcoded: bool = typer.Option(True, help="also require alfworld's handcoded expert to win"),
    quiet: bool = typer.Option(False),
) -> None:
    """Write ALFWorld-format games (official layout) from the alfworld package's domain and floor plans."""
    from leap.envs.alfworld.generate import generate as gen
    from leap.envs.alfworld.params import AlfworldParams

    overrides = {
        k: v
        for k, v in dict(
            n_train=n_train,
            n_valid=n_valid,
            n_test=n_test,
            n_test_ood=n_test_ood,
            max_receptacles=max_receptacles,
            n_distractors=n_distractors,
        ).items()
        if v is not None
    }
    params = AlfworldParams(games_dir=str(out), check_handcoded_expert=check_handcoded, **overrides)
    started = time.monotonic()
    manifest = gen(out, params, seed, progress=None if quiet else typer.echo)
    games = manifest["games"]
    lengths = [len(g["plan"]) for g in games]
    typer.echo(
        f"wrote {len(games)} games to {out} in {time.monotonic() - started:.1f}s; "
        f"per split {dict(Counter(g['split'] for g in games))}; "
        f"mean expert plan {sum(lengths) / max(1, len(lengths)):.1f} actions "
        f"(max {max(lengths, default=0)}); "
        f"rejected {manifest['rejected']}"
    )
    typer.echo("Note: ALFWorld-format games on the real engine, not the official splits.")


@app.command()
def check(
    directory: Path = typer.Argument(..., help="an official-layout dir (a games root, or one split dir)"),
    levels: str = typer.Option("4,0", help="oracle privilege levels to run, comma-separated"),
    horizon: int = typer.Option(30),
    verbose: bool = typer.Option(False, help="print every step of lost episodes"),
) -> None:
    """Load every game under DIRECTORY and play it with the oracle; print win counts per level."""
    from leap.envs.alfworld.env import AlfworldEnv
    from leap.envs.alfworld.play import find_games, play_oracle, task_for
    from leap.envs.base import EnvError

    games = find_games(directory)
    if not games:
        raise typer.BadParameter(f"no game.tw-pddl under {directory}")
    env = AlfworldEnv()
    try:
        for level in (int(x) for x in levels.split(",")):
            started = time.monotonic()
            wins: Counter[str] = Counter()
            totals: Counter[str] = Counter()
            steps = 0
            errors = 0
            for g in games:
                task = task_for(g)
                totals[task.category] += 1
                try:
                    ep = play_oracle(env, task, level, horizon)
                except EnvError as e:
                    errors += 1
                    typer.echo(f"  ERROR {g}: {e}")
                    continue
                wins[task.category] += ep.won
                steps += len(ep.labels)
                if verbose and not ep.won:
                    typer.echo(f"  lost {task.task_id}: {task.instruction}")
                    for lab in ep.labels:
                        typer.echo(f"    {lab.action} | {lab.reason}")
            per = ", ".join(f"{c} {wins[c]}/{totals[c]}" for c in sorted(totals))
            typer.echo(
                f"λ{level}: won {sum(wins.values())}/{len(games)} (errors {errors}), "
                f"mean {steps / len(games):.1f} actions, {time.monotonic() - started:.1f}s [{per}]"
            )
    finally:
        env.close()
