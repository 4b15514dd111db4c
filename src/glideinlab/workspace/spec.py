"""The declarative workspace: which nodes exist, what they run, and how they are named.

A :class:`WorkspaceSpec` is pure data (Mininet's ``Topo``); :mod:`glideinlab.workspace.render` turns it
into node configs and a compose file, and :mod:`glideinlab.workspace.backend` realises it with a
container engine (Kathará's managers).  Nothing here touches Docker or the disk.
"""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass, field

from ..config import apply_section
from ..defaults import workspace as D
from ..errors import ConfigError, UserError

ROLES = ("ce", "factory", "frontend", "worker")
_NAME_RE = re.compile(r"^[a-z][a-z0-9-]{0,30}$")

# What each role runs: HTCondor daemons (per HTCondor instance) and Python services.
ROLE_DAEMONS: dict[str, dict[str, tuple[str, ...]]] = {
    # HTCondor-CE layout: a CE instance on 9619 (collector + schedd + JobRouter) beside the site's
    # own batch pool on 9618 (collector + negotiator + schedd) whose startds run on the workers.
    "ce": {"ce": ("COLLECTOR", "SCHEDD", "JOB_ROUTER"), "pool": ("COLLECTOR", "NEGOTIATOR", "SCHEDD")},
    "factory": {"pool": ("COLLECTOR", "SCHEDD")},  # the WMS collector and the glidein schedd
    "frontend": {"pool": ("COLLECTOR", "NEGOTIATOR", "SCHEDD")},  # the user pool: CM + AP
    "worker": {"pool": ("STARTD",)},
}
ROLE_SERVICES: dict[str, tuple[str, ...]] = {
    "ce": (),
    "factory": ("factory", "stage-http"),
    "frontend": ("frontend", "stage-http", "issuer"),
    "worker": (),
}


@dataclass(frozen=True)
class Node:
    """One container: its compose service name (= short hostname), role and FQDN."""

    service: str
    role: str
    fqdn: str

    @property
    def instances(self) -> dict[str, tuple[str, ...]]:
        return ROLE_DAEMONS[self.role]

    @property
    def services(self) -> tuple[str, ...]:
        return ROLE_SERVICES[self.role]


@dataclass(frozen=True)
class Entry:
    """A factory entry the workspace configures: a CE queue with its site attributes."""

    name: str
    site: str
    ce: str  # service name of the CE node
    cpus: int = 1
    memory: int = 1024  # MB per glidein


@dataclass(frozen=True)
class WorkspaceSpec:
    name: str = "default"
    workers: int = 1
    htcondor: str = "23"
    profile: str = "fast"
    domain: str = "glideinwms.org"
    worker_cpus: int = 2
    worker_memory: int = 2048
    publish_ports: bool = False
    up_timeout: int = 300
    code_mount: bool = True
    entries: tuple[Entry, ...] = field(default_factory=tuple)

    @classmethod
    def create(cls, **given) -> "WorkspaceSpec":
        """Build a spec from user options, validating them against the workspace defaults."""
        given = {k: v for k, v in given.items() if v is not None}
        entries = given.pop("entries", None)
        values = apply_section(given, D.WORKSPACE, "options")
        if not _NAME_RE.fullmatch(values["name"]):
            raise ConfigError("options", "name", f"{values['name']!r} must match {_NAME_RE.pattern}")
        if not 1 <= values["workers"] <= 64:
            raise ConfigError("options", "workers", f"must be between 1 and 64, got {values['workers']}")
        if values["worker_cpus"] < 1 or values["worker_memory"] < 256:
            raise ConfigError("options", "worker_cpus/worker_memory", "need at least 1 core and 256 MB")
        spec = cls(**values, entries=tuple(entries) if entries else ())
        return spec if spec.entries else spec.with_default_entries()

    def with_default_entries(self) -> "WorkspaceSpec":
        # Two entries on the one CE with different sites, so site-restricted jobs can be tested.
        entries = (
            Entry("ce-workspace", "SiteA", "ce-workspace"),
            Entry("ce-workspace-siteb", "SiteB", "ce-workspace"),
        )
        return WorkspaceSpec(**{**self.to_dict(), "entries": entries})

    # -- naming -----------------------------------------------------------------------------
    @property
    def project(self) -> str:
        """Compose project name; also the prefix of every container, network and volume."""
        return f"glideinlab-{self.name}"

    @property
    def suite(self) -> str:
        return D.HTCONDOR_LINES[self.htcondor]

    def fqdn(self, service: str) -> str:
        return f"{service}.{self.domain}"

    @property
    def nodes(self) -> tuple[Node, ...]:
        fixed = [Node(s, r, self.fqdn(s)) for s, r in (
            ("ce-workspace", "ce"), ("factory-workspace", "factory"), ("frontend-workspace", "frontend"))]
        workers = [Node(f"worker-{i}", "worker", self.fqdn(f"worker-{i}")) for i in range(1, self.workers + 1)]
        return tuple(fixed + workers)

    def node(self, service: str) -> Node:
        for node in self.nodes:
            if node.service == service:
                return node
        valid = ", ".join(n.service for n in self.nodes)
        raise UserError(f"no node named {service!r} in workspace {self.name!r} (nodes: {valid})")

    def nodes_of(self, role: str) -> tuple[Node, ...]:
        return tuple(n for n in self.nodes if n.role == role)

    # -- persistence ------------------------------------------------------------------------
    def to_dict(self) -> dict:
        data = asdict(self)
        data["entries"] = [asdict(e) for e in self.entries]
        return data

    @classmethod
    def from_dict(cls, data: dict) -> "WorkspaceSpec":
        data = dict(data)
        entries = tuple(Entry(**e) for e in data.pop("entries", ()))
        return cls(**data, entries=entries)
