"""Node-side observations for the smoke test: what HTCondor shows on this node, as JSON.

Run inside a node (``python3 -m glideinlab.smoke.observe ROLE``) as root, so local queries authenticate
with FS; all queries go through :mod:`glideinlab.condor.adapter`.  Each role reports only what its own
daemons know:

* factory:  glideclient requests in the WMS collector, the glideins in the factory schedd;
* ce:       jobs in the CE schedd (9619) and in the site pool's schedd;
* frontend: glidein startds in the user pool, and testuser's jobs (queue and recent history).
"""

from __future__ import annotations

import json
import sys
import time

from ..condor.adapter import Condor, CondorError

STARTED = time.time()

GLIDEIN_ATTRS = ["ClusterId", "ProcId", "JobStatus", "GridJobStatus", "QDate", "EnteredCurrentStatus",
                 "HoldReason", "GlideinEntryName", "GlideinClient"]
JOB_ATTRS = ["ClusterId", "ProcId", "JobStatus", "Owner", "QDate", "EnteredCurrentStatus", "HoldReason",
             "RoutedToJobId", "RemoteHost", "ExitCode", "JobStartDate", "CompletionDate", "LastRemoteHost"]
SLOT_ATTRS = ["Name", "Machine", "State", "Activity", "GLIDECLIENT_Name", "GLIDEIN_Site", "GLIDEIN_Entry_Name",
              "GLIDEIN_Factory", "DaemonStartTime", "Cpus", "Memory"]


def _safe(fn):
    try:
        return fn()
    except CondorError as err:
        return {"error": str(err)}


def observe_factory(condor: Condor) -> dict:
    return {
        "requests": _safe(lambda: condor.query_ads(
            None, 'GlideinMyType =?= "glideclient"',
            ["Name", "ReqIdleGlideins", "ReqMaxGlideins", "ReqRemoveExcess", "LastHeardFrom"])),
        "factory_ads": _safe(lambda: condor.query_ads(
            None, 'GlideinMyType =?= "glidefactory" || GlideinMyType =?= "glidefactoryclient"',
            ["Name", "GlideinMyType", "GlideinMonitorTotalStatusHeld", "GlideinMonitorStatusHeld"])),
        "glideins": _safe(lambda: condor.query_jobs(condor.schedd(), "GlideinFactory =!= undefined",
                                                    GLIDEIN_ATTRS)),
    }


def observe_ce(condor: Condor) -> dict:
    fqdn = condor.h.param["FULL_HOSTNAME"]
    site = _safe(lambda: condor.query_jobs(condor.schedd(), "true", JOB_ATTRS))
    # the CE instance: its own collector on 9619 locates its schedd (root authenticates with FS)
    ce = _safe(lambda: condor.query_jobs(condor.schedd(fqdn, f"{fqdn}:9619"), "true", JOB_ATTRS))
    return {"ce_jobs": ce, "site_jobs": site}


def observe_frontend(condor: Condor, owner: str) -> dict:
    """Glidein startds, and the jobs of ``owner`` (queue, and history since this follower started)."""
    schedd = condor.schedd()
    mine = f'Owner == "{owner}"'
    return {
        "slots": _safe(lambda: condor.query_ads(None, "GLIDECLIENT_Name =!= undefined", SLOT_ATTRS,
                                                ad_type="Startd")),
        "jobs": _safe(lambda: condor.query_jobs(schedd, mine, JOB_ATTRS)),
        "history": _safe(lambda: condor.query_jobs(
            schedd, f"{mine} && CompletionDate >= {int(STARTED) - 60}", JOB_ATTRS, history=True)),
    }


def main(argv: list[str]) -> int:
    """``observe ROLE [OWNER] [--follow SECONDS]``: one JSON line, or one every SECONDS until killed
    (the smoke test keeps one follower per node instead of paying a container exec per look)."""
    follow = None
    if "--follow" in argv:
        i = argv.index("--follow")
        follow = float(argv[i + 1])
        argv = argv[:i] + argv[i + 2:]
    role = argv[0]
    owner = argv[1] if len(argv) > 1 else "testuser"
    observers = {"factory": observe_factory, "ce": observe_ce,
                 "frontend": lambda c: observe_frontend(c, owner)}
    if role not in observers:
        print(f"unknown role {role!r}", file=sys.stderr)
        return 2
    condor = Condor()
    while True:
        print(json.dumps({"time": time.time(), **observers[role](condor)}, default=str), flush=True)
        if follow is None:
            return 0
        time.sleep(follow)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
