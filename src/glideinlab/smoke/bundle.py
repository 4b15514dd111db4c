"""Collect everything needed to debug a failed run into one directory and one tarball.

Per node: its HTCondor logs (site pool and CE instance), service logs, the factory's glidein logs
(the glideins' stdout/stderr come back there), plus the last observation of every queue and collector
as JSON.  Then the first error is looked for where the failed stage says to look first.
"""

from __future__ import annotations

import io
import json
import re
import subprocess
import tarfile
import time
from pathlib import Path

LOG_PATHS = ["/var/log/condor", "/var/log/condor-ce", "/var/log/glideinlab", "/var/log/gwms-factory",
             "/var/log/gwms-frontend", "/etc/condor/config.d", "/etc/condor-ce/config.d"]
# where a stage's first error usually is: (node, log file pattern) in order
WHERE = {
    "request": [("frontend-workspace", r"glideinlab/frontend\.log$"), ("factory-workspace", r"CollectorLog$")],
    "submitted": [("factory-workspace", r"glideinlab/factory\.log$"), ("factory-workspace", r"SchedLog$")],
    "ce_accepted": [("factory-workspace", r"GridmanagerLog"), ("ce-workspace", r"condor-ce/(Collector|Sched)Log$")],
    "worker_running": [("ce-workspace", r"JobRouterLog$"), ("ce-workspace", r"condor/SchedLog$")],
    "startd_joined": [("frontend-workspace", r"condor/CollectorLog$"),
                      ("factory-workspace", r"job\.\d+\.\d+\.(err|out)$")],
    "job_running": [("frontend-workspace", r"(Negotiator|Sched)Log$")],
    "jobs_done": [("frontend-workspace", r"(Shadow|Sched)Log$")],
    "drained": [("factory-workspace", r"glideinlab/factory\.log$")],
}
ERROR = re.compile(r"\b(ERROR|error|failed|FAILED|denied|DENIED|refused|Traceback|held|cannot|Cannot)\b")


def collect(ws, observation: dict, failed_stage: str, dest: str | None = None) -> tuple[Path, str, str]:
    """Write the bundle; return its path, what is down (if anything) and the first log error."""
    stamp = time.strftime("%Y%m%d-%H%M%S")
    out = Path(dest) if dest else ws.dir / "bundles" / f"smoke-{stamp}"
    out.mkdir(parents=True, exist_ok=True)
    (out / "observation.json").write_text(json.dumps(observation, indent=2, default=str))
    # a daemon or service that is down is the most direct cause there is
    statuses = ws.status(probe=True)
    (out / "status.json").write_text(json.dumps([vars(s) for s in statuses], indent=2, default=str))
    down = _down(statuses)
    files: dict[str, dict[str, str]] = {}
    for node in ws.spec.nodes:
        data = _tar(ws, node.service)
        (out / f"{node.service}.tar.gz").write_bytes(data)
        files[node.service] = _read_tar(data)
    for node, found in files.items():
        logdir = out / node
        for name, (_, text) in found.items():
            target = logdir / name.lstrip("/")
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_text(text)
    with tarfile.open(out.with_suffix(".tar.gz"), "w:gz") as tar:
        tar.add(out, arcname=out.name)
    return out, down, first_error(files, failed_stage)


def _down(statuses) -> str:
    for status in statuses:
        if status.container != "running":
            return f"{status.node}: container is {status.container}"
        for part in ("services", "daemons"):
            for name, result in (status.probe or {}).get(part, {}).items():
                if not result.get("ok"):
                    why = result.get("error") or result.get("state")
                    return f"{status.node}: {part[:-1]} {name} is not running ({why})"
    return ""


def _tar(ws, service: str) -> bytes:
    """The node's logs as a gzipped tar (bytes), read through the engine."""
    cid = ws.container_of(service)
    proc = subprocess.run([ws.engine.cli, "exec", cid, "sh", "-c",
                           "tar czf - " + " ".join(LOG_PATHS) + " 2>/dev/null; true"],
                          capture_output=True, timeout=120)
    return proc.stdout


def _read_tar(data: bytes) -> dict[str, tuple[float, str]]:
    """name -> (mtime, text) of every regular file in a gzipped tar."""
    found = {}
    try:
        with tarfile.open(fileobj=io.BytesIO(data), mode="r:gz") as tar:
            for member in tar.getmembers():
                if member.isfile() and member.size < 50_000_000:
                    fh = tar.extractfile(member)
                    if fh is not None:
                        found[member.name] = (member.mtime, fh.read().decode(errors="replace"))
    except (tarfile.TarError, EOFError):
        pass
    return found


def first_error(files: dict[str, dict[str, tuple[float, str]]], failed_stage: str) -> str:
    """The most recent error-looking line in the logs the failed stage points at (newest file first),
    else anywhere: what a developer would look at first."""
    places = WHERE.get(failed_stage, []) + [(node, r".") for node in files]
    for node, pattern in places:
        candidates = sorted(((mtime, name, text) for name, (mtime, text) in files.get(node, {}).items()
                             if re.search(pattern, name)), reverse=True)
        for _, name, text in candidates:
            for line in reversed(text.splitlines()):
                if ERROR.search(line) and "Daemon Log is logging" not in line:
                    return f"{node}:{name}: {line.strip()[:300]}"
    return ""
