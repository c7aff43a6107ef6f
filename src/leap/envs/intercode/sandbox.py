"""A bubblewrap sandbox for one InterCode episode (no Docker).

File system: the family layer and the Debian base root (rootfs.py) are the read-only lower dirs of
an overlay whose upper dir lives on a per-episode tmpfs (size-capped, so a command cannot fill the
host's disk). A *holder* process (``unshare --mount``) mounts the tmpfs and the overlay in a private
mount namespace and keeps it alive for the episode; the host never sees these mounts, and they
vanish with the holder (when the episode closes, or when this Python process dies: the holder
exits on EOF of its stdin).

Commands: each command runs in a fresh ``bwrap`` entered into that mount namespace (``nsenter``),
with the overlay as ``/`` and new ipc/pid/net/uts/cgroup namespaces, ``--die-with-parent
--new-session --clearenv``, a new /proc and /dev, /sys read-only, and ``--cap-drop ALL`` plus the
few file-ownership capabilities Docker also grants (chown, dac_override, fowner, fsetid, setuid,
setgid, kill: all confined to the sandbox's own file system and pid namespace). When the command's
shell exits, its pid namespace is torn down, so background processes never outlive a command.
Limits: a fresh pids + memory cgroup per command (cgroups.py; RLIMIT_AS where none can be made), RLIMIT_FSIZE,
a wall-clock timeout that kills the whole process group (and the cgroup), and an output cap.

The working directory persists across commands: the command runs as
``cd <cwd> || cd /; trap 'pwd >&3' EXIT`` then, on the next line, the command (so a syntax error
quotes the command alone; bash reports it as line 2), and fd 3 is a pipe back to the host. Shell variables do
not persist (as with InterCode's ``docker exec``); files do.
"""

from __future__ import annotations

import contextlib
import json
import os
import selectors
import shlex
import signal
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

from leap.envs.base import EnvError
from leap.envs.intercode.cgroups import CgroupFactory, CgroupLimits, cgroup_factory
from leap.envs.intercode.rootfs import FAMILY_ENV, FAMILY_SHELL, HOSTNAME, PATH_ENV, RootFS, require_host

# Docker's default capabilities minus those that reach outside a file system / pid namespace
# (mknod, net_raw, setfcap, setpcap, sys_chroot, audit_write, net_bind_service).
CAPS = ("CAP_CHOWN", "CAP_DAC_OVERRIDE", "CAP_FOWNER", "CAP_FSETID", "CAP_SETUID", "CAP_SETGID", "CAP_KILL")

_HOLDER = """\
set -e
mount -t tmpfs -o "size=$3,mode=0755" leap-episode "$1"
mkdir "$1/upper" "$1/work" "$1/root"
mount -t overlay overlay -o "lowerdir=$2,upperdir=$1/upper,workdir=$1/work" "$1/root"
echo ready
exec cat >/dev/null
"""


@dataclass(frozen=True)
class Limits:
    timeout_s: float = 10.0
    max_output_bytes: int = 65536
    memory_bytes: int = 1 << 30
    pids_max: int = 256
    file_size_bytes: int = 64 << 20
    scratch_bytes: int = 256 << 20


@dataclass
class CommandResult:
    output: str
    exit_code: int | None  # None: killed by us (timeout or output cap)
    cwd: str
    seconds: float
    timed_out: bool = False
    truncated: bool = False
    oom_killed: bool = False
    notes: list[str] = field(default_factory=list)


class SandboxHost:
    """Opens sandboxes; makes the cgroup each of their commands runs in."""

    def __init__(self, root: RootFS, limits: Limits) -> None:
        require_host()
        root.check()
        self.root = root
        self.limits = limits
        self.cgroups: CgroupFactory | None = cgroup_factory(limits.memory_bytes, limits.pids_max)
        self._n = 0

    @property
    def mechanism(self) -> str:
        return self.cgroups.mechanism if self.cgroups else "rlimits (no cgroup)"

    def open(self, family: int) -> Sandbox:
        self._n += 1
        return Sandbox(self, family, self.root.run_dir / f"{os.getpid()}-{id(self):x}-{self._n}")

    def close(self) -> None:
        if self.cgroups is not None:
            self.cgroups.close()


class Sandbox:
    """One episode's writable file system; :meth:`run` executes one command in it."""

    def __init__(self, host: SandboxHost, family: int, mountpoint: Path) -> None:
        self.host = host
        self.family = family
        self.cwd = "/"
        self.shell = FAMILY_SHELL[family]
        self._mnt = mountpoint
        _sweep_run_dir(mountpoint.parent)
        mountpoint.mkdir(parents=True)
        self._holder = subprocess.Popen(
            [
                "unshare",
                "--mount",
                "--propagation",
                "private",
                "--",
                "/bin/sh",
                "-c",
                _HOLDER,
                "leap-holder",
                str(mountpoint),
                host.root.lowerdir(family),
                str(host.limits.scratch_bytes),
            ],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            start_new_session=True,
        )
        assert self._holder.stdout is not None
        sel = selectors.DefaultSelector()
        sel.register(self._holder.stdout, selectors.EVENT_READ)
        ready = sel.select(timeout=10) and self._holder.stdout.readline().strip() == b"ready"
        sel.close()
        if not ready:
            self._kill_holder()
            err = self._holder.stderr.read().decode(errors="replace") if self._holder.stderr else ""
            with contextlib.suppress(OSError):
                mountpoint.rmdir()
            why = err.strip() or "timed out"
            raise EnvError(f"could not mount the episode's overlay at {mountpoint}: {why}")
        self._closed = False

    # -- commands ---------------------------------------------------------------------------------------

    def _bwrap_options(self) -> list[str]:
        env: dict[str, str] = {"PATH": PATH_ENV, "HOME": "/root", **FAMILY_ENV.get(self.family, {})}
        args = [
            "--bind",
            str(self._mnt / "root"),
            "/",
            "--proc",
            "/proc",
            "--dev",
            "/dev",
            "--ro-bind",
            "/sys",
            "/sys",
            "--unshare-ipc",
            "--unshare-pid",
            "--unshare-net",
            "--unshare-uts",
            "--unshare-cgroup-try",
            "--hostname",
            HOSTNAME,
            "--die-with-parent",
            "--new-session",
            "--clearenv",
            "--json-status-fd",
            "4",
            "--chdir",
            "/",
            "--cap-drop",
            "ALL",
        ]
        for cap in CAPS:
            args += ["--cap-add", cap]
        for k, v in env.items():
            args += ["--setenv", k, v]
        return args

    def _script(self, cwd: str, command: str) -> list[str]:
        # A line before the command: `cd` back to the episode's cwd, report the cwd at exit on fd 3.
        # (The command's own line comes second, so a syntax error in it quotes only its text.)
        preamble = f"cd {shlex.quote(cwd)} 2>/dev/null || cd /; trap 'pwd >&3' EXIT"
        return [self.shell, "-c", f"{preamble}\n{command}"]

    def run(self, command: str, *, cwd: str | None = None, track_cwd: bool = True) -> CommandResult:
        """Run ``command`` (in ``cwd``, default the episode's); update the episode's cwd if ``track_cwd``."""
        if self._closed:
            raise EnvError("sandbox is closed")
        factory = self.host.cgroups
        try:
            cg = factory.new() if factory else None
        except OSError as e:
            raise EnvError(f"could not create the command's cgroup: {e}") from e
        try:
            return self._run(command, cg, cwd=cwd, track_cwd=track_cwd)
        finally:
            if cg is not None and factory is not None:
                factory.discard(cg)  # kills anything left, then removes it

    def _run(
        self, command: str, cg: CgroupLimits | None, *, cwd: str | None, track_cwd: bool
    ) -> CommandResult:
        lim = self.host.limits
        cwd_r, cwd_w = os.pipe()
        st_r, st_w = os.pipe()
        # bwrap reads its options from fd 5 (`--args`), so the sandbox's `ps` shows no host paths.
        args_r, args_w = os.pipe()
        os.write(args_w, b"".join(a.encode() + b"\0" for a in self._bwrap_options()))  # < 4 KiB: no block
        os.close(args_w)
        enter = "".join(f"echo $$ > {shlex.quote(f)} || exit 125\n" for f in (cg.procs_files if cg else []))
        wrapper = f'{enter}exec 3>&{cwd_w} 4>&{st_w} 5<&{args_r} {cwd_w}>&- {st_w}>&- {args_r}<&-\nexec "$@"'
        prlimit = ["prlimit", f"--fsize={lim.file_size_bytes}"]
        if cg is None:
            prlimit += [f"--as={lim.memory_bytes}", f"--nproc={lim.pids_max}"]
        argv = [
            "/bin/bash",
            "-c",
            wrapper,
            "leap-sandbox",
            *prlimit,
            "--",
            "nsenter",
            f"--mount=/proc/{self._holder.pid}/ns/mnt",
            "--",
            "bwrap",
            "--args",
            "5",
            "--",
            *self._script(cwd or self.cwd, command),
        ]
        t0 = time.monotonic()
        try:
            proc = subprocess.Popen(
                argv,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                pass_fds=(cwd_w, st_w, args_r),
                start_new_session=True,
                # bwrap's pid 1 keeps the environment it was started with (readable as /proc/1/environ
                # in the sandbox): give it nothing from ours.
                env={"PATH": PATH_ENV},
            )
        finally:
            for fd in (cwd_w, st_w, args_r):
                os.close(fd)
        assert proc.stdout is not None
        out, status, cwd_txt, timed_out, truncated = self._collect(proc, cwd_r, st_r, t0, lim)
        exit_code = None if (timed_out or truncated) else proc.returncode
        seconds = time.monotonic() - t0
        if "child-pid" not in status:
            if exit_code == 125:
                raise EnvError(f"could not enter the sandbox cgroup {cg.procs_files if cg else ''}")
            if not timed_out:
                tail = out.decode(errors="replace")[-2000:]
                raise EnvError(f"the sandbox did not start (exit {exit_code}): {tail}")
        res = CommandResult(
            output=out.decode("utf-8", errors="replace"),
            exit_code=exit_code,
            cwd=self.cwd,
            seconds=seconds,
            timed_out=timed_out,
            truncated=truncated,
            oom_killed=bool(cg and cg.oom_killed()),
        )
        lines = [ln for ln in cwd_txt.decode("utf-8", errors="replace").splitlines() if ln.strip()]
        new_cwd = lines[-1] if lines else ""
        if track_cwd and new_cwd.startswith("/") and len(new_cwd) < 4096:
            self.cwd = res.cwd = new_cwd
        return res

    def _collect(
        self, proc: subprocess.Popen[bytes], cwd_r: int, st_r: int, t0: float, lim: Limits
    ) -> tuple[bytes, dict[str, object], bytes, bool, bool]:
        """Read output, cwd and bwrap status until all close; kill at the timeout or the output cap."""
        assert proc.stdout is not None
        out = bytearray()
        side = {cwd_r: bytearray(), st_r: bytearray()}
        out_fd = proc.stdout.fileno()
        open_fds = {out_fd, cwd_r, st_r}
        for fd in open_fds:
            os.set_blocking(fd, False)
        sel = selectors.DefaultSelector()
        for fd in open_fds:
            sel.register(fd, selectors.EVENT_READ)
        timed_out = truncated = False
        try:
            while open_fds:
                left = t0 + lim.timeout_s - time.monotonic()
                if left <= 0:
                    timed_out = True
                    break
                for key, _ in sel.select(timeout=min(left, 0.5)):
                    fd = key.fd
                    try:
                        chunk = os.read(fd, 65536)
                    except BlockingIOError:
                        continue
                    if not chunk:
                        sel.unregister(fd)
                        open_fds.discard(fd)
                    elif fd == out_fd:
                        out += chunk
                        if len(out) > lim.max_output_bytes:
                            truncated = True
                    elif len(side[fd]) < 65536:
                        side[fd] += chunk
                if truncated:
                    break
                if proc.poll() is not None and out_fd not in open_fds:
                    # The sandbox is gone; a process that escaped it could hold a pipe open: don't wait.
                    break
        finally:
            sel.close()
            if timed_out or truncated or proc.poll() is None:
                _killpg(proc)
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(timeout=5)
            if proc.poll() is None:
                _killpg(proc)
                proc.wait()
            proc.stdout.close()
            for fd in (cwd_r, st_r):
                with contextlib.suppress(OSError):
                    while True:
                        chunk = os.read(fd, 65536)
                        if not chunk or len(side[fd]) >= 65536:
                            break
                        side[fd] += chunk
                os.close(fd)
        status: dict[str, object] = {}
        for line in side[st_r].decode(errors="replace").splitlines():
            with contextlib.suppress(ValueError, TypeError):
                status.update(json.loads(line))
        return bytes(out[: lim.max_output_bytes]), status, bytes(side[cwd_r]), timed_out, truncated

    # -- lifetime ---------------------------------------------------------------------------------------

    def _kill_holder(self) -> None:
        with contextlib.suppress(OSError):
            if self._holder.stdin:
                self._holder.stdin.close()
        try:
            self._holder.wait(timeout=5)
        except subprocess.TimeoutExpired:
            _killpg(self._holder)
            self._holder.wait()

    def close(self) -> None:
        if getattr(self, "_closed", True):
            return
        self._closed = True
        self._kill_holder()
        for s in (self._holder.stdout, self._holder.stderr):
            if s:
                s.close()
        with contextlib.suppress(OSError):
            self._mnt.rmdir()

    def __enter__(self) -> Sandbox:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __del__(self) -> None:
        with contextlib.suppress(Exception):
            self.close()


def _killpg(proc: subprocess.Popen[bytes]) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(proc.pid, signal.SIGKILL)


def _sweep_run_dir(run_dir: Path) -> None:
    """Remove mount points left by dead processes (named <pid>-...; empty on the host)."""
    with contextlib.suppress(OSError):
        for d in run_dir.iterdir():
            pid = d.name.split("-")[0]
            if pid.isdigit() and not Path(f"/proc/{pid}").exists():
                with contextlib.suppress(OSError):
                    d.rmdir()
