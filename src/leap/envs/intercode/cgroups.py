"""Per-command pids + memory limits with a cgroup (v2, or v1's per-controller hierarchies).

``ulimit -u`` (RLIMIT_NPROC) does nothing for uid 0, so a fork bomb run as root is only capped
by a pids cgroup. :func:`cgroup_factory` returns a :class:`CgroupFactory` where the host lets us
create cgroups (root, cgroupfs writable) and ``None`` otherwise; the sandbox then falls back to
RLIMIT_AS for memory and relies on the command timeout (killing the pid namespace) for processes.

Every command gets a *fresh* cgroup, removed when it ends. A shared one is not clean between
commands: the kernel releases a dead sandbox's pid-namespace init lazily (measured on Linux 6.18:
each finished command kept one pid charged for up to seconds, and a killed fork bomb many more),
so a later command, or the gold command scored right after, could fail with
``fork: retry: Resource temporarily unavailable``. Those charges stay with the removed cgroup.
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import time
from pathlib import Path

log = logging.getLogger(__name__)

CGROUP_FS = Path("/sys/fs/cgroup")
PREFIX = "leap-intercode-"


def _own_path(controller: str | None) -> str:
    """This process's cgroup path in the hierarchy of ``controller`` (None: the v2 hierarchy)."""
    for line in Path("/proc/self/cgroup").read_text().splitlines():
        _, ctrls, path = line.split(":", 2)
        if (controller is None and ctrls == "") or (controller and controller in ctrls.split(",")):
            return path
    raise OSError(f"no cgroup entry for {controller or 'v2'} in /proc/self/cgroup")


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


class CgroupLimits:
    """One cgroup (one per controller on v1) holding the processes of one command."""

    def __init__(self, dirs: list[Path], version: int) -> None:
        self.dirs = dirs
        self.version = version

    @property
    def procs_files(self) -> list[str]:
        """Files a process writes its pid to, to enter the cgroup(s)."""
        return [str(d / "cgroup.procs") for d in self.dirs]

    def pids(self) -> set[int]:
        out: set[int] = set()
        for d in self.dirs:
            with contextlib.suppress(OSError):
                out.update(int(p) for p in (d / "cgroup.procs").read_text().split())
        return out

    def kill_all(self, settle_s: float = 2.0) -> None:
        """SIGKILL every process left in the cgroup (a background job that outlived its pid namespace)."""
        deadline = time.monotonic() + settle_s
        while True:
            pids = self.pids()
            if not pids:
                return
            if self.version == 2 and (self.dirs[0] / "cgroup.kill").exists():
                with contextlib.suppress(OSError):
                    (self.dirs[0] / "cgroup.kill").write_text("1")
            for pid in pids:
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.kill(pid, signal.SIGKILL)
            if time.monotonic() > deadline:
                log.warning("processes %s survived SIGKILL in %s", sorted(pids), self.dirs)
                return
            time.sleep(0.01)

    def oom_killed(self) -> int:
        """How many OOM kills the memory cgroup has seen."""
        for d in self.dirs:
            for name in ("memory.events", "memory.oom_control"):
                f = d / name
                if f.exists():
                    for line in f.read_text().splitlines():
                        k, _, v = line.partition(" ")
                        if k == "oom_kill":
                            return int(v)
        return 0

    def remove(self) -> bool:
        """Kill what is left and remove the cgroup; False if some directory could not be removed."""
        self.kill_all()
        ok = True
        for d in self.dirs:
            try:
                d.rmdir()
            except FileNotFoundError:
                pass
            except OSError as e:
                log.warning("could not remove cgroup %s: %s", d, e)
                ok = False
        return ok


def _sweep_stale(parent: Path) -> None:
    """Remove cgroups left by dead processes (name: leap-intercode-<pid>-<n>)."""
    with contextlib.suppress(OSError):
        for d in parent.glob(PREFIX + "*"):
            try:
                pid = int(d.name[len(PREFIX) :].split("-")[0])
            except ValueError:
                continue
            if not _alive(pid):
                CgroupLimits([d], 2 if (d / "cgroup.kill").exists() else 1).remove()


_counter = 0


def _name() -> str:
    global _counter
    _counter += 1
    return f"{PREFIX}{os.getpid()}-{_counter}"


class CgroupFactory:
    """Where and how to make a command's cgroup: parent directories found (and checked) once."""

    def __init__(self, parents: dict[str, Path], version: int, memory_bytes: int, pids_max: int) -> None:
        self.parents = parents  # controller -> parent dir (v2: the single hierarchy under "")
        self.version = version
        self.memory_bytes = memory_bytes
        self.pids_max = pids_max
        self._leftover: list[CgroupLimits] = []

    @property
    def mechanism(self) -> str:
        return f"cgroup v{self.version}"

    def _limits(self, ctrl: str) -> tuple[dict[str, str], dict[str, str]]:
        """(required, optional) limit files for one controller's directory; optional ones are
        written where the kernel has them (swap accounting is often off)."""
        mem = str(self.memory_bytes)
        if self.version == 2:
            return {"pids.max": str(self.pids_max), "memory.max": mem}, {"memory.swap.max": "0"}
        if ctrl == "pids":
            return {"pids.max": str(self.pids_max)}, {}
        return {"memory.limit_in_bytes": mem}, {"memory.memsw.limit_in_bytes": mem}

    def new(self) -> CgroupLimits:
        """A fresh cgroup with the limits (raises OSError if it cannot be made)."""
        made: list[Path] = []
        name = _name()
        try:
            for ctrl, parent in self.parents.items():
                d = parent / name
                d.mkdir()
                made.append(d)
                required, optional = self._limits(ctrl)
                for k, v in required.items():
                    (d / k).write_text(v)
                for k, v in optional.items():
                    with contextlib.suppress(OSError):
                        (d / k).write_text(v)
        except OSError:
            for d in made:
                with contextlib.suppress(OSError):
                    d.rmdir()
            raise
        return CgroupLimits(made, self.version)

    def discard(self, cg: CgroupLimits) -> None:
        """Remove a command's cgroup; one that cannot be removed yet is retried by :meth:`close`."""
        if not cg.remove():
            self._leftover.append(cg)

    def close(self) -> None:
        self._leftover = [cg for cg in self._leftover if not cg.remove()]


def _enable_v2(base: Path) -> None:
    controllers = set((base / "cgroup.controllers").read_text().split())
    if not {"pids", "memory"} <= controllers:
        raise OSError(f"{base}: pids/memory controllers not available (have: {sorted(controllers)})")
    enabled = set((base / "cgroup.subtree_control").read_text().split())
    if not {"pids", "memory"} <= enabled:
        # EBUSY where the cgroup holds processes (v2's "no internal processes" rule).
        (base / "cgroup.subtree_control").write_text("+pids +memory")


def _parents_v2() -> dict[str, Path]:
    """Our own cgroup where it can hand pids + memory to children; else the root cgroup, which
    the no-internal-processes rule exempts (our own usually holds processes, or was not given
    the pids controller: seen on a Firecracker VM, whose service cgroup had only memory)."""
    own = CGROUP_FS / _own_path(None).lstrip("/")
    errors = []
    for base in dict.fromkeys([own, CGROUP_FS]):
        try:
            _enable_v2(base)
            return {"": base}
        except OSError as e:
            errors.append(f"{base}: {e}")
    raise OSError("; ".join(errors))


def _parents_v1() -> dict[str, Path]:
    parents = {}
    for ctrl in ("pids", "memory"):
        parent = CGROUP_FS / ctrl / _own_path(ctrl).lstrip("/")
        if not parent.is_dir():
            raise OSError(f"{parent}: not mounted")
        parents[ctrl] = parent
    return parents


def cgroup_factory(memory_bytes: int, pids_max: int) -> CgroupFactory | None:
    """A factory of per-command cgroups, or None (with a logged reason) where none can be made."""
    version = 2 if (CGROUP_FS / "cgroup.controllers").exists() else 1
    try:
        parents = _parents_v2() if version == 2 else _parents_v1()
        for parent in parents.values():
            _sweep_stale(parent)
        factory = CgroupFactory(parents, version, memory_bytes, pids_max)
        factory.new().remove()  # probe: permissions, limits files
        return factory
    except OSError as e:
        log.warning(
            "no usable cgroup (v%d: %s): memory is capped by RLIMIT_AS and processes only by the "
            "command timeout",
            version,
            e,
        )
        return None
