"""``glideinlab smoke``: submit jobs and follow the pilot cycle stage by stage, with timings.

The data path, each stage asserted and timed from the moment the jobs are submitted:

  request advertised by the Frontend → first glidein submitted by the Factory → accepted by the CE →
  running on a worker → its startd in the user pool → first user job running → all jobs complete with
  correct output (each on a glidein slot of the requesting group) → all glideins gone, factory queue drained

Waiting is bounded polling of HTCondor queries (one observation of every node per round, through
:mod:`glideinlab.smoke.observe` inside the nodes); the timeout is per stage and a failure names the
stage.  On failure every node's logs, queues and collector ads are bundled (:mod:`.bundle`) and the first
error found is printed.
"""

from __future__ import annotations

import json
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable

from ..errors import UserError
from ..workspace.backend import State, Workspace
from . import bundle

Progress = Callable[[str], None]
POLL = 1.0  # s between observation rounds (each round is three quick queries)
CLIENT_NAME = "vofrontend_service.main"  # the workspace frontend's only group


@dataclass(frozen=True)
class Stage:
    key: str
    description: str
    node: str  # where to look first when it fails


STAGES = (
    Stage("request", "request advertised by the Frontend", "frontend-workspace"),
    Stage("submitted", "first glidein submitted by the Factory", "factory-workspace"),
    Stage("ce_accepted", "first glidein accepted by the CE", "factory-workspace"),
    Stage("worker_running", "first glidein running on a worker", "ce-workspace"),
    Stage("startd_joined", "first glidein startd in the user pool", "frontend-workspace"),
    Stage("job_running", "first user job running", "frontend-workspace"),
    Stage("jobs_done", "all user jobs complete with correct output", "frontend-workspace"),
    Stage("drained", "all glideins gone and the factory queue drained", "factory-workspace"),
)


@dataclass
class SmokeResult:
    ok: bool = False
    jobs: int = 0
    reached: dict[str, float] = field(default_factory=dict)  # stage key -> seconds after submit
    failed_stage: str | None = None
    reason: str = ""
    first_error: str = ""
    bundle: str = ""
    total: float = 0.0

    def table(self) -> str:
        lines = [f"{'stage':52} {'elapsed (s)':>11}"]
        for stage in STAGES:
            t = self.reached.get(stage.key)
            mark = f"{t:11.1f}" if t is not None else ("     FAILED" if stage.key == self.failed_stage
                                                        else "          -")
            lines.append(f"{stage.description:52} {mark}")
        return "\n".join(lines)

    def verdict(self) -> str:
        if self.ok:
            return f"SMOKE PASSED: {self.jobs}/{self.jobs} jobs ran on glideins; pilot cycle drained in {self.total:.1f} s"
        stage = next(s.description for s in STAGES if s.key == self.failed_stage) if self.failed_stage else "?"
        return (f"SMOKE FAILED at '{stage}': {self.reason}" + (f" | first error: {self.first_error}" if
                self.first_error else "") + (f" | logs: {self.bundle}" if self.bundle else ""))


class Smoke:
    def __init__(self, ws: Workspace, jobs: int, timeout: float, progress: Progress, job_sleep: int = 5,
                 bundle_dir: str | None = None):
        self.ws = ws
        self.jobs = jobs
        self.timeout = timeout
        self.progress = progress
        self.job_sleep = job_sleep
        self.bundle_dir = bundle_dir
        self.result = SmokeResult(jobs=jobs)
        self.submitted: dict | None = None
        self.last: dict[str, dict] = {}

    # -- talking to the nodes -----------------------------------------------------------------
    def _node_json(self, node: str, module: str, *args: str, user: str | None = None) -> dict:
        proc = self.ws.exec(node, ["python3", "-m", module, *args], user=user, capture=True, timeout=120)
        try:
            return json.loads(proc.stdout)
        except json.JSONDecodeError:
            raise UserError(f"{module} on {node} failed: {(proc.stderr or proc.stdout).strip()[-300:]}") from None

    def observe(self) -> dict[str, dict]:
        cluster = str(self.submitted["cluster"]) if self.submitted else ""
        self.last = {
            "factory": self._node_json("factory-workspace", "glideinlab.smoke.observe", "factory"),
            "ce": self._node_json("ce-workspace", "glideinlab.smoke.observe", "ce"),
            "frontend": self._node_json("frontend-workspace", "glideinlab.smoke.observe", "frontend", cluster),
        }
        return self.last

    # -- stage conditions on one observation --------------------------------------------------
    def reached_now(self, obs: dict[str, dict]) -> set[str]:
        fa, ce, fe = obs["factory"], obs["ce"], obs["frontend"]
        glideins = _list(fa.get("glideins"))
        slots = [s for s in _list(fe.get("slots")) if s.get("GLIDECLIENT_Name") == CLIENT_NAME]
        jobs, history = _list(fe.get("jobs")), _list(fe.get("history"))
        done = [j for j in history if j.get("JobStatus") == 4]
        out = set()
        if any((r.get("ReqIdleGlideins") or 0) > 0 for r in _list(fa.get("requests"))):
            out.add("request")
        if glideins:
            out.add("submitted")
        if _list(ce.get("ce_jobs")):
            out.add("ce_accepted")
        if any(j.get("JobStatus") == 2 for j in _list(ce.get("site_jobs"))):
            out.add("worker_running")
        if slots:
            out.add("startd_joined")
        if any(j.get("JobStatus") == 2 for j in jobs) or any(j.get("JobStartDate") for j in history):
            out.add("job_running")
        if len(done) >= self.jobs and not jobs:
            out.add("jobs_done")
        if "jobs_done" in self.result.reached and not glideins and not slots:
            out.add("drained")
        return out

    def problems(self, obs: dict[str, dict]) -> list[str]:
        """Things visible right now that explain a stall (held glideins or jobs)."""
        found = []
        for where, key in (("factory", "glideins"), ("ce", "ce_jobs"), ("ce", "site_jobs"), ("frontend", "jobs")):
            for job in _list(obs.get(where, {}).get(key)):
                if job.get("JobStatus") == 5 and job.get("HoldReason"):
                    found.append(f"{where} job {job.get('ClusterId')}.{job.get('ProcId')} held: {job['HoldReason']}")
        for where in obs.values():
            for key, value in where.items():
                if isinstance(value, dict) and value.get("error"):
                    found.append(f"{key}: {value['error']}")
        return found

    # -- the run --------------------------------------------------------------------------------
    def run(self) -> SmokeResult:
        self.progress(f"submitting {self.jobs} jobs as testuser")
        self.submitted = self._node_json("frontend-workspace", "glideinlab.smoke.jobs", "submit", str(self.jobs),
                                         str(self.job_sleep), user="testuser")
        t0 = time.monotonic()
        stage_start = t0
        index = 0
        while index < len(STAGES):
            obs = self.observe()
            now = time.monotonic() - t0
            for key in self.reached_now(obs):
                self.result.reached.setdefault(key, now)
            while index < len(STAGES) and STAGES[index].key in self.result.reached:
                if STAGES[index].key == "jobs_done":
                    bad = self.check_outputs()
                    if bad:
                        return self.fail(STAGES[index], bad, obs)
                self.progress(f"{STAGES[index].description}: {self.result.reached[STAGES[index].key]:.1f} s")
                stage_start = time.monotonic()
                index += 1
            if index < len(STAGES) and time.monotonic() - stage_start > self.timeout:
                return self.fail(STAGES[index], f"timed out after {self.timeout:.0f} s", obs)
            if index < len(STAGES):
                time.sleep(POLL)
        self.result.ok = True
        self.result.total = time.monotonic() - t0
        return self.result

    def check_outputs(self) -> str:
        """Every job wrote its own result on a glidein slot of the requesting group, else why not."""
        results = self._node_json("frontend-workspace", "glideinlab.smoke.jobs", "results", self.submitted["dir"],
                                  str(self.jobs), user="testuser")
        for proc, values in sorted(results.items(), key=lambda kv: int(kv[0])):
            if values is None:
                return f"job {proc} left no result file"
            if values.get("GLIDECLIENT_Name") != CLIENT_NAME:
                return (f"job {proc} ran on {values.get('Name') or values.get('host')}, not on a glidein of "
                        f"{CLIENT_NAME} (GLIDECLIENT_Name={values.get('GLIDECLIENT_Name')!r})")
            if not values.get("GLIDEIN_Factory") or not values.get("GLIDEIN_Site"):
                return f"job {proc} saw no GLIDEIN_Factory/GLIDEIN_Site in its machine ad"
        return ""

    def fail(self, stage: Stage, reason: str, obs: dict[str, dict]) -> SmokeResult:
        self.result.failed_stage = stage.key
        self.result.reason = reason
        problems = self.problems(obs)
        self.progress(f"FAILED at '{stage.description}': {reason}; collecting logs")
        path, first = bundle.collect(self.ws, obs, stage.key, self.bundle_dir)
        self.result.bundle = str(path)
        self.result.first_error = problems[0] if problems else first
        return self.result


def _list(value) -> list:
    return value if isinstance(value, list) else []


def run_smoke(args, progress: Progress) -> int:
    from ..workspace.spec import WorkspaceSpec

    name = args.name or "default"
    try:
        ws = Workspace.load(name)
    except UserError:
        ws = Workspace(WorkspaceSpec.create(name=name, workers=args.workers))
    if ws.state() is not State.READY:
        progress(f"workspace {name} is not up; bringing it up")
        ws.up(progress=progress)
    result = Smoke(ws, args.jobs, args.timeout, progress, bundle_dir=args.bundle_dir).run()
    if args.json:
        print(json.dumps(asdict(result), indent=2))
    else:
        print(result.table())
        print(result.verdict())
    return 0 if result.ok else 1
