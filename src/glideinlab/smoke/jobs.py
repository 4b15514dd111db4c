"""Node-side: submit the smoke test's user jobs as testuser, and read back what they wrote.

Each job prints and writes to its own file where it ran: host, slot, and the ``GLIDEIN_*`` /
``GLIDECLIENT_*`` attributes of the machine ad it ran on (HTCondor puts that ad in
``$_CONDOR_MACHINE_AD``), so the smoke test can check each job ran on a glidein of the requesting group.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

from ..condor.adapter import Condor

REPORTED = ("Name", "Machine", "GLIDECLIENT_Name", "GLIDECLIENT_Group", "GLIDEIN_Site", "GLIDEIN_Factory",
            "GLIDEIN_Name", "GLIDEIN_Entry_Name", "GLIDEIN_ClusterId", "GLIDEIN_Schedd")
JOB_SCRIPT = """#!/bin/sh
# glideinlab smoke job $1: where am I?
out="result.$1.txt"
{
  echo "job=$1"
  echo "host=$(hostname -f 2>/dev/null || hostname)"
  echo "user=$(id -un)"
  for attr in %(attrs)s; do
    value=$(grep -i "^$attr = " "$_CONDOR_MACHINE_AD" | head -n 1 | sed -e 's/^[^=]*= //' -e 's/^"//' -e 's/"$//')
    echo "$attr=$value"
  done
} > "$out"
cat "$out"
sleep %(sleep)s
"""


def submit(jobs: int, sleep: int, extra: dict[str, str]) -> dict:
    base = Path.home() / "smoke" / time.strftime("%Y%m%d-%H%M%S")
    base.mkdir(parents=True)
    script = base / "job.sh"
    script.write_text(JOB_SCRIPT % {"attrs": " ".join(REPORTED), "sleep": sleep})
    script.chmod(0o755)
    description = {
        "executable": str(script),
        "arguments": "$(Process)",
        "initialdir": str(base),
        "output": "job.$(Process).out",
        "error": "job.$(Process).err",
        "log": "jobs.log",
        "should_transfer_files": "YES",
        "when_to_transfer_output": "ON_EXIT",
        "transfer_output_files": "result.$(Process).txt",
        "request_cpus": "1",
        "request_memory": "100",
        "request_disk": "10000",
        **extra,
    }
    condor = Condor()
    cluster = condor.submit(condor.schedd(), description, count=jobs)
    return {"cluster": cluster, "dir": str(base), "jobs": jobs}


def results(directory: str, jobs: int) -> dict:
    out = {}
    for proc in range(jobs):
        path = Path(directory) / f"result.{proc}.txt"
        if not path.exists():
            out[str(proc)] = None
            continue
        values = {}
        for line in path.read_text().splitlines():
            key, _, value = line.partition("=")
            values[key] = value
        out[str(proc)] = values
    return out


def main(argv: list[str]) -> int:
    if argv[0] == "submit":
        extra = dict(arg.split("=", 1) for arg in argv[3:])
        print(json.dumps(submit(int(argv[1]), int(argv[2]), extra)))
    elif argv[0] == "results":
        print(json.dumps(results(argv[1], int(argv[2]))))
    else:
        print("usage: python3 -m glideinlab.smoke.jobs submit N SLEEP [k=v...] | results DIR N", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
