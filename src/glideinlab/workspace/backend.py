"""A workspace realised by a container engine, with an explicit lifecycle.

States follow HTCondor's ``PersonalPool``: ABSENT (nothing exists) → READY (every node healthy and every
daemon answering an authenticated query) → STOPPED (containers exist but are not running) or DEGRADED
(something is running but not healthy).  ``up`` and ``down`` are idempotent: ``up`` on a READY workspace
changes nothing, ``down`` on an ABSENT one does nothing.
"""

from __future__ import annotations

import enum
import json
import os
import shutil
import socket
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from ..defaults import workspace as D
from ..errors import UserError
from . import compose, images
from .engine import Engine, detect
from .render import render_workspace
from .spec import WorkspaceSpec
from .trust import Trust

Progress = Callable[[str], None]


class State(str, enum.Enum):
    ABSENT = "absent"
    STOPPED = "stopped"
    DEGRADED = "degraded"
    READY = "ready"


def state_home() -> Path:
    env = os.environ.get("GLIDEINLAB_HOME")
    if env:
        return Path(env)
    base = os.environ.get("XDG_STATE_HOME") or str(Path.home() / ".local" / "state")
    return Path(base) / "glideinlab"


@dataclass
class NodeStatus:
    node: str
    role: str
    container: str  # container state: running, exited, missing ...
    health: str  # healthy, starting, unhealthy, none
    probe: dict | None = None

    @property
    def ok(self) -> bool:
        return self.container == "running" and bool(self.probe and self.probe.get("ok"))


class Workspace:
    """One workspace: its spec, its state directory and the engine that realises it."""

    def __init__(self, spec: WorkspaceSpec, engine: Engine | None = None, home: Path | None = None):
        self.spec = spec
        self._engine = engine
        self.dir = (home or state_home()) / spec.name
        self.trust = Trust(self.dir / "secrets", spec)
        self.images = images.ImageSet(images.image_prefix(), spec.suite)

    @property
    def engine(self) -> Engine:
        if self._engine is None:
            self._engine = detect()
        return self._engine

    # -- spec persistence: `status`, `down`, `exec` find the workspace by name ----------------
    @property
    def spec_file(self) -> Path:
        return self.dir / "spec.json"

    @classmethod
    def load(cls, name: str, home: Path | None = None) -> "Workspace":
        path = (home or state_home()) / name / "spec.json"
        if not path.exists():
            raise UserError(f"no workspace named {name!r} (run `glideinlab up --name {name}` first)")
        return cls(_read_spec(path), home=home)

    @property
    def compose_files(self) -> list[str]:
        files = [str(self.dir / "compose.yml")]
        if self.spec.publish_ports:
            files.append(str(self.dir / "compose.ports.yml"))
        return files

    # -- lifecycle ------------------------------------------------------------------------------
    def containers(self) -> list[dict]:
        return self.engine.containers(compose.labels(self.spec))

    def state(self) -> State:
        found = self.containers()
        if not found:
            return State.ABSENT
        if not any(c.get("State") == "running" for c in found):
            return State.STOPPED
        statuses = self.status(probe=True)
        return State.READY if all(s.ok for s in statuses) else State.DEGRADED

    def prepare(self, progress: Progress) -> None:
        """Trust, images and rendered files: everything `up` needs before starting containers."""
        created = self.trust.ensure()
        if created:
            progress(f"generated workspace trust: {len(created)} items (CA, host certs, keys, tokens)")
        # With the code mounted, images only need to exist; otherwise the code layer must be current
        # (every other layer is cached, so this is one COPY per role when the code changed).
        if not self.spec.code_mount or not images.all_present(self.engine, self.images):
            images.build(self.engine, self.images, progress=progress)
        render_workspace(self.spec, self.dir, self.trust)
        compose.write(compose.render_compose(self.spec, self.images, self.dir), self.dir / "compose.yml")
        compose.write(compose.render_ports(self.spec), self.dir / "compose.ports.yml")
        self.spec_file.write_text(json.dumps(self.spec.to_dict(), indent=2) + "\n")

    def up(self, progress: Progress = print) -> float:
        """Bring the workspace to READY; returns the seconds it took."""
        t0 = time.monotonic()
        self._check_same_spec()
        if self.state() is State.READY:
            progress(f"workspace {self.spec.name} is already up; nothing to do")
            return time.monotonic() - t0
        if self.spec.publish_ports:
            self._check_ports()
        self.dir.mkdir(parents=True, exist_ok=True)
        self.prepare(progress)
        progress(f"starting {len(self.spec.nodes)} nodes ({self.engine.compose_flavour})")
        self.engine.compose_run(self.compose_files, self.spec.project, "up", "-d", "--remove-orphans",
                                timeout=600)
        self.wait_ready(progress)
        return time.monotonic() - t0

    def _check_same_spec(self) -> None:
        if not self.spec_file.exists():
            return
        saved = _read_spec(self.spec_file)
        if saved != self.spec and self.containers():
            diff = ", ".join(f"{k}={getattr(saved, k)!r}" for k in saved.to_dict()
                             if getattr(saved, k) != getattr(self.spec, k))
            raise UserError(f"workspace {self.spec.name!r} exists with {diff}",
                            hint=f"run `glideinlab down --name {self.spec.name}` first, or use another --name")

    def _check_ports(self) -> None:
        for service, ports in D.PUBLISHED_PORTS.items():
            for host_port in ports:
                with socket.socket() as sock:
                    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
                    try:
                        sock.bind(("127.0.0.1", host_port))
                    except OSError:
                        raise UserError(f"port 127.0.0.1:{host_port} (node {service}) is already in use",
                                        hint="stop what uses it, or run without --publish-ports") from None

    def wait_ready(self, progress: Progress, timeout: float | None = None) -> None:
        """Wait until every daemon of every node answers an authenticated query and every service runs.

        The authenticated probe is the readiness gate (kind #2893: define "ready" and check it from the
        host side); the engine's healthcheck is only a cheap liveness signal for `docker ps`.
        """
        timeout = timeout or self.spec.up_timeout
        deadline = time.monotonic() + timeout
        last = ""
        while True:
            statuses = self.status(probe=True)
            dead = [s for s in statuses if s.container not in ("running", "created", "restarting")]
            if dead:
                raise UserError(f"node {dead[0].node} is {dead[0].container}",
                                hint=f"see `glideinlab logs {dead[0].node} --name {self.spec.name}`")
            bad = [s for s in statuses if not s.ok]
            if not bad:
                progress(f"nodes ready: {len(statuses)}/{len(statuses)}")
                return
            line = f"nodes ready: {len(statuses) - len(bad)}/{len(statuses)} (waiting for {_first_problem(bad[0])})"
            if line != last:
                progress(line)
                last = line
            if time.monotonic() > deadline:
                raise UserError(f"workspace not ready after {timeout:.0f} s: {_first_problem(bad[0])}",
                                hint=f"see `glideinlab status --name {self.spec.name}` and `glideinlab logs`")
            time.sleep(1.0)

    def down(self, volumes: bool = False, progress: Progress = print) -> None:
        if (self.dir / "compose.yml").exists():
            args = ["down", "--remove-orphans", "-t", "10"] + (["-v"] if volumes else [])
            self.engine.compose_run(self.compose_files, self.spec.project, *args, check=False, timeout=300)
        # whatever compose missed (a crashed run, another flavour): remove by label
        for c in self.containers():
            self.engine.run("rm", "-f", c["ID"], check=False)
        nets = self.engine.run("network", "ls", "-q", "--filter",
                               f"label={compose.LABEL}.workspace={self.spec.name}").stdout.split()
        for net in nets:
            self.engine.run("network", "rm", net, check=False)
        if volumes:
            vols = self.engine.run("volume", "ls", "-q", "--filter",
                                   f"label={compose.LABEL}.workspace={self.spec.name}").stdout.split()
            for vol in vols:
                self.engine.run("volume", "rm", "-f", vol, check=False)
            shutil.rmtree(self.dir, ignore_errors=True)  # trust and rendered configs too: a clean slate
        progress(f"workspace {self.spec.name} is down")

    # -- inspection -----------------------------------------------------------------------------
    def container_of(self, service: str) -> str:
        self.spec.node(service)  # clear error for an unknown node
        found = self.engine.containers(compose.labels(self.spec, node=service))
        if not found:
            raise UserError(f"node {service} has no container (is workspace {self.spec.name!r} up?)")
        return found[0]["ID"]

    def status(self, probe: bool = True) -> list[NodeStatus]:
        by_node = {}
        ids = [c["ID"] for c in self.containers()]
        for info in self.engine.inspect_many(ids):  # one engine call: each call is slow on a busy host
            node = info.get("Config", {}).get("Labels", {}).get(f"{compose.LABEL}.node")
            by_node[node] = info
        out = []
        for node in self.spec.nodes:
            info = by_node.get(node.service)
            if not info:
                out.append(NodeStatus(node.service, node.role, "missing", "none"))
                continue
            st = info.get("State", {})
            health = (st.get("Health") or {}).get("Status", "none")
            out.append(NodeStatus(node.service, node.role, st.get("Status", "?"), health))
        if probe:
            running = [s for s in out if s.container == "running"]
            with ThreadPoolExecutor(max_workers=max(1, len(running))) as pool:
                for status, report in zip(running, pool.map(
                        lambda s: self._probe(by_node[s.node]["Id"]), running)):
                    status.probe = report
        return out

    def _probe(self, container: str) -> dict:
        proc = self.engine.run("exec", container, "python3", "-m", "glideinlab.node", "probe", check=False,
                               timeout=90)
        try:
            return json.loads(proc.stdout)
        except json.JSONDecodeError:
            return {"ok": False, "error": (proc.stderr or proc.stdout).strip()[-300:]}

    def exec(self, service: str, cmd: list[str], user: str | None = None, tty: bool = False,
             env: dict[str, str] | None = None, capture: bool = False, check: bool = False, timeout=None,
             input: str | None = None):
        args = ["exec"] + (["-it"] if tty else (["-i"] if input is not None else []))
        if user:
            args += ["-u", user]
        for k, v in (env or {}).items():
            args += ["-e", f"{k}={v}"]
        args += [self.container_of(service), *cmd]
        return self.engine.run(*args, capture=capture, check=check, timeout=timeout, input=input)


def _read_spec(path: Path) -> WorkspaceSpec:
    try:
        return WorkspaceSpec.from_dict(json.loads(path.read_text()))
    except (OSError, ValueError, TypeError) as exc:
        name = path.parent.name
        raise UserError(f"cannot read {path}: {exc}",
                        hint=f"run `glideinlab down --volumes --name {name}` and `up` again") from None


def _first_problem(status: NodeStatus) -> str:
    probe = status.probe or {}
    if not probe:
        return f"{status.node}: container {status.container}, health {status.health}"
    for part in ("daemons", "services"):
        for name, result in probe.get(part, {}).items():
            if not result.get("ok"):
                return f"{status.node} {name}: {result.get('error') or result.get('state')}"
    return f"{status.node}: {probe.get('error', 'not ok')}"
