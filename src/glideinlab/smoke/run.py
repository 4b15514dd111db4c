"""``glideinlab smoke``: submit jobs and follow the pilot cycle stage by stage, with timings.

The data path, each stage asserted and timed from the moment the jobs are submitted:

  request advertised by the Frontend → first glidein submitted by the Factory → accepted by the CE →
  running on a worker → its startd in the user pool → first user job running → all jobs complete with
  correct output (each on a glidein slot of the requesting group) → all glideins gone, factory queue drained

Waiting is bounded polling of HTCondor queries: one follower per node (:mod:`glideinlab.smoke.observe`
inside the node, started once) prints what that node's daemons show every second, and the stages are
evaluated on the latest view of all nodes.  The timeout is per stage and a failure names the stage.  On failure every node's logs, queues and collector ads are bundled (:mod:`.bundle`) and the first
error found is printed.
"""

from __future__ import annotations

import json
import subprocess
import threading
import time
from dataclasses import asdict, dataclass, field
from typing import Callable

from ..errors import UserError
from ..workspace.backend import State, Workspace
from . import bundle

Progress = Callable[[str], None]
POLL = 1.0  # s between two observations by one node's follower, and between two stage evaluations
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
    settle: float = 0.0  # s waited before submitting, for an earlier run's glideins to leave

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
        self.baseline: dict[str, set[str]] = {}

    # -- talking to the nodes -----------------------------------------------------------------
    def _node_json(self, node: str, module: str, *args: str, user: str | None = None) -> dict:
        proc = self.ws.exec(node, ["python3", "-m", module, *args], user=user, capture=True, timeout=120)
        try:
            return json.loads(proc.stdout)
        except json.JSONDecodeError:
            raise UserError(f"{module} on {node} failed: {(proc.stderr or proc.stdout).strip()[-300:]}") from None

    def start_followers(self) -> None:
        """One long-lived observer per node; their latest line is the current view of that node."""
        self._followers = []
        for key, node, args in (("factory", "factory-workspace", ["factory"]), ("ce", "ce-workspace", ["ce"]),
                                ("frontend", "frontend-workspace", ["frontend", "testuser"])):
            cmd = [self.ws.engine.cli, "exec", self.ws.container_of(node), "python3", "-m",
                   "glideinlab.smoke.observe", *args, "--follow", str(POLL)]
            proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
            threading.Thread(target=self._read, args=(key, proc), daemon=True).start()
            self._followers.append(proc)

    def _read(self, key: str, proc: subprocess.Popen) -> None:
        for line in proc.stdout:
            try:
                self.last[key] = json.loads(line)
            except json.JSONDecodeError:
                continue

    def stop_followers(self) -> None:
        for proc in getattr(self, "_followers", []):
            proc.kill()
            proc.wait()

    def observe(self) -> dict[str, dict]:
        return {key: self.last.get(key, {}) for key in ("factory", "ce", "frontend")}

    # -- stage conditions on one observation --------------------------------------------------
    def reached_now(self, obs: dict[str, dict]) -> set[str]:
        fa, fe = obs["factory"], obs["frontend"]
        new = _ids(obs)
        for kind, old in self.baseline.items():
            new[kind] -= old
        glideins = _list(fa.get("glideins"))
        slots = [s for s in _list(fe.get("slots")) if s.get("GLIDECLIENT_Name") == CLIENT_NAME]
        cluster = self.submitted["cluster"]
        jobs = [j for j in _list(fe.get("jobs")) if j.get("ClusterId") == cluster]
        history = [j for j in _list(fe.get("history")) if j.get("ClusterId") == cluster]
        done = [j for j in history if j.get("JobStatus") == 4]
        out = set()
        if any((r.get("ReqIdleGlideins") or 0) > 0 for r in _list(fa.get("requests"))):
            out.add("request")
        if new["glideins"]:
            out.add("submitted")
        if new["ce_jobs"]:
            out.add("ce_accepted")
        if new["site_running"]:
            out.add("worker_running")
        if new["slots"]:
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
                # condor-C holds jobs briefly while their input spools: not a problem
                if job.get("JobStatus") == 5 and job.get("HoldReason") and "Spooling input" not in job["HoldReason"]:
                    found.append(f"{where} job {job.get('ClusterId')}.{job.get('ProcId')} held: {job['HoldReason']}")
        for where in obs.values():
            for key, value in where.items():
                if isinstance(value, dict) and value.get("error"):
                    found.append(f"{key}: {value['error']}")
        return found

    # -- the run --------------------------------------------------------------------------------
    def run(self) -> SmokeResult:
        # watch first, then submit: stage times start at the submission, and whatever already exists
        # (glideins left from an earlier run) is the baseline that does not count
        self.start_followers()
        try:
            deadline = time.monotonic() + self.timeout
            while not all(self.observe().values()):
                if time.monotonic() > deadline:
                    raise UserError("the smoke observers did not start", hint="see `glideinlab status`")
                time.sleep(POLL / 4)
            self._wait_for_an_empty_pool()
            self.baseline = _ids(self.observe())
            self.progress(f"submitting {self.jobs} jobs as testuser")
            self.submitted = self._node_json("frontend-workspace", "glideinlab.smoke.jobs", "submit",
                                             str(self.jobs), str(self.job_sleep), user="testuser")
            return self._follow(time.monotonic())
        finally:
            self.stop_followers()

    def _wait_for_an_empty_pool(self) -> None:
        """Glideins of an earlier run would take the new jobs at once and the stages would be timed out of
        order: wait (at most one stage timeout) until they have left; past that, go on with them as the
        baseline and say so."""
        t0 = time.monotonic()
        told = False
        while True:
            left = _leftover_glideins(self.observe())
            if not left:
                break
            waited = time.monotonic() - t0
            if waited > self.timeout:
                self.progress(f"{left} glideins of an earlier run are still there after {waited:.0f} s; "
                              "going on (stage times may overlap)")
                break
            if not told:
                self.progress(f"waiting for {left} glideins of an earlier run to leave "
                              f"(GLIDEIN_Max_Tail/Max_Idle; at most {self.timeout:.0f} s)")
                told = True
            time.sleep(POLL)
        self.result.settle = round(time.monotonic() - t0, 1)

    def _follow(self, t0: float) -> SmokeResult:
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
                time.sleep(POLL / 2)
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
        path, down, log_error = bundle.collect(self.ws, obs, stage.key, self.bundle_dir)
        self.result.bundle = str(path)
        # the most direct cause first: something down, then a held job's reason, then the logs
        self.result.first_error = down or (problems[0] if problems else log_error)
        return self.result


def _list(value) -> list:
    return value if isinstance(value, list) else []


def _leftover_glideins(obs: dict[str, dict]) -> int:
    """Glideins still around: jobs in the factory queue, or startds of our group in the user pool."""
    queued = len(_list(obs.get("factory", {}).get("glideins")))
    # one glidein advertises several slots ("slot1_1@glidein_<pid>_<n>@host"): count the startds
    startds = {str(s.get("Name", "")).split("@", 1)[-1]
               for s in _list(obs.get("frontend", {}).get("slots")) if s.get("GLIDECLIENT_Name") == CLIENT_NAME}
    return max(queued, len(startds))


def _ids(obs: dict[str, dict]) -> dict[str, set[str]]:
    """Identities of the things each stage watches for, so ones older than the run can be ignored."""
    def job_ids(jobs, only_running=False):
        return {f"{j.get('ClusterId')}.{j.get('ProcId')}" for j in _list(jobs)
                if not only_running or j.get("JobStatus") == 2}

    fa, ce, fe = obs.get("factory", {}), obs.get("ce", {}), obs.get("frontend", {})
    return {
        "glideins": job_ids(fa.get("glideins")),
        "ce_jobs": job_ids(ce.get("ce_jobs")),
        "site_running": job_ids(ce.get("site_jobs"), only_running=True),
        "slots": {str(s.get("Name")) for s in _list(fe.get("slots")) if s.get("GLIDECLIENT_Name") == CLIENT_NAME},
    }


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
