"""Render a spec into per-node directories that the containers mount read-only at /etc/glideinlab.

Each node directory holds that node's HTCondor config, supervisord programs, component YAML and only
its own share of the trust material.  Inside the container :mod:`glideinlab.node` installs them with
the right owners and modes at every start, then hands over to supervisord.
"""

from __future__ import annotations

import json
import shutil
import tempfile
from pathlib import Path

from ..defaults import workspace as D
from . import components, condor_config
from .spec import Node, WorkspaceSpec
from .trust import GLIDEIN_KEY_ID, POOL_KEY_ID, Trust

# Which trust files each role gets (path inside the node dir -> where it comes from).
#   users/<user>/tokens.d/* : per-user IDTOKENs; condor/tokens.d/* : the daemons' own tokens;
#   condor/passwords.d/POOL : the pool signing key (central managers only).


def render_workspace(spec: WorkspaceSpec, state: Path, trust: Trust) -> None:
    """(Re)write every node directory; trust must already exist."""
    nodes_dir = state / "nodes"
    for node in spec.nodes:
        render_node(node, spec, nodes_dir / node.service, trust)
    # nodes no longer in the spec (fewer workers) must not keep their keys and tokens around
    wanted = {node.service for node in spec.nodes}
    for stale in nodes_dir.iterdir():
        if stale.is_dir() and stale.name not in wanted:
            shutil.rmtree(stale)


def render_node(node: Node, spec: WorkspaceSpec, target: Path, trust: Trust) -> None:
    """Render into a scratch directory, then sync: a running container keeps its bind mount valid."""
    with tempfile.TemporaryDirectory(prefix="glideinlab-node-") as tmp:
        out = Path(tmp)
        _render_node_files(node, spec, out, trust)
        _sync(out, target)


def _render_node_files(node: Node, spec: WorkspaceSpec, out: Path, trust: Trust) -> None:
    meta = {"service": node.service, "role": node.role, "fqdn": node.fqdn, "workspace": spec.name,
            "profile": spec.profile, "instances": {k: list(v) for k, v in node.instances.items()},
            "services": list(node.services)}
    _text(out / "node.json", json.dumps(meta, indent=2) + "\n")
    for name, text in condor_config.pool_config(node, spec).items():
        _text(out / "condor" / "config.d" / name, text)
    if node.role == "ce":
        for name, text in condor_config.ce_config(node, spec).items():
            _text(out / "condor-ce" / "config.d" / name, text)
        _text(out / "condor-ce" / "condor_mapfile", condor_config.ce_mapfile(spec))
    for name, text in supervisor_programs(node).items():
        _text(out / "supervisor" / name, text)
    for name, text in components.component_configs(node, spec).items():
        _text(out / "components" / name, text)
    _install_trust(node, spec, out / "secrets", trust)


def _install_trust(node: Node, spec: WorkspaceSpec, out: Path, trust: Trust) -> None:
    _copy(trust.ca_cert, out / "ca.crt")
    _copy(trust.host_cert(node.fqdn), out / "host.crt")
    _copy(trust.host_key(node.fqdn), out / "host.key")
    if node.role in ("frontend", "factory", "ce"):  # central managers verify their pool's tokens
        _copy(trust.signing_key(node.service), out / "condor" / "passwords.d" / POOL_KEY_ID)
    if node.role == "frontend":  # ... and the user pool also the glideins' tokens
        _copy(trust.glidein_signing_key, out / "condor" / "passwords.d" / GLIDEIN_KEY_ID)
    if node.role == "worker":
        _copy(trust.token("worker-at-cepool"), out / "condor" / "tokens.d" / "worker")
    if node.role == "factory":
        _copy(trust.token("factory-at-wms"), out / "users" / "gfactory" / "tokens.d" / "factory-at-wms")
    if node.role == "frontend":
        user = out / "users" / "frontend"
        _copy(trust.token("frontend-at-wms"), user / "tokens.d" / "frontend-at-wms")
        _copy(trust.token("frontend-at-userpool"), user / "tokens.d" / "frontend-at-userpool")
        # the frontend mints the glideins' IDTOKENs itself, as upstream does (token_util), with the
        # glidein-only key: it never holds the pool key
        _copy(trust.glidein_signing_key, user / "passwords.d" / GLIDEIN_KEY_ID)
        _copy(trust.issuer_key, user / "issuer" / "issuer.pem")


def supervisor_programs(node: Node) -> dict[str, str]:
    """supervisord program sections: condor_master per HTCondor instance, then the Python services."""
    progs: dict[str, str] = {}
    for instance in node.instances:
        env = "CONDOR_CONFIG=/etc/condor-ce/condor_config" if instance == "ce" else "CONDOR_CONFIG=/etc/condor/condor_config"
        name = "condor-ce" if instance == "ce" else "condor"
        progs[f"10-{name}.conf"] = _program(name, "/usr/sbin/condor_master -f", env=env, stopsignal="QUIT")
    for service in node.services:
        command, user = SERVICE_COMMANDS[service](node)
        progs[f"20-{service}.conf"] = _program(service, command, user=user, env=SERVICE_ENV.get(service, ""))
    return progs


def _stage_http(node: Node) -> tuple[str, str]:
    user = "gfactory" if node.role == "factory" else "frontend"
    root = "/var/lib/gwms-factory/web-area" if node.role == "factory" else "/var/lib/gwms-frontend/web-area"
    return (f"/usr/bin/python3 -m http.server {D.STAGE_HTTP_PORT} --bind 0.0.0.0 --directory {root}", user)


SERVICE_COMMANDS = {
    "stage-http": _stage_http,
    "issuer": lambda node: ("/usr/bin/python3 -m glideinlab.issuer --config /etc/glideinlab/components/issuer.yaml",
                            "frontend"),
    "frontend": lambda node: ("/usr/bin/python3 -m glideinlab.frontend --config /etc/gwms-frontend/frontend.yaml",
                              "frontend"),
    "factory": lambda node: ("/usr/bin/python3 -m glideinlab.factory --config /etc/gwms-factory/factory.yaml",
                             "gfactory"),
}


# The daemons authenticate only with their IDTOKENs, so they have the same identity whether the
# collector they talk to is local or not (the server picks FS first, which would make the frontend
# frontend@<host> at its own collector).
SERVICE_ENV = {
    "frontend": "_condor_SEC_CLIENT_AUTHENTICATION_METHODS=\"IDTOKENS\"",
    "factory": "_condor_SEC_CLIENT_AUTHENTICATION_METHODS=\"IDTOKENS\"",
}


def _program(name: str, command: str, *, user: str = "root", env: str = "", stopsignal: str = "TERM") -> str:
    home = {"frontend": "/var/lib/gwms-frontend", "gfactory": "/var/lib/gwms-factory"}.get(user, "/root")
    environment = f"HOME=\"{home}\",USER=\"{user}\"" + (f",{env}" if env else "")
    return f"""\
[program:{name}]
command={command}
user={user}
environment={environment}
autorestart=true
startsecs=2
startretries=1000
stopsignal={stopsignal}
stopwaitsecs=20
redirect_stderr=true
stdout_logfile=/var/log/glideinlab/{name}.log
stdout_logfile_maxbytes=20MB
stdout_logfile_backups=2
"""


def _sync(src: Path, dst: Path) -> None:
    """Make dst a copy of src, touching only files whose content or mode differs."""
    dst.mkdir(parents=True, exist_ok=True)
    wanted = {p.relative_to(src) for p in src.rglob("*")}
    for rel in sorted(wanted):
        s, d = src / rel, dst / rel
        if s.is_dir():
            d.mkdir(exist_ok=True)
            continue
        if not d.exists() or d.read_bytes() != s.read_bytes():
            shutil.copyfile(s, d)
        d.chmod(s.stat().st_mode & 0o777)
    for p in sorted(dst.rglob("*"), reverse=True):
        if p.relative_to(dst) not in wanted:
            p.rmdir() if p.is_dir() else p.unlink()


def _text(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)


def _copy(src: Path, dst: Path) -> None:
    dst.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(src, dst)
    dst.chmod(0o600 if src.stat().st_mode & 0o077 == 0 else 0o644)
