"""``glideinlab doctor``: preflight checks, each with a fix (kind's Known Issues, as a command)."""

from __future__ import annotations

import os
import shutil
import sys
from dataclasses import dataclass
from pathlib import Path

MIN_FREE_GB = 5.0  # images ~1.5 GB plus logs and spools
MIN_INOTIFY_WATCHES = 65536
MIN_INOTIFY_INSTANCES = 128


@dataclass
class Check:
    name: str
    ok: bool
    detail: str
    fix: str = ""


def _engine_checks() -> list[Check]:
    from ..errors import EngineError
    from ..workspace.engine import detect

    try:
        engine = detect()
    except EngineError as err:
        return [Check("container engine", False, str(err), err.hint or "")]
    checks = [Check("container engine", True, f"{engine.cli} is running"),
              Check("compose", True, engine.compose_flavour)]
    info = engine.run("info", "--format", "{{.DockerRootDir}}", check=False).stdout.strip()
    root = Path(info) if info and Path(info).exists() else Path("/")
    free = shutil.disk_usage(root).free / 1e9
    checks.append(Check(f"disk space under {root}", free >= MIN_FREE_GB, f"{free:.1f} GB free",
                        f"free at least {MIN_FREE_GB:.0f} GB (docker system prune removes unused images)"))
    return checks


def _sysctl(name: str) -> int | None:
    path = Path("/proc/sys") / name.replace(".", "/")
    try:
        return int(path.read_text().split()[0])
    except (OSError, ValueError):
        return None


def run_checks() -> list[Check]:
    checks = [Check("python", sys.version_info >= (3, 11), sys.version.split()[0], "use Python 3.11 or newer")]
    checks += _engine_checks()
    for name, minimum in (("fs.inotify.max_user_watches", MIN_INOTIFY_WATCHES),
                          ("fs.inotify.max_user_instances", MIN_INOTIFY_INSTANCES)):
        value = _sysctl(name)
        if value is not None:
            checks.append(Check(name, value >= minimum, str(value), f"sysctl -w {name}={minimum}"))
    checks.append(Check("debootstrap (first image build)", bool(shutil.which("debootstrap")),
                        shutil.which("debootstrap") or "not installed", "apt-get install debootstrap"))
    checks.append(Check("root (first image build)", os.geteuid() == 0,
                        "root" if os.geteuid() == 0 else f"uid {os.geteuid()}",
                        "run the first `glideinlab build` as root (debootstrap needs it)"))
    return checks
