"""One real workspace per test session: built, brought up, and always brought down.

The workspace gets a unique name (so it never collides with one a developer left running) and its own
state directory; on any failure the smoke test's log bundle, or `glideinlab logs`, tell what happened.
GLIDEINLAB_IT_WORKSPACE=<name> runs the suite against an existing workspace instead (left up);
GLIDEINLAB_KEEP=1 keeps the suite's own workspace for inspection.
"""

from __future__ import annotations

import json
import os
import sys
import tempfile
from pathlib import Path

import pytest

from glideinlab.workspace.backend import Workspace
from glideinlab.workspace.spec import WorkspaceSpec


def _progress(message: str) -> None:
    print(f"[workspace] {message}", file=sys.stderr, flush=True)


@pytest.fixture(scope="session")
def workspace():
    existing = os.environ.get("GLIDEINLAB_IT_WORKSPACE")
    if existing:  # a developer's running workspace: use it as it is, and leave it up
        ws = Workspace.load(existing)
        ws.up(progress=_progress)
        yield ws
        return
    home = Path(tempfile.mkdtemp(prefix="glideinlab-it-"))
    os.environ["GLIDEINLAB_HOME"] = str(home)
    name = f"it{os.getpid()}"
    ws = Workspace(WorkspaceSpec.create(name=name, workers=int(os.environ.get("GLIDEINLAB_IT_WORKERS", "1"))),
                   home=home)
    try:
        ws.up(progress=_progress)
        yield ws
    finally:
        if os.environ.get("GLIDEINLAB_KEEP"):
            _progress(f"keeping workspace {name} (GLIDEINLAB_HOME={home})")
        else:
            ws.down(volumes=True, progress=_progress)


class Node:
    """Run things inside one node of the test workspace."""

    def __init__(self, ws: Workspace, service: str):
        self.ws, self.service = ws, service

    def run(self, *cmd: str, user: str | None = None, env: dict | None = None, input: str | None = None):
        return self.ws.exec(self.service, list(cmd), user=user, env=env, capture=True, timeout=300, input=input)

    def python(self, code: str, user: str | None = None, env: dict | None = None):
        return self.run("python3", "-c", code, user=user, env=env)

    def json(self, code: str, user: str | None = None, env: dict | None = None):
        proc = self.python(code, user=user, env=env)
        assert proc.returncode == 0, proc.stderr[-2000:]
        return json.loads(proc.stdout.strip().splitlines()[-1])


@pytest.fixture(scope="session")
def nodes(workspace):
    return {n.service: Node(workspace, n.service) for n in workspace.spec.nodes}
