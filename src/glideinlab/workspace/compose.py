"""The compose file of a workspace, rendered from its spec.

One file works unchanged with ``docker compose`` (v2), ``docker-compose`` (v1) and ``podman-compose``:
format 2.4 (v1 needs it for ``depends_on: condition: service_healthy``), no ``container_name`` (names
come from the project, so two workspaces never collide), no privileged mode, every resource labelled.
Ports are published only through the separate override file, on 127.0.0.1.
"""

from __future__ import annotations

import copy
from pathlib import Path

import yaml

from ..defaults import workspace as D
from .images import ImageSet, package_dir
from .spec import WorkspaceSpec

LABEL = "org.glideinlab"
NODE_PACKAGE_DIR = "/usr/lib/python3/dist-packages/glideinlab"
HEALTH = {
    "test": ["CMD", "python3", "-m", "glideinlab.node", "health"],
    # cheap (no HTCondor import), but it runs in every node: on a 2-core host with fuse-overlayfs a
    # shorter interval is measurable load. `up` waits on the authenticated probe, not on this.
    "interval": "5s", "timeout": "20s", "retries": 3, "start_period": "10s",
}


def labels(spec: WorkspaceSpec, **extra: str) -> dict[str, str]:
    return {f"{LABEL}.workspace": spec.name, **{f"{LABEL}.{k}": v for k, v in extra.items()}}


def render_compose(spec: WorkspaceSpec, images: ImageSet, state: Path) -> dict:
    network = "gwms"
    services = {}
    for node in spec.nodes:
        svc = {
            "image": images.role(node.role),
            "hostname": node.fqdn,
            "labels": labels(spec, node=node.service, role=node.role),
            "networks": {network: {"aliases": [node.fqdn]}},
            "volumes": [f"{state / 'nodes' / node.service}:/etc/glideinlab:ro"]
            + ([f"{package_dir()}:{NODE_PACKAGE_DIR}:ro"] if spec.code_mount else []),
            "healthcheck": copy.deepcopy(HEALTH),  # a shared dict would become YAML anchors
            "stop_grace_period": "10s",
            "init": False,  # supervisord is PID 1 and reaps children
        }
        if node.role == "worker":
            # the CE's pool must exist before workers join; glideins need the user pool and factory
            svc["depends_on"] = {"ce-workspace": {"condition": "service_started"}}
        services[node.service] = svc
    return {
        "version": "2.4",
        "services": services,
        "networks": {network: {"driver": "bridge", "labels": labels(spec)}},
    }


def render_ports(spec: WorkspaceSpec) -> dict:
    """Override file: publish on 127.0.0.1 only, upstream's CE 2xxxx / factory 3xxxx / frontend 4xxxx."""
    services = {}
    for service, ports in D.PUBLISHED_PORTS.items():
        services[service] = {"ports": [f"127.0.0.1:{host}:{inner}" for host, inner in ports.items()]}
    return {"version": "2.4", "services": services}


def write(data: dict, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("# Rendered by glideinlab from the workspace spec; edit the spec, not this file.\n"
                    + yaml.safe_dump(data, sort_keys=False))
    return path
