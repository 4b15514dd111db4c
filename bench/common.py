"""What the workspace benchmarks share: result records, the floor pool, memory readings.

Every benchmark prints its figures and appends one JSON line to ``bench/results/<name>.jsonl`` with the
date, the machine, the HTCondor version and the profile, so figures from different runs can be compared.
Ratios are always against a floor measured in the same run on the same machine (minikube's
time-to-k8s style), never against a number from elsewhere.
"""

from __future__ import annotations

import datetime
import json
import os
import platform
import subprocess
import sys
import time
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "bench" / "results"
sys.path.insert(0, str(ROOT / "src"))

from glideinlab.workspace.backend import Workspace  # noqa: E402
from glideinlab.workspace.engine import detect  # noqa: E402
from glideinlab.workspace.spec import WorkspaceSpec  # noqa: E402

FLOOR_LABEL = "org.glideinlab.bench"


def progress(message: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def machine() -> dict:
    mem = 0
    try:
        mem = int(next(l for l in open("/proc/meminfo") if l.startswith("MemTotal")).split()[1]) // 1024
    except (OSError, StopIteration):
        pass
    engine = detect()
    storage = engine.run("info", "--format", "{{.Driver}}", check=False).stdout.strip()
    return {"host": platform.node(), "kernel": platform.release(), "cpus": os.cpu_count(), "mem_mb": mem,
            "engine": engine.cli, "storage_driver": storage}


def htcondor_version(image: str) -> str:
    out = detect().run("run", "--rm", "--entrypoint", "condor_version", image, check=False).stdout
    return out.split("$")[1].strip() if "$" in out else out.strip()


def record(name: str, figures: dict, *, profile: str | None = None, image: str | None = None) -> dict:
    entry = {"date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
             "machine": machine(), "profile": profile,
             "htcondor": htcondor_version(image) if image else None, **figures}
    RESULTS.mkdir(parents=True, exist_ok=True)
    with open(RESULTS / f"{name}.jsonl", "a") as fh:
        fh.write(json.dumps(entry) + "\n")
    return entry


def bench_workspace(name: str, **spec) -> Workspace:
    """A workspace of the benchmark's own (own name and state dir), so it never touches yours."""
    home = Path(os.environ.get("GLIDEINLAB_BENCH_HOME", "/tmp/glideinlab-bench"))
    return Workspace(WorkspaceSpec.create(name=name, **spec), home=home)


# -- the floor: the same images, plain condor_master, no glideinlab -----------------------------------

# a minicondor: every daemon, local users may submit (the base images carry testuser)
PERSONAL = ("printf 'use ROLE: Personal\\nALLOW_READ = *\\nALLOW_WRITE = *\\n' > /etc/condor/config.d/00-floor.conf; "
            "printf 'NEGOTIATOR_INTERVAL = 2\\nUPDATE_INTERVAL = 2\\nSCHEDD_INTERVAL = 2\\n"
            "NEGOTIATOR_MIN_INTERVAL = 1\\nNEGOTIATOR_CYCLE_DELAY = 1\\n' > /etc/condor/config.d/10-fast.conf; "
            "exec condor_master -f")


class Floor:
    """N containers from the given images, each running a personal HTCondor (collector, negotiator,
    schedd, startd) with the same fast intervals: what the workspace costs without glideinlab."""

    def __init__(self, images: list[str]):
        self.engine = detect()
        self.images = images
        self.tag = uuid.uuid4().hex[:8]
        self.ids: list[str] = []

    def start(self) -> None:
        for i, image in enumerate(self.images):
            cid = self.engine.run("run", "-d", "--label", f"{FLOOR_LABEL}={self.tag}", "--name",
                                  f"glideinlab-floor-{self.tag}-{i}", "--hostname", f"floor{i}",
                                  "--entrypoint", "sh", image, "-c", PERSONAL).stdout.strip()
            self.ids.append(cid)

    def wait_ready(self, timeout: float = 300) -> None:
        """Every daemon of every container answers: `condor_who -wait` blocks until the master says so."""
        procs = [subprocess.Popen([self.engine.cli, "exec", cid, "condor_who", f"-wait:{int(timeout)}",
                                   "IsReady && STARTD_State =?= \"Ready\""],
                                  stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL) for cid in self.ids]
        for proc in procs:
            if proc.wait() != 0:
                raise RuntimeError("a floor container did not become ready")

    def exec(self, index: int, *cmd: str, user: str | None = None) -> subprocess.CompletedProcess:
        args = ["exec"] + (["-u", user] if user else []) + [self.ids[index], *cmd]
        return self.engine.run(*args, check=False)

    def stop(self) -> None:
        for cid in self.ids:
            self.engine.run("rm", "-f", cid, check=False)
        self.ids = []


def container_memory(ids: list[str]) -> dict[str, float]:
    """Memory in MiB per container (docker stats, one reading)."""
    out = detect().run("stats", "--no-stream", "--format", "{{.Name}} {{.MemUsage}}", *ids).stdout
    mem = {}
    for line in out.splitlines():
        name, usage = line.split(" ", 1)
        mem[name] = _mib(usage.split("/")[0].strip())
    return mem


def _mib(text: str) -> float:
    units = {"KiB": 1 / 1024, "MiB": 1, "GiB": 1024, "kB": 1 / 1024, "MB": 1, "GB": 1024, "B": 1 / 1048576}
    for unit, factor in units.items():
        if text.endswith(unit):
            return float(text[: -len(unit)]) * factor
    return float(text)


PROCESS_RSS = """
import json, os
from pathlib import Path
rss = {}
for proc in Path("/proc").iterdir():
    if not proc.name.isdigit():
        continue
    try:
        argv = (proc / "cmdline").read_bytes().split(b"\\0")
        status = (proc / "status").read_text()
    except OSError:
        continue
    kb = next((int(l.split()[1]) for l in status.splitlines() if l.startswith("VmRSS:")), 0)
    args = [a.decode() for a in argv if a]
    name = Path(args[0]).name if args else "?"
    if name.startswith("python") and len(args) > 1:
        # "python3 -m module ..." -> module; "python3 /usr/bin/supervisord" -> supervisord
        name = args[2] if args[1] == "-m" and len(args) > 2 else Path(args[1]).name
    rss[name] = rss.get(name, 0) + kb
print(json.dumps(rss))
"""


def process_rss(ws: Workspace, service: str) -> dict[str, float]:
    """RSS in MiB of every process name in one node (condor daemons, our services)."""
    proc = ws.exec(service, ["python3", "-c", PROCESS_RSS], capture=True)
    return {k: round(v / 1024, 1) for k, v in json.loads(proc.stdout).items()}
