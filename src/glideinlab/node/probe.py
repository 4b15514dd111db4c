"""Health of one node: every HTCondor daemon answers an authenticated query; every service runs.

HTCondor is asked through the bindings (``directQuery`` reaches the daemon itself, so an answer proves
the daemon is up *and* that we authenticated to it).  Each HTCondor instance is probed in its own
subprocess because the bindings read CONDOR_CONFIG once per process.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

CONFIGS = {"pool": "/etc/condor/condor_config", "ce": "/etc/condor-ce/condor_config"}


def probe_instance(instance: str) -> dict[str, dict]:
    """Run inside a process whose CONDOR_CONFIG selects ``instance``; returns {daemon: result}."""
    import htcondor2

    daemons = [d for d in htcondor2.param["DAEMON_LIST"].replace(",", " ").split() if d != "MASTER"]
    results: dict[str, dict] = {}
    try:
        collector = htcondor2.Collector()
        collector.query(htcondor2.AdTypes.Collector, projection=["Name"])
        coll_ok = {"ok": True}
    except Exception as exc:  # the collector may be remote (workers) or still starting
        coll_ok = {"ok": False, "error": _short(exc)}
    checks = {
        "SCHEDD": (htcondor2.DaemonTypes.Schedd, htcondor2.AdTypes.Schedd, htcondor2.param.get("SCHEDD_NAME")),
        "STARTD": (htcondor2.DaemonTypes.Startd, htcondor2.AdTypes.Startd, _startd_name(htcondor2)),
        "NEGOTIATOR": (htcondor2.DaemonTypes.Negotiator, htcondor2.AdTypes.Negotiator, None),
    }
    for daemon in daemons:
        if daemon == "COLLECTOR":
            results[daemon] = coll_ok
        elif daemon in checks:
            results[daemon] = _direct_query(htcondor2, collector, *checks[daemon])
        elif daemon == "JOB_ROUTER":
            results[daemon] = _job_router(htcondor2, collector)
    return results


def _direct_query(htcondor2, collector, daemon_type, ad_type, name) -> dict:
    """Ask the daemon itself for its own ad (locate via the collector, then query the daemon)."""
    try:
        location = collector.locate(daemon_type, name)
        ads = htcondor2.Collector(location).query(ad_type, projection=["Name"])
    except Exception as exc:
        return {"ok": False, "error": _short(exc)}
    if not ads:
        return {"ok": False, "error": f"{name or daemon_type.name} answered with no ad"}
    return {"ok": True, "name": ads[0].get("Name")}


def _startd_name(htcondor2) -> str | None:
    name = htcondor2.param.get("STARTD_NAME")
    if not name:
        return None
    return name if "@" in name else f"{name}@{htcondor2.param['FULL_HOSTNAME']}"


def _job_router(htcondor2, collector) -> dict:
    """The JobRouter has no query command of its own; it advertises a Generic ad every cycle."""
    try:
        ads = collector.query(htcondor2.AdTypes.Any, constraint='MyType == "Job_Router"',
                              projection=["Name", "MyAddress"])
    except Exception as exc:
        return {"ok": False, "error": _short(exc)}
    return {"ok": bool(ads), **({} if ads else {"error": "no Job_Router ad in the CE collector"})}


def _short(exc: Exception) -> str:
    return " ".join(str(exc).split())[:200]


def services() -> dict[str, dict]:
    """State of every supervisord program (via its XML-RPC socket, not by parsing supervisorctl)."""
    import xmlrpc.client

    from supervisor.xmlrpc import SupervisorTransport

    proxy = xmlrpc.client.ServerProxy(
        "http://127.0.0.1", transport=SupervisorTransport(None, None, "unix:///var/run/supervisor.sock"))
    out = {}
    for info in proxy.supervisor.getAllProcessInfo():
        out[info["name"]] = {"ok": info["statename"] == "RUNNING", "state": info["statename"],
                             "pid": info["pid"]}
    return out


MASTER_PROGRAMS = {"pool": "condor", "ce": "condor-ce"}  # supervisord program of each instance's master


def _children(pid: int) -> set[str]:
    """Daemon names (COLLECTOR, SCHEDD ...) of the condor_* children of a condor_master."""
    names = set()
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            stat = (proc / "stat").read_text()
            argv0 = (proc / "cmdline").read_bytes().split(b"\0", 1)[0].decode()
        except OSError:
            continue  # exited while we looked
        # /proc/<pid>/stat: "pid (comm) state ppid ..."; comm may contain spaces, so split after ')'
        if int(stat.rsplit(")", 1)[1].split()[1]) == pid and Path(argv0).name.startswith("condor_"):
            names.add(Path(argv0).name.removeprefix("condor_").upper())
    return names


def health() -> tuple[bool, str]:
    """Cheap liveness for the compose healthcheck (it runs every few seconds on every node, so it
    must not import the bindings): every supervisord program RUNNING and every configured HTCondor
    daemon alive under its instance's condor_master.  ``probe_node`` is the thorough check."""
    meta = json.loads(Path("/etc/glideinlab/node.json").read_text())
    programs = services()
    for name, state in programs.items():
        if not state["ok"]:
            return False, f"service {name} is {state['state']}"
    for instance, daemons in meta["instances"].items():
        master = programs.get(MASTER_PROGRAMS[instance])
        if not master:
            return False, f"{instance}: no condor_master program"
        missing = set(daemons) - _children(master["pid"])
        if missing:
            return False, f"{instance}: {', '.join(sorted(missing))} not running"
    return True, "ok"


def _glideins() -> dict:
    """The factory's glideins by status, and why the newest held one is held (informational: a CE
    refusing pilots is a site problem, not an unhealthy node)."""
    proc = subprocess.run([sys.executable, "-c", _GLIDEIN_QUERY], capture_output=True, text=True, timeout=60)
    try:
        return json.loads(proc.stdout)
    except json.JSONDecodeError:
        return {"error": (proc.stderr or proc.stdout).strip()[-200:]}


_GLIDEIN_QUERY = """
import json
from glideinlab.condor.adapter import Condor
c = Condor()
jobs = c.query_jobs(c.schedd(), "GlideinFactory =!= undefined", ["JobStatus", "HoldReason", "EnteredCurrentStatus"])
names = {1: "idle", 2: "running", 5: "held"}
out = {}
for j in jobs:
    key = names.get(j.get("JobStatus"), "other")
    out[key] = out.get(key, 0) + 1
held = sorted((j for j in jobs if j.get("JobStatus") == 5), key=lambda j: j.get("EnteredCurrentStatus") or 0)
if held:
    out["held_reason"] = held[-1].get("HoldReason")
print(json.dumps(out))
"""


def probe_node() -> dict:
    meta = json.loads(Path("/etc/glideinlab/node.json").read_text())
    report: dict = {"node": meta["service"], "role": meta["role"], "daemons": {}, "services": {}}
    for instance in meta["instances"]:
        # tools running as root read tokens from SEC_TOKEN_DIRECTORY only; point it at the system's
        env = {**os.environ, "CONDOR_CONFIG": CONFIGS[instance],
               "_condor_SEC_TOKEN_DIRECTORY": "/etc/condor/tokens.d"}
        proc = subprocess.run([sys.executable, "-m", "glideinlab.node", "probe-instance"], env=env,
                              capture_output=True, text=True, timeout=60)
        try:
            daemons = json.loads(proc.stdout)
        except json.JSONDecodeError:
            daemons = {"?": {"ok": False, "error": (proc.stderr or proc.stdout).strip()[-200:]}}
        label = "ce" if instance == "ce" else "condor"
        report["daemons"].update({f"{label}:{d}": r for d, r in daemons.items()})
    try:
        report["services"] = services()
    except Exception as exc:
        report["services"] = {"supervisord": {"ok": False, "error": _short(exc)}}
    if meta["role"] == "factory":
        report["glideins"] = _glideins()
    report["ok"] = all(r["ok"] for part in ("daemons", "services") for r in report[part].values())
    return report
