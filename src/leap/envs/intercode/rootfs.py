"""The sandbox's root file systems: one Debian base root plus one layer per task family.

Layout under the root directory (``--root``, ``env.intercode.root_dir``, ``$LEAP_INTERCODE_ROOT``
or ``~/.cache/leap/intercode``)::

    base/            debootstrap --variant=minbase + the tools of InterCode's Dockerfiles
    layers/fs_<k>/   an overlay upper dir: family k's setup script run over base/, then
                     ``git init; git add -A; git commit`` at / (as nl2bash<k>.Dockerfile does)
    manifest.json    what was built, from what, how long it took, how big it is
    run/             per-episode mount points (empty on the host; see sandbox.py)

``build_root`` needs root, debootstrap, bubblewrap, util-linux (unshare, mount) and the Debian
mirror; it writes each part to a temporary name and renames it, so an interrupted build leaves
nothing that looks complete.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

from leap.envs.base import EnvError
from leap.io import write_json

FORMAT = 1
ROOT_ENV_VAR = "LEAP_INTERCODE_ROOT"
FAMILIES = (1, 2, 3, 4, 5)
# The tools apt-get installs in nl2bash{1..4}.Dockerfile (Ubuntu noble), in Debian's names, plus a few
# the Ubuntu base image has and minbase lacks (procps, file, lsof, openssl, netbase). fs_5's image is
# Alpine (busybox); it gets the same Debian root, with /bin/sh (dash) as its shell.
PACKAGES = (
    "bash",
    "python3",
    "psmisc",
    "bsdmainutils",
    "ncal",
    "cron",
    "imagemagick",
    "dnsutils",
    "git",
    "tree",
    "net-tools",
    "iputils-ping",
    "coreutils",
    "curl",
    "cpio",
    "jq",
    "netbase",
    "procps",
    "file",
    "lsof",
    "openssl",
)
FAMILY_SHELL = {1: "/bin/bash", 2: "/bin/bash", 3: "/bin/bash", 4: "/bin/bash", 5: "/bin/sh"}
# ENV lines of the Dockerfiles (docker exec passes them to every command).
FAMILY_ENV: dict[int, dict[str, str]] = {1: {"FILES": "/testbed/hello.c /testbed/FooBar.html"}}
PATH_ENV = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
HOSTNAME = "intercode"
REQUIRED_TOOLS = ("bwrap", "unshare", "nsenter", "mount", "prlimit")
INSTALL_HINT = "apt-get install -y bubblewrap debootstrap util-linux"

Log = Callable[[str], None]


def asset(name: str) -> Path:
    """A file of icalfa's docker assets (setup scripts, Dockerfiles, docker.gitignore)."""
    return Path(str(resources.files("icalfa.assets") / "docker" / name))


def default_root(root_dir: str | os.PathLike[str] | None = None) -> Path:
    if root_dir:
        return Path(root_dir).expanduser()
    env = os.environ.get(ROOT_ENV_VAR)
    return Path(env).expanduser() if env else Path.home() / ".cache" / "leap" / "intercode"


def require_host(*, build: bool = False) -> None:
    """Raise EnvError unless this host can run (or build) the sandbox."""
    if os.geteuid() != 0:
        raise EnvError(
            "the InterCode sandbox needs root (it mounts an overlay and creates cgroups); "
            "run as root, e.g. in a container or VM"
        )
    tools = REQUIRED_TOOLS + (("debootstrap",) if build else ())
    missing = [t for t in tools if shutil.which(t) is None]
    if missing:
        raise EnvError(f"the InterCode sandbox needs {', '.join(missing)}: {INSTALL_HINT}")


@dataclass(frozen=True)
class RootFS:
    path: Path

    @property
    def base(self) -> Path:
        return self.path / "base"

    def layer(self, family: int) -> Path:
        return self.path / "layers" / f"fs_{family}"

    @property
    def run_dir(self) -> Path:
        return self.path / "run"

    @property
    def manifest_path(self) -> Path:
        return self.path / "manifest.json"

    def lowerdir(self, family: int) -> str:
        return f"{self.layer(family)}:{self.base}"

    def manifest(self) -> dict[str, Any]:
        try:
            return json.loads(self.manifest_path.read_text())
        except (OSError, ValueError):
            return {}

    def check(self) -> None:
        """Raise EnvError (saying what to run) unless the base root and every layer are built."""
        hint = f"build it with `leap intercode build-root --root {self.path}` (as root; ~2 min, ~0.4 GB)"
        m = self.manifest()
        if not m:
            raise EnvError(f"no InterCode root file system at {self.path}: {hint}")
        if m.get("format") != FORMAT:
            raise EnvError(
                f"{self.manifest_path}: format {m.get('format')} != {FORMAT} (built by an older "
                f"leap): {hint} --force"
            )
        missing = [str(p) for p in [self.base, *(self.layer(k) for k in FAMILIES)] if not p.is_dir()]
        if missing:
            raise EnvError(
                f"incomplete InterCode root file system (missing {', '.join(missing)}): {hint} --force"
            )
        layers = m.get("layers", {})
        stale = [k for k in FAMILIES if layers.get(f"fs_{k}", {}).get("setup_sha256") != _setup_hash(k)]
        if stale:
            raise EnvError(
                f"InterCode family layers {stale} were built from other setup scripts than the "
                f"installed icalfa's: {hint} --force"
            )
        if any(c in str(self.path) for c in ":,"):
            raise EnvError(f"{self.path}: the root directory may not contain ':' or ',' (overlay options)")


def _setup_hash(family: int) -> str:
    h = hashlib.sha256()
    for name in (f"setup_nl2b_fs_{family}.sh", "docker.gitignore"):
        h.update(asset(name).read_bytes())
    return h.hexdigest()


def _du(path: Path) -> int:
    out = subprocess.run(["du", "-sb", str(path)], capture_output=True, text=True, check=True).stdout
    return int(out.split()[0])


def _run(cmd: list[str], what: str, log: Log, **kw: Any) -> None:
    res = subprocess.run(cmd, capture_output=True, text=True, **kw)
    if res.returncode != 0:
        tail = (res.stdout + res.stderr)[-3000:]
        raise EnvError(f"{what} failed (exit {res.returncode}):\n{tail}")


def _build_base(root: RootFS, mirror: str, suite: str, log: Log) -> None:
    tmp = root.path / "base.tmp"
    if tmp.exists():
        shutil.rmtree(tmp)
    log(f"debootstrap {suite} ({len(PACKAGES)} extra packages) from {mirror} ...")
    _run(
        ["debootstrap", "--variant=minbase", f"--include={','.join(PACKAGES)}", suite, str(tmp), mirror],
        "debootstrap",
        log,
    )
    # As the Dockerfiles' `apt-get clean && rm -rf /var/lib/apt/lists/*`.
    for d in (tmp / "var/cache/apt/archives", tmp / "var/lib/apt/lists"):
        for p in d.glob("*"):
            if p.is_file():
                p.unlink()
    (tmp / "etc/hostname").write_text(HOSTNAME + "\n")
    (tmp / "etc/hosts").write_text(
        f"127.0.0.1\tlocalhost\n127.0.1.1\t{HOSTNAME}\n::1\tlocalhost ip6-localhost ip6-loopback\n"
    )
    (tmp / "etc/resolv.conf").unlink(missing_ok=True)
    (tmp / "etc/resolv.conf").write_text("# no network in the sandbox\n")
    if root.base.exists():
        shutil.rmtree(root.base)
    tmp.rename(root.base)


# What nl2bash<k>.Dockerfile does after installing its tools (run as root at /, network off).
_LAYER_SCRIPT = """\
set -x
cd /
chmod +x /setup_nl2b_fs_{k}.sh
/setup_nl2b_fs_{k}.sh
git config --global user.email "intercode@pnlp.org"
git config --global user.name "intercode"
git init -q
git add -A
git commit -q -m 'initial commit'
"""


def _build_layer(root: RootFS, family: int, log: Log) -> None:
    layers = root.path / "layers"
    layers.mkdir(parents=True, exist_ok=True)
    upper, work, mnt = layers / f"fs_{family}.tmp", layers / f"fs_{family}.work", layers / f"fs_{family}.mnt"
    for p in (upper, work, mnt):
        if p.exists():
            shutil.rmtree(p)
        p.mkdir()
    # The Dockerfile COPYs these to / before running them; they end up in the image (and in git).
    shutil.copyfile(asset(f"setup_nl2b_fs_{family}.sh"), upper / f"setup_nl2b_fs_{family}.sh")
    shutil.copyfile(asset("docker.gitignore"), upper / ".gitignore")
    mount = 'mount -t overlay overlay -o "lowerdir=$1,upperdir=$2,workdir=$3" "$4" && shift 4 && exec "$@"'
    cmd = [
        "unshare",
        "--mount",
        "--propagation",
        "private",
        "--",
        "/bin/sh",
        "-c",
        mount,
        "sh",
        str(root.base),
        str(upper),
        str(work),
        str(mnt),
        "bwrap",
        "--bind",
        str(mnt),
        "/",
        "--proc",
        "/proc",
        "--dev",
        "/dev",
        "--unshare-all",
        "--die-with-parent",
        "--hostname",
        HOSTNAME,
        "--clearenv",
        "--setenv",
        "PATH",
        PATH_ENV,
        "--setenv",
        "HOME",
        "/root",
        "--chdir",
        "/",
        "--",
        "/bin/sh",
        "-c",
        _LAYER_SCRIPT.format(k=family),
    ]
    log(f"layer fs_{family}: running setup_nl2b_fs_{family}.sh and committing / ...")
    _run(cmd, f"building layer fs_{family}", log, timeout=600)
    shutil.rmtree(work, ignore_errors=True)
    mnt.rmdir()
    final = root.layer(family)
    if final.exists():
        shutil.rmtree(final)
    upper.rename(final)


def build_root(
    root_dir: str | os.PathLike[str] | None = None,
    *,
    mirror: str = "http://deb.debian.org/debian",
    suite: str = "bookworm",
    force: bool = False,
    log: Log = print,
) -> dict[str, Any]:
    """Build (or, with ``force``, rebuild) the base root and the family layers; return the manifest."""
    require_host(build=True)
    root = RootFS(default_root(root_dir))
    root.path.mkdir(parents=True, exist_ok=True)
    old = root.manifest()
    t0 = time.monotonic()
    timings: dict[str, float] = {}
    if force or not root.base.is_dir() or old.get("format") != FORMAT:
        root.manifest_path.unlink(missing_ok=True)
        _build_base(root, mirror, suite, log)
        old = {}
    timings["base_s"] = round(time.monotonic() - t0, 1)
    layers: dict[str, Any] = {}
    for k in FAMILIES:
        digest = _setup_hash(k)
        prev = old.get("layers", {}).get(f"fs_{k}", {})
        if force or not root.layer(k).is_dir() or prev.get("setup_sha256") != digest:
            t = time.monotonic()
            _build_layer(root, k, log)
            prev = {"setup_sha256": digest, "build_s": round(time.monotonic() - t, 2)}
        layers[f"fs_{k}"] = {**prev, "bytes": _du(root.layer(k))}
    root.run_dir.mkdir(exist_ok=True)
    manifest = {
        "format": FORMAT,
        "suite": old.get("suite", suite),
        "mirror": old.get("mirror", mirror),
        "packages": old.get("packages", list(PACKAGES)),
        "base_build_s": old.get("base_build_s", timings["base_s"]),
        "base_bytes": _du(root.base),
        "layers": layers,
        "built_at": old.get("built_at", time.strftime("%Y-%m-%dT%H:%M:%S%z")),
        "total_build_s": round(time.monotonic() - t0, 1),
    }
    write_json(root.manifest_path, manifest)
    root.check()
    return manifest
