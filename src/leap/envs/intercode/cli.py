"""`leap intercode ...`: build the sandbox root, check the gold commands, run a command in a sandbox."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Annotated

import typer

app = typer.Typer(help="InterCode-Bash: sandbox root file system and checks.", no_args_is_help=True)

RootOpt = Annotated[
    Path | None,
    typer.Option(
        "--root", help="root file system directory (default: $LEAP_INTERCODE_ROOT or ~/.cache/leap/intercode)"
    ),
]


@app.command("build-root")
def build_root_cmd(
    root: RootOpt = None,
    mirror: Annotated[str, typer.Option(help="Debian mirror")] = "http://deb.debian.org/debian",
    suite: Annotated[str, typer.Option(help="Debian suite")] = "bookworm",
    force: Annotated[bool, typer.Option("--force", help="rebuild everything")] = False,
) -> None:
    """Build the Debian base root (debootstrap, as root) and the five family layers; print the manifest."""
    from leap.envs.base import EnvError
    from leap.envs.intercode.rootfs import build_root

    t0 = time.monotonic()
    try:
        manifest = build_root(root, mirror=mirror, suite=suite, force=force, log=typer.echo)
    except EnvError as e:
        typer.echo(f"error: {e}", err=True)
        raise typer.Exit(1) from None
    layers = sum(v["bytes"] for v in manifest["layers"].values())
    typer.echo(json.dumps(manifest, indent=1))
    typer.echo(
        f"base root: {manifest['base_bytes'] / 1e6:.0f} MB, layers: {layers / 1e6:.1f} MB, "
        f"this run: {time.monotonic() - t0:.1f} s"
    )


@app.command("check-gold")
def check_gold_cmd(
    root: RootOpt = None,
    limit: Annotated[int | None, typer.Option(help="check only the first N tasks")] = None,
    family: Annotated[int | None, typer.Option(help="only family k (1..5)")] = None,
    out: Annotated[Path | None, typer.Option(help="write per-task results (JSON) here")] = None,
) -> None:
    """Run each task's gold command as the agent, submit, and count the tasks scoring 1.0."""
    from leap.envs.base import EnvError
    from leap.envs.intercode.env import InterCodeEnv
    from leap.envs.intercode.params import IntercodeParams
    from leap.envs.intercode.tasks import load_records, make_task

    recs = [r for r in load_records() if family is None or r["family"] == family][:limit]
    params = IntercodeParams(root_dir=str(root) if root else None, score_every_step=False)
    env = InterCodeEnv(params, horizon=2)
    results = []
    t0 = time.monotonic()
    try:
        for rec in recs:
            task = make_task(rec, "all")
            env.reset(task)
            env.step(rec["gold"])
            _, reward, _, _, info = env.step("submit")
            results.append(
                {
                    "task_id": task.task_id,
                    "gold": rec["gold"],
                    "score": reward,
                    "components": info["score_components"],
                }
            )
            if reward != 1.0:
                typer.echo(f"  {task.task_id}: {reward:.2f} {info['score_components']}  gold: {rec['gold']}")
    except EnvError as e:
        typer.echo(f"error: {e}", err=True)
        raise typer.Exit(1) from None
    finally:
        env.close()
    secs = time.monotonic() - t0
    n_ok = sum(r["score"] == 1.0 for r in results)
    typer.echo(
        f"gold scores 1.0 on {n_ok}/{len(results)} tasks ({secs:.1f} s, "
        f"{secs / max(1, len(results)):.3f} s per scored episode)"
    )
    if out:
        from leap.io import write_json

        write_json(out, {"n": len(results), "n_success": n_ok, "seconds": round(secs, 1), "tasks": results})


@app.command("exec")
def exec_cmd(
    commands: Annotated[list[str], typer.Argument(help="commands, run in order in one episode")],
    root: RootOpt = None,
    family: Annotated[int, typer.Option(help="task family file system (1..5)")] = 1,
) -> None:
    """Run commands in a fresh sandbox of a family's file system (debugging aid)."""
    from leap.envs.base import EnvError
    from leap.envs.intercode.env import limits_from
    from leap.envs.intercode.params import IntercodeParams
    from leap.envs.intercode.rootfs import RootFS, default_root
    from leap.envs.intercode.sandbox import SandboxHost

    params = IntercodeParams()
    try:
        host = SandboxHost(RootFS(default_root(root)), limits_from(params))
    except EnvError as e:
        typer.echo(f"error: {e}", err=True)
        raise typer.Exit(1) from None
    typer.echo(f"[process and memory limits: {host.mechanism}]", err=True)
    try:
        with host.open(family) as sb:
            for c in commands:
                res = sb.run(c)
                flags = "".join(f", {k}" for k in ("timed_out", "truncated", "oom_killed") if getattr(res, k))
                typer.echo(f"{res.cwd}$ {c}   [exit {res.exit_code}, {res.seconds * 1000:.0f} ms{flags}]")
                typer.echo(res.output, nl=False)
    finally:
        host.close()
