"""The container engine and compose flavour on this machine, behind one small interface.

Docker (with ``docker compose`` v2 or ``docker-compose`` v1) and Podman (with ``podman-compose``) are
supported; the compose file is the same for all.  Every failure becomes a one-line
:class:`~glideinlab.errors.EngineError` that says what is missing and how to fix it.
"""

from __future__ import annotations

import json
import shutil
import subprocess
from dataclasses import dataclass
from functools import lru_cache

from ..errors import EngineError

INSTALL_HINT = ("install Docker Engine (Debian: apt-get install docker.io docker-compose) or Podman "
                "(apt-get install podman podman-compose)")


@dataclass(frozen=True)
class Engine:
    cli: str  # "docker" or "podman"
    compose: tuple[str, ...]  # e.g. ("docker", "compose") or ("docker-compose",)

    @property
    def compose_flavour(self) -> str:
        return {"docker compose": "compose v2", "docker-compose": "compose v1 (docker-compose)",
                "podman-compose": "podman-compose"}.get(" ".join(self.compose), " ".join(self.compose))

    def run(self, *args: str, check: bool = True, capture: bool = True, timeout: float | None = None,
            input: str | None = None) -> subprocess.CompletedProcess:
        return _run((self.cli, *args), check=check, capture=capture, timeout=timeout, input=input)

    def compose_run(self, files: list[str], project: str, *args: str, check: bool = True,
                    capture: bool = True, timeout: float | None = None) -> subprocess.CompletedProcess:
        cmd = [*self.compose, "-p", project]
        for f in files:
            cmd += ["-f", f]
        return _run((*cmd, *args), check=check, capture=capture, timeout=timeout)

    # -- queries by label (names differ between compose flavours; labels do not) --------------
    def containers(self, labels: dict[str, str], all: bool = True) -> list[dict]:
        args = ["ps", "--format", "{{json .}}"] + (["-a"] if all else [])
        for key, value in labels.items():
            args += ["--filter", f"label={key}={value}"]
        out = self.run(*args).stdout
        return [json.loads(line) for line in out.splitlines() if line.strip()]

    def inspect(self, ref: str) -> dict | None:
        proc = self.run("inspect", ref, check=False)
        if proc.returncode != 0:
            return None
        data = json.loads(proc.stdout)
        return data[0] if data else None

    def inspect_many(self, refs: list[str]) -> list[dict]:
        if not refs:
            return []
        proc = self.run("inspect", *refs, check=False)
        return json.loads(proc.stdout) if proc.stdout.strip() else []

    def image_exists(self, ref: str) -> bool:
        return self.run("image", "inspect", ref, check=False).returncode == 0


def _run(cmd, *, check: bool, capture: bool, timeout: float | None, input: str | None = None):
    try:
        proc = subprocess.run(list(cmd), capture_output=capture, text=True, timeout=timeout, input=input)
    except FileNotFoundError:
        raise EngineError(f"{cmd[0]} is not installed", hint=INSTALL_HINT) from None
    except subprocess.TimeoutExpired:
        raise EngineError(f"`{' '.join(cmd[:4])} ...` did not finish within {timeout:.0f} s") from None
    if check and proc.returncode != 0:
        err = (proc.stderr or proc.stdout or "").strip().splitlines()
        last = err[-1] if err else f"exit code {proc.returncode}"
        raise EngineError(f"`{' '.join(cmd[:4])} ...` failed: {last}")
    return proc


@lru_cache(maxsize=1)
def detect() -> Engine:
    """Find a working engine and compose; raise a one-line EngineError otherwise."""
    problems = []
    for cli in ("docker", "podman"):
        if not shutil.which(cli):
            problems.append(f"{cli}: not installed")
            continue
        proc = subprocess.run([cli, "info", "--format", "{{json .}}"], capture_output=True, text=True)
        if proc.returncode != 0:
            why = (proc.stderr.strip().splitlines() or ["not running"])[-1]
            problems.append(f"{cli}: {why}")
            continue
        compose = _compose_for(cli)
        if compose is None:
            problems.append(f"{cli}: no compose tool (docker compose, docker-compose or podman-compose)")
            continue
        return Engine(cli, compose)
    if all("not installed" in p for p in problems):
        raise EngineError("no container engine found (neither docker nor podman)", hint=INSTALL_HINT)
    raise EngineError("no usable container engine: " + "; ".join(problems),
                      hint="start the daemon (systemctl start docker) or install a compose tool")


def _compose_for(cli: str) -> tuple[str, ...] | None:
    if cli == "docker":
        if subprocess.run(["docker", "compose", "version"], capture_output=True).returncode == 0:
            return ("docker", "compose")
        if shutil.which("docker-compose"):
            return ("docker-compose",)
        return None
    return ("podman-compose",) if shutil.which("podman-compose") else None
